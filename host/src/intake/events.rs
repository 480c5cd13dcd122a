//! Parsing of a `/v1/events` body: one JSON event, a JSON array of events, or NDJSON.

use serde_json::Deserializer;
use serde_path_to_error::Segment;

use crate::model::event::Event;

/// Why a body could not be parsed, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[error("line {line}, event {index}{}: {message}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// The 1-based line of the body where the problem was found.
    pub line: usize,
    /// The 1-based column on that line.
    pub column: usize,
    /// The 0-based position of the offending event in the batch.
    pub index: usize,
    /// The dotted path of the offending field, when the problem is inside an event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Parses every event in `body`, or none: the first problem rejects the whole batch.
///
/// UTF-8 is validated once for the whole body. The hand-written [`scan`]ner
/// reads well-formed bodies; anything it declines is parsed again by
/// serde_json, which either reads it or says precisely what is wrong.
///
/// [`scan`]: super::scan
pub fn parse(body: &[u8]) -> Result<Vec<Event<'_>>, ParseError> {
    let body = std::str::from_utf8(body).map_err(|e| not_utf8(body, e))?;
    let start = body.bytes().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(ParseError {
            message: "the body holds no events".into(),
            line: 1,
            column: 1,
            index: 0,
            field: None,
        });
    };
    if let Some(events) = super::scan::events(body) {
        return Ok(events);
    }
    let array = body.as_bytes()[start] == b'[';
    with_serde(body).map_err(|_| diagnose(body.as_bytes(), array))
}

/// Parses a JSON array of events or a stream of event objects with serde_json.
pub fn with_serde(body: &str) -> Result<Vec<Event<'_>>, serde_json::Error> {
    if body.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<Event<'_>>>(body)
    } else {
        parse_stream(body)
    }
}

/// Parses whitespace-separated JSON objects (NDJSON, or a single object).
fn parse_stream(body: &str) -> Result<Vec<Event<'_>>, serde_json::Error> {
    // A typical event is 300–500 bytes; growing past the estimate is amortised.
    let mut events = Vec::with_capacity(body.len() / 256 + 1);
    for event in Deserializer::from_str(body).into_iter::<Event<'_>>() {
        events.push(event?);
    }
    Ok(events)
}

/// Locates the first invalid UTF-8 byte.
fn not_utf8(body: &[u8], e: std::str::Utf8Error) -> ParseError {
    let before = &body[..e.valid_up_to()];
    ParseError {
        message: "the body is not valid UTF-8".into(),
        line: before.iter().filter(|b| **b == b'\n').count() + 1,
        column: before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1,
        index: 0,
        field: None,
    }
}

/// Parses `body` again, tracking field paths, to say where the first problem is.
fn diagnose(body: &[u8], array: bool) -> ParseError {
    let mut index = 0;
    let mut field = Vec::new();
    // Where the failing value starts: 0 for an array, after the last good event for a stream.
    let mut offset = 0;
    let failure = if array {
        let mut de = Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, Vec<Event<'_>>>(&mut de) {
            Err(e) => Some(locate(e, &mut index, &mut field)),
            Ok(_) => de.end().err(),
        }
    } else {
        let mut stream = Deserializer::from_slice(body).into_iter::<Event<'_>>();
        loop {
            match stream.next() {
                None => break None,
                Some(Ok(_)) => index += 1,
                Some(Err(_)) => {
                    offset = stream.byte_offset();
                    let mut de = Deserializer::from_slice(&body[offset..]);
                    break serde_path_to_error::deserialize::<_, Event<'_>>(&mut de)
                        .err()
                        .map(|e| locate(e, &mut 0, &mut field));
                }
            }
        }
    };
    // The fast path failed, so the slow path fails too; stay total regardless.
    let Some(inner) = failure else {
        return ParseError {
            message: "the body could not be parsed".into(),
            line: 1,
            column: 1,
            index: 0,
            field: None,
        };
    };
    let message = inner.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_owned();
    let before = &body[..offset];
    let lines_before = before.iter().filter(|b| **b == b'\n').count();
    let column_before = before.len()
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
    let (line, column) = (inner.line().max(1), inner.column().max(1));
    ParseError {
        message,
        line: lines_before + line,
        column: if line == 1 {
            column_before + column
        } else {
            column
        },
        index,
        field: (!field.is_empty()).then(|| field.join(".")),
    }
}

/// Splits a path-tracking error into the event index, the field path and the JSON error.
fn locate(
    failure: serde_path_to_error::Error<serde_json::Error>,
    index: &mut usize,
    field: &mut Vec<String>,
) -> serde_json::Error {
    for segment in failure.path().iter() {
        match segment {
            Segment::Seq { index: i } if field.is_empty() => *index = *i,
            Segment::Seq { index: i } => field.push(i.to_string()),
            Segment::Map { key } => field.push(key.clone()),
            Segment::Enum { variant } => field.push(variant.clone()),
            Segment::Unknown => {}
        }
    }
    failure.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_single_object_array_and_ndjson() {
        assert_eq!(parse(br#"{"event_type":"a"}"#).expect("one").len(), 1);
        assert_eq!(
            parse(br#" [{"event_type":"a"},{"event_type":"b"}] "#)
                .expect("array")
                .len(),
            2
        );
        let nd = b"{\"event_type\":\"a\"}\n\n{\"event_type\":\"b\"}\r\n{\"event_type\":\"c\"}\n";
        let events = parse(nd).expect("ndjson");
        assert_eq!(
            events.iter().map(|e| &*e.event_type).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(parse(b"[]").expect("empty array").len(), 0);
    }

    #[test]
    fn names_line_index_and_field_of_a_wrong_type() {
        let nd = b"{\"event_type\":\"a\"}\n{\"event_type\":\"b\"}\n{\"event_type\":\"c\",\"metrics\":{\"ttfc_ms\":\"fast\"}}\n";
        let err = parse(nd).expect_err("bad");
        assert_eq!(err.line, 3);
        assert_eq!(err.column, 45, "just past the offending value");
        assert_eq!(err.index, 2);
        assert_eq!(err.field.as_deref(), Some("metrics.ttfc_ms"));
        assert_eq!(err.message, "invalid type: string \"fast\", expected f64");
    }

    #[test]
    fn names_the_array_element() {
        let body = b"[{\"event_type\":\"a\"},\n {\"event_type\":\"b\",\"stream\":1}]";
        let err = parse(body).expect_err("bad");
        assert_eq!(
            (err.line, err.index, err.field.as_deref()),
            (2, 1, Some("stream"))
        );
    }

    #[test]
    fn reports_syntax_errors_and_empty_bodies() {
        let err = parse(b"{\"event_type\":\"a\"}\n{\"event_type\":\n").expect_err("truncated");
        assert_eq!((err.line, err.index), (3, 1));
        assert!(
            err.message.starts_with("EOF while parsing"),
            "{}",
            err.message
        );
        let err = parse(b" \n ").expect_err("empty");
        assert_eq!(err.message, "the body holds no events");
        let err = parse(b"[{\"event_type\":\"a\"}] trailing").expect_err("trailing");
        assert_eq!(err.message, "trailing characters");
        let err =
            parse(b"{\"event_type\":\"a\"}\n{\"event_type\":\"\xff\"}").expect_err("not UTF-8");
        assert_eq!(
            (err.message.as_str(), err.line, err.column),
            ("the body is not valid UTF-8", 2, 16)
        );
        let err = parse(b"42").expect_err("not an object");
        assert!(
            err.message.starts_with("invalid type: integer `42`"),
            "{}",
            err.message
        );
    }
}
