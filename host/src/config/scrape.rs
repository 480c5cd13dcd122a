//! `[[scrape]]`: Prometheus endpoints the host scrapes on an interval.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, show_duration};

/// One `[[scrape]]` target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The endpoint, `http://host:port/metrics` (or `https://`).
    pub url: String,
    /// How often it is scraped (default 15 s).
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "show_duration"
    )]
    pub interval: Option<Duration>,
    /// How long one scrape may take (default 10 s, at most the interval).
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "show_duration"
    )]
    pub timeout: Option<Duration>,
    /// The `job` (the resource's `service.name`; default `scrape`).
    #[serde(default = "default_job")]
    pub job: String,
    /// More labels, as resource attributes of the target.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether a scraped `job` or `instance` label is kept as it is (default `false`: it is
    /// renamed `exported_job` / `exported_instance`, as Prometheus does).
    #[serde(default)]
    pub honor_labels: bool,
    /// Whether a sample's own timestamp is kept (default `true`; else the scrape's time).
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Samples one scrape may hold; more fail the scrape (default 0: no limit).
    #[serde(default)]
    pub sample_limit: usize,
    /// Labels one series may have; more fail the scrape (default 0: no limit).
    #[serde(default)]
    pub label_limit: usize,
    /// Bytes one body may hold, after decompression (default 64 MiB).
    #[serde(default = "default_body_size_limit")]
    pub body_size_limit: usize,
    /// Whether the host asks for a gzipped body (default `true`).
    #[serde(default = "yes")]
    pub gzip: bool,
}

fn default_job() -> String {
    "scrape".to_owned()
}

fn yes() -> bool {
    true
}

fn default_body_size_limit() -> usize {
    64 << 20
}

impl ScrapeConfig {
    /// A target at `url` with every default.
    pub fn new(url: String) -> Self {
        Self {
            url,
            interval: None,
            timeout: None,
            job: default_job(),
            labels: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            label_limit: 0,
            body_size_limit: default_body_size_limit(),
            gzip: true,
        }
    }

    /// How often it is scraped.
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(Duration::from_secs(15))
    }

    /// How long one scrape may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .unwrap_or(Duration::from_secs(10))
            .min(self.interval())
    }

    /// The target's `instance`: the URL's `host:port` (the scheme's port when it names none).
    pub fn instance(&self) -> Result<String, String> {
        let (rest, port) = match self.url.split_once("://") {
            Some(("http", rest)) => (rest, 80),
            Some(("https", rest)) => (rest, 443),
            _ => return Err(format!("`{}` is not an http:// or https:// URL", self.url)),
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("`{}` names no host", self.url));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        Ok(match has_port {
            true => authority.to_owned(),
            false => format!("{authority}:{port}"),
        })
    }

    /// The URL as logs and the API show it: without a `user:password@` part.
    pub fn shown_url(&self) -> String {
        without_userinfo(&self.url)
    }

    /// Checks the target: a URL with a host, a positive interval.
    pub fn check(&self) -> Result<(), String> {
        self.instance()?;
        if self.interval().is_zero() {
            return Err("`interval` must be more than 0s".into());
        }
        Ok(())
    }
}

/// `[kubernetes.pods]`: the pods of this node, from the kubelet's pod list, scraped when their
/// `prometheus.io/scrape` annotation says `"true"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodDiscoveryConfig {
    /// The kubelet's pod list: `https://<node>:10250/pods` (with `token_file`), or the read-only
    /// `http://<node>:10255/pods` where a cluster enables it; `""` (default) turns discovery off.
    pub url: String,
    /// The bearer token sent to the kubelet, read again at every refresh (default the service
    /// account's).
    pub token_file: String,
    /// The CA that signs the kubelet's certificate (default the service account's; a missing
    /// file means the system roots).
    pub ca_file: String,
    /// How often the pod list is read again (default 30 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub refresh: Option<Duration>,
    /// How often each discovered pod is scraped (default 15 s).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub interval: Option<Duration>,
}

impl Default for PodDiscoveryConfig {
    fn default() -> Self {
        let account = "/var/run/secrets/kubernetes.io/serviceaccount";
        Self {
            url: String::new(),
            token_file: format!("{account}/token"),
            ca_file: format!("{account}/ca.crt"),
            refresh: None,
            interval: None,
        }
    }
}

impl PodDiscoveryConfig {
    /// How often the pod list is read again.
    pub fn refresh(&self) -> Duration {
        self.refresh.unwrap_or(Duration::from_secs(30))
    }
}

/// `url` without the `user:password@` of its authority, which may carry a credential.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> ScrapeConfig {
        toml::from_str(&format!("url = \"{url}\"")).expect("valid")
    }

    #[test]
    fn a_target_takes_its_instance_from_the_url_and_defaults_the_rest() {
        let t = target("http://10.0.0.7:8000/metrics");
        assert_eq!(t.instance().as_deref(), Ok("10.0.0.7:8000"));
        assert_eq!(
            (t.interval(), t.timeout()),
            (Duration::from_secs(15), Duration::from_secs(10))
        );
        assert_eq!(
            (t.job.as_str(), t.honor_timestamps, t.gzip),
            ("scrape", true, true)
        );
        assert_eq!(
            target("https://vllm.svc/metrics").instance().as_deref(),
            Ok("vllm.svc:443")
        );
        assert_eq!(
            target("http://[::1]:9100/").instance().as_deref(),
            Ok("[::1]:9100")
        );
        assert_eq!(
            target("ftp://x/metrics").check(),
            Err("`ftp://x/metrics` is not an http:// or https:// URL".into())
        );
        assert_eq!(
            target("http:///metrics").check(),
            Err("`http:///metrics` names no host".into())
        );
        let secret = target("http://scraper:s3cret@10.0.0.7:8000/metrics?a=b@c");
        assert_eq!(secret.shown_url(), "http://10.0.0.7:8000/metrics?a=b@c");
        assert_eq!(secret.instance().as_deref(), Ok("10.0.0.7:8000"));
        let short: ScrapeConfig =
            toml::from_str("url = \"http://a:1/\"\ninterval = \"2s\"\ntimeout = \"5s\"")
                .expect("valid");
        assert_eq!(
            short.timeout(),
            Duration::from_secs(2),
            "never past the interval"
        );
    }
}
