//! A destination that needs video, on a stream that turns out to have none:
//! before its first connection it waits until the stream shows whether it
//! carries video ([`crate::hub::tracks`]) and, if it does not, leases the
//! stream's generated-picture encode ([`crate::transcode::generated`]) to send
//! instead of the stream itself.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::hub::Tracks;
use crate::relay::RelayContext;
use crate::relay::status::DestinationStatus;
use crate::stream_name::StreamName;
use crate::transcode::AudioOnlyVideo;
use crate::transcode::generated;
use crate::transcode::shared::EncoderLease;

/// How often the destination looks at the stream's tracks while they are not
/// known: audio that arrives before the picture's encode subscribes never
/// reaches this destination, so it looks often (only until it knows).
const TRACKS_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// What the destination sends.
pub(super) enum Source {
    /// The stream as it is (it has video, or the setting is off).
    Stream,
    /// The generated picture's encode, with the stream's audio.
    Picture(EncoderLease),
    /// Nothing: the stream ended or the destination stopped while it waited.
    Ended,
}

/// Decides, for a destination of `app/name` that needs video, between the
/// stream and a generated picture (`picture`).
pub(super) async fn choose(
    ctx: &RelayContext,
    (app, name): (&str, &str),
    picture: &AudioOnlyVideo,
    status: &DestinationStatus,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> Source {
    if !picture.is_on() {
        return Source::Stream;
    }
    loop {
        let Some(stream) = ctx
            .hub
            .stream(app, name)
            .filter(|_| ctx.hub.is_live(app, name))
        else {
            return Source::Ended;
        };
        match stream.tracks() {
            Tracks::Video => return Source::Stream,
            Tracks::AudioOnly => break,
            Tracks::Unknown => {}
        }
        tokio::select! {
            () = tokio::time::sleep(TRACKS_POLL) => {}
            () = stop.cancelled() => return Source::Ended,
            () = ended.cancelled() => return Source::Ended,
        }
    }
    tracing::info!(picture = %picture, "the stream has no video: sending it with a generated picture");
    let source = StreamName {
        app: app.to_owned(),
        name: name.to_owned(),
        query: String::new(),
    };
    let lease = ctx.shared_encoders.lease_alone(
        &ctx.tracker,
        &source,
        generated::PROFILE,
        picture.input_args(),
        picture.output_args(),
    );
    status.set_generated(Arc::clone(&lease.status));
    Source::Picture(lease)
}
