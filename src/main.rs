//! The `prism` command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use prism::cluster::drain::DrainEnd;
use prism::config::{Config, Overrides};
use prism::logging::print_stderr;
use prism::reload::ConfigSource;
use prism::{App, Error};

/// How long `prism reload` waits for the running prism's answer (it reads every
/// user file before it answers).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connections get to finish after SIGINT/SIGTERM before prism exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(
    name = "prism",
    version,
    about = "One RTMP publish in, every platform out."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct Options {
    /// TOML configuration file (layered over the embedded defaults).
    #[arg(long, short, global = true, env = "PRISM_CONFIG")]
    config: Option<PathBuf>,
    /// RTMP listen address, e.g. 0.0.0.0:1935 (overrides the config file).
    #[arg(long, global = true)]
    rtmp: Option<std::net::SocketAddr>,
    /// HTTP (status API, metrics, dashboard) listen address, e.g. 127.0.0.1:8080.
    /// For `prism reload`: where the running prism listens.
    #[arg(long, global = true)]
    http: Option<std::net::SocketAddr>,
    /// RTMPS listen address, e.g. 0.0.0.0:1936 (needs [rtmps] cert_file and key_file).
    #[arg(long, global = true)]
    rtmps: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the relay (the default when no command is given).
    Serve,
    /// Load and validate the configuration and everything `serve` loads with it
    /// (log level, presets, user files, profiles, callback, TLS files), check that ffmpeg
    /// runs, print the effective values, and exit: non-zero, with `serve`'s
    /// message, on anything `serve` would refuse.
    CheckConfig,
    /// Ask the running prism to reload presets, user files, profiles and the [auth]
    /// callback (through its API at [http] listen, with [http] token /
    /// PRISM_HTTP__TOKEN). The running prism re-reads its own configuration file:
    /// a --config naming another file is refused.
    Reload,
    /// Print the masked form prism shows for a stream key in logs, status and
    /// errors (`****` and a 4-hex-digit hash of the key, not its last characters),
    /// to find a key's stream there.
    Fingerprint {
        /// The key; read from the first line of stdin when absent (keeps it out of
        /// the shell's history and the process list).
        key: Option<String>,
    },
}

fn main() -> ExitCode {
    give_big_buffers_back_when_freed();
    let cli = Cli::parse();
    if let Some(Command::Fingerprint { key }) = &cli.command {
        // Needs no configuration: the mask depends on the key alone.
        return fingerprint(key.as_deref());
    }
    let overrides = Overrides {
        rtmp_listen: cli.options.rtmp,
        http_listen: cli.options.http,
        rtmps_listen: cli.options.rtmps,
    };
    let config = match Config::load(cli.options.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(err) => {
            print_stderr(&format!("prism: {err}"));
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        // Answered above, before the configuration loads; the same answer here.
        Command::Fingerprint { key } => fingerprint(key.as_deref()),
        Command::CheckConfig => {
            match check_config(&config).and_then(|()| config.to_masked_toml()) {
                Ok(text) => {
                    // `prism check-config | head` closes the pipe early: not an error,
                    // and println! would panic on it.
                    use std::io::Write;
                    match std::io::stdout().lock().write_all(text.as_bytes()) {
                        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                            print_stderr(&format!("prism: {err}"));
                            ExitCode::FAILURE
                        }
                        _ => ExitCode::SUCCESS,
                    }
                }
                Err(err) => {
                    print_stderr(&format!("prism: {err}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reload => {
            // One request: a single-threaded runtime is plenty.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    print_stderr(&format!("prism: cannot start the runtime: {err}"));
                    return ExitCode::FAILURE;
                }
            };
            let file = cli.options.config.as_deref();
            match runtime.block_on(request_reload(&config, file)) {
                Ok(summary) => {
                    use std::io::Write;
                    // A closed stdout loses the summary, not the exit status.
                    let _ = writeln!(std::io::stdout(), "{summary}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    print_stderr(&format!("prism: {err}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
            // Logging first, so that nothing below writes to stderr directly (a
            // stderr that blocks or fails must not stop prism). Dropped last: it
            // flushes what is queued, within a bound.
            let logging = match prism::logging::init(&config) {
                Ok(guard) => guard,
                Err(err) => {
                    print_stderr(&format!("prism: {}", Error::from(err)));
                    return ExitCode::FAILURE;
                }
            };
            let source = ConfigSource::file(cli.options.config.clone(), overrides);
            let runtime = match config.runtime.build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    drop(logging);
                    print_stderr(&format!("prism: cannot start the runtime: {err}"));
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(serve(config, source));
            drop(runtime);
            drop(logging);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    print_stderr(&format!("prism: {err}"));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `prism check-config`'s checks beyond the configuration file itself: everything
/// `serve` loads before it listens (one function, [`prism::app::check`], for both),
/// and that the ffmpeg binary runs. The error is the one `serve` would print.
fn check_config(config: &Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async {
        prism::app::check(config).map_err(|err| err.to_string())?;
        let version = prism::app::ffmpeg_version(&config.transcode.ffmpeg)
            .await
            .map_err(|err| err.to_string())?;
        // stderr: stdout is the configuration alone, a file that can be loaded.
        print_stderr(&format!(
            "prism: re-encoding uses {}: {version}",
            config.transcode.ffmpeg
        ));
        Ok(())
    })
}

/// `prism fingerprint [KEY]`: the key's mask, exactly as prism prints it.
fn fingerprint(key: Option<&str>) -> ExitCode {
    use std::io::{BufRead, Write};
    let key = match key {
        Some(key) => key.to_owned(),
        None => {
            let mut line = String::new();
            if let Err(err) = std::io::stdin().lock().read_line(&mut line) {
                print_stderr(&format!("prism: cannot read the key from stdin: {err}"));
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if key.is_empty() {
        print_stderr("prism: no key: give it as an argument or on stdin");
        return ExitCode::from(2);
    }
    let _ = writeln!(std::io::stdout(), "{}", prism::mask::Masked(&key));
    ExitCode::SUCCESS
}

/// Allocations at least this big get pages of their own from the kernel (mmap), and
/// give them back when freed. glibc's initial value, made fixed.
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Makes glibc's malloc return big buffers (reassembly buffers of partial messages,
/// video frames) to the system as soon as they are freed.
///
/// By default glibc raises its mmap threshold each time an mmap'ed block is freed, up to
/// 32 MiB: after a flood of unfinished 1 MiB messages is closed, later buffers of that
/// size come from the heap, and freed heap memory mostly stays with the process (measured:
/// 80-210 MiB still resident 10 s after the connections of issue 16's attack closed, and
/// peaks near 500 MiB during it, with 256 MiB of partial messages allowed). A fixed
/// threshold turns the adjustment off, so every buffer of 128 KiB or more is mapped on its
/// own and unmapped when freed (RSS falls back to the baseline within moments), at the
/// cost of an mmap and munmap per such buffer: a few per video frame at most.
fn give_big_buffers_back_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a parameter of the allocator, before any thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
        }
    }
}

async fn serve(config: Config, source: ConfigSource) -> Result<(), Error> {
    let app = App::start_with_source(config, source).await?;
    tokio::select! {
        () = wait_for_stop(&app) => {}
        end = app.drained() => match end {
            DrainEnd::Empty => tracing::info!("drained: the last stream ended"),
            DrainEnd::TimedOut { live } => tracing::warn!(
                "drain timeout: {live} streams still live are closed; their encoders \
                 reconnect through the balancer"
            ),
        },
    }
    tracing::info!("shutting down");
    if !app.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM; on SIGHUP reloads presets, users, profiles and
/// the authorization callback (a broken file is refused with a clear error and the
/// old configuration stays); on SIGUSR1 begins draining.
async fn wait_for_stop(app: &App) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers; stop prism with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = usr1.recv() => {
                app.drain("SIGUSR1");
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                if let Err(err) = app.reload_from_source().await {
                    tracing::error!("reload refused, the previous configuration stays: {err}");
                }
            }
        }
    }
}

/// Where to reach the running prism's API from this machine: its listen address,
/// with a wildcard address replaced by loopback.
fn api_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// `prism reload`: `POST /api/v1/reload` to the running prism, and a one-line
/// summary of its answer. Any refusal or an unreachable prism is an error.
///
/// The running prism re-reads its own file, whatever `file` this command was given
/// (which only tells it where the API is and its token): `file` goes along as
/// `?config=`, and prism refuses (409) when it is not the file it runs with.
async fn request_reload(config: &Config, file: Option<&Path>) -> Result<String, String> {
    let mut url = url::Url::parse(&format!(
        "http://{}/api/v1/reload",
        api_address(config.http.listen)
    ))
    .map_err(|e| format!("cannot make the API's URL: {e}"))?;
    if let Some(file) = file {
        let file = prism::reload::absolute(file);
        url.query_pairs_mut()
            .append_pair("config", &file.to_string_lossy());
    }
    let url = url.to_string();
    // reqwest's rustls has no provider of its own here (see Cargo.toml): ring, as
    // everywhere in prism, even though this request is plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(RELOAD_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let mut request = client.post(&url);
    if let Some(token) = &config.http.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|err| {
        // The innermost cause ("Connection refused") is the one that helps.
        let mut root: &dyn std::error::Error = &err;
        while let Some(cause) = root.source() {
            root = cause;
        }
        let reason = if err.is_timeout() {
            format!("no answer within {RELOAD_TIMEOUT:?}")
        } else {
            root.to_string()
        };
        format!(
            "cannot reach prism at {url} (is it running, with [http] listen as given \
             here by --http / --config / PRISM_HTTP__LISTEN?): {reason}"
        )
    })?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with something other than JSON: {e}"))?;
    if !status.is_success() {
        let message = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!("reload refused ({status}): {message}"));
    }
    let count = |key: &str| body[key].as_u64().unwrap_or(0);
    let from = body["config_file"]
        .as_str()
        .map_or_else(|| "no configuration file".to_owned(), str::to_owned);
    let mut summary = format!(
        "reloaded from {from}: {} presets, {} users, {} profiles",
        count("presets"),
        count("users"),
        count("profiles")
    );
    let restart: Vec<&str> = body["needs_restart"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !restart.is_empty() {
        summary.push_str(&format!(
            "\nchanged but applied only after a restart: {}",
            restart.join(", ")
        ));
    }
    Ok(summary)
}
