//! Tenancy: who sent data and who asks the admin API, told by the bearer token alone, and the
//! resource attribute that carries a tenant's name on its data.
//!
//! Tokens are known only by their SHA-256 digests; a token is 244 random bits, so a digest
//! without salt is as good as the token is unguessable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use sha2::{Digest as _, Sha256};

use crate::config::{TenancyConfig, TenantLimits};
use crate::metrics::{
    Admission, ConflictError, Instrument, Registries, Registry, TooManyResources,
};
use crate::model::attributes::ValueRef;
use crate::model::attributes::{AttributeSet, Value};
use crate::model::metric::InstrumentKind;
use crate::model::resource::Resource;

/// A token's SHA-256 digest, as tokens are stored and compared.
pub type Digest = [u8; 32];

/// The digest of `token`.
pub fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token: two version-4 UUIDs, 244 bits from the operating system's random source.
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Whose data or request it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The operator of the host: every tenant's data and integrations.
    Operator,
    /// One tenant: its own data and integrations only.
    Tenant(Arc<str>),
}

impl Principal {
    /// The tenant's name, `None` for the operator.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::Tenant(name) => Some(name),
        }
    }
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The admin API and `/metrics`.
    Admin,
    /// Intake.
    Intake,
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No token was given where one is required.
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Missing,
    /// The token is no token of this host.
    #[error("the bearer token is not valid here")]
    Unknown,
    /// An intake token on the admin API, or an admin token on intake.
    #[error("this token is a {0} token; it does not work here")]
    WrongRole(&'static str),
}

/// A tenant's log records went over its rate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "tenant `{tenant}` is over its limit of {limit} log records per second; retry in {retry_after_secs} s"
)]
pub struct Throttled {
    /// The tenant.
    pub tenant: Arc<str>,
    /// Its limit.
    pub limit: f64,
    /// When enough budget is back for the refused records (whole seconds, at least 1).
    pub retry_after_secs: u64,
}

/// A token bucket: `tokens` left as of `at`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// The tenancy of a host: off (everything is the operator's), or on with the resource
/// attribute that names a tenant, every token the host knows and each tenant's limits.
#[derive(Debug, Default)]
pub struct Tenancy {
    key: Option<Arc<str>>,
    require_intake_token: bool,
    tokens: RwLock<HashMap<Digest, (Role, Principal)>>,
    defaults: TenantLimits,
    limits: RwLock<HashMap<Arc<str>, TenantLimits>>,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
    refused: std::sync::OnceLock<Arc<Instrument>>,
}

impl Tenancy {
    /// Tenancy off: every sender is the operator and no payload is changed.
    pub fn off() -> Self {
        Self::default()
    }

    /// Tenancy on, tenants named by resource attribute `key`; data without an intake token is
    /// refused when `require_intake_token`.
    pub fn on(key: &str, require_intake_token: bool) -> Self {
        Self {
            key: Some(Arc::from(key)),
            require_intake_token,
            ..Self::default()
        }
    }

    /// The tenancy `config` describes.
    pub fn configured(config: &TenancyConfig) -> Self {
        match &config.key {
            Some(key) => Self {
                defaults: config.limits,
                ..Self::on(key, config.require_intake_token)
            },
            None => Self::off(),
        }
    }

    /// Registers `wasmtel.tenant.refused` in `registry`: what each tenant's limits refused.
    pub fn register(&self, registry: &Registry) -> Result<(), ConflictError> {
        let counter = crate::telemetry::instrument(
            registry,
            InstrumentKind::Counter,
            "wasmtel.tenant.refused",
            "{item}",
            "Data points and log records refused by a tenant's limits, by tenant and limit (resources, log_records_per_second, queue_share).",
        )?;
        let _ = self.refused.set(counter);
        Ok(())
    }

    /// Counts `items` of `tenant` refused by `limit`.
    pub fn count_refused(&self, tenant: &str, limit: &str, items: usize) {
        if let Some(counter) = self.refused.get() {
            let attrs = [
                ("limit", ValueRef::Str(limit)),
                ("tenant", ValueRef::Str(tenant)),
            ];
            counter.record(&attrs, items as f64);
        }
    }

    /// Sets `tenant`'s own limits, over the defaults.
    pub fn set_limits(&self, tenant: &str, limits: TenantLimits) {
        self.limits
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Arc::from(tenant), limits);
    }

    /// The limits of `tenant`: its own over the defaults.
    pub fn limits(&self, tenant: &str) -> TenantLimits {
        let own = self.limits.read().unwrap_or_else(PoisonError::into_inner);
        own.get(tenant)
            .copied()
            .unwrap_or_default()
            .over(&self.defaults)
    }

    /// The registry of received resource `attributes`, created when new under its tenant's
    /// limits (its resources and series); `pinned` keeps it when idle.
    ///
    /// `items` is how many points wait on it, counted as refused when it is refused.
    pub fn admit(
        &self,
        registries: &Registries,
        attributes: &AttributeSet,
        pinned: bool,
        items: usize,
    ) -> Result<Arc<Registry>, TooManyResources> {
        let owner = self.owner(attributes);
        let limits = owner.as_deref().map(|t| self.limits(t)).unwrap_or_default();
        let same = |r: &Resource| self.owner(r.attributes()) == owner;
        let admission = Admission {
            group: limits
                .resources
                .map(|n| (&same as &dyn Fn(&Resource) -> bool, n)),
            cardinality_limit: limits.series,
            pinned,
        };
        let admitted = registries.received(attributes, &admission);
        if let (Err(TooManyResources::Group(_)), Some(tenant)) = (&admitted, &owner) {
            self.count_refused(tenant, "resources", items);
        }
        admitted
    }

    /// Takes `records` log records from `sender`'s rate (the operator has none); `Err` when
    /// its tenant is over its `log_records_per_second`, and nothing is taken.
    pub fn take_records(&self, sender: &Principal, records: usize) -> Result<(), Throttled> {
        let Principal::Tenant(tenant) = sender else {
            return Ok(());
        };
        let Some(rate) = self.limits(tenant).log_records_per_second else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at = now;
        let wanted = records as f64;
        if wanted <= bucket.tokens {
            bucket.tokens -= wanted;
            return Ok(());
        }
        self.count_refused(tenant, "log_records_per_second", records);
        // A batch larger than the burst waits for a full bucket.
        let missing = wanted.min(rate) - bucket.tokens;
        Err(Throttled {
            tenant: tenant.clone(),
            limit: rate,
            retry_after_secs: (missing / rate).ceil().max(1.0) as u64,
        })
    }

    /// The resource attribute naming a tenant, while tenancy is on.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Whether tenancy is on.
    pub fn is_on(&self) -> bool {
        self.key.is_some()
    }

    /// Makes the token of `digest` a `role` token of `principal`.
    pub fn grant(&self, digest: Digest, role: Role, principal: Principal) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest, (role, principal));
    }

    /// Forgets every token, limit and rate of `tenant`.
    pub fn revoke(&self, tenant: &str) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (_, p)| p.tenant() != Some(tenant));
        self.limits
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    /// Whose `role` token `token` is; `Err` when it is none of this host's, or one of the
    /// other role.
    pub fn identify(&self, token: &str, role: Role) -> Result<Principal, Refused> {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        match tokens.get(&digest(token)) {
            Some((r, principal)) if *r == role => Ok(principal.clone()),
            Some((Role::Admin, _)) => Err(Refused::WrongRole("admin")),
            Some((Role::Intake, _)) => Err(Refused::WrongRole("intake")),
            None => Err(Refused::Unknown),
        }
    }

    /// Who sent an intake request carrying `authorization` (the header's value, if any):
    /// with tenancy off, always the operator; with it on, a tenant's intake token names the
    /// tenant, the operator's names the operator, no token is the operator's unless one is
    /// required, and any other token is refused.
    pub fn sender(&self, authorization: Option<&[u8]>) -> Result<Principal, Refused> {
        if !self.is_on() {
            return Ok(Principal::Operator);
        }
        match authorization.and_then(bearer) {
            Some(token) => self.identify(token, Role::Intake),
            None if authorization.is_some() => Err(Refused::Unknown),
            None if self.require_intake_token => Err(Refused::Missing),
            None => Ok(Principal::Operator),
        }
    }

    /// Sets the tenant key of OTLP resource attributes `pairs` to `sender`'s tenant, or removes
    /// it for the operator, whatever they claimed; nothing changes with tenancy off. Whether
    /// anything changed.
    pub fn stamp(&self, sender: &Principal, pairs: &mut Vec<KeyValue>) -> bool {
        let Some(key) = self.key.as_deref() else {
            return false;
        };
        let before = pairs.len();
        pairs.retain(|kv| kv.key != key);
        let Some(tenant) = sender.tenant() else {
            return pairs.len() != before;
        };
        pairs.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(tenant.to_owned())),
            }),
            ..Default::default()
        });
        true
    }

    /// `attributes` with the tenant key set to `sender`'s tenant, or removed for the operator.
    pub fn stamped(&self, sender: &Principal, attributes: &AttributeSet) -> AttributeSet {
        let Some(key) = self.key.as_deref() else {
            return attributes.clone();
        };
        let mut pairs: Vec<(Arc<str>, Value)> = attributes
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, v)| (Arc::from(k), v.to_owned_value()))
            .collect();
        if let Some(tenant) = sender.tenant() {
            pairs.push((Arc::from(key), Value::Str(Arc::from(tenant))));
        }
        AttributeSet::from_pairs(pairs)
    }

    /// The tenant data of a resource with `attributes` belongs to, `None` for the operator's.
    pub fn owner(&self, attributes: &AttributeSet) -> Option<String> {
        let key = self.key.as_deref()?;
        attributes.get(key).map(|v| v.to_string())
    }
}

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_token_not_the_payload_names_the_tenant() {
        let tenancy = Tenancy::on("org", false);
        tenancy.grant(digest("a-in"), Role::Intake, Principal::Tenant("a".into()));
        tenancy.grant(
            digest("a-admin"),
            Role::Admin,
            Principal::Tenant("a".into()),
        );
        let a = tenancy.sender(Some(b"Bearer a-in")).expect("a");
        assert_eq!(a, Principal::Tenant("a".into()));
        let mut claims_b = vec![kv("service.name", "s"), kv("org", "b"), kv("org", "c")];
        assert!(tenancy.stamp(&a, &mut claims_b));
        assert_eq!(claims_b, vec![kv("service.name", "s"), kv("org", "a")]);
        let operator = tenancy.sender(None).expect("operator");
        let mut claims = vec![kv("org", "a")];
        assert!(tenancy.stamp(&operator, &mut claims));
        assert!(claims.is_empty(), "the operator's data names no tenant");
        assert_eq!(
            tenancy.sender(Some(b"Bearer a-admin")),
            Err(Refused::WrongRole("admin"))
        );
        assert_eq!(
            tenancy.identify("a-in", Role::Admin),
            Err(Refused::WrongRole("intake"))
        );
        assert_eq!(tenancy.sender(Some(b"Bearer nope")), Err(Refused::Unknown));
        assert_eq!(tenancy.sender(Some(b"Basic eA==")), Err(Refused::Unknown));
        tenancy.revoke("a");
        assert_eq!(tenancy.sender(Some(b"Bearer a-in")), Err(Refused::Unknown));
        let required = Tenancy::on("org", true);
        assert_eq!(required.sender(None), Err(Refused::Missing));
        let limited = Tenancy::configured(&TenancyConfig {
            key: Some("org".into()),
            require_intake_token: false,
            max_plugin_bytes: None,
            limits: TenantLimits {
                log_records_per_second: Some(10.0),
                ..TenantLimits::default()
            },
        });
        let t = Principal::Tenant("t".into());
        assert_eq!(limited.take_records(&t, 8), Ok(()));
        let over = limited.take_records(&t, 5).expect_err("over the burst");
        assert_eq!((over.retry_after_secs, over.limit), (1, 10.0));
        assert_eq!(
            limited.take_records(&t, 2),
            Ok(()),
            "what is left is still there"
        );
        assert_eq!(
            limited.take_records(&Principal::Operator, 1_000_000),
            Ok(())
        );
        limited.set_limits(
            "u",
            TenantLimits {
                log_records_per_second: Some(1_000.0),
                ..TenantLimits::default()
            },
        );
        let u = Principal::Tenant("u".into());
        assert_eq!(limited.take_records(&u, 900), Ok(()), "its own limit");
        let off = Tenancy::off();
        let mut untouched = vec![kv("org", "b")];
        assert!(!off.stamp(&Principal::Operator, &mut untouched));
        assert_eq!(off.sender(Some(b"Bearer x")), Ok(Principal::Operator));
    }
}
