//! Tenancy: who sent data and who asks the admin API, told by the bearer token alone, and the
//! resource attribute that carries a tenant's name on its data.
//!
//! Tokens are known only by their SHA-256 digests; a token is 244 random bits, so a digest
//! without salt is as good as the token is unguessable.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use sha2::{Digest as _, Sha256};

use crate::model::attributes::{AttributeSet, Value};

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

/// The tenancy of a host: off (everything is the operator's), or on with the resource
/// attribute that names a tenant and every token the host knows.
#[derive(Debug, Default)]
pub struct Tenancy {
    key: Option<Arc<str>>,
    require_intake_token: bool,
    tokens: RwLock<HashMap<Digest, (Role, Principal)>>,
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
            tokens: RwLock::default(),
        }
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

    /// Forgets every token of `tenant`.
    pub fn revoke(&self, tenant: &str) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (_, p)| p.tenant() != Some(tenant));
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
        let off = Tenancy::off();
        let mut untouched = vec![kv("org", "b")];
        assert!(!off.stamp(&Principal::Operator, &mut untouched));
        assert_eq!(off.sender(Some(b"Bearer x")), Ok(Principal::Operator));
    }
}
