//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Label values are app, the stream's id (`stream_id`, which tells streams apart),
//! the displayed stream name (`stream`: user name or masked key, for people, and
//! not unique) and destination ids: never a key.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use super::HttpState;
use super::access::Access;
use super::api::{ApiError, stream_list};
use super::model::StreamState;
use crate::record::status::RecordingState;
use crate::relay::status::State as DestinationState;

/// Every destination state, for the one-hot `prism_destination_state` series.
const STATES: &[(DestinationState, &str)] = &[
    (DestinationState::Connecting, "connecting"),
    (DestinationState::Live, "live"),
    (DestinationState::Backoff, "backoff"),
    (DestinationState::Failed, "failed"),
    (DestinationState::Stopped, "stopped"),
    (DestinationState::WaitingForEncoder, "waiting_for_encoder"),
];

/// A label value with `\`, `"` and newlines escaped as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family {
    out: String,
}

impl Family {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Renders every series.
pub fn render(state: &HttpState) -> String {
    let list = stream_list(state, &Access::Open);
    let mut f = Family {
        out: String::with_capacity(4096),
    };
    f.header("prism_connections", "gauge", "RTMP connections open.");
    f.sample("prism_connections", &[], state.open_connections() as f64);
    f.header(
        "prism_waiting_players",
        "gauge",
        "Players waiting for a stream that is not live (at most rtmp.max_waiting_players).",
    );
    f.sample(
        "prism_waiting_players",
        &[],
        state.waiting_players.len() as f64,
    );
    f.header(
        "prism_waiting_players_evicted_total",
        "counter",
        "Waiting players closed to make room for a newer one.",
    );
    f.sample(
        "prism_waiting_players_evicted_total",
        &[],
        state.waiting_players.evicted() as f64,
    );
    f.header(
        "prism_http_connections",
        "gauge",
        "HTTP connections open (at most http.max_connections).",
    );
    f.sample(
        "prism_http_connections",
        &[],
        state.http_connections.get() as f64,
    );
    f.header(
        "prism_streams",
        "gauge",
        "Live streams, with those waiting for their publisher to come back.",
    );
    f.sample("prism_streams", &[], list.streams.len() as f64);
    f.header("prism_encoders", "gauge", "ffmpeg encoders running.");
    f.sample("prism_encoders", &[], state.relay.encoders_running() as f64);

    f.header(
        "prism_stream_bytes_in_total",
        "counter",
        "Media bytes received from the publisher.",
    );
    // Only streams with a publisher: a reconnecting stream has none to measure.
    let published = || {
        list.streams
            .iter()
            .filter_map(|s| s.publisher.as_ref().map(|p| (s, p)))
    };
    for (s, publisher) in published() {
        f.sample(
            "prism_stream_bytes_in_total",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            publisher.bytes_in as f64,
        );
    }
    f.header(
        "prism_stream_bitrate_bps",
        "gauge",
        "Publisher bitrate in bits per second.",
    );
    for (s, publisher) in published() {
        f.sample(
            "prism_stream_bitrate_bps",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            publisher.bitrate_bps as f64,
        );
    }
    f.header(
        "prism_stream_reconnecting",
        "gauge",
        "1 while the stream's publisher has dropped and its destinations wait for it.",
    );
    for s in &list.streams {
        f.sample(
            "prism_stream_reconnecting",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            f64::from(u8::from(s.state == StreamState::Reconnecting)),
        );
    }
    f.header(
        "prism_stream_state",
        "gauge",
        "1 for the stream's state: live (its publisher on air), standby (the slate on air), backup (the backup publisher on air), reconnecting (nothing on air).",
    );
    for s in &list.streams {
        f.sample(
            "prism_stream_state",
            &[
                ("app", &s.app),
                ("stream_id", &s.id),
                ("stream", &s.name),
                ("state", s.state.as_str()),
            ],
            1.0,
        );
    }
    f.header(
        "prism_stream_standby_seconds_total",
        "counter",
        "Seconds the standby slate was on air for the stream.",
    );
    for s in &list.streams {
        f.sample(
            "prism_stream_standby_seconds_total",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            s.inputs.standby_secs as f64,
        );
    }
    let recorded = || {
        list.streams
            .iter()
            .filter_map(|s| s.recording.as_ref().map(|r| (s, r)))
    };
    f.header(
        "prism_recording_bytes_total",
        "counter",
        "Bytes the stream's recording wrote to disk.",
    );
    for (s, r) in recorded() {
        f.sample(
            "prism_recording_bytes_total",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            r.bytes as f64,
        );
    }
    f.header(
        "prism_recording_failed",
        "gauge",
        "1 when the stream's recording stopped on a write error (disk full, a directory that cannot be written); the stream goes on.",
    );
    for (s, r) in recorded() {
        f.sample(
            "prism_recording_failed",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            f64::from(u8::from(r.state == RecordingState::Failed)),
        );
    }
    if let Some(uploads) = state.relay.uploads() {
        f.header(
            "prism_uploads_pending",
            "gauge",
            "Complete recordings waiting for their upload (failed ones are retried).",
        );
        f.sample("prism_uploads_pending", &[], uploads.pending_count as f64);
        f.header(
            "prism_uploads_total",
            "counter",
            "Recordings uploaded to object storage.",
        );
        f.sample("prism_uploads_total", &[], uploads.uploaded as f64);
        f.header(
            "prism_upload_failures_total",
            "counter",
            "Upload attempts that failed (each is retried later).",
        );
        f.sample(
            "prism_upload_failures_total",
            &[],
            uploads.failed_attempts as f64,
        );
    }
    if let Some(hls) = &state.hls {
        f.header(
            "prism_hls_streams",
            "gauge",
            "Streams whose HLS is being packaged (someone asked for it within hls.idle_secs).",
        );
        f.sample("prism_hls_streams", &[], hls.running() as f64);
        f.header(
            "prism_hls_window_bytes",
            "gauge",
            "Bytes of segments and parts the HLS windows hold, every stream and rendition.",
        );
        f.sample("prism_hls_window_bytes", &[], hls.window_bytes() as f64);
    }
    f.header("prism_stream_players", "gauge", "Local players watching.");
    for s in &list.streams {
        f.sample(
            "prism_stream_players",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            s.players as f64,
        );
    }
    f.header(
        "prism_stream_drop_episodes_total",
        "counter",
        "Times a subscriber (player, destination or encoder) fell behind and dropped frames to the next keyframe.",
    );
    for s in &list.streams {
        f.sample(
            "prism_stream_drop_episodes_total",
            &[("app", &s.app), ("stream_id", &s.id), ("stream", &s.name)],
            s.drop_episodes as f64,
        );
    }

    type Field = fn(&super::model::DestinationJson) -> f64;
    let per_destination: [(&str, &str, &str, Field); 5] = [
        (
            "prism_destination_bytes_out_total",
            "counter",
            "Bytes sent to the destination.",
            |d| d.bytes_out as f64,
        ),
        (
            "prism_destination_bitrate_bps",
            "gauge",
            "Destination bitrate in bits per second.",
            |d| d.bitrate_bps as f64,
        ),
        (
            "prism_destination_dropped_frames_total",
            "counter",
            "Frames dropped because the destination was slow.",
            |d| d.dropped_frames as f64,
        ),
        (
            "prism_destination_reconnects_total",
            "counter",
            "Destination reconnect attempts.",
            |d| d.reconnects as f64,
        ),
        (
            "prism_destination_standby_seconds_total",
            "counter",
            "Seconds of standby slate the destination's current connection received.",
            |d| d.standby_secs as f64,
        ),
    ];
    for (name, kind, help, field) in per_destination {
        f.header(name, kind, help);
        for s in &list.streams {
            for d in &s.destinations {
                let labels = [
                    ("app", s.app.as_str()),
                    ("stream_id", s.id.as_str()),
                    ("stream", s.name.as_str()),
                    ("destination", d.id.as_str()),
                ];
                f.sample(name, &labels, field(d));
            }
        }
    }
    f.header(
        "prism_destination_state",
        "gauge",
        "1 for the destination's current state, 0 for the others.",
    );
    for s in &list.streams {
        for d in &s.destinations {
            for (state, word) in STATES {
                let labels = [
                    ("app", s.app.as_str()),
                    ("stream_id", s.id.as_str()),
                    ("stream", s.name.as_str()),
                    ("destination", d.id.as_str()),
                    ("state", word),
                ];
                f.sample(
                    "prism_destination_state",
                    &labels,
                    f64::from(u8::from(d.state == *state)),
                );
            }
        }
    }
    let dropped = crate::logging::dropped_lines();
    f.header(
        "prism_log_lines_dropped_total",
        "counter",
        "Log lines not written: rate_limit (over a client address's or all addresses' log budget), backpressure (stderr did not keep up), write_error (stderr failed).",
    );
    for (reason, lines) in [
        ("rate_limit", dropped.rate_limit),
        ("backpressure", dropped.backpressure),
        ("write_error", dropped.write_error),
    ] {
        f.sample(
            "prism_log_lines_dropped_total",
            &[("reason", reason)],
            lines as f64,
        );
    }
    f.out
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    super::access::authorize_read(&state, &headers)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
