//! Writing to stderr without ever failing.
//!
//! std's `eprintln!` panics when stderr fails (a full disk: ENOSPC, a closed pipe:
//! EPIPE, EIO), and tracing's writers report a failed write with `eprintln!` too.
//! prism must go on relaying when its log cannot be written, so the log writer
//! counts the lost lines and tells its caller all is well.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A writer that counts failed writes instead of reporting them. The log's
/// worker thread writes one line per call, so the count is of lines lost.
#[derive(Debug)]
pub struct NeverFails<W> {
    inner: W,
    failed: Arc<AtomicU64>,
}

impl<W: Write> NeverFails<W> {
    /// Wraps `inner`; failed writes are counted in `failed`.
    pub fn new(inner: W, failed: Arc<AtomicU64>) -> Self {
        Self { inner, failed }
    }
}

impl<W: Write> Write for NeverFails<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.inner.write_all(buf).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.inner.flush();
        Ok(())
    }
}

/// How long a message outside the log (a startup error, the reason for an exit)
/// may take to reach stderr before prism goes on without it.
pub const PRINT_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `line` and a newline to stderr, for messages outside the log: never
/// panics (unlike `eprintln!`) and never waits more than [`PRINT_TIMEOUT`] (a
/// stderr pipe nobody reads would block the write for ever). The write happens
/// on a thread of its own, which is left behind if it blocks.
pub fn print(line: &str) {
    let text = format!("{line}\n");
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("prism-stderr".to_owned())
        .spawn(move || {
            let _ = io::stderr().write_all(text.as_bytes());
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = finished.recv_timeout(PRINT_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_device_is_counted_not_reported() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        let failed = Arc::new(AtomicU64::new(0));
        let mut writer = NeverFails::new(full, Arc::clone(&failed));
        for _ in 0..3 {
            assert_eq!(writer.write(b"a line\n").unwrap(), 7);
        }
        writer.flush().unwrap();
        assert_eq!(failed.load(Ordering::Relaxed), 3);

        let mut ok = NeverFails::new(Vec::new(), Arc::clone(&failed));
        ok.write_all(b"kept\n").unwrap();
        assert_eq!(ok.inner, b"kept\n");
        assert_eq!(failed.load(Ordering::Relaxed), 3);
    }
}
