//! Tenants: created and deleted by the operator, each with an admin token (its own
//! integrations, status and series) and an intake token (its data), shown once and kept only
//! as digests.

use std::sync::Arc;

use super::files::FileError;
use super::history::Histories;
use super::integrations::Integrations;
use super::store::{StoreError, TenantRow};
use super::token;
use crate::config::TenantLimits;
use crate::tenancy::{Principal, Role, Tenancy, digest, new_token};

/// Why tenants could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// Tenancy is off: `[tenancy] key` is not set.
    #[error("tenancy is off: set `[tenancy] key` to the resource attribute that names a tenant")]
    Off,
    /// The name is not a valid tenant name.
    #[error(
        "the tenant name `{0}` must be 1 to 128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    )]
    Name(String),
    /// A tenant of that name exists.
    #[error("a tenant named `{0}` exists")]
    Exists(String),
    /// There is no tenant of that name.
    #[error("no tenant `{0}`")]
    NotFound(String),
    /// Its limits are not valid.
    #[error("invalid limits: {0}")]
    Limits(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A token file could not be read or created.
    #[error(transparent)]
    Token(#[from] FileError),
}

/// A tenant just created, with its tokens: the only time they are shown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    /// Its name.
    pub name: String,
    /// Its admin token: the admin API, CLI and `/metrics`, for its own integrations and data.
    pub admin_token: String,
    /// Its intake token: what its senders send with.
    pub intake_token: String,
}

/// A tenant as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// Its own limits (over `[tenancy.limits]`).
    pub limits: TenantLimits,
    /// The limits in force: its own over the defaults.
    pub effective: TenantLimits,
}

/// The tenants of a host: the store's rows, and their tokens known to `tenancy`.
#[derive(Debug, Clone)]
pub struct Tenants {
    tenancy: Arc<Tenancy>,
    integrations: Integrations,
    histories: Arc<Histories>,
}

/// Whether `name` can name a tenant.
fn valid(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Tenants {
    /// Makes the operator's tokens (its admin token, `admin_token` or the data directory's;
    /// its intake token while tenancy is on) and every stored tenant's known to `tenancy`.
    pub fn open(
        tenancy: Arc<Tenancy>,
        integrations: Integrations,
        histories: Arc<Histories>,
        admin_token: Option<&str>,
        data_dir: &std::path::Path,
    ) -> Result<Self, TenantError> {
        let operator = token::load_or_create(admin_token, data_dir)?;
        tenancy.grant(digest(&operator), Role::Admin, Principal::Operator);
        if tenancy.is_on() {
            let intake = token::intake(data_dir)?;
            tenancy.grant(digest(&intake), Role::Intake, Principal::Operator);
        }
        for row in integrations.store().tenants()? {
            grant(&tenancy, &row);
            match serde_json::from_str::<TenantLimits>(&row.limits) {
                Ok(limits) => tenancy.set_limits(&row.name, limits),
                Err(e) => {
                    tracing::warn!(tenant = %row.name, "its stored limits cannot be read ({e}); the defaults apply")
                }
            }
        }
        Ok(Self {
            tenancy,
            integrations,
            histories,
        })
    }

    /// Who is who.
    pub fn tenancy(&self) -> &Arc<Tenancy> {
        &self.tenancy
    }

    /// The integrations, each owned by a tenant or the operator.
    pub fn integrations(&self) -> &Integrations {
        &self.integrations
    }

    /// The status page's histories, each tenant's apart.
    pub fn histories(&self) -> &Arc<Histories> {
        &self.histories
    }

    /// Creates tenant `name` with new tokens and its own `limits`.
    pub fn create(&self, name: &str, limits: TenantLimits) -> Result<Created, TenantError> {
        if !self.tenancy.is_on() {
            return Err(TenantError::Off);
        }
        if !valid(name) {
            return Err(TenantError::Name(name.escape_debug().to_string()));
        }
        limits.check().map_err(TenantError::Limits)?;
        let (admin_token, intake_token) = (new_token(), new_token());
        let row = TenantRow {
            name: name.to_owned(),
            admin: digest(&admin_token),
            intake: digest(&intake_token),
            limits: serde_json::to_string(&limits).unwrap_or_default(),
        };
        if !self.integrations.store().add_tenant(&row)? {
            return Err(TenantError::Exists(name.to_owned()));
        }
        grant(&self.tenancy, &row);
        self.tenancy.set_limits(name, limits);
        tracing::info!(tenant = %name, "tenant created");
        Ok(Created {
            name: name.to_owned(),
            admin_token,
            intake_token,
        })
    }

    /// Every tenant, oldest first.
    pub fn list(&self) -> Result<Vec<Tenant>, TenantError> {
        let rows = self.integrations.store().tenants()?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let limits = serde_json::from_str(&row.limits).unwrap_or_default();
                Tenant {
                    effective: self.tenancy.limits(&row.name),
                    name: row.name,
                    limits,
                }
            })
            .collect())
    }

    /// Replaces the own limits of tenant `name`; they apply at once.
    pub fn set_limits(&self, name: &str, limits: TenantLimits) -> Result<Tenant, TenantError> {
        limits.check().map_err(TenantError::Limits)?;
        let json = serde_json::to_string(&limits).unwrap_or_default();
        if !self.integrations.store().set_tenant_limits(name, &json)? {
            return Err(TenantError::NotFound(name.to_owned()));
        }
        self.tenancy.set_limits(name, limits);
        self.get(name)
    }

    /// Tenant `name`.
    pub fn get(&self, name: &str) -> Result<Tenant, TenantError> {
        self.list()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TenantError::NotFound(name.to_owned()))
    }

    /// Deletes tenant `name`: its tokens stop working at once, its integrations stop and go.
    pub fn delete(&self, name: &str) -> Result<(), TenantError> {
        if !self.integrations.store().delete_tenant(name)? {
            return Err(TenantError::NotFound(name.to_owned()));
        }
        self.tenancy.revoke(name);
        self.integrations.drop_tenant(name);
        self.integrations.plugins().forget_uploads(name);
        self.histories.forget(name);
        tracing::info!(tenant = %name, "tenant deleted");
        Ok(())
    }
}

/// Makes `row`'s tokens known.
fn grant(tenancy: &Tenancy, row: &TenantRow) {
    let tenant = Principal::Tenant(Arc::from(row.name.as_str()));
    tenancy.grant(row.admin, Role::Admin, tenant.clone());
    tenancy.grant(row.intake, Role::Intake, tenant);
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn tenant_names_are_plain_identifiers() {
        for ok in ["acme", "team-a", "org_42", "prod.eu", "A1"] {
            assert!(valid(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "ä", &"x".repeat(129)] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
