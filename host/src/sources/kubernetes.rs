//! Kubernetes facts, named by the OpenTelemetry k8s semantic conventions: the pod this process
//! runs in (from the downward-API variables the manifests set), the container of a process
//! (from its cgroup, for containerd, CRI-O and Docker under cgroup v1 and v2), and the container
//! each device (GPU, MIG instance) is allocated to (from the kubelet's PodResources API).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

/// Environment variables (set by the DaemonSet through the downward API) and the resource
/// attributes they become.
pub const DOWNWARD_API: [(&str, &str); 5] = [
    ("K8S_NODE_NAME", "k8s.node.name"),
    ("K8S_POD_NAME", "k8s.pod.name"),
    ("K8S_POD_UID", "k8s.pod.uid"),
    ("K8S_NAMESPACE_NAME", "k8s.namespace.name"),
    ("K8S_CONTAINER_NAME", "k8s.container.name"),
];

/// The Kubernetes resource attributes of this process: one per downward-API variable that is set
/// (and not empty), and `container.id` from `cgroup` (the text of `/proc/self/cgroup`). Off a
/// cluster — no such variable and no `KUBERNETES_SERVICE_HOST` — there are none.
pub fn detect(
    env: impl Fn(&str) -> Option<String>,
    cgroup: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = DOWNWARD_API
        .iter()
        .filter_map(|(var, key)| Some((*key, env(var).filter(|v| !v.is_empty())?)))
        .collect();
    let on_cluster = !out.is_empty() || env("KUBERNETES_SERVICE_HOST").is_some();
    if let Some(id) = cgroup.filter(|_| on_cluster).and_then(container_id) {
        out.push(("container.id", id));
    }
    out
}

/// Where a process's cgroup puts it: its container id and its pod's UID, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The 64-hex container id.
    pub container_id: Option<String>,
    /// The pod UID (with dashes).
    pub pod_uid: Option<String>,
}

/// The container id in the text of a `/proc/<pid>/cgroup` file; `None` when it names none (a
/// process on the host, or a cgroup namespace that hides the path).
pub fn container_id(cgroup: &str) -> Option<String> {
    placement(cgroup).container_id
}

/// The container id and pod UID in the text of a `/proc/<pid>/cgroup` file.
///
/// Every line is `hierarchy:controllers:path` (v2 has the one line `0::path`); the path's
/// segments name the pod (`pod<uid>`, or `kubepods-<qos>-pod<uid_with_underscores>.slice` under
/// the systemd driver) and the container (a bare 64-hex id, or `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `docker-<id>.scope`; CRI-O's `crio-conmon-<id>` is its monitor, not the
/// container).
pub fn placement(cgroup: &str) -> Placement {
    let mut found = Placement::default();
    for line in cgroup.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        for segment in path.split('/') {
            let segment = segment.strip_suffix(".scope").unwrap_or(segment);
            let segment = segment.strip_suffix(".slice").unwrap_or(segment);
            if found.pod_uid.is_none() {
                found.pod_uid = pod_uid(segment);
            }
            if segment.contains("conmon") {
                continue;
            }
            let id = segment.rsplit(['-', ':']).next().unwrap_or(segment);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                found.container_id = Some(id.to_ascii_lowercase());
            }
        }
        if found.container_id.is_some() {
            break;
        }
    }
    found
}

/// The pod UID a cgroup path segment names, if it names one.
fn pod_uid(segment: &str) -> Option<String> {
    let at = segment.rfind("pod")?;
    let uid = segment[at + 3..].replace('_', "-");
    let well_formed = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        });
    well_formed.then_some(uid)
}

/// The kubelet's PodResources `v1` messages, as far as attribution reads them (other fields
/// are skipped).
mod v1 {
    /// `ListPodResourcesResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ListPodResourcesResponse {
        #[prost(message, repeated, tag = "1")]
        pub(super) pod_resources: Vec<PodResources>,
    }

    /// `PodResources`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PodResources {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(string, tag = "2")]
        pub(super) namespace: String,
        #[prost(message, repeated, tag = "3")]
        pub(super) containers: Vec<ContainerResources>,
    }

    /// `ContainerResources`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ContainerResources {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(message, repeated, tag = "2")]
        pub(super) devices: Vec<ContainerDevices>,
    }

    /// `ContainerDevices`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ContainerDevices {
        #[prost(string, tag = "1")]
        pub(super) resource_name: String,
        #[prost(string, repeated, tag = "2")]
        pub(super) device_ids: Vec<String>,
    }
}

/// The PodResources `List` method.
const LIST: &str = "/v1.PodResourcesLister/List";

/// The container a device is allocated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `k8s.pod.name`.
    pub pod: String,
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.container.name`.
    pub container: String,
}

impl Owner {
    /// Its resource attributes.
    pub fn attributes(&self) -> [(&'static str, &str); 3] {
        [
            ("k8s.container.name", &self.container),
            ("k8s.namespace.name", &self.namespace),
            ("k8s.pod.name", &self.pod),
        ]
    }
}

/// Connects a gRPC channel to a unix socket.
#[derive(Clone)]
struct UnixConnector(PathBuf);

impl tower_service::Service<tonic::codegen::http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// Why the kubelet's device allocations could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The socket could not be reached.
    #[error("cannot connect to {}: {source}", .socket.display())]
    Connect {
        /// The socket.
        socket: std::path::PathBuf,
        /// Why not.
        source: tonic::transport::Error,
    },
    /// The kubelet answered the call with an error.
    #[error("List: gRPC {:?}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    /// The answer is not a `ListPodResourcesResponse`.
    #[error("List: not a ListPodResourcesResponse: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Lists the kubelet's device allocations on `socket`: every device id (a GPU's UUID, a MIG
/// instance's) with the container it is allocated to.
pub async fn list_devices(
    socket: &Path,
    timeout: Duration,
) -> Result<HashMap<String, Owner>, ListError> {
    let connect = |source| ListError::Connect {
        socket: socket.to_owned(),
        source,
    };
    let channel = tonic::transport::Endpoint::from_static("http://kubelet.local")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(UnixConnector(socket.to_owned()))
        .await
        .map_err(connect)?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(connect)?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(LIST);
    let answer = client
        .unary(tonic::Request::new(Bytes::new()), path, crate::grpc::Raw)
        .await
        .map_err(|status| ListError::Status(Box::new(status)))?;
    let list = v1::ListPodResourcesResponse::decode(answer.into_inner())?;
    let mut devices = HashMap::new();
    for pod in list.pod_resources {
        for container in &pod.containers {
            for id in container.devices.iter().flat_map(|d| &d.device_ids) {
                let owner = Owner {
                    pod: pod.name.clone(),
                    namespace: pod.namespace.clone(),
                    container: container.name.clone(),
                };
                devices.insert(id.clone(), owner);
            }
        }
    }
    Ok(devices)
}

/// Which container each device and each GPU process belongs to, kept fresh by [`Attribution::refresh`].
#[derive(Debug)]
pub struct Attribution {
    socket: PathBuf,
    proc_root: PathBuf,
    devices: RwLock<HashMap<String, Owner>>,
    /// Whether the last listing failed (so that a failure is logged once, and a recovery).
    failing: std::sync::atomic::AtomicBool,
}

impl Attribution {
    /// Attribution through the PodResources `socket`, reading processes under `proc_root`.
    pub fn new(socket: PathBuf, proc_root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            socket,
            proc_root,
            devices: RwLock::new(HashMap::new()),
            failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Lists the allocations again; on failure (no socket: not on a kubelet's node) devices
    /// keep no owner, and the failure is logged once until a listing works.
    pub async fn refresh(&self) {
        use std::sync::atomic::Ordering;
        let listed = list_devices(&self.socket, Duration::from_secs(5)).await;
        let was_failing = self.failing.load(Ordering::Relaxed);
        let devices = match listed {
            Ok(devices) => {
                if was_failing {
                    tracing::info!(socket = %self.socket.display(), "the kubelet's PodResources API answers: GPUs are attributed to pods");
                }
                self.failing.store(false, Ordering::Relaxed);
                devices
            }
            Err(e) => {
                if !was_failing {
                    tracing::info!(error = %e, "no kubelet PodResources API: GPUs are not attributed to pods");
                }
                self.failing.store(true, Ordering::Relaxed);
                HashMap::new()
            }
        };
        *self
            .devices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = devices;
    }

    /// The container device `id` is allocated to, if any.
    pub fn owner(&self, id: &str) -> Option<Owner> {
        self.devices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Where process `pid`'s cgroup puts it.
    pub fn process(&self, pid: u32) -> Placement {
        let path = self.proc_root.join(pid.to_string()).join("cgroup");
        std::fs::read_to_string(path)
            .map(|text| placement(&text))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c7e5d9a0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d0e2f4a6b8c0d";
    const UID: &str = "7a9c1e3f-5b7d-4e9f-8a1c-3e5f7a9b1c3d";

    /// The same container as each runtime and cgroup layout writes it.
    fn layouts() -> Vec<(&'static str, String)> {
        let slice = UID.replace('-', "_");
        vec![
            (
                "containerd, cgroup v2, systemd driver",
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice}.slice/cri-containerd-{ID}.scope\n"
                ),
            ),
            (
                "containerd, cgroup v1, cgroupfs driver",
                format!(
                    "12:pids:/kubepods/burstable/pod{UID}/{ID}\n11:memory:/kubepods/burstable/pod{UID}/{ID}\n0::/\n"
                ),
            ),
            (
                "CRI-O, cgroup v2",
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{slice}.slice/crio-{ID}.scope\n"
                ),
            ),
            (
                "CRI-O, cgroup v1, with its monitor listed first",
                format!(
                    "9:cpu:/kubepods.slice/kubepods-pod{slice}.slice/crio-conmon-{}.scope\n8:memory:/kubepods.slice/kubepods-pod{slice}.slice/crio-{ID}.scope\n",
                    "a".repeat(64)
                ),
            ),
            (
                "Docker, cgroup v1 (dockershim)",
                format!("4:memory:/kubepods/pod{UID}/{ID}\n"),
            ),
            (
                "Docker, cgroup v2, systemd driver",
                format!("0::/kubepods.slice/kubepods-pod{slice}.slice/docker-{ID}.scope\n"),
            ),
        ]
    }

    #[test]
    fn every_runtime_and_cgroup_layout_names_its_container_and_pod() {
        for (layout, text) in layouts() {
            assert_eq!(
                placement(&text),
                Placement {
                    container_id: Some(ID.to_owned()),
                    pod_uid: Some(UID.to_owned()),
                },
                "{layout}"
            );
        }
    }

    #[test]
    fn a_host_process_or_a_hidden_path_names_none() {
        assert_eq!(placement("0::/\n"), Placement::default());
        assert_eq!(
            placement("0::/system.slice/sshd.service\n1:name=systemd:/user.slice\n"),
            Placement::default()
        );
        assert_eq!(container_id("garbage without colons"), None);
        assert_eq!(
            container_id(&format!("0::/podnot-a-uid/{}", "z".repeat(64))),
            None
        );
    }

    #[test]
    fn the_downward_api_and_cgroup_make_the_pod_attributes_and_nothing_off_a_cluster() {
        let cgroup = format!("0::/kubepods/pod{UID}/{ID}\n");
        let env = |var: &str| match var {
            "K8S_NODE_NAME" => Some("gpu-node-7".to_owned()),
            "K8S_POD_NAME" => Some("wasmtel-x7k2p".to_owned()),
            "K8S_POD_UID" => Some(UID.to_owned()),
            "K8S_NAMESPACE_NAME" => Some("telemetry".to_owned()),
            "K8S_CONTAINER_NAME" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            detect(env, Some(&cgroup)),
            [
                ("k8s.node.name", "gpu-node-7".to_owned()),
                ("k8s.pod.name", "wasmtel-x7k2p".to_owned()),
                ("k8s.pod.uid", UID.to_owned()),
                ("k8s.namespace.name", "telemetry".to_owned()),
                ("container.id", ID.to_owned()),
            ]
        );
        assert!(detect(|_| None, Some(&cgroup)).is_empty(), "off a cluster");
        let in_cluster =
            |var: &str| (var == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_owned());
        assert_eq!(
            detect(in_cluster, Some(&cgroup)),
            [("container.id", ID.to_owned())]
        );
    }
}
