//! What the metrics benchmarks share: the official SDK set up as the peer they measure against.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Aggregation as SdkAggregation, Instrument as SdkInstrument, InstrumentKind as SdkKind,
    ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};

/// The explicit bucket bounds both sides' histograms use.
pub(crate) const BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A manual reader the benchmark keeps a handle to, to collect on demand.
#[derive(Debug, Clone)]
pub(crate) struct Reader(pub(crate) Arc<ManualReader>);

impl MetricReader for Reader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: SdkKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// An SDK provider whose instruments get `aggregation` and `limit` through a view.
pub(crate) fn sdk(aggregation: Option<SdkAggregation>, limit: usize) -> (SdkMeterProvider, Reader) {
    let reader = Reader(Arc::new(ManualReader::builder().build()));
    let provider = SdkMeterProvider::builder()
        .with_reader(reader.clone())
        .with_view(move |_: &SdkInstrument| {
            let mut stream = Stream::builder().with_cardinality_limit(limit);
            if let Some(a) = aggregation.clone() {
                stream = stream.with_aggregation(a);
            }
            stream.build().ok()
        })
        .build();
    (provider, reader)
}
