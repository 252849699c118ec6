//! A recording's MP4 file, without I/O: what to write for each packet, as
//! fragmented MP4 ([`crate::fmp4`]). The initialization segment is written at the
//! file's first frame, from the stream's sequence headers then; a fragment is
//! written before each video keyframe (each second for a stream without video),
//! so a file cut short by a crash plays up to its last whole fragment.

use bytes::Bytes;

use crate::fmp4::{Fmp4Error, Fmp4Muxer};
use crate::hub::{Packet, PacketKind};

/// How much audio a fragment of a stream without video holds.
const AUDIO_FRAGMENT_MS: u64 = 1000;

/// One MP4 file's muxing state.
#[derive(Debug, Default)]
pub struct Mp4File {
    muxer: Option<Fmp4Muxer>,
    /// The sequence headers the initialization segment was made from.
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    fragment_start: u64,
}

impl Mp4File {
    /// Whether `packet` is a sequence header other than the one this file was
    /// started with: the file must end, and the next begin with it.
    pub fn config_changed(&self, packet: &Packet) -> bool {
        if self.muxer.is_none() || !packet.sequence_header {
            return false;
        }
        let current = match packet.kind {
            PacketKind::Video => &self.video_config,
            PacketKind::Audio => &self.audio_config,
            _ => return false,
        };
        current.as_ref() != Some(&packet.payload)
    }

    /// The bytes to write for `packet`, stamped `timestamp` (ms), given the
    /// stream's latest sequence headers: the initialization segment before the
    /// first frame, a fragment before a keyframe; sequence headers and metadata
    /// write nothing themselves.
    pub fn push(
        &mut self,
        packet: &Packet,
        timestamp: u32,
        video_config: Option<&Packet>,
        audio_config: Option<&Packet>,
    ) -> Result<Vec<u8>, Fmp4Error> {
        let mut out = Vec::new();
        let frame =
            matches!(packet.kind, PacketKind::Video | PacketKind::Audio) && !packet.sequence_header;
        if !frame {
            return Ok(out);
        }
        let dts = u64::from(timestamp);
        let muxer = match &mut self.muxer {
            Some(muxer) => muxer,
            None => {
                let video = video_config.map(|p| p.payload.clone());
                let audio = audio_config.map(|p| p.payload.clone());
                let (muxer, init) = Fmp4Muxer::new(video.as_deref(), audio.as_deref())?;
                out.extend_from_slice(&init);
                self.video_config = video;
                self.audio_config = audio;
                self.fragment_start = dts;
                self.muxer.insert(muxer)
            }
        };
        match packet.kind {
            PacketKind::Video => {
                // The keyframe settles the previous frame's duration; the fragment
                // ends there, and the keyframe opens the next.
                if muxer.push_video(dts, &packet.payload)
                    && let Some(fragment) = muxer.fragment()?
                {
                    out.extend_from_slice(&fragment);
                }
            }
            _ => {
                muxer.push_audio(dts, &packet.payload);
                if self.video_config.is_none() && dts >= self.fragment_start + AUDIO_FRAGMENT_MS {
                    self.fragment_start = dts;
                    if let Some(fragment) = muxer.fragment()? {
                        out.extend_from_slice(&fragment);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The last fragment, when the file ends.
    pub fn finish(&mut self) -> Result<Vec<u8>, Fmp4Error> {
        Ok(match &mut self.muxer {
            Some(muxer) => muxer.finish()?.unwrap_or_default(),
            None => Vec::new(),
        })
    }
}
