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
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
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
    let (status, _, body) = wasmtel_tests::post(
        addr,
        "/v1/traces",
        Some("application/json"),
        json.to_string().into_bytes(),
        false,
    )
    .await;
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
    let (status, _, answer) = wasmtel_tests::post(
        addr,
        "/v1/traces",
        Some("application/x-protobuf"),
        body,
        false,
    )
    .await;
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
        let (_, _, answer) = wasmtel_tests::post(
            addr,
            "/v1/traces",
            Some("application/x-protobuf"),
            body,
            false,
        )
        .await;
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
    let (status, _, answer) = wasmtel_tests::post(
        addr,
        "/v1/traces",
        Some("application/json"),
        json.to_string().into_bytes(),
        false,
    )
    .await;
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
        let (status, _, answer) = wasmtel_tests::post(
            addr,
            "/v1/traces",
            Some("application/x-protobuf"),
            body,
            false,
        )
        .await;
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

/// Whether `module` imports; in CI it must.
fn python_has(module: &str, package: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{package} is required in CI"
    );
    eprintln!("{package} is not installed: skipped; .ci/run installs it");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_http_and_grpc_span_exporters_are_received_and_forwarded() {
    if !python_has(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ) || !python_has(
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
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .args(["-c", PYTHON_APP, &endpoint, exporter])
                .output()
                .expect("python runs")
        })
        .await
        .expect("join");
        assert!(
            out.status.success(),
            "{exporter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Failed to export"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        let (status, _, _) = wasmtel_tests::post(
            host.intake_addr(),
            "/v1/traces",
            Some("application/x-protobuf"),
            body,
            false,
        )
        .await;
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
