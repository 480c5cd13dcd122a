//! The status page in a real headless browser (Debian's chromium): it signs in with the token
//! from the URL, reads the admin API and shows integrations, intake and plugins, and — fed by
//! `wasmtel demo` and a fake NVML library — live charts per model and per GPU, at laptop and
//! phone sizes, with screenshots kept as test artefacts.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Completed, demo, node, post_ndjson, start};
use serde_json::json;
use wasmtel_tests::{Receiver, artefacts, chromium, headless};

/// The page's DOM after its scripts ran, as headless chromium renders it.
fn rendered(browser: &str, url: &str) -> String {
    headless(browser, url, &["--dump-dom"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_integrations_intake_and_plugins_live() {
    let Some(browser) = chromium() else { return };
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    let ok = Completed::ok("m1", "vllm");
    post_ndjson(&host, &[ok.event(1), ok.event(2), ok.event(3)]).await;
    receiver
        .wait_until("the forwarded events", |r| !r.logs.is_empty())
        .await;
    let connected = || {
        host.integrations().iter().any(|r| {
            r.signal == "logs" && r.status.state == wasmtel::export::delivery::State::Connected
        })
    };
    while !connected() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let token = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let base = format!("http://{}/", host.admin_addr().expect("admin on"));
    // The page may talk to its own listener only, and no other site may frame it.
    let response = reqwest::get(&base).await.expect("the page");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let policy = header("content-security-policy");
    assert!(
        policy.starts_with("default-src 'none';")
            && policy.contains("connect-src 'self'")
            && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert_eq!(
        (header("x-frame-options"), header("referrer-policy")),
        ("DENY".to_owned(), "no-referrer".to_owned())
    );

    let page = tokio::task::spawn_blocking({
        let (browser, url) = (browser.to_owned(), format!("{base}#token={}", token.trim()));
        move || rendered(&browser, &url)
    })
    .await
    .expect("browser");
    assert!(
        page.contains(
            "<td>otlp</td><td>otlp</td><td>logs</td><td class=\"state connected\">connected</td>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<td>Events accepted</td><td class=\"num\">3</td>"),
        "{page}"
    );
    assert!(
        page.contains("<p id=\"updated\">updated "),
        "the page refreshed from the API: {page}"
    );
    assert!(
        page.contains("<p id=\"error\" hidden=\"\"></p>"),
        "no error shown: {page}"
    );

    // Without the token the page asks for it and shows nothing.
    let page = tokio::task::spawn_blocking({
        let browser = browser.to_owned();
        move || rendered(&browser, &base)
    })
    .await
    .expect("browser");
    assert!(
        page.contains("<p id=\"updated\">sign in with the admin token</p>"),
        "{page}"
    );
    assert!(!page.contains("<td>otlp</td>"), "{page}");
    host.shutdown().await;
}

/// The number in `attribute="…"` right after each occurrence of `marker` in `page`.
fn numbers_after(page: &str, marker: &str, attribute: &str) -> Vec<u64> {
    page.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &page[at..];
            let from = rest.find(&format!("{attribute}=\""))? + attribute.len() + 2;
            rest[from..].split('"').next()?.parse().ok()
        })
        .collect()
}

/// A PNG's width and height, from its header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

const MODELS: [&str; 4] = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b", "llama-3.1-70b"];
const MODEL_CHARTS: [&str; 7] = [
    "requests", "errors", "ttft_p95", "ttft_p50", "tpot_p95", "tpot_p50", "tokens",
];
const GPU_CHARTS: [&str; 5] = [
    "gpu-util",
    "gpu-memory",
    "gpu-power",
    "gpu-temperature",
    "gpu-throttle",
];
/// Five requests of a model, as a server instrumented with the GenAI conventions reports them.
const OTLP_MODEL: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"model-server"}}]},"scopeMetrics":[{"scope":{"name":"server"},"metrics":[{"name":"gen_ai.server.request.duration","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[{"attributes":[{"key":"gen_ai.request.model","value":{"stringValue":"served-over-otlp"}}],"startTimeUnixNano":"1","timeUnixNano":"2","count":"5","sum":2.5,"bucketCounts":["5","0"],"explicitBounds":[1.0]}]}}]}]}]}"#;
const SECRET: &str = "Bearer status-page-canary-5ecret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_charts_the_demo_per_model_and_the_gpus_at_laptop_and_phone_sizes() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    let host = node(dir.path(), &receiver, "").await;
    let api = Api::new(&host, &data);
    let spec = json!({"kind": "metrics", "type": "otlp", "name": "team-collector",
                      "endpoint": receiver.endpoint(), "headers": {"authorization": SECRET}});
    let (status, created, text) = api
        .send("POST", "/api/v1/integrations", &spec.to_string())
        .await;
    assert_eq!(status, 201, "{text}");
    let stored_id = created["id"].as_str().expect("id").to_owned();
    // One that cannot deliver (a port nothing listens on), holding the same secret.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let spec = json!({"kind": "metrics", "type": "otlp", "name": "backup-collector",
                      "endpoint": format!("http://{dead}"), "headers": {"authorization": SECRET},
                      "delivery": {"interval": "200ms"}});
    let (status, _, text) = api
        .send("POST", "/api/v1/integrations", &spec.to_string())
        .await;
    assert_eq!(status, 201, "{text}");
    let url = format!(
        "http://{}/#token={}",
        host.admin_addr().expect("admin on"),
        api.token
    );

    // Before any event: the empty state names the command that produces data.
    let page = tokio::task::spawn_blocking({
        let (browser, url) = (browser.to_owned(), url.clone());
        move || rendered(&browser, &url)
    })
    .await
    .expect("browser");
    assert!(
        page.contains("<div id=\"empty\">"),
        "the empty state shows: {page}"
    );
    assert!(page.contains("<code>wasmtel demo</code>"), "{page}");
    assert!(
        page.contains("<section id=\"models-section\" hidden=\"\">"),
        "{page}"
    );

    // `wasmtel demo` at 40 requests/s, running while the page is looked at.
    let demo = demo(&host, 7);
    // A model server sending its own semantic-convention metrics over OTLP shows up as well.
    let (status, _, body) = wasmtel_tests::post(
        host.intake_addr(),
        "/v1/metrics",
        Some("application/json"),
        OTLP_MODEL.as_bytes().to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, h, _) = api.get("/api/v1/history").await;
        let with_rates = h["models"].as_array().map_or(0, |m| {
            m.iter()
                .filter(|m| {
                    MODELS.contains(&m["model"].as_str().unwrap_or(""))
                        && m["requests_per_second"]
                            .as_array()
                            .is_some_and(|v| v.iter().filter(|x| x.is_number()).count() >= 4)
                })
                .count()
        });
        if with_rates == MODELS.len() && h["gpus"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "the history did not fill: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list, _) = api.get("/api/v1/integrations").await;
        let failing = list["integrations"].as_array().is_some_and(|all| {
            all.iter().any(|i| {
                i["name"] == "backup-collector" && i["signals"][0]["last_error"].is_string()
            })
        });
        if failing {
            break;
        }
        assert!(Instant::now() < deadline, "no error yet: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The history API: the latest points on request, and a bad query named.
    let (status, last3, _) = api.get("/api/v1/history?points=3").await;
    assert_eq!(status, 200);
    assert_eq!(
        last3["times_unix_ms"].as_array().map(Vec::len),
        Some(3),
        "{last3}"
    );
    assert_eq!(last3["interval_seconds"], 0.5);
    assert_eq!(last3["capacity"], 7200, "1 h at 500 ms");
    let (status, bad, _) = api.get("/api/v1/history?points=lots").await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid history query") && e.contains("points")),
        "{bad}"
    );
    let (_, s, _) = api.get("/api/v1/status").await;
    assert!(
        s["intake"]["events_accepted"].is_u64(),
        "counts are integers: {s}"
    );
    assert_eq!(s["about"]["version"], env!("CARGO_PKG_VERSION"));

    let shots = artefacts();
    for (w, h) in [(1280, 800), (390, 844)] {
        let size = format!("--window-size={w},{h}");
        let page = tokio::task::spawn_blocking({
            let (browser, url, size) = (browser.to_owned(), url.clone(), size.clone());
            move || headless(&browser, &url, &[&size, "--dump-dom"])
        })
        .await
        .expect("browser");
        let at = format!("at {w}x{h}");
        assert!(
            page.contains("data-fits=\"true\""),
            "{at}, nothing overflows sideways: {page}"
        );
        assert!(
            page.contains("<div id=\"empty\" hidden=\"\">"),
            "{at}: {page}"
        );
        for chart in MODEL_CHARTS {
            let points = numbers_after(&page, &format!("data-chart=\"{chart}\""), "data-points");
            assert!(
                points.len() == 1 && points[0] >= 4 * 3,
                "{at}: chart {chart} has points for every model: {points:?}"
            );
        }
        assert!(
            page.contains("<td>served-over-otlp</td>"),
            "{at}: the model reported over OTLP"
        );
        for model in MODELS {
            assert!(
                page.contains(&format!("<td>{model}</td>")),
                "{at}: {model} in the table"
            );
            assert!(
                page.contains(&format!("data-series=\"{model}\"")),
                "{at}: {model} in the charts"
            );
        }
        for chart in GPU_CHARTS {
            let points = numbers_after(&page, &format!("data-chart=\"{chart}\""), "data-points");
            assert!(
                points.len() == 2 && points.iter().all(|p| *p >= 3),
                "{at}: {chart} for both GPUs: {points:?}"
            );
        }
        for gpu in [
            "GPU 0 · NVIDIA H100 80GB HBM3",
            "GPU 1 · NVIDIA H100 80GB HBM3",
        ] {
            assert!(page.contains(gpu), "{at}: {gpu}");
        }
        assert!(page.contains("Clocks throttled now: "), "{at}");
        assert!(
            page.contains("<td>team-collector</td><td>otlp</td><td>metrics</td>"),
            "{at}: by name: {page}"
        );
        assert!(
            page.contains("<td>otlp</td><td>otlp</td><td>logs</td>"),
            "{at}: {page}"
        );
        assert!(
            !page.contains(&format!("<td>{stored_id}</td>")),
            "{at}: no row is only a UUID"
        );
        assert!(!page.contains("canary"), "{at}: no secret on the page");
        let row = |name: &str| {
            let at = page
                .find(&format!("<tr><td>{name}</td>"))
                .unwrap_or_else(|| panic!("a row for {name}"));
            page[at..].split("</tr>").next().unwrap_or("").to_owned()
        };
        let working = row("team-collector");
        assert!(
            working.contains(" s ago</td>") && working.matches("/s</td>").count() == 3,
            "{at}: last success and sent/failed/dropped rates: {working}"
        );
        let failing = row("backup-collector");
        let error = failing
            .split("<td class=\"error-text\">")
            .nth(1)
            .and_then(|e| e.split("</td>").next())
            .unwrap_or("");
        assert!(
            !error.is_empty() && failing.contains("<td>never</td>"),
            "{at}: its last error, and no success: {failing}"
        );
        assert!(
            page.contains("<td>tagger</td><td>view</td>"),
            "{at}: {page}"
        );
        assert!(
            page.contains("trap, "),
            "{at}: the plugin's last trap: {page}"
        );
        assert!(
            page.contains(&format!(
                "<h1 id=\"title\">wasmtel on {}</h1>",
                s["about"]["host_name"].as_str().expect("host")
            )),
            "{at}"
        );
        assert!(
            page.contains(&format!("<dd>{}</dd>", env!("CARGO_PKG_VERSION"))),
            "{at}: the version"
        );
        assert!(
            page.contains(&format!("<dd>{}</dd>", data.display())),
            "{at}: the data dir"
        );
        for addr in [host.intake_addr(), host.admin_addr().expect("admin on")] {
            assert!(page.contains(&format!("<dd>{addr}</dd>")), "{at}: {addr}");
        }
        assert!(page.contains("<dt>up</dt>"), "{at}: the uptime");
        assert!(
            page.contains(&format!(
                "<dd>http://{}/metrics</dd>",
                host.prometheus_addr().expect("on")
            )),
            "{at}"
        );

        let png = shots.join(format!("status-{w}x{h}.png"));
        let shot = format!("--screenshot={}", png.display());
        tokio::task::spawn_blocking({
            let (browser, url) = (browser.to_owned(), url.clone());
            move || headless(&browser, &url, &[&size, &shot])
        })
        .await
        .expect("browser");
        let bytes = std::fs::read(&png).expect("screenshot written");
        assert_eq!(png_size(&bytes), (w, h), "{}", png.display());
    }
    // The whole page in one picture, for the README.
    let png = shots.join("status-full.png");
    let shot = format!("--screenshot={}", png.display());
    tokio::task::spawn_blocking({
        let (browser, url) = (browser.to_owned(), url.clone());
        move || headless(&browser, &url, &["--window-size=1280,2400", &shot])
    })
    .await
    .expect("browser");
    assert_eq!(
        png_size(&std::fs::read(&png).expect("screenshot")),
        (1280, 2400)
    );
    assert!(
        !demo.is_finished(),
        "the demo ran throughout: {:?}",
        demo.await
    );
    demo.abort();
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_status_page_shows_its_own_integrations_only() {
    let Some(browser) = chromium() else { return };
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"service.namespace\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    let api = Api::new(&host, data.path());
    let mut tokens = Vec::new();
    for name in ["team-a", "team-b"] {
        let (status, created, _) = api
            .send(
                "POST",
                "/api/v1/tenants",
                &json!({ "name": name }).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let admin = created["admin_token"].as_str().expect("token").to_owned();
        let body = json!({ "kind": "logs", "type": "otlp", "name": format!("{name}-collector"), "endpoint": receiver.endpoint() });
        let response = reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/integrations",
                host.admin_addr().expect("admin")
            ))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("admin");
        assert_eq!(response.status().as_u16(), 201);
        tokens.push(admin);
    }
    let base = format!("http://{}/", host.admin_addr().expect("admin on"));
    let page = tokio::task::spawn_blocking({
        let (browser, url) = (browser.to_owned(), format!("{base}#token={}", tokens[0]));
        move || rendered(&browser, &url)
    })
    .await
    .expect("browser");
    assert!(page.contains("<td>team-a-collector</td>"), "{page}");
    assert!(
        !page.contains("team-b-collector"),
        "another tenant's integration: {page}"
    );
    assert!(
        !page.contains("<td>otlp</td><td>otlp</td>"),
        "the operator's integration: {page}"
    );
    assert!(
        page.contains("the host's intake totals are the operator's"),
        "{page}"
    );
    host.shutdown().await;
}
