//! End-to-end intake tests: real HTTP requests into a running host, checked on `/metrics`.

mod common;

use common::{Completed, exposition, post_ndjson, start, step};
use serde_json::json;
use wasmtel_tests::{gzipped, ndjson, post_events};

const MODEL1: [(&str, &str); 4] = [
    ("gen_ai_request_model", "m1"),
    ("inference_engine", "vllm"),
    ("inference_device_id", "dev-1"),
    ("inference_org_id", "org-1"),
];

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn genai_rules_yield_exact_counts_and_sums() {
    let host = start("").await;
    let ok = |total_ms, ttfc, tpot, input, output, thr| Completed {
        model: "m1",
        engine: "vllm",
        total_ms,
        ttfc_ms: Some(ttfc),
        tpot_ms: Some(tpot),
        input,
        output,
        throughput: Some(thr),
        error: None,
    };
    let a = ok(1500.0, 100.0, 20.0, 10, 50, 40.0);
    let b = ok(3000.0, 300.0, 30.0, 20, 100, 30.0);
    let failed = Completed {
        error: Some("timeout"),
        ttfc_ms: None,
        tpot_ms: None,
        throughput: None,
        input: 5,
        output: 0,
        total_ms: 5000.0,
        ..ok(0.0, 0.0, 0.0, 0, 0, 0.0)
    };
    let other = Completed {
        model: "m2",
        engine: "sglang",
        ..ok(250.0, 50.0, 10.0, 1, 4, 100.0)
    };

    // NDJSON (gzip), a JSON array and a single JSON object.
    let first = ndjson(&[
        step("generation_started", 1),
        step("chunk_produced", 1),
        a.event(1),
    ]);
    let r = post_events(
        host.intake_addr(),
        Some("application/x-ndjson"),
        first,
        true,
    )
    .await;
    assert_eq!((r.status, r.body.clone()), (202, json!({ "accepted": 3 })));
    let array = serde_json::to_vec(&json!([b.event(2), failed.event(3)])).expect("json");
    let r = post_events(host.intake_addr(), Some("application/json"), array, false).await;
    assert_eq!((r.status, r.body.clone()), (202, json!({ "accepted": 2 })));
    let single = serde_json::to_vec(&other.event(4)).expect("json");
    let r = post_events(host.intake_addr(), None, single, false).await;
    assert_eq!((r.status, r.body.clone()), (202, json!({ "accepted": 1 })));

    let m = exposition(&host).await;
    let dur = "gen_ai_server_request_duration_seconds";
    assert_eq!(m.value(&format!("{dur}_count"), &MODEL1), Some(2.0));
    assert!(close(m.value(&format!("{dur}_sum"), &MODEL1), 4.5));
    assert_eq!(
        m.value(&format!("{dur}_bucket"), &with(&MODEL1, &[("le", "1.28")])),
        Some(0.0)
    );
    assert_eq!(
        m.value(&format!("{dur}_bucket"), &with(&MODEL1, &[("le", "2.56")])),
        Some(1.0)
    );
    assert_eq!(
        m.value(&format!("{dur}_bucket"), &with(&MODEL1, &[("le", "5.12")])),
        Some(2.0)
    );
    assert_eq!(
        m.value(&format!("{dur}_bucket"), &with(&MODEL1, &[("le", "+Inf")])),
        Some(2.0)
    );
    let failed_labels = with(&MODEL1, &[("error_type", "timeout")]);
    assert_eq!(m.value(&format!("{dur}_count"), &failed_labels), Some(1.0));
    assert!(close(m.value(&format!("{dur}_sum"), &failed_labels), 5.0));

    // Time to first token and per output token: successful requests only.
    let ttft = "gen_ai_server_time_to_first_token_seconds";
    assert_eq!(m.value(&format!("{ttft}_count"), &MODEL1), Some(2.0));
    assert!(close(m.value(&format!("{ttft}_sum"), &MODEL1), 0.4));
    assert_eq!(m.value(&format!("{ttft}_count"), &failed_labels), None);
    assert!(close(
        m.value("gen_ai_server_time_per_output_token_seconds_sum", &MODEL1),
        0.05
    ));

    let usage = "gen_ai_client_token_usage";
    let input = with(&MODEL1, &[("gen_ai_token_type", "input")]);
    let output = with(&MODEL1, &[("gen_ai_token_type", "output")]);
    assert_eq!(m.value(&format!("{usage}_count"), &input), Some(3.0));
    assert_eq!(m.value(&format!("{usage}_sum"), &input), Some(35.0));
    assert_eq!(m.value(&format!("{usage}_sum"), &output), Some(150.0));

    assert_eq!(m.value("inference_requests_total", &MODEL1), Some(2.0));
    assert_eq!(
        m.value("inference_requests_total", &failed_labels),
        Some(1.0)
    );
    let m2 = [
        ("gen_ai_request_model", "m2"),
        ("inference_engine", "sglang"),
        ("inference_device_id", "dev-1"),
        ("inference_org_id", "org-1"),
    ];
    assert_eq!(m.value("inference_requests_total", &m2), Some(1.0));
    assert_eq!(
        m.value("inference_throughput_per_second_sum", &MODEL1),
        Some(70.0)
    );
    assert_eq!(m.total("inference_requests_total"), 4.0);

    assert_eq!(
        m.value("wasmtel_intake_events_accepted_total", &[]),
        Some(6.0)
    );
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("on")).await;
    assert!(
        !text.contains("request_id") && !text.contains("req-"),
        "request ids never become labels"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_malformed_line_rejects_the_whole_request() {
    let host = start("").await;
    let ok = Completed::ok("m1", "vllm");
    let mut body = ndjson(&[ok.event(1), ok.event(2), ok.event(3)]);
    body.extend_from_slice(
        b"{\"event_type\":\"generation_completed\",\"metrics\":{\"ttfc_ms\":\"fast\"}}\n",
    );
    let r = post_events(
        host.intake_addr(),
        Some("application/x-ndjson"),
        body,
        false,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["line"], 4);
    assert_eq!(r.body["index"], 3);
    assert_eq!(r.body["field"], "metrics.ttfc_ms");
    assert_eq!(
        r.body["error"],
        "invalid type: string \"fast\", expected f64"
    );

    let m = exposition(&host).await;
    assert_eq!(
        m.count("inference_requests_total"),
        0,
        "nothing of the request was recorded"
    );
    assert_eq!(m.count("wasmtel_intake_events_accepted_total"), 0);
    assert_eq!(
        m.value(
            "wasmtel_intake_requests_rejected_total",
            &[("reason", "malformed")]
        ),
        Some(1.0)
    );
    host.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_records_nothing() {
    let host = start("[intake]\nmax_body_bytes = 4096\n").await;
    let addr = host.intake_addr();
    let valid_line = b"{\"event_type\":\"generation_completed\",\"model\":\"m\",\"metrics\":{\"total_duration_ms\":5}}\n".to_vec();
    let oversize: Vec<u8> = valid_line
        .iter()
        .copied()
        .cycle()
        .take(valid_line.len() * 60)
        .collect();
    assert!(oversize.len() > 4096);
    // 3 MiB of spaces gzip to about 3 KB: under the limit as sent, 768 times over it inflated.
    let bomb = gzipped(&vec![b' '; 3 * 1024 * 1024]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    struct Case {
        name: &'static str,
        content_type: Option<&'static str>,
        encoding: Option<&'static str>,
        body: Vec<u8>,
        status: u16,
        error: &'static str,
    }
    let cases = [
        Case {
            name: "invalid json",
            content_type: Some("application/json"),
            encoding: None,
            body: b"{\"event_type\":".to_vec(),
            status: 400,
            error: "EOF while parsing a value",
        },
        Case {
            name: "wrong type",
            content_type: Some("application/json"),
            encoding: None,
            body: br#"{"event_type":"x","stream":"yes"}"#.to_vec(),
            status: 400,
            error: "invalid type: string \"yes\", expected a boolean",
        },
        Case {
            name: "missing event type",
            content_type: Some("application/json"),
            encoding: None,
            body: br#"{"model":"m"}"#.to_vec(),
            status: 400,
            error: "missing field `event_type`",
        },
        Case {
            name: "bad timestamp",
            content_type: Some("application/json"),
            encoding: None,
            body: br#"{"event_type":"x","timestamp":"noon"}"#.to_vec(),
            status: 400,
            error: "`noon` is not an RFC 3339 timestamp",
        },
        Case {
            name: "empty body",
            content_type: Some("application/x-ndjson"),
            encoding: None,
            body: Vec::new(),
            status: 400,
            error: "the body holds no events",
        },
        Case {
            name: "oversize",
            content_type: Some("application/x-ndjson"),
            encoding: None,
            body: oversize.clone(),
            status: 413,
            error: "the body declares 5040 bytes (Content-Length), over the limit of 4096 bytes",
        },
        Case {
            name: "oversize after gunzip",
            content_type: Some("application/x-ndjson"),
            encoding: Some("gzip"),
            body: gzipped(&oversize),
            status: 413,
            error: "the body is larger than the limit of 4096 bytes",
        },
        Case {
            name: "gzip bomb",
            content_type: Some("application/x-ndjson"),
            encoding: Some("gzip"),
            body: bomb,
            status: 413,
            error: "the body is larger than the limit of 4096 bytes",
        },
        Case {
            name: "not gzip",
            content_type: Some("application/json"),
            encoding: Some("gzip"),
            body: valid_line.clone(),
            status: 400,
            error: "the body is not valid gzip",
        },
        Case {
            name: "unknown content type",
            content_type: Some("text/csv"),
            encoding: None,
            body: valid_line.clone(),
            status: 415,
            error: "unsupported content type `text/csv`",
        },
        Case {
            name: "unknown encoding",
            content_type: Some("application/json"),
            encoding: Some("br"),
            body: valid_line.clone(),
            status: 415,
            error: "unsupported content encoding `br`",
        },
    ];
    let client = reqwest::Client::new();
    for case in &cases {
        let mut req = client
            .post(format!("http://{addr}/v1/events"))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(enc) = case.encoding {
            req = req.header("content-encoding", enc);
        }
        let response = req.send().await.expect("reachable");
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        let text = response.text().await.expect("body");
        let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON error body");
        let error = body["error"].as_str().expect("error field");
        assert!(error.starts_with(case.error), "{}: {error}", case.name);
    }
    let m = exposition(&host).await;
    assert_eq!(m.count("gen_ai_server_request_duration_seconds_count"), 0);
    assert_eq!(m.count("wasmtel_intake_events_accepted_total"), 0);
    for (reason, n) in [
        ("malformed", 5.0),
        ("too_large", 3.0),
        ("bad_gzip", 1.0),
        ("unsupported_media_type", 1.0),
        ("unsupported_encoding", 1.0),
    ] {
        assert_eq!(
            m.value(
                "wasmtel_intake_requests_rejected_total",
                &[("reason", reason)]
            ),
            Some(n),
            "{reason}"
        );
    }
    // The host still accepts good data afterwards.
    let r = post_events(addr, Some("application/x-ndjson"), valid_line, false).await;
    assert_eq!(r.status, 202);
    host.shutdown().await;
}

#[tokio::test]
async fn past_the_cardinality_limit_new_series_fold_into_the_overflow_series() {
    let host = start("[metrics]\ncardinality_limit = 3\n").await;
    let events: Vec<_> = (0..5u32)
        .map(|i| {
            let model = format!("model-{i}");
            Completed::ok(&model, "e").event(i)
        })
        .collect();
    let r = post_ndjson(&host, &events).await;
    assert_eq!(r.status, 202);
    // A further measurement for an admitted series still lands in it.
    let again = Completed::ok("model-0", "e").event(9);
    post_events(
        host.intake_addr(),
        Some("application/json"),
        serde_json::to_vec(&again).expect("json"),
        false,
    )
    .await;

    let m = exposition(&host).await;
    assert_eq!(
        m.count("inference_requests_total"),
        4,
        "3 series and the overflow series"
    );
    assert_eq!(
        m.value(
            "inference_requests_total",
            &[("otel_metric_overflow", "true")]
        ),
        Some(2.0)
    );
    let first = [
        ("gen_ai_request_model", "model-0"),
        ("inference_engine", "e"),
        ("inference_device_id", "dev-1"),
        ("inference_org_id", "org-1"),
    ];
    assert_eq!(m.value("inference_requests_total", &first), Some(2.0));
    assert_eq!(
        m.total("inference_requests_total"),
        6.0,
        "no measurement lost or double-counted"
    );
    // The self-metric counts folded measurements per metric: the 4th and 5th model here.
    for metric in ["inference.requests", "gen_ai.server.request.duration"] {
        assert_eq!(
            m.value("wasmtel_metrics_overflowed_total", &[("metric", metric)]),
            Some(2.0),
            "{metric}"
        );
    }
    host.shutdown().await;
}

#[tokio::test]
async fn configured_rules_and_the_forwarding_rule_set() {
    let host = start(
        r#"
[derive]
rule_set = "forward"
forward_prefix = "llm"

[[derive.rules]]
event_type = "chunk_produced"
instrument = "counter"
name = "inference.chunks"
unit = "{chunk}"
attributes = { "gen_ai.request.model" = "model", "tenant" = "attributes.tenant" }
"#,
    )
    .await;
    let events = [
        json!({"event_type":"chunk_produced","model":"m1","attributes":{"tenant":"t1"},"metrics":{"chunk_index":0}}),
        json!({"event_type":"chunk_produced","model":"m1","attributes":{"tenant":"t1"},"metrics":{"chunk_index":1}}),
        json!({"event_type":"generation_completed","model":"m1","engine":"vllm","metrics":{"ttfc_ms":12.5,"output_tokens":7}}),
        json!({"event_type":"generation_completed","model":"m1","engine":"vllm","metrics":{"ttfc_ms":30}}),
    ];
    let r = post_ndjson(&host, &events).await;
    assert_eq!(r.status, 202);
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "inference_chunks_total",
            &[("gen_ai_request_model", "m1"), ("tenant", "t1")]
        ),
        Some(2.0)
    );
    let completed = [
        ("event_type", "generation_completed"),
        ("model", "m1"),
        ("engine", "vllm"),
    ];
    assert_eq!(
        m.value("llm_ttfc_ms", &completed),
        Some(30.0),
        "a gauge keeps the last value"
    );
    assert_eq!(m.value("llm_output_tokens", &completed), Some(7.0));
    assert_eq!(
        m.value(
            "llm_chunk_index",
            &[("event_type", "chunk_produced"), ("model", "m1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.count("gen_ai_server_request_duration_seconds_count"),
        0,
        "the GenAI set is off"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn invalid_rules_stop_the_host_from_starting_with_a_reason() {
    let config = wasmtel::Config::from_toml(
        "[[derive.rules]]\nevent_type = \"x\"\ninstrument = \"counter\"\nname = \"c\"\nattributes = { k = \"prompt\" }\n",
    )
    .expect("syntactically valid");
    let err = wasmtel::Host::start(&config).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("attribute `k` reads `prompt`, which is not an event field"),
        "{err}"
    );
    let err = wasmtel::Config::from_toml(
        "[[derive.rules]]\nevent_type = \"x\"\ninstrument = \"sum\"\nname = \"c\"\n",
    )
    .expect_err("bad kind");
    assert!(err.contains("unknown variant `sum`"), "{err}");
}

#[tokio::test]
async fn a_counter_refuses_negative_measurements_and_counts_them() {
    let host = start(
        "[derive]\nrule_set = \"none\"\n[[derive.rules]]\nevent_type = \"refund\"\ninstrument = \"counter\"\nname = \"refunds\"\nfield = \"amount\"\n",
    )
    .await;
    let events: Vec<_> = [3.0, -2.0, 4.5]
        .iter()
        .map(|a| serde_json::json!({"event_type": "refund", "metrics": {"amount": a}}))
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    let m = exposition(&host).await;
    assert_eq!(m.value("refunds_total", &[]), Some(7.5));
    assert_eq!(
        m.value("wasmtel_metrics_rejected_total", &[("metric", "refunds")]),
        Some(1.0)
    );
    host.shutdown().await;
}

#[tokio::test]
async fn idle_series_expire_when_configured_and_come_back_from_zero() {
    let host = start(
        "[metrics]\nidle_series_expiry = \"200ms\"\n[derive]\nrule_set = \"none\"\n[[derive.rules]]\nevent_type = \"ping\"\ninstrument = \"counter\"\nname = \"pings\"\nattributes = { model = \"model\" }\n",
    )
    .await;
    let ping = |model: &str| serde_json::json!({"event_type": "ping", "model": model});
    post_ndjson(&host, &[ping("a"), ping("a")]).await;
    assert_eq!(
        exposition(&host)
            .await
            .value("pings_total", &[("model", "a")]),
        Some(2.0)
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while exposition(&host).await.count("pings_total") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    post_ndjson(&host, &[ping("a")]).await;
    assert_eq!(
        exposition(&host)
            .await
            .value("pings_total", &[("model", "a")]),
        Some(1.0),
        "a returning series starts again"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn an_event_names_its_pod_in_its_attributes_and_a_rule_puts_it_on_metrics() {
    let host = start(
        r#"
[derive]
rule_set = "none"

[[derive.rules]]
event_type = "chunk_produced"
instrument = "counter"
name = "inference.chunks"
attributes = { model = "model", "k8s.pod.name" = "attributes.k8s.pod.name", "k8s.namespace.name" = "attributes.k8s.namespace.name" }
"#,
    )
    .await;
    let pod = json!({"k8s.pod.name": "ranker-0", "k8s.namespace.name": "inference"});
    let events = [json!({"event_type": "chunk_produced", "model": "m1", "attributes": pod})];
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    let m = exposition(&host).await;
    let labels = [
        ("model", "m1"),
        ("k8s_pod_name", "ranker-0"),
        ("k8s_namespace_name", "inference"),
    ];
    assert_eq!(m.value("inference_chunks_total", &labels), Some(1.0));
    host.shutdown().await;
}
