//! The `wasmtel` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtel::control::client::AdminClient;
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
        /// Stop at start when any plugin cannot be loaded (the `[plugins] strict` setting).
        #[arg(long)]
        strict: bool,
    },
    /// Inspect plugins without a running host.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Manage a running host's integrations through its admin API.
    Integrations {
        /// The admin API's base URL.
        #[arg(
            long,
            default_value = "http://127.0.0.1:8686",
            env = "WASMTEL_ADMIN_URL"
        )]
        admin: String,
        /// The bearer token (default: `WASMTEL_ADMIN_TOKEN`, else `<data-dir>/admin.token`).
        #[arg(long)]
        token: Option<String>,
        /// The host's data directory, where its admin token is.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Box<IntegrationsCommand>,
    },
    /// Drive an OTLP/HTTP agent (this host or another) with pre-built requests, count what it
    /// forwards to a sink served here, and report accepted, delivered, lost and the rates.
    Load {
        /// The agent's base URL.
        #[arg(long, default_value = "http://127.0.0.1:4318")]
        target: String,
        /// What to send: logs, metrics or events.
        #[arg(long, value_enum, default_value = "logs")]
        kind: wasmtel::load::Kind,
        /// Records, points or events to send in all.
        #[arg(long, default_value_t = 1_000_000)]
        items: u64,
        /// Items per request.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Connections sending at once.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Where to serve the sink the agent forwards to (`/v1/logs`), e.g. `127.0.0.1:24319`.
        #[arg(long)]
        sink: Option<std::net::SocketAddr>,
        /// How long the sink waits for stragglers once the agent stops sending them.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        settle: Duration,
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

#[derive(Debug, Subcommand)]
enum IntegrationsCommand {
    /// Every integration with its state.
    List,
    /// Create an integration.
    Create {
        /// `metrics` or `logs`.
        #[arg(long)]
        kind: String,
        /// The integration type (`otlp`).
        #[arg(long = "type")]
        kind_type: String,
        /// A name people recognise it by.
        #[arg(long)]
        name: String,
        /// A preset filling in endpoint and credential header.
        #[arg(long)]
        preset: Option<String>,
        /// The base URL.
        #[arg(long)]
        endpoint: Option<String>,
        /// A header to send, `K=V` (repeatable).
        #[arg(long = "header", value_parser = key_value)]
        headers: Vec<(String, String)>,
        /// More fields as a JSON object, e.g. `{"api_key":"…"}`.
        #[arg(long)]
        config_json: Option<String>,
        /// How often metrics are exported, e.g. `10s` (default: the host's `[delivery] interval`).
        #[arg(long)]
        interval: Option<String>,
        /// Any key of the integration's config entry, `KEY=VALUE` (repeatable; dotted keys reach
        /// into tables: `delivery.timeout=5s`, `config.flavor=dogstatsd`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Test the connection at once.
        #[arg(long)]
        test: bool,
    },
    /// Test an integration's connection.
    Test {
        /// The integration's id.
        id: String,
    },
    /// Delete a stored integration.
    Delete {
        /// The integration's id.
        id: String,
    },
    /// Enable a stored integration.
    Enable {
        /// The integration's id.
        id: String,
    },
    /// Disable a stored integration, keeping its configuration.
    Disable {
        /// The integration's id.
        id: String,
    },
    /// Resume a paused integration.
    Resume {
        /// The integration's id.
        id: String,
    },
    /// Create an OTLP metrics and an OTLP logs integration sharing endpoint, name and headers.
    ConnectOtlp {
        /// The collector's base URL.
        #[arg(long)]
        endpoint: String,
        /// The name (default: `otlp`).
        #[arg(long, default_value = "otlp")]
        name: String,
        /// A header to send, `K=V` (repeatable).
        #[arg(long = "header", value_parser = key_value)]
        headers: Vec<(String, String)>,
        /// How often metrics are exported, e.g. `10s` (default: the host's `[delivery] interval`).
        #[arg(long)]
        interval: Option<String>,
        /// `http/protobuf` (the default), `http/json` or `grpc`.
        #[arg(long)]
        protocol: Option<String>,
        /// Any key of an `[otlp]` section, `KEY=VALUE` (repeatable; dotted keys reach into
        /// tables: `delivery.timeout=5s`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Test the connection at once.
        #[arg(long)]
        test: bool,
    },
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    wasmtel::control::client::key_value(arg)
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
    /// Write a ready plugin project: source, the contract, and a `build.sh` making `<NAME>.wasm`.
    New {
        /// The plugin's name: lowercase letters, digits and `-`.
        name: String,
        /// What the plugin is.
        #[arg(long, value_enum)]
        kind: wasmtel::scaffold::Kind,
        /// The language it is written in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: wasmtel::scaffold::Lang,
        /// Where to write it (must not exist or be empty); default: `./<NAME>`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Call a plugin on sample data and print what it would do — requests, transformed batch
    /// or series — sending nothing.
    Run {
        /// The `.wasm` file.
        file: PathBuf,
        /// Inference events (JSON or NDJSON), recorded through the GenAI rules and forwarded as
        /// log records.
        #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
        events: Option<PathBuf>,
        /// An OTLP/JSON `ExportMetricsServiceRequest`, received as intake would.
        #[arg(long)]
        batch: Option<PathBuf>,
        /// A plugin setting, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
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
        Command::Serve { config, strict } => serve(config, strict).await,
        // Plugin calls must not run on async worker threads.
        Command::Plugins { command } => {
            tokio::task::spawn_blocking(move || plugins(command)).await?
        }
        Command::Integrations {
            admin,
            token,
            data_dir,
            json,
            command,
        } => {
            let client = AdminClient::new(&admin, token, &data_dir)?;
            integrations(&client, json, *command).await
        }
        Command::Load {
            target,
            kind,
            items,
            batch,
            connections,
            sink,
            settle,
            json,
        } => {
            let load = wasmtel::load::Load {
                target,
                kind,
                items,
                batch,
                connections,
                sink,
                settle,
            };
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

async fn integrations(
    client: &AdminClient,
    json: bool,
    command: IntegrationsCommand,
) -> anyhow::Result<()> {
    use wasmtel::control::client::{create_body, integrations_table, test_table};
    let print_list = |list: Vec<serde_json::Value>| {
        if json {
            println!("{}", serde_json::Value::Array(list));
        } else {
            print!("{}", integrations_table(&list));
        }
    };
    let path = |id: &str, action: &str| format!("/api/v1/integrations/{id}{action}");
    match command {
        IntegrationsCommand::List => {
            let body = client.call("GET", "/api/v1/integrations", None).await?;
            print_list(body["integrations"].as_array().cloned().unwrap_or_default());
        }
        IntegrationsCommand::Create {
            kind,
            kind_type,
            name,
            preset,
            endpoint,
            headers,
            config_json,
            interval,
            set,
            test,
        } => {
            let extra = config_json
                .map(|j| serde_json::from_str::<serde_json::Value>(&j))
                .transpose()
                .context("--config-json is not JSON")?;
            let mut body = create_body(
                &kind,
                &kind_type,
                &name,
                preset.as_deref(),
                endpoint.as_deref(),
                &headers,
                extra.as_ref(),
            );
            if let Some(interval) = &interval {
                body["delivery"]["interval"] = serde_json::json!(interval);
            }
            for assignment in &set {
                wasmtel::control::client::set(&mut body, assignment)?;
            }
            let created = client
                .call("POST", "/api/v1/integrations", Some(body))
                .await?;
            created_now(client, json, vec![created], test).await?;
        }
        IntegrationsCommand::ConnectOtlp {
            endpoint,
            name,
            headers,
            interval,
            protocol,
            set,
            test,
        } => {
            let mut created = Vec::new();
            for kind in ["metrics", "logs"] {
                let mut body =
                    create_body(kind, "otlp", &name, None, Some(&endpoint), &headers, None);
                if let Some(interval) = &interval {
                    body["delivery"]["interval"] = serde_json::json!(interval);
                }
                if let Some(protocol) = &protocol {
                    body["protocol"] = serde_json::json!(protocol);
                }
                for assignment in &set {
                    wasmtel::control::client::set(&mut body, assignment)?;
                }
                created.push(
                    client
                        .call("POST", "/api/v1/integrations", Some(body))
                        .await?,
                );
            }
            created_now(client, json, created, test).await?;
        }
        IntegrationsCommand::Test { id } => {
            let body = client.call("POST", &path(&id, "/test"), None).await?;
            let results = body["results"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{body}");
            } else {
                print!("{}", test_table(&results));
            }
            anyhow::ensure!(
                body["ok"] == true,
                "integration `{id}` failed its connection test"
            );
        }
        IntegrationsCommand::Delete { id } => {
            client.call("DELETE", &path(&id, ""), None).await?;
            if json {
                println!("{}", serde_json::json!({ "deleted": id }));
            } else {
                println!("deleted {id}");
            }
        }
        IntegrationsCommand::Enable { id } => {
            print_list(vec![
                client.call("POST", &path(&id, "/enable"), None).await?,
            ]);
        }
        IntegrationsCommand::Disable { id } => {
            print_list(vec![
                client.call("POST", &path(&id, "/disable"), None).await?,
            ]);
        }
        IntegrationsCommand::Resume { id } => {
            let body = client.call("POST", &path(&id, "/resume"), None).await?;
            if json {
                println!("{body}");
            } else if body["resumed"] == true {
                println!("resumed {id}");
            } else {
                println!("{id} was not paused");
            }
        }
    }
    Ok(())
}

/// Shows integrations just created and when each signal first goes out; with `test`, probes
/// each at once and fails if any probe does.
async fn created_now(
    client: &AdminClient,
    json: bool,
    created: Vec<serde_json::Value>,
    test: bool,
) -> anyhow::Result<()> {
    use wasmtel::control::client::{first_exports, integrations_table, test_table};
    let mut tests = Vec::new();
    if test {
        for i in &created {
            let id = i["id"].as_str().unwrap_or_default();
            let path = format!("/api/v1/integrations/{id}/test");
            tests.push(client.call("POST", &path, None).await?);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "created": created, "tests": tests })
        );
    } else {
        print!("{}", integrations_table(&created));
        print!("{}", first_exports(&created, wasmtel::clock::unix_nanos()));
        for t in &tests {
            print!(
                "{}",
                test_table(t["results"].as_array().map_or(&[][..], Vec::as_slice))
            );
        }
    }
    let failed: Vec<&str> = tests
        .iter()
        .filter(|t| t["ok"] != true)
        .filter_map(|t| t["id"].as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "the connection test failed for {}",
        failed.join(", ")
    );
    Ok(())
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

fn plugins(command: PluginsCommand) -> anyhow::Result<()> {
    use wasmtel::plugins::{Runtime, inspect};
    let runtime = Runtime::shared()?;
    match command {
        PluginsCommand::List { config } => {
            let config = Config::load(config.as_deref())?;
            println!("{:<24} {:<10} {:<14} WORLD", "NAME", "ORIGIN", "SHA256");
            for entry in inspect::list(&runtime, &config.plugins) {
                let origin = match entry.origin {
                    wasmtel::plugins::catalog::Origin::File(_) => "file",
                    wasmtel::plugins::catalog::Origin::Embedded => "embedded",
                };
                let world = match entry.world {
                    Ok(w) => w.to_string(),
                    Err(inspect::Rejection {
                        world: Some(world),
                        error: wasmtel::plugins::PluginError::Refused { reason, .. },
                    }) => format!("{world} (needs configuration: {reason})"),
                    Err(e) => format!("INVALID: {e}"),
                };
                println!(
                    "{:<24} {:<10} {:<14} {world}",
                    entry.name,
                    origin,
                    &entry.digest[..12]
                );
            }
            Ok(())
        }
        PluginsCommand::New {
            name,
            kind,
            lang,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            for file in wasmtel::scaffold::create(&dir, &name, kind, lang)? {
                println!("wrote {}", file.display());
            }
            println!(
                "build: {}/build.sh, then: wasmtel plugins check {}/{name}.wasm",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PluginsCommand::Run {
            file,
            events,
            batch,
            config,
        } => {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let sample = match (events, batch) {
                (Some(events), _) => wasmtel::trial::Sample::Events(read(&events)?),
                (None, Some(batch)) => wasmtel::trial::Sample::Metrics(read(&batch)?),
                (None, None) => anyhow::bail!("give --events or --batch"),
            };
            // A setting may be a credential: a malformed one is named by position only.
            let settings = config
                .iter()
                .enumerate()
                .map(|(i, kv)| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| format!("--config number {} is not key=value", i + 1))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("plugin")
                .to_owned();
            print!(
                "{}",
                wasmtel::trial::run(&name, &read(&file)?, &settings, &sample)?
            );
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
