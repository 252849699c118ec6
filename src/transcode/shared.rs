//! One encoder per profile per stream: the destinations of a stream that ask for
//! the same profile (by name, with the same ffmpeg arguments: a reload that
//! changes them gives new destinations a new encoder) share one encoder and its
//! output,
//! instead of each running its own ffmpeg on the same input. The first
//! destination that asks starts it; each holds a lease; when the last lease is
//! dropped (its destination removed or ended), the encoder stops. A destination
//! that reconnects, or is restarted, keeps or takes a lease on the running
//! encoder. The encoder's status is shared too: every destination on it shows
//! the same process, restarts and errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::encoder::{self, EncoderContext};
use super::status::EncoderStatus;
use crate::stream_name::StreamName;

/// The running shared encoders, by source stream and profile.
#[derive(Debug)]
pub struct SharedEncoders {
    ctx: Arc<EncoderContext>,
    running: Mutex<HashMap<Key, Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    app: String,
    name: String,
    profile: String,
    args: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    output: StreamName,
    status: Arc<EncoderStatus>,
    stop: CancellationToken,
    users: usize,
    /// Tells this encoder from a later one of the same key, so that a late
    /// lease of a stopped encoder never touches its successor.
    generation: u64,
    /// Set when the encoder's task ended (its stream ended): a new broadcast of
    /// the same stream, whose destinations come while the last one's still
    /// drain, gets a new encoder rather than this one's ended output.
    finished: Arc<AtomicBool>,
}

/// A destination's hold on a shared encoder: where its output is published and
/// its status. Dropping the last lease stops the encoder.
#[derive(Debug)]
pub struct EncoderLease {
    shared: Arc<SharedEncoders>,
    key: Key,
    generation: u64,
    /// The encoder's output stream (in the context's private output hub).
    pub output: StreamName,
    /// The encoder's status.
    pub status: Arc<EncoderStatus>,
}

impl SharedEncoders {
    /// No encoder yet; encoders run with `ctx`.
    pub fn new(ctx: Arc<EncoderContext>) -> Self {
        Self {
            ctx,
            running: Mutex::default(),
        }
    }

    /// Shared encoders running now.
    pub fn len(&self) -> usize {
        lock(&self.running).len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a lease on the encoder of `source` with `args` (re-encode profile
    /// `profile`), starting it in `tracker` if none runs.
    pub fn lease(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        source: &StreamName,
        profile: &str,
        args: Vec<String>,
    ) -> EncoderLease {
        lease(self, tracker, source, profile, args)
    }
}

fn lease(
    shared: &Arc<SharedEncoders>,
    tracker: &TaskTracker,
    source: &StreamName,
    profile: &str,
    args: Vec<String>,
) -> EncoderLease {
    let ctx = &shared.ctx;
    let key = Key {
        app: source.app.clone(),
        name: source.name.clone(),
        profile: profile.to_owned(),
        args,
    };
    let mut running = lock(&shared.running);
    if let Some(entry) = running.get_mut(&key)
        && !entry.finished.load(Ordering::Acquire)
    {
        entry.users += 1;
        return EncoderLease {
            shared: Arc::clone(shared),
            output: entry.output.clone(),
            status: Arc::clone(&entry.status),
            generation: entry.generation,
            key,
        };
    }
    let output = ctx.output_name(&source.app, &source.name, profile);
    let generation = output_serial(&output);
    let status = Arc::new(EncoderStatus::default());
    let stop = CancellationToken::new();
    // A root span: the encoder serves several destinations, not one.
    let span = tracing::info_span!(parent: None, "encoder", stream = %source.masked(), profile);
    let finished = Arc::new(AtomicBool::new(false));
    let run = encoder::run(
        Arc::clone(ctx),
        source.clone(),
        output.clone(),
        key.args.clone(),
        Arc::clone(&status),
        stop.clone(),
    );
    let done = Arc::clone(&finished);
    tracker.spawn(
        async move {
            run.await;
            done.store(true, Ordering::Release);
        }
        .instrument(span),
    );
    running.insert(
        key.clone(),
        Entry {
            output: output.clone(),
            status: Arc::clone(&status),
            stop,
            users: 1,
            generation,
            finished,
        },
    );
    EncoderLease {
        shared: Arc::clone(shared),
        key,
        generation,
        output,
        status,
    }
}

impl Drop for EncoderLease {
    fn drop(&mut self) {
        let mut running = lock(&self.shared.running);
        let Some(entry) = running.get_mut(&self.key) else {
            return;
        };
        if entry.generation != self.generation {
            return;
        }
        entry.users -= 1;
        if entry.users == 0 {
            entry.stop.cancel();
            running.remove(&self.key);
        }
    }
}

/// The serial number [`EncoderContext::output_name`] put at the end of the name.
fn output_serial(output: &StreamName) -> u64 {
    output
        .name
        .rsplit('#')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
