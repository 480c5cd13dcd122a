//! The Grafana dashboard `examples/grafana/wasmtel.json` against a real Prometheus (Debian's
//! `prometheus`, as CI installs it) scraping a host fed by `wasmtel demo`, a fake NVML library,
//! a working and a failing integration and a trapping plugin: every panel query and every
//! variable query must succeed and return data.

mod common;

use std::time::{Duration, Instant};

use common::{demo, node};
use serde_json::Value;
use wasmtel_tests::{Prometheus, Receiver};

const DASHBOARD: &str = include_str!("../examples/grafana/wasmtel.json");

/// A dashboard expression made plain PromQL: Grafana's variables set to "all".
fn plain(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$instance", ".*")
        .replace("$model", ".*")
        .replace("$gpu", ".*")
}

/// Every panel's title and query expressions, rows' panels included.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}: uses the dashboard's Prometheus variable",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has a query", panel["title"]);
        for t in targets {
            let title = panel["title"].as_str().expect("title").to_owned();
            out.push((title, t["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

/// A legend: `{{label}}` in `format` replaced by the series' labels.
fn legend(format: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = format.to_owned();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

const COLORS: [&str; 8] = [
    "#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#0a7d8c", "#9a6700", "#cf222e",
];

/// The dashboard as an HTML page of SVG panels placed on its 24-column grid (rows of 30 px,
/// 1280 px wide), each drawn from its queries' last 40 s; and the page's height.
async fn preview(dashboard: &Value, prometheus: &Prometheus) -> (String, u64) {
    const UNIT: f64 = 1280.0 / 24.0;
    let mut body = String::new();
    let mut height = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let grid = &panel["gridPos"];
        let at = |k: &str| grid[k].as_u64().unwrap_or(0);
        let (x, y, w, h) = (
            at("x") as f64 * UNIT,
            at("y") * 30 + 50,
            at("w") as f64 * UNIT,
            at("h") * 30,
        );
        height = height.max(y + h + 10);
        let title = panel["title"].as_str().unwrap_or("");
        if panel["type"] == "row" {
            body.push_str(&format!(
                "<h2 style=\"position:absolute;left:{x}px;top:{y}px;margin:4px 10px\">{title}</h2>"
            ));
            continue;
        }
        let mut lines = Vec::new();
        for t in panel["targets"].as_array().expect("targets") {
            let expr = plain(t["expr"].as_str().expect("expr"));
            let format = t["legendFormat"].as_str().unwrap_or("");
            for (labels, points) in prometheus.query_range(&expr, 40).await {
                lines.push((legend(format, &labels), points));
            }
        }
        let all: Vec<f64> = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
            .filter(|v| v.is_finite())
            .collect();
        let top = all.iter().copied().fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let t0 = lines
            .iter()
            .flat_map(|(_, p)| p.first().map(|(t, _)| *t))
            .fold(f64::INFINITY, f64::min);
        let t1 = lines
            .iter()
            .flat_map(|(_, p)| p.last().map(|(t, _)| *t))
            .fold(t0, f64::max);
        let span = (t1 - t0).max(1.0);
        let (pw, ph) = (w - 24.0, h as f64 - 70.0);
        let mut svg = String::new();
        let mut keys = String::new();
        for (i, (name, points)) in lines.iter().take(8).enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = points
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| format!("{:.1},{:.1}", (t - t0) / span * pw, ph - v / top * ph))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                path.join(" ")
            ));
            if i < 4 {
                keys.push_str(&format!(
                    "<span style=\"color:{color}\">■</span> {name} &nbsp;"
                ));
            }
        }
        body.push_str(&format!(
            "<div style=\"position:absolute;left:{x:.0}px;top:{y}px;width:{:.0}px;height:{}px;border:1px solid #ccd;border-radius:4px;padding:6px 10px;box-sizing:border-box;background:#fff\"><b>{title}</b><svg width=\"{pw:.0}\" height=\"{ph:.0}\" style=\"display:block;margin-top:6px;border-bottom:1px solid #ddd\">{svg}</svg><div style=\"font-size:11px;color:#555;white-space:nowrap;overflow:hidden\">{keys}</div></div>",
            w - 6.0,
            h - 6,
        ));
    }
    let html = format!(
        "<!doctype html><meta charset=utf-8><body style=\"font:13px system-ui,sans-serif;margin:0;background:#f4f5f8\"><h1 style=\"font-size:16px;margin:12px\">{} — each panel's queries as Prometheus answered them over 40 s (a preview of examples/grafana/wasmtel.json, drawn by the test)</h1>{body}</body>",
        dashboard["title"].as_str().unwrap_or("")
    );
    (html, height)
}

/// `label_values(selector, label)` as PromQL that lists the label's values.
fn variable_query(definition: &str) -> String {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a label_values query: {definition}"));
    let (selector, label) = inner.rsplit_once(',').expect("selector, label");
    format!("count by ({}) ({})", label.trim(), plain(selector.trim()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_variable_query_returns_data_from_a_real_prometheus() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:?}");
    let variables: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| variable_query(v["definition"].as_str().expect("definition")))
        .collect();
    assert_eq!(variables.len(), 3, "instance, model and GPU");

    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    // A dead port: the datadog integration fails, retries and, with a queue of one, drops.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let datadog = format!(
        r#"[[exporters]]
plugin = "datadog"
endpoint = "http://{dead}"
api_key = "k"
delivery.interval = "200ms"
delivery.metrics_queue = 1
delivery.retry.initial_backoff = "50ms"
delivery.retry.max_backoff = "100ms"
"#
    );
    let host = node(dir.path(), &receiver, &datadog).await;
    let Some(prometheus) = Prometheus::start(host.prometheus_addr()).await else {
        host.shutdown().await;
        return;
    };
    let started = Instant::now();
    let demo = demo(&host, 11);
    // One request refused whole, so that the intake's refusals have a series.
    let (status, _, _) = wasmtel_tests::post(
        host.intake_addr(),
        "/v1/events",
        Some("application/x-ndjson"),
        b"{not json".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 400);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut empty: Vec<(String, String)> = queries
        .iter()
        .map(|(title, expr)| (title.clone(), plain(expr)))
        .chain(variables.iter().map(|v| ("variable".to_owned(), v.clone())))
        .collect();
    while !empty.is_empty() {
        let mut still = Vec::new();
        for (title, promql) in empty {
            match prometheus.try_query(&promql).await {
                Err(e) => panic!("panel {title}: {promql} fails: {e}"),
                Ok(result) if result.is_empty() => still.push((title, promql)),
                Ok(_) => {}
            }
        }
        empty = still;
        assert!(
            empty.is_empty() || Instant::now() < deadline,
            "queries without data: {empty:#?}"
        );
        if !empty.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(!demo.is_finished(), "the demo ran throughout");

    // A picture of the dashboard's panels, laid out as its grid says and drawn from what this
    // Prometheus answers over the last half minute (Grafana itself is not installable here).
    if let Some(browser) = wasmtel_tests::chromium() {
        tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
        let (html, height) = preview(&dashboard, &prometheus).await;
        let dir = wasmtel_tests::artefacts();
        let page = dir.join("dashboard.html");
        std::fs::write(&page, html).expect("preview page");
        let png = dir.join("dashboard.png");
        let (url, size, shot) = (
            format!("file://{}", page.display()),
            format!("--window-size=1280,{height}"),
            format!("--screenshot={}", png.display()),
        );
        tokio::task::spawn_blocking(move || {
            wasmtel_tests::headless(browser, &url, &[&size, &shot])
        })
        .await
        .expect("browser");
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
            "{}",
            png.display()
        );
    }
    demo.abort();
    host.shutdown().await;
}
