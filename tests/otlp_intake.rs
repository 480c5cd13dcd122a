//! OTLP/HTTP intake tests: a real OpenTelemetry SDK app (`opentelemetry-otlp`) and hand-built
//! protobuf and JSON requests, good and bad, against a running host.

mod common;

use std::time::Duration;

use common::{exposition, start};
use opentelemetry::KeyValue as SdkKeyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use prost::Message;
use wasmtel::intake::otlp::Status;
use wasmtel_tests::{Receiver, attrs, kv, resource_of};

fn config(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n{extra}\n[intake]\nmax_body_bytes = 65536\n",
        receiver.endpoint()
    )
}

/// The resource of the test app, as its SDK would detect it.
fn app_resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            SdkKeyValue::new("service.name", "checkout"),
            SdkKeyValue::new("service.namespace", "shop"),
            SdkKeyValue::new("service.instance.id", "pod-1"),
        ])
        .build()
}

/// An app's meter provider exporting to the host's intake, as a user would configure it.
fn meter_provider(
    intake: std::net::SocketAddr,
    protocol: Protocol,
    temporality: Temporality,
) -> SdkMeterProvider {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_compression(Compression::Gzip)
        .with_endpoint(format!("http://{intake}/v1/metrics"))
        .with_temporality(temporality)
        .build()
        .expect("exporter");
    let reader = PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(app_resource())
        .build()
}

/// The schema the app's meter declares.
const SCHEMA: &str = "https://opentelemetry.io/schemas/1.26.0";

/// Records one round of the app's measurements (`orders` grows by `orders`) and flushes.
fn app_round(provider: &SdkMeterProvider, orders: u64) {
    let meter = provider.meter_with_scope(
        opentelemetry::InstrumentationScope::builder("shop.meter")
            .with_version("2.0")
            .with_schema_url(SCHEMA)
            .build(),
    );
    let region = [SdkKeyValue::new("region", "eu")];
    meter.u64_counter("orders").build().add(orders, &region);
    let duration = meter
        .f64_histogram("order.duration")
        .with_unit("s")
        .with_boundaries(vec![1.0, 5.0])
        .build();
    duration.record(0.5, &region);
    duration.record(3.0, &region);
    let carts = meter.i64_up_down_counter("carts.open").build();
    carts.add(5, &region);
    carts.add(-2, &region);
    meter.u64_gauge("queue.depth").build().record(7, &region);
    provider.force_flush().expect("flush reaches the host");
}

/// The points of `name` in the host's OTLP export, as (labels, value) of sums.
fn sum_points(request: &ExportMetricsServiceRequest, name: &str) -> Vec<(f64, i32)> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => Some((s, s.aggregation_temporality)),
            _ => None,
        })
        .flat_map(|(s, t)| {
            s.data_points.iter().map(move |p| {
                let v = match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => f64::NAN,
                };
                (v, t)
            })
        })
        .collect()
}

#[tokio::test]
async fn an_sdk_app_over_protobuf_joins_prometheus_and_the_otlp_export_with_its_resource() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "")).await;
    let intake = host.intake_addr();
    tokio::task::spawn_blocking(move || {
        let provider = meter_provider(intake, Protocol::HttpBinary, Temporality::Cumulative);
        app_round(&provider, 3);
        app_round(&provider, 6); // cumulative: the SDK now reports 9 orders, 4 durations
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("app");

    let m = exposition(&host).await;
    let app = [
        ("job", "shop/checkout"),
        ("instance", "pod-1"),
        ("region", "eu"),
    ];
    let (labels, _) = m.samples("orders_total").next().expect("orders");
    let scope_label = |k: &str| labels.get(k).map(String::as_str);
    assert_eq!(
        (
            scope_label("otel_scope_name"),
            scope_label("otel_scope_version"),
            scope_label("otel_scope_schema_url")
        ),
        (Some("shop.meter"), Some("2.0"), Some(SCHEMA))
    );
    assert_eq!(
        m.value("orders_total", &app),
        Some(9.0),
        "cumulative points are not double-counted"
    );
    assert_eq!(
        m.value("carts_open", &app),
        Some(6.0),
        "the up-down total follows the app's"
    );
    assert_eq!(m.value("queue_depth", &app), Some(7.0));
    assert_eq!(m.value("order_duration_seconds_count", &app), Some(4.0));
    assert_eq!(m.value("order_duration_seconds_sum", &app), Some(7.0));
    let le = |b: &'static str| {
        let mut labels = app.to_vec();
        labels.push(("le", b));
        m.value("order_duration_seconds_bucket", &labels)
    };
    assert_eq!(
        (le("1"), le("5"), le("+Inf")),
        (Some(2.0), Some(4.0), Some(4.0))
    );
    let target: Vec<_> = m
        .samples("target_info")
        .filter(|(l, _)| l.get("job").map(String::as_str) == Some("shop/checkout"))
        .map(|(l, v)| (l.clone(), v))
        .collect();
    assert_eq!(target.len(), 1, "one target_info per received resource");
    let (labels, value) = &target[0];
    assert_eq!(*value, 1.0);
    assert_eq!(labels.get("instance").map(String::as_str), Some("pod-1"));
    assert_eq!(
        labels.get("service_name").map(String::as_str),
        Some("checkout")
    );
    let accepted = [("signal", "metrics"), ("outcome", "accepted")];
    assert!(
        m.value("wasmtel_intake_otlp_items_total", &accepted)
            .is_some_and(|n| n >= 8.0)
    );

    host.collect_now().await;
    receiver
        .wait_until("the host's export", |r| !r.metrics.is_empty())
        .await;
    receiver.with(|r| {
        let request = &r.metrics[0];
        // The app's resource is exported as its own ResourceMetrics.
        let app = resource_of(request, "checkout");
        let scope = app.scope_metrics[0].scope.as_ref().expect("scope");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("shop.meter", "2.0")
        );
        assert_eq!(app.scope_metrics[0].schema_url, SCHEMA, "kept on re-export");
        let names: Vec<&str> = app.scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["orders", "order.duration", "carts.open", "queue.depth"]
        );
        let cumulative = AggregationTemporality::Cumulative as i32;
        assert_eq!(sum_points(request, "orders"), [(9.0, cumulative)]);
    });
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_schema_url_survives_a_transform_on_its_way_out() {
    let receiver = Receiver::start().await;
    let transform = "[[transforms]]\nplugin = \"redact\"\nconfig = { drop = \"region\" }\n";
    let host = start(&config(&receiver, transform)).await;
    let intake = host.intake_addr();
    tokio::task::spawn_blocking(move || {
        let provider = meter_provider(intake, Protocol::HttpBinary, Temporality::Cumulative);
        app_round(&provider, 3);
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("app");
    host.collect_now().await;
    receiver
        .wait_until("the host's export", |r| !r.metrics.is_empty())
        .await;
    receiver.with(|r| {
        let app = resource_of(&r.metrics[0], "checkout");
        let scope = &app.scope_metrics[0];
        assert_eq!(
            scope.scope.as_ref().map(|s| s.name.as_str()),
            Some("shop.meter")
        );
        assert_eq!(
            scope.schema_url, SCHEMA,
            "the contract has no field for it: the host keeps it"
        );
        let Some(Data::Sum(orders)) = &scope.metrics[0].data else {
            panic!("orders is a sum")
        };
        assert!(
            orders.data_points[0].attributes.is_empty(),
            "the transform ran: region dropped"
        );
    });
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_records_flags_and_dropped_count_survive_redaction_and_a_transform_that_drops_records()
 {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        env!("WASMTEL_FIXTURE_PASSTHROUGH"),
        dir.path().join("dropper.wasm"),
    )
    .expect("copy");
    let transform = format!(
        "[plugins]\ndir = \"{}\"\n[[transforms]]\nplugin = \"dropper\"\nconfig = {{ drop_event = \"skip.me\" }}\n",
        dir.path().display()
    );
    let host = start(&config(&receiver, &transform)).await;
    // The first carries a prompt, so intake's content redaction rewrites it as it is accepted;
    // the chain then drops the second. Contract 0.2 has no field for either number.
    let record = |event: &str, flags: u32, dropped: u32, key: &str| LogRecord {
        event_name: event.into(),
        flags,
        dropped_attributes_count: dropped,
        trace_id: vec![7; 16],
        span_id: vec![3; 8],
        attributes: vec![kv(key, "text")],
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(ProtoResource {
                attributes: vec![kv("service.name", "flagged")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record("a", 1, 2, "gen_ai.prompt"),
                    record("skip.me", 0, 5, "k"),
                    record("c", 0x101, 7, "k"),
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let (status, _, _) = post(&host, "/v1/logs", PROTOBUF, request.encode_to_vec(), false).await;
    assert_eq!(status, 200);
    receiver
        .wait_until("the two records left", |r| !r.logs.is_empty())
        .await;
    receiver.with(|r| {
        let records: Vec<_> = r.logs[0].resource_logs[0].scope_logs[0]
            .log_records
            .iter()
            .map(|l| {
                let keys: Vec<&str> = l.attributes.iter().map(|a| a.key.as_str()).collect();
                (
                    l.event_name.as_str(),
                    l.flags,
                    l.dropped_attributes_count,
                    keys,
                )
            })
            .collect();
        assert_eq!(
            records,
            [("a", 1, 2, vec![]), ("c", 0x101, 7, vec!["k"])],
            "each record keeps its own numbers, the prompt is gone and skip.me dropped"
        );
    });
    host.shutdown().await;
}

#[tokio::test]
async fn sdk_deltas_over_json_are_summed_and_re_exported_as_deltas() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "temporality_preference = \"delta\"")).await;
    let intake = host.intake_addr();
    let provider = tokio::task::spawn_blocking(move || {
        let provider = meter_provider(intake, Protocol::HttpJson, Temporality::Delta);
        app_round(&provider, 3);
        provider
    })
    .await
    .expect("app");
    host.collect_now().await;
    let provider = tokio::task::spawn_blocking(move || {
        app_round(&provider, 4);
        provider
    })
    .await
    .expect("app");
    host.collect_now().await;
    receiver
        .wait_until("two exports", |r| r.metrics.len() == 2)
        .await;
    let delta = AggregationTemporality::Delta as i32;
    receiver.with(|r| {
        assert_eq!(sum_points(&r.metrics[0], "orders"), [(3.0, delta)]);
        assert_eq!(sum_points(&r.metrics[1], "orders"), [(4.0, delta)]);
    });
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "orders_total",
            &[
                ("job", "shop/checkout"),
                ("instance", "pod-1"),
                ("region", "eu")
            ]
        ),
        Some(7.0)
    );
    tokio::task::spawn_blocking(move || provider.shutdown().expect("shutdown"))
        .await
        .expect("app");
    host.shutdown().await;
}

#[tokio::test]
async fn sdk_logs_reach_the_log_exporter_with_their_resource_and_scope() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "")).await;
    let intake = host.intake_addr();
    tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{intake}/v1/logs"))
            .build()
            .expect("exporter");
        let provider = SdkLoggerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(app_resource())
            .build();
        let logger = provider.logger("shop.logger");
        let mut record = logger.create_log_record();
        record.set_body("order placed".into());
        record.set_severity_number(Severity::Warn);
        record.add_attribute("order.id", 42);
        logger.emit(record);
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("app");
    receiver
        .wait_until("the forwarded log record", |r| !r.logs.is_empty())
        .await;
    receiver.with(|r| {
        let rl = &r.logs[0].resource_logs[0];
        let resource = attrs(&rl.resource.as_ref().expect("resource").attributes);
        assert_eq!(
            resource.get("service.name").map(String::as_str),
            Some("checkout")
        );
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().expect("scope").name, "shop.logger");
        let record = &sl.log_records[0];
        assert_eq!(record.severity_number, Severity::Warn as i32);
        assert_eq!(
            wasmtel_tests::show(record.body.as_ref().expect("body")),
            "order placed"
        );
        assert_eq!(
            attrs(&record.attributes)
                .get("order.id")
                .map(String::as_str),
            Some("42")
        );
    });
    host.shutdown().await;
}

/// A delta counter `jobs` of `hand-made` with one point of `value`.
fn jobs(value: i64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(ProtoResource {
                attributes: vec![kv("service.name", "hand-made")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "by.hand".into(),
                    ..Default::default()
                }),
                metrics: vec![Metric {
                    name: "jobs".into(),
                    unit: "{job}".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Posts `body` to the host's `path`.
async fn post(
    host: &wasmtel::Host,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    gzip: bool,
) -> (u16, String, Vec<u8>) {
    wasmtel_tests::post(host.intake_addr(), path, Some(content_type), body, gzip).await
}

const PROTOBUF: &str = "application/x-protobuf";

#[tokio::test]
async fn hand_built_protobuf_and_json_requests_are_answered_as_otlp_says() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "")).await;

    // Gzipped protobuf: accepted whole, an empty response.
    let (status, ct, body) = post(
        &host,
        "/v1/metrics",
        PROTOBUF,
        jobs(5).encode_to_vec(),
        true,
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, PROTOBUF));
    let response = ExportMetricsServiceResponse::decode(&body[..]).expect("a response");
    assert_eq!(response.partial_success, None);

    // JSON with OTLP's mapping (int64 as a string, enums as numbers); a summary point whose
    // quantile is not one is refused, the valid one kept.
    let json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"hand-made"}}]},
      "scopeMetrics":[{"scope":{"name":"by.hand"},"metrics":[
        {"name":"jobs","unit":"{job}","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"asInt":"2"}]}},
        {"name":"latency","summary":{"dataPoints":[{"count":"1","sum":2.0,"quantileValues":[{"quantile":1.5,"value":2.0}]},
          {"attributes":[{"key":"route","value":{"stringValue":"a"}}],"count":"3","sum":1.0,"quantileValues":[{"quantile":0.5,"value":0.25}]}]}}]}]}]}"#;
    let (status, ct, body) =
        post(&host, "/v1/metrics", "application/json", json.into(), false).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let response: ExportMetricsServiceResponse =
        serde_json::from_slice(&body).expect("JSON response");
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 1);
    assert_eq!(
        partial.error_message,
        "metric `latency`: a summary's quantiles must be between 0 and 1"
    );
    let m = exposition(&host).await;
    assert_eq!(m.value("jobs_total", &[("job", "hand-made")]), Some(7.0));
    let route = [("job", "hand-made"), ("route", "a")];
    assert_eq!(m.value("latency_count", &route), Some(3.0));
    assert_eq!(
        m.value(
            "latency",
            &[("job", "hand-made"), ("quantile", "0.5"), ("route", "a")]
        ),
        Some(0.25)
    );

    // Malformed protobuf: 400 with a google.rpc.Status in protobuf.
    let (status, ct, body) = post(
        &host,
        "/v1/metrics",
        PROTOBUF,
        vec![0x0a, 0xff, 0xff],
        false,
    )
    .await;
    assert_eq!((status, ct.as_str()), (400, PROTOBUF));
    let s = Status::decode(&body[..]).expect("a Status");
    assert_eq!(s.code, 3);
    assert!(
        s.message
            .starts_with("the body is not a valid ExportMetricsServiceRequest: "),
        "{}",
        s.message
    );

    // Malformed JSON and a wrong type: 400 with the Status in JSON, naming the problem.
    for (bad, says) in [
        ("{\"resourceMetrics\":[", "EOF while parsing"),
        (
            "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":5}]}]}]}",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":\"a\",\"name\":\"b\"}]}]}]}",
            "duplicate field `name`",
        ),
    ] {
        let (status, ct, body) =
            post(&host, "/v1/metrics", "application/json", bad.into(), false).await;
        assert_eq!((status, ct.as_str()), (400, "application/json"), "{bad}");
        let s: serde_json::Value = serde_json::from_slice(&body).expect("JSON Status");
        assert_eq!(s["code"], 3);
        let message = s["message"].as_str().expect("message");
        assert!(message.contains(says), "{message}");
    }

    // An unknown content type: 415.
    let (status, _, _) = post(&host, "/v1/metrics", "text/plain", b"x".to_vec(), false).await;
    assert_eq!(status, 415);

    // Bigger than the limit once decompressed, though small on the wire: 413.
    let mut big = jobs(1);
    big.resource_metrics[0].scope_metrics[0].metrics[0].description = "x".repeat(70_000);
    let (status, _, body) = post(&host, "/v1/metrics", PROTOBUF, big.encode_to_vec(), true).await;
    assert_eq!(status, 413);
    assert_eq!(Status::decode(&body[..]).expect("a Status").code, 8);

    // Nothing of the refused requests was recorded.
    let m = exposition(&host).await;
    assert_eq!(m.value("jobs_total", &[("job", "hand-made")]), Some(7.0));
    let rejected = |reason| {
        m.value(
            "wasmtel_intake_requests_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("malformed"), Some(4.0));
    assert_eq!(rejected("too_large"), Some(1.0));
    assert_eq!(rejected("unsupported_media_type"), Some(1.0));
    host.shutdown().await;
}

#[tokio::test]
async fn log_records_with_bad_ids_are_refused_one_by_one() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "")).await;
    let record = |trace: usize, body: &str| LogRecord {
        trace_id: vec![7; trace],
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(ProtoResource {
                attributes: vec![kv("service.name", "hand-made")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(16, "kept"), record(3, "bad"), record(0, "also kept")],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let (status, _, body) = post(&host, "/v1/logs", PROTOBUF, request.encode_to_vec(), false).await;
    assert_eq!(status, 200);
    let partial = ExportLogsServiceResponse::decode(&body[..])
        .expect("response")
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert_eq!(
        partial.error_message,
        "a log record's trace id is not 16 bytes"
    );
    receiver
        .wait_until("the two good records", |r| !r.logs.is_empty())
        .await;
    receiver.with(|r| {
        let bodies: Vec<String> = r.logs[0].resource_logs[0].scope_logs[0]
            .log_records
            .iter()
            .map(|l| wasmtel_tests::show(l.body.as_ref().expect("body")))
            .collect();
        assert_eq!(bodies, ["kept", "also kept"]);
    });
    host.shutdown().await;
}
