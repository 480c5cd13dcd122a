//! `[tenancy]`: many teams on one host, each with its own tokens, integrations and limits.

use serde::{Deserialize, Serialize};

/// The `[tenancy]` section; tenancy is on when `key` is set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// The resource attribute that names a tenant on its data (`service.namespace`,
    /// `k8s.namespace.name`, `org.id`, …).
    pub key: Option<String>,
    /// Refuse data sent without a valid intake token (401 / `UNAUTHENTICATED`); the operator
    /// then sends with its own, kept in `<data_dir>/intake.token`.
    pub require_intake_token: bool,
    /// `[tenancy.limits]`: every tenant's share, unless its own limits say otherwise.
    pub limits: TenantLimits,
    /// The largest plugin component a tenant may upload (default 32 MiB).
    pub max_plugin_bytes: Option<usize>,
}

/// The largest plugin component a tenant may upload, by default.
pub const DEFAULT_MAX_PLUGIN_BYTES: usize = 32 * 1024 * 1024;

/// What one tenant may take of the host; unset is unlimited (within the host's own limits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    /// Received resources (of the host's 256) whose metrics are kept for the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<usize>,
    /// Series per instrument of each of the tenant's resources: its cardinality limit, past
    /// which new attribute sets fold into the overflow series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<usize>,
    /// Log records (events included) per second, with a burst of one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_records_per_second: Option<f64>,
    /// The fraction (0 to 1] of each shared integration's log queue its records may fill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_share: Option<f64>,
}

impl TenantLimits {
    /// These limits, with `defaults` filling in what they leave unset.
    pub fn over(&self, defaults: &TenantLimits) -> TenantLimits {
        TenantLimits {
            resources: self.resources.or(defaults.resources),
            series: self.series.or(defaults.series),
            log_records_per_second: self
                .log_records_per_second
                .or(defaults.log_records_per_second),
            queue_share: self.queue_share.or(defaults.queue_share),
        }
    }

    /// Why these limits cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.resources == Some(0) || self.series == Some(0) {
            return Err("`resources` and `series` must be at least 1".into());
        }
        if self
            .log_records_per_second
            .is_some_and(|r| !r.is_finite() || r <= 0.0)
        {
            return Err("`log_records_per_second` must be a positive number".into());
        }
        if self
            .queue_share
            .is_some_and(|s| !s.is_finite() || s <= 0.0 || s > 1.0)
        {
            return Err("`queue_share` must be a fraction in (0, 1]".into());
        }
        Ok(())
    }
}
