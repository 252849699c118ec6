//! Connection workers: with `[runtime] worker_threads` other than 1, each RTMP
//! connection is handed to one of several single-threaded runtimes, each on a
//! thread of its own, in turn. A connection's socket is moved to its worker's
//! reactor, and whatever its task starts (a publisher's destinations, their
//! encoders, their timers) runs on that worker too, so a stream's fan-out stays
//! on one thread: no work stealing, no wake-ups across threads for the writes a
//! packet causes. A work-stealing runtime moves tasks between threads and costs
//! more per delivered Mbit than one thread does (BENCHMARKS.md, "Many streams");
//! these workers cost what one thread costs, on every core.
//!
//! The runtime `main` builds runs everything else (the listeners, HTTP, the
//! relay's API actions) and, with one worker thread, the connections too.

use std::net::TcpStream as StdTcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The connection workers: none, or several single-threaded runtimes.
#[derive(Debug, Default)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// An accepted connection: where it is, or on its way to a worker, off every
/// reactor until its task runs there.
#[derive(Debug)]
pub enum Incoming {
    /// Served on the runtime that accepted it.
    Here(TcpStream),
    /// Moving to a worker.
    Moving(StdTcpStream),
}

impl Incoming {
    /// The socket, registered with the reactor of the runtime this runs on.
    pub fn arrive(self) -> std::io::Result<TcpStream> {
        match self {
            Incoming::Here(socket) => Ok(socket),
            Incoming::Moving(socket) => TcpStream::from_std(socket),
        }
    }
}

impl Workers {
    /// `count` workers (0: none, every connection stays on the caller's runtime).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Self::default();
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let stop = workers.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("prism-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(stop.cancelled());
                    // Dropped here, on its own thread: tasks still on it end.
                    drop(runtime);
                })?;
            workers.handles.push(handle);
            lock(&workers.threads).push(thread);
        }
        Ok(workers)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Where `socket` is served: the next worker in turn (its handle, and the
    /// socket taken off this runtime's reactor), or here without workers.
    pub fn route(&self, socket: TcpStream) -> std::io::Result<(Option<Handle>, Incoming)> {
        if self.handles.is_empty() {
            return Ok((None, Incoming::Here(socket)));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        Ok((
            Some(self.handles[i].clone()),
            Incoming::Moving(socket.into_std()?),
        ))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in lock(&self.threads).drain(..) {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
