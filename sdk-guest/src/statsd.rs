//! StatsD and DogStatsD line formatting.

use std::fmt::Write as _;

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

/// Makes a name safe for the line protocol: `:`, `|`, `@`, `#`, `,` and whitespace become `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if matches!(c, ':' | '|' | '@' | '#' | ',') || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
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
    let mut out = sanitize(name);
    out.push(':');
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
    out.push('|');
    out.push_str(kind.code());
    out
}

/// Appends DogStatsD tags, `|#k:v,k2:v2`, if there are any.
pub fn push_tags<K: AsRef<str>, V: AsRef<str>>(out: &mut String, tags: &[(K, V)]) {
    for (i, (k, v)) in tags.iter().enumerate() {
        out.push_str(if i == 0 { "|#" } else { "," });
        out.push_str(&sanitize(k.as_ref()));
        out.push(':');
        out.push_str(&sanitize(v.as_ref()));
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
}
