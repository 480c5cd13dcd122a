//! Sources: what the host measures by itself, polled on an interval (GPUs through NVML, the
//! system and the host process through `/proc`).

pub mod gpu;
pub mod kubernetes;
pub mod resource;
pub mod system;

use std::sync::Arc;

use crate::metrics::{ConflictError, Descriptor, Instrument, Registry};

use crate::model::metric::InstrumentKind;

/// A source's metric: name, unit, kind and description.
pub type MetricSpec = (&'static str, &'static str, InstrumentKind, &'static str);

/// Registers one instrument per spec in `scope`, in the specs' order.
fn register<const N: usize>(
    registry: &Registry,
    specs: &[MetricSpec; N],
    scope: &'static str,
) -> Result<[Arc<Instrument>; N], ConflictError> {
    let mut out = Vec::with_capacity(N);
    for (name, unit, kind, description) in specs {
        out.push(registry.instrument(
            Descriptor {
                name: (*name).into(),
                unit: (*unit).into(),
                description: (*description).into(),
                kind: *kind,
                scope: scope.into(),
            },
            &[],
        )?);
    }
    Ok(out
        .try_into()
        .unwrap_or_else(|_| unreachable!("one instrument per spec")))
}
