//! Sources: what the host measures by itself, polled on an interval (GPUs through NVML, the
//! system and the host process through `/proc`).

pub mod gpu;
pub mod kubernetes;
pub mod resource;
pub mod scrape;
pub mod system;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::{ConflictError, Descriptor, Instrument, Registry};
use crate::model::metric::InstrumentKind;
use crate::ticker::{blocking_every, every};

/// Starts the pollers `config` turns on — GPUs (with their pods, when the kubelet's
/// PodResources socket is set), the system — recording into `registry` until `stopped`.
pub fn start(
    config: &Config,
    registry: &Registry,
    stopped: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ConflictError> {
    let mut tasks = Vec::new();
    if let Some(interval) = config.gpu.interval() {
        let library = config.gpu.library.clone();
        let connect = Box::new(move || gpu::nvml::connect(&library));
        let mut poller = gpu::GpuPoller::new(registry, connect)?;
        let k8s = &config.kubernetes;
        if !k8s.pod_resources_socket.is_empty() {
            let attribution = kubernetes::Attribution::new(
                k8s.pod_resources_socket.clone().into(),
                k8s.proc_root.clone(),
            );
            let refreshed = attribution.clone();
            tasks.push(every(k8s.interval(), stopped.clone(), move || {
                let attribution = refreshed.clone();
                async move { attribution.refresh().await }
            }));
            poller = poller.with_attribution(attribution);
        }
        tasks.push(blocking_every(interval, stopped.clone(), move || {
            poller.poll();
        }));
    }
    if let Some(interval) = config.system.interval() {
        let mut poller = system::SystemPoller::new(registry, "/proc")?;
        let mut failing = false;
        tasks.push(blocking_every(
            interval,
            stopped.clone(),
            move || match poller.poll() {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "reading /proc failed; system metrics wait for it");
                }
                Err(_) => {}
            },
        ));
    }
    Ok(tasks)
}

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
