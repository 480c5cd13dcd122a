//! The deployment artefacts in `examples/deploy/`: every manifest and every rendered overlay
//! validates against the Kubernetes schemas (`kubernetes-validate --strict`), the YAML lints
//! clean, the overlays render with `kubectl kustomize`, and the configurations they mount load.
//! The tools are required in CI and skipped with a message elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy")
}

/// Runs `tool` with `args`; `None` (said on stderr) when the tool is missing outside CI.
fn run(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).current_dir(deploy()).output() {
        Ok(out) => Some(out),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("{tool} is not installed ({e}): skipped; .ci/run installs it");
            None
        }
        Err(e) => panic!("{tool} is required in CI: {e}"),
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Validates `file`, expecting each of `kinds` to pass and nothing to fail.
fn validate(file: &Path, kinds: &[&str]) {
    let path = file.to_str().expect("utf-8 path");
    let Some(out) = run("kubernetes-validate", &["--strict", path]) else {
        return;
    };
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("ERROR"), "{report}");
    for kind in kinds {
        assert!(
            report.contains(&format!("passed for resource {kind}/")),
            "{kind} not validated: {report}"
        );
    }
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let base = deploy().join("kubernetes/base");
    for (file, kind) in [
        ("daemonset.yaml", "daemonset"),
        ("service.yaml", "service"),
        ("serviceaccount.yaml", "serviceaccount"),
    ] {
        validate(&base.join(file), &[kind]);
    }
}

#[test]
fn both_overlays_render_and_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    for overlay in ["gpu", "cpu"] {
        let Some(out) = run(
            "kubectl",
            &["kustomize", &format!("kubernetes/overlays/{overlay}")],
        ) else {
            return;
        };
        assert!(out.status.success(), "{}", text(&out));
        let rendered = String::from_utf8(out.stdout).expect("utf-8");
        for name in [
            "serviceaccount",
            "configmap",
            "service",
            "daemonset",
            "servicemonitor",
        ] {
            let kind_line = rendered
                .lines()
                .filter(|l| l.to_ascii_lowercase() == format!("kind: {name}"))
                .count();
            assert_eq!(kind_line, 1, "{overlay}: one {name}");
        }
        assert!(rendered.contains(&format!("name: wasmtel-{overlay}\n")));
        assert!(rendered.contains(&format!("app.kubernetes.io/component: {overlay}")));
        let gpu_settings = rendered.contains("runtimeClassName: nvidia")
            && rendered.contains("NVIDIA_DRIVER_CAPABILITIES");
        assert_eq!(gpu_settings, overlay == "gpu", "{overlay}");
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).expect("write");
        validate(
            &file,
            &["serviceaccount", "configmap", "service", "daemonset"],
        );
    }
}

#[test]
fn the_yaml_lints_clean() {
    let config = "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}";
    if let Some(out) = run("yamllint", &["--strict", "-d", config, "."]) {
        assert!(out.status.success(), "{}", text(&out));
    }
}

#[test]
fn the_mounted_configurations_load_and_listen_where_the_manifests_point() {
    let base = deploy().join("kubernetes");
    for file in ["base/wasmtel.toml", "overlays/cpu/wasmtel.toml"] {
        let toml = std::fs::read_to_string(base.join(file)).expect("config");
        let config = wasmtel::Config::from_toml(&toml).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.intake.listen.to_string(), "0.0.0.0:4318", "{file}");
        assert_eq!(
            config.intake.grpc_listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:4317"),
            "{file}"
        );
        assert_eq!(
            config.prometheus.listen.to_string(),
            "0.0.0.0:9464",
            "{file}"
        );
        assert_eq!(config.admin.listen.to_string(), "0.0.0.0:8686", "{file}");
        assert_eq!(
            config.kubernetes.pod_resources_socket, "/var/lib/kubelet/pod-resources/kubelet.sock",
            "{file}: the socket the DaemonSet mounts"
        );
    }
    let daemonset = std::fs::read_to_string(base.join("base/daemonset.yaml")).expect("daemonset");
    for needle in [
        "containerPort: 4317",
        "containerPort: 4318",
        "containerPort: 9464",
        "containerPort: 8686",
        "path: /healthz",
        "path: /readyz",
        "fieldPath: metadata.uid",
        "key: token",
        "readOnly: true",
        "mountPath: /host/proc",
        "mountPath: /var/lib/kubelet/pod-resources",
    ] {
        assert!(daemonset.contains(needle), "the DaemonSet lacks {needle}");
    }
    // The ServiceMonitor (a CRD, no bundled schema) scrapes a port the Service has, by its labels.
    let monitor = std::fs::read_to_string(base.join("base/servicemonitor.yaml")).expect("monitor");
    let service = std::fs::read_to_string(base.join("base/service.yaml")).expect("service");
    assert!(monitor.contains("- port: metrics\n") && service.contains("- name: metrics\n"));
    assert!(monitor.contains("honorLabels: true"));
    let label = "app.kubernetes.io/name: wasmtel";
    assert!(monitor.contains(&format!("matchLabels:\n      {label}")));
    assert!(service.contains(&format!("labels:\n    {label}")));
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("USER nonroot"));
    assert!(dockerfile.contains("EXPOSE 4317 4318 9464 8686"));
}
