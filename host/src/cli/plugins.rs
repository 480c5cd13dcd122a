//! `wasmtel plugins`: plugins inspected, called on sample data and scaffolded, without a host.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use wasmtel::Config;

/// The sample events `plugins run` uses without input: `examples/events.ndjson`.
const SAMPLE_EVENTS: &[u8] = include_bytes!("../../../examples/events.ndjson");

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Upload a plugin to a running host as a tenant (with the tenant's admin token): checked
    /// as `check` does, then used by that tenant's integrations of its name only.
    Upload {
        /// The `.wasm` file.
        file: PathBuf,
        /// The plugin's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        admin: super::AdminArgs,
    },
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
        /// The host's configuration file, whose compile cache is used (default: the default
        /// host's, `./data/plugin-cache`).
        #[arg(long, short)]
        config: Option<PathBuf>,
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
        /// log records (default, without `--batch`: the sample events of
        /// `examples/events.ndjson`, built in).
        #[arg(long, conflicts_with = "batch")]
        events: Option<PathBuf>,
        /// An OTLP/JSON `ExportMetricsServiceRequest`, received as intake would.
        #[arg(long, conflicts_with = "spans")]
        batch: Option<PathBuf>,
        /// An OTLP/JSON `ExportTraceServiceRequest`, received as intake would: a transform's
        /// edited spans or a trace exporter's requests are printed.
        #[arg(long, conflicts_with = "events")]
        spans: Option<PathBuf>,
        /// A plugin setting, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// The host's configuration file, whose compile cache is used (default: the default
        /// host's, `./data/plugin-cache`).
        #[arg(long = "host-config")]
        host_config: Option<PathBuf>,
    },
}

/// Compiles the plugin `file` through the compile cache of the host `config` names, so that
/// a second check or run of the same bytes, and the host's load of them, compile nothing; with
/// a note of how long it took and where the artefact is, for stderr once the command succeeds.
fn compiled(
    runtime: &wasmtel::plugins::Runtime,
    file: &std::path::Path,
    bytes: &[u8],
    config: Option<&std::path::Path>,
) -> anyhow::Result<(wasmtime::component::Component, String)> {
    use wasmtel::plugins::cache::{self, Source};
    let cache = Config::load(config)?.plugin_cache();
    let started = std::time::Instant::now();
    let (component, source) = cache::compile(runtime, bytes, cache.as_deref()).map_err(|e| {
        anyhow::anyhow!(
            "{}: rejected: {}",
            file.display(),
            wasmtel::plugins::inspect::Rejection::from(e)
        )
    })?;
    let took = started.elapsed();
    let note = match (source, cache) {
        (Source::Cache, Some(dir)) => {
            format!("(from the compile cache in {}, {took:.2?})", dir.display())
        }
        (Source::Compiled, Some(dir)) => {
            format!("(compiled in {took:.2?}, kept in {})", dir.display())
        }
        (_, None) => format!("(compiled in {took:.2?}; no compile cache)"),
    };
    Ok((component, note))
}

/// Runs one `plugins` command (blocking: plugins compile and run).
pub(crate) fn run(command: PluginsCommand) -> anyhow::Result<()> {
    use wasmtel::plugins::{Runtime, inspect};
    let runtime = Runtime::shared()?;
    match command {
        PluginsCommand::Upload { file, name, admin } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = match name {
                Some(name) => name,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .context("name the plugin with --name")?
                    .to_owned(),
            };
            let client = admin.client()?;
            let path = format!("/api/v1/plugins/{name}");
            let answer = tokio::runtime::Handle::current().block_on(client.upload(&path, bytes))?;
            if admin.json {
                println!("{answer}");
            } else {
                println!(
                    "uploaded {name}: {}",
                    answer["plugin"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
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
            spans,
            config,
            host_config,
        } => {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let sample = match (events, batch, spans) {
                (Some(events), ..) => wasmtel::trial::Sample::Events(read(&events)?),
                (None, Some(batch), _) => wasmtel::trial::Sample::Metrics(read(&batch)?),
                (None, None, Some(spans)) => wasmtel::trial::Sample::Spans(read(&spans)?),
                (None, None, None) => wasmtel::trial::Sample::Events(SAMPLE_EVENTS.to_vec()),
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
            let (component, note) =
                compiled(&runtime, &file, &read(&file)?, host_config.as_deref())?;
            print!(
                "{}",
                wasmtel::trial::run(&runtime, &name, &component, &settings, &sample)?
            );
            eprintln!("{note}");
            Ok(())
        }
        PluginsCommand::Check {
            file,
            settings,
            config,
        } => {
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
            let (component, note) = compiled(&runtime, &file, &bytes, config.as_deref())?;
            match inspect::check(
                &runtime,
                &name,
                &component,
                &wasmtel::config::flatten(&table),
                limits,
            ) {
                Ok(world) => {
                    println!("{}: ok, {world}", file.display());
                    eprintln!("{note}");
                    Ok(())
                }
                Err(reason) => anyhow::bail!("{}: rejected: {reason}", file.display()),
            }
        }
    }
}
