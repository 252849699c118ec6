//! The `prism` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use prism::config::{Config, Overrides};
use prism::{App, Error};
use tracing_subscriber::EnvFilter;

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
    /// Load and validate the configuration, print the effective values, and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        rtmp_listen: cli.options.rtmp,
        http_listen: cli.options.http,
        rtmps_listen: cli.options.rtmps,
    };
    let config = match Config::load(cli.options.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("prism: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => match toml_string(&config) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("prism: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => {
            let reload = Reload {
                file: cli.options.config.clone(),
                overrides: overrides.clone(),
            };
            let runtime = match config.runtime.build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("prism: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config, reload)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("prism: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn toml_string(config: &Config) -> Result<String, String> {
    let value = figment::Figment::from(figment::providers::Serialized::defaults(config))
        .extract::<figment::value::Value>()
        .map_err(|e| e.to_string())?;
    Ok(format!("{value:#?}"))
}

fn init_logging(config: &Config) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .map_err(|e| Error::Logging(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| Error::Logging(e.to_string()))
}

/// Where the configuration came from, to read it again on SIGHUP.
struct Reload {
    file: Option<PathBuf>,
    overrides: Overrides,
}

async fn serve(config: Config, reload: Reload) -> Result<(), Error> {
    init_logging(&config)?;
    let app = App::start(config).await?;
    wait_for_stop(&app, &reload).await;
    tracing::info!("shutting down");
    if !app.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM; on SIGHUP reloads presets, users, profiles and
/// the authorization callback (a broken file is refused with a clear error and the
/// old configuration stays).
async fn wait_for_stop(app: &App, reload: &Reload) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop prism with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let result = Config::load(reload.file.as_deref(), &reload.overrides)
                    .map_err(Error::from)
                    .and_then(|config| app.reload(&config));
                if let Err(err) = result {
                    tracing::error!("reload refused, the previous configuration stays: {err}");
                }
            }
        }
    }
}
