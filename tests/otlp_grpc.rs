//! OTLP/gRPC intake tests: a real OpenTelemetry SDK app exporting over gRPC (`opentelemetry-otlp`
//! with tonic), and the generated OTLP clients sending good and bad requests, against a running
//! host: the HTTP receiver's semantics with gRPC's status codes.

mod common;

use std::time::Duration;

use common::{exposition, start};
use opentelemetry::KeyValue as SdkKeyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{Compression, WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use wasmtel_tests::{Receiver, kv};

fn config(receiver: &Receiver) -> String {
    format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n[intake]\nmax_body_bytes = 65536\n",
        receiver.endpoint()
    )
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            SdkKeyValue::new("service.name", "ranker"),
            SdkKeyValue::new("service.instance.id", "pod-7"),
        ])
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_app_exporting_over_grpc_reaches_prometheus_and_the_otlp_export() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver)).await;
    let grpc = format!("http://{}", host.grpc_addr().expect("gRPC on by default"));
    // tonic's channel lives on this runtime; the SDK's reader and processor call it from theirs.
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(&grpc)
        .with_compression(Compression::Gzip)
        .build()
        .expect("metric exporter");
    let logs = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(&grpc)
        .build()
        .expect("log exporter");
    tokio::task::spawn_blocking(move || {
        let reader = PeriodicReader::builder(metrics)
            .with_interval(Duration::from_secs(3600))
            .build();
        let meters = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource())
            .build();
        let meter = meters.meter("ranker.meter");
        let model = [SdkKeyValue::new("model", "m1")];
        meter.u64_counter("ranked").build().add(5, &model);
        meter
            .f64_histogram("rank.duration")
            .with_unit("s")
            .with_boundaries(vec![0.1, 1.0])
            .build()
            .record(0.05, &model);
        meters
            .force_flush()
            .expect("metrics reach the host over gRPC");
        meters.shutdown().expect("shutdown");

        let loggers = SdkLoggerProvider::builder()
            .with_simple_exporter(logs)
            .with_resource(resource())
            .build();
        let logger = loggers.logger("ranker.log");
        let mut record = logger.create_log_record();
        record.set_severity_number(Severity::Warn);
        record.set_body("slow ranking".into());
        record.add_attribute("model", "m1");
        logger.emit(record);
        loggers.shutdown().expect("logs reach the host over gRPC");
    })
    .await
    .expect("app");

    let m = exposition(&host).await;
    let app = [("job", "ranker"), ("instance", "pod-7"), ("model", "m1")];
    assert_eq!(m.value("ranked_total", &app), Some(5.0));
    assert_eq!(m.value("rank_duration_seconds_count", &app), Some(1.0));
    let accepted = |signal| {
        m.value(
            "wasmtel_intake_otlp_items_total",
            &[("signal", signal), ("outcome", "accepted")],
        )
    };
    assert_eq!(accepted("logs"), Some(1.0));
    assert!(accepted("metrics").is_some_and(|n| n >= 2.0));

    // The log record is forwarded as received, resource and all.
    host.collect_now().await;
    receiver
        .wait_until("the forwarded log record", |r| !r.logs.is_empty())
        .await;
    receiver.with(|r| {
        let rl = &r.logs[0].resource_logs[0];
        let service = wasmtel_tests::attrs(&rl.resource.as_ref().expect("resource").attributes);
        assert_eq!(
            service.get("service.name").map(String::as_str),
            Some("ranker")
        );
        let record = &rl.scope_logs[0].log_records[0];
        assert_eq!(record.severity_number, Severity::Warn as i32);
        assert_eq!(
            record.body.as_ref().and_then(|b| b.value.clone()),
            Some(any_value::Value::StringValue("slow ranking".into()))
        );
    });
    host.shutdown().await;
}

/// A one-point counter request; `name` may be invalid.
fn counter(name: &str, value: f64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: None,
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("k", "v")],
                            time_unix_nano: 2,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_the_http_receivers_answers_as_grpc_statuses() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver)).await;
    let grpc = format!("http://{}", host.grpc_addr().expect("gRPC"));
    let mut metrics = MetricsServiceClient::connect(grpc.clone())
        .await
        .expect("connects")
        .send_compressed(CompressionEncoding::Gzip);

    // Accepted, gzip-compressed: no partial success.
    let mut request = counter("good", 2.0);
    request.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(counter("", 1.0).resource_metrics[0].scope_metrics[0].metrics[0].clone());
    let answer = metrics
        .export(request)
        .await
        .expect("accepted")
        .into_inner();
    let partial = answer.partial_success.expect("one point refused");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("name"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        exposition(&host).await.value("good_total", &[("k", "v")]),
        Some(2.0)
    );

    // Not protobuf: INVALID_ARGUMENT, naming the message.
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Channel::from_shared(grpc.clone())
            .expect("uri")
            .connect()
            .await
            .expect("channel"),
    );
    raw.ready().await.expect("ready");
    let path = wasmtel::grpc::METRICS_EXPORT.parse().expect("path");
    let garbage = tonic::Request::new(bytes::Bytes::from_static(b"\xff\xff\xff not protobuf"));
    let err = raw
        .unary::<_, bytes::Bytes, _>(garbage, path, BytesCodec)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("the body is not a valid ExportMetricsServiceRequest"),
        "{}",
        err.message()
    );

    // Past a request limit: refused whole, before decoding, naming the limit.
    let attributes = (0..200).map(|i| kv(&format!("k{i}"), "v")).collect();
    let mut wide = counter("wide", 1.0);
    if let Some(Data::Sum(s)) = &mut wide.resource_metrics[0].scope_metrics[0].metrics[0].data {
        s.data_points[0].attributes = attributes;
    }
    let err = metrics.export(wide).await.expect_err("over a limit");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("attributes"), "{}", err.message());

    // Larger than max_body_bytes once decompressed: refused.
    let big = "x".repeat(70_000);
    let err = metrics
        .export(counter(&big, 1.0))
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Logs: the records are taken as OTLP/HTTP takes them.
    let mut logs = LogsServiceClient::connect(grpc.clone())
        .await
        .expect("connects");
    let answer = logs
        .export(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("hello".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(answer.partial_success, None);

    // Anything but the three Export methods: UNIMPLEMENTED.
    raw.ready().await.expect("ready");
    let err = raw
        .unary::<_, bytes::Bytes, _>(
            tonic::Request::new(bytes::Bytes::new()),
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
                .parse()
                .expect("path"),
            BytesCodec,
        )
        .await
        .expect_err("not served");
    assert_eq!(err.code(), Code::Unimplemented);

    let m = exposition(&host).await;
    let refused = m
        .samples("wasmtel_intake_requests_rejected_total")
        .map(|(_, v)| v)
        .sum::<f64>();
    assert!(refused >= 2.0, "refusals are counted: {refused}");
    host.shutdown().await;
}

#[tokio::test]
async fn grpc_is_off_with_an_empty_address() {
    let host = start("[intake]\ngrpc_listen = \"\"\n").await;
    assert_eq!(host.grpc_addr(), None);
    host.shutdown().await;
}

/// Raw bytes both ways, for requests the generated clients cannot send.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl tonic::codec::Codec for BytesCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self {
        *self
    }

    fn decoder(&mut self) -> Self {
        *self
    }
}

impl tonic::codec::Encoder for BytesCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for BytesCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

/// The Python SDK's metrics app: one counter over gRPC to the endpoint in its argument.
const PYTHON_APP: &str = r#"
import sys
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sys.argv[1], insecure=True), export_interval_millis=3600000)
provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "pyapp"}))
provider.get_meter("py.meter").create_counter("tokens").add(42, {"model": "m2"})
assert provider.force_flush(), "flush failed"
provider.shutdown()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_grpc_exporter_is_received() {
    if !wasmtel_tests::python_has(
        "opentelemetry.exporter.otlp.proto.grpc",
        "the Python SDK's gRPC exporter (opentelemetry-exporter-otlp-proto-grpc)",
    ) {
        return;
    }
    let host = start("").await;
    let endpoint = format!("http://{}", host.grpc_addr().expect("gRPC"));
    wasmtel_tests::python(PYTHON_APP, vec![endpoint]).await;
    let m = exposition(&host).await;
    let tokens: Vec<(Option<&str>, Option<&str>, f64)> = m
        .samples("tokens_total")
        .map(|(l, v)| {
            (
                l.get("job").map(String::as_str),
                l.get("model").map(String::as_str),
                v,
            )
        })
        .collect();
    assert_eq!(tokens, [(Some("pyapp"), Some("m2"), 42.0)]);
    host.shutdown().await;
}

/// A host exporting to another host's intake with `protocol`, and the events it was sent.
async fn relay(protocol: &str) -> (wasmtel::Host, wasmtel::Host) {
    let sink = start("").await;
    let endpoint = match protocol {
        "grpc" => format!("http://{}", sink.grpc_addr().expect("gRPC")),
        _ => format!("http://{}", sink.intake_addr()),
    };
    let source = start(&format!(
        "{}\n[otlp]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\ndelivery.interval = \"1h\"\n",
        common::CHUNK_RULE
    ))
    .await;
    let events: Vec<_> = (0..3)
        .map(|_| serde_json::json!({"event_type": "chunk_produced", "model": "m9"}))
        .collect();
    assert_eq!(common::post_ndjson(&source, &events).await.status, 202);
    source.collect_now().await;
    (source, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_exports_metrics_and_logs_over_grpc_and_over_http_json() {
    for protocol in ["grpc", "http/json"] {
        let (source, sink) = relay(protocol).await;
        let arrived = || async {
            let m = exposition(&sink).await;
            let chunks = m
                .samples("inference_chunks_total")
                .map(|(l, v)| (l.get("model").cloned(), v))
                .collect::<Vec<_>>();
            let logs = m.value(
                "wasmtel_intake_otlp_items_total",
                &[("signal", "logs"), ("outcome", "accepted")],
            );
            (chunks, logs)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (chunks, logs) = arrived().await;
            if chunks == [(Some("m9".to_owned()), 3.0)] && logs == Some(3.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{protocol}: {chunks:?} {logs:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The source counts a batch once its answer is back, which may be after the sink counted.
        let ok = [
            ("integration", "otlp"),
            ("outcome", "ok"),
            ("signal", "metrics"),
        ];
        while exposition(&source)
            .await
            .value("wasmtel_export_batches_total", &ok)
            != Some(1.0)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{protocol}: not counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        source.shutdown().await;
        sink.shutdown().await;
    }
}

/// A collector stand-in: answers each metrics `Export` with the next of `answers` (then OK),
/// counting the calls.
struct Scripted {
    answers: std::sync::Mutex<Vec<tonic::Status>>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService
    for Scripted
{
    async fn export(
        &self,
        _: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
        >,
        tonic::Status,
    > {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let next = {
            let mut answers = self.answers.lock().expect("lock");
            (!answers.is_empty()).then(|| answers.remove(0))
        };
        match next {
            Some(status) => Err(status),
            None => Ok(tonic::Response::new(Default::default())),
        }
    }
}

/// Starts a scripted collector; its endpoint and call counter.
async fn scripted(
    answers: Vec<tonic::Status>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let service = MetricsServiceServer::new(Scripted {
        answers: std::sync::Mutex::new(answers),
        calls: calls.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        service,
        tokio_stream::wrappers::TcpListenerStream::new(listener),
    ));
    (format!("http://{addr}"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_retries_what_otlp_says_to_and_honours_retry_info() {
    // UNAVAILABLE with RetryInfo, then OK: delivered on the second call.
    let busy = wasmtel::grpc::with_retry_info(
        Code::Unavailable,
        "busy".into(),
        Duration::from_millis(200),
    );
    let (endpoint, calls) = scripted(vec![busy]).await;
    let host = start(&format!(
        "[otlp]\nendpoint = \"{endpoint}\"\nprotocol = \"grpc\"\nlogs = false\ndelivery.interval = \"1h\"\ndelivery.retry.initial_backoff = \"10ms\"\n"
    ))
    .await;
    host.collect_now().await;
    let outcome = |m: &wasmtel_tests::Exposition, outcome| {
        m.value(
            "wasmtel_export_batches_total",
            &[
                ("integration", "otlp"),
                ("outcome", outcome),
                ("signal", "metrics"),
            ],
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outcome(&exposition(&host).await, "ok").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {:?}",
            host.integrations()
                .iter()
                .map(|r| r.status.last_error.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    host.shutdown().await;

    // INVALID_ARGUMENT: rejected once, never sent again.
    let (endpoint, calls) = scripted(vec![tonic::Status::invalid_argument("bad data")]).await;
    let host = start(&format!(
        "[otlp]\nendpoint = \"{endpoint}\"\nprotocol = \"grpc\"\nlogs = false\ndelivery.interval = \"1h\"\ndelivery.retry.initial_backoff = \"10ms\"\n"
    ))
    .await;
    host.collect_now().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outcome(&exposition(&host).await, "failed").is_none() {
        assert!(std::time::Instant::now() < deadline, "never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let error = host
        .integrations()
        .iter()
        .find_map(|r| r.status.last_error.clone())
        .unwrap_or_default();
    assert!(error.contains("gRPC InvalidArgument: bad data"), "{error}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_stalled_http2_connections_stop_neither_grpc_nor_http_intake() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = start(
        "[connections]\nidle_timeout = \"2s\"\nheader_timeout = \"1s\"\n[derive]\nrule_set = \"none\"\n",
    )
    .await;
    let grpc_addr = host.grpc_addr().expect("gRPC");
    // Each sends the HTTP/2 client preface and then nothing.
    let mut stalled = Vec::new();
    for _ in 0..3000 {
        let mut stream = tokio::net::TcpStream::connect(grpc_addr)
            .await
            .expect("connect");
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        stalled.push(stream);
    }
    // The listener holds at most its connection cap: the longest-idle gave way to each
    // newcomer, and those closing get one header timeout to go.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fds = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    assert!(fds < 3000 + 1024 + 200, "{fds} descriptors open");

    let mut metrics = MetricsServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connects past the stalled ones");
    metrics
        .export(counter("through", 1.0))
        .await
        .expect("a gRPC export is served");
    let answer = wasmtel_tests::post_events(
        host.intake_addr(),
        Some("application/x-ndjson"),
        wasmtel_tests::ndjson(&[serde_json::json!({"event_type": "e"})]),
        false,
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(
        exposition(&host)
            .await
            .value("through_total", &[("k", "v")]),
        Some(1.0)
    );
    // Past the idle timeout every stalled connection is closed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut open = 0;
    for stream in &mut stalled {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read_to_end(&mut rest));
        if read.await.is_err() {
            open += 1;
        }
    }
    assert_eq!(open, 0, "stalled HTTP/2 connections still open");
    host.shutdown().await;
}
