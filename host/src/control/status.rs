//! What the status page shows beyond integrations and plugins: intake totals and GPUs, read
//! from the host's own instruments.

use serde_json::{Map, Value, json};

use crate::metrics::reader::{PointValue, Reader};
use crate::metrics::{Instrument, Registry};
use crate::model::attributes::AttributeSet;

/// Every series of a sum or gauge instrument with its value (its total, for a sum).
pub(super) fn series(instrument: &Instrument) -> Vec<(AttributeSet, f64)> {
    let mut out = Vec::new();
    Reader::new(None).read(instrument, |p| {
        if let PointValue::Number(v) = p.value {
            out.push((p.attributes.clone(), v));
        }
    });
    out
}

pub(super) fn find(registry: &Registry, name: &str) -> Option<std::sync::Arc<Instrument>> {
    registry
        .instruments()
        .into_iter()
        .find(|i| i.descriptor().name == name)
}

/// Intake totals: events accepted, OTLP items accepted and rejected, as integers.
pub fn intake(registry: &Registry) -> Value {
    let total = |name: &str, filter: &dyn Fn(&AttributeSet) -> bool| -> u64 {
        find(registry, name)
            .map(|i| {
                series(&i)
                    .into_iter()
                    .filter(|(a, _)| filter(a))
                    .map(|(_, v)| v as u64)
                    .sum()
            })
            .unwrap_or(0)
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

/// The GPUs' latest readings, one object per `gpu.uuid`, by index.
pub fn gpus(registry: &Registry) -> Vec<Value> {
    const FIELDS: [(&str, &str); 6] = [
        ("hw.gpu.utilization", "utilization"),
        ("hw.gpu.memory.usage", "memory_used_bytes"),
        ("hw.gpu.memory.limit", "memory_total_bytes"),
        ("hw.temperature", "temperature_celsius"),
        ("hw.power", "power_watts"),
        ("hw.gpu.power.limit", "power_limit_watts"),
    ];
    let mut by_uuid: Vec<(String, Map<String, Value>)> = Vec::new();
    for (metric, field) in FIELDS {
        let Some(instrument) = find(registry, metric) else {
            continue;
        };
        for (attrs, value) in series(&instrument) {
            let Some(uuid) = attrs.get("gpu.uuid").map(|v| v.to_string()) else {
                continue;
            };
            let at = match by_uuid.iter().position(|(u, _)| *u == uuid) {
                Some(at) => at,
                None => {
                    let mut gpu = Map::new();
                    gpu.insert("uuid".into(), json!(uuid));
                    let index = attrs.get("gpu.index").map(|v| v.to_string());
                    if let Some(i) = index.and_then(|i| i.parse::<u64>().ok()) {
                        gpu.insert("index".into(), json!(i));
                    }
                    if let Some(name) = attrs.get("gpu.name") {
                        gpu.insert("name".into(), json!(name.to_string()));
                    }
                    by_uuid.push((uuid, gpu));
                    by_uuid.len() - 1
                }
            };
            let value = if field.ends_with("_bytes") {
                json!(value as u64)
            } else {
                json!(value)
            };
            by_uuid[at].1.insert(field.into(), value);
        }
    }
    by_uuid.sort_by_key(|(_, gpu)| gpu.get("index").and_then(Value::as_u64));
    by_uuid
        .into_iter()
        .map(|(_, gpu)| Value::Object(gpu))
        .collect()
}

#[cfg(test)]
mod tests {
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
