//! The integrations store: one SQLite file in the data directory; each integration's config
//! entry — exactly what a config file would hold for it — sealed, credentials and all.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::secrets::{Sealer, SecretError};
use crate::config::{DeliveryConfig, ExporterConfig, OtlpConfig};
use crate::model::Signal;

/// The database file's name in the data directory.
pub const DB_FILE: &str = "wasmtel.db";

/// The native push integration type.
pub const OTLP: &str = "otlp";

/// The pull integration type: a scrape path `/metrics/<id>` with prefixed metric names.
pub const PROMETHEUS: &str = "prometheus";

/// What a stored integration is: the entry a config file would have for it.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// An `[otlp]` section.
    Otlp(OtlpConfig),
    /// An `[[exporters]]` entry (its `name` is the integration's).
    Exporter(ExporterConfig),
    /// A Prometheus scrape path `/metrics/<id>`, every metric name prefixed.
    Prometheus {
        /// The metric name prefix.
        prefix: String,
    },
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Its headers and API key are credentials: only what names it is shown.
        f.debug_struct("Entry")
            .field("type", &self.kind_type())
            .field("preset", &self.preset())
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// `otlp`, `prometheus`, or the exporter plugin's name.
    pub fn kind_type(&self) -> &str {
        match self {
            Entry::Otlp(_) => OTLP,
            Entry::Exporter(e) => &e.plugin,
            Entry::Prometheus { .. } => PROMETHEUS,
        }
    }

    /// What it selects, for a pushing integration.
    pub fn select(&self) -> Option<&crate::model::select::Select> {
        match self {
            Entry::Otlp(c) => Some(&c.select),
            Entry::Exporter(e) => Some(&e.select),
            Entry::Prometheus { .. } => None,
        }
    }

    /// What it selects, to change, for a pushing integration.
    pub fn select_mut(&mut self) -> Option<&mut crate::model::select::Select> {
        match self {
            Entry::Otlp(c) => Some(&mut c.select),
            Entry::Exporter(e) => Some(&mut e.select),
            Entry::Prometheus { .. } => None,
        }
    }

    /// The preset it names, if any.
    pub fn preset(&self) -> Option<&str> {
        match self {
            Entry::Otlp(c) => c.preset.as_deref(),
            Entry::Exporter(e) => e.preset.as_deref(),
            Entry::Prometheus { .. } => None,
        }
    }
}

/// A stored integration; its entry is in the clear only in memory.
#[derive(Clone, PartialEq)]
pub struct Stored {
    /// Its id.
    pub id: String,
    /// A name people recognise it by.
    pub name: String,
    /// The signal it carries.
    pub kind: Signal,
    /// Whether it runs.
    pub enabled: bool,
    /// What it is, as a config file would say it.
    pub entry: Entry,
    /// The tenant that owns it; `None` for the operator's.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The entry holds credentials: only what names it is shown.
        f.debug_struct("Stored")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("type", &self.entry.kind_type())
            .field("preset", &self.entry.preset())
            .field("enabled", &self.enabled)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
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

/// The store: a SQLite connection and the sealer for entries.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Connection>,
    sealer: Sealer,
}

/// The table; `entry` holds the sealed entry. The columns from `type` to `delivery` are how
/// stores before entries kept an integration, read when `entry` is empty.
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
    delivery TEXT NOT NULL DEFAULT '{}',
    entry BLOB,
    tenant TEXT
);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    admin_digest BLOB NOT NULL,
    intake_digest BLOB NOT NULL,
    limits TEXT NOT NULL DEFAULT '{}',
    created INTEGER NOT NULL
)";

/// One tenant as the store keeps it: its tokens only as digests.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    /// Its name, the value of the tenant key on its data.
    pub name: String,
    /// The digest of its admin token.
    pub admin: crate::tenancy::Digest,
    /// The digest of its intake token.
    pub intake: crate::tenancy::Digest,
    /// Its limits over `[tenancy.limits]`, as JSON.
    pub limits: String,
}

/// One row as stores before entries wrote it.
struct Legacy {
    kind_type: String,
    preset: Option<String>,
    endpoint: String,
    headers: Vec<u8>,
    config: String,
    delivery: String,
}

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
        // Stores written before per-integration delivery settings, or before entries, lack
        // their columns.
        for (column, definition) in [
            ("delivery", "delivery TEXT NOT NULL DEFAULT '{}'"),
            ("entry", "entry BLOB"),
            ("tenant", "tenant TEXT"),
        ] {
            let has: bool = db.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('integrations') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !has {
                db.execute_batch(&format!("ALTER TABLE integrations ADD COLUMN {definition}"))?;
            }
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
            "SELECT id, name, kind, enabled, entry, type, preset, endpoint, headers, config, delivery, tenant
             FROM integrations ORDER BY created, id",
        )?;
        let rows = query.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
                Legacy {
                    kind_type: r.get(5)?,
                    preset: r.get(6)?,
                    endpoint: r.get(7)?,
                    headers: r.get(8)?,
                    config: r.get(9)?,
                    delivery: r.get(10)?,
                },
                r.get::<_, Option<String>>(11)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, kind, enabled, sealed, legacy, tenant) = row?;
            let damaged = |why: &str| StoreError::Damaged(id.clone(), why.to_owned());
            let kind = Signal::parse(&kind).ok_or_else(|| damaged("unknown kind"))?;
            let entry = match sealed {
                Some(sealed) => serde_json::from_slice(&self.sealer.open(&sealed)?)
                    .map_err(|e| damaged(&format!("its entry cannot be read: {e}")))?,
                None => self.legacy(legacy).map_err(|e| match e {
                    Ok(why) => damaged(why),
                    Err(secret) => StoreError::Secret(secret),
                })?,
            };
            out.push(Stored {
                id,
                name,
                kind,
                enabled,
                entry,
                tenant,
            });
        }
        Ok(out)
    }

    /// The entry of a row written before entries: its type, preset, endpoint, sealed headers,
    /// plugin settings (with a Datadog `site`) and delivery, as the config entry they make.
    fn legacy(&self, row: Legacy) -> Result<Entry, Result<&'static str, SecretError>> {
        let headers = serde_json::from_slice(&self.sealer.open(&row.headers).map_err(Err)?)
            .map_err(|_| Ok("headers are not a JSON object"))?;
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.config).map_err(|_| Ok("config is not a JSON object"))?;
        let delivery: DeliveryConfig = serde_json::from_str(&row.delivery)
            .map_err(|_| Ok("delivery is not a delivery settings object"))?;
        let endpoint = Some(row.endpoint).filter(|e| !e.is_empty());
        Ok(match row.kind_type.as_str() {
            OTLP => Entry::Otlp(OtlpConfig {
                endpoint,
                headers,
                preset: row.preset,
                delivery,
                ..OtlpConfig::default()
            }),
            PROMETHEUS => Entry::Prometheus {
                prefix: config
                    .get("prefix")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            },
            plugin => {
                let site = config
                    .remove("site")
                    .and_then(|s| s.as_str().map(str::to_owned));
                config.retain(|_, v| !v.is_null());
                Entry::Exporter(ExporterConfig {
                    name: None,
                    plugin: plugin.to_owned(),
                    endpoint,
                    metrics_endpoint: None,
                    logs_endpoint: None,
                    traces_endpoint: None,
                    preset: row.preset,
                    site,
                    api_key: None,
                    headers,
                    delivery,
                    config: serde_json::from_value(serde_json::Value::Object(config))
                        .map_err(|_| Ok("config holds a value plugin settings cannot"))?,
                    select: Default::default(),
                    transforms: Vec::new(),
                })
            }
        })
    }

    /// Inserts or replaces `s`, sealing its entry.
    pub fn put(&self, s: &Stored) -> Result<(), StoreError> {
        let entry = serde_json::to_vec(&s.entry).unwrap_or_default();
        let sealed = self.sealer.seal(&entry);
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
            "INSERT OR REPLACE INTO integrations (id, name, kind, type, preset, endpoint, headers, config, enabled, created, delivery, entry, tenant)
             VALUES (?1, ?2, ?3, ?4, ?5, '', x'', '{}', ?6, ?7, '{}', ?8, ?9)",
            params![
                s.id,
                s.name,
                s.kind.as_str(),
                s.entry.kind_type(),
                s.entry.preset(),
                s.enabled,
                created,
                sealed,
                s.tenant,
            ],
        )?;
        Ok(())
    }

    /// Every tenant, oldest first.
    pub fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        let db = self.db();
        let mut query = db.prepare(
            "SELECT name, admin_digest, intake_digest, limits FROM tenants ORDER BY created, name",
        )?;
        let digest = |bytes: Vec<u8>, name: &str| {
            <[u8; 32]>::try_from(bytes).map_err(|_| {
                StoreError::Damaged(name.to_owned(), "a token digest is not 32 bytes".into())
            })
        };
        let rows = query.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, admin, intake, limits) = row?;
            out.push(TenantRow {
                admin: digest(admin, &name)?,
                intake: digest(intake, &name)?,
                name,
                limits,
            });
        }
        Ok(out)
    }

    /// Adds `tenant`; `false` when one of that name exists.
    pub fn add_tenant(&self, tenant: &TenantRow) -> Result<bool, StoreError> {
        let created = i64::try_from(crate::clock::unix_nanos()).unwrap_or(i64::MAX);
        Ok(self.db().execute(
            "INSERT OR IGNORE INTO tenants (name, admin_digest, intake_digest, limits, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                tenant.name,
                tenant.admin,
                tenant.intake,
                tenant.limits,
                created
            ],
        )? > 0)
    }

    /// Replaces the limits of tenant `name`; whether it exists.
    pub fn set_tenant_limits(&self, name: &str, limits: &str) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "UPDATE tenants SET limits = ?2 WHERE name = ?1",
            params![name, limits],
        )? > 0)
    }

    /// Deletes tenant `name` and every integration it owns, in one transaction; whether it
    /// existed.
    pub fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM integrations WHERE tenant = ?1", [name])?;
        let gone = tx.execute("DELETE FROM tenants WHERE name = ?1", [name])? > 0;
        tx.commit()?;
        Ok(gone)
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
    use std::collections::BTreeMap;

    use super::*;

    fn stored(id: &str) -> Stored {
        Stored {
            id: id.into(),
            name: format!("{id} name"),
            kind: Signal::Logs,
            enabled: true,
            entry: Entry::Otlp(OtlpConfig {
                endpoint: Some("https://api.honeycomb.io".into()),
                headers: BTreeMap::from([("x-honeycomb-team".into(), "canary-key".into())]),
                preset: Some("honeycomb".into()),
                delivery: DeliveryConfig {
                    interval: Some(std::time::Duration::from_secs(10)),
                    ..DeliveryConfig::default()
                },
                ..OtlpConfig::default()
            }),
            tenant: Some("acme".into()),
        }
    }

    #[test]
    fn tenants_keep_digests_and_take_their_integrations_when_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealer = Sealer::load_or_create(None, dir.path()).expect("key");
        let store = Store::open(dir.path(), sealer).expect("store");
        let acme = TenantRow {
            name: "acme".into(),
            admin: [1; 32],
            intake: [2; 32],
            limits: "{}".into(),
        };
        assert!(store.add_tenant(&acme).expect("added"));
        assert!(
            !store.add_tenant(&acme).expect("a second time"),
            "names are unique"
        );
        assert!(
            store
                .set_tenant_limits("acme", r#"{"series":5}"#)
                .expect("set")
        );
        assert!(!store.set_tenant_limits("nobody", "{}").expect("none"));
        assert_eq!(
            store.tenants().expect("listed")[0].limits,
            r#"{"series":5}"#
        );
        let mut theirs = stored("theirs");
        let mut ours = stored("ours");
        ours.tenant = None;
        theirs.tenant = Some("acme".into());
        store.put(&theirs).expect("put");
        store.put(&ours).expect("put");
        assert_eq!(
            store.list().expect("listed")[0].tenant.as_deref(),
            Some("acme")
        );
        assert!(store.delete_tenant("acme").expect("deleted"));
        let left: Vec<String> = store
            .list()
            .expect("listed")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(left, ["ours"], "its integrations went with it");
        assert!(store.tenants().expect("listed").is_empty());
    }

    #[test]
    fn integrations_survive_reopening_with_their_entries_sealed_on_disk() {
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
        assert!(!format!("{:?}", stored("a").entry).contains("canary"));
    }

    #[test]
    fn rows_of_earlier_stores_are_read_as_the_entries_they_make() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Connection::open(dir.path().join(DB_FILE)).expect("db");
        db.execute_batch(
            "CREATE TABLE integrations (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
             type TEXT NOT NULL, preset TEXT, endpoint TEXT NOT NULL, headers BLOB NOT NULL,
             config TEXT NOT NULL, enabled INTEGER NOT NULL, created INTEGER NOT NULL)",
        )
        .expect("the first schema");
        let sealer = Sealer::load_or_create(None, dir.path()).expect("key");
        let headers = sealer.seal(br#"{"DD-API-KEY":"canary-dd"}"#);
        db.execute(
            "INSERT INTO integrations VALUES ('dd', 'dd eu', 'metrics', 'datadog', 'datadog', '', ?1, '{\"site\":\"datadoghq.eu\",\"compress\":true}', 1, 1)",
            [&headers],
        )
        .expect("a datadog row");
        let headers = sealer.seal(br#"{"authorization":"Bearer x"}"#);
        db.execute(
            "INSERT INTO integrations VALUES ('c', 'collector', 'logs', 'otlp', NULL, 'http://c:4318', ?1, '{}', 0, 2)",
            [&headers],
        )
        .expect("an otlp row");
        drop(db);
        let store = Store::open(dir.path(), sealer).expect("migrates");
        let listed = store.list().expect("list");
        let Entry::Exporter(dd) = &listed[0].entry else {
            panic!("an exporter: {:?}", listed[0])
        };
        assert_eq!(
            (dd.plugin.as_str(), dd.site.as_deref(), dd.preset.as_deref()),
            ("datadog", Some("datadoghq.eu"), Some("datadog"))
        );
        assert_eq!(dd.headers["DD-API-KEY"], "canary-dd");
        assert_eq!(dd.config["compress"].as_bool(), Some(true));
        let Entry::Otlp(c) = &listed[1].entry else {
            panic!("otlp: {:?}", listed[1])
        };
        assert_eq!(
            (c.endpoint.as_deref(), c.headers["authorization"].as_str()),
            (Some("http://c:4318"), "Bearer x")
        );
        assert!(!listed[1].enabled);
        // Written again, a row keeps its entry sealed in the new column.
        store.put(&listed[0]).expect("put");
        assert_eq!(store.list().expect("list")[0], listed[0]);
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
