//! StatsD / DogStatsD exporter: metrics as UDP datagrams of newline-separated lines.
//!
//! Asks the host for delta temporality, so counters go out as increments. Monotonic sums
//! become counters (`c`), gauges and non-monotonic sums gauges (`g`), and each histogram
//! becomes samples: one line per non-empty bucket at the bucket's midpoint (clamped to the
//! observed min and max; the exact mean when only one bucket is non-empty) with a sample rate
//! of `1/count`, so the server counts every measurement.
//!
//! Flavours (`flavor`):
//! - `statsd` (the default): the Etsy protocol every StatsD daemon speaks. Attributes go in the
//!   name as Graphite tags (`latency;model=m1`), histograms are `ms` timers in milliseconds
//!   (values in seconds, minutes or micro/nanoseconds are converted by their unit), or `h` for
//!   servers that have histograms. A negative gauge is sent as `0` then the negative value,
//!   since a signed gauge value means a change to StatsD.
//! - `dogstatsd`: DogStatsD tags (`|#model:m1`) and `d` distributions by default (`h` or `ms`
//!   on request), values in the metric's own unit.
//!
//! Configuration: `flavor`, `histogram` (`ms`, `h`, or with DogStatsD `d`), `prefix`
//! (prepended with a dot), `max_datagram` (bytes per datagram, default 1432).

use std::cell::RefCell;

use wasmtel_guest::statsd::{
    Datagrams, Kind, Rates, dogstatsd_tags, graphite_tags, push_graphite_safe, push_sanitized,
    push_value,
};
use wasmtel_guest::{
    Attributes, Config, Exporter, ExporterInfo, HistogramPoint, MetricBatch, MetricKind, Outbound,
    PerSet, Point, Temporality,
};

/// Which StatsD dialect to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Etsy StatsD: Graphite tags in the name, `ms` timers.
    Statsd,
    /// DogStatsD: `|#` tags, `d` distributions.
    Dogstatsd,
}

/// The exporter's settings.
#[derive(Debug)]
pub struct Statsd {
    prefix: String,
    flavor: Flavor,
    histogram: Kind,
    max_datagram: usize,
    rates: RefCell<Rates>,
}

#[wasmtel_guest::exporter]
impl Exporter for Statsd {
    fn init(config: Config) -> Result<(Self, ExporterInfo), String> {
        let flavor = match config.get_or("flavor", "statsd") {
            "statsd" => Flavor::Statsd,
            "dogstatsd" => Flavor::Dogstatsd,
            other => {
                return Err(format!(
                    "config `flavor`: {other:?} is not statsd or dogstatsd"
                ));
            }
        };
        let default = match flavor {
            Flavor::Statsd => "ms",
            Flavor::Dogstatsd => "d",
        };
        let histogram = match (config.get_or("histogram", default), flavor) {
            ("ms", _) => Kind::Timer,
            ("h", _) => Kind::Histogram,
            ("d", Flavor::Dogstatsd) => Kind::Distribution,
            ("d", Flavor::Statsd) => {
                return Err(
                    "config `histogram`: \"d\" (distribution) is DogStatsD only; set flavor = \"dogstatsd\", or use \"ms\" or \"h\"".into(),
                );
            }
            (other, _) => {
                return Err(format!("config `histogram`: {other:?} is not ms, h or d"));
            }
        };
        let max_datagram = config.parse_or("max_datagram", 1432usize)?;
        if max_datagram < 64 {
            return Err("config `max_datagram`: at least 64 bytes".into());
        }
        let exporter = Statsd {
            prefix: config.get_or("prefix", "").to_owned(),
            flavor,
            histogram,
            max_datagram,
            rates: RefCell::default(),
        };
        Ok((exporter, ExporterInfo::metrics(Temporality::Delta)))
    }

    fn encode_metrics(&mut self, batch: &MetricBatch) -> Result<Vec<Outbound>, String> {
        let mut out = Datagrams::new(self.max_datagram);
        let mut line = String::with_capacity(256);
        // Each attribute set's tags are rendered once, however many points share it.
        let mut tags = PerSet::new(&batch.table);
        for metric in batch.metrics() {
            let name = self.name(metric.name());
            match metric.kind() {
                MetricKind::Sum { monotonic: true } => {
                    for p in metric.numbers().filter(|p| p.value != 0.0) {
                        let tags = tags.get(p.attributes(), |a| self.tags(a));
                        self.line(&mut line, &name, p.value, Kind::Counter, None, tags);
                        out.push(&line);
                    }
                }
                MetricKind::Gauge | MetricKind::Sum { .. } => {
                    for p in metric.numbers() {
                        let tags = tags.get(p.attributes(), |a| self.tags(a));
                        self.gauge(&mut line, &name, p.value, tags, &mut out);
                    }
                }
                MetricKind::Histogram => {
                    let scale = self.scale(metric.unit());
                    for p in metric.histograms() {
                        let tags = tags.get(p.attributes(), |a| self.tags(a));
                        self.samples(&name, scale, &p, tags, &mut line, &mut out);
                    }
                }
                MetricKind::ExponentialHistogram => {}
            }
        }
        if out.dropped() > 0 {
            wasmtel_guest::log(
                wasmtel_guest::Level::Warn,
                &format!(
                    "{} lines longer than max_datagram ({} bytes) were left out of this collection (shorter names or fewer tags fit; or raise max_datagram)",
                    out.dropped(),
                    self.max_datagram
                ),
            );
        }
        Ok(out.finish())
    }
}

impl Statsd {
    /// The metric's name with the prefix, made safe for the flavour's line protocol.
    fn name(&self, name: &str) -> String {
        let full = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        };
        let mut out = String::with_capacity(full.len());
        match self.flavor {
            Flavor::Statsd => push_graphite_safe(&mut out, &full),
            Flavor::Dogstatsd => push_sanitized(&mut out, &full),
        }
        out
    }

    /// An attribute set's tags in the flavour's form.
    fn tags(&self, attributes: Attributes<'_>) -> String {
        match self.flavor {
            Flavor::Statsd => graphite_tags(attributes),
            Flavor::Dogstatsd => dogstatsd_tags(attributes),
        }
    }

    /// Writes one line into `line`, replacing what it held: the safe name (with Graphite tags
    /// for plain StatsD), the value and type, the sample rate, and DogStatsD tags.
    fn line(
        &self,
        line: &mut String,
        name: &str,
        value: f64,
        kind: Kind,
        rate: Option<u64>,
        tags: &str,
    ) {
        line.clear();
        line.push_str(name);
        if self.flavor == Flavor::Statsd {
            line.push_str(tags);
        }
        push_value(line, value, kind);
        if let Some(n) = rate {
            self.rates.borrow_mut().push(line, n);
        }
        if self.flavor == Flavor::Dogstatsd {
            line.push_str(tags);
        }
    }

    /// A gauge; for plain StatsD a negative value is set from zero, since `-x` means "subtract x".
    fn gauge(&self, line: &mut String, name: &str, value: f64, tags: &str, out: &mut Datagrams) {
        if self.flavor == Flavor::Statsd && value < 0.0 {
            self.line(line, name, 0.0, Kind::Gauge, None, tags);
            out.push(line);
        }
        self.line(line, name, value, Kind::Gauge, None, tags);
        out.push(line);
    }

    /// The factor that turns a histogram's values into what its sample type expects: timers
    /// take milliseconds; other types take the metric's own unit.
    fn scale(&self, unit: &str) -> f64 {
        if self.histogram != Kind::Timer {
            return 1.0;
        }
        match unit {
            "s" => 1000.0,
            "min" => 60_000.0,
            "h" => 3_600_000.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => 1.0,
        }
    }

    /// One sampled line per non-empty bucket.
    fn samples(
        &self,
        name: &str,
        scale: f64,
        p: &Point<'_, HistogramPoint>,
        tags: &str,
        line: &mut String,
        out: &mut Datagrams,
    ) {
        let (min, max) = (
            p.min.unwrap_or(f64::NEG_INFINITY),
            p.max.unwrap_or(f64::INFINITY),
        );
        let (bounds, counts) = (p.bounds(), p.bucket_counts());
        let non_empty = counts.iter().filter(|n| **n > 0).count();
        for (i, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let lo = if i == 0 { min } else { bounds[i - 1] };
            let hi = bounds.get(i).copied().unwrap_or(max);
            let (lo, hi) = (lo.max(min), hi.min(max));
            // With one non-empty bucket the mean is exact; otherwise the bucket's midpoint.
            let mid = match p.sum {
                Some(sum) if non_empty == 1 => sum / n as f64,
                _ if lo.is_finite() && hi.is_finite() => (lo + hi) / 2.0,
                _ if hi.is_finite() => hi,
                _ => lo,
            };
            let rate = (n > 1).then_some(n);
            self.line(line, name, mid * scale, self.histogram, rate, tags);
            out.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtel_guest::BatchBuilder;

    fn exporter(pairs: &[(&str, &str)]) -> Statsd {
        Statsd::init(Config::new(pairs.iter().copied()))
            .expect("valid")
            .0
    }

    /// A histogram of 5 measurements (sum 10, min 0.5, max 7) in buckets ≤1, ≤5, >5.
    fn histogram(b: BatchBuilder, name: &str, model: &str) -> BatchBuilder {
        b.histogram(
            name,
            "s",
            &[("model", model.into())],
            &[1.0, 5.0],
            &[1, 0, 4],
            10.0,
        )
        .extremes(0.5, 7.0)
    }

    fn text(out: Vec<Outbound>) -> Vec<String> {
        out.into_iter()
            .map(|o| match o {
                Outbound::Datagram(d) => String::from_utf8(d).expect("utf-8"),
                Outbound::Http(_) => panic!("datagrams only"),
            })
            .collect()
    }

    #[test]
    fn plain_statsd_sends_timers_in_milliseconds_with_graphite_tags() {
        let mut s = exporter(&[]);
        let batch = histogram(BatchBuilder::new(), "latency", "m 1")
            .up_down_counter("queue", "", &[], -2.0)
            .metrics();
        assert_eq!(
            text(s.encode_metrics(&batch).expect("encodes")),
            ["latency;model=m_1:750|ms\nlatency;model=m_1:6000|ms|@0.25\nqueue:0|g\nqueue:-2|g"]
        );
    }

    #[test]
    fn dogstatsd_sends_distributions_in_the_metric_unit_with_tags() {
        let mut s = exporter(&[("flavor", "dogstatsd"), ("prefix", "app")]);
        let batch = histogram(BatchBuilder::new(), "lat", "m").metrics();
        assert_eq!(
            text(s.encode_metrics(&batch).expect("encodes")),
            ["app.lat:0.75|d|#model:m\napp.lat:6|d|@0.25|#model:m"]
        );
    }

    #[test]
    fn settings_are_checked_and_named() {
        let err = |pairs: &[(&str, &str)]| Statsd::init(Config::new(pairs.iter().copied())).err();
        assert_eq!(
            err(&[("histogram", "d")]).as_deref(),
            Some(
                "config `histogram`: \"d\" (distribution) is DogStatsD only; set flavor = \"dogstatsd\", or use \"ms\" or \"h\""
            )
        );
        assert_eq!(
            err(&[("histogram", "timer")]).as_deref(),
            Some("config `histogram`: \"timer\" is not ms, h or d")
        );
        assert_eq!(
            err(&[("flavor", "etsy")]).as_deref(),
            Some("config `flavor`: \"etsy\" is not statsd or dogstatsd")
        );
        assert!(err(&[("flavor", "dogstatsd"), ("histogram", "h")]).is_none());
    }
}
