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
}
