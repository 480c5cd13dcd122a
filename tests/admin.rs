//! The admin API over real HTTP: bearer token, integrations (configured ones read-only, never a
//! credential value), test connection, resume, plugins, status, health.

mod common;

use common::{Api, Completed, post_ndjson, start};
use wasmtel_tests::Receiver;

const CANARY: &str = "Bearer canary-5ecret-do-not-leak";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_configured_integrations_without_showing_secrets() {
    let logs = wasmtel_tests::capture_logs();
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n[otlp.headers]\nauthorization = \"{CANARY}\"\n[otlp.delivery.retry]\nmax_retries = 0\ninitial_backoff = \"1ms\"\nbreaker_cooldown = \"1ms\"\n",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    let api = Api::new(&host, data.path());
    let mut seen = String::new();

    // Health is open; the API is not.
    let (status, body, _) = api.call("GET", "/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(api.call("GET", "/readyz", None).await.0, 200);
    let (status, body, _) = api.call("GET", "/api/v1/integrations", None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("missing bearer token"))
    );
    let (status, body, _) = api.call("GET", "/api/v1/status", Some("wrong")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid bearer token"))
    );

    let (status, body, text) = api.get("/api/v1/integrations").await;
    seen.push_str(&text);
    assert_eq!(status, 200);
    let otlp = &body["integrations"][0];
    assert_eq!(otlp["id"], "otlp");
    assert_eq!(
        (otlp["source"].as_str(), otlp["read_only"].as_bool()),
        (Some("config"), Some(true))
    );
    assert_eq!(otlp["headers_set"], serde_json::json!(["authorization"]));
    assert_eq!(
        otlp["signals"][0]["state"], "pending",
        "nothing was exported yet"
    );

    let (status, body, text) = api.post("/api/v1/integrations/otlp/test").await;
    seen.push_str(&text);
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)));
    assert_eq!(body["results"][0]["signal"], "metrics");
    assert!(
        body["results"][1]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("connected: HTTP 200"))
    );

    // Ten failed exports pause it; the API shows why and resumes it.
    receiver.answer(503);
    let ok = Completed::ok("m1", "vllm");
    for seq in 0..10 {
        post_ndjson(&host, &[ok.event(seq)]).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while host
            .integrations()
            .iter()
            .find(|r| r.signal == "logs")
            .expect("logs")
            .status
            .failed
            < seq as u64 + 1
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "export {seq} did not fail"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let (_, body, text) = api.get("/api/v1/integrations/otlp").await;
    seen.push_str(&text);
    let logs_signal = &body["signals"][1];
    assert_eq!(logs_signal["state"], "paused");
    // Paused at the tenth failure; batches already in flight may fail after it.
    let reason = logs_signal["paused_reason"].as_str().unwrap_or_default();
    let failures: u64 = reason
        .strip_prefix("paused after ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(
        (10..=14).contains(&failures)
            && reason
                .ends_with(" consecutive failed exports; last error: HTTP 503 Service Unavailable"),
        "{reason}"
    );
    receiver.answer(200);
    let (status, body, _) = api.post("/api/v1/integrations/otlp/resume").await;
    assert_eq!((status, body["resumed"].as_bool()), (200, Some(true)));
    receiver
        .wait_until("the queued records", |r| !r.logs.is_empty())
        .await;

    // Configured integrations are read-only; unknown ones are named.
    let (status, body, _) = api
        .call("DELETE", "/api/v1/integrations/otlp", Some(&api.token))
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        body["error"],
        "integration `otlp` comes from the config file and is read-only; change it there"
    );
    let (status, body, _) = api.post("/api/v1/integrations/nope/test").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no integration `nope`"))
    );

    let (status, body, text) = api.get("/api/v1/status").await;
    seen.push_str(&text);
    assert_eq!(status, 200);
    assert_eq!(body["integrations"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        body["integrations"][0]["signals"].as_array().map(Vec::len),
        Some(3),
        "one integration, by name, with its three signals"
    );
    assert_eq!(body["integrations"][0]["name"], "otlp");
    let (status, body, _) = api.get("/api/v1/plugins").await;
    assert_eq!(
        (status, body["plugins"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    host.shutdown().await;
    assert!(
        !seen.contains("canary"),
        "a credential value appeared in an API response"
    );
    assert!(
        !logs.text().contains("canary"),
        "a credential value appeared in the log"
    );
}

async fn host_with(data: &std::path::Path) -> wasmtel::Host {
    start(&format!(
        "data_dir = \"{}\"\n[delivery.retry]\ninitial_backoff = \"1ms\"\n",
        data.display()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_integrations_are_created_disabled_and_survive_a_restart_with_their_credentials() {
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = host_with(data.path()).await;
    let api = Api::new(&host, data.path());
    let mut seen = String::new();
    let ok = Completed::ok("m1", "vllm");

    let create = format!(
        r#"{{"kind":"logs","type":"otlp","name":"collector logs","preset":"custom","endpoint":"{}","headers":{{"authorization":"{CANARY}"}}}}"#,
        receiver.endpoint()
    );
    let (status, body, text) = api.send("POST", "/api/v1/integrations", &create).await;
    seen.push_str(&text);
    assert_eq!(status, 201, "{text}");
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (body["source"].as_str(), body["read_only"].as_bool()),
        (Some("store"), Some(false))
    );
    assert_eq!(body["headers_set"], serde_json::json!(["authorization"]));
    assert_eq!(
        body["endpoints"][0][1],
        format!("{}/v1/logs", receiver.endpoint())
    );

    post_ndjson(&host, &[ok.event(1)]).await;
    receiver
        .wait_until("the first record", |r| r.logs.len() == 1)
        .await;
    receiver.with(|r| assert_eq!(r.headers[0]["authorization"], CANARY));

    // Bad requests name the field; nothing is stored.
    let (status, body, _) = api
        .send(
            "POST",
            "/api/v1/integrations",
            r#"{"kind":"logs","type":"otlp","name":"x","endpoint":"ftp://x"}"#,
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("endpoint")));
    assert_eq!(
        body["error"],
        "invalid integration: `endpoint`: must be an http:// or https:// URL with a host"
    );
    let (status, body, _) = api.send("POST", "/api/v1/integrations", "{not json").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| {
        e.starts_with("invalid integration: the body is not a valid integration")
    }));

    // Disabled: configuration kept, nothing sent; enabled again without re-entering anything.
    let (status, body, _) = api
        .send("POST", &format!("/api/v1/integrations/{id}/disable"), "")
        .await;
    assert_eq!(
        (status, body["signals"][0]["state"].as_str()),
        (200, Some("disabled")),
        "{body}"
    );
    post_ndjson(&host, &[ok.event(2)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.with(|r| r.headers.len()),
        1,
        "a disabled integration sends nothing"
    );
    let (status, body, _) = api
        .send("POST", &format!("/api/v1/integrations/{id}/enable"), "")
        .await;
    assert_eq!((status, body["enabled"].as_bool()), (200, Some(true)));
    post_ndjson(&host, &[ok.event(3)]).await;
    receiver
        .wait_until("the third record", |r| r.logs.len() == 2)
        .await;

    let (status, body, text) = api.post(&format!("/api/v1/integrations/{id}/test")).await;
    seen.push_str(&text);
    assert_eq!(status, 200);
    assert!(
        body["results"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("connected: HTTP 200"))
    );
    let (status, body, _) = api
        .send(
            "PATCH",
            &format!("/api/v1/integrations/{id}"),
            r#"{"name":"renamed"}"#,
        )
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("renamed")));
    let (status, body, _) = api
        .send(
            "PATCH",
            &format!("/api/v1/integrations/{id}"),
            r#"{"kind":"metrics"}"#,
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("kind")));
    host.shutdown().await;

    // A new process on the same data directory runs it, credentials and all.
    let host = host_with(data.path()).await;
    let api = Api::new(&host, data.path());
    let (_, body, text) = api.get("/api/v1/integrations").await;
    seen.push_str(&text);
    let listed = &body["integrations"][0];
    assert_eq!(
        (listed["id"].as_str(), listed["name"].as_str()),
        (Some(id.as_str()), Some("renamed"))
    );
    // Two records and the connection test's request so far.
    let before = receiver.with(|r| r.logs.len());
    post_ndjson(&host, &[ok.event(4)]).await;
    receiver
        .wait_until("a record after the restart", |r| {
            r.logs.len() == before + 1 && r.request_ids().last().is_some_and(|id| id == "req-4")
        })
        .await;
    receiver.with(|r| assert_eq!(r.headers.last().expect("request")["authorization"], CANARY));

    let (status, _, _) = api
        .send("DELETE", &format!("/api/v1/integrations/{id}"), "")
        .await;
    assert_eq!(status, 204);
    let (status, body, _) = api.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some(format!("no integration `{id}`").as_str()))
    );
    host.shutdown().await;

    assert!(
        !seen.contains("canary"),
        "a credential value appeared in an API response"
    );
    let db = std::fs::read(data.path().join("wasmtel.db")).expect("db");
    assert!(
        !db.windows(6).any(|w| w == b"canary"),
        "credentials are sealed at rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_plugin_integration_s_plugin_leaves_the_list_when_it_stops() {
    let data = tempfile::tempdir().expect("tempdir");
    let host = host_with(data.path()).await;
    let api = Api::new(&host, data.path());
    let listed = |body: &serde_json::Value| -> Vec<String> {
        body["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["integration"].as_str().map(str::to_owned))
            .collect()
    };
    let body =
        r#"{"kind":"metrics","type":"statsd","name":"gone-soon","endpoint":"udp://127.0.0.1:9"}"#;
    let (status, created, text) = api.send("POST", "/api/v1/integrations", body).await;
    assert_eq!(status, 201, "{text}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, plugins, _) = api.get("/api/v1/plugins").await;
    assert_eq!(listed(&plugins), ["gone-soon"]);
    let (status, _, _) = api
        .send("POST", &format!("/api/v1/integrations/{id}/disable"), "")
        .await;
    assert_eq!(status, 200);
    let (_, plugins, _) = api.get("/api/v1/plugins").await;
    assert!(listed(&plugins).is_empty(), "disabled: {plugins}");
    api.send("POST", &format!("/api/v1/integrations/{id}/enable"), "")
        .await;
    let (_, plugins, _) = api.get("/api/v1/plugins").await;
    assert_eq!(listed(&plugins), ["gone-soon"]);
    let (status, _, _) = api
        .send("DELETE", &format!("/api/v1/integrations/{id}"), "")
        .await;
    assert_eq!(status, 204);
    let (_, plugins, _) = api.get("/api/v1/plugins").await;
    assert!(listed(&plugins).is_empty(), "deleted: {plugins}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_plugin_integration_runs_the_plugin_against_its_endpoint() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    let data = tempfile::tempdir().expect("tempdir");
    let host = host_with(data.path()).await;
    let api = Api::new(&host, data.path());
    let body = format!(
        r#"{{"kind":"metrics","type":"statsd","name":"dogstatsd","endpoint":"udp://127.0.0.1:{port}"}}"#
    );
    let (status, created, text) = api.send("POST", "/api/v1/integrations", &body).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(
        created["endpoints"][0][1],
        format!("udp://127.0.0.1:{port}")
    );
    post_ndjson(&host, &[Completed::ok("m1", "vllm").event(1)]).await;
    host.collect_now().await;
    let mut buf = [0u8; 65536];
    let n = socket
        .recv(&mut buf)
        .expect("a datagram from the stored statsd integration");
    let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        datagram.contains("|c") || datagram.contains("|d"),
        "{datagram}"
    );

    let (status, body, _) = api
        .send("POST", "/api/v1/integrations", r#"{"kind":"metrics","type":"no-such-plugin","name":"x","endpoint":"udp://127.0.0.1:9"}"#)
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot start")),
        "{body}"
    );
    let (_, list, _) = api.get("/api/v1/integrations").await;
    assert_eq!(
        list["integrations"].as_array().map(Vec::len),
        Some(1),
        "nothing stored for the refused one"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_prometheus_integration_serves_a_prefixed_scrape_path() {
    let data = tempfile::tempdir().expect("tempdir");
    let host = host_with(data.path()).await;
    let api = Api::new(&host, data.path());
    let (status, created, text) = api
        .send(
            "POST",
            "/api/v1/integrations",
            r#"{"kind":"metrics","type":"prometheus","name":"edge","config":{"prefix":"edge_"}}"#,
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["endpoints"][0][1], format!("/metrics/{id}"));
    post_ndjson(&host, &[Completed::ok("m1", "vllm").event(1)]).await;
    let scrape = |path: String| {
        let url = format!(
            "http://{}{path}",
            host.prometheus_addr().expect("prometheus on")
        );
        async move {
            let r = reqwest::get(url).await.expect("scrape");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let (status, body) = scrape(format!("/metrics/{id}")).await;
    assert_eq!(status, 200);
    let exposition = wasmtel_tests::Exposition::parse(&body);
    assert_eq!(
        exposition.total("edge_wasmtel_intake_events_accepted_total"),
        1.0
    );
    assert_eq!(
        exposition.count("wasmtel_intake_events_accepted_total"),
        0,
        "every name prefixed"
    );
    assert!(body.contains("# TYPE edge_gen_ai_server_request_duration_seconds histogram"));

    api.send("POST", &format!("/api/v1/integrations/{id}/disable"), "")
        .await;
    assert_eq!(scrape(format!("/metrics/{id}")).await.0, 404);
    let (status, body, _) = api
        .send(
            "POST",
            "/api/v1/integrations",
            r#"{"kind":"metrics","type":"prometheus","name":"bad","config":{"prefix":"9x"}}"#,
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("config")));
    host.shutdown().await;
}
