//! OTLP → Prometheus naming: metric names with unit and `_total` suffixes, label names.
//!
//! Shared by the wasmtel host's `/metrics` exposition and by plugins (through
//! `wasmtel_guest::prometheus`), so that both spell a metric the same way.

/// What the name of a metric depends on besides its name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A monotonic sum (a Counter): named with `_total`.
    Counter,
    /// A gauge: unit `1` is named `_ratio`.
    Gauge,
    /// Anything else (non-monotonic sums, histograms).
    Other,
}

/// The Prometheus metric name for an instrument (without `_bucket`/`_sum`/`_count`).
///
/// Invalid characters become `_` (runs collapse to one), the unit is
/// appended as a word (`s` → `_seconds`, `By` → `_bytes`, `{token}` → nothing,
/// `1` on a gauge → `_ratio`, `a/b` → `_a_per_b`) unless the name already
/// holds it as a word, and monotonic counters get `_total` at the end (a `total` word
/// elsewhere in their name is dropped), as the OpenTelemetry → Prometheus translation does.
pub fn metric_name(name: &str, unit: &str, kind: Shape) -> String {
    let mut out = sanitize(name, true);
    if kind == Shape::Counter {
        // A `total` word anywhere in a counter's name is the suffix it gets at the end.
        let words: Vec<&str> = out.split('_').filter(|w| *w != "total").collect();
        if !words.iter().all(|w| w.is_empty()) {
            out = words.join("_");
        }
    }
    let suffix = unit_suffix(unit, kind);
    if !suffix.is_empty() && !format!("_{out}_").contains(&format!("_{suffix}_")) {
        out.push('_');
        out.push_str(&suffix);
    }
    if kind == Shape::Counter {
        out.push_str("_total");
    }
    out
}

/// The `instance` label of a resource given as its attributes (key and text value, in any
/// order): its `service.instance.id`, else a stable identity of the rest — `resource:` and 16
/// hex digits of their FNV-1a hash in key order — so that senders without one are told apart,
/// and one keeps its value across restarts.
pub fn instance<'a>(attributes: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut pairs: Vec<(&str, String)> = attributes.into_iter().collect();
    if let Some((_, id)) = pairs.iter().find(|(k, _)| *k == "service.instance.id") {
        return id.clone();
    }
    pairs.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, value) in &pairs {
        for byte in key
            .bytes()
            .chain([b'='])
            .chain(value.bytes())
            .chain([b'\n'])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("resource:{hash:016x}")
}

/// The Prometheus label name for an attribute key.
pub fn label_name(key: &str) -> String {
    let out = sanitize(key, false);
    if out.starts_with("__") && !key.starts_with("__") {
        format!("key{out}")
    } else {
        out
    }
}

/// Replaces characters outside `[a-zA-Z0-9_]` (and `:` in metric names) with `_`, collapsing runs.
fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        let c = if ok { c } else { '_' };
        if !(c == '_' && out.ends_with('_') && !out.is_empty()) {
            out.push(c);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
        if !allow_colon {
            out.insert_str(0, "key");
        }
    }
    out
}

/// The unit word(s) Prometheus names carry for a UCUM unit.
fn unit_suffix(unit: &str, kind: Shape) -> String {
    if unit == "1" {
        return if kind == Shape::Gauge {
            "ratio".into()
        } else {
            String::new()
        };
    }
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let main = unit_word(main);
    let per = per.map(per_word).filter(|p| !p.is_empty());
    match (main.is_empty(), per) {
        (_, None) => main,
        (true, Some(p)) => format!("per_{p}"),
        (false, Some(p)) => format!("{main}_per_{p}"),
    }
}

fn unit_word(unit: &str) -> String {
    let word = match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "" => "",
        other if other.starts_with('{') => "",
        other => return sanitize(other, false).trim_matches('_').to_owned(),
    };
    word.to_owned()
}

fn per_word(unit: &str) -> String {
    let word = match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => return unit_word(other),
    };
    word.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Shape::*;

    #[test]
    fn names_follow_the_otlp_to_prometheus_rules() {
        let cases = [
            (
                "gen_ai.server.request.duration",
                "s",
                Other,
                "gen_ai_server_request_duration_seconds",
            ),
            (
                "gen_ai.client.token.usage",
                "{token}",
                Other,
                "gen_ai_client_token_usage",
            ),
            (
                "inference.requests",
                "{request}",
                Counter,
                "inference_requests_total",
            ),
            (
                "http.server.requests.total",
                "",
                Counter,
                "http_server_requests_total",
            ),
            (
                "system.memory.utilization",
                "1",
                Gauge,
                "system_memory_utilization_ratio",
            ),
            (
                "process.memory.usage",
                "By",
                Other,
                "process_memory_usage_bytes",
            ),
            (
                "inference.throughput",
                "{token}/s",
                Other,
                "inference_throughput_per_second",
            ),
            ("net.io", "By/s", Gauge, "net_io_bytes_per_second"),
            ("latency_seconds", "s", Gauge, "latency_seconds"),
            ("9lives..x", "", Gauge, "_9lives_x"),
            ("gpu.power.draw", "W", Gauge, "gpu_power_draw_watts"),
            // No unit or `_total` twice.
            (
                "gpu.memcpy.bytes.total",
                "By",
                Counter,
                "gpu_memcpy_bytes_total",
            ),
            ("http.bytes_total", "By", Counter, "http_bytes_total"),
            ("disk.bytes.read", "By", Gauge, "disk_bytes_read"),
            ("jobs.total.done", "1", Counter, "jobs_done_total"),
            ("total", "", Counter, "total_total"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(metric_name(name, unit, kind), want, "{name} {unit}");
        }
    }

    #[test]
    fn an_instance_is_the_instance_id_else_a_stable_identity_of_the_resource() {
        let of = |pairs: &[(&'static str, &str)]| {
            instance(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())))
        };
        assert_eq!(
            of(&[("service.name", "a"), ("service.instance.id", "pod-1")]),
            "pod-1"
        );
        let one = of(&[("service.name", "agent"), ("host.name", "node-1")]);
        let two = of(&[("service.name", "agent"), ("host.name", "node-2")]);
        assert!(
            one.starts_with("resource:") && one.len() == "resource:".len() + 16,
            "{one}"
        );
        assert_ne!(one, two, "told apart");
        assert_eq!(
            one,
            of(&[("host.name", "node-1"), ("service.name", "agent")]),
            "any order"
        );
        assert_eq!(of(&[]), "resource:cbf29ce484222325");
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(label_name("gen_ai.request.model"), "gen_ai_request_model");
        assert_eq!(label_name("error.type"), "error_type");
        assert_eq!(label_name("1st"), "key_1st");
        assert_eq!(label_name("_private"), "_private");
        assert_eq!(label_name("..x"), "_x");
    }
}
