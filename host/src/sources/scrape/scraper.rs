//! One scrape target on its interval: its body fetched (the formats negotiated as Prometheus
//! does, gzip asked for, size and time bounded), parsed, translated, and handed to the host with
//! the target's own series, Prometheus' names: `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`, `scrape_series_added`.

use std::io::Read as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, metric, number_data_point,
};

use super::exposition::{ACCEPT, Format, Parser};
use super::translate::{Options, Target, Translator};
use crate::config::ScrapeConfig;

/// Where a scrape's request goes: the host's metrics intake.
pub type Sink = Arc<dyn Fn(ExportMetricsServiceRequest) + Send + Sync>;

/// The last scrape of a target, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Health {
    /// The endpoint.
    pub url: String,
    /// The target's `job`.
    pub job: String,
    /// The target's `instance`.
    pub instance: String,
    /// Whether the last scrape succeeded.
    pub up: bool,
    /// When it ended, in Unix nanoseconds (0 before the first).
    pub last_scrape_unix_nano: u64,
    /// How long it took.
    pub duration_seconds: f64,
    /// Samples its body held.
    pub samples: usize,
    /// Series it held (a histogram or summary is one).
    pub series: usize,
    /// Why it failed.
    pub error: Option<String>,
}

/// Every target's last scrape, by URL, as the API lists them: configured targets for the life
/// of the host, discovered ones while their pod runs.
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<std::sync::RwLock<std::collections::BTreeMap<String, Arc<Mutex<Health>>>>>);

impl Board {
    fn insert(&self, health: Arc<Mutex<Health>>) {
        let url = health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .url
            .clone();
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url, health);
    }

    /// Forgets the target at `url` (its pod went).
    pub fn remove(&self, url: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(url);
    }

    /// Every target's last scrape, by URL.
    pub fn list(&self) -> Vec<Health> {
        let board = self.0.read().unwrap_or_else(PoisonError::into_inner);
        board
            .values()
            .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }
}

/// One target: its settings, client and translator, and its last health.
#[derive(Debug)]
pub struct Scraper {
    config: ScrapeConfig,
    target: Target,
    client: reqwest::Client,
    translator: Translator,
    health: Arc<Mutex<Health>>,
}

impl Scraper {
    /// A scraper of `config` (checked at load: its URL has a host).
    pub fn new(config: ScrapeConfig) -> Result<Self, String> {
        let instance = config.instance()?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout())
            .build()
            .map_err(|e| format!("cannot build the scrape client: {e}"))?;
        let target = Target {
            job: config.job.clone(),
            instance: instance.clone(),
            attributes: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let translator = Translator::new(Options {
            honor_labels: config.honor_labels,
            honor_timestamps: config.honor_timestamps,
            label_limit: config.label_limit,
        });
        let health = Arc::new(Mutex::new(Health {
            url: config.shown_url(),
            job: config.job.clone(),
            instance,
            ..Health::default()
        }));
        Ok(Self {
            config,
            target,
            client,
            translator,
            health,
        })
    }

    /// Its health, shared with the API.
    fn health(&self) -> Arc<Mutex<Health>> {
        self.health.clone()
    }

    /// Scrapes once at `now` (Unix nanoseconds): the request holding what it read and the
    /// target's own series (only those, with `up` 0, when it failed).
    pub async fn scrape(&mut self, now: u64) -> ExportMetricsServiceRequest {
        let began = Instant::now();
        let result = self.fetch().await.and_then(|(body, format)| {
            let parser = Parser::new(&body, format);
            let scraped = self
                .translator
                .translate(&self.target, parser, now)
                .map_err(|e| e.to_string())?;
            let limit = self.config.sample_limit;
            if limit > 0 && scraped.samples > limit {
                return Err(format!(
                    "{} samples, more than sample_limit ({limit}) allows",
                    scraped.samples
                ));
            }
            Ok(scraped)
        });
        let took = began.elapsed();
        // A failed scrape ends every series the last one had, as Prometheus marks them stale.
        let (mut scraped, error) = match result {
            Ok(scraped) => (scraped, None),
            Err(e) => (self.translator.ended(&self.target, now), Some(e)),
        };
        let up = error.is_none();
        if let Some(error) = &error {
            tracing::debug!(url = %self.config.shown_url(), "scrape failed: {error}");
        }
        let own = [
            ("up", if up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", took.as_secs_f64()),
            ("scrape_samples_scraped", scraped.samples as f64),
            (
                "scrape_samples_post_metric_relabeling",
                scraped.samples as f64,
            ),
            ("scrape_series_added", scraped.added as f64),
        ];
        if let Some(scope) = scraped
            .request
            .resource_metrics
            .first_mut()
            .and_then(|r| r.scope_metrics.first_mut())
        {
            scope
                .metrics
                .extend(own.iter().map(|(name, value)| gauge(name, *value, now)));
        }
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        health.up = up;
        health.last_scrape_unix_nano = now;
        health.duration_seconds = took.as_secs_f64();
        (health.samples, health.series) = (scraped.samples, scraped.series);
        health.error = error;
        drop(health);
        scraped.request
    }

    /// The request that ends every series the target had: it went away.
    pub fn ended(&mut self, now: u64) -> ExportMetricsServiceRequest {
        self.translator.ended(&self.target, now).request
    }

    /// The target's body, as text, and its format.
    async fn fetch(&self) -> Result<(String, Format), String> {
        let mut request = self
            .client
            .get(&self.config.url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.config.timeout().as_secs_f64()),
            );
        if self.config.gzip {
            request = request.header(reqwest::header::ACCEPT_ENCODING, "gzip");
        }
        let mut response = request.send().await.map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let format = Format::of(header(reqwest::header::CONTENT_TYPE).as_deref());
        let gzipped = header(reqwest::header::CONTENT_ENCODING).is_some_and(|e| e == "gzip");
        let limit = self.config.body_size_limit;
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            raw.extend_from_slice(&chunk);
            if raw.len() > limit {
                return Err(format!("the body is over body_size_limit ({limit} bytes)"));
            }
        }
        if gzipped {
            let mut plain = Vec::new();
            let read = flate2::read::GzDecoder::new(raw.as_slice())
                .take(limit as u64 + 1)
                .read_to_end(&mut plain)
                .map_err(|e| format!("the gzipped body is not valid: {e}"))?;
            if read > limit {
                return Err(format!("the body is over body_size_limit ({limit} bytes)"));
            }
            raw = plain;
        }
        let body = String::from_utf8(raw).map_err(|_| "the body is not UTF-8".to_owned())?;
        Ok((body, format))
    }
}

/// A fetch error in a line: a timeout or connection failure by name; never the URL, whose
/// `user:password@` may carry a credential.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "the scrape timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        format!("the scrape failed: {e}")
    }
}

/// A gauge of one point with no attributes.
fn gauge(name: &str, value: f64, now: u64) -> Metric {
    Metric {
        name: name.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// Starts one task per target, each scraping on its interval into `sink` until `stopped`, its
/// health on `board`.
pub fn start(
    configs: &[ScrapeConfig],
    sink: &Sink,
    board: &Board,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    for config in configs {
        let running = spawn(config.clone(), sink.clone(), board, stopped.clone())?;
        tasks.push(running.task);
    }
    Ok(tasks)
}

/// A running target: its task and its scraper.
#[derive(Debug)]
pub struct Running {
    /// The task scraping on the interval.
    pub task: tokio::task::JoinHandle<()>,
    /// The scraper, to end its series when the target goes.
    pub scraper: Arc<tokio::sync::Mutex<Scraper>>,
}

/// Starts one target's task: a scrape now and every interval into `sink` until `stopped`, its
/// health on `board`.
pub fn spawn(
    config: ScrapeConfig,
    sink: Sink,
    board: &Board,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<Running, String> {
    let interval: Duration = config.interval();
    let scraper = Scraper::new(config)?;
    board.insert(scraper.health());
    let scraper = Arc::new(tokio::sync::Mutex::new(scraper));
    let running = scraper.clone();
    let task = crate::ticker::every(interval, stopped, move || {
        let (scraper, sink) = (scraper.clone(), sink.clone());
        async move {
            let request = scraper
                .lock()
                .await
                .scrape(crate::clock::unix_nanos())
                .await;
            // Recording may call view plugins: off the async workers.
            let recorded = tokio::task::spawn_blocking(move || sink(request)).await;
            if let Err(e) = recorded {
                tracing::error!("recording a scrape failed: {e}");
            }
        }
    });
    Ok(Running {
        task,
        scraper: running,
    })
}
