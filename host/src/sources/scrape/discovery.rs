//! The node's pods as scrape targets: the kubelet's pod list, read on an interval, filtered by
//! the conventional annotations (`prometheus.io/scrape: "true"`, `prometheus.io/port`,
//! `prometheus.io/path`, `prometheus.io/scheme`); targets start when their pod appears and stop
//! when it goes, without a restart.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::scraper::{Board, Running, Sink, spawn};
use crate::config::{PodDiscoveryConfig, ScrapeConfig, without_userinfo};

/// The part of the kubelet's `PodList` discovery reads.
#[derive(Debug, Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    node_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    phase: String,
    #[serde(default, rename = "podIP")]
    pod_ip: String,
}

/// The scrape targets a pod list names: each running pod annotated `prometheus.io/scrape:
/// "true"` with a port, at `<scheme>://<pod IP>:<port><path>`, its `job` the pod's
/// `app.kubernetes.io/name` (else `app`, else its name) and its resource the pod's `k8s.*`
/// attributes.
pub fn targets(
    list: &[u8],
    interval: Option<std::time::Duration>,
) -> Result<Vec<ScrapeConfig>, String> {
    let list: PodList =
        serde_json::from_slice(list).map_err(|e| format!("the pod list is not valid: {e}"))?;
    let mut out = Vec::new();
    for pod in list.items {
        let note = |key: &str| {
            pod.metadata
                .annotations
                .get(&format!("prometheus.io/{key}"))
        };
        let wanted = note("scrape").is_some_and(|v| v == "true");
        let Some(port) = note("port").filter(|p| p.parse::<u16>().is_ok()) else {
            continue;
        };
        if !wanted || pod.status.phase != "Running" || pod.status.pod_ip.is_empty() {
            continue;
        }
        let scheme = note("scheme").map_or("http", String::as_str);
        let path = note("path").map_or("/metrics", String::as_str);
        let ip = &pod.status.pod_ip;
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        let m = &pod.metadata;
        let job = m
            .labels
            .get("app.kubernetes.io/name")
            .or_else(|| m.labels.get("app"))
            .unwrap_or(&m.name)
            .clone();
        let mut labels = BTreeMap::new();
        labels.insert("k8s.namespace.name".to_owned(), m.namespace.clone());
        labels.insert("k8s.pod.name".to_owned(), m.name.clone());
        labels.insert("k8s.pod.uid".to_owned(), m.uid.clone());
        labels.insert("k8s.node.name".to_owned(), pod.spec.node_name.clone());
        labels.retain(|_, v| !v.is_empty());
        let mut config = ScrapeConfig::new(format!("{scheme}://{host}:{port}{path}"));
        config.interval = interval;
        config.job = job;
        config.labels = labels;
        out.push(config);
    }
    Ok(out)
}

/// The running discovered targets, by URL, and what starts them.
pub struct Discovery {
    config: PodDiscoveryConfig,
    client: reqwest::Client,
    running: HashMap<String, Running>,
    sink: Sink,
    board: Board,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("url", &without_userinfo(&self.config.url))
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Discovery through the kubelet at `config.url`, its targets scraped into `sink` (their
    /// health on `board`) until `stopped`; the kubelet's CA is trusted when its file exists.
    pub fn new(
        config: PodDiscoveryConfig,
        sink: Sink,
        board: Board,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Ok(pem) = std::fs::read(&config.ca_file) {
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("`{}` is not a PEM certificate: {e}", config.ca_file))?;
            builder = builder.add_root_certificate(ca);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the kubelet client: {e}"))?;
        Ok(Self {
            config,
            client,
            running: HashMap::new(),
            sink,
            board,
            stopped,
        })
    }

    /// Reads the pod list once: starts the targets that appeared, stops those that went. A
    /// failed read changes nothing.
    pub async fn refresh(&mut self) {
        let mut request = self.client.get(&self.config.url);
        if let Ok(token) = std::fs::read_to_string(&self.config.token_file) {
            request = request.bearer_auth(token.trim());
        }
        let listed = match request.send().await {
            Ok(r) if r.status().is_success() => {
                r.bytes().await.map_err(|e| e.without_url().to_string())
            }
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Err(e.without_url().to_string()),
        };
        let found = listed.and_then(|body| targets(&body, self.config.interval));
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                let url = without_userinfo(&self.config.url);
                tracing::warn!(%url, "reading the kubelet's pod list failed: {e}");
                return;
            }
        };
        let urls: Vec<String> = found.iter().map(|t| t.url.clone()).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|url| !urls.contains(url))
            .cloned()
            .collect();
        for url in gone {
            let Some(target) = self.running.remove(&url) else {
                continue;
            };
            tracing::info!(%url, "a scraped pod went away; its target stops and its series end");
            target.task.abort();
            self.board.remove(&url);
            let request = target
                .scraper
                .lock()
                .await
                .ended(crate::clock::unix_nanos());
            let sink = self.sink.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || sink(request)).await {
                tracing::error!("ending a pod's series failed: {e}");
            }
        }
        for target in found {
            if self.running.contains_key(&target.url) {
                continue;
            }
            match spawn(
                target.clone(),
                self.sink.clone(),
                &self.board,
                self.stopped.clone(),
            ) {
                Ok(running) => {
                    tracing::info!(url = %target.url, job = %target.job, "a pod to scrape appeared");
                    self.running.insert(target.url, running);
                }
                Err(e) => {
                    tracing::warn!(url = %target.url, "a discovered target cannot start: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotated_running_pods_become_targets_with_their_k8s_attributes() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "vllm-0", "namespace": "ml", "uid": "u1",
                          "labels": {"app.kubernetes.io/name": "vllm"},
                          "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}},
             "spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "podIP": "10.0.0.7"}},
            {"metadata": {"name": "tgi", "namespace": "ml",
                          "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "80",
                                          "prometheus.io/path": "/m", "prometheus.io/scheme": "https"}},
             "status": {"phase": "Running", "podIP": "fd00::7"}},
            {"metadata": {"name": "plain", "annotations": {"prometheus.io/port": "9100"}},
             "status": {"phase": "Running", "podIP": "10.0.0.8"}},
            {"metadata": {"name": "pending", "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "1"}},
             "status": {"phase": "Pending", "podIP": ""}},
            {"metadata": {"name": "noport", "annotations": {"prometheus.io/scrape": "true"}},
             "status": {"phase": "Running", "podIP": "10.0.0.9"}}
        ]});
        let found = targets(list.to_string().as_bytes(), None).expect("valid");
        let shown: Vec<(&str, &str)> = found
            .iter()
            .map(|t| (t.url.as_str(), t.job.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("http://10.0.0.7:8000/metrics", "vllm"),
                ("https://[fd00::7]:80/m", "tgi")
            ]
        );
        let attributes: Vec<(&str, &str)> = found[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("k8s.namespace.name", "ml"),
                ("k8s.node.name", "node-1"),
                ("k8s.pod.name", "vllm-0"),
                ("k8s.pod.uid", "u1")
            ]
        );
        assert_eq!(found[1].instance().as_deref(), Ok("[fd00::7]:80"));
        assert!(
            targets(b"{", None)
                .expect_err("bad")
                .starts_with("the pod list is not valid")
        );
    }
}
