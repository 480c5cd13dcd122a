//! The `wasmtel` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtel::{Config, Host};

/// Telemetry host for inference and GPU machines.
#[derive(Debug, Parser)]
#[command(name = "wasmtel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: event intake, Prometheus /metrics, OTLP push.
    Serve {
        /// TOML configuration file (defaults apply without one).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Inspect plugins without a running host.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Send realistic inference events to a running host.
    Demo {
        /// The host's intake URL.
        #[arg(long, default_value = "http://127.0.0.1:4318")]
        target: String,
        /// Simulated requests per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Stop after this long, e.g. `30s` (default: run until interrupted).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Stop after this many simulated requests.
        #[arg(long)]
        requests: Option<u64>,
        /// Random seed, for reproducible data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the plugins a host would load: the plugin directory's and the embedded ones.
    List {
        /// The host's configuration file, for `[plugins]`.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a plugin file: a component of a plugin world whose `init` accepts its configuration.
    Check {
        /// The `.wasm` file.
        file: PathBuf,
        /// Plugin settings (TOML); default: the `<name>.toml` beside the file, if any.
        #[arg(long)]
        settings: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(config).await,
        // Plugin calls must not run on async worker threads.
        Command::Plugins { command } => {
            tokio::task::spawn_blocking(move || plugins(command)).await?
        }
        Command::Demo {
            target,
            rate,
            duration,
            requests,
            seed,
        } => {
            let opts = wasmtel::demo::DemoOptions {
                target,
                rate,
                duration,
                requests,
                seed,
                progress: true,
            };
            let summary = wasmtel::demo::run(&opts).await?;
            println!(
                "sent {} requests ({} events, {} failed)",
                summary.requests, summary.events, summary.errors
            );
            Ok(())
        }
    }
}

async fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref())?;
    let host = Host::start(&config).await.context("cannot start")?;
    shutdown_signal().await?;
    tracing::info!("shutting down: intake stopped, flushing exports");
    host.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn plugins(command: PluginsCommand) -> anyhow::Result<()> {
    use wasmtel::plugins::{Runtime, inspect};
    let runtime = Runtime::shared()?;
    match command {
        PluginsCommand::List { config } => {
            let config = Config::load(config.as_deref())?;
            println!("{:<20} {:<10} {:<14} WORLD", "NAME", "ORIGIN", "SHA256");
            for entry in inspect::list(&runtime, &config.plugins) {
                let origin = match entry.origin {
                    wasmtel::plugins::catalog::Origin::File(_) => "file",
                    wasmtel::plugins::catalog::Origin::Embedded => "embedded",
                };
                let world = match entry.world {
                    Ok(w) => w.to_string(),
                    Err(inspect::Rejection {
                        world: Some(world),
                        reason,
                    }) => format!("{world} (needs configuration: {reason})"),
                    Err(e) => format!("INVALID: {e}"),
                };
                println!(
                    "{:<20} {:<10} {:<14} {world}",
                    entry.name,
                    origin,
                    &entry.digest[..12]
                );
            }
            Ok(())
        }
        PluginsCommand::Check { file, settings } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("plugin")
                .to_owned();
            let settings_file = settings.unwrap_or_else(|| file.with_extension("toml"));
            let table = match std::fs::read_to_string(&settings_file) {
                Ok(text) => text
                    .parse::<toml::Table>()
                    .with_context(|| format!("invalid settings {}", settings_file.display()))?,
                Err(_) => toml::Table::new(),
            };
            let limits = wasmtel::plugins::Limits::default();
            match inspect::check(
                &runtime,
                &name,
                &bytes,
                &wasmtel::config::flatten(&table),
                limits,
            ) {
                Ok(world) => {
                    println!("{}: ok, {world}", file.display());
                    Ok(())
                }
                Err(reason) => anyhow::bail!("{}: rejected: {reason}", file.display()),
            }
        }
    }
}
