//! Traces end to end: spans taken over OTLP/HTTP (protobuf, JSON, gzip) and OTLP/gRPC from
//! clients nobody here wrote (the Python SDK's span exporters, `opentelemetry-otlp`'s tonic
//! exporter), checked, refused by name, and forwarded exactly once to the collector behind the
//! host over HTTP and gRPC, through failures and a restart with a disk queue.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{exposition, start};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use wasmtel_tests::{Receiver, attrs, kv};

/// A valid span of trace `trace` (never zero), numbered `n`, with one attribute and one event.
fn span(trace: u8, n: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![n.max(1); 8],
        name: format!("op-{n}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 2_000 + u64::from(n),
        attributes: vec![kv("n", &n.to_string())],
        events: vec![span::Event {
            time_unix_nano: 1_500,
            name: "tick".into(),
            ..Default::default()
        }],
        status: Some(Status {
            code: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A traces request of `spans` from service `service`.
fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "app.tracer".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// POSTs an encoded traces request as protobuf to the intake at `addr`: status, content type
/// and answer.
async fn post_proto(addr: std::net::SocketAddr, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let protobuf = Some("application/x-protobuf");
    wasmtel_tests::post(addr, "/v1/traces", protobuf, body, false).await
}

/// POSTs an OTLP/JSON traces request to the intake at `addr`: status, content type and answer.
async fn post_json(addr: std::net::SocketAddr, json: &serde_json::Value) -> (u16, String, Vec<u8>) {
    let body = json.to_string().into_bytes();
    wasmtel_tests::post(addr, "/v1/traces", Some("application/json"), body, false).await
}

/// A host forwarding everything to `receiver`, with `extra` config.
async fn forwarding(receiver: &Receiver, extra: &str) -> wasmtel::Host {
    start(&format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n{extra}",
        receiver.endpoint()
    ))
    .await
}

/// Every span the receiver holds by name, with its service.
fn received(receiver: &Receiver) -> Vec<(String, String)> {
    receiver.with(|r| {
        let mut out = Vec::new();
        for rs in r.traces.iter().flat_map(|t| &t.resource_spans) {
            let service = rs
                .resource
                .as_ref()
                .map(|res| attrs(&res.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                out.push((service.clone(), s.name.clone()));
            }
        }
        out.sort();
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_http_protobuf_json_and_gzip_and_grpc_reach_the_collector_exactly_as_sent() {
    let receiver = Receiver::start().await;
    let host = forwarding(&receiver, "").await;
    let addr = host.intake_addr();
    // Protobuf, gzipped.
    let proto = request("shop", vec![span(7, 1), span(7, 2)]);
    let (status, ct, body) = wasmtel_tests::post(
        addr,
        "/v1/traces",
        Some("application/x-protobuf"),
        proto.encode_to_vec(),
        true,
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    let answer = ExportTraceServiceResponse::decode(body.as_slice()).expect("response");
    assert_eq!(answer.partial_success, None, "nothing refused");
    // OTLP/JSON: hex ids, integer kind, string times.
    let json = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeSpans": [{"scope": {"name": "js"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173", "name": "GET /", "kind": 2,
            "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
            "attributes": [{"key": "http.route", "value": {"stringValue": "/"}}],
            "status": {"code": 2, "message": "boom"}}]}]}]});
    let (status, _, body) = post_json(addr, &json).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), r#"{"partialSuccess":null}"#);
    // gRPC, from the generated client.
    let grpc = format!("http://{}", host.grpc_addr().expect("gRPC"));
    let mut client = TraceServiceClient::connect(grpc).await.expect("gRPC");
    let answer = client
        .export(request("batch", vec![span(9, 3)]))
        .await
        .expect("gRPC export")
        .into_inner();
    assert_eq!(answer.partial_success, None);

    receiver
        .wait_until("four spans", |r| r.spans().len() == 4)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        received(&receiver),
        [
            ("batch".to_owned(), "op-3".to_owned()),
            ("shop".to_owned(), "op-1".to_owned()),
            ("shop".to_owned(), "op-2".to_owned()),
            ("web".to_owned(), "GET /".to_owned()),
        ]
    );
    receiver.with(|r| {
        // The spans are forwarded byte for byte: what the sender encoded arrives.
        let shop = r
            .traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .find(|rs| rs.scope_spans[0].spans[0].name == "op-1")
            .expect("shop's spans");
        assert_eq!(shop, &proto.resource_spans[0]);
        let web = r
            .spans()
            .into_iter()
            .find(|s| s.name == "GET /")
            .expect("web");
        assert_eq!(hex(&web.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex(&web.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(web.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(web.status.as_ref().map(|s| s.code), Some(2));
        // Trace requests carry no metrics or logs.
        assert!(r.logs.is_empty());
    });
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "wasmtel_intake_otlp_items_total",
            &[("signal", "traces"), ("outcome", "accepted")]
        ),
        Some(4.0)
    );
    host.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spans_are_refused_by_name_their_siblings_kept_and_limits_walked_before_decoding() {
    let receiver = Receiver::start().await;
    let host = forwarding(
        &receiver,
        "[intake.limits]\nspan_events = 2\nspan_links = 1\n",
    )
    .await;
    let addr = host.intake_addr();
    let short_trace = Span {
        trace_id: vec![1; 3],
        ..span(1, 2)
    };
    let zero_span = Span {
        span_id: vec![0; 8],
        ..span(1, 3)
    };
    let backwards = Span {
        start_time_unix_nano: 5_000,
        end_time_unix_nano: 4_000,
        ..span(1, 4)
    };
    let bad_parent = Span {
        parent_span_id: vec![1; 4],
        ..span(1, 5)
    };
    let bad_link = Span {
        links: vec![span::Link {
            trace_id: vec![1; 16],
            span_id: vec![],
            ..Default::default()
        }],
        ..span(1, 6)
    };
    let body = request(
        "svc",
        vec![
            span(1, 1),
            short_trace,
            zero_span,
            backwards,
            bad_parent,
            bad_link,
        ],
    )
    .encode_to_vec();
    let (status, _, answer) = post_proto(addr, body).await;
    assert_eq!(status, 200);
    let answer = ExportTraceServiceResponse::decode(answer.as_slice()).expect("response");
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 5);
    assert_eq!(
        partial.error_message,
        "a span's trace id is not 16 bytes, or is all zero"
    );
    // Each refusal on its own names its reason.
    for (bad, why) in [
        (
            Span {
                span_id: vec![0; 8],
                ..span(1, 3)
            },
            "a span's span id is not 8 bytes, or is all zero",
        ),
        (
            Span {
                start_time_unix_nano: 5,
                end_time_unix_nano: 4,
                ..span(1, 4)
            },
            "a span ends before it starts",
        ),
        (
            Span {
                parent_span_id: vec![1; 4],
                ..span(1, 5)
            },
            "a span's parent span id is not 8 bytes",
        ),
        (
            Span {
                links: vec![span::Link {
                    trace_id: vec![1; 16],
                    ..Default::default()
                }],
                ..span(1, 6)
            },
            "a span's link has a trace id that is not 16 bytes or a span id that is not 8",
        ),
    ] {
        let body = request("svc", vec![bad]).encode_to_vec();
        let (_, _, answer) = post_proto(addr, body).await;
        let answer = ExportTraceServiceResponse::decode(answer.as_slice()).expect("response");
        assert_eq!(answer.partial_success.expect(why).error_message, why);
    }
    // JSON: a span whose id is not hex, or whose time is not an integer, is refused alone.
    let json = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "zz", "spanId": "eee19b7ec3c1b174", "name": "bad-hex"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "name": "bad-time", "startTimeUnixNano": "soon"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "name": "good-json"}]}]}]});
    let (status, _, answer) = post_json(addr, &json).await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 2);
    assert_eq!(
        answer["partialSuccess"]["errorMessage"],
        "a span's `traceId` is not a string of hexadecimal digits: \"zz\""
    );
    // Limits refuse the whole request, naming the limit, before anything is decoded.
    let many_events = Span {
        events: vec![span::Event::default(); 3],
        ..span(1, 7)
    };
    let many_links = Span {
        links: vec![span::Link::default(); 2],
        ..span(1, 8)
    };
    for (bad, message) in [
        (
            many_events,
            "the request has 3 events on one span, over the limit of 2 (intake.limits)",
        ),
        (
            many_links,
            "the request has 2 links on one span, over the limit of 1 (intake.limits)",
        ),
    ] {
        let body = request("svc", vec![bad]).encode_to_vec();
        let (status, _, answer) = post_proto(addr, body).await;
        assert_eq!(status, 400);
        let status = wasmtel::intake::otlp::Status::decode(answer.as_slice()).expect("Status");
        assert_eq!(status.message, message);
    }
    // Malformed protobuf: refused whole, named.
    let (status, _, answer) = wasmtel_tests::post(
        addr,
        "/v1/traces",
        Some("application/x-protobuf"),
        vec![0x0a, 0x05, 0x12],
        false,
    )
    .await;
    assert_eq!(status, 400);
    let status = wasmtel::intake::otlp::Status::decode(answer.as_slice()).expect("Status");
    assert_eq!(
        status.message,
        "the body is not a valid ExportTraceServiceRequest: malformed protobuf: a field runs past the end of its message"
    );

    receiver
        .wait_until("the two good spans", |r| r.spans().len() == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let names: Vec<String> = received(&receiver).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["good-json", "op-1"]);
    let m = exposition(&host).await;
    let count = |outcome| {
        m.value(
            "wasmtel_intake_otlp_items_total",
            &[("signal", "traces"), ("outcome", outcome)],
        )
    };
    // 5 + 4 refused from the first requests, 2 from JSON.
    assert_eq!(
        (count("accepted"), count("rejected")),
        (Some(2.0), Some(11.0))
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdks_tonic_span_exporter_reaches_the_collector_through_grpc_export() {
    // App (opentelemetry-otlp, tonic) → edge host (gRPC intake) → gRPC export → sink host →
    // HTTP export → collector.
    let receiver = Receiver::start().await;
    let sink = forwarding(&receiver, "").await;
    let edge = start(&format!(
        "[otlp]\nendpoint = \"http://{}\"\nprotocol = \"grpc\"\ndelivery.interval = \"1h\"\n",
        sink.grpc_addr().expect("gRPC")
    ))
    .await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", edge.grpc_addr().expect("gRPC")))
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .expect("span exporter");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_attributes([opentelemetry::KeyValue::new("service.name", "rusty")])
                .build(),
        )
        .build();
    let tracer = provider.tracer("rust.tracer");
    for i in 0..25 {
        let mut s = tracer.start(format!("work-{i:02}"));
        s.set_attribute(opentelemetry::KeyValue::new("i", i64::from(i)));
        s.end();
    }
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("join");
    receiver
        .wait_until("25 spans", |r| r.spans().len() == 25)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = received(&receiver);
    let want: Vec<(String, String)> = (0..25)
        .map(|i| ("rusty".to_owned(), format!("work-{i:02}")))
        .collect();
    assert_eq!(got, want);
    edge.shutdown().await;
    sink.shutdown().await;
}

/// The Python app: a tracer provider with a batch processor and `exporter` (`http` or `grpc`)
/// to the endpoint in argv[1], 30 spans (10 with a child), flushed.
const PYTHON_APP: &str = r#"
import sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
if sys.argv[2] == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=sys.argv[1], insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")
provider = TracerProvider(resource=Resource.create({"service.name": "py-" + sys.argv[2]}))
provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=7))
tracer = provider.get_tracer("py.tracer")
for i in range(20):
    with tracer.start_as_current_span("py-%02d" % i) as s:
        s.set_attribute("i", i)
        if i % 2 == 0:
            with tracer.start_as_current_span("child-%02d" % i):
                pass
assert provider.force_flush(), "flush failed"
provider.shutdown()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_http_and_grpc_span_exporters_are_received_and_forwarded() {
    if !wasmtel_tests::python_has(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ) || !wasmtel_tests::python_has(
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "opentelemetry-exporter-otlp-proto-grpc",
    ) {
        return;
    }
    let receiver = Receiver::start().await;
    let host = forwarding(&receiver, "").await;
    for (exporter, endpoint) in [
        ("http", format!("http://{}", host.intake_addr())),
        (
            "grpc",
            format!("http://{}", host.grpc_addr().expect("gRPC")),
        ),
    ] {
        let stderr = wasmtel_tests::python(PYTHON_APP, vec![endpoint, exporter.to_owned()]).await;
        assert!(!stderr.contains("Failed to export"), "{exporter}: {stderr}");
    }
    receiver
        .wait_until("60 spans", |r| r.spans().len() == 60)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for (service, _) in received(&receiver) {
        *by_service.entry(service).or_default() += 1;
    }
    assert_eq!(
        by_service,
        BTreeMap::from([("py-grpc".to_owned(), 30), ("py-http".to_owned(), 30)])
    );
    receiver.with(|r| {
        // Children point at their parents, within one trace.
        let spans = r.spans();
        for child in spans.iter().filter(|s| s.name.starts_with("child-")) {
            let parent_name = child.name.replace("child-", "py-");
            let parent = spans
                .iter()
                .find(|s| s.name == parent_name && s.span_id == child.parent_span_id)
                .expect("the parent arrived");
            assert_eq!(parent.trace_id, child.trace_id);
        }
    });
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_forwarded_exactly_once_through_failures_and_a_restart_from_the_disk_queue() {
    let receiver = Receiver::start().await;
    // 503s (retried) and then down for good: everything waits in the disk queue.
    receiver.answer(503);
    let data = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\ndelivery.queue = \"disk\"\ndelivery.traces_batch = 10\ndelivery.retry.initial_backoff = \"50ms\"\ndelivery.retry.max_backoff = \"100ms\"\n",
        data.path().display(),
        receiver.endpoint()
    );
    let host = start(&config).await;
    for batch in 0..10u8 {
        let spans = (1..=10).map(|n| span(batch + 1, n)).collect();
        let body = request("svc", spans).encode_to_vec();
        let (status, _, _) = post_proto(host.intake_addr(), body).await;
        assert_eq!(status, 200);
    }
    receiver.wait_until("retries", |r| r.refused >= 3).await;
    let queued = host.integrations();
    let traces = queued
        .iter()
        .find(|r| r.signal == "traces")
        .expect("a traces report");
    assert!(traces.disk_queue.is_some(), "a disk queue");
    assert!(
        data.path().join("queue/otlp/traces").is_dir(),
        "journaled under the signal's own directory"
    );
    host.shutdown().await;
    assert!(receiver.with(|r| r.spans().is_empty()));
    // Restarted with the backend back: the journal is read back and every span goes out once.
    receiver.answer(200);
    let host = start(&config).await;
    receiver
        .wait_until("100 spans", |r| r.spans().len() >= 100)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.with(|r| {
        let mut ids: Vec<(Vec<u8>, Vec<u8>)> = r
            .spans()
            .iter()
            .map(|s| (s.trace_id.clone(), s.span_id.clone()))
            .collect();
        assert_eq!(ids.len(), 100);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100, "no span twice");
    });
    host.shutdown().await;
}

/// A span shaped as vLLM's `llm_request` for `model`, number `n`, with latencies in seconds.
fn llm_request(n: u32, model: &str, e2e: f64, ttft: f64, completion: i64) -> Span {
    let request = wasmtel::load::LlmRequest {
        model,
        e2e,
        ttft,
        prompt: 20,
        completion,
    };
    request.span(u64::from(n), 1_700_000_000_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_request_spans_chart_their_model_and_link_exemplars_to_their_traces() {
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[admin]\nhistory_interval = \"200ms\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    let resource = |spans| {
        let mut request = request("vllm", spans);
        let resource = request.resource_spans[0]
            .resource
            .as_mut()
            .expect("resource");
        resource.attributes.push(kv("service.instance.id", "pod-3"));
        request
    };
    // Ten requests of two models over about two seconds of history.
    let mut sent = 0u32;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let api = common::Api::new(&host, data.path());
    loop {
        let spans = (0..2)
            .map(|i| {
                sent += 1;
                let model = if i == 0 { "llama-3.1-8b" } else { "qwen2.5-7b" };
                llm_request(sent, model, 1.25, 0.25, 41)
            })
            .collect();
        let (status, _, _) = post_proto(host.intake_addr(), resource(spans).encode_to_vec()).await;
        assert_eq!(status, 200);
        let (_, history, _) = api.get("/api/v1/history").await;
        let charted = history["models"].as_array().map_or(0, |models| {
            models
                .iter()
                .filter(|m| {
                    ["llama-3.1-8b", "qwen2.5-7b"].contains(&m["model"].as_str().unwrap_or(""))
                        && m["requests_per_second"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|x| x.as_f64().is_some_and(|r| r > 0.0)))
                })
                .count()
        });
        if charted == 2 && sent >= 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not charted: {history}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every span was forwarded, and measured once: the metrics equal the spans' values.
    receiver
        .wait_until("every span", |r| r.spans().len() == sent as usize)
        .await;
    let m = exposition(&host).await;
    let per_model = |name: &str, model: &str| {
        m.value(
            name,
            &[
                ("gen_ai_request_model", model),
                ("gen_ai_response_model", model),
                ("job", "vllm"),
                ("instance", "pod-3"),
            ],
        )
    };
    let half = f64::from(sent / 2);
    for model in ["llama-3.1-8b", "qwen2.5-7b"] {
        assert_eq!(
            per_model("gen_ai_server_request_duration_seconds_count", model),
            Some(half)
        );
        assert_eq!(
            per_model("gen_ai_server_request_duration_seconds_sum", model),
            Some(1.25 * half)
        );
        assert_eq!(
            per_model("gen_ai_server_time_to_first_token_seconds_sum", model),
            Some(0.25 * half)
        );
        // (1.25 − 0.25) / 40 per request.
        let tpot = per_model("gen_ai_server_time_per_output_token_seconds_sum", model)
            .expect("time per output token");
        assert!((tpot - 0.025 * half).abs() < 1e-9, "{tpot}");
    }
    // In OpenMetrics, the buckets carry the spans' trace and span ids as exemplars.
    let text = reqwest::Client::new()
        .get(format!(
            "http://{}/metrics",
            host.prometheus_addr().expect("prometheus")
        ))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let exemplar = text
        .lines()
        .find(|l| {
            l.starts_with("gen_ai_server_request_duration_seconds_bucket{")
                && l.contains("llama-3.1-8b")
                && l.contains(" # {")
        })
        .expect("an exemplar on a bucket");
    let trace = exemplar
        .split("trace_id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a trace id");
    let forwarded: Vec<String> = receiver.with(|r| {
        r.spans()
            .iter()
            .filter(|s| {
                s.attributes.iter().any(|a| {
                    wasmtel_tests::show(a.value.as_ref().expect("value")) == "llama-3.1-8b"
                })
            })
            .map(|s| hex(&s.trace_id))
            .collect()
    });
    assert!(
        forwarded.iter().any(|t| t == trace),
        "the exemplar's trace {trace} is one of the forwarded llama spans: {forwarded:?}"
    );
    host.shutdown().await;
}

/// An app instrumented with the OpenTelemetry `openai-v2` instrumentation: traces and metrics
/// to the host in argv[1] over OTLP/HTTP, three chat completions from the OpenAI-compatible
/// server in argv[2].
const OPENAI_APP: &str = r#"
import sys
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
import openai

host, server = sys.argv[1], sys.argv[2]
resource = Resource.create({"service.name": "chat-app"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=host + "/v1/traces")))
trace.set_tracer_provider(tracer_provider)
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=host + "/v1/metrics"), export_interval_millis=3600000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
metrics.set_meter_provider(meter_provider)
OpenAIInstrumentor().instrument()
client = openai.OpenAI(base_url=server + "/v1", api_key="sk-not-a-real-key")
for i in range(3):
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "PROMPT-TEXT-%d: say hello" % i}],
    )
    assert answer.choices[0].message.content == "Hello there!", answer
assert tracer_provider.force_flush(), "span flush failed"
assert meter_provider.force_flush(), "metric flush failed"
tracer_provider.shutdown()
meter_provider.shutdown()
"#;

/// A stand-in for an OpenAI-compatible server (vLLM's, say): every chat completion answers
/// with 9 prompt and 3 completion tokens.
async fn openai_server() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            axum::Json(serde_json::json!({
                "id": "chatcmpl-7", "object": "chat.completion", "created": 1_700_000_000,
                "model": format!("{}-2024-07-18", request["model"].as_str().unwrap_or("?")),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "Hello there!"}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
            }))
        }),
    );
    format!("http://{}", wasmtel_tests::serve(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_v2_instrumentations_spans_become_client_metrics_equal_to_their_values() {
    if !wasmtel_tests::python_has(
        "opentelemetry.instrumentation.openai_v2, openai, opentelemetry.exporter.otlp.proto.http",
        "opentelemetry-instrumentation-openai-v2 with openai",
    ) {
        return;
    }
    let receiver = Receiver::start().await;
    let host = forwarding(&receiver, "").await;
    let server = openai_server().await;
    let intake = format!("http://{}", host.intake_addr());
    wasmtel_tests::python(OPENAI_APP, vec![intake, server]).await;
    receiver
        .wait_until("three chat spans", |r| r.spans().len() == 3)
        .await;
    let durations: Vec<f64> = receiver.with(|r| {
        r.spans()
            .iter()
            .map(|s| {
                assert_eq!(s.kind, span::SpanKind::Client as i32);
                let a = attrs(&s.attributes);
                assert_eq!(
                    a.get("gen_ai.operation.name").map(String::as_str),
                    Some("chat")
                );
                assert_eq!(
                    a.get("gen_ai.request.model").map(String::as_str),
                    Some("gpt-4o-mini")
                );
                (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e9
            })
            .collect()
    });
    let m = exposition(&host).await;
    let derived = |name: &str, token: Option<&str>| -> Vec<f64> {
        m.samples(name)
            .filter(|(l, _)| l.get("otel_scope_name").map(String::as_str) == Some("wasmtel.derive"))
            .filter(|(l, _)| {
                token.is_none_or(|t| l.get("gen_ai_token_type").map(String::as_str) == Some(t))
            })
            .map(|(l, v)| {
                assert_eq!(l.get("job").map(String::as_str), Some("chat-app"));
                assert_eq!(
                    l.get("gen_ai_request_model").map(String::as_str),
                    Some("gpt-4o-mini")
                );
                assert_eq!(
                    l.get("gen_ai_response_model").map(String::as_str),
                    Some("gpt-4o-mini-2024-07-18")
                );
                v
            })
            .collect()
    };
    assert_eq!(
        derived("gen_ai_client_operation_duration_seconds_count", None),
        [3.0]
    );
    let sum = derived("gen_ai_client_operation_duration_seconds_sum", None);
    assert!(
        (sum[0] - durations.iter().sum::<f64>()).abs() < 1e-6,
        "{sum:?} vs the spans' {durations:?}"
    );
    assert_eq!(
        derived("gen_ai_client_token_usage_sum", Some("input")),
        [27.0]
    );
    assert_eq!(
        derived("gen_ai_client_token_usage_sum", Some("output")),
        [9.0]
    );
    assert!(derived("gen_ai_server_request_duration_seconds_count", None).is_empty());
    // The instrumentation's own metrics arrive too, under its own scope, with the same
    // attributes as the derived ones.
    let own: f64 = m
        .samples("gen_ai_client_operation_duration_seconds_count")
        .filter(|(l, _)| {
            l.get("otel_scope_name")
                .is_some_and(|s| s.starts_with("opentelemetry."))
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        own,
        3.0,
        "the app's own GenAI metrics are kept beside the derived ones: {:?}",
        m.samples("gen_ai_client_operation_duration_seconds_count")
            .collect::<Vec<_>>()
    );
    host.shutdown().await;
}

/// A span carrying prompt and completion content the ways instrumentations put it: indexed
/// attributes (OpenLLMetry), the message attributes of current conventions, and an event.
fn content_span(n: u8) -> Span {
    let mut s = span(5, n);
    s.attributes.extend([
        kv("gen_ai.request.model", "llama-3.1-8b"),
        kv("gen_ai.prompt.0.content", "PROMPT-TEXT-indexed"),
        kv("gen_ai.completion.0.content", "COMPLETION-TEXT-indexed"),
        kv(
            "gen_ai.input.messages",
            r#"[{"role":"user","parts":[{"content":"PROMPT-TEXT-message"}]}]"#,
        ),
    ]);
    s.events.push(span::Event {
        time_unix_nano: 1_600,
        name: "gen_ai.content.prompt".into(),
        attributes: vec![kv("gen_ai.prompt", "PROMPT-TEXT-event")],
        ..Default::default()
    });
    s
}

/// A sink that keeps the body of every request to `/base/spans`.
async fn span_lines_sink() -> (String, Lines) {
    let (url, [spans]) = lines_sink(["spans"]).await;
    (url, spans)
}

/// What a sink kept: each request's body.
type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An HTTP sink at `…/base` keeping each body POSTed to `/base/<path>`, one list per path.
async fn lines_sink<const N: usize>(paths: [&str; N]) -> (String, [Lines; N]) {
    let seen: [Lines; N] = std::array::from_fn(|_| Lines::default());
    let mut app = axum::Router::new();
    for (path, store) in paths.iter().zip(&seen) {
        let store = store.clone();
        app = app.route(
            &format!("/base/{path}"),
            axum::routing::post(move |body: String| {
                let store = store.clone();
                async move {
                    store.lock().expect("lock").push(body);
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
    }
    (
        format!("http://{}/base", wasmtel_tests::serve(app).await),
        seen,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prompt_or_completion_text_leaves_in_any_export_of_spans_unless_kept() {
    // The same spans with content kept (`[intake.genai_content] redact = false`), with the
    // defaults (content redacted as it is accepted), and kept at intake but redacted by an
    // integration's `redact` transform: to the OTLP collector and to an exporter plugin that
    // takes traces (the `loglines` fixture, one line per span); from a hand-made request and,
    // where installed, from the openai-v2 instrumentation capturing message content on its spans.
    let python = wasmtel_tests::python_has(
        "opentelemetry.instrumentation.openai_v2, openai, opentelemetry.exporter.otlp.proto.http",
        "opentelemetry-instrumentation-openai-v2 with openai",
    );
    let expected = if python { 5 } else { 2 };
    let keep = "[intake.genai_content]\nredact = false\n";
    let transform = "[[transforms]]\nplugin = \"redact\"\non_failure = \"closed\"\n";
    for (config, redact) in [
        (keep.to_owned(), false),
        (String::new(), true),
        (format!("{keep}{transform}"), true),
    ] {
        let receiver = Receiver::start().await;
        let (sink, lines) = span_lines_sink().await;
        let plugins = tempfile::tempdir().expect("plugin dir");
        std::fs::copy(
            env!("WASMTEL_FIXTURE_LOGLINES"),
            plugins.path().join("loglines.wasm"),
        )
        .expect("copy");
        let host = forwarding(
            &receiver,
            &format!(
                "{config}[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"loglines\"\nendpoint = \"{sink}\"\n",
                plugins.path().display()
            ),
        )
        .await;
        let body = request("rag", vec![content_span(1), content_span(2)]).encode_to_vec();
        assert_eq!(post_proto(host.intake_addr(), body).await.0, 200);
        if python {
            let intake = format!("http://{}", host.intake_addr());
            let app = OPENAI_APP.replace(
                "import sys\n",
                "import os, sys\nos.environ['OTEL_SEMCONV_STABILITY_OPT_IN'] = 'gen_ai_latest_experimental'\nos.environ['OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT'] = 'span_only'\n",
            );
            let app: &'static str = Box::leak(app.into_boxed_str());
            wasmtel_tests::python(app, vec![intake, openai_server().await]).await;
        }
        receiver
            .wait_until("every span at the collector", |r| {
                r.spans().len() == expected
            })
            .await;
        let plugin_lines = || -> Vec<String> {
            let bodies = lines.lock().expect("lock");
            bodies
                .iter()
                .flat_map(|b| b.lines().map(str::to_owned))
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while plugin_lines().len() < expected {
            assert!(std::time::Instant::now() < deadline, "{:?}", plugin_lines());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let collector = receiver.with(|r| format!("{:?}", r.traces));
        let plugin = plugin_lines().join("\n");
        for (export, text) in [("collector", &collector), ("plugin", &plugin)] {
            for secret in ["PROMPT-TEXT", "COMPLETION-TEXT"] {
                assert_eq!(
                    text.contains(secret),
                    !redact,
                    "{secret} in the {export}'s spans ({config:?}): {text}"
                );
            }
            if python {
                assert_eq!(text.contains("Hello there!"), !redact, "{export}: {text}");
            }
        }
        // Redaction removes the content and the event carrying it, nothing else.
        let hand_made: Vec<String> = plugin_lines()
            .into_iter()
            .filter(|l| l.starts_with("op-"))
            .collect();
        assert_eq!(hand_made.len(), 2, "{hand_made:?}");
        for line in &hand_made {
            assert!(
                line.contains(" n=") && line.contains(" gen_ai.request.model=llama-3.1-8b"),
                "{line}"
            );
            let events = line.split(" events=").nth(1).expect("events");
            if redact {
                assert_eq!(events, "tick[]", "{line}");
            } else {
                assert_eq!(
                    events,
                    "tick[],gen_ai.content.prompt[gen_ai.prompt=PROMPT-TEXT-event]"
                );
            }
        }
        receiver.with(|r| {
            for s in r.spans() {
                assert!(
                    attrs(&s.attributes).contains_key("gen_ai.request.model"),
                    "{s:?}"
                );
            }
        });
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_trace_exporters_receive_spans() {
    // The same trace exporter written in both languages (`tests/fixtures/span-exporters`),
    // built for the trace-exporter world: one line per span name to `/spans`.
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/span-exporters");
    let wit = wasmtel_tests::wit_dir();
    let python = [
        "-d",
        &wit,
        "-w",
        "trace-exporter",
        "componentize",
        "app",
        "-o",
    ];
    let js = [
        "spans.js",
        "--wit",
        &wit,
        "--world-name",
        "trace-exporter",
        "--disable",
        "http",
        "fetch-event",
        "-o",
    ];
    let built = [
        wasmtel_tests::build_from("componentize-py", &python, &source, "py-spans"),
        wasmtel_tests::build_from("componentize-js", &js, &source, "js-spans"),
    ];
    for (dir, name) in built.into_iter().zip(["py-spans", "js-spans"]) {
        let Some(dir) = dir else { continue };
        let (sink, [lines, logs]) = lines_sink(["spans", "logs"]).await;
        let host = start(&format!(
            "[plugins]\ndir = \"{}\"\n[[exporters]]\nplugin = \"{name}\"\nendpoint = \"{sink}\"\n",
            dir.display()
        ))
        .await;
        let body = request("app", vec![span(8, 1), span(8, 2)]).encode_to_vec();
        assert_eq!(post_proto(host.intake_addr(), body).await.0, 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while lines.lock().expect("lock").is_empty() {
            assert!(std::time::Instant::now() < deadline, "{name}: no spans");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            lines.lock().expect("lock").as_slice(),
            ["op-1\nop-2"],
            "{name}"
        );
        // A real batch with the default limits: 3,000 spans of 3,000 distinct attribute sets in
        // one request, one delivery batch. Given whole in one call, JavaScript's would take some
        // 90 µs a span, far past the 100 ms deadline; in parts, every span arrives, once.
        // Log records the same way: 3,000 with five attributes each.
        lines.lock().expect("lock").clear();
        let body = wasmtel::load::traces_body(0, 3000);
        assert_eq!(post_proto(host.intake_addr(), body).await.0, 200);
        let body = wasmtel::load::logs_body(0, 3000);
        let protobuf = Some("application/x-protobuf");
        let posted = wasmtel_tests::post(host.intake_addr(), "/v1/logs", protobuf, body, false);
        assert_eq!(posted.await.0, 200);
        for (signal, seen, line) in [("traces", &lines, "llm_request"), ("logs", &logs, "INFO")] {
            let count = || -> usize {
                let seen = seen.lock().expect("lock");
                seen.iter().map(|b| b.lines().count()).sum()
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while count() < 3000 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name}: {} {signal}",
                    count()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let requests = seen.lock().expect("lock").clone();
            assert!(requests.len() > 1, "{name}: one call for 3,000 {signal}");
            assert!(
                requests.iter().flat_map(|b| b.lines()).all(|l| l == line),
                "{name}: {signal}"
            );
            assert_eq!(count(), 3000, "{name}: {signal}");
            let report = host
                .integrations()
                .into_iter()
                .find(|r| r.signal == signal)
                .expect("report");
            let lost = (report.items.refused, report.items.dropped);
            assert_eq!(lost, (0, 0), "{name}: {report:?}");
        }
        host.shutdown().await;
        // `plugins run` gives 1,000 spans in the same parts.
        let spans =
            ExportTraceServiceRequest::decode(wasmtel::load::traces_body(0, 1000).as_slice())
                .expect("valid");
        let runtime = wasmtel::plugins::Runtime::shared().expect("runtime");
        let bytes = std::fs::read(dir.join(format!("{name}.wasm"))).expect("built");
        let component = runtime.compile(&bytes).expect("compiles");
        let shown = wasmtel::trial::run(
            &runtime,
            name,
            &component,
            &[],
            &wasmtel::trial::Sample::Spans(serde_json::to_vec(&spans).expect("json")),
        )
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let calls = shown.matches("HTTP Method::Post /spans\n").count();
        assert!(
            shown.contains(&format!("traces: {calls} outbound\n")) && calls > 1,
            "{name}: {shown}"
        );
        let spans_shown: usize = shown
            .split("  body (")
            .skip(1)
            .map(|b| b.lines().filter(|l| l.ends_with("llm_request")).count())
            .sum();
        assert_eq!(spans_shown, 1000, "{name}: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_whose_content_cannot_be_redacted_is_refused_and_its_siblings_kept() {
    // A `redact.wasm` in the plugin directory takes the embedded one's place; this one (the
    // hostile fixture) edits no spans, so the content guard cannot redact with it.
    let plugins = tempfile::tempdir().expect("plugin dir");
    std::fs::copy(
        env!("WASMTEL_FIXTURE_ROGUE_TRANSFORM"),
        plugins.path().join("redact.wasm"),
    )
    .expect("copy");
    let receiver = Receiver::start().await;
    let host = forwarding(
        &receiver,
        &format!("[plugins]\ndir = \"{}\"\n", plugins.path().display()),
    )
    .await;
    let body = request("rag", vec![span(6, 1), content_span(2), span(6, 3)]).encode_to_vec();
    let (status, _, answer) = post_proto(host.intake_addr(), body).await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(answer.as_slice())
        .expect("answer")
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "a record carrying GenAI content could not be redacted (the redact plugin failed, or does not edit this signal), so it was refused"
    );
    receiver
        .wait_until("the two plain spans", |r| r.spans().len() == 2)
        .await;
    let names: Vec<String> = receiver.with(|r| r.spans().iter().map(|s| s.name.clone()).collect());
    assert_eq!(names, ["op-1", "op-3"]);
    assert!(receiver.with(|r| !format!("{:?}", r.traces).contains("PROMPT-TEXT")));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_carrying_genai_content_lose_it_as_they_are_accepted() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let record = |event: &str, body: &str, attributes| LogRecord {
        event_name: event.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes,
        severity_number: 9,
        ..Default::default()
    };
    let plain = record("app.started", "ready", vec![kv("k", "v")]);
    let records = vec![
        plain.clone(),
        record(
            "gen_ai.client.inference.operation.details",
            "",
            vec![
                kv("gen_ai.request.model", "m"),
                kv("gen_ai.input.messages", "PROMPT-TEXT-log"),
            ],
        ),
        record(
            "gen_ai.user.message",
            "PROMPT-TEXT-body",
            vec![kv("gen_ai.system", "openai")],
        ),
    ];
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let receiver = Receiver::start().await;
    let host = forwarding(&receiver, "").await;
    let protobuf = Some("application/x-protobuf");
    let (status, _, answer) = wasmtel_tests::post(
        host.intake_addr(),
        "/v1/logs",
        protobuf,
        request.encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer.is_empty(), "nothing refused");
    receiver
        .wait_until("three log records", |r| {
            r.logs
                .iter()
                .flat_map(|l| &l.resource_logs)
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum::<usize>()
                == 3
        })
        .await;
    let got: Vec<LogRecord> = receiver.with(|r| {
        r.logs
            .iter()
            .flat_map(|l| &l.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| s.log_records.clone())
            .collect()
    });
    assert!(!format!("{got:?}").contains("PROMPT-TEXT"), "{got:?}");
    assert!(
        got.contains(&plain),
        "a record without content is as it came"
    );
    let details = got
        .iter()
        .find(|r| r.event_name == "gen_ai.client.inference.operation.details")
        .expect("details");
    assert_eq!(
        attrs(&details.attributes).keys().collect::<Vec<_>>(),
        ["gen_ai.request.model"]
    );
    let message = got
        .iter()
        .find(|r| r.event_name == "gen_ai.user.message")
        .expect("message");
    assert_eq!(message.body, None, "a message event loses its body");
    assert_eq!(
        attrs(&message.attributes)
            .get("gen_ai.system")
            .map(String::as_str),
        Some("openai")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_traces_queue_refuses_with_retry_after_accounts_exactly_and_loses_nothing() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let host = forwarding(
        &receiver,
        "delivery.traces_batch = 10\ndelivery.traces_queue = 50\ndelivery.max_in_flight = 1\n\
         [otlp.delivery.retry]\nmax_retries = 100000\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\nbreaker_cooldown = \"5ms\"\n",
    )
    .await;
    let traces = || {
        host.integrations()
            .into_iter()
            .find(|r| r.signal == "traces")
            .expect("a traces report")
            .items
    };
    let mut accepted = 0u64;
    let mut refused = 0;
    for batch in 0..20u8 {
        let spans = (1..=10).map(|n| span(batch + 1, n)).collect();
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/traces", host.intake_addr()))
            .header("content-type", "application/x-protobuf")
            .body(request("svc", spans).encode_to_vec())
            .send()
            .await
            .expect("intake reachable");
        match response.status().as_u16() {
            200 => accepted += 10,
            503 => {
                refused += 1;
                assert_eq!(response.headers()["retry-after"], "1");
                let status = wasmtel::intake::otlp::Status::decode(
                    response.bytes().await.expect("body").as_ref(),
                )
                .expect("Status");
                assert_eq!(
                    status.message,
                    "the traces queue of integration `otlp` is full; retry later"
                );
            }
            other => panic!("answered {other}"),
        }
        let c = traces();
        assert_eq!(
            c.accepted,
            c.delivered + c.refused + c.dropped + c.queued,
            "{c:?}"
        );
    }
    assert!(refused > 0, "a queue of 50 cannot take 200 spans");
    assert_eq!((traces().accepted, traces().dropped), (accepted, 0));
    // The collector recovers: every accepted span arrives, once.
    receiver.answer(200);
    receiver
        .wait_until("every accepted span", |r| {
            r.spans().len() as u64 >= accepted
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    receiver.with(|r| {
        let mut ids: Vec<(Vec<u8>, Vec<u8>)> = r
            .spans()
            .iter()
            .map(|s| (s.trace_id.clone(), s.span_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len() as u64, accepted, "each accepted span once");
    });
    host.shutdown().await;
}

/// Runs the passthrough fixture over spans with `config`, reporting what crossed as `seen`: the
/// spans it gives back, by name, with the report each carries.
fn passthrough_over_spans(
    spans: Vec<Span>,
    config: &[(&str, &str)],
) -> Vec<(String, Option<String>)> {
    let runtime = wasmtel::plugins::Runtime::shared().expect("runtime");
    let bytes = std::fs::read(env!("WASMTEL_FIXTURE_PASSTHROUGH")).expect("fixture");
    let component = runtime.compile(&bytes).expect("compiles");
    let mut settings = vec![
        ("reads.spans".to_owned(), "attributes+entries".to_owned()),
        ("report".to_owned(), "seen".to_owned()),
    ];
    settings.extend(
        config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let sample = serde_json::to_vec(&request("rag", spans)).expect("json");
    let shown = wasmtel::trial::run(
        &runtime,
        "passthrough",
        &component,
        &settings,
        &wasmtel::trial::Sample::Spans(sample),
    )
    .expect("runs");
    let (_, json) = shown
        .split_once("spans after the transform (OTLP/JSON):\n")
        .expect("spans shown");
    let after: ExportTraceServiceRequest = serde_json::from_str(json).expect("OTLP/JSON");
    let spans = after.resource_spans.iter().flat_map(|r| &r.scope_spans);
    spans
        .flat_map(|s| &s.spans)
        .map(|s| {
            let seen = s.attributes.iter().find(|a| a.key == "seen").and_then(|a| {
                match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(text) => Some(text.clone()),
                    _ => None,
                }
            });
            assert!(
                s.attributes.iter().any(|a| a.key == "n"),
                "keys it does not read stay: {s:?}"
            );
            (s.name.clone(), seen)
        })
        .collect()
}

#[test]
fn a_span_transform_is_given_only_the_keys_it_reads_and_an_edit_reaches_every_span_of_the_set() {
    let tiered = |n: u8, tier: &str| {
        let mut s = span(n, n);
        s.attributes.push(kv("tier", tier));
        s
    };
    let spans = || vec![tiered(1, "gold"), tiered(2, "gold"), tiered(3, "free")];
    // Reading `tier` alone: the empty set (the resource's and scope's, cut down) and the two
    // tiers; spans 1 and 2 differ only in `n`, so they share a set and the report reaches both.
    let report = "sets=3 values=2 keys=tier";
    assert_eq!(
        passthrough_over_spans(spans(), &[("attribute_keys", "tier")]),
        [
            ("op-1".to_owned(), Some(report.to_owned())),
            ("op-2".to_owned(), Some(report.to_owned())),
            ("op-3".to_owned(), None),
        ]
    );
    // A prefix pattern reads the same.
    assert_eq!(
        passthrough_over_spans(spans(), &[("attribute_keys", "ti*")])[1]
            .1
            .as_deref(),
        Some(report)
    );
    // Without `attribute_keys`, every key of every set crosses, and each span has a set of its
    // own.
    assert_eq!(
        passthrough_over_spans(spans(), &[]),
        [
            (
                "op-1".to_owned(),
                Some("sets=5 values=6 keys=n,service.name,tier".to_owned())
            ),
            ("op-2".to_owned(), None),
            ("op-3".to_owned(), None),
        ]
    );
}

#[test]
fn a_span_damaged_since_intake_fails_the_transform_by_name_and_its_policy_decides_the_run() {
    use wasmtel::config::OnFailure;
    use wasmtel::model::Signal;
    use wasmtel::model::record::{Origin, Record};
    use wasmtel::plugins::{Limits, Link, Slot, Stats, TransformPlugin, Transforms};
    let runtime = wasmtel::plugins::Runtime::shared().expect("runtime");
    let bytes = std::fs::read(env!("WASMTEL_FIXTURE_PASSTHROUGH")).expect("fixture");
    let component = runtime.compile(&bytes).expect("compiles");
    let settings = vec![("reads.spans".to_owned(), "attributes+entries".to_owned())];
    let load = || {
        TransformPlugin::load(
            &runtime,
            "passthrough",
            &component,
            settings.clone(),
            Limits::default(),
            &Stats::default(),
        )
        .expect("loads")
    };
    let origin = std::sync::Arc::new(Origin::new(
        &Resource::default(),
        &InstrumentationScope::default(),
    ));
    let good = Record::encode_all(&[span(1, 1)], &origin).remove(0);
    // A span whose name is not UTF-8: intake refuses it, so only a record damaged since holds it.
    let damaged = Record {
        origin,
        bytes: bytes::Bytes::from_static(&[0x2a, 0x02, 0xff, 0xfe]),
    };
    let run = [good.clone(), damaged.clone()];
    let err = load().spans(&run).expect_err("the batch cannot be read");
    assert_eq!(
        err.to_string(),
        "plugin `passthrough` was not called: a span could not be read (a string that is not UTF-8)"
    );
    let chain = |on_failure| {
        let slot = Slot::new(
            "passthrough",
            Default::default(),
            Ok((load(), String::new())),
        );
        Transforms::new(vec![Link::new(std::sync::Arc::new(slot), on_failure)])
    };
    let open = chain(OnFailure::Open).records(Signal::Traces, &run);
    assert_eq!(
        open.iter().map(|r| r.bytes.clone()).collect::<Vec<_>>(),
        [good.bytes, damaged.bytes],
        "failing open, the run passes as it came"
    );
    assert!(
        chain(OnFailure::Closed)
            .records(Signal::Traces, &run)
            .is_empty(),
        "failing closed, the run is left out"
    );
}

#[test]
fn plugins_run_shows_what_a_trace_exporter_would_send_for_sample_spans() {
    let runtime = wasmtel::plugins::Runtime::shared().expect("runtime");
    let bytes = std::fs::read(env!("WASMTEL_FIXTURE_LOGLINES")).expect("fixture");
    let component = runtime.compile(&bytes).expect("compiles");
    let sample = serde_json::to_vec(&request("rag", vec![span(1, 1), span(2, 2)])).expect("json");
    let shown = wasmtel::trial::run(
        &runtime,
        "loglines",
        &component,
        &[],
        &wasmtel::trial::Sample::Spans(sample),
    )
    .expect("runs");
    let body = format!(
        "op-1 {} n=1 events=tick[]\nop-2 {} n=2 events=tick[]",
        "01".repeat(16),
        "02".repeat(16)
    );
    assert!(
        shown.ends_with(&format!(
            "traces: 1 outbound\nHTTP Method::Post /spans\n  body ({} bytes): {body}\n",
            body.len()
        )),
        "{shown}"
    );
}
