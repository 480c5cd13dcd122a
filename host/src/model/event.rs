//! The inference event: one JSON object describing a step of a generation request.
//!
//! Events borrow their strings from the request body wherever JSON escaping
//! allows, so parsing a batch allocates little beyond the event list itself.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The W3C trace context a measurement was made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The span id.
    pub span_id: [u8; 8],
}

/// A string borrowed from the input when it has no escapes, owned otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A free-form attribute value, shaped like OTLP's `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A boolean.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number.
    Double(f64),
    /// A JSON array.
    Array(Vec<AnyValue<'a>>),
    /// A JSON object.
    Map(Vec<(Cow<'a, str>, AnyValue<'a>)>),
    /// JSON `null`.
    Null,
}

impl<'de: 'a, 'a> Deserialize<'de> for AnyValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(AnyValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(AnyValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(AnyValue::Double(v as f64), AnyValue::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(AnyValue::Double(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(AnyValue::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(AnyValue::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(AnyValue::Map(collect_map(map)?))
            }
        }
        d.deserialize_any(V)
    }
}

fn collect_map<'de, A, T>(mut map: A) -> Result<Vec<(Cow<'de, str>, T)>, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
    while let Some(key) = map.next_key::<Text<'de>>()? {
        let value = map.next_value::<T>()?;
        out.push((key.0, value));
    }
    Ok(out)
}

/// The numeric measurements of an event, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics<'a>(pub Vec<(Cow<'a, str>, f64)>);

impl Metrics<'_> {
    /// The value of the named measurement, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Metrics<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metrics<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                collect_map::<A, f64>(map).map(Metrics)
            }
        }
        d.deserialize_map(V)
    }
}

/// The free-form attributes of an event, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes<'a>(pub Vec<(Cow<'a, str>, AnyValue<'a>)>);

impl Attributes<'_> {
    /// The value of the named attribute, if present.
    pub fn get(&self, key: &str) -> Option<&AnyValue<'_>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Attributes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attributes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                collect_map::<A, AnyValue<'de>>(map).map(Attributes)
            }
        }
        d.deserialize_map(V)
    }
}

/// One inference event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event<'a> {
    /// `generation_started`, `chunk_produced`, `generation_completed` or any other name.
    #[serde(borrow, deserialize_with = "non_empty")]
    pub event_type: Text<'a>,
    /// When the event happened, in Unix nanoseconds (RFC 3339 on the wire).
    #[serde(default, rename = "timestamp", deserialize_with = "rfc3339")]
    pub time_unix_nano: Option<u64>,
    /// The device (host or accelerator) that served the request.
    #[serde(borrow, default)]
    pub device_id: Option<Text<'a>>,
    /// The organisation the request belongs to.
    #[serde(borrow, default)]
    pub org_id: Option<Text<'a>>,
    /// The model name.
    #[serde(borrow, default)]
    pub model: Option<Text<'a>>,
    /// The inference engine (vllm, llamacpp, …).
    #[serde(borrow, default)]
    pub engine: Option<Text<'a>>,
    /// The request this event belongs to; never a metric attribute by default.
    #[serde(borrow, default)]
    pub request_id: Option<Text<'a>>,
    /// Whether the response was streamed.
    #[serde(default)]
    pub stream: Option<bool>,
    /// W3C trace id (32 hex digits).
    #[serde(default, deserialize_with = "hex_id")]
    pub trace_id: Option<[u8; 16]>,
    /// W3C span id (16 hex digits).
    #[serde(default, deserialize_with = "hex_id")]
    pub span_id: Option<[u8; 8]>,
    /// The error type when the request failed.
    #[serde(borrow, default)]
    pub error: Option<Text<'a>>,
    /// Numeric measurements.
    #[serde(borrow, default)]
    pub metrics: Metrics<'a>,
    /// Free-form attributes.
    #[serde(borrow, default)]
    pub attributes: Attributes<'a>,
}

impl Event<'_> {
    /// The trace the event happened in, when it names both its trace and its span.
    pub fn trace(&self) -> Option<TraceContext> {
        Some(TraceContext {
            trace_id: self.trace_id?,
            span_id: self.span_id?,
        })
    }
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
    let text = Text::deserialize(d)?;
    if text.is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(text)
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Text<'de>>::deserialize(d)?
        .map(|text| unix_nanos(&text).map_err(de::Error::custom))
        .transpose()
}

fn hex_id<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Option<[u8; N]>, D::Error> {
    Option::<Text<'de>>::deserialize(d)?
        .map(|text| trace_context_id(&text).map_err(de::Error::custom))
        .transpose()
}

/// Converts an RFC 3339 timestamp to Unix nanoseconds.
pub fn unix_nanos(text: &str) -> Result<u64, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp ({e})"))?;
    u64::try_from(parsed.unix_timestamp_nanos()).map_err(|_| format!("`{text}` is before 1970"))
}

/// Decodes a W3C trace or span id: `2 * N` hex digits, not all zero.
pub fn trace_context_id<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let mut id = [0u8; N];
    const_hex::decode_to_slice(text.as_bytes(), &mut id)
        .map_err(|_| format!("`{text}` is not {} hex digits", 2 * N))?;
    if id == [0u8; N] {
        return Err("an all-zero id is invalid".into());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_and_borrows_plain_strings() {
        let json = r#"{"event_type":"generation_completed","timestamp":"2026-11-01T12:00:09.388162Z",
            "device_id":"dev00","org_id":"org","model":"m","engine":"vllm","request_id":"r1","stream":true,
            "trace_id":"1818e811892f902bd23f0824128b2f33","span_id":"9531985d5d9dc9f8","error":"timeout",
            "metrics":{"ttfc_ms":65.5,"output_tokens":520},"attributes":{"region":"eu","n":3,"ok":false,"x":[1,"a"]},
            "unknown_field":1}"#;
        let e: Event<'_> = serde_json::from_str(json).expect("valid");
        assert!(matches!(
            e.event_type.0,
            Cow::Borrowed("generation_completed")
        ));
        assert_eq!(e.time_unix_nano, Some(1_793_534_409_388_162_000));
        assert_eq!(
            e.trace_id.map(const_hex::encode).as_deref(),
            Some("1818e811892f902bd23f0824128b2f33")
        );
        assert_eq!(
            e.span_id.map(const_hex::encode).as_deref(),
            Some("9531985d5d9dc9f8")
        );
        assert_eq!(e.metrics.get("ttfc_ms"), Some(65.5));
        assert_eq!(e.metrics.get("output_tokens"), Some(520.0));
        assert_eq!(e.attributes.get("n"), Some(&AnyValue::Int(3)));
        assert_eq!(
            e.attributes.get("x"),
            Some(&AnyValue::Array(vec![
                AnyValue::Int(1),
                AnyValue::Str("a".into())
            ]))
        );
        assert_eq!(e.error.as_deref(), Some("timeout"));
        assert_eq!(e.stream, Some(true));
    }

    #[test]
    fn escaped_strings_are_owned_and_decoded() {
        let e: Event<'_> = serde_json::from_str(r#"{"event_type":"a\u0062"}"#).expect("valid");
        assert_eq!(&*e.event_type, "ab");
    }

    #[test]
    fn rejects_bad_fields_with_reasons() {
        let cases = [
            (r#"{"event_type":""}"#, "must not be empty"),
            (r#"{"model":"m"}"#, "missing field `event_type`"),
            (
                r#"{"event_type":"x","timestamp":"yesterday"}"#,
                "`yesterday` is not an RFC 3339 timestamp",
            ),
            (
                r#"{"event_type":"x","trace_id":"abc"}"#,
                "`abc` is not 32 hex digits",
            ),
            (
                r#"{"event_type":"x","span_id":"0000000000000000"}"#,
                "an all-zero id is invalid",
            ),
            (
                r#"{"event_type":"x","metrics":{"a":"1"}}"#,
                "invalid type: string \"1\", expected f64",
            ),
            (
                r#"{"event_type":"x","stream":"yes"}"#,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#"{"event_type":5}"#,
                "invalid type: integer `5`, expected a string",
            ),
        ];
        for (json, want) in cases {
            let err = serde_json::from_str::<Event<'_>>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
