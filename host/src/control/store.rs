//! The integrations store: one SQLite file in the data directory, header values sealed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::secrets::{Sealer, SecretError};
use crate::config::DeliveryConfig;
use crate::model::Signal;

/// The database file's name in the data directory.
pub const DB_FILE: &str = "wasmtel.db";

/// A stored integration; its header values are in the clear only in memory.
#[derive(Clone, PartialEq)]
pub struct Stored {
    /// Its id.
    pub id: String,
    /// A name people recognise it by.
    pub name: String,
    /// The signal it carries.
    pub kind: Signal,
    /// `otlp`, or an exporter plugin's name (`statsd`, `datadog`, a `.wasm` in the plugin directory).
    pub kind_type: String,
    /// The preset that filled in its endpoint and credential header, if any.
    pub preset: Option<String>,
    /// The base URL.
    pub endpoint: String,
    /// Headers sent with every request (credentials among them).
    pub headers: BTreeMap<String, String>,
    /// Plugin settings (and `site` for the Datadog preset).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Whether it runs.
    pub enabled: bool,
    /// Its delivery settings, over `[delivery]`.
    pub delivery: DeliveryConfig,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: only their names are ever shown.
        f.debug_struct("Stored")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("type", &self.kind_type)
            .field("preset", &self.preset)
            .field("endpoint", &self.endpoint)
            .field("headers_set", &self.headers.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .field("enabled", &self.enabled)
            .field("delivery", &self.delivery)
            .finish()
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("integrations store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Credentials could not be sealed or opened.
    #[error("integrations store: {0}")]
    Secret(#[from] SecretError),
    /// A row is not what the store writes.
    #[error("integrations store: integration `{0}` is damaged: {1}")]
    Damaged(String, String),
}

/// The store: a SQLite connection and the sealer for header values.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Connection>,
    sealer: Sealer,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS integrations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    preset TEXT,
    endpoint TEXT NOT NULL,
    headers BLOB NOT NULL,
    config TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created INTEGER NOT NULL,
    delivery TEXT NOT NULL DEFAULT '{}'
)";

impl Store {
    /// Opens (creating if needed) `<dir>/wasmtel.db`.
    pub fn open(dir: &Path, sealer: Sealer) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Sqlite(rusqlite::Error::InvalidPath(dir.join(e.to_string())))
        })?;
        let db = Connection::open(dir.join(DB_FILE))?;
        // Write-ahead log, synced at every commit: a change the API acknowledged survives a
        // kill or a power loss, and a torn write is rolled back on the next open.
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(SCHEMA)?;
        // Stores written before per-integration delivery settings lack the column.
        let has_delivery: bool = db.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('integrations') WHERE name = 'delivery'",
            [],
            |r| r.get(0),
        )?;
        if !has_delivery {
            db.execute_batch(
                "ALTER TABLE integrations ADD COLUMN delivery TEXT NOT NULL DEFAULT '{}'",
            )?;
        }
        Ok(Self {
            db: Mutex::new(db),
            sealer,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every stored integration, oldest first.
    pub fn list(&self) -> Result<Vec<Stored>, StoreError> {
        let db = self.db();
        let mut query = db.prepare(
            "SELECT id, name, kind, type, preset, endpoint, headers, config, enabled, delivery FROM integrations ORDER BY created, id",
        )?;
        let rows = query.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, String>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, kind, kind_type, preset, endpoint, sealed, config, enabled, delivery) =
                row?;
            let damaged = |why: &str| StoreError::Damaged(id.clone(), why.to_owned());
            let kind = Signal::parse(&kind).ok_or_else(|| damaged("unknown kind"))?;
            let headers = serde_json::from_slice(&self.sealer.open(&sealed)?)
                .map_err(|_| damaged("headers are not a JSON object"))?;
            let config = serde_json::from_str(&config)
                .map_err(|_| damaged("config is not a JSON object"))?;
            let delivery = serde_json::from_str(&delivery)
                .map_err(|_| damaged("delivery is not a delivery settings object"))?;
            out.push(Stored {
                id,
                name,
                kind,
                kind_type,
                preset,
                endpoint,
                headers,
                config,
                enabled,
                delivery,
            });
        }
        Ok(out)
    }

    /// Inserts or replaces `s`, sealing its headers.
    pub fn put(&self, s: &Stored) -> Result<(), StoreError> {
        let headers = serde_json::to_vec(&s.headers).unwrap_or_default();
        let sealed = self.sealer.seal(&headers);
        let db = self.db();
        let created: Option<i64> = db
            .query_row(
                "SELECT created FROM integrations WHERE id = ?1",
                [&s.id],
                |r| r.get(0),
            )
            .optional()?;
        let created = created
            .unwrap_or_else(|| i64::try_from(crate::clock::unix_nanos()).unwrap_or(i64::MAX));
        db.execute(
            "INSERT OR REPLACE INTO integrations (id, name, kind, type, preset, endpoint, headers, config, enabled, created, delivery)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                s.id,
                s.name,
                s.kind.as_str(),
                s.kind_type,
                s.preset,
                s.endpoint,
                sealed,
                serde_json::Value::Object(s.config.clone()).to_string(),
                s.enabled,
                created,
                serde_json::to_string(&s.delivery).unwrap_or_else(|_| "{}".into())
            ],
        )?;
        Ok(())
    }

    /// Deletes integration `id`; returns whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .execute("DELETE FROM integrations WHERE id = ?1", [id])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str) -> Stored {
        Stored {
            id: id.into(),
            name: format!("{id} name"),
            kind: Signal::Logs,
            kind_type: "otlp".into(),
            preset: Some("honeycomb".into()),
            endpoint: "https://api.honeycomb.io".into(),
            headers: BTreeMap::from([("x-honeycomb-team".into(), "canary-key".into())]),
            config: serde_json::Map::new(),
            enabled: true,
            delivery: DeliveryConfig {
                interval: Some(std::time::Duration::from_secs(10)),
                ..DeliveryConfig::default()
            },
        }
    }

    #[test]
    fn integrations_survive_reopening_with_headers_sealed_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || {
            let sealer = Sealer::load_or_create(None, dir.path()).expect("key");
            Store::open(dir.path(), sealer).expect("store")
        };
        let store = open();
        store.put(&stored("a")).expect("put");
        store.put(&stored("b")).expect("put");
        let mut changed = stored("a");
        changed.enabled = false;
        store.put(&changed).expect("replace");
        assert!(store.delete("b").expect("delete"));
        assert!(!store.delete("b").expect("delete again"));
        drop(store);
        let file = std::fs::read(dir.path().join(DB_FILE)).expect("db file");
        assert!(
            !file.windows(6).any(|w| w == b"canary"),
            "no credential in the clear"
        );
        assert_eq!(open().list().expect("list"), [changed]);
        assert!(
            !format!("{:?}", stored("a")).contains("canary"),
            "Debug hides values"
        );
    }

    #[test]
    fn a_store_from_before_delivery_settings_opens_with_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Connection::open(dir.path().join(DB_FILE)).expect("db");
        db.execute_batch(
            "CREATE TABLE integrations (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
             type TEXT NOT NULL, preset TEXT, endpoint TEXT NOT NULL, headers BLOB NOT NULL,
             config TEXT NOT NULL, enabled INTEGER NOT NULL, created INTEGER NOT NULL)",
        )
        .expect("old schema");
        drop(db);
        let sealer = Sealer::load_or_create(None, dir.path()).expect("key");
        let store = Store::open(dir.path(), sealer).expect("migrates");
        let mut old = stored("a");
        old.delivery = DeliveryConfig::default();
        store.put(&old).expect("put");
        assert_eq!(store.list().expect("list"), [old]);
    }

    #[test]
    fn another_key_cannot_read_the_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealer = Sealer::load_or_create(None, dir.path()).expect("key");
        Store::open(dir.path(), sealer)
            .expect("store")
            .put(&stored("a"))
            .expect("put");
        let other = Sealer::load_or_create(Some(&"22".repeat(32)), dir.path()).expect("key");
        let err = Store::open(dir.path(), other)
            .expect("opens")
            .list()
            .expect_err("sealed");
        assert_eq!(
            err.to_string(),
            "integrations store: stored credentials cannot be decrypted: wrong key or damaged data"
        );
    }
}
