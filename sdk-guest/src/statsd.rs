//! StatsD and DogStatsD line formatting, written straight into reusable buffers, and datagram packing.
//!
//! Plain (Etsy) StatsD has no tags: attributes travel in the name as Graphite tags
//! (`name;key=value`), which the Etsy daemon's Graphite backend keeps. DogStatsD takes them
//! after the type (`|#key:value`).

use std::fmt::Write as _;

use crate::{Attributes, Outbound, Value};

/// The StatsD metric type of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `c`: a counter increment.
    Counter,
    /// `g`: a gauge value.
    Gauge,
    /// `ms`: a timer sample, in milliseconds.
    Timer,
    /// `h`: a histogram sample.
    Histogram,
    /// `d`: a DogStatsD distribution sample.
    Distribution,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Counter => "c",
            Kind::Gauge => "g",
            Kind::Timer => "ms",
            Kind::Histogram => "h",
            Kind::Distribution => "d",
        }
    }
}

fn unsafe_char(c: char) -> bool {
    matches!(c, ':' | '|' | '@' | '#' | ',') || c.is_whitespace()
}

/// Appends `text` made safe for the line protocol: `:`, `|`, `@`, `#`, `,` and whitespace become `_`.
pub fn push_sanitized(out: &mut String, text: &str) {
    if !text.contains(unsafe_char) {
        out.push_str(text);
        return;
    }
    out.extend(text.chars().map(|c| if unsafe_char(c) { '_' } else { c }));
}

/// `text` made safe for the line protocol.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_sanitized(&mut out, text);
    out
}

/// One line: `name:value|type`, with `|#k:v,…` DogStatsD tags when there are any.
pub fn line<K: AsRef<str>, V: AsRef<str>>(
    name: &str,
    value: f64,
    kind: Kind,
    tags: &[(K, V)],
) -> String {
    let mut out = head(name, value, kind);
    push_tags(&mut out, tags);
    out
}

/// `name:value|type`, without tags, so a caller can insert a sample rate before them.
pub fn head(name: &str, value: f64, kind: Kind) -> String {
    let mut out = String::new();
    push_head(&mut out, name, value, kind);
    out
}

/// Appends `name:value|type`.
pub fn push_head(out: &mut String, name: &str, value: f64, kind: Kind) {
    push_sanitized(out, name);
    push_value(out, value, kind);
}

/// Appends `:value|type`, after a name written by other means (with Graphite tags, say).
pub fn push_value(out: &mut String, value: f64, kind: Kind) {
    out.push(':');
    // Whole numbers up to 2^53 (each exact in an f64) without a fraction.
    if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_992.0 {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        push_float(out, value);
    }
    out.push('|');
    out.push_str(kind.code());
}

/// Appends a float in its shortest round-tripping form (`0.3`, `1e-7`, `NaN`, `inf`), without
/// the formatting machinery of `write!`, which costs more than the digits (most in WebAssembly).
pub fn push_float(out: &mut String, value: f64) {
    out.push_str(ryu::Buffer::new().format(value));
}

/// Sample rates, `|@` and 1/n for a bucket of n measurements, each rendered once: a float costs
/// far more to format than to look up, most in WebAssembly, where ryu's 128-bit arithmetic is
/// emulated.
#[derive(Debug, Default)]
pub struct Rates(Vec<String>);

impl Rates {
    /// The largest n whose rate is kept.
    const KEPT: u64 = 1024;

    /// Appends `|@<1/n>`.
    pub fn push(&mut self, out: &mut String, n: u64) {
        out.push_str("|@");
        let rate = 1.0 / n as f64;
        if n > Self::KEPT {
            return push_float(out, rate);
        }
        let i = n as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, String::new());
        }
        if self.0[i].is_empty() {
            push_float(&mut self.0[i], rate);
        }
        out.push_str(&self.0[i]);
    }
}

/// Appends DogStatsD tags, `|#k:v,k2:v2`, if there are any.
pub fn push_tags<K: AsRef<str>, V: AsRef<str>>(out: &mut String, tags: &[(K, V)]) {
    for (i, (k, v)) in tags.iter().enumerate() {
        out.push_str(if i == 0 { "|#" } else { "," });
        push_sanitized(out, k.as_ref());
        out.push(':');
        push_sanitized(out, v.as_ref());
    }
}

/// Appends attributes as DogStatsD tags, `|#k:v,…`, without an intermediate copy.
pub fn push_attribute_tags<'a>(
    out: &mut String,
    attributes: impl IntoIterator<Item = (&'a str, &'a Value)>,
) {
    for (i, (key, value)) in attributes.into_iter().enumerate() {
        out.push_str(if i == 0 { "|#" } else { "," });
        push_sanitized(out, key);
        out.push(':');
        match value {
            Value::String(s) => push_sanitized(out, s),
            Value::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Boolean(v) => {
                let _ = write!(out, "{v}");
            }
            other => push_sanitized(out, &other.to_string()),
        }
    }
}

/// Appends `text` made safe for a Graphite tag or name: anything but ASCII letters, digits,
/// `_`, `-` and `.` becomes `_`.
pub fn push_graphite_safe(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
            c
        } else {
            '_'
        }
    }));
}

/// An attribute set's DogStatsD tags, `|#k:v,…` (empty for no attributes): render it once per
/// set with a [`PerSet`](crate::PerSet).
pub fn dogstatsd_tags(attributes: Attributes<'_>) -> String {
    let mut out = String::new();
    push_attribute_tags(&mut out, attributes.iter());
    out
}

/// An attribute set's Graphite tags, `;key=value;…`: render it once per set with a
/// [`PerSet`](crate::PerSet).
pub fn graphite_tags(attributes: Attributes<'_>) -> String {
    let mut out = String::new();
    push_graphite_tags(&mut out, attributes.iter());
    out
}

/// Appends attributes as Graphite tags, `;key=value;…`, for plain StatsD names.
pub fn push_graphite_tags<'a>(
    out: &mut String,
    attributes: impl IntoIterator<Item = (&'a str, &'a Value)>,
) {
    for (key, value) in attributes {
        out.push(';');
        push_graphite_safe(out, key);
        out.push('=');
        match value {
            Value::String(s) => push_graphite_safe(out, s),
            other => push_graphite_safe(out, &other.to_string()),
        }
    }
}

/// Lines packed into datagrams of at most `max` bytes, joined by newlines.
#[derive(Debug)]
pub struct Datagrams {
    max: usize,
    current: String,
    done: Vec<Outbound>,
    dropped: usize,
}

impl Datagrams {
    /// No datagrams yet; each will hold at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            current: String::with_capacity(max),
            done: Vec::new(),
            dropped: 0,
        }
    }

    /// How many lines were longer than a datagram and left out.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Adds one line, starting a new datagram when it would not fit; a line longer than a
    /// whole datagram is left out alone (and counted), never the lines around it.
    pub fn push(&mut self, line: &str) {
        if line.len() > self.max {
            self.dropped += 1;
            return;
        }
        if !self.current.is_empty() && self.current.len() + 1 + line.len() > self.max {
            let full = std::mem::replace(&mut self.current, String::with_capacity(self.max));
            self.done.push(Outbound::Datagram(full.into_bytes()));
        }
        if !self.current.is_empty() {
            self.current.push('\n');
        }
        self.current.push_str(line);
    }

    /// The datagrams.
    pub fn finish(mut self) -> Vec<Outbound> {
        if !self.current.is_empty() {
            self.done
                .push(Outbound::Datagram(self.current.into_bytes()));
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_plain_and_tagged_lines() {
        assert_eq!(
            line::<&str, &str>("requests", 3.0, Kind::Counter, &[]),
            "requests:3|c"
        );
        assert_eq!(
            line("lat", 0.25, Kind::Timer, &[("model", "m 1")]),
            "lat:0.25|ms|#model:m_1"
        );
        assert_eq!(
            line("a:b|c", -1.5, Kind::Gauge, &[("k", "v"), ("x#", "y,z")]),
            "a_b_c:-1.5|g|#k:v,x_:y_z"
        );
    }

    #[test]
    fn values_and_rates_keep_their_shortest_form() {
        let mut out = String::new();
        push_value(&mut out, -12.0, Kind::Gauge);
        push_value(&mut out, 1e-7, Kind::Timer);
        push_value(&mut out, 2e15, Kind::Counter);
        push_value(&mut out, 3e20, Kind::Counter);
        push_value(&mut out, f64::NAN, Kind::Gauge);
        assert_eq!(out, ":-12|g:1e-7|ms:2000000000000000|c:3e20|c:NaN|g");
        let mut rates = Rates::default();
        let mut out = String::new();
        for n in [3, 2, 3, 5000] {
            rates.push(&mut out, n);
        }
        assert_eq!(out, "|@0.3333333333333333|@0.5|@0.3333333333333333|@0.0002");
    }

    /// The tags `render` makes of one point's attributes.
    fn tags(pairs: crate::Pairs<'_>, render: fn(Attributes<'_>) -> String) -> String {
        let batch = crate::BatchBuilder::new()
            .gauge("x", "1", pairs, 1.0)
            .metrics();
        let metric = batch.metrics().next().expect("a metric");
        let point = metric.numbers().next().expect("a point");
        render(point.attributes())
    }

    #[test]
    fn attributes_become_tags_of_any_value_type() {
        let pairs: crate::Pairs<'_> = &[
            ("model id", "m:1".into()),
            ("n", (-3i64).into()),
            ("ok", true.into()),
            ("r", 0.5.into()),
            ("j", Value::Json("[1, 2]".into())),
        ];
        assert_eq!(
            tags(pairs, dogstatsd_tags),
            "|#model_id:m_1,n:-3,ok:true,r:0.5,j:[1__2]"
        );
    }

    #[test]
    fn graphite_tags_keep_only_safe_characters() {
        let pairs: crate::Pairs<'_> = &[("model id", "m:1;x=y".into()), ("n", (-3i64).into())];
        assert_eq!(tags(pairs, graphite_tags), ";model_id=m_1_x_y;n=-3");
    }

    #[test]
    fn packs_lines_under_the_datagram_limit() {
        let mut packed = Datagrams::new(40);
        for i in 0..10 {
            packed.push(&format!("metric{i}:1|c"));
        }
        let sizes: Vec<usize> = packed
            .finish()
            .iter()
            .map(|o| match o {
                Outbound::Datagram(d) => d.len(),
                Outbound::Http(_) => 0,
            })
            .collect();
        assert_eq!(sizes, [35, 35, 35, 11]);
    }

    #[test]
    fn a_line_longer_than_a_datagram_is_left_out_alone() {
        let mut packed = Datagrams::new(40);
        packed.push("a:1|c");
        packed.push(&format!("{}:1|c", "x".repeat(60)));
        packed.push("b:1|c");
        assert_eq!(packed.dropped(), 1);
        let datagrams = packed.finish();
        assert_eq!(datagrams.len(), 1);
        assert!(matches!(&datagrams[0], Outbound::Datagram(d) if d == b"a:1|c\nb:1|c"));
    }
}
