//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, parsed without
//! copying: metadata lines and samples borrow the body, and a label value is copied only when
//! it holds an escape.
//!
//! Which grammar applies follows the response's content type, as Prometheus negotiates it
//! ([`ACCEPT`], [`Format::of`]). The differences that matter: OpenMetrics has more metric types
//! (`gaugehistogram`, `info`, `stateset`, `unknown`), `# UNIT` lines, timestamps in seconds
//! (0.0.4: milliseconds), exemplars after a sample (`# {trace_id="…"} 0.5 1.7e9`), and must end
//! with `# EOF`.

use std::borrow::Cow;

/// The `Accept` header a scrape sends: OpenMetrics first, the 0.0.4 text format as fallback
/// (Prometheus' own order).
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Which grammar a body follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (also what a missing or unknown content type means).
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The grammar a response's `Content-Type` names.
    pub fn of(content_type: Option<&str>) -> Self {
        match content_type {
            Some(t) if t.trim_start().starts_with("application/openmetrics-text") => {
                Self::OpenMetrics
            }
            _ => Self::Text,
        }
    }
}

/// A metric family's type, as `# TYPE` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `unknown` (OpenMetrics), `untyped` (0.0.4), or no `# TYPE` line.
    Unknown,
}

impl Kind {
    /// The type named `word` in `format`; `None` when the format has no such type.
    fn parse(word: &str, format: Format) -> Option<Self> {
        let open = format == Format::OpenMetrics;
        Some(match word {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" if !open => Self::Unknown,
            "unknown" if open => Self::Unknown,
            "gaugehistogram" if open => Self::GaugeHistogram,
            "info" if open => Self::Info,
            "stateset" if open => Self::StateSet,
            _ => return None,
        })
    }
}

/// A label set as written: names and values, in order (a value copied only if it had escapes).
pub type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// An exemplar after an OpenMetrics sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    /// Its labels (`trace_id`, `span_id`, …).
    pub labels: Labels<'a>,
    /// Its value.
    pub value: f64,
    /// Its time, in seconds since the epoch.
    pub timestamp: Option<f64>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The sample's name (a family's name, or it with `_total`, `_bucket`, `_count`, `_sum`,
    /// `_created`, `_info`, `_gcount`, `_gsum`).
    pub name: &'a str,
    /// Its labels.
    pub labels: Labels<'a>,
    /// Its value.
    pub value: f64,
    /// Its time, in milliseconds since the epoch, whichever unit the format wrote it in.
    pub timestamp_ms: Option<i64>,
    /// Its exemplar (OpenMetrics only).
    pub exemplar: Option<Exemplar<'a>>,
}

/// One line of meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// `# TYPE name kind`.
    Type(&'a str, Kind),
    /// `# HELP name text`, unescaped.
    Help(&'a str, Cow<'a, str>),
    /// `# UNIT name unit` (OpenMetrics).
    Unit(&'a str, &'a str),
    /// A sample.
    Sample(Sample<'a>),
}

/// Why a body could not be read: the line (from 1) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// The lines of a body, in order; an error stops the walk (a scrape with one bad line is
/// refused whole, as Prometheus does).
#[derive(Debug)]
pub struct Parser<'a> {
    rest: &'a str,
    format: Format,
    line: usize,
    done: bool,
}

impl<'a> Parser<'a> {
    /// A parser of `body` in `format`.
    pub fn new(body: &'a str, format: Format) -> Self {
        Self {
            rest: body,
            format,
            line: 0,
            done: false,
        }
    }

    fn error(&mut self, problem: &'static str) -> Option<Result<Line<'a>, ParseError>> {
        self.done = true;
        Some(Err(ParseError {
            line: self.line,
            problem,
        }))
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let open = self.format == Format::OpenMetrics;
        loop {
            if self.done {
                return None;
            }
            if self.rest.is_empty() {
                self.done = true;
                self.line += 1;
                return match open {
                    true => self.error("an OpenMetrics body must end with `# EOF`"),
                    false => None,
                };
            }
            let (text, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
            self.rest = rest;
            self.line += 1;
            let text = if open {
                text
            } else {
                text.trim_end_matches('\r')
            };
            if open && text == "# EOF" {
                self.done = true;
                return match self.rest.is_empty() {
                    true => None,
                    false => self.error("text after `# EOF`"),
                };
            }
            let parsed = match text.strip_prefix('#') {
                Some(comment) => match metadata(comment, self.format) {
                    Ok(None) => continue,
                    Ok(Some(line)) => Ok(line),
                    Err(problem) => Err(problem),
                },
                None if text.trim().is_empty() => match open {
                    true => Err("an OpenMetrics body has no empty lines"),
                    false => continue,
                },
                None => sample(text, self.format).map(Line::Sample),
            };
            return match parsed {
                Ok(line) => Some(Ok(line)),
                Err(problem) => self.error(problem),
            };
        }
    }
}

/// A `#` line: metadata, or `None` for a comment (0.0.4 allows any).
fn metadata(comment: &str, format: Format) -> Result<Option<Line<'_>>, &'static str> {
    let open = format == Format::OpenMetrics;
    let comment = match open {
        true => comment
            .strip_prefix(' ')
            .ok_or("a `#` line must be `# TYPE`, `# HELP`, `# UNIT` or `# EOF`")?,
        false => comment.trim_start_matches([' ', '\t']),
    };
    let (keyword, rest) = comment.split_once([' ', '\t']).unwrap_or((comment, ""));
    let (name, rest) = match open {
        true => rest.split_once(' ').unwrap_or((rest, "")),
        false => {
            let rest = rest.trim_start_matches([' ', '\t']);
            let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            (name, text.trim_start_matches([' ', '\t']))
        }
    };
    match keyword {
        "TYPE" | "HELP" | "UNIT" if !valid_name(name) => Err("metadata names no valid metric"),
        "TYPE" => Kind::parse(rest.trim_end(), format)
            .map(|kind| Some(Line::Type(name, kind)))
            .ok_or("an unknown metric type"),
        "HELP" => Ok(Some(Line::Help(name, unescape(rest, false)?))),
        "UNIT" if open => Ok(Some(Line::Unit(name, rest))),
        _ if open => Err("a `#` line must be `# TYPE`, `# HELP`, `# UNIT` or `# EOF`"),
        _ => Ok(None),
    }
}

/// Whether `name` is a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `text` with `\\`, `\n` (and, in a label value, `\"`) unescaped; borrowed when it has none.
fn unescape(text: &str, quoted: bool) -> Result<Cow<'_, str>, &'static str> {
    if !text.contains('\\') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quoted => out.push('"'),
            // 0.0.4 leaves other escapes in HELP as they are.
            Some(other) if !quoted => {
                out.push('\\');
                out.push(other);
            }
            _ => return Err("an invalid escape in a label value"),
        }
    }
    Ok(Cow::Owned(out))
}

/// A sample line: `name{labels} value [timestamp] [# {labels} value [timestamp]]`.
fn sample(text: &str, format: Format) -> Result<Sample<'_>, &'static str> {
    let open = format == Format::OpenMetrics;
    let end = text.find(['{', ' ', '\t']).unwrap_or(text.len());
    let name = &text[..end];
    if !valid_name(name) {
        return Err("a sample's metric name is not valid");
    }
    let mut rest = &text[end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = label_set(inside, &mut labels)?;
    }
    let rest = match open {
        true => rest
            .strip_prefix(' ')
            .ok_or("a sample needs one space before its value")?,
        false => rest.trim_start_matches([' ', '\t']),
    };
    let (values, exemplar) = match rest.split_once(" # ") {
        Some((values, exemplar)) if open => (values, Some(exemplar)),
        _ => (rest, None),
    };
    let mut words = values.split([' ', '\t']).filter(|w| !w.is_empty() || open);
    let value = number(words.next().ok_or("a sample has no value")?)?;
    let timestamp_ms = match words.next() {
        None => None,
        Some(t) if open => Some((number(t)? * 1000.0).round() as i64),
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| "a timestamp is not an integer")?,
        ),
    };
    if words.next().is_some() {
        return Err("text after a sample's timestamp");
    }
    let exemplar = exemplar.map(exemplar_of).transpose()?;
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar,
    })
}

/// An exemplar: `{labels} value [timestamp]`.
fn exemplar_of(text: &str) -> Result<Exemplar<'_>, &'static str> {
    let inside = text
        .strip_prefix('{')
        .ok_or("an exemplar starts with its labels")?;
    let mut labels = Vec::new();
    let rest = label_set(inside, &mut labels)?;
    let mut words = rest
        .strip_prefix(' ')
        .ok_or("an exemplar needs a value")?
        .split(' ');
    let value = number(words.next().ok_or("an exemplar needs a value")?)?;
    let timestamp = words.next().map(number).transpose()?;
    if words.next().is_some() {
        return Err("text after an exemplar's timestamp");
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp,
    })
}

/// Reads `name="value",…}` into `labels`; what follows the `}`.
fn label_set<'a>(mut text: &'a str, labels: &mut Labels<'a>) -> Result<&'a str, &'static str> {
    loop {
        text = text.trim_start_matches([' ', '\t']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, rest) = text.split_once('=').ok_or("a label has no `=`")?;
        let name = name.trim_end_matches([' ', '\t']);
        if !valid_label(name) {
            return Err("a label name is not valid");
        }
        let rest = rest
            .trim_start_matches([' ', '\t'])
            .strip_prefix('"')
            .ok_or("a label value is not quoted")?;
        let close = closing_quote(rest).ok_or("a label value is not closed")?;
        let value = unescape(&rest[..close], true)?;
        if labels.iter().any(|(n, _)| *n == name) {
            return Err("a label appears twice");
        }
        labels.push((name, value));
        text = rest[close + 1..].trim_start_matches([' ', '\t']);
        text = match text.strip_prefix(',') {
            Some(rest) => rest,
            None if text.starts_with('}') => text,
            None => return Err("labels must be separated by `,`"),
        };
    }
}

/// The position of the quote that closes a label value (not one escaped by `\`).
fn closing_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return Some(at),
            _ => at += 1,
        }
    }
    None
}

/// A sample value: a float, `NaN`, `+Inf`/`Inf`, `-Inf`.
fn number(word: &str) -> Result<f64, &'static str> {
    match word {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => word.parse().map_err(|_| "a value is not a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str, format: Format) -> Result<Vec<Line<'_>>, ParseError> {
        Parser::new(body, format).collect()
    }

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> Labels<'a> {
        pairs.iter().map(|(k, v)| (*k, Cow::Borrowed(*v))).collect()
    }

    #[test]
    fn the_text_format_reads_metadata_samples_escapes_and_timestamps() {
        let body = "# HELP http_requests_total The total.\\nSecond line \\\\ done\n\
                    # TYPE http_requests_total counter\n\
                    # a comment\n\
                    \n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\"} 3\r\n\
                    temperature\t-Inf\n\
                    # TYPE rpc summary\n\
                    rpc{quantile=\"0.5\",} NaN\n\
                    rpc_count 2\n";
        let got = lines(body, Format::Text).expect("valid");
        assert_eq!(
            got[0],
            Line::Help(
                "http_requests_total",
                Cow::Owned("The total.\nSecond line \\ done".into())
            )
        );
        assert_eq!(got[1], Line::Type("http_requests_total", Kind::Counter));
        let Line::Sample(first) = &got[2] else {
            panic!("a sample")
        };
        assert_eq!(
            (first.name, &first.labels, first.value, first.timestamp_ms),
            (
                "http_requests_total",
                &labels(&[("method", "post"), ("code", "200")]),
                1027.0,
                Some(1_395_066_363_000)
            )
        );
        let Line::Sample(escaped) = &got[3] else {
            panic!("a sample")
        };
        assert_eq!(
            escaped.labels,
            labels(&[("path", "C:\\dir"), ("q", "say \"hi\"")])
        );
        assert!(matches!(&escaped.labels[0].1, Cow::Owned(_)));
        assert!(
            matches!(&got[4], Line::Sample(s) if s.value == f64::NEG_INFINITY && s.labels.is_empty())
        );
        assert_eq!(got[5], Line::Type("rpc", Kind::Summary));
        assert!(
            matches!(&got[6], Line::Sample(s) if s.value.is_nan() && s.labels == labels(&[("quantile", "0.5")]))
        );
        assert_eq!(got.len(), 8);
    }

    #[test]
    fn openmetrics_reads_units_exemplars_seconds_and_needs_eof() {
        let body = "# TYPE latency histogram\n\
                    # UNIT latency seconds\n\
                    latency_bucket{le=\"0.5\"} 3 1700000000.25 # {trace_id=\"4bf92f3577b34da6\"} 0.41 1699999999.5\n\
                    latency_created 1.69e9\n\
                    # TYPE build info\n\
                    build_info{version=\"1.2\"} 1\n\
                    # EOF\n";
        let got = lines(body, Format::OpenMetrics).expect("valid");
        assert_eq!(got[1], Line::Unit("latency", "seconds"));
        let Line::Sample(bucket) = &got[2] else {
            panic!("a sample")
        };
        assert_eq!(bucket.timestamp_ms, Some(1_700_000_000_250));
        assert_eq!(
            bucket.exemplar,
            Some(Exemplar {
                labels: labels(&[("trace_id", "4bf92f3577b34da6")]),
                value: 0.41,
                timestamp: Some(1_699_999_999.5),
            })
        );
        assert_eq!(got[4], Line::Type("build", Kind::Info));
        assert_eq!(got.len(), 6);

        let missing = lines("a 1\n", Format::OpenMetrics).expect_err("no EOF");
        assert_eq!(
            missing.to_string(),
            "line 2: an OpenMetrics body must end with `# EOF`"
        );
        let after = lines("a 1\n# EOF\nb 2\n", Format::OpenMetrics).expect_err("after EOF");
        assert_eq!(after.to_string(), "line 2: text after `# EOF`");
        let gauge_histogram = lines("# TYPE q gaugehistogram\n# EOF\n", Format::Text);
        assert_eq!(
            gauge_histogram
                .expect_err("0.0.4 has no gaugehistogram")
                .problem,
            "an unknown metric type"
        );
    }

    #[test]
    fn a_bad_line_is_named_and_stops_the_walk() {
        let cases = [
            ("9bad 1\n", "a sample's metric name is not valid"),
            ("a{b=\"c\" 1\n", "labels must be separated by `,`"),
            ("a{b=c} 1\n", "a label value is not quoted"),
            ("a{b=\"c} 1\n", "a label value is not closed"),
            ("a{b=\"c\",b=\"d\"} 1\n", "a label appears twice"),
            ("a{1b=\"c\"} 1\n", "a label name is not valid"),
            ("a{b=\"\\x\"} 1\n", "an invalid escape in a label value"),
            ("a one\n", "a value is not a number"),
            ("a\n", "a sample has no value"),
            ("a 1 1.5\n", "a timestamp is not an integer"),
            ("a 1 2 3\n", "text after a sample's timestamp"),
            ("# TYPE a histogramm\n", "an unknown metric type"),
            ("# TYPE 1a counter\n", "metadata names no valid metric"),
        ];
        for (body, problem) in cases {
            let err = lines(&format!("ok 1\n{body}never 2\n"), Format::Text).expect_err(body);
            assert_eq!((err.line, err.problem), (2, problem), "{body}");
        }
        let mut parser = Parser::new("a{\n", Format::Text);
        assert!(parser.next().is_some_and(|r| r.is_err()));
        assert!(parser.next().is_none(), "nothing after an error");
        assert_eq!(
            lines("a 1\n\n# EOF\n", Format::OpenMetrics)
                .expect_err("blank")
                .problem,
            "an OpenMetrics body has no empty lines"
        );
    }

    #[test]
    fn the_content_type_picks_the_grammar() {
        assert_eq!(
            Format::of(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::of(Some("text/plain; version=0.0.4; charset=utf-8")),
            Format::Text
        );
        assert_eq!(Format::of(None), Format::Text);
        assert!(ACCEPT.starts_with("application/openmetrics-text;version=1.0.0"));
    }
}
