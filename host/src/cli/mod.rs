//! The `wasmtel` command line: what each subcommand takes and does; `integrations` and
//! `plugins` in their own files. Not library API: the binary's own modules.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtel::control::client::AdminClient;

mod integrations;
mod plugins;

use integrations::IntegrationsCommand;
use plugins::PluginsCommand;
use wasmtel::{Config, Host};

/// Telemetry host for inference and GPU machines.
#[derive(Debug, Parser)]
#[command(name = "wasmtel", version, about)]
pub(crate) struct Cli {
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
        /// Stop at start when any plugin cannot be loaded (the `[plugins] strict` setting).
        #[arg(long)]
        strict: bool,
    },
    /// Inspect plugins without a running host.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Manage a running host's integrations through its admin API (a tenant's token manages
    /// that tenant's only).
    Integrations {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: Box<IntegrationsCommand>,
    },
    /// Manage a running host's tenants through its admin API (the operator's token only).
    Tenants {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Drive an OTLP/HTTP agent (this host or another) with pre-built requests, count what it
    /// forwards to a sink served here, and report accepted, delivered, lost and the rates.
    Load {
        /// What to send, and where.
        #[command(flatten)]
        load: wasmtel::load::Load,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
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

/// How a command reaches a running host's admin API.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// The admin API's base URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8686",
        env = "WASMTEL_ADMIN_URL"
    )]
    admin: String,
    /// The bearer token (default: `WASMTEL_ADMIN_TOKEN`, else `<data-dir>/admin.token`).
    #[arg(long, global = true)]
    token: Option<String>,
    /// The host's data directory, where its admin token is.
    #[arg(long, global = true, default_value = "./data")]
    data_dir: PathBuf,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl AdminArgs {
    /// A client of the admin API these arguments name.
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        Ok(AdminClient::new(
            &self.admin,
            self.token.clone(),
            &self.data_dir,
        )?)
    }
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Create a tenant; its admin and intake tokens are printed once.
    Add {
        /// Its name: the value of `[tenancy] key` on its data.
        name: String,
    },
    /// Every tenant.
    List,
    /// Delete a tenant, its tokens and its integrations.
    Remove {
        /// Its name.
        name: String,
    },
}

/// Runs one `tenants` command.
async fn tenants(admin: &AdminArgs, command: TenantsCommand) -> anyhow::Result<()> {
    let client = admin.client()?;
    match command {
        TenantsCommand::Add { name } => {
            let body = serde_json::json!({ "name": name });
            let created = client.call("POST", "/api/v1/tenants", Some(body)).await?;
            if admin.json {
                println!("{created}");
            } else {
                let field = |k: &str| created[k].as_str().unwrap_or_default().to_owned();
                println!(
                    "tenant {} created; its tokens are shown only now:",
                    field("name")
                );
                println!("admin token:  {}", field("admin_token"));
                println!("intake token: {}", field("intake_token"));
            }
        }
        TenantsCommand::List => {
            let body = client.call("GET", "/api/v1/tenants", None).await?;
            let list = body["tenants"].as_array().cloned().unwrap_or_default();
            if admin.json {
                println!("{}", serde_json::Value::Array(list));
            } else {
                list.iter()
                    .filter_map(|t| t["name"].as_str())
                    .for_each(|name| println!("{name}"));
            }
        }
        TenantsCommand::Remove { name } => {
            let path = format!("/api/v1/tenants/{name}");
            client.call("DELETE", &path, None).await?;
            println!("removed {name}");
        }
    }
    Ok(())
}

/// Runs the command line's command.
pub(crate) async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve { config, strict } => serve(config, strict).await,
        // Plugin calls must not run on async worker threads.
        Command::Plugins { command } => {
            tokio::task::spawn_blocking(move || plugins::run(command)).await?
        }
        Command::Integrations { admin, command } => {
            integrations::run(&admin.client()?, admin.json, *command).await
        }
        Command::Tenants { admin, command } => tenants(&admin, command).await,
        Command::Load { load, json } => {
            let outcome = wasmtel::load::run(&load)
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                println!("{outcome}");
            }
            Ok(())
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

async fn serve(path: Option<PathBuf>, strict: bool) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut config = Config::load(path.as_deref())?;
    config.plugins.strict |= strict;
    // Listen for the signals before intake opens, so that a signal arriving while the host is
    // still starting shuts it down in order instead of killing it with data accepted.
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let host = Host::start(&config).await.context("cannot start")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: intake stopped, flushing exports");
    host.shutdown().await;
    Ok(())
}
