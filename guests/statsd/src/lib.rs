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

use wasmtel_guest::statsd::{Kind, head, line, push_tags};
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
        let mut lines = Vec::new();
        for (_, metric) in batch.metrics() {
            let name = if self.prefix.is_empty() {
                metric.name.clone()
            } else {
                format!("{}.{}", self.prefix, metric.name)
            };
            match &metric.data {
                MetricData::Gauge(points) => {
                    for p in points {
                        lines.push(line(&name, p.value, Kind::Gauge, &self.tags(&p.attributes)));
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
                        lines.push(line(&name, p.value, kind, &self.tags(&p.attributes)));
                    }
                }
                MetricData::Histogram(h) => {
                    for p in &h.points {
                        self.samples(&name, p, &mut lines);
                    }
                }
                MetricData::ExponentialHistogram(_) => {}
            }
        }
        Ok(pack(lines, self.max_datagram))
    }
}

impl Statsd {
    fn tags<'a>(&self, attributes: &'a [KeyValue]) -> Vec<(&'a str, String)> {
        if !self.tags {
            return Vec::new();
        }
        attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.to_string()))
            .collect()
    }

    /// One sampled line per non-empty bucket.
    fn samples(&self, name: &str, p: &HistogramPoint, lines: &mut Vec<String>) {
        let tags = self.tags(&p.attributes);
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
            let mut text = head(name, mid, self.histogram);
            if n > 1 {
                text.push_str(&format!("|@{}", 1.0 / n as f64));
            }
            push_tags(&mut text, &tags);
            lines.push(text);
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

/// Packs lines into datagrams of at most `max` bytes, joined by newlines.
fn pack(lines: Vec<String>, max: usize) -> Vec<Outbound> {
    let mut out = Vec::new();
    let mut current = String::new();
    for l in lines {
        if !current.is_empty() && current.len() + 1 + l.len() > max {
            out.push(Outbound::Datagram(
                std::mem::take(&mut current).into_bytes(),
            ));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&l);
    }
    if !current.is_empty() {
        out.push(Outbound::Datagram(current.into_bytes()));
    }
    out
}

wasmtel_guest::export_exporter!(Statsd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lines_under_the_datagram_limit() {
        let lines: Vec<String> = (0..10).map(|i| format!("metric{i}:1|c")).collect();
        let out = pack(lines, 40);
        let sizes: Vec<usize> = out
            .iter()
            .map(|o| match o {
                Outbound::Datagram(d) => d.len(),
                _ => 0,
            })
            .collect();
        assert!(sizes.iter().all(|s| *s <= 40), "{sizes:?}");
        assert_eq!(sizes.len(), 4);
    }

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
        let mut lines = Vec::new();
        Statsd::plain().samples("lat", &p, &mut lines);
        assert_eq!(lines, vec!["lat:0.75|d|#model:m", "lat:6|d|@0.25|#model:m"]);
    }
}
