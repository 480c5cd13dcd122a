//! Redaction transform: removes prompt and completion content, and drops, renames or hashes
//! attributes, in metric points, log records and spans (every attribute set of a batch: points,
//! records, spans, span events and links, scopes and the resource).
//!
//! Configuration (comma-separated key patterns; a pattern ending in `*` matches by prefix):
//! - `content`: the keys of prompt and completion content, removed; a span event carrying one
//!   is dropped whole, and a log record whose event name is in `content_events` loses its body.
//!   Default: [`CONTENT`]; `content = ""` keeps content;
//! - `content_events`: event names whose log body is content. Default: [`CONTENT_EVENTS`];
//! - `drop`: keys removed, e.g. `user.id`;
//! - `hash`: keys whose values are replaced by the hex SHA-256 of `salt` + value;
//! - `salt`: the salt for `hash` (default empty);
//! - `rename.<key>`: the new name of `<key>`.
//!
//! Hashing happens before renaming, and a removed key is neither hashed nor renamed.

use sha2::{Digest, Sha256};
use wasmtel_guest::{
    AttributeEdits, Attributes, Config, Edits, LogBatch, MetricBatch, Parts, Patterns, Reads,
    SpanBatch, SpanEdits, Transform, Value,
};

/// The GenAI semantic conventions' prompt and completion content: the attributes of older
/// instrumentations (`gen_ai.prompt.0.content`), the current message attributes, and the
/// system instructions and tool call payloads.
pub const CONTENT: &str = "gen_ai.prompt*,gen_ai.completion*,gen_ai.input.messages,\
gen_ai.output.messages,gen_ai.system_instructions,gen_ai.tool.call.arguments,gen_ai.tool.call.result";

/// The GenAI events whose log body is a message (semantic conventions before the message
/// attributes).
pub const CONTENT_EVENTS: &str = "gen_ai.system.message,gen_ai.user.message,\
gen_ai.assistant.message,gen_ai.tool.message,gen_ai.choice";

/// The redaction rules.
#[derive(Debug)]
pub struct Redact {
    content: Patterns,
    content_events: Patterns,
    drop: Patterns,
    hash: Patterns,
    salt: String,
    rename: Vec<(String, String)>,
}

impl Redact {
    /// Whether a set carries prompt or completion content.
    fn carries_content(&self, set: Attributes<'_>) -> bool {
        set.iter().any(|(key, _)| self.content.matches(key))
    }

    /// The edits that redact one attribute set.
    fn apply(&self, set: Attributes<'_>, edits: &mut impl AttributeEdits) {
        for (key, value) in set.iter() {
            if self.content.matches(key) || self.drop.matches(key) {
                edits.remove_attribute(&set, key);
                continue;
            }
            let hashed = self.hash.matches(key).then(|| {
                let digest = Sha256::new()
                    .chain_update(self.salt.as_bytes())
                    .chain_update(value.to_string().as_bytes())
                    .finalize();
                Value::String(digest.iter().map(|b| format!("{b:02x}")).collect())
            });
            match (self.rename.iter().find(|(from, _)| from == key), hashed) {
                (Some((_, to)), hashed) => {
                    edits.remove_attribute(&set, key);
                    edits.set_attribute(&set, to, hashed.unwrap_or_else(|| value.clone()));
                }
                (None, Some(hashed)) => edits.set_attribute(&set, key, hashed),
                (None, None) => {}
            }
        }
    }
}

#[wasmtel_guest::transform]
impl Transform for Redact {
    fn init(config: Config) -> Result<Self, String> {
        let rename = config
            .pairs()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("rename.")?.to_owned(), v.clone())))
            .collect();
        Ok(Redact {
            content: config.patterns("content", CONTENT),
            content_events: config.patterns("content_events", CONTENT_EVENTS),
            drop: config.patterns("drop", ""),
            hash: config.patterns("hash", ""),
            salt: config.get_or("salt", "").to_owned(),
            rename,
        })
    }

    /// The attribute table of every batch; log bodies and span events only to redact content.
    fn reads(&self) -> Reads {
        let keys = !(self.content.is_empty()
            && self.drop.is_empty()
            && self.hash.is_empty()
            && self.rename.is_empty());
        let attributes = if keys {
            Parts::ATTRIBUTES
        } else {
            Parts::empty()
        };
        let (bodies, events) = if self.content.is_empty() {
            (Parts::empty(), Parts::empty())
        } else {
            (Parts::PAYLOAD, Parts::ENTRIES)
        };
        Reads {
            metrics: attributes,
            logs: attributes | bodies,
            spans: attributes | events,
        }
    }

    /// Only the keys it removes, hashes or renames (content among them).
    fn attribute_keys(&self) -> Option<Vec<String>> {
        let patterns = [&self.content, &self.drop, &self.hash];
        let keys = patterns.into_iter().flat_map(|p| p.list().iter().cloned());
        Some(
            keys.chain(self.rename.iter().map(|(from, _)| from.clone()))
                .collect(),
        )
    }

    fn transform_logs(&mut self, batch: &LogBatch, edits: &mut Edits) -> Result<(), String> {
        if !self.content.is_empty() {
            batch
                .records()
                .filter(|r| r.body.is_some() && self.content_events.matches(r.event_name()))
                .for_each(|r| edits.set_body(&r, None));
        }
        batch
            .attribute_sets()
            .for_each(|set| self.apply(set, edits));
        Ok(())
    }

    fn transform_spans(&mut self, batch: &SpanBatch, edits: &mut SpanEdits) -> Result<(), String> {
        for span in batch.spans() {
            span.events()
                .filter(|e| self.carries_content(e.attributes()))
                .for_each(|e| edits.drop_event(&e));
        }
        batch
            .attribute_sets()
            .for_each(|set| self.apply(set, edits));
        Ok(())
    }

    fn transform_metrics(&mut self, batch: &MetricBatch, edits: &mut Edits) -> Result<(), String> {
        batch
            .attribute_sets()
            .for_each(|set| self.apply(set, edits));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtel_guest::transform_types::{Edit, RemoveAttribute, SetAttribute};
    use wasmtel_guest::{BatchBuilder, SpanEdit, TraceContext};

    #[test]
    fn drops_hashes_and_renames() {
        let config = Config::new([
            ("drop", "gen_ai.prompt, user.id"),
            ("hash", "request"),
            ("salt", "s"),
            ("rename.request", "request.hash"),
        ]);
        let mut redact = Redact::init(config).expect("valid");
        let pairs: &[(&str, Value)] = &[
            ("gen_ai.prompt", "secret prompt".into()),
            ("user.id", "u1".into()),
            ("request", "r1".into()),
            ("model", "m".into()),
        ];
        let batch = BatchBuilder::new()
            .record("hello", pairs)
            .record("again", pairs)
            .logs();
        let mut edits = Edits::new();
        redact.transform_logs(&batch, &mut edits).expect("redacts");
        let remove = |key: &str| {
            Edit::RemoveAttribute(RemoveAttribute {
                set: 1,
                key: key.into(),
            })
        };
        // sha256("sr1")
        let hashed = "0b2a3687b87612dee34475b4d3c857b9b409e0fd31863d55a81d6724b6d410d5";
        assert_eq!(
            edits.as_slice(),
            [
                remove("gen_ai.prompt"),
                remove("user.id"),
                remove("request"),
                Edit::SetAttribute(SetAttribute {
                    set: 1,
                    key: "request.hash".into(),
                    value: Value::String(hashed.into())
                }),
            ],
            "both records share set 1, edited once; the empty set 0 needs nothing"
        );
    }

    #[test]
    fn removes_genai_content_from_spans_and_drops_events_carrying_it() {
        let mut redact = Redact::init(Config::new([("drop", "user.id")])).expect("valid");
        let trace = TraceContext {
            trace_id_high: 1,
            trace_id_low: 2,
            span_id: 3,
        };
        let batch = BatchBuilder::new()
            .span(
                "chat m",
                trace,
                &[
                    ("gen_ai.request.model", "m".into()),
                    ("gen_ai.input.messages", "[{\"content\":\"secret\"}]".into()),
                    ("gen_ai.prompt.0.content", "secret".into()),
                    ("user.id", "u1".into()),
                ],
            )
            .event(
                "gen_ai.content.prompt",
                &[("gen_ai.prompt", "secret".into())],
            )
            .event("first_token", &[])
            .spans();
        let mut edits = SpanEdits::new();
        redact.transform_spans(&batch, &mut edits).expect("redacts");
        let remove = |key: &str| {
            SpanEdit::RemoveAttribute(RemoveAttribute {
                set: 1,
                key: key.into(),
            })
        };
        assert_eq!(
            edits.as_slice(),
            [
                SpanEdit::DropEvent(0),
                remove("gen_ai.input.messages"),
                remove("gen_ai.prompt.0.content"),
                remove("user.id"),
                SpanEdit::RemoveAttribute(RemoveAttribute {
                    set: 2,
                    key: "gen_ai.prompt".into(),
                }),
            ],
            "the event carrying a prompt goes; the other stays"
        );
        assert_eq!(
            redact.attribute_keys().map(|k| k.len()),
            Some(8),
            "of spans, the seven content patterns and the key it drops"
        );
        assert!(
            redact
                .attribute_keys()
                .is_some_and(|k| k.contains(&"user.id".to_owned()))
        );
        let mut keep = Redact::init(Config::new([("content", "")])).expect("valid");
        let mut none = SpanEdits::new();
        keep.transform_spans(&batch, &mut none).expect("keeps");
        assert!(none.is_empty(), "`content = \"\"` keeps content");
    }

    #[test]
    fn removes_message_bodies_of_genai_content_events() {
        let mut redact = Redact::init(Config::default()).expect("valid");
        let batch = BatchBuilder::new().record("hello", &[]).logs();
        let mut edits = Edits::new();
        redact.transform_logs(&batch, &mut edits).expect("redacts");
        assert!(
            edits.is_empty(),
            "a record of no GenAI event keeps its body"
        );
        let mut named = batch.clone();
        named.table.strings.push("gen_ai.user.message".into());
        named.records[0].event_name = named.table.strings.len() as u32 - 1;
        redact.transform_logs(&named, &mut edits).expect("redacts");
        assert_eq!(
            edits.as_slice(),
            [Edit::SetBody(wasmtel_guest::transform_types::SetBody {
                record: 0,
                body: None
            })]
        );
    }
}
