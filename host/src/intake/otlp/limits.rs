//! The cost of an OTLP request, checked on its protobuf bytes before anything is decoded:
//! counts of resources, scopes, metrics, points, log records, spans and their events and
//! links, the size of every attribute set, key, value, histogram and nesting level, and the
//! memory decoding would take, each against `[intake.limits]`.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::RequestLimits;
use crate::intake::error::IntakeError;
use crate::model::wire::{Fields, Value};

/// What a request holds in all, counted as it is walked.
#[derive(Debug, Default)]
struct Totals {
    resources: usize,
    scopes: usize,
    metrics: usize,
    points: usize,
    log_records: usize,
    spans: usize,
    /// Bytes the decoded messages would take, strings aside.
    decoded: usize,
}

/// What a JSON object is counted as once decoded: about the largest OTLP message.
const JSON_OBJECT: usize = 160;

/// Checks what decoding an OTLP/JSON body would take, counting its objects (outside strings)
/// at the size of the largest message, before it is decoded.
pub fn json(body: &[u8], limits: &RequestLimits) -> Result<(), IntakeError> {
    let (mut objects, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b'{') => objects += 1,
            _ => {}
        }
    }
    decoded(objects.saturating_mul(JSON_OBJECT) + body.len(), limits)
}

/// Refuses `bytes` of decoded request over the limit.
fn decoded(bytes: usize, limits: &RequestLimits) -> Result<(), IntakeError> {
    within(
        "bytes once decoded (estimated before decoding)",
        bytes,
        limits.decoded_bytes,
    )
}

/// A walk of one request against `limits`.
struct Walk<'l> {
    limits: &'l RequestLimits,
    totals: Totals,
}

/// Refuses `value` of `what` when it passes `limit`.
fn within(what: &'static str, value: usize, limit: usize) -> Result<(), IntakeError> {
    if value > limit {
        return Err(IntakeError::OverLimit { what, value, limit });
    }
    Ok(())
}

/// The length-delimited fields `number` of `message`; fields of another wire type are left to
/// the decoder, which refuses them.
fn messages(message: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(message).filter_map(move |field| match field {
        Ok((n, Value::Len(bytes))) if n == number => Some(bytes),
        _ => None,
    })
}

/// Checks an `ExportMetricsServiceRequest`'s cost against `limits`; malformed bytes pass here
/// and are refused by the decoder.
pub fn metrics(body: &[u8], limits: &RequestLimits) -> Result<(), IntakeError> {
    let mut walk = Walk::new(limits);
    for rm in messages(body, 1) {
        walk.totals.resources += 1;
        walk.totals.decoded += size_of::<ResourceMetrics>() + size_of::<Resource>();
        walk.resource(rm)?;
        for sm in messages(rm, 2) {
            walk.totals.scopes += 1;
            walk.totals.decoded += size_of::<ScopeMetrics>() + size_of::<InstrumentationScope>();
            walk.scope(sm)?;
            for metric in messages(sm, 2) {
                walk.totals.metrics += 1;
                walk.totals.decoded += size_of::<Metric>();
                walk.metric(metric)?;
            }
        }
    }
    let estimate = walk.totals.decoded + body.len();
    walk.finish()?;
    decoded(estimate, limits)
}

/// Checks an `ExportLogsServiceRequest`'s cost against `limits`.
pub fn logs(body: &[u8], limits: &RequestLimits) -> Result<(), IntakeError> {
    let mut walk = Walk::new(limits);
    for rl in messages(body, 1) {
        walk.totals.resources += 1;
        walk.resource(rl)?;
        for sl in messages(rl, 2) {
            walk.totals.scopes += 1;
            walk.scope(sl)?;
            for record in messages(sl, 2) {
                walk.totals.log_records += 1;
                // LogRecord: body 5, attributes 6.
                walk.attributes(record, 6, "attributes on one log record")?;
                for body in messages(record, 5) {
                    walk.value(body, 1)?;
                }
            }
        }
    }
    walk.finish()
}

/// Checks an `ExportTraceServiceRequest`'s cost against `limits`: spans, and per span its
/// attributes, events and links (and theirs).
pub fn traces(body: &[u8], limits: &RequestLimits) -> Result<(), IntakeError> {
    let mut walk = Walk::new(limits);
    for rs in messages(body, 1) {
        walk.totals.resources += 1;
        walk.resource(rs)?;
        for ss in messages(rs, 2) {
            walk.totals.scopes += 1;
            walk.scope(ss)?;
            for span in messages(ss, 2) {
                walk.totals.spans += 1;
                walk.span(span)?;
            }
        }
    }
    walk.finish()
}

impl<'l> Walk<'l> {
    fn new(limits: &'l RequestLimits) -> Self {
        Self {
            limits,
            totals: Totals::default(),
        }
    }

    fn finish(self) -> Result<(), IntakeError> {
        let (t, l) = (self.totals, self.limits);
        within("resources", t.resources, l.resources)?;
        within("scopes", t.scopes, l.scopes)?;
        within("metrics", t.metrics, l.metrics)?;
        within("data points", t.points, l.points)?;
        within("log records", t.log_records, l.log_records)?;
        within("spans", t.spans, l.spans)
    }

    /// A `Span`: attributes 9, events 11 (attributes 3), links 13 (attributes 4).
    fn span(&mut self, span: &[u8]) -> Result<(), IntakeError> {
        self.attributes(span, 9, "attributes on one span")?;
        let mut events = 0;
        for event in messages(span, 11) {
            events += 1;
            self.attributes(event, 3, "attributes on one span event")?;
        }
        within("events on one span", events, self.limits.span_events)?;
        let mut links = 0;
        for link in messages(span, 13) {
            links += 1;
            self.attributes(link, 4, "attributes on one span link")?;
        }
        within("links on one span", links, self.limits.span_links)
    }

    /// A `ResourceMetrics` or `ResourceLogs`: its resource (field 1) and that one's attributes.
    fn resource(&mut self, message: &[u8]) -> Result<(), IntakeError> {
        for resource in messages(message, 1) {
            self.attributes(resource, 1, "attributes on one resource")?;
        }
        Ok(())
    }

    /// A `ScopeMetrics` or `ScopeLogs`: its scope (field 1), whose attributes are field 3.
    fn scope(&mut self, message: &[u8]) -> Result<(), IntakeError> {
        for scope in messages(message, 1) {
            for text in messages(scope, 1).chain(messages(scope, 2)) {
                within(
                    "bytes in a scope name or version",
                    text.len(),
                    self.limits.value_length,
                )?;
            }
            self.attributes(scope, 3, "attributes on one scope")?;
        }
        Ok(())
    }

    /// A `Metric`: its name (1), metadata (12) and the points of its data (5, 7, 9, 10, 11),
    /// in one pass.
    fn metric(&mut self, metric: &[u8]) -> Result<(), IntakeError> {
        let mut metadata = 0;
        for (number, field) in Fields::new(metric).filter_map(Result::ok) {
            match (number, field) {
                (1, Value::Len(name)) => {
                    within(
                        "bytes in a metric name",
                        name.len(),
                        self.limits.value_length,
                    )?;
                }
                (12, Value::Len(pair)) => {
                    metadata += 1;
                    self.pair(pair, 1)?;
                }
                (5 | 7 | 9 | 10 | 11, Value::Len(data)) => {
                    for point in messages(data, 1) {
                        self.point(number, point)?;
                    }
                }
                _ => {}
            }
        }
        self.counted(metadata, "metadata entries on one metric")
    }

    /// A data point of the kind the metric's data field `kind` holds, in one pass: its
    /// attributes, exemplars, bounds and exponential buckets.
    fn point(&mut self, kind: u32, point: &[u8]) -> Result<(), IntakeError> {
        self.totals.points += 1;
        // The largest point; packed bounds and fixed64 counts take their wire size, counted
        // with the body's length.
        self.totals.decoded += size_of::<HistogramDataPoint>();
        // Per kind: the attributes field and the exemplars field.
        let (attributes, exemplars) = match kind {
            5 | 7 => (7, 5),
            9 => (9, 8),
            10 => (1, 11),
            _ => (7, 0),
        };
        let (mut n, mut bounds) = (0, 0);
        for (number, field) in Fields::new(point).filter_map(Result::ok) {
            match (number, field) {
                (a, Value::Len(pair)) if a == attributes => {
                    n += 1;
                    self.pair(pair, 1)?;
                }
                (e, Value::Len(exemplar)) if e == exemplars => {
                    self.totals.decoded += size_of::<Exemplar>();
                    self.attributes(exemplar, 7, "attributes on one exemplar")?;
                }
                (7, Value::Len(packed)) if kind == 9 => bounds += packed.len() / 8,
                (7, Value::Fixed64(_)) if kind == 9 => bounds += 1,
                (8 | 9, Value::Len(side)) if kind == 10 => {
                    let buckets = packed_varints(side, 2);
                    within(
                        "buckets in one side of an exponential histogram point",
                        buckets,
                        self.limits.exponential_buckets,
                    )?;
                    // Varints of a byte or two, eight bytes each once decoded.
                    self.totals.decoded += buckets * 8;
                }
                _ => {}
            }
        }
        within(
            "bounds on one histogram point",
            bounds,
            self.limits.histogram_bounds,
        )?;
        self.counted(n, "attributes on one data point")
    }

    /// Counts `n` attributes of one owner against the limit.
    fn counted(&mut self, n: usize, what: &'static str) -> Result<(), IntakeError> {
        self.totals.decoded += n * size_of::<KeyValue>();
        within(what, n, self.limits.attributes)
    }

    /// The `KeyValue`s in field `number` of `message`: how many, and each one's size.
    fn attributes(
        &mut self,
        message: &[u8],
        number: u32,
        what: &'static str,
    ) -> Result<(), IntakeError> {
        let mut n = 0;
        for pair in messages(message, number) {
            n += 1;
            self.pair(pair, 1)?;
        }
        self.counted(n, what)
    }

    /// A `KeyValue`: key 1, value 2.
    fn pair(&mut self, pair: &[u8], depth: usize) -> Result<(), IntakeError> {
        // Most attributes are a short key and a scalar value: too short to pass a length
        // limit, and nothing nested to walk.
        if pair.len() <= self.limits.key_length.min(self.limits.value_length)
            && depth <= self.limits.depth
            && flat(pair)
        {
            self.any();
            return Ok(());
        }
        for (number, field) in Fields::new(pair).filter_map(Result::ok) {
            match (number, field) {
                (1, Value::Len(key)) => {
                    within(
                        "bytes in an attribute key",
                        key.len(),
                        self.limits.key_length,
                    )?;
                }
                (2, Value::Len(value)) => self.value(value, depth)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Counts one decoded `AnyValue`.
    fn any(&mut self) {
        self.totals.decoded += size_of::<AnyValue>();
    }

    /// An `AnyValue`: string 1, array 5 (values in field 1), map 6 (pairs in field 1), bytes 7.
    fn value(&mut self, value: &[u8], depth: usize) -> Result<(), IntakeError> {
        self.any();
        within("levels of nested values", depth, self.limits.depth)?;
        for (number, field) in Fields::new(value).filter_map(Result::ok) {
            match (number, field) {
                (1 | 7, Value::Len(text)) => {
                    within("bytes in one value", text.len(), self.limits.value_length)?;
                }
                (5, Value::Len(array)) => {
                    let mut n = 0;
                    for item in messages(array, 1) {
                        n += 1;
                        self.value(item, depth + 1)?;
                    }
                    within("values in one array", n, self.limits.attributes)?;
                }
                (6, Value::Len(map)) => {
                    let mut n = 0;
                    for pair in messages(map, 1) {
                        n += 1;
                        self.pair(pair, depth + 1)?;
                    }
                    within("entries in one map", n, self.limits.attributes)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether `pair` is laid out as `key` (field 1) then a value (field 2) holding one scalar or
/// string (no array or map), each with a one-byte length: what most attributes are.
fn flat(pair: &[u8]) -> bool {
    let [0x0a, key_len, rest @ ..] = pair else {
        return false;
    };
    let Some(rest) = rest
        .get(usize::from(*key_len)..)
        .filter(|_| *key_len < 0x80)
    else {
        return false;
    };
    // The value: tag 2 with a one-byte length, whose first field is not an array (5) or map (6).
    matches!(rest, [0x12, len, first, ..] if *len < 0x80 && usize::from(*len) == rest.len() - 2 && *first != 0x2a && *first != 0x32)
}

/// How many varints field `number` of `message` holds, packed or not.
fn packed_varints(message: &[u8], number: u32) -> usize {
    Fields::new(message)
        .filter_map(Result::ok)
        .map(|field| match field {
            (n, Value::Len(packed)) if n == number => {
                packed.iter().filter(|b| **b & 0x80 == 0).count()
            }
            (n, Value::Varint(_)) if n == number => 1,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
    };
    use prost::Message;

    use super::*;

    fn gauge(attributes: Vec<KeyValue>) -> Vec<u8> {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "g".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                attributes,
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn nested(depth: usize) -> AnyValue {
        (0..depth).fold(
            AnyValue {
                value: Some(any_value::Value::IntValue(1)),
            },
            |inner, _| AnyValue {
                value: Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![inner],
                    },
                )),
            },
        )
    }

    fn kv(key: &str, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(value),
            ..Default::default()
        }
    }

    #[test]
    fn each_limit_names_itself_its_value_and_its_limit() {
        let limits = RequestLimits {
            attributes: 3,
            key_length: 4,
            depth: 3,
            ..Default::default()
        };
        let int = || nested(0);
        let ok = gauge(vec![kv("a", int()), kv("b", int()), kv("c", nested(2))]);
        assert!(metrics(&ok, &limits).is_ok());
        let cases = [
            (
                gauge((0..4).map(|i| kv(&i.to_string(), int())).collect()),
                "the request has 4 attributes on one data point, over the limit of 3 (intake.limits)",
            ),
            (
                gauge(vec![kv("abcde", int())]),
                "the request has 5 bytes in an attribute key, over the limit of 4 (intake.limits)",
            ),
            (
                gauge(vec![kv("a", nested(3))]),
                "the request has 4 levels of nested values, over the limit of 3 (intake.limits)",
            ),
        ];
        for (body, message) in cases {
            let error = metrics(&body, &limits).expect_err(message);
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn short_scalar_attributes_take_the_short_path_and_others_the_walk() {
        let encoded = |value: AnyValue| kv("http.route", value).encode_to_vec();
        let text = AnyValue {
            value: Some(any_value::Value::StringValue("/r1".into())),
        };
        assert!(flat(&encoded(text)));
        assert!(!flat(&encoded(nested(1))), "an array is walked");
        let long = AnyValue {
            value: Some(any_value::Value::StringValue("x".repeat(200))),
        };
        assert!(!flat(&encoded(long)), "a two-byte length is walked");
    }

    #[test]
    fn every_count_and_size_limit_refuses_past_it() {
        let tight = RequestLimits {
            scopes: 0,
            ..Default::default()
        };
        let error = metrics(&gauge(vec![]), &tight).expect_err("a scope");
        assert_eq!(
            error.to_string(),
            "the request has 1 scopes, over the limit of 0 (intake.limits)"
        );
        for (limits, what) in [
            (
                RequestLimits {
                    metrics: 0,
                    ..Default::default()
                },
                "1 metrics",
            ),
            (
                RequestLimits {
                    points: 0,
                    ..Default::default()
                },
                "1 data points",
            ),
            (
                RequestLimits {
                    value_length: 0,
                    ..Default::default()
                },
                "1 bytes in a metric name",
            ),
        ] {
            let error = metrics(&gauge(vec![]), &limits).expect_err(what);
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("the request has {what},")),
                "{error}"
            );
        }
        let long = AnyValue {
            value: Some(any_value::Value::StringValue("x".repeat(10))),
        };
        let limits = RequestLimits {
            value_length: 9,
            ..Default::default()
        };
        let error = metrics(&gauge(vec![kv("k", long)]), &limits).expect_err("long");
        assert_eq!(
            error.to_string(),
            "the request has 10 bytes in one value, over the limit of 9 (intake.limits)"
        );
        // Exponential buckets: a side of 3 varints against a limit of 2.
        use crate::model::wire::Reverse;
        let mut w = Reverse::default();
        w.message(1, |w| {
            w.message(2, |w| {
                w.message(2, |w| {
                    w.message(10, |w| {
                        w.message(1, |w| {
                            w.message(8, |w| w.packed_varint(2, [1u64, 2, 3].into_iter()))
                        });
                    });
                });
            });
        });
        let limits = RequestLimits {
            exponential_buckets: 2,
            ..Default::default()
        };
        let error = metrics(&w.finish(), &limits).expect_err("buckets");
        assert_eq!(
            error.to_string(),
            "the request has 3 buckets in one side of an exponential histogram point, over the limit of 2 (intake.limits)"
        );
        // Log records.
        let mut w = Reverse::default();
        w.message(1, |w| {
            w.message(2, |w| {
                w.message(2, |_| {});
                w.message(2, |_| {});
            });
        });
        let limits = RequestLimits {
            log_records: 1,
            ..Default::default()
        };
        let error = logs(&w.finish(), &limits).expect_err("records");
        assert_eq!(
            error.to_string(),
            "the request has 2 log records, over the limit of 1 (intake.limits)"
        );
    }

    #[test]
    fn spans_their_events_links_and_attributes_are_counted_against_the_limits() {
        use crate::model::wire::Reverse;
        // Two spans; the second has 2 attributes on one event and one link.
        let mut w = Reverse::default();
        w.message(1, |w| {
            w.message(2, |w| {
                w.message(2, |w| {
                    w.message(13, |_| {});
                    w.message(11, |w| {
                        w.message(3, |w| w.bytes_always(1, b"a"));
                        w.message(3, |w| w.bytes_always(1, b"b"));
                    });
                });
                w.message(2, |_| {});
            });
        });
        let body = w.finish();
        assert!(traces(&body, &RequestLimits::default()).is_ok());
        let cases = [
            (
                RequestLimits {
                    spans: 1,
                    ..Default::default()
                },
                "the request has 2 spans, over the limit of 1 (intake.limits)",
            ),
            (
                RequestLimits {
                    attributes: 1,
                    ..Default::default()
                },
                "the request has 2 attributes on one span event, over the limit of 1 (intake.limits)",
            ),
            (
                RequestLimits {
                    span_links: 0,
                    ..Default::default()
                },
                "the request has 1 links on one span, over the limit of 0 (intake.limits)",
            ),
            (
                RequestLimits {
                    span_events: 0,
                    ..Default::default()
                },
                "the request has 1 events on one span, over the limit of 0 (intake.limits)",
            ),
        ];
        for (limits, message) in cases {
            let error = traces(&body, &limits).expect_err(message);
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn totals_are_counted_in_full_before_they_are_refused() {
        // 4,000,000 empty resources in 8 MB: refused with their exact count, nothing decoded.
        let body = [10u8, 0].repeat(4_000_000);
        let error = metrics(&body, &RequestLimits::default()).expect_err("too many");
        assert_eq!(
            error.to_string(),
            "the request has 4000000 resources, over the limit of 1000 (intake.limits)"
        );
        let logs_error = logs(&body, &RequestLimits::default()).expect_err("too many");
        assert_eq!(logs_error.to_string(), error.to_string());
    }

    #[test]
    fn what_decoding_would_take_is_bounded_before_decoding() {
        use crate::model::wire::Reverse;
        // 31,250 points of 128 empty attributes: within every count, 8 MB on the wire, about
        // 4,000,000 attributes once decoded.
        let mut w = Reverse::default();
        w.message(1, |w| {
            w.message(2, |w| {
                w.message(2, |w| {
                    w.message(5, |w| {
                        for _ in 0..31_250 {
                            w.message(1, |w| {
                                for _ in 0..128 {
                                    w.bytes_always(7, b"");
                                }
                            });
                        }
                    });
                });
            });
        });
        let body = w.finish();
        let error = metrics(&body, &RequestLimits::default()).expect_err("too costly");
        let IntakeError::OverLimit { what, value, limit } = error else {
            panic!("{error}");
        };
        assert_eq!(what, "bytes once decoded (estimated before decoding)");
        assert_eq!(limit, 64 << 20);
        assert_eq!(
            value,
            body.len()
                + size_of::<ResourceMetrics>()
                + size_of::<Resource>()
                + size_of::<ScopeMetrics>()
                + size_of::<InstrumentationScope>()
                + size_of::<Metric>()
                + 31_250 * (size_of::<HistogramDataPoint>() + 128 * size_of::<KeyValue>())
        );
        // JSON: four million empty objects, some inside strings that do not count.
        let json_body = format!(
            "{{\"resourceMetrics\":[{}{{\"schemaUrl\":\"{{{{\\\"{{\"}}]}}",
            "{},".repeat(4_000_000)
        );
        let error = json(json_body.as_bytes(), &RequestLimits::default()).expect_err("too costly");
        assert_eq!(
            error.to_string(),
            format!(
                "the request has {} bytes once decoded (estimated before decoding), over the limit of 67108864 (intake.limits)",
                (4_000_002) * JSON_OBJECT + json_body.len()
            )
        );
        let fine = r#"{"resourceMetrics":[{"scopeMetrics":[]}]}"#;
        assert!(json(fine.as_bytes(), &RequestLimits::default()).is_ok());
    }
}
