//! Attribute view: removes high-cardinality attribute keys from metric series.
//!
//! Configuration:
//! - `keys`: comma-separated attribute keys to remove, e.g. `user.id,gen_ai.response.id`;
//!   a key ending in `*` removes every key with that prefix;
//! - `instruments` (optional): comma-separated instrument names the view applies to,
//!   each optionally ending in `*`; by default it applies to every instrument.
//!
//! The host calls the view once per distinct attribute set and caches the answer.

use wasmtel_guest::{Config, InstrumentInfo, KeyValue, Patterns, View};

/// The keys to remove and the instruments they are removed from.
#[derive(Debug)]
pub struct DropAttributes {
    keys: Patterns,
    instruments: Option<Patterns>,
}

#[wasmtel_guest::view]
impl View for DropAttributes {
    fn init(config: Config) -> Result<Self, String> {
        let keys = config.patterns("keys", "");
        if keys.is_empty() {
            return Err("`keys` must name at least one attribute key".into());
        }
        let instruments = config
            .get("instruments")
            .map(|_| config.patterns("instruments", ""));
        Ok(DropAttributes { keys, instruments })
    }

    fn map_attributes(
        &self,
        instrument: &InstrumentInfo,
        attributes: &[KeyValue],
    ) -> Option<Vec<KeyValue>> {
        if self
            .instruments
            .as_ref()
            .is_some_and(|i| !i.matches(&instrument.name))
        {
            return None;
        }
        if !attributes.iter().any(|kv| self.keys.matches(&kv.key)) {
            return None;
        }
        Some(
            attributes
                .iter()
                .filter(|kv| !self.keys.matches(&kv.key))
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtel_guest::Value;

    fn info(name: &str) -> InstrumentInfo {
        InstrumentInfo {
            name: name.into(),
            unit: "s".into(),
            kind: wasmtel_guest::InstrumentKind::Histogram,
            scope: "wasmtel.derive".into(),
        }
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Value::String(value.into()),
        }
    }

    fn view(pairs: &[(&str, &str)]) -> Result<DropAttributes, String> {
        DropAttributes::init(Config::new(pairs.iter().copied()))
    }

    #[test]
    fn removes_listed_keys_and_prefixes() {
        let v = view(&[("keys", "user.id, session.*")]).expect("valid");
        let attrs = [kv("model", "m"), kv("session.id", "s"), kv("user.id", "u")];
        assert_eq!(
            v.map_attributes(&info("x"), &attrs),
            Some(vec![kv("model", "m")])
        );
        assert_eq!(v.map_attributes(&info("x"), &[kv("model", "m")]), None);
    }

    #[test]
    fn applies_only_to_the_listed_instruments() {
        let v = view(&[("keys", "user.id"), ("instruments", "gen_ai.*")]).expect("valid");
        let attrs = [kv("user.id", "u")];
        assert_eq!(
            v.map_attributes(&info("gen_ai.client.token.usage"), &attrs),
            Some(vec![])
        );
        assert_eq!(
            v.map_attributes(&info("http.server.duration"), &attrs),
            None
        );
    }

    #[test]
    fn needs_keys() {
        assert_eq!(
            view(&[]).err().as_deref(),
            Some("`keys` must name at least one attribute key")
        );
    }
}
