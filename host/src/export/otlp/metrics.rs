//! Encodes the aggregation engine's state as an OTLP `ExportMetricsServiceRequest`, straight
//! from the series into protobuf bytes: no request, metric or data point is built in memory.
//!
//! Fields are written last to first (see [`Reverse`]), in descending field number, so the bytes
//! are the ones `prost` would write for the same `opentelemetry-proto` messages.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{self as pm, metric::Data};
use prost::Message;

use crate::metrics::aggregation::Buckets;
use crate::metrics::exemplar::Exemplar;
use crate::metrics::reader::{PointValue, Reader, SeriesPoint, Shape, known_extreme};
use crate::metrics::{DeltaTracker, DeltaTrackers, Instrument, Registry};
use crate::model::attributes::{AttributeSet, ValueRef};
use crate::model::metric::Temporality;
use crate::model::resource::Resource;
use crate::model::wire::Reverse;
use crate::plugins::Transforms;
use crate::plugins::bindings::types::{
    Metric, NumberPoint, Points, Span, Table, Temporality as BatchTemporality,
};
use crate::plugins::convert::otlp::SetBytes;
use crate::plugins::convert::{Collected, Probe};

const DELTA: u64 = 1;
const CUMULATIVE: u64 = 2;

/// Collects every instrument of one registry into one encoded request, grouped by scope:
/// cumulative, or with a tracker in the temporality its preference gives each instrument
/// (deltas leave out quiet series).
pub fn encode(registry: &Registry, res: &Resource, delta: Option<&mut DeltaTracker>) -> Vec<u8> {
    let mut w = Reverse::with_capacity(64 * 1024);
    resource_metrics(&mut w, registry, res, delta, &|_| true, None);
    w.finish()
}

/// Collects producers, each given with its id (which picks its delta tracker; 0 is the host's
/// own), into one request with one `ResourceMetrics` each, as
/// [`encode`] does for one, of the instruments whose name `keep` takes; a received resource
/// without points is left out, the host's own never is.
pub fn encode_all(
    producers: &[(u64, &Resource, &Registry)],
    mut delta: Option<&mut DeltaTrackers>,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<u8> {
    let mut w = Reverse::with_capacity(64 * 1024);
    for &(i, res, registry) in producers.iter().rev() {
        let start = w.len();
        let tracker = delta.as_deref_mut().map(|d| d.get(i));
        if !resource_metrics(&mut w, registry, res, tracker, keep, None) && i > 0 {
            w.truncate(start);
        }
    }
    w.finish()
}

/// Producers through `transforms` as [`encode_all`] encodes them in cumulative temporality,
/// when the transforms read only attributes of keys they name and change nothing: each
/// producer's [`Probe`] is gathered as it is encoded and given to them. `None` when they read
/// more, a probe does not stand for its batch, or a transform changed or failed on what it
/// was given: the whole batches must then go through them.
pub fn encode_unchanged(
    producers: &[(u64, &Resource, &Registry)],
    transforms: &Transforms,
    keep: &dyn Fn(&str) -> bool,
) -> Option<Vec<u8>> {
    let readers = transforms.key_readers()?;
    let mut w = Reverse::with_capacity(64 * 1024);
    let mut probes = Vec::new();
    for &(i, res, registry) in producers.iter().rev() {
        let start = w.len();
        let mut probe = Probe::new(&readers.keys);
        if !resource_metrics(&mut w, registry, res, None, keep, Some(&mut probe)) && i > 0 {
            w.truncate(start);
            continue;
        }
        probes.push(probe.batch(res.attributes())?);
    }
    probes
        .iter_mut()
        .all(|(batch, points)| readers.leave(batch, *points))
        .then(|| w.finish())
}

/// Metric collections (after transforms) as one encoded request, one `ResourceMetrics` each,
/// written straight from the batches as [`encode`] writes from the series, with each scope's
/// schema URL; each attribute set is encoded once per batch and copied wherever it is used.
pub fn from_batches(collections: &[Collected]) -> Vec<u8> {
    let mut w = Reverse::with_capacity(64 * 1024);
    for Collected { batch, schema_urls } in collections.iter().rev() {
        let t = &batch.table;
        let mut sets = SetBytes::new(t);
        w.message(1, |w| {
            w.bytes(3, t.string(batch.resource.schema_url).as_bytes());
            for (i, scope) in batch.scopes.iter().enumerate().rev() {
                let members: Vec<&Metric> = batch
                    .metrics
                    .iter()
                    .filter(|m| m.scope as usize == i)
                    .collect();
                if members.is_empty() {
                    continue;
                }
                w.message(2, |w| {
                    w.bytes(3, schema_urls.get(i).map_or("", |s| s).as_bytes());
                    for m in members.iter().rev() {
                        batch_metric(w, t, m, &mut sets);
                    }
                    w.message(1, |w| {
                        sets.write(w, 3, scope.attributes);
                        w.bytes(2, t.string(scope.version).as_bytes());
                        w.bytes(1, t.string(scope.name).as_bytes());
                    });
                });
            }
            w.message(1, |w| sets.write(w, 1, batch.resource.attributes));
        });
    }
    w.finish()
}

/// Writes one batch `Metric` (field 2 of its scope).
fn batch_metric(w: &mut Reverse, t: &Table, m: &Metric, sets: &mut SetBytes<'_>) {
    let temporality = match m.temporality {
        BatchTemporality::Delta => DELTA,
        BatchTemporality::Cumulative => CUMULATIVE,
    };
    // The exemplars of each point, in order: positions in `m.exemplars` sorted by point.
    let mut order: Vec<usize> = (0..m.exemplars.len()).collect();
    order.sort_by_key(|&i| m.exemplars[i].point);
    let of_point = |p: usize| {
        let from = order.partition_point(|&i| (m.exemplars[i].point as usize) < p);
        let to = order.partition_point(|&i| (m.exemplars[i].point as usize) <= p);
        &order[from..to]
    };
    fn span<'a, T>(list: &'a [T], s: &Span) -> &'a [T] {
        let start = s.start as usize;
        list.get(start..start.saturating_add(s.len as usize))
            .unwrap_or_default()
    }
    w.message(2, |w| {
        let exemplars = |w: &mut Reverse, field: u32, p: usize, sets: &mut SetBytes<'_>| {
            for &i in of_point(p).iter().rev() {
                let e = &m.exemplars[i];
                w.message(field, |w| {
                    sets.write(w, 7, e.filtered_attributes);
                    if let Some(trace) = &e.trace {
                        let (trace_id, span_id) = crate::plugins::batch::trace_bytes(trace);
                        w.bytes(5, &trace_id);
                        w.bytes(4, &span_id);
                    }
                    w.fixed64_always(3, e.value.to_bits());
                    w.fixed64(2, e.time_unix_nano);
                });
            }
        };
        let numbers = |w: &mut Reverse, points: &[NumberPoint], sets: &mut SetBytes<'_>| {
            for (i, p) in points.iter().enumerate().rev() {
                w.message(1, |w| {
                    sets.write(w, 7, p.attributes);
                    exemplars(w, 5, i, sets);
                    w.fixed64_always(4, p.value.to_bits());
                    w.fixed64(3, p.time_unix_nano);
                    w.fixed64(2, p.start_time_unix_nano);
                });
            }
        };
        match &m.points {
            Points::Gauge(points) => w.message(5, |w| numbers(w, points, sets)),
            Points::Sum(points) => w.message(7, |w| {
                w.varint(3, u64::from(m.monotonic));
                w.varint(2, temporality);
                numbers(w, points, sets);
            }),
            Points::Histogram(points) => w.message(9, |w| {
                w.varint(2, temporality);
                for (i, p) in points.iter().enumerate().rev() {
                    w.message(1, |w| {
                        optional(w, 12, p.max);
                        optional(w, 11, p.min);
                        sets.write(w, 9, p.attributes);
                        exemplars(w, 8, i, sets);
                        let bounds = span(&m.bounds, &p.bounds).iter().map(|b| b.to_bits());
                        w.packed_fixed64(7, bounds);
                        w.packed_fixed64(6, span(&m.counts, &p.bucket_counts).iter().copied());
                        optional(w, 5, p.sum);
                        w.fixed64(4, p.count);
                        w.fixed64(3, p.time_unix_nano);
                        w.fixed64(2, p.start_time_unix_nano);
                    });
                }
            }),
            Points::ExponentialHistogram(points) => w.message(10, |w| {
                w.varint(2, temporality);
                for (i, p) in points.iter().enumerate().rev() {
                    let buckets = |w: &mut Reverse, field: u32, offset: i32, s: &Span| {
                        w.message(field, |w| {
                            w.packed_varint(2, span(&m.counts, s).iter().copied());
                            w.sint32(1, offset);
                        });
                    };
                    w.message(1, |w| {
                        w.double(14, p.zero_threshold);
                        optional(w, 13, p.max);
                        optional(w, 12, p.min);
                        exemplars(w, 11, i, sets);
                        buckets(w, 9, p.negative_offset, &p.negative);
                        buckets(w, 8, p.positive_offset, &p.positive);
                        w.fixed64(7, p.zero_count);
                        w.sint32(6, p.scale);
                        optional(w, 5, p.sum);
                        w.fixed64(4, p.count);
                        w.fixed64(3, p.time_unix_nano);
                        w.fixed64(2, p.start_time_unix_nano);
                        sets.write(w, 1, p.attributes);
                    });
                }
            }),
        }
        w.bytes(3, t.string(m.unit).as_bytes());
        w.bytes(2, t.string(m.description).as_bytes());
        w.bytes(1, t.string(m.name).as_bytes());
    });
}

/// An `optional double` field, when present.
fn optional(w: &mut Reverse, field: u32, v: Option<f64>) {
    if let Some(v) = v {
        w.fixed64_always(field, v.to_bits());
    }
}

/// An encoded request as two, each with about half of its data points; `None` when it holds
/// fewer than two points (or is not a metrics request).
pub fn split_request(body: &[u8]) -> Option<(Bytes, Bytes)> {
    let request = ExportMetricsServiceRequest::decode(body).ok()?;
    let count = |m: &pm::Metric| match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    let total: usize = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(count)
        .sum();
    if total < 2 {
        return None;
    }
    let half = total / 2;
    let (mut first, mut second) = (
        ExportMetricsServiceRequest::default(),
        ExportMetricsServiceRequest::default(),
    );
    let mut taken = 0;
    for rm in request.resource_metrics {
        let (mut a, mut b) = (rm.clone(), rm);
        for (sa, sb) in a.scope_metrics.iter_mut().zip(b.scope_metrics.iter_mut()) {
            let metrics = std::mem::take(&mut sa.metrics);
            sb.metrics.clear();
            for metric in metrics {
                let n = count(&metric);
                let room = half.saturating_sub(taken);
                taken += n;
                if room >= n {
                    sa.metrics.push(metric);
                } else if room == 0 {
                    sb.metrics.push(metric);
                } else {
                    let (x, y) = split_metric(metric, room);
                    sa.metrics.push(x);
                    sb.metrics.push(y);
                }
            }
        }
        a.scope_metrics.retain(|s| !s.metrics.is_empty());
        b.scope_metrics.retain(|s| !s.metrics.is_empty());
        if !a.scope_metrics.is_empty() {
            first.resource_metrics.push(a);
        }
        if !b.scope_metrics.is_empty() {
            second.resource_metrics.push(b);
        }
    }
    Some((
        Bytes::from(first.encode_to_vec()),
        Bytes::from(second.encode_to_vec()),
    ))
}

/// A metric as two: its first `at` points, and the rest.
fn split_metric(metric: pm::Metric, at: usize) -> (pm::Metric, pm::Metric) {
    fn halve<T>(points: &mut Vec<T>, at: usize) -> Vec<T> {
        points.split_off(at.min(points.len()))
    }
    let mut first = metric.clone();
    let mut second = metric;
    match (&mut first.data, &mut second.data) {
        (Some(Data::Gauge(a)), Some(Data::Gauge(b))) => {
            b.data_points = halve(&mut a.data_points, at)
        }
        (Some(Data::Sum(a)), Some(Data::Sum(b))) => b.data_points = halve(&mut a.data_points, at),
        (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => {
            b.data_points = halve(&mut a.data_points, at);
        }
        (Some(Data::ExponentialHistogram(a)), Some(Data::ExponentialHistogram(b))) => {
            b.data_points = halve(&mut a.data_points, at);
        }
        (Some(Data::Summary(a)), Some(Data::Summary(b))) => {
            b.data_points = halve(&mut a.data_points, at)
        }
        _ => {}
    }
    (first, second)
}

/// Writes one `ResourceMetrics` (field 1 of the request); returns whether it holds any point.
fn resource_metrics(
    w: &mut Reverse,
    registry: &Registry,
    res: &Resource,
    delta: Option<&mut DeltaTracker>,
    keep: &dyn Fn(&str) -> bool,
    mut probe: Option<&mut Probe<'_>>,
) -> bool {
    let scopes = Reader::scopes_where(registry, keep);
    let mut reader = Reader::new(delta);
    let mut any = false;
    w.message(1, |w| {
        for (scope, members) in scopes.iter().rev() {
            let start = w.len();
            let mut wrote = false;
            w.message(2, |w| {
                w.bytes(3, scope.schema_url.as_bytes());
                let metrics = w.len();
                for instrument in members.iter().rev() {
                    metric(w, instrument, &mut reader, probe.as_deref_mut());
                }
                wrote = w.len() > metrics;
                w.message(1, |w| {
                    attributes(w, 3, &scope.attributes);
                    w.bytes(2, scope.version.as_bytes());
                    w.bytes(1, scope.name.as_bytes());
                });
            });
            if wrote {
                any = true;
                if let Some(probe) = probe.as_deref_mut() {
                    probe.scope(&scope.name, &scope.version, &scope.attributes);
                }
            } else {
                w.truncate(start); // none of the scope's instruments had points
            }
        }
        w.message(1, |w| attributes(w, 1, res.attributes()));
    });
    reader.finish();
    any
}

/// Writes one `Metric` (field 2 of its scope) if the instrument has points to export, each
/// point's attribute set shown to `probe`.
fn metric(
    w: &mut Reverse,
    instrument: &Instrument,
    reader: &mut Reader<'_>,
    mut probe: Option<&mut Probe<'_>>,
) {
    let d = instrument.descriptor();
    let temporality = match reader.temporality(instrument) {
        Temporality::Delta => DELTA,
        Temporality::Cumulative => CUMULATIVE,
    };
    let shape = Shape::of(instrument);
    let start = w.len();
    let mut points = 0usize;
    w.message(2, |w| {
        let mut write = |w: &mut Reverse| {
            reader.read(instrument, |p| {
                if let Some(probe) = probe.as_deref_mut() {
                    probe.point(p.attributes, shape == Shape::Summary);
                }
                point(w, &p);
            })
        };
        match shape {
            Shape::Sum { monotonic } => w.message(7, |w| {
                w.varint(3, u64::from(monotonic));
                w.varint(2, temporality);
                points = write(w);
            }),
            Shape::Gauge => w.message(5, |w| points = write(w)),
            Shape::Histogram => w.message(9, |w| {
                w.varint(2, temporality);
                points = write(w);
            }),
            Shape::ExponentialHistogram => w.message(10, |w| {
                w.varint(2, temporality);
                points = write(w);
            }),
            Shape::Summary => w.message(11, |w| points = write(w)),
        }
        w.bytes(3, d.unit.as_bytes());
        w.bytes(2, d.description.as_bytes());
        w.bytes(1, d.name.as_bytes());
    });
    if points == 0 {
        w.truncate(start);
    }
}

/// One data point (field 1 of its `Sum`, `Gauge`, `Histogram`, `ExponentialHistogram` or
/// `Summary`).
fn point(w: &mut Reverse, p: &SeriesPoint<'_>) {
    let (start, now) = (p.start, p.time);
    match &p.value {
        PointValue::Number(value) => w.message(1, |w| {
            attributes(w, 7, p.attributes);
            exemplars(w, 5, &p.exemplars());
            w.fixed64_always(4, value.to_bits());
            w.fixed64(3, now);
            w.fixed64(2, start);
        }),
        PointValue::Histogram(h, bounds) => w.message(1, |w| {
            extremes(w, 12, 11, h.count, h.min, h.max);
            attributes(w, 9, p.attributes);
            exemplars(w, 8, &p.exemplars());
            w.packed_fixed64(7, bounds.iter().map(|b| b.to_bits()));
            w.packed_fixed64(6, h.bucket_counts.iter().copied());
            w.fixed64_always(5, h.sum.to_bits());
            w.fixed64(4, h.count);
            w.fixed64(3, now);
            w.fixed64(2, start);
        }),
        PointValue::Exponential(e) => {
            let buckets = |w: &mut Reverse, field: u32, b: &Buckets| {
                w.message(field, |w| {
                    w.packed_varint(2, b.counts.iter().copied());
                    w.sint32(1, b.offset);
                });
            };
            w.message(1, |w| {
                extremes(w, 13, 12, e.count, e.min, e.max);
                exemplars(w, 11, &p.exemplars());
                buckets(w, 9, &e.negative);
                buckets(w, 8, &e.positive);
                w.fixed64(7, e.zero_count);
                w.sint32(6, e.scale);
                w.fixed64_always(5, e.sum.to_bits());
                w.fixed64(4, e.count);
                w.fixed64(3, now);
                w.fixed64(2, start);
                attributes(w, 1, p.attributes);
            });
        }
        PointValue::Summary(s) => w.message(1, |w| {
            attributes(w, 7, p.attributes);
            for (quantile, value) in s.quantiles.iter().rev() {
                w.message(6, |w| {
                    w.double(2, *value);
                    w.double(1, *quantile);
                });
            }
            w.double(5, s.sum);
            w.fixed64(4, s.count);
            w.fixed64(3, now);
            w.fixed64(2, start);
        }),
    }
}

/// A histogram point's optional `max` and `min`, when known.
fn extremes(w: &mut Reverse, max_field: u32, min_field: u32, count: u64, min: f64, max: f64) {
    if let Some(max) = known_extreme(count, max) {
        w.fixed64_always(max_field, max.to_bits());
    }
    if let Some(min) = known_extreme(count, min) {
        w.fixed64_always(min_field, min.to_bits());
    }
}

/// A point's exemplars as repeated `Exemplar` messages in `field`.
fn exemplars(w: &mut Reverse, field: u32, exemplars: &[(usize, Exemplar)]) {
    for (_, e) in exemplars.iter().rev() {
        w.message(field, |w| {
            if let Some(trace) = &e.trace {
                w.bytes(5, &trace.trace_id);
                w.bytes(4, &trace.span_id);
            }
            w.fixed64_always(3, e.value.to_bits());
            w.fixed64(2, e.time_unix_nano);
        });
    }
}

/// An attribute set as repeated `KeyValue` messages in `field`.
pub(super) fn attributes(w: &mut Reverse, field: u32, attrs: &AttributeSet) {
    // Pairs decode first to last; the first 16 wait on the stack to be written in reverse.
    let mut first = [("", ValueRef::Bool(false)); 16];
    let (mut n, mut more) = (0, Vec::new());
    for pair in attrs.iter() {
        match first.get_mut(n) {
            Some(slot) => {
                *slot = pair;
                n += 1;
            }
            None => more.push(pair),
        }
    }
    for (key, value) in more
        .into_iter()
        .rev()
        .chain(first[..n].iter().rev().copied())
    {
        w.message(field, |w| {
            w.message(2, |w| match value {
                ValueRef::Str(s) => w.bytes_always(1, s.as_bytes()),
                ValueRef::Bool(b) => w.varint_always(2, u64::from(b)),
                ValueRef::Int(i) => w.varint_always(3, i as u64),
                ValueRef::Double(d) => w.fixed64_always(4, d.to_bits()),
            });
            w.bytes(1, key.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric::Data};
    use prost::Message;

    use super::*;
    use crate::metrics::Descriptor;
    use crate::model::event::TraceContext;
    use crate::model::metric::ExemplarFilter;
    use crate::model::metric::InstrumentKind;
    use crate::plugins::bindings::types::Value;
    use crate::plugins::convert;

    fn desc(name: &str, kind: InstrumentKind, scope: &'static str) -> Descriptor {
        Descriptor {
            name: name.into(),
            unit: "s".into(),
            description: format!("{name} described"),
            kind,
            scope: scope.into(),
        }
    }

    const TRACE: TraceContext = TraceContext {
        trace_id: [7; 16],
        span_id: [9; 8],
    };

    /// A registry with every storage kind across two scopes, one instrument and one scope empty.
    fn registry() -> Registry {
        let exponential = crate::model::stream::StreamView {
            instrument: Some("e".into()),
            aggregation: Some(crate::model::metric::Aggregation::Base2ExponentialBucketHistogram),
            ..Default::default()
        };
        let reg = Registry::new(10)
            .with_exemplar_filter(ExemplarFilter::TraceBased)
            .with_stream_views(vec![exponential])
            .expect("valid view");
        let at = |k: &'static str| [("k", ValueRef::Str(k)), ("n", ValueRef::Int(-3))];
        let c = reg
            .instrument(desc("c", InstrumentKind::Counter, "a"), &[])
            .expect("c");
        c.record_traced(&at("x"), 2.0, Some(TRACE));
        c.record(&at("y"), 0.0);
        let g = reg
            .instrument(desc("g", InstrumentKind::Gauge, "b"), &[])
            .expect("g");
        g.record(
            &[("on", ValueRef::Bool(false)), ("r", ValueRef::Double(0.5))],
            -1.0,
        );
        let h = reg
            .instrument(desc("h", InstrumentKind::Histogram, "a"), &[1.0, 5.0])
            .expect("h");
        h.record_traced(&[], 3.0, Some(TRACE));
        h.record(&[], 0.5);
        reg.instrument(desc("idle", InstrumentKind::UpDownCounter, "empty"), &[])
            .expect("idle");
        let e = reg
            .instrument(desc("e", InstrumentKind::Histogram, "b"), &[])
            .expect("e");
        for v in [0.0, -2.0, 3.0] {
            e.record_traced(&[], v, Some(TRACE));
        }
        reg
    }

    #[test]
    fn each_producer_is_one_resource_and_quiet_received_ones_are_left_out() {
        use crate::model::attributes::{AttributeSet, Value};
        use std::sync::Arc;
        let resource = |name: &str| {
            Resource::from_attributes(AttributeSet::from_pairs(vec![(
                Arc::from("service.name"),
                Value::Str(Arc::from(name)),
            )]))
        };
        let (own, quiet, busy) = (Registry::new(5), Registry::new(5), Registry::new(5));
        let mut d = desc("jobs", InstrumentKind::Counter, "app");
        d.scope.version = Arc::from("9.1");
        d.scope.attributes = AttributeSet::from_pairs(vec![(Arc::from("lib"), Value::Int(2))]);
        busy.instrument(d.clone(), &[]).expect("c").record(&[], 4.0);
        quiet.instrument(d, &[]).expect("c");
        let (r0, r1, r2) = (resource("host"), resource("quiet"), resource("busy"));
        let bytes = encode_all(
            &[(0, &r0, &own), (1, &r1, &quiet), (2, &r2, &busy)],
            None,
            &|_| true,
        );
        let request = ExportMetricsServiceRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(request.encode_to_vec(), bytes, "canonical");
        let names: Vec<String> = request
            .resource_metrics
            .iter()
            .map(|r| {
                let attrs = &r.resource.as_ref().expect("resource").attributes;
                format!("{:?}", attrs[0].value.as_ref().expect("value").value)
            })
            .collect();
        assert_eq!(
            names.len(),
            2,
            "the host's own always, the quiet one left out: {names:?}"
        );
        assert!(
            names[0].contains("host") && names[1].contains("busy"),
            "{names:?}"
        );
        let scope = request.resource_metrics[1].scope_metrics[0]
            .scope
            .as_ref()
            .expect("scope");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("app", "9.1")
        );
        assert_eq!(scope.attributes[0].key, "lib");
    }

    #[test]
    fn a_batch_is_written_as_prost_writes_its_request() {
        use crate::plugins::batch::Interner;
        let resource = crate::sources::resource::detect(&Default::default());
        let mut collected = convert::metric_batch(&registry(), &resource, None);
        let batch = &mut collected.batch;
        // Values a registry never holds: bytes, JSON, and a filtered exemplar attribute.
        let mut t = Interner::new();
        let (k, j) = (t.string("blob"), t.string("list"));
        let (b, l) = (
            t.value(Value::Bytes(vec![0, 1, 2])),
            t.value(Value::Json("[1,\"a\",{\"x\":true}]".into())),
        );
        let extra = t.set_of([(k, b), (j, l)].into_iter());
        let extra_table = t.finish();
        let offset = batch.table.sets.len() as u32;
        let at = batch.table.attributes.len() as u32;
        let strings = batch.table.strings.len() as u32;
        let values = batch.table.values.len() as u32;
        batch.table.strings.extend(extra_table.strings);
        batch.table.values.extend(extra_table.values);
        batch
            .table
            .attributes
            .extend(extra_table.attributes.iter().map(|a| {
                crate::plugins::bindings::types::Attribute {
                    key: a.key + strings,
                    value: a.value + values,
                }
            }));
        batch
            .table
            .sets
            .extend(extra_table.sets.iter().map(|s| Span {
                start: s.start + at,
                len: s.len,
            }));
        batch.resource.attributes = offset + extra;
        for m in &mut batch.metrics {
            for e in &mut m.exemplars {
                e.filtered_attributes = offset + extra;
            }
        }
        assert!(batch.metrics.iter().any(|m| !m.exemplars.is_empty()));
        // A scope's schema URL, which the contract does not carry, goes where prost puts it.
        collected.schema_urls[0] = "https://opentelemetry.io/schemas/1.26.0".into();
        let mut expected = convert::otlp::reference::metric_request(&collected.batch);
        expected.resource_metrics[0].scope_metrics[0].schema_url =
            "https://opentelemetry.io/schemas/1.26.0".into();
        assert_eq!(
            from_batches(std::slice::from_ref(&collected)),
            expected.encode_to_vec()
        );
        let two = ExportMetricsServiceRequest {
            resource_metrics: [expected.resource_metrics.clone(), expected.resource_metrics]
                .concat(),
        };
        assert_eq!(
            from_batches(&[collected.clone(), collected]),
            two.encode_to_vec()
        );
    }

    #[test]
    fn the_bytes_are_canonical_protobuf() {
        let bytes = encode(
            &registry(),
            &crate::sources::resource::detect(&Default::default()),
            None,
        );
        let request = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(
            request.encode_to_vec(),
            bytes,
            "prost writes the same bytes back"
        );
        let scopes: Vec<(String, Vec<String>)> = request.resource_metrics[0]
            .scope_metrics
            .iter()
            .map(|s| {
                let scope = s.scope.as_ref().expect("scope");
                assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
                (
                    scope.name.clone(),
                    s.metrics.iter().map(|m| m.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            scopes,
            [
                ("a".to_owned(), vec!["c".to_owned(), "h".to_owned()]),
                ("b".to_owned(), vec!["g".to_owned(), "e".to_owned()]),
            ],
            "scopes and instruments in registration order; nothing for an instrument without series"
        );
        let resource = request.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource");
        assert!(
            resource
                .attributes
                .iter()
                .any(|kv| kv.key == "service.name")
        );
    }

    #[test]
    fn exemplars_carry_their_value_time_and_trace() {
        let bytes = encode(
            &registry(),
            &crate::sources::resource::detect(&Default::default()),
            None,
        );
        let request = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Sum(sum)) = &metrics[0].data else {
            panic!("sum")
        };
        let mut points: Vec<_> = sum.data_points.iter().collect();
        points.sort_by_key(|p| format!("{:?}", p.attributes));
        assert_eq!(points[0].exemplars.len(), 1, "the traced measurement");
        assert!(
            points[1].exemplars.is_empty(),
            "trace_based: the untraced one is not sampled"
        );
        let e = &points[0].exemplars[0];
        assert_eq!(e.value, Some(exemplar::Value::AsDouble(2.0)));
        assert_eq!(
            (e.trace_id.as_slice(), e.span_id.as_slice()),
            (&[7; 16][..], &[9; 8][..])
        );
        assert!(e.time_unix_nano >= points[0].start_time_unix_nano);
        let Some(Data::Histogram(h)) = &metrics[1].data else {
            panic!("histogram")
        };
        let values: Vec<_> = h.data_points[0].exemplars.iter().map(|e| e.value).collect();
        assert_eq!(values, [Some(exemplar::Value::AsDouble(3.0))]);
        assert_eq!(h.data_points[0].bucket_counts, [1, 1, 0]);
        let Some(Data::ExponentialHistogram(e)) =
            &request.resource_metrics[0].scope_metrics[1].metrics[1].data
        else {
            panic!("exponential histogram")
        };
        let values: Vec<_> = e.data_points[0].exemplars.iter().map(|e| e.value).collect();
        let v = |x| Some(exemplar::Value::AsDouble(x));
        assert_eq!(
            values,
            [v(0.0), v(-2.0), v(3.0)],
            "a fixed-size reservoir keeps all three"
        );
    }

    #[test]
    fn delta_points_carry_only_the_exemplars_of_their_interval() {
        let reg = Registry::new(10).with_exemplar_filter(ExemplarFilter::AlwaysOn);
        let c = reg
            .instrument(desc("c", InstrumentKind::Counter, "a"), &[])
            .expect("c");
        let res = crate::sources::resource::detect(&Default::default());
        let mut tracker = DeltaTracker::new(crate::model::metric::TemporalityPreference::Delta);
        let exemplars = |bytes: Vec<u8>| -> Vec<(Option<exemplar::Value>, bool)> {
            let r = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
            r.resource_metrics[0]
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .flat_map(|m| match &m.data {
                    Some(Data::Sum(s)) => s.data_points.clone(),
                    _ => Vec::new(),
                })
                .flat_map(|p| p.exemplars)
                .map(|e| (e.value, e.trace_id.is_empty()))
                .collect()
        };
        c.record(&[], 4.0);
        assert_eq!(
            exemplars(encode(&reg, &res, Some(&mut tracker))),
            [(Some(exemplar::Value::AsDouble(4.0)), true)],
            "always_on samples untraced measurements, without trace ids"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        c.record(&[("k", ValueRef::Int(1))], 1.0);
        assert_eq!(
            exemplars(encode(&reg, &res, Some(&mut tracker))),
            [(Some(exemplar::Value::AsDouble(1.0)), true)],
            "the first series was quiet; the second's exemplar is new"
        );
        assert_eq!(
            exemplars(encode(&reg, &res, None)).len(),
            2,
            "a cumulative reading shows both"
        );
    }

    #[test]
    fn a_request_splits_into_halves_that_add_up_to_it() {
        let reg = Registry::new(100);
        let c = reg
            .instrument(
                Descriptor {
                    name: "c".into(),
                    unit: String::new(),
                    description: String::new(),
                    kind: InstrumentKind::Counter,
                    scope: "s".into(),
                },
                &[],
            )
            .expect("instrument");
        for i in 0..5i64 {
            c.record(&[("k", ValueRef::Int(i))], 1.0);
        }
        let res = crate::sources::resource::detect(&Default::default());
        let body = encode(&reg, &res, None);
        let (a, b) = split_request(&body).expect("five points split");
        let points = |bytes: &[u8]| -> Vec<String> {
            let r = ExportMetricsServiceRequest::decode(bytes).expect("valid");
            r.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .flat_map(|m| match &m.data {
                    Some(Data::Sum(s)) => s.data_points.clone(),
                    _ => Vec::new(),
                })
                .map(|p| format!("{:?}", p.attributes))
                .collect()
        };
        let (pa, pb) = (points(&a), points(&b));
        assert_eq!((pa.len(), pb.len()), (2, 3));
        let mut all = [pa, pb].concat();
        let mut whole = points(&body);
        all.sort();
        whole.sort();
        assert_eq!(all, whole, "every point in exactly one half");
        let (one, _) = split_request(&a).expect("two points split");
        assert!(split_request(&one).is_none(), "one point does not split");
    }
}
