//! ffmpeg's `-progress` output: `key=value` lines, a block per report, used for
//! the encoder's fps and speed in the status. (Its `bitrate` is the first
//! output's only; each output's bit rate is measured from its pipe instead.)

/// What the last progress report said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Frames encoded per second.
    pub fps: Option<f64>,
    /// Encoding speed relative to real time (1.0 keeps up).
    pub speed: Option<f64>,
}

impl Progress {
    /// Applies one stderr line; returns false when the line is not progress output
    /// (then it is a log message).
    pub fn apply_line(&mut self, line: &str) -> bool {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        let value = value.trim();
        match key.trim() {
            "fps" => self.fps = value.parse().ok(),
            "speed" => self.speed = value.trim_end_matches('x').trim().parse().ok(),
            "frame" | "bitrate" | "stream_0_0_q" | "stream_0_1_q" | "total_size"
            | "out_time_us" | "out_time_ms" | "out_time" | "dup_frames" | "drop_frames"
            | "progress" => {}
            other => return other.starts_with("stream_") && other.ends_with("_q"),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_progress_block_and_leaves_log_lines_alone() {
        let mut p = Progress::default();
        let block = "frame=120\nfps=29.97\nstream_0_0_q=28.0\nbitrate=3512.4kbits/s\n\
                     total_size=123456\nout_time_us=4000000\nspeed=1.02x\nprogress=continue";
        assert!(block.lines().all(|l| p.apply_line(l)));
        assert_eq!(p.fps, Some(29.97));
        assert_eq!(p.speed, Some(1.02));
        assert!(!p.apply_line("[libx264 @ 0x55] using cpu capabilities: MMX2"));
        assert!(p.apply_line("bitrate=N/A"));
    }
}
