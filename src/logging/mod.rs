//! prism's own log: tracing to stderr, in a way that can neither be flooded from
//! the network nor stop the relay.
//!
//! - **Never blocking**: lines go through a bounded queue to a writer thread
//!   (tracing-appender's lossy non-blocking writer). When stderr cannot keep up
//!   (a pipe nobody reads, a slow terminal) the newest lines are dropped and
//!   counted; no task ever waits on stderr.
//! - **Never failing**: the writer thread writes through [`stderr::NeverFails`],
//!   so a stderr that fails (a full disk, a closed pipe) costs the lines, counted,
//!   and never a panic (`eprintln!` panics on such a stderr, and tracing reports
//!   its write errors with it). Panics themselves are logged through the same
//!   writer instead of the default hook's blocking write to stderr.
//! - **Bounded**: lines that client connections cause are rate-limited per
//!   address and for all addresses together ([`peer_limit`]).
//!
//! What did not reach stderr is in `/metrics` ([`dropped_lines`]) and in one
//! summary line every `log.summary_secs`.

pub mod levels;
pub mod peer_limit;
pub mod stderr;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::Config;
use levels::Levels;
use peer_limit::{Budgets, PeerLimit};
pub use stderr::print as print_stderr;

/// How long prism waits at exit for buffered lines to reach stderr; a stderr
/// that takes longer (a stalled pipe) keeps them.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `log.level` or `RUST_LOG` is not a valid filter.
    #[error("log.level / RUST_LOG: {0}")]
    Filter(String),
    /// Another logger is installed already.
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// Log lines that never reached stderr, by reason, since prism started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedLines {
    /// Suppressed by the rate limit for client addresses.
    pub rate_limit: u64,
    /// Dropped because stderr did not keep up and the queue was full.
    pub backpressure: u64,
    /// Lost because writing to stderr failed.
    pub write_error: u64,
}

struct Counters {
    limit: Arc<PeerLimit>,
    backpressure: ErrorCounter,
    write_errors: Arc<AtomicU64>,
}

impl Counters {
    fn read(&self) -> DroppedLines {
        DroppedLines {
            rate_limit: self.limit.total(),
            backpressure: self.backpressure.dropped_lines() as u64,
            write_error: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// The counters of the process's logger, once [`init`] installed it.
static COUNTERS: OnceLock<Counters> = OnceLock::new();

/// Lines that never reached stderr since [`init`] (all zero without it, e.g. when
/// prism runs inside a test with a logger of the test's own).
pub fn dropped_lines() -> DroppedLines {
    COUNTERS.get().map(Counters::read).unwrap_or_default()
}

/// The level filter: `RUST_LOG` when it is set and valid, else `log.level`. Also
/// what `prism check-config` checks, so that it refuses the filters `init` refuses.
pub fn levels(config: &Config) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .map_err(|e| LoggingError::Filter(e.to_string()))
}

/// Installs prism's logger for the whole process, as `config`'s `[log]` says
/// (`RUST_LOG` overrides `log.level`). Keep the guard until exit: dropping it
/// writes the last summary and waits (at most [`FLUSH_TIMEOUT`]) for the lines
/// still queued.
pub fn init(config: &Config) -> Result<LogGuard, LoggingError> {
    let log = &config.log;
    let levels = levels(config)?;
    let write_errors = Arc::new(AtomicU64::new(0));
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(log.buffer_lines)
        .thread_name("prism-log")
        .finish(stderr::NeverFails::new(
            std::io::stderr(),
            Arc::clone(&write_errors),
        ));
    let backpressure = writer.error_counter();
    let limit = PeerLimit::new(Budgets::from_config(log));
    let output = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .log_internal_errors(false);
    let output = if log.format == "json" {
        output.json().boxed()
    } else {
        output.boxed()
    };
    // Plain layers, no per-layer filters: levels, then the rate limit, then out.
    tracing_subscriber::registry()
        .with(Levels::new(levels))
        .with(limit.layer())
        .with(output)
        .try_init()
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    let counters = Counters {
        limit: Arc::clone(&limit),
        backpressure,
        write_errors,
    };
    let _ = COUNTERS.set(counters);
    log_panics();
    let summary = Summary::start(limit, Duration::from_secs(log.summary_secs));
    Ok(LogGuard {
        summary,
        worker: Some(worker),
    })
}

/// Panics are logged through the log's writer: the default hook writes to
/// stderr itself, and blocks the panicking thread (a runtime thread, serving
/// everyone) for as long as a stalled stderr pipe stays full.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(thread, "{info}\n{backtrace}");
        } else {
            tracing::error!(thread, "{info}");
        }
    }));
}

/// Keeps the logger's threads; see [`init`].
pub struct LogGuard {
    summary: Option<Summary>,
    worker: Option<WorkerGuard>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").finish_non_exhaustive()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(summary) = self.summary.take() {
            summary.finish();
        }
        if let Some(worker) = self.worker.take() {
            flush_within(worker, FLUSH_TIMEOUT);
        }
    }
}

/// Drops tracing-appender's guard, which flushes the queue, on a thread of its
/// own, and waits for it at most `limit`: the guard waits for the writer thread,
/// which a stalled stderr holds for ever, and may print (and panic) when it gives
/// up. prism then exits without the lines still queued.
fn flush_within(worker: WorkerGuard, limit: Duration) {
    let slot = Arc::new(Mutex::new(Some(worker)));
    let theirs = Arc::clone(&slot);
    let (done, finished) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("prism-log-flush".to_owned())
        .spawn(move || {
            drop(theirs.lock().unwrap_or_else(|p| p.into_inner()).take());
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = finished.recv_timeout(limit);
        }
        // No thread to wait on: leave the queued lines rather than risk blocking.
        Err(_) => std::mem::forget(slot.lock().unwrap_or_else(|p| p.into_inner()).take()),
    }
}

/// The thread that writes the periodic summary of lines not written.
struct Summary {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Summary {
    fn start(limit: Arc<PeerLimit>, period: Duration) -> Option<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("prism-log-summary".to_owned())
            .spawn(move || {
                let mut last = (Instant::now(), dropped_lines());
                loop {
                    let done = !matches!(
                        stopped.recv_timeout(period),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    summarize(&limit, &mut last);
                    if done {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Self { stop, thread })
    }

    /// Writes the summary of the time since the last one, and ends the thread.
    fn finish(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// One line about what did not reach stderr since `last`, if anything did not.
/// It is logged outside any connection span, so the rate limit never holds it
/// back (stderr itself still may).
fn summarize(limit: &PeerLimit, last: &mut (Instant, DroppedLines)) {
    let now = (Instant::now(), dropped_lines());
    let suppressed = limit.take_suppressed();
    let backpressure = now.1.backpressure.saturating_sub(last.1.backpressure);
    let write_errors = now.1.write_error.saturating_sub(last.1.write_error);
    let secs = now.0.saturating_duration_since(last.0).as_secs().max(1);
    *last = now;
    if suppressed.lines == 0 && backpressure == 0 && write_errors == 0 {
        return;
    }
    let top = suppressed
        .top
        .map(|(ip, n)| format!("; most from {ip}: {n}"))
        .unwrap_or_default();
    let addresses = match suppressed.addresses {
        1 => "1 client address".to_owned(),
        n => format!("{n} client addresses"),
    };
    tracing::warn!(
        "log lines not written in the last {secs}s: {} over the log rate limit \
         ({addresses}{top}), {backpressure} because stderr did not keep up, \
         {write_errors} on stderr write errors",
        suppressed.lines,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that keeps everything, for reading back what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn connection_lines_are_limited_per_address_at_any_level_and_others_are_not() {
        let limit = PeerLimit::new(Budgets {
            peer_burst: 3,
            peer_per_sec: 1.0 / 60.0,
            all_burst: 1000,
            all_per_sec: 1000.0,
        });
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry()
            .with(Levels::new(EnvFilter::new("warn")))
            .with(limit.layer())
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            let a: std::net::SocketAddr = "127.1.0.1:5000".parse().unwrap();
            let b: std::net::SocketAddr = "127.1.0.2:5001".parse().unwrap();
            tracing::info_span!("rtmp", peer = %a).in_scope(|| {
                for i in 0..10 {
                    tracing::warn!("closing connection {i}");
                }
            });
            // The listener's refusals carry the address as a field of their own,
            // and count against the same budget.
            tracing::warn!(peer = %a, "connection refused");
            tracing::info_span!("rtmps", peer = %b).in_scope(|| {
                // Below the level: not logged, and no token spent on them.
                for _ in 0..5 {
                    tracing::info!("publishing");
                }
                // A span within the connection's span: still that address's.
                tracing::warn_span!("inner").in_scope(|| {
                    for _ in 0..4 {
                        tracing::warn!("from a nested span");
                    }
                });
            });
            for i in 0..50 {
                tracing::warn!("prism's own line {i}");
            }
        });
        let lines = out.lines();
        let of = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        assert_eq!(of("closing connection"), 3, "{lines:#?}");
        assert_eq!(
            of("rtmp{peer=127.1.0.1:5000}: prism::logging::tests: closing"),
            3
        );
        assert_eq!(of("connection refused"), 0);
        assert_eq!(of("publishing"), 0);
        assert_eq!(of("rtmps{peer=127.1.0.2:5001}:inner: "), 3);
        assert_eq!(of("prism's own line"), 50);
        let suppressed = limit.take_suppressed();
        assert_eq!((suppressed.lines, suppressed.addresses), (7 + 1 + 1, 2));
        assert_eq!(
            suppressed.top,
            Some(("127.1.0.1".parse().unwrap(), 8)),
            "{suppressed:?}"
        );
        assert_eq!(limit.total(), 9);
    }
}
