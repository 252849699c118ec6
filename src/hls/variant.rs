//! What a master playlist says of each variant, read from its packager without
//! I/O: the peak bit rate of its segments (`BANDWIDTH`), its picture size
//! (`RESOLUTION`) and its codecs (`CODECS`, RFC 6381), from the decoder
//! configurations it was started with.

use super::packager::Packager;
use super::playlist::Variant;
use crate::flv::{AudioCodec, VideoCodec};

/// The variant `rendition` as `packager` shows it now; `nominal` (bits per
/// second) stands in for the bit rate until a part was made.
pub fn of(rendition: &str, packager: &Packager, nominal: u64) -> Variant {
    let (video, audio) = packager.configs();
    let picture = video.and_then(|header| crate::flv::video_configuration(header).ok().flatten());
    let resolution = picture.and_then(|(codec, record)| {
        let parsed = match codec {
            VideoCodec::Avc => crate::standby::parse::avc(record).ok()?,
            VideoCodec::Hevc => crate::standby::parse::hevc(record).ok()?,
            _ => return None,
        };
        parsed.size
    });
    let video_codec = picture.map(|(codec, record)| match codec {
        // avc1.PPCCLL: profile, constraint flags and level from the record.
        VideoCodec::Avc if record.len() >= 4 => Some(format!(
            "avc1.{:02x}{:02x}{:02x}",
            record[1], record[2], record[3]
        )),
        _ => None,
    });
    let audio_codec = audio
        .and_then(|header| crate::flv::audio_configuration(header).ok().flatten())
        .map(|(codec, asc)| match codec {
            // mp4a.40.N: N is the AudioSpecificConfig's object type.
            AudioCodec::Aac if !asc.is_empty() => Some(format!("mp4a.40.{}", asc[0] >> 3)),
            _ => None,
        });
    // CODECS names every codec or is left out: a partial list misleads players.
    let codecs = match (video_codec, audio_codec) {
        (Some(Some(v)), Some(Some(a))) => Some(format!("{v},{a}")),
        (Some(Some(v)), None) => Some(v),
        (None, Some(Some(a))) => Some(a),
        _ => None,
    };
    Variant {
        rendition: rendition.to_owned(),
        bandwidth: packager.peak_bps().unwrap_or(nominal).max(1),
        resolution,
        codecs,
    }
}

/// A profile's nominal bit rate from its arguments: `-maxrate` (or `-b:v`) plus
/// `-b:a`, for a rung that has not made a part yet.
pub fn nominal_bps(args: &[String]) -> u64 {
    let value = |flag: &str| {
        args.windows(2)
            .find(|w| w[0] == flag)
            .and_then(|w| rate(&w[1]))
    };
    let video = value("-maxrate")
        .or_else(|| value("-b:v"))
        .unwrap_or(2_000_000);
    video + value("-b:a").unwrap_or(128_000)
}

/// `3500k`, `6M`, `800000` in bits per second.
fn rate(text: &str) -> Option<u64> {
    let (number, unit) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1_000),
        (i, 'm' | 'M') => (&text[..i], 1_000_000),
        _ => (text, 1),
    };
    number.parse::<f64>().ok().map(|n| (n * unit as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profiles_nominal_rate_is_read_from_its_arguments() {
        let args = |text: &str| {
            text.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            nominal_bps(&args(
                "-c:v libx264 -b:v 3500k -maxrate 4M -c:a aac -b:a 160k"
            )),
            4_160_000
        );
        assert_eq!(nominal_bps(&args("-b:v 800000")), 928_000);
        assert_eq!(nominal_bps(&args("-crf 21")), 2_128_000);
    }
}
