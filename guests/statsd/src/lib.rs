//! StatsD / DogStatsD exporter: metrics as UDP datagrams of text lines.
//!
//! Asks the host for delta temporality, so counters go out as increments.
//! Monotonic sums become counters (`c`), gauges and non-monotonic sums
//! gauges (`g`), and histograms become samples (`d` distributions by default,
//! or `ms` timers, or `h` histograms): one line per non-empty bucket at the
//! bucket's midpoint (clamped to the observed min and max; the exact mean when
//! only one bucket is non-empty) with a sample rate of `1/count`, so the
//! server counts every measurement.
//!
//! Configuration: `prefix` (prepended with a dot), `tags` (`true` for
//! DogStatsD tags, `false` for plain StatsD), `histogram` (`distribution`,
//! `timer`, `histogram`), `max_datagram` (bytes, default 1432).

use std::fmt::Write as _;

use wasmtel_guest::statsd::{Datagrams, Kind, push_attribute_tags, push_head};
use wasmtel_guest::{
    Config, Exporter, ExporterInfo, HistogramPoint, KeyValue, MetricBatch, MetricData, Outbound,
    Temporality,
};

/// The exporter's settings.
pub struct Statsd {
    prefix: String,
    tags: bool,
    histogram: Kind,
    max_datagram: usize,
}

impl Exporter for Statsd {
    fn init(config: Config) -> Result<(Self, ExporterInfo), String> {
        let histogram = match config.get_or("histogram", "distribution") {
            "distribution" => Kind::Distribution,
            "timer" => Kind::Timer,
            "histogram" => Kind::Histogram,
            other => {
                return Err(format!(
                    "config `histogram`: {other:?} is not distribution, timer or histogram"
                ));
            }
        };
        let max_datagram = config.parse_or("max_datagram", 1432usize)?;
        if max_datagram < 64 {
            return Err("config `max_datagram`: at least 64 bytes".into());
        }
        let exporter = Statsd {
            prefix: config.get_or("prefix", "").to_owned(),
            tags: config.parse_or("tags", true)?,
            histogram,
            max_datagram,
        };
        Ok((exporter, ExporterInfo::metrics(Temporality::Delta)))
    }

    fn encode_metrics(&mut self, batch: &MetricBatch) -> Result<Vec<Outbound>, String> {
        let mut out = Datagrams::new(self.max_datagram);
        let mut line = String::with_capacity(256);
        for (_, metric) in batch.metrics() {
            let name = if self.prefix.is_empty() {
                metric.name.clone()
            } else {
                format!("{}.{}", self.prefix, metric.name)
            };
            match &metric.data {
                MetricData::Gauge(points) => {
                    for p in points {
                        self.line(&mut line, &name, p.value, Kind::Gauge, &p.attributes);
                        out.push(&line);
                    }
                }
                MetricData::Sum(sum) => {
                    let kind = if sum.monotonic {
                        Kind::Counter
                    } else {
                        Kind::Gauge
                    };
                    for p in sum
                        .points
                        .iter()
                        .filter(|p| kind == Kind::Gauge || p.value != 0.0)
                    {
                        self.line(&mut line, &name, p.value, kind, &p.attributes);
                        out.push(&line);
                    }
                }
                MetricData::Histogram(h) => {
                    for p in &h.points {
                        self.samples(&name, p, &mut line, &mut out);
                    }
                }
                MetricData::ExponentialHistogram(_) => {}
            }
        }
        Ok(out.finish())
    }
}

impl Statsd {
    /// Writes one line into `line`, replacing what it held.
    fn line(&self, line: &mut String, name: &str, value: f64, kind: Kind, attributes: &[KeyValue]) {
        line.clear();
        push_head(line, name, value, kind);
        if self.tags {
            push_attribute_tags(line, attributes);
        }
    }

    /// One sampled line per non-empty bucket.
    fn samples(&self, name: &str, p: &HistogramPoint, line: &mut String, out: &mut Datagrams) {
        let (min, max) = (
            p.min.unwrap_or(f64::NEG_INFINITY),
            p.max.unwrap_or(f64::INFINITY),
        );
        let non_empty = p.bucket_counts.iter().filter(|n| **n > 0).count();
        for (i, &n) in p.bucket_counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let lo = if i == 0 { min } else { p.bounds[i - 1] };
            let hi = p.bounds.get(i).copied().unwrap_or(max);
            let (lo, hi) = (lo.max(min), hi.min(max));
            // With one non-empty bucket the mean is exact; otherwise the bucket's midpoint.
            let mid = match p.sum {
                Some(sum) if non_empty == 1 => sum / n as f64,
                _ if lo.is_finite() && hi.is_finite() => (lo + hi) / 2.0,
                _ if hi.is_finite() => hi,
                _ => lo,
            };
            line.clear();
            push_head(line, name, mid, self.histogram);
            if n > 1 {
                let _ = write!(line, "|@{}", 1.0 / n as f64);
            }
            if self.tags {
                push_attribute_tags(line, &p.attributes);
            }
            out.push(line);
        }
    }

    /// The default settings, for tests.
    #[cfg(test)]
    fn plain() -> Self {
        Statsd {
            prefix: String::new(),
            tags: true,
            histogram: Kind::Distribution,
            max_datagram: 1432,
        }
    }
}

wasmtel_guest::export_exporter!(Statsd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_become_sampled_lines() {
        let p = HistogramPoint {
            attributes: vec![KeyValue::string("model", "m")],
            start_time_unix_nano: 0,
            time_unix_nano: 0,
            count: 5,
            sum: Some(10.0),
            min: Some(0.5),
            max: Some(7.0),
            bounds: vec![1.0, 5.0],
            bucket_counts: vec![1, 0, 4],
            exemplars: vec![],
        };
        let mut packed = Datagrams::new(1432);
        Statsd::plain().samples("lat", &p, &mut String::new(), &mut packed);
        let out = packed.finish();
        assert_eq!(out.len(), 1);
        let Outbound::Datagram(bytes) = &out[0] else {
            panic!("a datagram")
        };
        assert_eq!(bytes, b"lat:0.75|d|#model:m\nlat:6|d|@0.25|#model:m");
    }
}
