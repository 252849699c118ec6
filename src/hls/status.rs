//! What the API shows of a stream's HLS: where it is, whether it is packaged
//! now, each rendition's live edge and memory, and the ladder encoder's health
//! (so a failing rung is as visible as a failing destination).

use std::sync::Arc;

use serde::Serialize;

use super::packager::Packager;
use super::rung::Rung;
use crate::transcode::{EncoderSnapshot, EncoderStatus};

/// A stream's HLS, for `streams[].hls`.
#[derive(Debug, Clone, Serialize)]
pub struct HlsStatus {
    /// The stream's playlist, by stream id (a user's stream is also at
    /// `/hls/APP/USER/index.m3u8`).
    pub url: String,
    /// Whether it is packaged now (someone asked within `idle_secs`).
    pub packaging: bool,
    /// The source and each rung of the ladder, while packaged.
    pub renditions: Vec<RenditionStatus>,
    /// The first rung's encoder, with a ladder and while packaged (the rungs
    /// share one unless a destination already encoded a rung's profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderSnapshot>,
    /// The last failure of a rung's encoder, if one failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_error: Option<String>,
    /// Why packaging failed (a video codec fMP4 does not carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One rendition's window.
#[derive(Debug, Clone, Serialize)]
pub struct RenditionStatus {
    /// `src` or the rung's profile.
    pub name: String,
    /// The media sequence number at the live edge.
    pub edge_msn: u64,
    /// Bytes its window holds.
    pub window_bytes: usize,
    /// The peak bit rate of its segments.
    pub bandwidth_bps: Option<u64>,
    /// An audio codec left out of it (video only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_left_out: Option<String>,
}

impl HlsStatus {
    /// The status of a stream not packaged now.
    pub fn idle(id: &str) -> Self {
        Self {
            url: format!("/hls/{id}/index.m3u8"),
            packaging: false,
            renditions: Vec::new(),
            encoder: None,
            encoder_error: None,
            error: None,
        }
    }

    /// The status of packaged stream `id`: its source rendition, its rungs,
    /// the ladder encoder and the packaging error, if any.
    pub fn of(
        id: &str,
        source: &Packager,
        rungs: &[Rung],
        encoders: &[Arc<EncoderStatus>],
        error: Option<String>,
    ) -> Self {
        let mut renditions = vec![rendition(super::SOURCE, source)];
        for rung in rungs {
            renditions.push(rendition(&rung.name, &rung.packager()));
        }
        Self {
            packaging: true,
            renditions,
            encoder: encoders.first().map(|e| e.snapshot()),
            encoder_error: encoders
                .iter()
                .find_map(|e| e.last_error())
                .map(|(error, _)| error),
            error,
            ..Self::idle(id)
        }
    }
}

fn rendition(name: &str, packager: &Packager) -> RenditionStatus {
    RenditionStatus {
        name: name.to_owned(),
        edge_msn: packager.edge().0,
        window_bytes: packager.held_bytes(),
        bandwidth_bps: packager.peak_bps(),
        audio_left_out: packager.left_out().map(|codec| format!("{codec:?}")),
    }
}
