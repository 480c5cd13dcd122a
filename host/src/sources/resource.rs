//! Resource detection: the host's own facts (host name, a stable device id) under the configured attributes.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::ResourceConfig;
use crate::model::attributes::{AttributeSet, Value};
use crate::model::resource::Resource;

/// This host's resource: detected facts with the configuration on top.
///
/// `service.name` defaults to `wasmtel`; `service.instance.id` is a fresh
/// UUID per process; `device.id` is a stable hash of the host name and
/// the primary MAC address unless configured; on Kubernetes, the pod's
/// `k8s.*` attributes and `container.id` (see [`super::kubernetes`]).
pub fn detect(config: &ResourceConfig) -> Resource {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let device_id = config
        .device_id
        .clone()
        .unwrap_or_else(|| device_id(&host, primary_mac().as_deref()));
    let mut pairs: Vec<(Arc<str>, Value)> = vec![
        pair("service.name", "wasmtel"),
        pair("service.version", env!("CARGO_PKG_VERSION")),
        pair("service.instance.id", &uuid::Uuid::new_v4().to_string()),
        pair("host.name", &host),
        pair("device.id", &device_id),
        pair("telemetry.sdk.name", "wasmtel"),
        pair("telemetry.sdk.language", "rust"),
        pair("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
    let pod = super::kubernetes::detect(|var| std::env::var(var).ok(), cgroup.as_deref());
    pairs.extend(pod.iter().map(|(k, v)| pair(k, v)));
    pairs.extend(config.attributes.iter().map(|(k, v)| pair(k, v)));
    if let Some(name) = &config.service_name {
        pairs.push(pair("service.name", name));
    }
    if let Some(id) = &config.device_id {
        pairs.push(pair("device.id", id));
    }
    Resource::from_attributes(AttributeSet::from_pairs(pairs))
}

fn pair(k: &str, v: &str) -> (Arc<str>, Value) {
    (Arc::from(k), Value::Str(Arc::from(v)))
}

/// A stable identifier of this machine: SHA-256 of host name and MAC, first 16 bytes in hex.
pub fn device_id(host: &str, mac: Option<&str>) -> String {
    let mut digest = Sha256::new();
    digest.update(host.as_bytes());
    digest.update(b"\n");
    digest.update(mac.unwrap_or("").as_bytes());
    const_hex::encode(&digest.finalize()[..16])
}

/// The MAC address of the interface holding the default route, else of the first physical one.
fn primary_mac() -> Option<String> {
    let default_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|routes| {
            routes
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|cols| cols.get(1) == Some(&"00000000"))
                .and_then(|cols| cols.first().map(|s| s.to_string()))
        });
    let mac_of = |iface: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|m| !m.is_empty() && m != "00:00:00:00:00:00")
    };
    if let Some(mac) = default_iface.as_deref().and_then(mac_of) {
        return Some(mac);
    }
    let mut ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    ifaces.sort();
    ifaces.iter().find_map(|i| mac_of(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_is_stable_and_depends_on_both_inputs() {
        let a = device_id("gpu-node-1", Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(a, device_id("gpu-node-1", Some("aa:bb:cc:dd:ee:ff")));
        assert_eq!(a.len(), 32);
        assert_ne!(a, device_id("gpu-node-2", Some("aa:bb:cc:dd:ee:ff")));
        assert_ne!(a, device_id("gpu-node-1", Some("aa:bb:cc:dd:ee:00")));
    }

    #[test]
    fn configuration_overrides_detection() {
        let config = ResourceConfig {
            service_name: Some("inference-eu".into()),
            device_id: Some("rack7-slot3".into()),
            attributes: [("deployment.environment".to_owned(), "prod".to_owned())].into(),
        };
        let r = detect(&config);
        assert_eq!(r.get("service.name").as_deref(), Some("inference-eu"));
        assert_eq!(r.get("device.id").as_deref(), Some("rack7-slot3"));
        assert_eq!(r.get("deployment.environment").as_deref(), Some("prod"));
        assert!(r.get("host.name").is_some_and(|h| !h.is_empty()));
        assert_eq!(r.get("service.instance.id").map(|i| i.len()), Some(36));
    }
}
