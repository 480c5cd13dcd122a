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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(config).await,
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
