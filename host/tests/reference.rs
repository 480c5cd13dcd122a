//! Property tests: what the engine exports over OTLP equals a naive reference computed from the
//! same random measurement streams, interval by interval, cumulative and delta.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data};
use proptest::prelude::*;
use prost::Message;
use wasmtel::export::otlp::metrics::encode;
use wasmtel::metrics::DeltaTracker;
use wasmtel::metrics::{Descriptor, Registry};
use wasmtel::model::attributes::ValueRef;
use wasmtel::model::metric::InstrumentKind;
use wasmtel::model::metric::TemporalityPreference;

const BOUNDS: [f64; 4] = [1.0, 10.0, 25.0, 50.0];

/// One series' expected state: sum, count, min, max and bucket counts.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
}

impl Expected {
    fn new() -> Self {
        Self {
            sum: 0.0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: vec![0; BOUNDS.len() + 1],
        }
    }

    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        // Bucket i holds (bounds[i-1], bounds[i]], counted value by value.
        let i = BOUNDS.iter().take_while(|b| v > **b).count();
        self.buckets[i] += 1;
    }
}

/// Series id → expected state, for a counter and a histogram.
type Reference = BTreeMap<i64, Expected>;

/// What one export says: series id → (sum, count, bucket counts, min, max), per metric.
fn exported(bytes: &[u8], want: i32) -> (Reference, Reference) {
    let request = ExportMetricsServiceRequest::decode(bytes).expect("decodes");
    let (mut sums, mut histograms) = (Reference::new(), Reference::new());
    let id = |attrs: &[KeyValue]| -> i64 {
        match attrs[0].value.as_ref().and_then(|v| v.value.clone()) {
            Some(any_value::Value::IntValue(i)) => i,
            other => panic!("series id {other:?}"),
        }
    };
    for metric in request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        match &metric.data {
            Some(Data::Sum(s)) => {
                assert_eq!(s.aggregation_temporality, want);
                for p in &s.data_points {
                    let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                        panic!("a double")
                    };
                    let mut e = Expected::new();
                    e.sum = v;
                    assert!(
                        sums.insert(id(&p.attributes), e).is_none(),
                        "one point per series"
                    );
                }
            }
            Some(Data::Histogram(h)) => {
                assert_eq!(h.aggregation_temporality, want);
                for p in &h.data_points {
                    assert_eq!(p.explicit_bounds, BOUNDS);
                    let e = Expected {
                        sum: p.sum.expect("sum"),
                        count: p.count,
                        min: p.min.unwrap_or(f64::NAN),
                        max: p.max.unwrap_or(f64::NAN),
                        buckets: p.bucket_counts.clone(),
                    };
                    assert!(histograms.insert(id(&p.attributes), e).is_none());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (sums, histograms)
}

/// Intervals of (series id, value) measurements. Values are multiples of 1/4 so that sums and
/// their differences are exact in `f64`.
fn intervals() -> impl Strategy<Value = Vec<Vec<(i64, f64)>>> {
    let measurement = (0i64..6, 0u32..240).prop_map(|(id, quarter)| (id, f64::from(quarter) / 4.0));
    prop::collection::vec(prop::collection::vec(measurement, 0..40), 1..6)
}

fn descriptor(name: &str, kind: InstrumentKind) -> Descriptor {
    Descriptor {
        name: name.into(),
        unit: String::new(),
        description: String::new(),
        kind,
        scope: "reference".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn exports_equal_the_reference_in_both_temporalities(stream in intervals()) {
        let registry = Registry::new(100);
        let counter = registry.instrument(descriptor("c", InstrumentKind::Counter), &[]).expect("c");
        let histogram = registry.instrument(descriptor("h", InstrumentKind::Histogram), &BOUNDS).expect("h");
        let resource = wasmtel::sources::resource::detect(&Default::default());
        let mut tracker = DeltaTracker::new(TemporalityPreference::Delta);
        let mut cumulative = Reference::new();
        for interval in &stream {
            let mut delta = Reference::new();
            for (id, v) in interval {
                let attrs = [("id", ValueRef::Int(*id))];
                counter.record(&attrs, *v);
                histogram.record(&attrs, *v);
                cumulative.entry(*id).or_insert_with(Expected::new).add(*v);
                delta.entry(*id).or_insert_with(Expected::new).add(*v);
            }
            let (sums, histograms) = exported(
                &encode(&registry, &resource, None),
                AggregationTemporality::Cumulative as i32,
            );
            let want_sums: BTreeMap<i64, f64> = cumulative.iter().map(|(k, e)| (*k, e.sum)).collect();
            prop_assert_eq!(sums.iter().map(|(k, e)| (*k, e.sum)).collect::<BTreeMap<_, _>>(), want_sums);
            prop_assert_eq!(&histograms, &cumulative);

            let (sums, histograms) = exported(
                &encode(&registry, &resource, Some(&mut tracker)),
                AggregationTemporality::Delta as i32,
            );
            // A delta carries what the interval recorded, and nothing for a quiet series. An
            // existing counter series whose interval added only zeros did not change, so it is
            // left out too; a new one is exported once, with its zero.
            let want_sums: BTreeMap<i64, f64> = delta
                .iter()
                .filter(|(id, e)| e.sum != 0.0 || cumulative[*id].count == e.count)
                .map(|(k, e)| (*k, e.sum))
                .collect();
            prop_assert_eq!(sums.iter().map(|(k, e)| (*k, e.sum)).collect::<BTreeMap<_, _>>(), want_sums);
            let first = tracker_was_fresh(&histograms, &cumulative, &delta);
            for (id, got) in &histograms {
                let want = &delta[id];
                prop_assert_eq!((got.sum, got.count, &got.buckets), (want.sum, want.count, &want.buckets));
                if first.contains(id) {
                    prop_assert_eq!((got.min, got.max), (want.min, want.max));
                } else {
                    // The extremes of one interval are not derivable from cumulative state.
                    prop_assert!(got.min.is_nan() && got.max.is_nan());
                }
            }
            prop_assert_eq!(histograms.keys().collect::<Vec<_>>(), delta.keys().collect::<Vec<_>>());
        }
    }
}

/// The series exported as deltas for the first time: their whole history is this interval.
fn tracker_was_fresh(exported: &Reference, cumulative: &Reference, delta: &Reference) -> Vec<i64> {
    exported
        .keys()
        .filter(|id| cumulative[*id].count == delta[*id].count)
        .copied()
        .collect()
}
