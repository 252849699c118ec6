//! Starting a live stream's destinations: resolve them, then one supervised push
//! task each in the shutdown tree ([`super::push::run`]). A publisher back within
//! its grace period resumes its stream's destinations instead ([`super::grace`]).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::stream_name::StreamName;
use crate::transcode::AudioOnlyVideo;

use super::destination::{DestinationSpec, resolve};
use super::status::{DestinationSnapshot, DestinationStatus};
use super::stream::{DestinationEntry, Ownership, RelayHandle, StreamId, StreamRelay};
use super::tables::Tables;
use super::{Grant, Relay, push};

impl Relay {
    /// Starts the destinations of a stream that just went live, as `grant` allows.
    /// `kick` is cancelled when an operator kicks the publisher.
    pub fn start(
        self: &Arc<Self>,
        name: &StreamName,
        grant: &Grant,
        kick: CancellationToken,
    ) -> RelayHandle {
        let user = grant.user.as_ref();
        let key = (name.app.clone(), name.name.clone());
        if let Some(handle) = self.resume(name, &key, &kick) {
            return handle;
        }
        let tables = self.tables();
        let resolution = resolve(
            &name.query,
            user,
            &grant.destinations,
            &tables.presets,
            &tables.profiles,
        );
        // One line per publish, however much was wrong with it: the problems are
        // already summarised (unknown parameters counted, not listed).
        if !resolution.problems.is_empty() {
            tracing::warn!(
                stream = %name.masked(),
                "destinations: {}",
                resolution.problems.join("; ")
            );
        }
        let stream = self.register(|id| StreamRelay {
            id,
            name: name.clone(),
            user: user.map(|u| u.name.clone()),
            stop: self.shutdown.child_token(),
            ended: CancellationToken::new(),
            kick: Mutex::new(kick),
            ownership: Ownership::default(),
            problems: resolution.problems_shown(),
            other_query_ignored: AtomicBool::new(false),
            destinations: Mutex::new(Vec::new()),
            recording: std::sync::OnceLock::new(),
            cues: super::cue::budget(),
        });
        self.start_recording(&stream, user);
        for spec in resolution.destinations {
            self.spawn_destination(&stream, spec, 0, &tables);
        }
        self.streams.insert(key.clone(), Arc::clone(&stream));
        RelayHandle {
            relay: Arc::clone(self),
            key,
            stream,
            generation: 0,
        }
    }

    /// Records the stream when `[record]` (or its user's file) says so, under its
    /// public name: the user's name, else the stream id.
    fn start_recording(&self, stream: &Arc<StreamRelay>, user: Option<&crate::users::User>) {
        let config = &self.ctx.record.config;
        let setting = user.map(|u| &u.record);
        if !setting.and_then(|r| r.enabled).unwrap_or(config.enabled) {
            return;
        }
        let recording = crate::record::Recording {
            dir: setting
                .and_then(|r| r.dir.clone())
                .unwrap_or_else(|| config.dir.clone()),
            app: stream.name.app.clone(),
            key: stream.name.name.clone(),
            name: user.map_or_else(|| stream.id.to_string(), |u| u.name.clone()),
        };
        let status = recording.start(&self.ctx.record, stream.stop.clone());
        let _ = stream.recording.set(status);
    }

    /// Creates a stream's relay under a fresh id and indexes it by that id. The
    /// id is drawn again in the (2^-128) event that a live stream has it, so ids
    /// are unique among live streams by construction, not only by probability.
    pub(super) fn register(&self, make: impl FnOnce(StreamId) -> StreamRelay) -> Arc<StreamRelay> {
        let mut rng = rand::rng();
        loop {
            let id = StreamId::random(&mut rng);
            if let dashmap::mapref::entry::Entry::Vacant(slot) = self.by_id.entry(id.clone()) {
                let stream = Arc::new(make(id));
                slot.insert(Arc::clone(&stream));
                return stream;
            }
        }
    }

    pub(super) fn spawn_destination(
        &self,
        stream: &Arc<StreamRelay>,
        spec: DestinationSpec,
        reconnects: u64,
        tables: &Tables,
    ) -> Arc<DestinationStatus> {
        // A re-encoded destination shares its stream's encoder for its profile.
        let encoder = spec.profile.as_deref().and_then(|name| {
            let profile = tables.profiles.get(name)?;
            let source = crate::stream_name::StreamName {
                app: stream.name.app.clone(),
                name: stream.name.name.clone(),
                query: String::new(),
            };
            Some(self.ctx.shared_encoders.lease(
                &self.ctx.tracker,
                &source,
                name,
                profile.args.clone(),
            ))
        });
        // One that needs video and has no profile of its own gets a generated
        // picture if the stream turns out to have none.
        let picture = (encoder.is_none() && spec.constraints.needs_video)
            .then(|| tables.audio_only_video.clone())
            .filter(AudioOnlyVideo::is_on);
        let status = Arc::new(DestinationStatus::new(
            spec.id.clone(),
            spec.preset.clone(),
            spec.target.masked(),
            spec.profile.clone(),
            encoder.as_ref().map(|lease| Arc::clone(&lease.status)),
        ));
        for _ in 0..reconnects {
            status.count_reconnect();
        }
        let name = &stream.name;
        // A root span: the destination's logs must not read as the publisher's.
        let span = tracing::info_span!(
            parent: None,
            "push",
            stream = %name.masked(),
            stream_id = %stream.id,
            destination = %spec.id,
            url = %spec.target.masked(),
        );
        tracing::info!(parent: &span, "starting destination");
        let stop = stream.stop.child_token();
        stream.lock().push(DestinationEntry {
            spec: spec.clone(),
            status: Arc::clone(&status),
            stop: stop.clone(),
        });
        self.ctx.tracker.spawn(
            push::run(
                Arc::clone(&self.ctx),
                name.app.clone(),
                name.name.clone(),
                spec,
                encoder,
                picture,
                Arc::clone(&status),
                stop,
                stream.ended.clone(),
            )
            .instrument(span),
        );
        status
    }

    /// The destinations of a live stream, by app and stream key.
    pub fn destinations(&self, app: &str, name: &str) -> Vec<DestinationSnapshot> {
        self.streams
            .get(&(app.to_owned(), name.to_owned()))
            .map(|stream| stream.snapshots())
            .unwrap_or_default()
    }
}
