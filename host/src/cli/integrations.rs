//! `wasmtel integrations`: a running host's integrations through its admin API.

use anyhow::Context as _;
use clap::Subcommand;
use wasmtel::control::client::AdminClient;

#[derive(Debug, Subcommand)]
pub(crate) enum IntegrationsCommand {
    /// Every integration with its state.
    List,
    /// Create an integration.
    Create {
        /// `metrics`, `logs` or `traces`.
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
        /// Receive only data whose resource attribute KEY matches VALUE (`*` globs; repeatable,
        /// a key given twice matches either value).
        #[arg(long = "select", value_name = "KEY=VALUE")]
        select: Vec<String>,
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
    /// Create an OTLP metrics, logs and traces integration sharing endpoint, name and headers.
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
        /// Receive only data whose resource attribute KEY matches VALUE (`*` globs; repeatable,
        /// a key given twice matches either value).
        #[arg(long = "select", value_name = "KEY=VALUE")]
        select: Vec<String>,
        /// Test the connection at once.
        #[arg(long)]
        test: bool,
    },
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    wasmtel::control::client::key_value(arg)
}

/// Runs one `integrations` command against `client`.
pub(crate) async fn run(
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
            select,
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
            for assignment in &select {
                wasmtel::control::client::select(&mut body, assignment)?;
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
            select,
            test,
        } => {
            let mut created = Vec::new();
            for kind in ["metrics", "logs", "traces"] {
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
                for assignment in &select {
                    wasmtel::control::client::select(&mut body, assignment)?;
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
