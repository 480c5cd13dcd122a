//! The demo load generator: realistic inference events sent to a running host.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What `wasmtel demo` sends, and where.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The host's intake base URL.
    pub target: String,
    /// Simulated requests per second.
    pub rate: f64,
    /// Stop after this long (`None`: until `requests` or forever).
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Seed for reproducible data.
    pub seed: u64,
    /// Print a progress line to stderr.
    pub progress: bool,
}

/// What a demo run sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Simulated requests.
    pub requests: u64,
    /// Events accepted by the host.
    pub events: u64,
    /// Requests that carried an error.
    pub errors: u64,
}

/// The host refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The host could not be reached.
    #[error("cannot reach {url}: {reason} (is `wasmtel serve` running?)")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host answered with an error.
    #[error("{url} answered {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The response body.
        body: String,
    },
}

const MODELS: &[(&str, f64)] = &[
    ("llama-3.1-8b", 85.0),
    ("qwen2.5-7b", 90.0),
    ("mistral-7b", 95.0),
    ("llama-3.1-70b", 28.0),
];
const ENGINES: &[&str] = &["vllm", "sglang", "llamacpp", "tgi"];
const ERRORS: &[&str] = &["timeout", "out_of_memory", "cancelled"];
const ORGS: &[&str] = &["org_acme", "org_globex", "org_initech"];

/// Generates the events of one simulated request: started, chunks if streaming, completed.
pub fn request_events(rng: &mut fastrand::Rng, seq: u64, device: &str) -> (Vec<Value>, bool) {
    let (model, speed) = MODELS[rng.usize(..MODELS.len())];
    let engine = ENGINES[rng.usize(..ENGINES.len())];
    let org = ORGS[rng.usize(..ORGS.len())];
    let stream = rng.bool();
    let input = rng.u32(20..2000);
    let output = rng.u32(10..800);
    let throughput = speed * (0.85 + 0.3 * rng.f64());
    let ttfc = 20.0 + f64::from(input) * 0.05 + rng.f64() * 150.0;
    let error = (rng.f64() < 0.05).then(|| ERRORS[rng.usize(..ERRORS.len())]);
    let per_token = round3(1000.0 / throughput);
    let (throughput, ttfc) = (round3(throughput), round3(ttfc));
    let total = round3(ttfc + f64::from(output) * per_token);
    let now = time::OffsetDateTime::now_utc();
    let ts = |offset_ms: f64| {
        (now + Duration::from_secs_f64(offset_ms / 1000.0))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let base = json!({
        "device_id": device, "org_id": org, "model": model, "engine": engine,
        "request_id": format!("req_{seq:08}"), "stream": stream,
        "trace_id": format!("{:032x}", rng.u128(1..)), "span_id": format!("{:016x}", rng.u64(1..)),
    });
    let event = |event_type: &str, at: f64, metrics: Value| {
        let mut e = base.clone();
        e["event_type"] = json!(event_type);
        e["timestamp"] = json!(ts(at));
        e["metrics"] = metrics;
        e
    };
    let mut events = vec![event(
        "generation_started",
        0.0,
        json!({ "input_tokens": input }),
    )];
    if stream {
        for i in 0..rng.u32(1..=3) {
            events.push(event(
                "chunk_produced",
                ttfc + f64::from(i) * per_token,
                json!({ "chunk_index": i }),
            ));
        }
    }
    let mut done = match error {
        None => event(
            "generation_completed",
            total,
            json!({
                "ttfc_ms": ttfc, "throughput_tok_s": throughput, "total_duration_ms": total,
                "input_tokens": input, "output_tokens": output,
                "chunk_latency_avg_ms": per_token, "chunk_latency_p99_ms": round3(per_token * 1.6),
            }),
        ),
        Some(_) => event(
            "generation_completed",
            ttfc * 3.0,
            json!({
                "total_duration_ms": round3(ttfc * 3.0), "input_tokens": input, "output_tokens": 0,
            }),
        ),
    };
    if let Some(e) = error {
        done["error"] = json!(e);
    }
    events.push(done);
    (events, error.is_some())
}

/// Rounds to microseconds (three decimals of a millisecond), as engines report.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Sends simulated traffic in NDJSON batches every 100 ms until the duration or request count is reached.
pub async fn run(opts: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let url = format!("{}/v1/events", opts.target.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let device = format!("demo-{:04x}", rng.u16(..));
    let started = Instant::now();
    let mut summary = DemoSummary::default();
    let mut owed = 0.0;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = Instant::now();
    loop {
        ticker.tick().await;
        let done_by_time = opts.duration.is_some_and(|d| started.elapsed() >= d);
        let done_by_count = opts.requests.is_some_and(|n| summary.requests >= n);
        if done_by_time || done_by_count {
            break;
        }
        owed += opts.rate / 10.0;
        let mut body = String::new();
        let mut batch = (0u64, 0u64, 0u64);
        while owed >= 1.0 && opts.requests.is_none_or(|n| summary.requests + batch.0 < n) {
            owed -= 1.0;
            let (events, failed) = request_events(&mut rng, summary.requests + batch.0, &device);
            batch.0 += 1;
            batch.1 += events.len() as u64;
            batch.2 += u64::from(failed);
            for e in events {
                body.push_str(&e.to_string());
                body.push('\n');
            }
        }
        if body.is_empty() {
            continue;
        }
        let response = client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| DemoError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status != 202 {
            let body = response.text().await.unwrap_or_default();
            return Err(DemoError::Refused { url, status, body });
        }
        summary.requests += batch.0;
        summary.events += batch.1;
        summary.errors += batch.2;
        if opts.progress && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            print_progress(&summary, started.elapsed());
        }
    }
    if opts.progress {
        print_progress(&summary, started.elapsed());
        eprintln!();
    }
    Ok(summary)
}

fn print_progress(s: &DemoSummary, elapsed: Duration) {
    let rate = s.requests as f64 / elapsed.as_secs_f64().max(0.001);
    eprint!(
        "\rdemo: {} requests ({rate:.0}/s), {} events accepted, {} failed requests  ",
        s.requests, s.events, s.errors
    );
    let _ = std::io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Event;

    #[test]
    fn generated_events_parse_and_carry_consistent_metrics() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut errors = 0;
        for seq in 0..500 {
            let (events, failed) = request_events(&mut rng, seq, "d");
            errors += u32::from(failed);
            let completed = events.last().expect("completed").to_string();
            let e: Event<'_> = serde_json::from_str(&completed).expect("parses");
            assert_eq!(&*e.event_type, "generation_completed");
            assert_eq!(e.error.is_some(), failed);
            assert!(e.metrics.get("total_duration_ms").is_some_and(|t| t > 0.0));
            assert_eq!(events.len() > 2, e.stream == Some(true));
        }
        assert!((5..60).contains(&errors), "about 5% errors, got {errors}");
    }
}
