//! A hand-written scanner for the event schema: the fast path of `/v1/events` parsing.
//!
//! It reads exactly the [`Event`] layout and validates the JSON grammar as it
//! goes (string characters and escapes, number syntax, literals, nesting),
//! but it produces no error messages: on anything it does not accept it
//! returns `None`, and the caller parses the body again with serde_json,
//! which either succeeds or reports the problem precisely. The scanner must
//! therefore never accept input that serde_json rejects, and must decode
//! what it accepts to the same events; differential property tests hold it
//! to both.

use std::borrow::Cow;

use crate::model::event::{
    AnyValue, Attributes, Event, Metrics, Text, trace_context_id, unix_nanos,
};

/// Nesting depth the scanner handles, below serde_json's limit of 128; deeper input takes the slow path.
const MAX_DEPTH: usize = 100;

/// Scans a JSON array of events, or whitespace-separated event objects.
pub fn events(body: &str) -> Option<Vec<Event<'_>>> {
    let mut s = Scanner { text: body, at: 0 };
    let mut out = Vec::with_capacity(body.len() / 256 + 1);
    s.ws();
    if s.eat(b'[') {
        s.ws();
        if !s.eat(b']') {
            loop {
                out.push(s.event()?);
                s.ws();
                match s.byte()? {
                    b',' => s.ws(),
                    b']' => break,
                    _ => return None,
                }
            }
        }
        s.ws();
        return s.done().then_some(out);
    }
    while !s.done() {
        out.push(s.event()?);
        s.ws();
    }
    Some(out)
}

/// The index of the first byte that ends or interrupts a string's plain run: `"`, `\\` or a control character.
///
/// Eight bytes at a time (SWAR): a lane is flagged when it equals `"` or
/// `\\` (its XOR with the pattern is zero) or is below 0x20. The lowest flag
/// is exact; higher ones may be false positives, so only the lowest is used.
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let mut offset = 0;
    while let Some(chunk) = bytes.get(offset..offset + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let hits = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    bytes[offset..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> bool {
        let hit = self.peek() == Some(want);
        self.at += usize::from(hit);
        hit
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// A string, borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let rest = &self.bytes()[start..];
        let end = special(rest)?;
        if rest[end] < 0x20 {
            return None;
        }
        if rest[end] == b'"' {
            self.at = start + end + 1;
            return Some(Cow::Borrowed(&self.text[start..start + end]));
        }
        self.at = start + end;
        let mut owned = String::from(&self.text[start..self.at]);
        loop {
            match self.byte()? {
                b'"' => return Some(Cow::Owned(owned)),
                b'\\' => owned.push(self.escape()?),
                b if b < 0x20 => return None,
                _ => {
                    // Copy the whole UTF-8 sequence the byte starts (the body is valid UTF-8).
                    let from = self.at - 1;
                    let ch = self.text[from..].chars().next()?;
                    owned.push(ch);
                    self.at = from + ch.len_utf8();
                }
            }
        }
    }

    fn escape(&mut self) -> Option<char> {
        Some(match self.byte()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xD800..=0xDBFF => {
                        self.literal("\\u")?;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))?
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => char::from_u32(first)?,
                }
            }
            _ => return None,
        })
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// The text of a number with valid JSON syntax, and whether it is an integer.
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.at;
        self.eat(b'-');
        match self.byte()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.some_digits()?;
        }
        Some((&self.text[start..self.at], integer))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// A finite `f64`, as serde reads any JSON number into one.
    fn float(&mut self) -> Option<f64> {
        let v: f64 = self.number()?.0.parse().ok()?;
        v.is_finite().then_some(v)
    }

    /// `null` (→ `None`) or a string.
    fn nullable_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// `null` (→ `None`) or a string that `convert` accepts.
    fn nullable_with<T>(
        &mut self,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.nullable_string()? {
            None => Some(None),
            Some(text) => convert(&text).ok().map(Some),
        }
    }

    /// Runs `item` for each `"key": value` member of an object.
    fn members(
        &mut self,
        mut item: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        self.ws();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            item(self, key)?;
            self.ws();
            match self.byte()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn any(&mut self, depth: usize) -> Option<AnyValue<'a>> {
        if depth >= MAX_DEPTH {
            return None;
        }
        Some(match self.peek()? {
            b'"' => AnyValue::Str(self.string()?),
            b't' => self.literal("true").map(|()| AnyValue::Bool(true))?,
            b'f' => self.literal("false").map(|()| AnyValue::Bool(false))?,
            b'n' => self.literal("null").map(|()| AnyValue::Null)?,
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if !self.eat(b']') {
                    loop {
                        items.push(self.any(depth + 1)?);
                        self.ws();
                        match self.byte()? {
                            b',' => self.ws(),
                            b']' => break,
                            _ => return None,
                        }
                    }
                }
                AnyValue::Array(items)
            }
            b'{' => {
                let mut pairs = Vec::new();
                self.members(|s, k| {
                    pairs.push((k, s.any(depth + 1)?));
                    Some(())
                })?;
                AnyValue::Map(pairs)
            }
            _ => {
                let (text, integer) = self.number()?;
                if integer {
                    if let Ok(i) = text.parse::<i64>() {
                        return Some(AnyValue::Int(i));
                    }
                    if let Ok(u) = text.parse::<u64>() {
                        return Some(AnyValue::Double(u as f64));
                    }
                }
                let v: f64 = text.parse().ok()?;
                if !v.is_finite() {
                    return None;
                }
                AnyValue::Double(v)
            }
        })
    }

    /// Validates and skips a value of an unknown field, as serde ignores it (numbers are not range-checked).
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'[' => {
                self.at += 1;
                self.ws();
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.byte()? {
                        b',' => self.ws(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'{' => self.members(|s, _| s.skip(depth + 1)),
            _ => self.number().map(drop),
        }
    }

    fn event(&mut self) -> Option<Event<'a>> {
        let mut event_type = None;
        let mut e = Event {
            event_type: Text(Cow::Borrowed("")),
            time_unix_nano: None,
            device_id: None,
            org_id: None,
            model: None,
            engine: None,
            request_id: None,
            stream: None,
            trace_id: None,
            span_id: None,
            error: None,
            metrics: Metrics::default(),
            attributes: Attributes::default(),
        };
        let mut seen = 0u16;
        self.members(|s, key| {
            let bit = match &*key {
                "event_type" => 0,
                "timestamp" => 1,
                "device_id" => 2,
                "org_id" => 3,
                "model" => 4,
                "engine" => 5,
                "request_id" => 6,
                "stream" => 7,
                "trace_id" => 8,
                "span_id" => 9,
                "error" => 10,
                "metrics" => 11,
                "attributes" => 12,
                _ => return s.skip(0),
            };
            // serde rejects a repeated field.
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            let text = |s: &mut Self| s.nullable_string().map(|t| t.map(Text));
            match bit {
                0 => event_type = Some(s.string().filter(|t| !t.is_empty())?),
                1 => e.time_unix_nano = s.nullable_with(unix_nanos)?,
                2 => e.device_id = text(s)?,
                3 => e.org_id = text(s)?,
                4 => e.model = text(s)?,
                5 => e.engine = text(s)?,
                6 => e.request_id = text(s)?,
                7 => {
                    e.stream = match s.peek()? {
                        b't' => s.literal("true").map(|()| Some(true))?,
                        b'f' => s.literal("false").map(|()| Some(false))?,
                        _ => s.literal("null").map(|()| None)?,
                    }
                }
                8 => e.trace_id = s.nullable_with(trace_context_id)?,
                9 => e.span_id = s.nullable_with(trace_context_id)?,
                10 => e.error = text(s)?,
                11 => s.members(|s, k| {
                    let v = s.float()?;
                    e.metrics.0.push((k, v));
                    Some(())
                })?,
                _ => s.members(|s, k| {
                    let v = s.any(1)?;
                    e.attributes.0.push((k, v));
                    Some(())
                })?,
            }
            Some(())
        })?;
        e.event_type = Text(event_type?);
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::events::with_serde;
    use proptest::prelude::*;

    /// The scanner never accepts what serde_json rejects, and agrees with it on what both accept.
    fn agrees(body: &str) -> Result<bool, TestCaseError> {
        let reference = with_serde(body);
        let scanned = events(body);
        match (&reference, &scanned) {
            (Err(e), Some(got)) => {
                return Err(TestCaseError::fail(format!(
                    "scanner accepted what serde_json rejects ({e}): {body:?} → {got:?}"
                )));
            }
            (Ok(want), Some(got)) => prop_assert_eq!(want, got, "{:?}", body),
            _ => {}
        }
        Ok(reference.is_ok() && scanned.is_some())
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_byte() {
        for (text, want) in [
            (&b"abc"[..], None),
            (b"abcdefghijklmnop\"", Some(16)),
            (b"abcdefg\"", Some(7)),
            (b"a\\b\"", Some(1)),
            (b"abcdefgh\x01\"", Some(8)),
            (b"\xc3\xa9\xe2\x98\x95 caf\"", Some(9)),
            (b"\x7f\x80\xff\x1f", Some(3)),
            (b"!#!#!#!#!#!#!#!#!\"", Some(17)),
        ] {
            let got = special(text);
            let slow = text
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            assert_eq!(got, want, "{text:?}");
            assert_eq!(got, slow, "{text:?}");
        }
    }

    #[test]
    fn reads_every_field_like_serde() {
        let bodies = [
            r#"{"event_type":"generation_completed","timestamp":"2026-11-01T12:00:09.388162Z","device_id":"d","org_id":"o",
               "model":"m","engine":"e","request_id":"r","stream":false,"trace_id":"1818e811892f902bd23f0824128b2f33",
               "span_id":"9531985d5d9dc9f8","error":"oom","metrics":{"ttfc_ms":65.282,"n":-3,"big":1e300,"z":-0.0},
               "attributes":{"a":[1,2.5,"x",null,true,{"k":[]}],"u":18446744073709551615,"i":-9223372036854775808},
               "unknown":{"deep":[[[{}]]]}}"#,
            "[]",
            " [ {\"event_type\":\"a\"} , {\"event_type\":\"b\",\"model\":null,\"stream\":null,\"timestamp\":null} ] ",
            "{\"event_type\":\"a\"}{\"event_type\":\"b\"}\n\n{\"event_type\":\"c\"}\r\n",
            r#"{"event_type":"\u00e9\ud83d\ude00\n\t\"\\\/","model":"caf\u00e9 ☕","attributes":{"k\u0041":"v"}}"#,
        ];
        for body in bodies {
            assert!(agrees(body).expect("agrees"), "both read {body}");
        }
    }

    #[test]
    fn declines_what_serde_rejects() {
        let bodies = [
            "{\"event_type\":\"a\",}",
            "[{\"event_type\":\"a\"},]",
            "{\"event_type\":\"\"}",
            "{\"event_type\":\"a\",\"model\":\"x\",\"model\":\"y\"}",
            "{\"event_type\":\"a\",\"metrics\":{\"x\":01}}",
            "{\"event_type\":\"a\",\"metrics\":{\"x\":1e400}}",
            "{\"event_type\":\"a\",\"metrics\":{\"x\":\"1\"}}",
            "{\"event_type\":\"a\",\"metrics\":null}",
            "{\"event_type\":\"a\\x\"}",
            "{\"event_type\":\"\\ud800\"}",
            "{\"event_type\":\"tab\there\"}",
            "{\"event_type\":\"a\",\"stream\":tru}",
            "{\"event_type\":\"a\",\"trace_id\":\"00000000000000000000000000000000\"}",
            "{\"event_type\":\"a\",\"timestamp\":\"2026-13-01T00:00:00Z\"}",
            "{\"event_type\":\"a\"} 42",
            "{\"event_type\":\"a\",\"attributes\":{\"x\":.5}}",
            "{\"event_type\":\"a\",\"attributes\":{\"x\":-}}",
        ];
        for body in bodies {
            assert!(with_serde(body).is_err(), "serde_json rejects {body}");
            assert!(events(body).is_none(), "the scanner declines {body}");
        }
    }

    /// A JSON string literal for `s`, escaping characters in randomly chosen ways.
    fn encode(s: &str, style: &[u8]) -> String {
        let mut out = String::from("\"");
        for (i, c) in s.chars().enumerate() {
            let pick = style.get(i % style.len().max(1)).copied().unwrap_or(0) % 3;
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || pick == 1 => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                '/' if pick == 2 => out.push_str("\\/"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<u64>().prop_map(|u| u.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
            (any::<i32>(), -320i32..320).prop_map(|(m, e)| format!("{m}e{e}")),
            (0u32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b:03}E+2")),
        ]
    }

    fn value(depth: u32) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            number(),
            (".{0,12}", proptest::collection::vec(any::<u8>(), 1..4))
                .prop_map(|(s, st)| encode(&s, &st)),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        prop_oneof![
            3 => leaf,
            1 => proptest::collection::vec(value(depth - 1), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            1 => proptest::collection::vec(("[a-z]{1,3}", value(depth - 1)), 0..4)
                .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","))),
        ]
        .boxed()
    }

    fn member() -> impl Strategy<Value = String> {
        let text = (".{0,10}", proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(s, st)| encode(&s, &st));
        let key = prop_oneof![
            Just("device_id"),
            Just("org_id"),
            Just("model"),
            Just("engine"),
            Just("request_id"),
            Just("error"),
        ];
        prop_oneof![
            (key, prop_oneof![text.clone(), Just("null".to_owned())])
                .prop_map(|(k, v)| format!("\"{k}\":{v}")),
            prop_oneof![Just("true"), Just("false"), Just("null")]
                .prop_map(|v| format!("\"stream\":{v}")),
            (0u128..u128::MAX).prop_map(|t| format!("\"trace_id\":\"{t:032x}\"")),
            (0u64..u64::MAX).prop_map(|t| format!("\"span_id\":\"{t:016X}\"")),
            (0i64..4_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| {
                let t = time::OffsetDateTime::from_unix_timestamp(s).expect("in range")
                    + time::Duration::nanoseconds(i64::from(n));
                format!(
                    "\"timestamp\":\"{}\"",
                    t.format(&time::format_description::well_known::Rfc3339)
                        .expect("formats")
                )
            }),
            proptest::collection::vec((".{0,6}", number()), 0..5).prop_map(|kv| format!(
                "\"metrics\":{{{}}}",
                kv.iter()
                    .map(|(k, v)| format!("{}:{v}", encode(k, &[0])))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            proptest::collection::vec(("[a-z.]{1,6}", value(3)), 0..4).prop_map(|kv| format!(
                "\"attributes\":{{{}}}",
                kv.iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            ("[a-z]{1,8}", value(3)).prop_map(|(k, v)| format!("\"x_{k}\":{v}")),
        ]
    }

    fn event() -> impl Strategy<Value = String> {
        (
            (".{1,10}", proptest::collection::vec(any::<u8>(), 1..4))
                .prop_map(|(s, st)| encode(&s, &st)),
            proptest::collection::vec(member(), 0..8),
            0usize..8,
            prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")],
        )
            .prop_map(|(event_type, mut members, at, ws)| {
                members.insert(
                    at.min(members.len()),
                    format!("\"event_type\":{event_type}"),
                );
                format!("{{{ws}{}{ws}}}", members.join(&format!(",{ws}")))
            })
    }

    fn body() -> impl Strategy<Value = String> {
        (proptest::collection::vec(event(), 1..4), any::<bool>()).prop_map(|(events, array)| {
            if array {
                format!("[{}]", events.join(","))
            } else {
                events.join("\n") + "\n"
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_serde_on_generated_bodies(body in body()) {
            // Depth stays far below the scanner's limit, so whatever serde_json reads, the scanner reads too.
            let both = agrees(&body)?;
            prop_assert!(both || with_serde(&body).is_err(), "the scanner declined a valid body: {:?}", body);
        }

        #[test]
        fn never_accepts_a_mutated_body_that_serde_rejects(
            body in body(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                vec!['{', '}', '[', ']', '"', ':', ',', '\\', '0', '1', 'e', '.', '-', '+', 'u', 't', 'n', ' ', '\u{1}', 'é']
            )), 1..4),
        ) {
            let mut chars: Vec<char> = body.chars().collect();
            for (at, op, c) in edits {
                let i = at.index(chars.len().max(1)).min(chars.len());
                match op {
                    0 if i < chars.len() => { chars.remove(i); }
                    1 => chars.insert(i, c),
                    _ if i < chars.len() => chars[i] = c,
                    _ => {}
                }
            }
            let mutated: String = chars.into_iter().collect();
            agrees(&mutated)?;
        }
    }
}
