//! Redaction transform: drops, renames or hashes attributes of log records and metric points
//! (every attribute set of a batch: points, records, scopes and the resource).
//!
//! Configuration (comma-separated key lists):
//! - `drop`: keys removed, e.g. `gen_ai.prompt,user.id`;
//! - `hash`: keys whose values are replaced by the hex SHA-256 of `salt` + value;
//! - `salt`: the salt for `hash` (default empty);
//! - `rename.<key>`: the new name of `<key>`.
//!
//! Hashing happens before renaming, and a dropped key is neither hashed nor renamed.

use sha2::{Digest, Sha256};
use wasmtel_guest::{Attributes, Config, Edits, LogBatch, MetricBatch, Transform, Value};

/// The redaction rules.
#[derive(Debug)]
pub struct Redact {
    drop: Vec<String>,
    hash: Vec<String>,
    salt: String,
    rename: Vec<(String, String)>,
}

fn keys(config: &Config, name: &str) -> Vec<String> {
    config
        .get_or(name, "")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Redact {
    /// The edits that redact one attribute set.
    pub fn apply(&self, set: Attributes<'_>, edits: &mut Edits) {
        for (key, value) in set.iter() {
            if self.drop.iter().any(|k| k == key) {
                edits.remove_attribute(&set, key);
                continue;
            }
            let hashed = self.hash.iter().any(|k| k == key).then(|| {
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
            drop: keys(&config, "drop"),
            hash: keys(&config, "hash"),
            salt: config.get_or("salt", "").to_owned(),
            rename,
        })
    }

    fn transform_logs(&mut self, batch: &LogBatch, edits: &mut Edits) -> Result<(), String> {
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
    use wasmtel_guest::BatchBuilder;
    use wasmtel_guest::transform_types::{Edit, RemoveAttribute, SetAttribute};

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
}
