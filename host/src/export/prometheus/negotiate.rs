//! Content negotiation for scrapes, by q-value (RFC 9110 §12.5): the exposition format from
//! `Accept`, and the compression from `Accept-Encoding`.

/// The elements of a comma-separated header list, each with its q-value (1 when absent, 0
/// meaning "not acceptable").
fn elements(header: &str) -> impl Iterator<Item = (&str, f32)> {
    header.split(',').filter_map(|element| {
        let mut parts = element.split(';');
        let value = parts.next()?.trim();
        if value.is_empty() {
            return None;
        }
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        Some((value, if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) }))
    })
}

/// The q-value `accept` gives media type `wanted` (`type/subtype`), by its most specific
/// matching range (`type/subtype`, then `type/*`, then `*/*`); 0 when none matches.
pub(super) fn media_quality(accept: &str, wanted: &str) -> f32 {
    let main = wanted.split('/').next().unwrap_or_default();
    let mut best: Option<(u8, f32)> = None;
    for (range, q) in elements(accept) {
        let specificity = if range.eq_ignore_ascii_case(wanted) {
            3
        } else if range
            .strip_suffix("/*")
            .is_some_and(|t| t.eq_ignore_ascii_case(main))
        {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, b)| specificity > s || (specificity == s && q > b)) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// How a scrape's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// As it is.
    Identity,
    /// gzip (see [`crate::export::gzip`]).
    Gzip,
}

impl Compression {
    /// gzip when `Accept-Encoding` accepts it (by name, `x-gzip` or `*`), unless it rates
    /// identity higher; else identity.
    pub fn negotiate(accept_encoding: Option<&str>) -> Self {
        let Some(header) = accept_encoding else {
            return Self::Identity;
        };
        let (mut gzip, mut identity, mut any) = (None, None, None);
        for (coding, q) in elements(header) {
            match coding.to_ascii_lowercase().as_str() {
                "gzip" | "x-gzip" => gzip = Some(q),
                "identity" => identity = Some(q),
                "*" => any = Some(q),
                _ => {}
            }
        }
        let gzip = gzip.or(any).unwrap_or(0.0);
        // Identity is always acceptable, but competes only when the client rates it.
        if gzip > 0.0 && gzip >= identity.unwrap_or(0.0) {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    /// The `Content-Encoding` to send, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
        }
    }

    /// `body`, compressed.
    pub fn apply(self, body: String) -> Vec<u8> {
        match self {
            Self::Identity => body.into_bytes(),
            Self::Gzip => crate::export::gzip(body.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_choose_the_most_specific_range() {
        let accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(media_quality(accept, "application/openmetrics-text"), 0.5);
        assert_eq!(media_quality(accept, "text/plain"), 0.3);
        assert_eq!(media_quality(accept, "application/json"), 0.2);
        assert_eq!(media_quality("text/*;q=0.4, */*", "text/plain"), 0.4);
        assert_eq!(media_quality("application/json", "text/plain"), 0.0);
        assert_eq!(media_quality("text/plain;Q=0", "text/plain"), 0.0);
        assert_eq!(media_quality("text/plain;q=junk", "text/plain"), 1.0);
    }

    #[test]
    fn gzip_when_accepted_at_least_as_much_as_identity() {
        let gzip = |h: &str| Compression::negotiate(Some(h));
        assert_eq!(gzip("gzip"), Compression::Gzip);
        assert_eq!(gzip("deflate, GZIP;q=0.8"), Compression::Gzip);
        assert_eq!(gzip("x-gzip"), Compression::Gzip);
        assert_eq!(gzip("*"), Compression::Gzip);
        assert_eq!(gzip("gzip;q=0"), Compression::Identity);
        assert_eq!(gzip("br, deflate"), Compression::Identity);
        assert_eq!(gzip("gzip;q=0.5, identity"), Compression::Identity);
        assert_eq!(gzip("gzip;q=0.5, *;q=0"), Compression::Gzip);
        assert_eq!(Compression::negotiate(None), Compression::Identity);
        let body = "a_metric{x=\"1\"} 1\n".repeat(1000);
        let packed = Compression::Gzip.apply(body.clone());
        assert!(packed.len() < body.len() / 20, "{} bytes", packed.len());
        let mut unpacked = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .expect("valid gzip");
        assert_eq!(unpacked, body);
    }
}
