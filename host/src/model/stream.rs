//! Stream views: which instruments a view selects and what it changes in their streams (name,
//! description, attribute keys, aggregation, buckets, cardinality limit), as the OpenTelemetry
//! metrics SDK specification defines them.

use serde::{Deserialize, Serialize};

use super::metric::{Aggregation, InstrumentKind};

/// One `[[metrics.views]]` entry: selection criteria and what to change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamView {
    /// Instrument name, `*` matching any run of characters (default: every instrument).
    pub instrument: Option<String>,
    /// Only instruments of this kind.
    pub kind: Option<InstrumentKind>,
    /// Only instruments of this scope (`wasmtel.derive`, `wasmtel`).
    pub scope: Option<String>,
    /// The metric's new name (only for a view naming one instrument exactly).
    pub rename: Option<String>,
    /// The metric's new description.
    pub description: Option<String>,
    /// Attribute keys to keep; the others are removed from every series.
    pub attribute_keys: Option<Vec<String>>,
    /// The aggregation to use instead of the instrument kind's default.
    pub aggregation: Option<Aggregation>,
    /// Histogram bucket boundaries, replacing the instrument's advisory ones.
    pub buckets: Option<Vec<f64>>,
    /// Distinct attribute sets before overflow, replacing the global limit.
    pub cardinality_limit: Option<usize>,
}

/// A view that cannot work as configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamViewError {
    /// A rename on a wildcard selection would give several instruments one name.
    #[error("view {0}: `rename` needs `instrument` to name exactly one instrument, without `*`")]
    WildcardRename(usize),
    /// Bucket boundaries not finite and strictly increasing.
    #[error("view {0}: `buckets` must be finite and strictly increasing")]
    BadBuckets(usize),
    /// A view that changes nothing.
    #[error(
        "view {0} changes nothing: give rename, description, attribute_keys, aggregation, buckets or cardinality_limit"
    )]
    Empty(usize),
}

impl StreamView {
    /// Checks the view (number `index` in the configuration, from 1) for mistakes that would only show later.
    pub fn validate(&self, index: usize) -> Result<(), StreamViewError> {
        let wildcard = self.instrument.as_deref().is_none_or(|i| i.contains('*'));
        if self.rename.is_some() && wildcard {
            return Err(StreamViewError::WildcardRename(index));
        }
        if let Some(b) = &self.buckets
            && (b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err(StreamViewError::BadBuckets(index));
        }
        let changes = self.rename.is_some()
            || self.description.is_some()
            || self.attribute_keys.is_some()
            || self.aggregation.is_some()
            || self.buckets.is_some()
            || self.cardinality_limit.is_some();
        if !changes {
            return Err(StreamViewError::Empty(index));
        }
        Ok(())
    }
}

/// Warnings about views that disagree: two renaming to one name, or one that an earlier
/// catch-all view leaves nothing to select.
pub fn conflicts(views: &[StreamView]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, view) in views.iter().enumerate() {
        if let Some(name) = &view.rename {
            for (j, earlier) in views[..i].iter().enumerate() {
                if earlier.rename.as_deref() == Some(name) {
                    out.push(format!(
                        "views {} and {} both rename to `{name}`",
                        j + 1,
                        i + 1
                    ));
                }
            }
        }
        let catch_all = |v: &StreamView| {
            v.instrument.as_deref().is_none_or(|p| p == "*")
                && v.kind.is_none()
                && v.scope.is_none()
        };
        if let Some(j) = views[..i].iter().position(catch_all) {
            out.push(format!(
                "view {} never applies: view {} selects every instrument first",
                i + 1,
                j + 1
            ));
        }
    }
    out
}
