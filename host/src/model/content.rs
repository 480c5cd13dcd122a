//! GenAI prompt and completion content: the attribute keys and event names that carry it (the
//! GenAI semantic conventions' message attributes and events, and the indexed attributes of
//! older instrumentations), matched on a record's bytes.

/// The attribute keys of prompt and completion content, by default (`*` ends a prefix).
pub const KEYS: &[&str] = &[
    "gen_ai.prompt*",
    "gen_ai.completion*",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
];

/// The event names whose log body is a message, by default (conventions before the message
/// attributes).
pub const EVENTS: &[&str] = &[
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
];

/// Name patterns (a name, or a prefix ending in `*`), matched on bytes: their common prefix
/// first, so that a name of another kind costs one comparison, then the byte after it, so that
/// a name of the same kind is compared in full only with the patterns it could be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    patterns: Vec<(Box<[u8]>, bool)>,
    common: Box<[u8]>,
}

impl Patterns {
    /// The patterns of `list`.
    pub fn new<S: AsRef<str>>(list: &[S]) -> Self {
        let patterns: Vec<(Box<[u8]>, bool)> = list
            .iter()
            .map(|p| {
                let p = p.as_ref();
                match p.strip_suffix('*') {
                    Some(prefix) => (prefix.as_bytes().into(), true),
                    None => (p.as_bytes().into(), false),
                }
            })
            .collect();
        let common = patterns.iter().map(|(p, _)| &p[..]).reduce(|a, b| {
            let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            &a[..n]
        });
        Self {
            common: common.unwrap_or_default().into(),
            patterns,
        }
    }

    /// Whether some pattern matches `name`.
    pub fn matches(&self, name: &[u8]) -> bool {
        let at = self.common.len();
        let next = name.get(at);
        !self.patterns.is_empty()
            && name.starts_with(&self.common)
            && self.patterns.iter().any(|(p, prefix)| {
                p.get(at).is_none_or(|b| next == Some(b))
                    && match prefix {
                        true => name.starts_with(p),
                        false => name == &p[..],
                    }
            })
    }

    /// Whether there are none (nothing matches).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as a comma-separated list, as plugins take them.
    pub fn joined(&self) -> String {
        self.shown().collect::<Vec<_>>().join(",")
    }

    /// The patterns of all of `sets`: a name matches it when it matches one of them.
    pub fn union<'a>(sets: impl IntoIterator<Item = &'a Patterns>) -> Self {
        let all: Vec<String> = sets.into_iter().flat_map(Patterns::shown).collect();
        Self::new(&all)
    }

    /// Each pattern as written.
    fn shown(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|(p, prefix)| {
            let p = String::from_utf8_lossy(p);
            if *prefix {
                format!("{p}*")
            } else {
                p.into_owned()
            }
        })
    }
}

/// What marks a record as carrying content: an attribute key (of a record, a span or a span
/// event) and, for a log record with a body, its event name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Attribute keys.
    pub keys: Patterns,
    /// Event names whose body is content.
    pub events: Patterns,
}

impl Content {
    /// The content `keys` and `events` name.
    pub fn new<S: AsRef<str>>(keys: &[S], events: &[S]) -> Self {
        Self {
            keys: Patterns::new(keys),
            events: Patterns::new(events),
        }
    }

    /// The default: [`KEYS`] and [`EVENTS`].
    pub fn genai() -> Self {
        Self::new(KEYS, EVENTS)
    }

    /// Marks nothing: content is kept.
    pub fn none() -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_prefixes_past_their_common_prefix() {
        let p = Patterns::new(KEYS);
        for key in [
            "gen_ai.prompt",
            "gen_ai.prompt.0.content",
            "gen_ai.completion.1.role",
            "gen_ai.input.messages",
        ] {
            assert!(p.matches(key.as_bytes()), "{key}");
        }
        for key in [
            "gen_ai.request.model",
            "gen_ai.input.messages.ref",
            "user.id",
            "",
        ] {
            assert!(!p.matches(key.as_bytes()), "{key}");
        }
        assert_eq!(Patterns::new(&["a.b*", "a.c"]).joined(), "a.b*,a.c");
        let union = Patterns::union([&Patterns::new(&["a.b*"]), &Patterns::new(&["x"])]);
        assert_eq!(union.joined(), "a.b*,x");
        assert!(union.matches(b"a.bc") && union.matches(b"x") && !union.matches(b"a.c"));
        assert!(!Patterns::new::<&str>(&[]).matches(b"anything"));
        assert!(Patterns::new(&["*"]).matches(b"anything"));
        // A pattern that is the common prefix itself, as a prefix or as a whole name.
        let p = Patterns::new(&["gen_ai.*", "gen_ai.prompt"]);
        assert!(p.matches(b"gen_ai.") && p.matches(b"gen_ai.x") && p.matches(b"gen_ai.prompt"));
        assert!(!p.matches(b"gen_ai") && !p.matches(b"user.id"));
        let p = Patterns::new(&["gen_ai.", "gen_ai.prompt*"]);
        assert!(p.matches(b"gen_ai.") && p.matches(b"gen_ai.prompt.0"));
        assert!(!p.matches(b"gen_ai.x") && !p.matches(b"gen_ai.pr"));
    }
}
