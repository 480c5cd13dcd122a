//! What the status page shows beyond integrations and plugins: intake totals and GPUs, read
//! from the host's own instruments.

use serde_json::{Value, json};

use super::history::{GPU_FIELDS, named, read_gpus, series};
use crate::metrics::Registry;
use crate::model::attributes::AttributeSet;

/// Intake totals: events accepted, OTLP items accepted and rejected, as integers.
pub fn intake(registry: &Registry) -> Value {
    let instruments = registry.instruments();
    let total = |name: &str, filter: &dyn Fn(&AttributeSet) -> bool| -> u64 {
        named(&instruments, name)
            .flat_map(|i| series(i))
            .filter(|(a, _)| filter(a))
            .map(|(_, v)| v as u64)
            .sum()
    };
    let outcome = |want: &'static str| {
        move |a: &AttributeSet| a.get("outcome").is_some_and(|v| v.to_string() == want)
    };
    json!({
        "events_accepted": total("wasmtel.intake.events.accepted", &|_| true),
        "otlp_accepted": total("wasmtel.intake.otlp.items", &outcome("accepted")),
        "otlp_rejected": total("wasmtel.intake.otlp.items", &outcome("rejected")),
    })
}

/// The GPUs' latest readings, one object per `gpu.uuid`, by index: each history field this API
/// shows, under the name it shows it by (bytes as integers).
pub fn gpus(registry: &Registry) -> Vec<Value> {
    const SHOWN: [(&str, &str); 6] = [
        ("utilization", "utilization"),
        ("memory_used_bytes", "memory_used_bytes"),
        ("memory_limit_bytes", "memory_total_bytes"),
        ("temperature_celsius", "temperature_celsius"),
        ("power_watts", "power_watts"),
        ("power_limit_watts", "power_limit_watts"),
    ];
    read_gpus(&registry.instruments())
        .into_values()
        .map(|(mut gpu, point)| {
            for (field, shown) in SHOWN {
                let Some(at) = GPU_FIELDS.iter().position(|(f, _)| *f == field) else {
                    continue;
                };
                let value = point[at];
                if value.is_nan() {
                    continue;
                }
                let value = if shown.ends_with("_bytes") {
                    json!(value as u64)
                } else {
                    json!(value)
                };
                gpu.insert(shown.into(), value);
            }
            Value::Object(gpu)
        })
        .collect()
}

/// The start-up line, in plain words: where everything listens (`listening`, by what it
/// serves), where the data is, how many plugins are loaded and how many failed to load
/// (`plugins`), and which integrations run.
pub fn serving(
    config: &crate::config::Config,
    listening: &std::collections::BTreeMap<&'static str, String>,
    (loaded, failed): (usize, usize),
    integrations: &[String],
) -> String {
    let at = |what: &str| listening.get(what).cloned();
    let token = match &config.admin.token {
        Some(_) => "token from WASMTEL_ADMIN_TOKEN".to_owned(),
        None => format!(
            "token in {}",
            config.data_dir().join("admin.token").display()
        ),
    };
    let admin = match at("admin") {
        Some(a) => format!("admin API on {a} ({token})"),
        None => "admin API off".to_owned(),
    };
    let prometheus = match at("prometheus") {
        Some(a) => format!("http://{a}/metrics"),
        None => "off".to_owned(),
    };
    let integrations = match integrations {
        [] => "no integration active".to_owned(),
        names => format!(
            "{} integration{} active: {}",
            names.len(),
            plural(names.len()),
            names.join(", ")
        ),
    };
    let grpc = match at("otlp_grpc") {
        Some(a) => format!("OTLP/gRPC on {a}"),
        None => "OTLP/gRPC off".to_owned(),
    };
    let plugins = match failed {
        0 => format!("{loaded} plugin{} loaded", plural(loaded)),
        _ => format!(
            "{loaded} plugin{} loaded, {failed} failed to load (see /api/v1/plugins)",
            plural(loaded)
        ),
    };
    format!(
        "wasmtel is serving: events and OTLP/HTTP on {}, {grpc}, Prometheus {prometheus}, {admin}; data in {}; {plugins}; {integrations}",
        at("intake").unwrap_or_default(),
        config.data_dir().display(),
    )
}

/// `s` unless `n` is one.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_start_up_line_says_what_is_off_and_what_failed() {
        let config = crate::config::Config::default();
        let listening = std::collections::BTreeMap::from([("intake", "127.0.0.1:4318".to_owned())]);
        let line = serving(&config, &listening, (1, 2), &[]);
        assert!(
            line.contains(", OTLP/gRPC off, Prometheus off, admin API off;"),
            "{line}"
        );
        assert!(
            line.contains("; 1 plugin loaded, 2 failed to load (see /api/v1/plugins);"),
            "{line}"
        );
        let line = serving(&config, &listening, (2, 0), &["otlp".into()]);
        assert!(
            line.ends_with("; 2 plugins loaded; 1 integration active: otlp"),
            "{line}"
        );
    }

    use super::*;
    use crate::metrics::Descriptor;
    use crate::model::attributes::ValueRef;
    use crate::model::metric::InstrumentKind;

    #[test]
    fn gpus_are_grouped_by_uuid_and_intake_totals_summed() {
        let registry = Registry::new(10);
        let gauge = |name: &str| {
            let d = Descriptor {
                name: name.into(),
                unit: String::new(),
                description: String::new(),
                kind: InstrumentKind::Gauge,
                scope: "wasmtel.gpu".into(),
            };
            registry.instrument(d, &[]).expect("gauge")
        };
        let gpu = |i: i64, uuid: &'static str| {
            [
                ("gpu.index", ValueRef::Int(i)),
                ("gpu.name", ValueRef::Str("H100")),
                ("gpu.uuid", ValueRef::Str(uuid)),
            ]
        };
        gauge("hw.gpu.utilization").record(&gpu(1, "GPU-b"), 0.5);
        gauge("hw.gpu.utilization").record(&gpu(0, "GPU-a"), 0.25);
        gauge("hw.temperature").record(&gpu(0, "GPU-a"), 41.0);
        assert_eq!(
            gpus(&registry),
            [
                json!({ "uuid": "GPU-a", "index": 0, "name": "H100", "utilization": 0.25, "temperature_celsius": 41.0 }),
                json!({ "uuid": "GPU-b", "index": 1, "name": "H100", "utilization": 0.5 }),
            ]
        );
        let telemetry = crate::telemetry::SelfTelemetry::register(&registry).expect("telemetry");
        assert_eq!(
            intake(&registry).to_string(),
            r#"{"events_accepted":0,"otlp_accepted":0,"otlp_rejected":0}"#,
            "counts are integers"
        );
        telemetry.events_accepted(7);
        telemetry.otlp_items(crate::model::Signal::Metrics, 5, 2);
        assert_eq!(
            intake(&registry),
            json!({ "events_accepted": 7, "otlp_accepted": 5, "otlp_rejected": 2 })
        );
    }
}
