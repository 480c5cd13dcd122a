//! Received OTLP logs and traces as records: each log record or span sliced, as it arrived, out
//! of the request's protobuf bytes (a JSON request is encoded to protobuf once first), with its
//! resource and scope; checked.
//!
//! A protobuf request is walked, not decoded: every record is checked field by field (wire
//! format, UTF-8 strings, nested values, trace and span ids, times) without building it, and
//! kept as a slice of the body that every exporter of its signal shares. Logs and traces
//! requests nest alike, with the same field numbers; only the records inside differ.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::Tally;
use crate::model::content::{Content, Patterns};
use crate::model::key_values::attribute_set;
use crate::model::record::{Origin, Record};
use crate::model::wire::{Fields, Value, WireError};

/// How deep values may nest in a record (as `prost` allows).
const MAX_DEPTH: u32 = 100;

/// What the check of one record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Left out (and counted) for this reason.
    Refused(&'static str),
    /// Kept.
    Kept,
    /// Kept, and it carries GenAI content.
    Content,
}

/// How one record is checked, marking content as `content` says: `Err` when it is not valid
/// protobuf (the whole request is refused).
pub type Check = fn(&[u8], &Content) -> Result<Verdict, WireError>;

/// The records of a request, and the positions of those that carry GenAI content.
#[derive(Debug, Default)]
pub struct Scanned {
    /// The records kept, in order.
    pub records: Vec<Record>,
    /// Positions in `records` of those carrying content.
    pub content: Vec<usize>,
}

/// The records of an `ExportLogsServiceRequest` or `ExportTraceServiceRequest` in protobuf,
/// sliced from `body`, each checked by `check` (`log_record` or `span`), leaving out (and
/// counting) those it refuses and marking those that carry `content`; an error when the body
/// is not a valid request.
///
/// `stamp` may change a resource's attributes (its sender's tenant); a changed resource is
/// encoded anew, an unchanged one stays a slice of the body.
pub fn scan(
    body: &Bytes,
    tally: &mut Tally,
    stamp: &Stamp<'_>,
    (check, content): (Check, &Content),
) -> Result<Scanned, WireError> {
    let mut out = Scanned::default();
    for field in Fields::new(body) {
        if let (1, Value::Len(resource)) = field? {
            scan_resource(body, resource, tally, (stamp, check, content), &mut out)?;
        }
    }
    Ok(out)
}

/// How a request's resources are stamped with its sender's tenant: the attribute change, and
/// the tenant its records belong to.
pub struct Stamp<'a> {
    /// Sets (or removes) the tenant key of resource attributes; whether anything changed.
    pub attributes: &'a dyn Fn(&mut Vec<KeyValue>) -> bool,
    /// The sender's tenant, if a tenant sent it.
    pub tenant: Option<Arc<str>>,
}

impl std::fmt::Debug for Stamp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stamp")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Stamp<'_> {
    /// No stamping: the records are the operator's as they came.
    pub const NONE: Stamp<'static> = Stamp {
        attributes: &|_| false,
        tenant: None,
    };
}

/// The last value of length-delimited field `number` in `message`, if any.
fn last_len(message: &[u8], number: u32) -> Result<Option<&[u8]>, WireError> {
    let mut last = None;
    for field in Fields::new(message) {
        match field? {
            (n, Value::Len(bytes)) if n == number => last = Some(bytes),
            (n, _) if n == number => return Err(WireError("a message field has the wrong type")),
            _ => {}
        }
    }
    Ok(last)
}

/// A `ResourceLogs` or `ResourceSpans`.
fn scan_resource(
    body: &Bytes,
    message: &[u8],
    tally: &mut Tally,
    (stamp, check, content): (&Stamp<'_>, Check, &Content),
    out: &mut Scanned,
) -> Result<(), WireError> {
    let resource = last_len(message, 1)?.unwrap_or_default();
    let mut decoded =
        Resource::decode(resource).map_err(|_| WireError("a resource is not valid"))?;
    let resource = match (stamp.attributes)(&mut decoded.attributes) {
        true => Bytes::from(decoded.encode_to_vec()),
        false => body.slice_ref(resource),
    };
    let attributes = attribute_set(&decoded.attributes);
    for field in Fields::new(message) {
        if let (2, Value::Len(scoped)) = field? {
            let scope = last_len(scoped, 1)?.unwrap_or_default();
            InstrumentationScope::decode(scope).map_err(|_| WireError("a scope is not valid"))?;
            let origin = Arc::new(Origin {
                resource: resource.clone(),
                scope: body.slice_ref(scope),
                attributes: attributes.clone(),
                tenant: stamp.tenant.clone(),
            });
            for field in Fields::new(scoped) {
                if let (2, Value::Len(record)) = field? {
                    let verdict = check(record, content)?;
                    if let Verdict::Refused(why) = verdict {
                        tally.reject(1, why);
                        continue;
                    }
                    if verdict == Verdict::Content {
                        out.content.push(out.records.len());
                    }
                    tally.accept(1);
                    out.records.push(Record {
                        origin: origin.clone(),
                        bytes: body.slice_ref(record),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Checks a `LogRecord` without decoding it: left out when its trace or span id has the wrong
/// length; content when an attribute key is, or it has a body and its event name is content's.
pub fn log_record(record: &[u8], content: &Content) -> Result<Verdict, WireError> {
    let (mut trace_id, mut span_id) = (0, 0);
    let (mut carries, mut body, mut event): (bool, bool, &[u8]) = (false, false, &[]);
    for field in Fields::new(record) {
        match field? {
            (1 | 11, Value::Fixed64(_)) | (2 | 7, Value::Varint(_)) | (8, Value::Fixed32(_)) => {}
            (3, Value::Len(text)) => utf8(text)?,
            (12, Value::Len(name)) => {
                utf8(name)?;
                event = name;
            }
            (5, Value::Len(value)) => {
                check_any(value, 1)?;
                body = true;
            }
            (6, Value::Len(pair)) => carries |= attribute(pair, &content.keys)?,
            (9, Value::Len(id)) => trace_id = id.len(),
            (10, Value::Len(id)) => span_id = id.len(),
            (1..=3 | 5..=12, _) => return Err(WireError("a log record field has the wrong type")),
            _ => {}
        }
    }
    Ok(if !matches!(trace_id, 0 | 16) {
        Verdict::Refused("a log record's trace id is not 16 bytes")
    } else if !matches!(span_id, 0 | 8) {
        Verdict::Refused("a log record's span id is not 8 bytes")
    } else {
        kept(carries || (body && content.events.matches(event)))
    })
}

/// A kept record's verdict: content or not.
fn kept(content: bool) -> Verdict {
    if content {
        Verdict::Content
    } else {
        Verdict::Kept
    }
}

/// Whether `id` is a valid trace (16 bytes) or span (8 bytes) id: that long, not all zero.
fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// Checks a `Span` without decoding it: left out when its trace or span id is not valid, its
/// parent id has the wrong length, it ends before it starts, or a link's ids are not valid;
/// content when an attribute key of it or of an event is.
pub fn span(span: &[u8], content: &Content) -> Result<Verdict, WireError> {
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut start, mut end) = (0, 0);
    let (mut links_valid, mut carries) = (true, false);
    for field in Fields::new(span) {
        match field? {
            (1, Value::Len(id)) => trace_id = id,
            (2, Value::Len(id)) => span_id = id,
            (4, Value::Len(id)) => parent = id,
            (3 | 5, Value::Len(text)) => utf8(text)?,
            (6 | 10 | 12 | 14, Value::Varint(_)) | (16, Value::Fixed32(_)) => {}
            (7, Value::Fixed64(t)) => start = t,
            (8, Value::Fixed64(t)) => end = t,
            (9, Value::Len(pair)) => carries |= attribute(pair, &content.keys)?,
            (11, Value::Len(event)) => carries |= span_event(event, &content.keys)?,
            (13, Value::Len(link)) => links_valid &= span_link(link)?,
            (15, Value::Len(status)) => span_status(status)?,
            (1..=16, _) => return Err(WireError("a span field has the wrong type")),
            _ => {}
        }
    }
    Ok(if !valid_id(trace_id, 16) {
        Verdict::Refused("a span's trace id is not 16 bytes, or is all zero")
    } else if !valid_id(span_id, 8) {
        Verdict::Refused("a span's span id is not 8 bytes, or is all zero")
    } else if !matches!(parent.len(), 0 | 8) {
        Verdict::Refused("a span's parent span id is not 8 bytes")
    } else if end < start {
        Verdict::Refused("a span ends before it starts")
    } else if !links_valid {
        Verdict::Refused(
            "a span's link has a trace id that is not 16 bytes or a span id that is not 8",
        )
    } else {
        kept(carries)
    })
}

/// Checks a `Span.Event` (time 1, name 2, attributes 3, dropped count 4); whether an
/// attribute key is one of `keys`.
fn span_event(event: &[u8], keys: &Patterns) -> Result<bool, WireError> {
    let mut carries = false;
    for field in Fields::new(event) {
        match field? {
            (1, Value::Fixed64(_)) | (4, Value::Varint(_)) => {}
            (2, Value::Len(name)) => utf8(name)?,
            (3, Value::Len(pair)) => carries |= attribute(pair, keys)?,
            (1..=4, _) => return Err(WireError("a span event field has the wrong type")),
            _ => {}
        }
    }
    Ok(carries)
}

/// Checks a `Span.Link` (trace id 1, span id 2, trace state 3, attributes 4, dropped count 5,
/// flags 6); whether its ids are valid.
fn span_link(link: &[u8]) -> Result<bool, WireError> {
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    for field in Fields::new(link) {
        match field? {
            (1, Value::Len(id)) => trace_id = id,
            (2, Value::Len(id)) => span_id = id,
            (3, Value::Len(text)) => utf8(text)?,
            (4, Value::Len(pair)) => drop(check_pair(pair, 1)?),
            (5, Value::Varint(_)) | (6, Value::Fixed32(_)) => {}
            (1..=6, _) => return Err(WireError("a span link field has the wrong type")),
            _ => {}
        }
    }
    Ok(valid_id(trace_id, 16) && valid_id(span_id, 8))
}

/// Checks a span's `Status`: message 2, code 3.
fn span_status(status: &[u8]) -> Result<(), WireError> {
    for field in Fields::new(status) {
        match field? {
            (2, Value::Len(text)) => utf8(text)?,
            (3, Value::Varint(_)) => {}
            (2 | 3, _) => return Err(WireError("a span status field has the wrong type")),
            _ => {}
        }
    }
    Ok(())
}

fn utf8(text: &[u8]) -> Result<(), WireError> {
    std::str::from_utf8(text)
        .map(drop)
        .map_err(|_| WireError("a string is not UTF-8"))
}

/// Checks an attribute (a `KeyValue` of a record, span or event); whether its key is one of
/// `keys`.
fn attribute(pair: &[u8], keys: &Patterns) -> Result<bool, WireError> {
    check_pair(pair, 1).map(|key| keys.matches(key))
}

/// Checks a `KeyValue`; its key.
fn check_pair(pair: &[u8], depth: u32) -> Result<&[u8], WireError> {
    let mut last: &[u8] = &[];
    for field in Fields::new(pair) {
        match field? {
            (1, Value::Len(key)) => {
                utf8(key)?;
                last = key;
            }
            (2, Value::Len(value)) => check_any(value, depth + 1)?,
            (1 | 2, _) => return Err(WireError("an attribute field has the wrong type")),
            _ => {}
        }
    }
    Ok(last)
}

/// Checks an `AnyValue`, its arrays and maps nested at most [`MAX_DEPTH`] deep.
fn check_any(value: &[u8], depth: u32) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError("values nest too deep"));
    }
    for field in Fields::new(value) {
        match field? {
            (1, Value::Len(text)) => utf8(text)?,
            (2 | 3, Value::Varint(_)) | (4, Value::Fixed64(_)) | (7, Value::Len(_)) => {}
            (5, Value::Len(array)) => {
                for item in Fields::new(array) {
                    match item? {
                        (1, Value::Len(v)) => check_any(v, depth + 1)?,
                        (1, _) => return Err(WireError("an array item has the wrong type")),
                        _ => {}
                    }
                }
            }
            (6, Value::Len(map)) => {
                for item in Fields::new(map) {
                    match item? {
                        (1, Value::Len(pair)) => drop(check_pair(pair, depth + 1)?),
                        (1, _) => return Err(WireError("a map entry has the wrong type")),
                        _ => {}
                    }
                }
            }
            (1..=7, _) => return Err(WireError("a value field has the wrong type")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    use super::*;

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("app".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn record(body: &str, trace_id: usize) -> LogRecord {
        LogRecord {
            time_unix_nano: 5,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.into())),
            }),
            trace_id: vec![1; trace_id],
            ..Default::default()
        }
    }

    #[test]
    fn records_are_sliced_out_checked_and_the_same_as_decoding_gives() {
        let req = request(vec![record("a", 16), record("b", 3), record("c", 0)]);
        let body = Bytes::from(req.encode_to_vec());
        let mut tally = Tally::default();
        let none = Content::none();
        let scanned = scan(&body, &mut tally, &Stamp::NONE, (log_record, &none)).expect("valid");
        let records = scanned.records;
        assert_eq!((tally.accepted, tally.rejected), (2, 1));
        assert_eq!(
            tally.message.as_deref(),
            Some("a log record's trace id is not 16 bytes")
        );
        assert_eq!(records[0].decode::<LogRecord>(), record("a", 16));
        assert_eq!(records[1].decode::<LogRecord>(), record("c", 0));
        assert_eq!(records[0].origin.scope().name, "lib");
        assert_eq!(records[0].origin.resource().attributes.len(), 1);
        // Slices of the body, not copies.
        let inside = |b: &Bytes| {
            let (start, end) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
            (start..end).contains(&(b.as_ptr() as usize))
        };
        assert!(inside(&records[0].bytes) && inside(&records[0].origin.resource));
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_reason() {
        let good = request(vec![record("a", 0)]).encode_to_vec();
        let scan_of = |bytes: Vec<u8>| {
            scan(
                &Bytes::from(bytes),
                &mut Tally::default(),
                &Stamp::NONE,
                (log_record, &Content::none()),
            )
            .map(|s| s.records)
        };
        assert_eq!(
            scan_of(good[..good.len() - 1].to_vec()).map(|r| r.len()),
            Err(WireError("a field runs past the end of its message"))
        );
        // A body string that is not UTF-8.
        let mut bad = good;
        let at = bad.iter().rposition(|b| *b == b'a').expect("the body text");
        bad[at] = 0xff;
        assert_eq!(
            scan_of(bad).map(|r| r.len()),
            Err(WireError("a string is not UTF-8"))
        );
        // A record whose severity (a varint) arrives as bytes.
        let mut w = crate::model::wire::Reverse::default();
        w.message(1, |w| {
            w.message(2, |w| {
                w.message(2, |w| w.bytes_always(2, b"x"));
            });
        });
        assert_eq!(
            scan_of(w.finish()).map(|r| r.len()),
            Err(WireError("a log record field has the wrong type"))
        );
        assert_eq!(scan_of(Vec::new()).map(|r| r.len()), Ok(0));
    }

    #[test]
    fn records_carrying_genai_content_are_marked() {
        use opentelemetry_proto::tonic::common::v1::AnyValue;
        use opentelemetry_proto::tonic::trace::v1::{Span, span};
        let kv = |key: &str, text: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(text.into())),
            }),
            ..Default::default()
        };
        let content = Content::new(crate::model::content::KEYS, crate::model::content::EVENTS);
        let mut plain = record("hello", 0);
        plain.attributes = vec![kv("gen_ai.request.model", "m")];
        let mut keyed = plain.clone();
        keyed.attributes.push(kv("gen_ai.input.messages", "[]"));
        let mut message = plain.clone();
        message.event_name = "gen_ai.user.message".into();
        let verdict = |r: &LogRecord, c: &Content| log_record(&r.encode_to_vec(), c);
        assert_eq!(verdict(&plain, &content), Ok(Verdict::Kept));
        assert_eq!(verdict(&keyed, &content), Ok(Verdict::Content));
        assert_eq!(verdict(&message, &content), Ok(Verdict::Content));
        message.body = None;
        assert_eq!(
            verdict(&message, &content),
            Ok(Verdict::Kept),
            "a message event without a body carries nothing"
        );
        assert_eq!(verdict(&keyed, &Content::none()), Ok(Verdict::Kept));

        let mut s = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            attributes: plain.attributes,
            events: vec![span::Event {
                name: "first_token".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let verdict = |s: &Span| span(&s.encode_to_vec(), &content);
        assert_eq!(verdict(&s), Ok(Verdict::Kept));
        s.events[0]
            .attributes
            .push(kv("gen_ai.completion.0.content", "x"));
        assert_eq!(verdict(&s), Ok(Verdict::Content), "content in an event");
    }
}
