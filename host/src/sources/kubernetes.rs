//! Kubernetes facts, named by the OpenTelemetry k8s semantic conventions: the pod this process
//! runs in (from the downward-API variables the manifests set) and the container of a process
//! (from its cgroup, for containerd, CRI-O and Docker under cgroup v1 and v2).

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
