//! OTLP/JSON read strictly: the body must be UTF-8 throughout, and every data point, log
//! record or span whose integers, times or values do not fit their OTLP types is refused on its own,
//! counted and named, while its valid siblings are kept.
//!
//! The generated types read a point's value and a metric's data through flattened `oneof`s,
//! where any error silently becomes "absent"; so each point and record is checked here, on
//! the JSON tree, before the tree is turned into those types.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::{Map, Value};

use super::Tally;
use crate::intake::error::IntakeError;

/// The kinds of metric data and what a point of each holds.
const DATA: [&str; 5] = [
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
];

/// Reads an OTLP/JSON metrics request, leaving out (and counting in `tally`) every point that
/// does not fit its types.
pub fn metrics(body: &[u8], tally: &mut Tally) -> Result<ExportMetricsServiceRequest, IntakeError> {
    let mut tree = parse(body, "ExportMetricsServiceRequest")?;
    for metric in each(&mut tree, &["resourceMetrics", "scopeMetrics", "metrics"]) {
        let name = metric
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for kind in DATA {
            let Some(points) = metric
                .get_mut(kind)
                .and_then(|d| d.get_mut("dataPoints"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            points.retain(|point| match check_point(point) {
                Ok(()) => true,
                Err(why) => {
                    tally.reject(1, &format!("metric `{name}`: a point's {why}"));
                    false
                }
            });
        }
    }
    typed(tree, "ExportMetricsServiceRequest")
}

/// Reads an OTLP/JSON logs request, leaving out (and counting in `tally`) every record that
/// does not fit its types.
pub fn logs(body: &[u8], tally: &mut Tally) -> Result<ExportLogsServiceRequest, IntakeError> {
    let mut tree = parse(body, "ExportLogsServiceRequest")?;
    for scope in each(&mut tree, &["resourceLogs", "scopeLogs"]) {
        if let Some(records) = scope.get_mut("logRecords").and_then(Value::as_array_mut) {
            records.retain(|record| match check_record(record) {
                Ok(()) => true,
                Err(why) => {
                    tally.reject(1, &format!("a log record's {why}"));
                    false
                }
            });
        }
    }
    typed(tree, "ExportLogsServiceRequest")
}

/// An `ExportTraceServiceRequest` in OTLP/JSON, leaving out (and counting) spans whose fields
/// do not fit their types.
pub fn traces(body: &[u8], tally: &mut Tally) -> Result<ExportTraceServiceRequest, IntakeError> {
    let mut tree = parse(body, "ExportTraceServiceRequest")?;
    for scope in each(&mut tree, &["resourceSpans", "scopeSpans"]) {
        if let Some(spans) = scope.get_mut("spans").and_then(Value::as_array_mut) {
            spans.retain(|span| match check_span(span) {
                Ok(()) => true,
                Err(why) => {
                    tally.reject(1, &format!("a span's {why}"));
                    false
                }
            });
        }
    }
    typed(tree, "ExportTraceServiceRequest")
}

fn parse(body: &[u8], what: &str) -> Result<Value, IntakeError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(IntakeError::Decode(format!(
            "the body is not valid UTF-8 (an invalid byte at offset {})",
            e.valid_up_to()
        )));
    }
    serde_json::from_slice::<Strict>(body)
        .map(|Strict(tree)| tree)
        .map_err(|e| IntakeError::Decode(format!("the body is not a valid {what}: {e}")))
}

/// A JSON tree as `serde_json` reads one, except that an object giving a field twice is an
/// error naming it (as protobuf's JSON parsers refuse it), not its last value.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{key}`"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn typed<T: serde::de::DeserializeOwned>(tree: Value, what: &str) -> Result<T, IntakeError> {
    serde_json::from_value(tree)
        .map_err(|e| IntakeError::Decode(format!("the body is not a valid {what}: {e}")))
}

/// The objects found by following `path` (arrays of objects) from `tree`.
fn each<'a>(tree: &'a mut Value, path: &[&str]) -> Vec<&'a mut Map<String, Value>> {
    let mut level: Vec<&mut Value> = vec![tree];
    for key in path {
        level = level
            .into_iter()
            .filter_map(|v| v.get_mut(*key).and_then(Value::as_array_mut))
            .flatten()
            .collect();
    }
    level.into_iter().filter_map(Value::as_object_mut).collect()
}

/// A value that does not fit its OTLP field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Misfit {
    /// The value as a whole is not what the field takes; the field's check names it.
    #[error("the value does not fit")]
    Whole,
    /// What is wrong, with the path down to it (`` `attributes`: attribute `k`: … ``).
    #[error("{0}")]
    Named(String),
}

/// How a JSON value must fit an OTLP field.
#[derive(Clone, Copy)]
enum Fit {
    U64,
    I64,
    U32,
    I32,
    Double,
    U64s,
    Doubles,
    Attributes,
    Exemplars,
    Buckets,
    Hex,
    Events,
    Links,
    Status,
}

impl Fit {
    fn name(self) -> &'static str {
        match self {
            Fit::U64 => "an unsigned 64-bit integer",
            Fit::I64 => "a signed 64-bit integer",
            Fit::U32 => "an unsigned 32-bit integer",
            Fit::I32 => "a signed 32-bit integer",
            Fit::Double => "a number",
            Fit::U64s => "a list of unsigned 64-bit integers",
            Fit::Doubles => "a list of numbers",
            Fit::Attributes => "a list of attributes",
            Fit::Exemplars => "a list of exemplars",
            Fit::Buckets => "a bucket span",
            Fit::Hex => "a string of hexadecimal digits",
            Fit::Events => "a list of span events",
            Fit::Links => "a list of span links",
            Fit::Status => "a span status",
        }
    }

    /// Whether `value` fits, with the reason of the first inner value that does not.
    fn check(self, value: &Value) -> Result<(), Misfit> {
        let whole = |ok: bool| if ok { Ok(()) } else { Err(Misfit::Whole) };
        match self {
            Fit::U64 => whole(integer(value).is_some_and(|n| u64::try_from(n).is_ok())),
            Fit::I64 => whole(integer(value).is_some_and(|n| i64::try_from(n).is_ok())),
            Fit::U32 => whole(integer(value).is_some_and(|n| u32::try_from(n).is_ok())),
            Fit::I32 => whole(integer(value).is_some_and(|n| i32::try_from(n).is_ok())),
            Fit::Double => whole(
                value.is_number()
                    || matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity")),
            ),
            Fit::U64s => all(value, |v| Fit::U64.check(v)),
            Fit::Doubles => all(value, |v| Fit::Double.check(v)),
            Fit::Attributes => all(value, check_pair),
            Fit::Exemplars => all(value, |e| {
                let expected = [
                    ("timeUnixNano", Fit::U64),
                    ("asInt", Fit::I64),
                    ("asDouble", Fit::Double),
                    ("filteredAttributes", Fit::Attributes),
                ];
                fields(e, &expected)
            }),
            Fit::Buckets => fields(value, &[("offset", Fit::I32), ("bucketCounts", Fit::U64s)]),
            Fit::Hex => whole(
                value
                    .as_str()
                    .is_some_and(|s| s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())),
            ),
            Fit::Events => all(value, |e| {
                let expected = [
                    ("timeUnixNano", Fit::U64),
                    ("attributes", Fit::Attributes),
                    ("droppedAttributesCount", Fit::U32),
                ];
                fields(e, &expected)
            }),
            Fit::Links => all(value, |l| {
                let expected = [
                    ("traceId", Fit::Hex),
                    ("spanId", Fit::Hex),
                    ("attributes", Fit::Attributes),
                    ("droppedAttributesCount", Fit::U32),
                    ("flags", Fit::U32),
                ];
                fields(l, &expected)
            }),
            Fit::Status => fields(value, &[("code", Fit::I32)]),
        }
    }
}

/// A JSON integer, or a string holding one, as OTLP/JSON writes 64-bit integers.
fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Checks every element of an array (an absent or null list is empty).
fn all(value: &Value, check: impl Fn(&Value) -> Result<(), Misfit>) -> Result<(), Misfit> {
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => items.iter().try_for_each(check),
        _ => Err(Misfit::Whole),
    }
}

/// Checks the named fields of an object against their fits; the error names the field.
fn fields(object: &Value, expected: &[(&str, Fit)]) -> Result<(), Misfit> {
    let Some(object) = object.as_object() else {
        return Err(Misfit::Named("entry is not an object".into()));
    };
    for &(key, fit) in expected {
        let Some(value) = object.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        fit.check(value).map_err(|inner| {
            Misfit::Named(match inner {
                Misfit::Whole => format!("`{key}` is not {}: {}", fit.name(), shown(value)),
                Misfit::Named(inner) => format!("`{key}`: {inner}"),
            })
        })?;
    }
    Ok(())
}

/// A value, shortened for an error message.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// A `KeyValue`: its value must fit `AnyValue`.
fn check_pair(pair: &Value) -> Result<(), Misfit> {
    let value = pair.get("value").unwrap_or(&Value::Null);
    check_any(value).map_err(|why| {
        let key = pair.get("key").and_then(Value::as_str).unwrap_or_default();
        Misfit::Named(format!("attribute `{key}`: {why}"))
    })
}

/// An `AnyValue`, with its arrays and maps.
fn check_any(value: &Value) -> Result<(), Misfit> {
    if value.is_null() {
        return Ok(());
    }
    fields(
        value,
        &[("intValue", Fit::I64), ("doubleValue", Fit::Double)],
    )?;
    let nested = |key: &str| value.get(key).and_then(|v| v.get("values"));
    if let Some(items) = nested("arrayValue") {
        all(items, check_any)?;
    }
    if let Some(pairs) = nested("kvlistValue") {
        all(pairs, check_pair)?;
    }
    Ok(())
}

/// A data point of any kind: every numeric field it may have.
fn check_point(point: &Value) -> Result<(), Misfit> {
    fields(
        point,
        &[
            ("startTimeUnixNano", Fit::U64),
            ("timeUnixNano", Fit::U64),
            ("asInt", Fit::I64),
            ("asDouble", Fit::Double),
            ("count", Fit::U64),
            ("sum", Fit::Double),
            ("min", Fit::Double),
            ("max", Fit::Double),
            ("bucketCounts", Fit::U64s),
            ("explicitBounds", Fit::Doubles),
            ("scale", Fit::I32),
            ("zeroCount", Fit::U64),
            ("zeroThreshold", Fit::Double),
            ("positive", Fit::Buckets),
            ("negative", Fit::Buckets),
            ("flags", Fit::U32),
            ("attributes", Fit::Attributes),
            ("exemplars", Fit::Exemplars),
        ],
    )
}

/// A log record: its times, severity, flags, body and attributes.
fn check_record(record: &Value) -> Result<(), Misfit> {
    fields(
        record,
        &[
            ("timeUnixNano", Fit::U64),
            ("observedTimeUnixNano", Fit::U64),
            ("flags", Fit::U32),
            ("attributes", Fit::Attributes),
        ],
    )?;
    check_any(record.get("body").unwrap_or(&Value::Null))
        .map_err(|why| Misfit::Named(format!("`body`: {why}")))
}

/// A span: its ids, times, kind, counts, attributes, events, links and status.
fn check_span(span: &Value) -> Result<(), Misfit> {
    fields(
        span,
        &[
            ("traceId", Fit::Hex),
            ("spanId", Fit::Hex),
            ("parentSpanId", Fit::Hex),
            ("flags", Fit::U32),
            ("kind", Fit::I32),
            ("startTimeUnixNano", Fit::U64),
            ("endTimeUnixNano", Fit::U64),
            ("attributes", Fit::Attributes),
            ("droppedAttributesCount", Fit::U32),
            ("events", Fit::Events),
            ("droppedEventsCount", Fit::U32),
            ("links", Fit::Links),
            ("droppedLinksCount", Fit::U32),
            ("status", Fit::Status),
        ],
    )
}
