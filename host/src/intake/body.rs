//! Request bodies: media types, content encodings and the size limit.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use super::error::IntakeError;

/// The default body limit, applied after decompression: 8 MiB.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

/// A media type an intake endpoint may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json` (or a missing content type).
    Json,
    /// `application/x-ndjson` and its aliases.
    Ndjson,
}

impl MediaType {
    /// Reads the request's media type, rejecting types no endpoint understands.
    pub fn of(headers: &HeaderMap) -> Result<Self, IntakeError> {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return Ok(MediaType::Json);
        };
        let raw = value.to_str().unwrap_or("");
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(MediaType::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Ok(MediaType::Ndjson),
            _ => Err(IntakeError::UnsupportedMediaType(raw.to_owned())),
        }
    }
}

/// Reads the whole body, gunzips it if asked to, and enforces `limit` on the decoded size; a
/// body declaring more than `limit` bytes is refused before any of it is read.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, IntakeError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&d| d > limit as u64) {
        return Err(IntakeError::DeclaredTooLarge { declared, limit });
    }
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => return Err(IntakeError::UnsupportedEncoding(other.to_owned())),
    };
    let raw = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                IntakeError::TooLarge { limit }
            } else if let Some(slow) = crate::server::cause::<crate::server::SlowBody>(e.as_ref()) {
                IntakeError::SlowBody(slow.to_string())
            } else if let Some(spent) =
                crate::server::cause::<crate::server::BudgetSpent>(e.as_ref())
            {
                IntakeError::Busy(spent.to_string())
            } else {
                IntakeError::BodyRead(e.to_string())
            }
        })?
        .to_bytes();
    if gzip { gunzip(&raw, limit) } else { Ok(raw) }
}

/// Decompresses gzip, stopping as soon as the output passes `limit`, so a bomb costs at most `limit` bytes.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, IntakeError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| IntakeError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(IntakeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn gunzip_round_trips_and_stops_bombs() {
        assert_eq!(&gunzip(&gz(b"hello"), 5).expect("fits")[..], b"hello");
        let bomb = gz(&vec![b'a'; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "a bomb compresses well");
        assert!(matches!(
            gunzip(&bomb, 1024),
            Err(IntakeError::TooLarge { limit: 1024 })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 1024),
            Err(IntakeError::BadGzip(_))
        ));
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert_eq!(MediaType::of(&h).expect("none"), MediaType::Json);
        h.insert(
            CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("hv"),
        );
        assert_eq!(MediaType::of(&h).expect("json"), MediaType::Json);
        h.insert(CONTENT_TYPE, "Application/X-NDJSON".parse().expect("hv"));
        assert_eq!(MediaType::of(&h).expect("ndjson"), MediaType::Ndjson);
        h.insert(CONTENT_TYPE, "text/csv".parse().expect("hv"));
        assert!(
            matches!(MediaType::of(&h), Err(IntakeError::UnsupportedMediaType(t)) if t == "text/csv")
        );
    }
}
