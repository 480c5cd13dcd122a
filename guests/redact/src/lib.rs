//! Redaction transform: drops, renames or hashes attributes of log records and metric points.
//!
//! Configuration (comma-separated key lists):
//! - `drop`: keys removed, e.g. `gen_ai.prompt,user.id`;
//! - `hash`: keys whose values are replaced by the hex SHA-256 of `salt` + value;
//! - `salt`: the salt for `hash` (default empty);
//! - `rename.<key>`: the new name of `<key>`.
//!
//! Hashing happens before renaming, and a dropped key is neither hashed nor renamed.

use sha2::{Digest, Sha256};
use wasmtel_guest::{Config, KeyValue, LogBatch, MetricBatch, MetricData, Transform, Value};

/// The redaction rules.
pub struct Redact {
    drop: Vec<String>,
    hash: Vec<String>,
    salt: String,
    rename: Vec<(String, String)>,
}

fn keys(config: &Config, name: &str) -> Vec<String> {
    config.get_or(name, "").split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect()
}

impl Redact {
    /// Applies the rules to one attribute list.
    pub fn apply(&self, attributes: &mut Vec<KeyValue>) {
        attributes.retain(|kv| !self.drop.contains(&kv.key));
        for kv in attributes.iter_mut() {
            if self.hash.contains(&kv.key) {
                let digest = Sha256::new().chain_update(self.salt.as_bytes()).chain_update(kv.value.to_string().as_bytes()).finalize();
                kv.value = Value::String(digest.iter().map(|b| format!("{b:02x}")).collect());
            }
            if let Some((_, to)) = self.rename.iter().find(|(from, _)| *from == kv.key) {
                kv.key = to.clone();
            }
        }
    }
}

impl Transform for Redact {
    fn init(config: Config) -> Result<Self, String> {
        let rename = config
            .pairs()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("rename.")?.to_owned(), v.clone())))
            .collect();
        Ok(Redact { drop: keys(&config, "drop"), hash: keys(&config, "hash"), salt: config.get_or("salt", "").to_owned(), rename })
    }

    fn transform_logs(&mut self, mut batch: LogBatch) -> Result<LogBatch, String> {
        for scope in &mut batch.scopes {
            for record in &mut scope.records {
                self.apply(&mut record.attributes);
            }
        }
        Ok(batch)
    }

    fn transform_metrics(&mut self, mut batch: MetricBatch) -> Result<MetricBatch, String> {
        for metric in batch.scopes.iter_mut().flat_map(|s| s.metrics.iter_mut()) {
            match &mut metric.data {
                MetricData::Gauge(points) => points.iter_mut().for_each(|p| self.apply(&mut p.attributes)),
                MetricData::Sum(s) => s.points.iter_mut().for_each(|p| self.apply(&mut p.attributes)),
                MetricData::Histogram(h) => h.points.iter_mut().for_each(|p| self.apply(&mut p.attributes)),
                MetricData::ExponentialHistogram(h) => h.points.iter_mut().for_each(|p| self.apply(&mut p.attributes)),
            }
        }
        Ok(batch)
    }
}

wasmtel_guest::export_transform!(Redact);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_hashes_and_renames() {
        let config = Config::new([("drop", "gen_ai.prompt, user.id"), ("hash", "request"), ("salt", "s"), ("rename.request", "request.hash")]);
        let redact = Redact::init(config).expect("valid");
        let mut attrs = vec![
            KeyValue::string("gen_ai.prompt", "secret prompt"),
            KeyValue::string("user.id", "u1"),
            KeyValue::string("request", "r1"),
            KeyValue::string("model", "m"),
        ];
        redact.apply(&mut attrs);
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["request.hash", "model"]);
        // sha256("sr1")
        assert_eq!(attrs[0].value.to_string(), "0b2a3687b87612dee34475b4d3c857b9b409e0fd31863d55a81d6724b6d410d5");
        assert_eq!(attrs[1].value.to_string(), "m");
    }
}
