//! One encode per profile per stream, one ffmpeg per stream where it can be:
//! whatever asks a stream for a profile (a destination, an HLS ladder rung)
//! takes a lease on that profile's output, keyed by the profile's name and its
//! ffmpeg arguments (a reload that changes them gives new leases a new encode).
//! A profile already encoded for the stream is shared; a new one joins the
//! stream's encoder that is still gathering its profiles, or starts one that
//! gathers for [`GATHER`]: the destinations a publish starts, and the rungs of a
//! ladder, all ask within that moment, so they get one ffmpeg process with one
//! decode and one encode per profile ([`super::encoder`]). A profile asked for
//! later gets a process of its own rather than restarting the running one
//! under the destinations already live.
//!
//! Each lease counts as a user of its encoder; when the last user of an
//! encoder leaves, it stops. An output whose own users all left is encoded on
//! until then (and taken again by a new lease for it): stopping it would mean
//! restarting ffmpeg under the other outputs' destinations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::encoder::{self, EncoderContext, Output};
use super::status::EncoderStatus;
use crate::hub::Hub;
use crate::stream_name::StreamName;

/// How long a stream's new encoder waits for more profiles before it starts.
/// Costs nothing at the destinations: ffmpeg starts from the stream's cached
/// GOP either way.
pub const GATHER: Duration = Duration::from_millis(300);

/// The running shared encoders, by source stream and profile.
#[derive(Debug)]
pub struct SharedEncoders {
    ctx: Arc<EncoderContext>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every leased output, by stream and profile.
    outputs: HashMap<Key, Entry>,
    /// Encoders by id, with their users.
    encoders: HashMap<u64, (Arc<Encoder>, usize)>,
    /// Per stream and extra inputs: the encoder still gathering, and what it
    /// gathered.
    forming: HashMap<Forming, (u64, Vec<Output>)>,
    next_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    app: String,
    name: String,
    profile: String,
    inputs: Vec<String>,
    args: Vec<String>,
}

/// What outputs must have in common to gather into one process: the stream,
/// and, for an encode that runs alone (see
/// [`SharedEncoders::lease_alone`]), its profile.
type Forming = (String, String, Option<String>);

#[derive(Debug)]
struct Entry {
    output: StreamName,
    status: Arc<EncoderStatus>,
    encoder: Arc<Encoder>,
}

/// One ffmpeg process (or, after a split, the processes of its profiles).
#[derive(Debug)]
struct Encoder {
    id: u64,
    stop: CancellationToken,
    /// Set when its task ended (its stream ended): a new broadcast of the same
    /// stream, whose destinations come while the last one's still drain, gets
    /// a new encoder rather than this one's ended outputs.
    finished: AtomicBool,
}

/// A hold on one profile's output of a stream: where it is published and its
/// status. Dropping the last lease on an encoder stops it.
#[derive(Debug)]
pub struct EncoderLease {
    shared: Arc<SharedEncoders>,
    encoder: u64,
    /// The encoder's output stream (in the context's private output hub).
    pub output: StreamName,
    /// The encoder's status, as this output sees it.
    pub status: Arc<EncoderStatus>,
}

impl SharedEncoders {
    /// No encoder yet; encoders run with `ctx`.
    pub fn new(ctx: Arc<EncoderContext>) -> Self {
        Self {
            ctx,
            state: Mutex::default(),
        }
    }

    /// Encoders (ffmpeg processes, or their split profiles') running now.
    pub fn len(&self) -> usize {
        lock(&self.state).encoders.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the outputs are published.
    pub fn output_hub(&self) -> &Arc<Hub> {
        &self.ctx.output_hub
    }

    /// The output streams (in [`output_hub`](Self::output_hub)) of every encode
    /// of `app/name` running now: where something inserted into the source (a
    /// cue point) must go too, since ffmpeg carries no data messages through.
    pub fn outputs_of(&self, app: &str, name: &str) -> Vec<StreamName> {
        lock(&self.state)
            .outputs
            .iter()
            .filter(|(key, _)| key.app == app && key.name == name)
            .map(|(_, entry)| entry.output.clone())
            .collect()
    }

    /// Whether `source` is live (an encoder has something to encode).
    pub fn source_live(&self, source: &StreamName) -> bool {
        self.ctx.hub.is_live(&source.app, &source.name)
    }

    /// Takes a lease on `source`'s output for profile `profile` (whose output
    /// arguments are `args`), starting an encoder in `tracker` if none has it.
    pub fn lease(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        source: &StreamName,
        profile: &str,
        args: Vec<String>,
    ) -> EncoderLease {
        self.take_lease(tracker, source, profile, None, args)
    }

    /// As [`lease`](Self::lease), for an encode that runs in a process of its
    /// own and reads `inputs` (ffmpeg input options, ending in `-i`) beside
    /// the stream: a generated picture, whose filter graph and inputs are no
    /// business of the stream's other encodes.
    pub fn lease_alone(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        source: &StreamName,
        profile: &str,
        inputs: Vec<String>,
        args: Vec<String>,
    ) -> EncoderLease {
        self.take_lease(tracker, source, profile, Some(inputs), args)
    }

    fn take_lease(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        source: &StreamName,
        profile: &str,
        alone: Option<Vec<String>>,
        args: Vec<String>,
    ) -> EncoderLease {
        let key = Key {
            app: source.app.clone(),
            name: source.name.clone(),
            profile: profile.to_owned(),
            inputs: alone.clone().unwrap_or_default(),
            args,
        };
        let mut state = lock(&self.state);
        if let Some(entry) = state.outputs.get(&key)
            && !entry.encoder.finished.load(Ordering::Acquire)
        {
            let (output, status, id) = (
                entry.output.clone(),
                Arc::clone(&entry.status),
                entry.encoder.id,
            );
            return self.hold(&mut state, id, output, status);
        }
        let output = self.ctx.output_name(&source.app, &source.name, profile);
        let status = Arc::new(EncoderStatus::default());
        let new = Output::new(
            profile.to_owned(),
            key.args.clone(),
            output.clone(),
            Arc::clone(&status),
        )
        .with_inputs(key.inputs.clone());
        let forming = (
            source.app.clone(),
            source.name.clone(),
            alone.map(|_| profile.to_owned()),
        );
        let id = match state.forming.get_mut(&forming) {
            Some((id, gathered)) => {
                gathered.push(new);
                *id
            }
            None => {
                let id = self.start(&mut state, tracker, source, forming.clone());
                state.forming.insert(forming, (id, vec![new]));
                id
            }
        };
        let encoder = Arc::clone(&state.encoders[&id].0);
        state.outputs.insert(
            key,
            Entry {
                output: output.clone(),
                status: Arc::clone(&status),
                encoder,
            },
        );
        self.hold(&mut state, id, output, status)
    }

    fn hold(
        self: &Arc<Self>,
        state: &mut State,
        id: u64,
        output: StreamName,
        status: Arc<EncoderStatus>,
    ) -> EncoderLease {
        if let Some((_, users)) = state.encoders.get_mut(&id) {
            *users += 1;
        }
        EncoderLease {
            shared: Arc::clone(self),
            encoder: id,
            output,
            status,
        }
    }

    /// Starts a new encoder of `source` that gathers its profiles for
    /// [`GATHER`], then runs them.
    fn start(
        self: &Arc<Self>,
        state: &mut State,
        tracker: &TaskTracker,
        source: &StreamName,
        forming: Forming,
    ) -> u64 {
        state.next_id += 1;
        let id = state.next_id;
        let encoder = Arc::new(Encoder {
            id,
            stop: CancellationToken::new(),
            finished: AtomicBool::new(false),
        });
        state.encoders.insert(id, (Arc::clone(&encoder), 0));
        let shared = Arc::clone(self);
        let source = source.clone();
        // A root span: the encoder serves several destinations, not one.
        let span = tracing::info_span!(parent: None, "encoder", stream = %source.masked(), id);
        tracker.spawn(
            async move {
                // An encode that runs alone has nothing to gather; it only
                // lets the lease that started it register its output.
                let gather = if forming.2.is_some() {
                    Duration::ZERO
                } else {
                    GATHER
                };
                tokio::select! {
                    () = tokio::time::sleep(gather) => {}
                    () = encoder.stop.cancelled() => {}
                }
                let outputs = {
                    let mut state = lock(&shared.state);
                    match state.forming.get(&forming) {
                        Some((gathering, _)) if *gathering == id => {
                            state.forming.remove(&forming).map(|(_, o)| o)
                        }
                        _ => None,
                    }
                };
                if let Some(outputs) = outputs
                    && !encoder.stop.is_cancelled()
                {
                    encoder::run(
                        Arc::clone(&shared.ctx),
                        source,
                        outputs,
                        encoder.stop.clone(),
                    )
                    .await;
                }
                encoder.finished.store(true, Ordering::Release);
            }
            .instrument(span),
        );
        id
    }
}

impl Drop for EncoderLease {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        let Some((encoder, users)) = state.encoders.get_mut(&self.encoder) else {
            return;
        };
        *users -= 1;
        if *users > 0 {
            return;
        }
        encoder.stop.cancel();
        let id = self.encoder;
        state.encoders.remove(&id);
        state.outputs.retain(|_, entry| entry.encoder.id != id);
        state.forming.retain(|_, (forming, _)| *forming != id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::backoff::BackoffPolicy;
    use crate::hub::HubLimits;

    /// Encoders of streams nobody publishes: each ends as soon as it gathered
    /// (nothing to encode), which leaves the leases' bookkeeping to test.
    fn shared() -> Arc<SharedEncoders> {
        Arc::new(SharedEncoders::new(Arc::new(EncoderContext {
            hub: Hub::new(HubLimits::default()),
            output_hub: Hub::new(HubLimits::default()),
            ffmpeg: "/nonexistent/ffmpeg".into(),
            slots: Arc::new(Semaphore::new(2)),
            max_encoders: 2,
            stall_timeout: Duration::from_secs(20),
            restart_backoff: BackoffPolicy::default(),
            outputs: AtomicU64::new(0),
        })))
    }

    fn stream(name: &str) -> StreamName {
        StreamName {
            app: "live".into(),
            name: name.into(),
            query: String::new(),
        }
    }

    fn args(profile: &str) -> Vec<String> {
        vec!["-vf".into(), format!("scale={profile}")]
    }

    #[tokio::test]
    async fn profiles_asked_together_share_an_encoder_and_the_last_lease_stops_it() {
        let shared = shared();
        let tracker = TaskTracker::new();
        let a = stream("a");
        let hd = shared.lease(&tracker, &a, "720p", args("720"));
        let sd = shared.lease(&tracker, &a, "480p", args("480"));
        let hd_again = shared.lease(&tracker, &a, "720p", args("720"));
        assert_eq!(hd.encoder, sd.encoder, "gathered into one encoder");
        assert_ne!(hd.output, sd.output, "an output per profile");
        assert_eq!(hd.output, hd_again.output, "one output per profile");
        assert!(Arc::ptr_eq(&hd.status, &hd_again.status));
        // The same profile with other arguments (a reload changed it) is
        // another output.
        let changed = shared.lease(&tracker, &a, "720p", args("721"));
        assert_ne!(changed.output, hd.output);
        // An encode that runs alone (a generated picture): a process of its
        // own, shared by the leases on it and by no other profile.
        let still = vec!["-i".to_owned(), "still.png".to_owned()];
        let pictured = shared.lease_alone(&tracker, &a, "picture", still.clone(), args("p"));
        let pictured_too = shared.lease_alone(&tracker, &a, "picture", still, args("p"));
        let alone = shared.lease_alone(&tracker, &a, "other", Vec::new(), args("o"));
        assert_ne!(pictured.encoder, hd.encoder);
        assert_ne!(pictured.output, hd.output);
        assert_eq!(pictured.output, pictured_too.output);
        assert_ne!(pictured.encoder, alone.encoder);
        drop((pictured, pictured_too, alone));
        // Another stream: another encoder.
        let other = shared.lease(&tracker, &stream("b"), "720p", args("720"));
        assert_ne!(other.encoder, hd.encoder);
        assert_eq!(shared.len(), 2);

        // Past the gathering, a new profile gets an encoder of its own.
        tokio::time::sleep(GATHER * 2).await;
        let late = shared.lease(&tracker, &a, "360p", args("360"));
        assert_ne!(late.encoder, hd.encoder);
        assert_eq!(shared.len(), 3);

        drop((hd, sd, changed));
        assert_eq!(shared.len(), 3, "a lease on it is left");
        drop(hd_again);
        assert_eq!(shared.len(), 2, "its last lease stopped it");
        drop((other, late));
        assert!(shared.is_empty());
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn an_encoder_whose_stream_ended_is_not_leased_again() {
        let shared = shared();
        let tracker = TaskTracker::new();
        let a = stream("a");
        let first = shared.lease(&tracker, &a, "720p", args("720"));
        // It gathers, finds the stream not live and ends.
        tokio::time::sleep(GATHER * 2).await;
        let next = shared.lease(&tracker, &a, "720p", args("720"));
        assert_ne!(next.encoder, first.encoder);
        assert_ne!(next.output, first.output);
        drop((first, next));
        assert!(shared.is_empty());
    }
}
