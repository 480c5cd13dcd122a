//! Delivery for exporter plugins: the plugin encodes, the host sends.
//!
//! Requests go only to the integration's configured endpoint: a plugin
//! chooses the path of an HTTP request (never the scheme, host or port) and
//! the host adds the integration's credential headers after the plugin's own,
//! so a plugin can neither read nor override them. UDP datagrams go to the
//! endpoint's address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::UdpSocket;

use crate::config::ExporterConfig;
use crate::export::otlp::logs::LogQueue;
use crate::model::event::Event;
use crate::model::log::Entry;
use tokio::time::Instant;

use crate::config::TemporalityPreference;
use crate::export::delivery::breaker::Breaker;
use crate::export::delivery::{Delivered, Drain, Report, RetryPolicy, SendError, State, Status};
use crate::export::preset::Destination;
use crate::export::probe::{Diagnosis, probe};
use crate::export::queue::DropOldestQueue;
use crate::metrics::{DeltaTrackers, Registries};
use crate::model::Signal;
use crate::pipeline::EventSink;
use crate::plugins::CallError;
use crate::plugins::bindings::encoder::{HttpRequest, Outbound, Outcome, Response, Signals};
use crate::plugins::bindings::types::Temporality;
use crate::plugins::convert::{self, metric_batch};
use crate::plugins::reload::{Reloadable, Source, Versioned, next_version};
use crate::plugins::{ExporterPlugin, Loader, Transforms};
use crate::telemetry::SelfTelemetry;

/// Log records held for a logs exporter plugin; the oldest are dropped past this.
pub const LOG_QUEUE: usize = 65536;
/// Most log records per `encode-logs` call.
pub const LOG_BATCH: usize = 512;
/// How often queued log records are flushed to a logs exporter plugin.
pub const LOG_FLUSH: Duration = Duration::from_secs(1);

/// How an export went: delivered, refused (the batch is dropped) or failed (worth another try).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exported {
    Delivered,
    Refused,
    Failed,
}

/// Where an integration's data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `udp://host:port`.
    Udp(SocketAddr),
    /// An `http://` or `https://` base URL; request paths are appended to it.
    Http(reqwest::Url),
}

impl Endpoint {
    /// Parses `udp://host:port` or an `http(s)://` URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(addr) = text.strip_prefix("udp://") {
            use std::net::ToSocketAddrs;
            let resolved = addr
                .to_socket_addrs()
                .map_err(|e| format!("endpoint `{text}`: {e}"))?
                .next();
            return resolved
                .map(Endpoint::Udp)
                .ok_or_else(|| format!("endpoint `{text}`: no address"));
        }
        let url = reqwest::Url::parse(text).map_err(|e| format!("endpoint `{text}`: {e}"))?;
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(Endpoint::Http(url)),
            _ => Err(format!(
                "endpoint `{text}`: use udp://host:port or an http(s):// URL"
            )),
        }
    }
}

/// Why an outbound request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The path would leave the endpoint.
    #[error("plugin path `{0}` is not a path on the endpoint")]
    BadPath(String),
    /// A datagram for an HTTP endpoint, or a request for a UDP one.
    #[error("a {0} cannot be sent to this endpoint")]
    WrongKind(&'static str),
    /// The method or a header is not valid HTTP.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Builds the URL for a plugin's path: only a path (and query) on the endpoint's base.
pub fn url_for(base: &reqwest::Url, path: &str) -> Result<reqwest::Url, OutboundError> {
    let bad = || OutboundError::BadPath(path.to_owned());
    if !path.starts_with('/')
        || path.starts_with("//")
        || path.contains(['\\', '#'])
        || path.chars().any(char::is_control)
    {
        return Err(bad());
    }
    let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    let url = reqwest::Url::parse(&joined).map_err(|_| bad())?;
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_origin || !url.path().starts_with(base.path().trim_end_matches('/')) {
        return Err(bad());
    }
    Ok(url)
}

/// An integration served by an exporter plugin.
pub struct PluginExporter {
    name: String,
    overrides: toml::Table,
    current: Versioned<ExporterPlugin>,
    destination: Destination,
    interval: Duration,
    http: reqwest::Client,
    udp: Mutex<Option<Arc<UdpSocket>>>,
    delta: Mutex<Option<DeltaTrackers>>,
    logs: LogQueue,
    metrics_status: Status,
    logs_status: Status,
    breaker: Mutex<Breaker>,
    policy: RetryPolicy,
    registries: Arc<Registries>,
    telemetry: SelfTelemetry,
    transforms: Transforms,
}

impl PluginExporter {
    /// Binds `plugin` (whose component has SHA-256 `digest`) to the integration configured in `config`.
    pub fn new(
        plugin: ExporterPlugin,
        digest: String,
        config: &ExporterConfig,
        registries: Arc<Registries>,
        telemetry: SelfTelemetry,
        transforms: Transforms,
    ) -> Result<Self, String> {
        let destination = Destination::resolve(config, &|k| std::env::var(k).ok())?;
        for (signal, flag) in [
            (Signal::Metrics, Signals::METRICS),
            (Signal::Logs, Signals::LOGS),
        ] {
            if plugin.info().signals.contains(flag) && destination.endpoint(signal).is_none() {
                return Err(format!(
                    "the plugin exports {} but no endpoint for them is configured",
                    signal.as_str()
                ));
            }
        }
        let delta = delta_for(&plugin);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("wasmtel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            name: config.plugin.clone(),
            overrides: config.config.clone(),
            current: Versioned::new(plugin, digest),
            destination,
            interval: config.interval.unwrap_or(Duration::from_secs(10)),
            http,
            udp: Mutex::new(None),
            delta: Mutex::new(delta),
            logs: LogQueue::new(
                Arc::new(DropOldestQueue::new(config.queue.unwrap_or(LOG_QUEUE))),
                &registries.own().resource,
                telemetry.clone(),
            ),
            metrics_status: Status::default(),
            logs_status: Status::default(),
            breaker: Mutex::default(),
            policy: RetryPolicy::default(),
            registries,
            telemetry,
            transforms,
        })
    }

    fn status(&self, signal: Signal) -> &Status {
        match signal {
            Signal::Metrics => &self.metrics_status,
            Signal::Logs => &self.logs_status,
        }
    }

    /// The delivery report of each signal the plugin serving now exports.
    pub fn reports(&self) -> Vec<Report> {
        let signals = self.current().map(|p| p.info().signals);
        [
            (Signal::Metrics, Signals::METRICS),
            (Signal::Logs, Signals::LOGS),
        ]
        .into_iter()
        .filter(|(_, flag)| signals.is_some_and(|s| s.contains(*flag)))
        .map(|(signal, _)| {
            let (queued, dropped) = match signal {
                Signal::Metrics => (0, 0),
                Signal::Logs => (self.logs.queue().len(), self.logs.queue().dropped()),
            };
            Report {
                exporter: self.name.clone(),
                signal: signal.as_str(),
                status: self.status(signal).snapshot(),
                queued,
                dropped,
            }
        })
        .collect()
    }

    /// The names of the headers the host adds to every request (their values never leave the host).
    pub fn credential_headers(&self) -> Vec<String> {
        self.destination
            .credentials
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect()
    }

    /// Each signal's endpoint, as text.
    pub fn endpoints(&self) -> Vec<(Signal, String)> {
        [Signal::Metrics, Signal::Logs]
            .into_iter()
            .filter_map(|s| {
                let text = match self.destination.endpoint(s)? {
                    Endpoint::Udp(addr) => format!("udp://{addr}"),
                    Endpoint::Http(url) => url.to_string(),
                };
                Some((s, text))
            })
            .collect()
    }

    /// Tests the connection of each HTTP endpoint: a POST with the credentials and no body.
    pub async fn test(&self, timeout: Duration) -> Vec<(Signal, Diagnosis)> {
        let mut out = Vec::new();
        for signal in [Signal::Metrics, Signal::Logs] {
            if let Some(Endpoint::Http(url)) = self.destination.endpoint(signal) {
                let request = self
                    .http
                    .post(url.clone())
                    .headers(self.destination.credentials.clone());
                out.push((signal, probe(request, timeout).await));
            }
        }
        out
    }

    /// Resumes both signals if paused; returns whether either was.
    pub fn resume(&self) -> bool {
        let metrics = self.metrics_status.resume();
        let logs = self.logs_status.resume();
        metrics || logs
    }

    /// The export interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Exports metrics every interval, and flushes the log queue every [`LOG_FLUSH`], until
    /// the host drains.
    pub fn spawn(self: &Arc<Self>, mut drain: Drain) -> tokio::task::JoinHandle<()> {
        let exporter = self.clone();
        tokio::spawn(async move {
            let period = exporter.interval();
            let mut logs = tokio::time::interval(LOG_FLUSH);
            let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        exporter.export_metrics().await;
                    }
                    _ = logs.tick() => {
                        exporter.export_logs().await;
                    }
                    _ = drain.changed() => return,
                }
            }
        })
    }

    /// The plugin version serving now; `None` once unloaded.
    pub fn current(&self) -> Option<Arc<ExporterPlugin>> {
        self.current.get()
    }

    /// Swaps in a new version, resetting the delta state if it asks for another temporality;
    /// batches in flight finish on the old one.
    fn install(&self, plugin: Option<(ExporterPlugin, String)>) {
        let mut delta = self.delta.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.replace(plugin, |before, next| {
            if let Some(next) = next
                && before.map(|b| b.info().temporality) != Some(next.info().temporality)
            {
                *delta = delta_for(next);
            }
        });
    }

    /// Collects, encodes in the plugin, and sends one metric batch; `true` when all of it was delivered.
    pub async fn export_metrics(self: &Arc<Self>) -> bool {
        self.export(Signal::Metrics, Signals::METRICS, |me, plugin| {
            let mut delta = me.delta.lock().unwrap_or_else(PoisonError::into_inner);
            let mut outbound = Vec::new();
            for (i, producer) in me.registries.all().iter().enumerate() {
                let (res, registry) = producer.pair();
                let batch = metric_batch(registry, res, delta.as_mut().map(|d| d.get(i)));
                if i > 0 && batch.scopes.is_empty() {
                    continue;
                }
                if let Some(batch) = me.transforms.metrics(batch) {
                    outbound.extend(plugin.encode_metrics(&batch)?);
                }
            }
            Ok(outbound)
        })
        .await
            == Exported::Delivered
    }

    /// Sends the queued log records (up to [`LOG_BATCH`]) through the plugin; `true` when all of it was delivered.
    pub async fn export_logs(self: &Arc<Self>) -> bool {
        if self.logs_status.state() == State::Paused {
            return false; // the records stay queued until the integration is resumed
        }
        // The records stay queued (counting against its capacity) until delivered or refused.
        let (entries, last) = self.logs.queue().peek(LOG_BATCH);
        if entries.is_empty() {
            return true;
        }
        let exported = self
            .export(Signal::Logs, Signals::LOGS, move |me, plugin| {
                let mut outbound = Vec::new();
                for (origin, records) in crate::model::log::runs(entries) {
                    let batch = convert::otlp::log_batch(&records, &origin);
                    if let Some(batch) = me.transforms.logs(batch) {
                        outbound.extend(plugin.encode_logs(&batch)?);
                    }
                }
                Ok(outbound)
            })
            .await;
        if exported != Exported::Failed {
            self.logs.queue().ack(last);
        }
        exported == Exported::Delivered
    }

    /// Encodes through the current plugin on a blocking thread (plugin calls must not run on async
    /// workers), sends the result, and counts the batch.
    async fn export(
        self: &Arc<Self>,
        signal: Signal,
        wanted: Signals,
        encode: impl FnOnce(&Self, &ExporterPlugin) -> Result<Vec<Outbound>, CallError> + Send + 'static,
    ) -> Exported {
        let Some(plugin) = self.current() else {
            return Exported::Delivered;
        };
        if !plugin.info().signals.contains(wanted) {
            return Exported::Delivered;
        }
        if self.status(signal).state() == State::Paused {
            return Exported::Failed;
        }
        let Some(endpoint) = self.destination.endpoint(signal) else {
            tracing::warn!(
                plugin = plugin.name(),
                "no {} endpoint is configured; the batch is counted as failed",
                signal.as_str()
            );
            self.telemetry.export_batch(&self.name, signal, false);
            return Exported::Refused;
        };
        let (me, encoder) = (self.clone(), plugin.clone());
        let outbound = match tokio::task::spawn_blocking(move || encode(&me, &encoder)).await {
            Ok(Ok(outbound)) => outbound,
            Ok(Err(e)) => {
                tracing::warn!(
                    plugin = plugin.name(),
                    "{e}; the batch is counted as failed"
                );
                self.telemetry.export_batch(&self.name, signal, false);
                return Exported::Refused;
            }
            Err(e) => {
                tracing::error!(plugin = plugin.name(), "encoding task failed: {e}");
                self.telemetry.export_batch(&self.name, signal, false);
                return Exported::Refused;
            }
        };
        let (mut error, mut rejected, mut message) = (None::<SendError>, 0, None);
        for item in &outbound {
            match self.deliver(&plugin, endpoint, signal, item).await {
                Ok(delivered) => {
                    rejected += delivered.rejected;
                    message = delivered.message.or(message);
                }
                Err(e) => {
                    tracing::warn!(plugin = plugin.name(), "{e}");
                    // A retryable failure outweighs a refusal: the batch is worth another try.
                    if !matches!(error, Some(SendError::Retryable { .. })) {
                        error = Some(e);
                    }
                }
            }
        }
        let status = self.status(signal);
        let (state, exported) = match &error {
            None => (status.delivered(rejected, message), Exported::Delivered),
            Some(SendError::Rejected(e)) => (status.failed(e), Exported::Refused),
            Some(e @ SendError::Retryable { .. }) => {
                (status.failed(&e.to_string()), Exported::Failed)
            }
        };
        self.telemetry
            .export_batch(&self.name, signal, error.is_none());
        self.telemetry.export_state(&self.name, signal, state);
        exported
    }

    /// Sends one outbound item, retrying what the plugin classifies as retryable.
    async fn deliver(
        &self,
        plugin: &Arc<ExporterPlugin>,
        endpoint: &Endpoint,
        signal: Signal,
        item: &Outbound,
    ) -> Result<Delivered, SendError> {
        let wrong = |kind| SendError::Rejected(OutboundError::WrongKind(kind).to_string());
        match (item, endpoint) {
            (Outbound::Datagram(bytes), Endpoint::Udp(addr)) => self
                .send_datagram(*addr, bytes)
                .await
                .map(|()| Delivered::default())
                .map_err(SendError::retryable),
            (Outbound::Http(request), Endpoint::Http(base)) => {
                self.send_http(plugin, base, signal, request).await
            }
            (Outbound::Datagram(_), _) => Err(wrong("datagram")),
            (Outbound::Http(_), _) => Err(wrong("HTTP request")),
        }
    }

    async fn send_datagram(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), String> {
        let socket = self.socket(addr).await?;
        socket
            .send(bytes)
            .await
            .map(drop)
            .map_err(|e| format!("UDP send to {addr}: {e}"))
    }

    async fn socket(&self, addr: SocketAddr) -> Result<Arc<UdpSocket>, String> {
        if let Some(s) = self
            .udp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(s);
        }
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("UDP bind: {e}"))?;
        socket
            .connect(addr)
            .await
            .map_err(|e| format!("UDP connect {addr}: {e}"))?;
        let socket = Arc::new(socket);
        *self.udp.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket.clone());
        Ok(socket)
    }

    /// Waits while the breaker is open; the request that follows may be its probe.
    async fn breaker_allows(&self) {
        let wait = self
            .breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wait(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Tells the breaker whether the backend answered (`up`) or looked down.
    fn breaker_saw(&self, up: bool) {
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        if up {
            breaker.success();
        } else {
            breaker.failure(Instant::now());
        }
    }

    /// Counts a retry and waits as the policy (or the plugin's `after`, in ms) says.
    async fn retry_wait(&self, signal: Signal, retry: u32, after: Option<u64>, why: &str) {
        let state = self.status(signal).retrying(why);
        self.telemetry.export_retry(&self.name, signal, state);
        let delay = self.policy.delay(retry, after.map(Duration::from_millis));
        tokio::time::sleep(delay).await;
    }

    async fn send_http(
        &self,
        plugin: &Arc<ExporterPlugin>,
        base: &reqwest::Url,
        signal: Signal,
        request: &HttpRequest,
    ) -> Result<Delivered, SendError> {
        let refused = SendError::Rejected;
        let url = url_for(base, &request.path).map_err(|e| refused(e.to_string()))?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            refused(OutboundError::Invalid(format!("method `{}`", request.method)).to_string())
        })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &request.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| refused(format!("invalid request: header `{k}`")))?;
            if name == reqwest::header::HOST {
                continue;
            }
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| refused(format!("invalid request: value of `{k}`")))?;
            headers.append(name, value);
        }
        for (name, value) in &self.destination.credentials {
            headers.insert(name.clone(), value.clone());
        }
        let max = self.policy.max_retries;
        for attempt in 0..=max {
            self.breaker_allows().await;
            let sent = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .body(request.body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    self.breaker_saw(false);
                    if attempt == max {
                        return Err(SendError::retryable(format!("{url}: {e}")));
                    }
                    self.retry_wait(signal, attempt, None, &e.to_string()).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let response_headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let answer = Response {
                status,
                headers: response_headers,
                body,
            };
            let classifier = plugin.clone();
            // A plugin call, so off the async worker threads.
            let outcome = tokio::task::spawn_blocking(move || classifier.classify(&answer)).await;
            let outcome =
                outcome.unwrap_or_else(|_| Outcome::Reject("the classify task failed".into()));
            self.breaker_saw(!matches!(outcome, Outcome::Retry(_)));
            match outcome {
                Outcome::Success => return Ok(Delivered::default()),
                Outcome::Partial(p) => {
                    tracing::warn!(
                        plugin = plugin.name(),
                        "{url}: {} items rejected: {}",
                        p.rejected,
                        p.message
                    );
                    return Ok(Delivered {
                        rejected: p.rejected,
                        message: Some(p.message),
                    });
                }
                Outcome::Reject(reason) => {
                    return Err(refused(format!("{url}: rejected: {reason}")));
                }
                Outcome::Retry(after) if attempt < max => {
                    self.retry_wait(signal, attempt, after, &format!("HTTP {status}"))
                        .await;
                }
                Outcome::Retry(_) => {
                    return Err(SendError::retryable(format!(
                        "{url}: still failing after {max} retries (HTTP {status})"
                    )));
                }
            }
        }
        Err(SendError::retryable(format!("{url}: not delivered")))
    }
}

/// Delta trackers for exporters that asked for delta temporality.
fn delta_for(plugin: &ExporterPlugin) -> Option<DeltaTrackers> {
    (plugin.info().temporality == Temporality::Delta)
        .then(|| DeltaTrackers::new(TemporalityPreference::Delta))
}

impl PluginExporter {
    /// Whether the plugin serving now exports logs (checked under the read lock, without cloning it).
    fn wants_logs(&self) -> bool {
        self.current
            .peek(|p| p.is_some_and(|p| p.info().signals.contains(Signals::LOGS)))
    }
}

impl EventSink for PluginExporter {
    fn accept(&self, events: &[Event<'_>]) {
        if self.wants_logs() {
            self.logs.push_events(events);
        }
    }

    fn accept_logs(&self, entries: &[Entry]) {
        if self.wants_logs() {
            self.logs.push_entries(entries);
        }
    }
}

impl Reloadable for PluginExporter {
    fn plugin(&self) -> &str {
        &self.name
    }

    fn serving(&self) -> Option<String> {
        self.current.digest()
    }

    fn reload(&self, loader: &Loader, source: Source<'_>) -> Result<(), String> {
        let next = next_version(loader, &self.name, source, |component| {
            loader.exporter(&self.name, component, &self.overrides)
        })?;
        self.install(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_paths_stay_on_the_endpoint() {
        let base = reqwest::Url::parse("https://api.example.com/base/").expect("url");
        assert_eq!(
            url_for(&base, "/api/v2/series?x=1").expect("path").as_str(),
            "https://api.example.com/base/api/v2/series?x=1"
        );
        for bad in [
            "api",
            "//evil.com/x",
            "http://evil.com/",
            "/\\evil",
            "/x#frag",
            "/a\nb",
            "@evil.com/",
        ] {
            assert!(url_for(&base, bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("udp://127.0.0.1:8125"),
            Ok(Endpoint::Udp("127.0.0.1:8125".parse().expect("addr")))
        );
        assert!(matches!(
            Endpoint::parse("https://intake.example/"),
            Ok(Endpoint::Http(_))
        ));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("udp://nohost").is_err());
    }
}
