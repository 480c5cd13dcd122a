//! Selection and tenancy over real HTTP and gRPC: what each integration receives, item by
//! item, whoever sends and whatever the payload claims; who may call which admin route; who
//! sees which series on `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use common::{CHUNK_RULE, start};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};
use wasmtel_tests::{Received, Receiver, attrs, kv};

const KEY: &str = "service.namespace";

/// A request to `url` with an optional bearer token and body: status and JSON body.
async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let response = req.send().await.expect("reachable");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A protobuf body posted to `path` with an optional bearer token: the status.
async fn post_proto(host: &wasmtel::Host, path: &str, token: Option<&str>, body: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", host.intake_addr()))
        .header("content-type", "application/x-protobuf");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.body(body)
        .send()
        .await
        .expect("intake")
        .status()
        .as_u16()
}

/// A one-point monotonic counter of a resource claiming namespace `claims`.
fn counter(
    service: &str,
    claims: Option<&str>,
    name: &str,
    value: f64,
) -> ExportMetricsServiceRequest {
    let mut attributes = vec![kv("service.name", service)];
    attributes.extend(claims.map(|c| kv(KEY, c)));
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 2,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Log records with `bodies`, of a resource claiming namespace `claims`.
fn logs(service: &str, claims: Option<&str>, bodies: &[String]) -> ExportLogsServiceRequest {
    let mut attributes = vec![kv("service.name", service)];
    attributes.extend(claims.map(|c| kv(KEY, c)));
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(b.clone())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// A traces request from `service`, claiming namespace `claims`, of one span per name.
fn spans(service: &str, claims: Option<&str>, names: &[&str]) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let mut attributes = vec![kv("service.name", service)];
    attributes.extend(claims.map(|c| kv(KEY, c)));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .zip(1u8..)
                    .map(|(name, i)| Span {
                        trace_id: vec![9; 16],
                        span_id: vec![i; 8],
                        name: (*name).to_owned(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Every received metric point: (resource namespace, metric name, value).
fn points(r: &Received) -> Vec<(Option<String>, String, f64)> {
    let mut out = Vec::new();
    for request in &r.metrics {
        for rm in &request.resource_metrics {
            let ns = attrs(&rm.resource.as_ref().expect("resource").attributes)
                .get(KEY)
                .cloned();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    if let Some(Data::Sum(sum)) = &m.data {
                        for p in &sum.data_points {
                            let value = match p.value {
                                Some(number_data_point::Value::AsDouble(v)) => v,
                                Some(number_data_point::Value::AsInt(v)) => v as f64,
                                None => f64::NAN,
                            };
                            out.push((ns.clone(), m.name.clone(), value));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every received log record: (resource namespace, body text, event name).
fn records(r: &Received) -> Vec<(Option<String>, String, String)> {
    let mut out = Vec::new();
    for request in &r.logs {
        for rl in &request.resource_logs {
            let ns = attrs(&rl.resource.as_ref().expect("resource").attributes)
                .get(KEY)
                .cloned();
            for sl in &rl.scope_logs {
                for rec in &sl.log_records {
                    let body = rec
                        .body
                        .as_ref()
                        .map(wasmtel_tests::show)
                        .unwrap_or_default();
                    out.push((ns.clone(), body, rec.event_name.clone()));
                }
            }
        }
    }
    out
}

/// The last value of every received counter, by (namespace, name): cumulative sums.
fn last_values(r: &Received) -> BTreeMap<(Option<String>, String), f64> {
    points(r)
        .into_iter()
        .map(|(ns, name, v)| ((ns, name), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_receives_only_what_it_selects_for_metrics_logs_and_events() {
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n\
         select = {{ resource = {{ \"{KEY}\" = [\"team-a\", \"prod-*\"] }}, exclude_metrics = [\"skip.*\"] }}\n{CHUNK_RULE}",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    // Stored integrations select through the API: metric names only, or logs only.
    let (names, logs_only) = (Receiver::start().await, Receiver::start().await);
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let url = format!(
        "http://{}/api/v1/integrations",
        host.admin_addr().expect("admin")
    );
    for body in [
        json!({ "kind": "metrics", "type": "otlp", "name": "names", "endpoint": names.endpoint(),
                "delivery": { "interval": "1h" }, "select": { "metrics": ["kept.*", "other.*"] } }),
        json!({ "kind": "metrics", "type": "otlp", "name": "logs-only", "endpoint": logs_only.endpoint(),
                "delivery": { "interval": "1h" }, "select": { "signals": ["logs"] } }),
    ] {
        let (status, made) = call("POST", &url, Some(operator.trim()), Some(body)).await;
        assert_eq!(status, 201, "{made}");
    }
    for (ns, name) in [
        ("team-a", "kept.a"),
        ("team-a", "skip.a"),
        ("prod-eu", "kept.prod"),
        ("team-b", "other.b"),
    ] {
        let body = counter("app", Some(ns), name, 3.0).encode_to_vec();
        assert_eq!(post_proto(&host, "/v1/metrics", None, body).await, 200);
    }
    let body = counter("app", None, "no.namespace", 1.0).encode_to_vec();
    assert_eq!(post_proto(&host, "/v1/metrics", None, body).await, 200);
    for (ns, text) in [("team-a", "a-1"), ("team-b", "b-1"), ("prod-x", "p-1")] {
        let body = logs("app", Some(ns), &[text.to_owned()]).encode_to_vec();
        assert_eq!(post_proto(&host, "/v1/logs", None, body).await, 200);
    }
    // Events are recorded under the host's resource, which names no namespace: not selected.
    let events = wasmtel_tests::ndjson(&[json!({"event_type": "chunk_produced", "model": "m"})]);
    let answer = wasmtel_tests::post_events(host.intake_addr(), None, events, false).await;
    assert_eq!(answer.status, 202);
    host.collect_now().await;
    receiver
        .wait_until("the selected records", |r| records(r).len() == 2)
        .await;
    receiver
        .wait_until("metrics", |r| !r.metrics.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    receiver.with(|r| {
        let mut got = points(r);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                (Some("team-a".into()), "kept.a".into(), 3.0),
                (Some("prod-eu".into()), "kept.prod".into(), 3.0),
            ]
        );
        let mut texts: Vec<String> = records(r).into_iter().map(|(_, b, _)| b).collect();
        texts.sort();
        assert_eq!(
            texts,
            ["a-1", "p-1"],
            "team-b's record and every event left out"
        );
    });
    names.wait_until("metrics", |r| !r.metrics.is_empty()).await;
    names.with(|r| {
        let mut got: Vec<String> = points(r).into_iter().map(|(_, n, _)| n).collect();
        got.sort();
        assert_eq!(
            got,
            ["kept.a", "kept.prod", "other.b"],
            "by name, of every resource"
        );
    });
    assert!(
        logs_only.with(|r| r.metrics.is_empty()),
        "it takes no metrics"
    );
    host.shutdown().await;
}

/// A host with tenancy on by `service.namespace` (`extra` appended to its config), its data
/// directory, and the operator's admin token.
async fn tenancy_host(extra: &str) -> (wasmtel::Host, tempfile::TempDir, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"{KEY}\"\n{extra}",
        data.path().display()
    ))
    .await;
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    (host, data, operator.trim().to_owned())
}

/// Posts `events` as NDJSON to `host` with bearer `token`: the status.
async fn post_events_as(host: &wasmtel::Host, token: &str, events: &[Value]) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/v1/events", host.intake_addr()))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(wasmtel_tests::ndjson(events))
        .send()
        .await
        .expect("events")
        .status()
        .as_u16()
}

/// One tenant as a test drives it.
struct Team {
    name: String,
    admin: String,
    intake: String,
    metrics: Receiver,
    logs: Receiver,
    traces: Receiver,
    statsd: Option<UdpSocket>,
}

/// Creates tenant `name` through the API and gives it an OTLP metrics, logs and traces
/// integration, each to its own receiver, with its own admin token.
async fn team(admin_url: &str, operator: &str, name: &str, statsd: bool) -> Team {
    let (status, created) = call(
        "POST",
        &format!("{admin_url}/api/v1/tenants"),
        Some(operator),
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = |k: &str| created[k].as_str().expect(k).to_owned();
    let (admin, intake) = (token("admin_token"), token("intake_token"));
    let (metrics, logs) = (Receiver::start().await, Receiver::start().await);
    let traces = Receiver::start().await;
    for (kind, receiver) in [("metrics", &metrics), ("logs", &logs), ("traces", &traces)] {
        let body = json!({ "kind": kind, "type": "otlp", "name": "mine", "endpoint": receiver.endpoint() });
        let url = format!("{admin_url}/api/v1/integrations");
        let (status, made) = call("POST", &url, Some(&admin), Some(body)).await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["tenant"], name);
        assert_eq!(made["select"]["resource"][KEY], json!(name), "pinned");
    }
    let socket = statsd.then(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        socket
    });
    if let Some(socket) = &socket {
        let endpoint = format!("udp://{}", socket.local_addr().expect("addr"));
        let body =
            json!({ "kind": "metrics", "type": "statsd", "name": "dog", "endpoint": endpoint });
        let url = format!("{admin_url}/api/v1/integrations");
        let (status, made) = call("POST", &url, Some(&admin), Some(body)).await;
        assert_eq!(status, 201, "{made}");
    }
    Team {
        name: name.to_owned(),
        admin,
        intake,
        metrics,
        logs,
        traces,
        statsd: socket,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tenants_each_receive_exactly_their_own_items_whatever_the_payload_claims() {
    const TENANTS: usize = 20;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"{KEY}\"\n[delivery]\ninterval = \"1h\"\n[intake]\ngrpc_listen = \"127.0.0.1:0\"\n{CHUNK_RULE}",
        data.path().display()
    ))
    .await;
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let operator = operator.trim();
    let admin_url = format!("http://{}", host.admin_addr().expect("admin"));
    let mut teams = Vec::new();
    for i in 0..TENANTS {
        teams.push(team(&admin_url, operator, &format!("t{i}"), i < 3).await);
    }
    let grpc = format!("http://{}", host.grpc_addr().expect("gRPC"));
    let mut metrics_client = MetricsServiceClient::connect(grpc.clone())
        .await
        .expect("gRPC");
    let mut logs_client = LogsServiceClient::connect(grpc.clone())
        .await
        .expect("gRPC");
    let mut traces_client = TraceServiceClient::connect(grpc).await.expect("gRPC");
    let bearer = |token: &str| -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        format!("Bearer {token}").parse().expect("metadata")
    };
    for (i, t) in teams.iter().enumerate() {
        // Each tenant's payload claims the next tenant's namespace.
        let lie = format!("t{}", (i + 1) % TENANTS);
        let n = &t.name;
        let body = counter("app", Some(&lie), &format!("{n}.http"), 1.0).encode_to_vec();
        assert_eq!(
            post_proto(&host, "/v1/metrics", Some(&t.intake), body).await,
            200
        );
        let bodies: Vec<String> = (0..3).map(|k| format!("{n}-http-{k}")).collect();
        let body = logs("app", Some(&lie), &bodies).encode_to_vec();
        assert_eq!(
            post_proto(&host, "/v1/logs", Some(&t.intake), body).await,
            200
        );
        let mut request =
            tonic::Request::new(counter("app", Some(&lie), &format!("{n}.grpc"), 10.0));
        request
            .metadata_mut()
            .insert("authorization", bearer(&t.intake));
        metrics_client.export(request).await.expect("gRPC metrics");
        let bodies: Vec<String> = (0..2).map(|k| format!("{n}-grpc-{k}")).collect();
        let mut request = tonic::Request::new(logs("app", Some(&lie), &bodies));
        request
            .metadata_mut()
            .insert("authorization", bearer(&t.intake));
        logs_client.export(request).await.expect("gRPC logs");
        let body = spans(
            "app",
            Some(&lie),
            &[&format!("{n}-http-a"), &format!("{n}-http-b")],
        );
        assert_eq!(
            post_proto(&host, "/v1/traces", Some(&t.intake), body.encode_to_vec()).await,
            200
        );
        let mut request = tonic::Request::new(spans("app", Some(&lie), &[&format!("{n}-grpc")]));
        request
            .metadata_mut()
            .insert("authorization", bearer(&t.intake));
        traces_client.export(request).await.expect("gRPC traces");
        let events: Vec<Value> = (0..2)
            .map(|_| json!({"event_type": "chunk_produced", "model": format!("{n}-model")}))
            .collect();
        assert_eq!(post_events_as(&host, &t.intake, &events).await, 202);
    }
    // The operator's data (no token) claiming a tenant's namespace reaches no tenant.
    let body = counter("ops", Some("t0"), "operator.claim", 5.0).encode_to_vec();
    assert_eq!(post_proto(&host, "/v1/metrics", None, body).await, 200);
    let body = logs("ops", Some("t0"), &["operator-log".into()]).encode_to_vec();
    assert_eq!(post_proto(&host, "/v1/logs", None, body).await, 200);
    let body = spans("ops", Some("t0"), &["operator-span"]).encode_to_vec();
    assert_eq!(post_proto(&host, "/v1/traces", None, body).await, 200);

    host.collect_now().await;
    for t in &teams {
        // 3 + 2 OTLP records and 2 events.
        t.logs
            .wait_until(&format!("{}'s records", t.name), |r| records(r).len() == 7)
            .await;
        t.metrics
            .wait_until(&format!("{}'s metrics", t.name), |r| {
                last_values(r).len() == 3
            })
            .await;
        t.traces
            .wait_until(&format!("{}'s spans", t.name), |r| r.spans().len() == 3)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for t in &teams {
        let n = t.name.clone();
        t.metrics.with(|r| {
            let mine = Some(n.clone());
            let expected = BTreeMap::from([
                ((mine.clone(), format!("{n}.http")), 1.0),
                ((mine.clone(), format!("{n}.grpc")), 10.0),
                ((mine, "inference.chunks".to_owned()), 2.0),
            ]);
            assert_eq!(last_values(r), expected, "tenant {n}'s metrics");
            assert!(r.logs.is_empty(), "the metrics integration takes no logs");
        });
        t.logs.with(|r| {
            let got = records(r);
            assert!(
                got.iter().all(|(ns, _, _)| ns.as_deref() == Some(&*n)),
                "{got:?}"
            );
            let mut bodies: Vec<&str> = got
                .iter()
                .filter(|(_, _, event)| event.is_empty())
                .map(|(_, b, _)| b.as_str())
                .collect();
            bodies.sort_unstable();
            let expected = [
                format!("{n}-grpc-0"),
                format!("{n}-grpc-1"),
                format!("{n}-http-0"),
                format!("{n}-http-1"),
                format!("{n}-http-2"),
            ];
            assert_eq!(
                bodies,
                expected.iter().map(String::as_str).collect::<Vec<_>>()
            );
            let events = got.iter().filter(|(_, _, e)| e == "chunk_produced").count();
            assert_eq!(events, 2, "tenant {n}'s events");
            assert!(r.traces.is_empty(), "the logs integration takes no spans");
        });
        t.traces.with(|r| {
            let mut got: Vec<(Option<String>, String)> = Vec::new();
            for rs in r.traces.iter().flat_map(|t| &t.resource_spans) {
                let ns = rs
                    .resource
                    .as_ref()
                    .and_then(|res| attrs(&res.attributes).get(KEY).cloned());
                for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                    got.push((ns.clone(), s.name.clone()));
                }
            }
            got.sort();
            let mine = Some(n.clone());
            assert_eq!(
                got,
                [
                    (mine.clone(), format!("{n}-grpc")),
                    (mine.clone(), format!("{n}-http-a")),
                    (mine, format!("{n}-http-b")),
                ],
                "tenant {n}'s spans"
            );
            assert!(r.logs.is_empty() && r.metrics.is_empty());
        });
    }
    // A tenant's exporter plugin sees only that tenant's series.
    for t in teams.iter().filter(|t| t.statsd.is_some()) {
        let socket = t.statsd.as_ref().expect("socket");
        let mut lines = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = socket.recv(&mut buf) {
            lines.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
        let n = &t.name;
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{n}.http:1|c"))),
            "{n}: {lines:?}"
        );
        for line in &lines {
            let name = line.split(':').next().unwrap_or_default();
            assert!(
                name.starts_with(&format!("{n}.")) || name.starts_with("inference"),
                "tenant {n}'s plugin got {line}"
            );
        }
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_answers_by_whose_token_it_is() {
    let data = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"{KEY}\"\n[delivery]\ninterval = \"1h\"\n[otlp]\nendpoint = \"{}\"\n[[scrape]]\nurl = \"http://127.0.0.1:9/metrics\"\ninterval = \"1h\"\n",
        data.path().display(),
        receiver.endpoint(),
    ))
    .await;
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let operator = operator.trim().to_owned();
    let operator_intake =
        std::fs::read_to_string(data.path().join("intake.token")).expect("intake token");
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let a = team(&base, &operator, "a", false).await;
    let b = team(&base, &operator, "b", false).await;
    let (_, listed) = call(
        "GET",
        &format!("{base}/api/v1/integrations"),
        Some(&a.admin),
        None,
    )
    .await;
    let a_id = listed["integrations"][0]["id"]
        .as_str()
        .expect("a's")
        .to_owned();
    assert_eq!(
        listed["integrations"].as_array().expect("list").len(),
        3,
        "a's three only"
    );

    let who: [(&str, Option<&str>); 5] = [
        ("operator", Some(&operator)),
        ("own", Some(&a.admin)),
        ("other", Some(&b.admin)),
        ("intake", Some(&a.intake)),
        ("none", None),
    ];
    let create =
        json!({ "kind": "metrics", "type": "otlp", "name": "x", "endpoint": receiver.endpoint() });
    // Each route: method, path (`{a}`: a's integration), body, and the status for the
    // operator, the own tenant, another tenant, an intake token and no token.
    const ROUTES: &str = "
        GET    /api/v1/status                    -      200 200 200 401 401
        GET    /api/v1/history                   -      200 200 200 401 401
        GET    /api/v1/plugins                   -      200 200 200 401 401
        GET    /api/v1/integrations              -      200 200 200 401 401
        GET    /api/v1/integrations/{a}          -      200 200 404 401 401
        POST   /api/v1/integrations/{a}/test     -      200 200 404 401 401
        POST   /api/v1/integrations/{a}/resume   -      200 200 404 401 401
        POST   /api/v1/integrations/{a}/disable  -      200 200 404 401 401
        POST   /api/v1/integrations/{a}/enable   -      200 200 404 401 401
        PATCH  /api/v1/integrations/{a}          rename 200 200 404 401 401
        GET    /api/v1/integrations/otlp         -      200 404 404 401 401
        DELETE /api/v1/integrations/otlp         -      409 404 404 401 401
        POST   /api/v1/integrations              create 201 201 201 401 401
        GET    /api/v1/tenants                   -      200 403 403 401 401
        GET    /api/v1/scrape                    -      200 403 403 401 401
        GET    /api/v1/tenants/a                 -      200 403 403 401 401
        POST   /api/v1/tenants                   tenant 201 403 403 401 401
        DELETE /api/v1/tenants/c                 -      204 403 403 401 401";
    let body = |name: &str| match name {
        "rename" => Some(json!({"name": "renamed"})),
        "create" => Some(create.clone()),
        "tenant" => Some(json!({"name": "c"})),
        _ => None,
    };
    let routes: Vec<(&str, String, Option<Value>, Vec<u16>)> = ROUTES
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [method, path, named, statuses @ ..] = fields.as_slice() else {
                return None;
            };
            let expected = statuses
                .iter()
                .map(|s| s.parse().expect("status"))
                .collect();
            Some((*method, path.replace("{a}", &a_id), body(named), expected))
        })
        .collect();
    assert_eq!(routes.len(), 18);
    for (method, path, body, expected) in &routes {
        for ((name, token), want) in who.iter().zip(expected) {
            // A created tenant `c` is deleted again by the operator only, so the table holds.
            let (status, answer) =
                call(method, &format!("{base}{path}"), *token, body.clone()).await;
            assert_eq!(status, *want, "{method} {path} as {name}: {answer}");
            if *name == "operator" && path == "/api/v1/tenants" && *method == "POST" {
                assert!(answer["admin_token"].is_string() && answer["intake_token"].is_string());
            }
        }
    }
    // What each sees.
    let (_, status) = call(
        "GET",
        &format!("{base}/api/v1/status"),
        Some(&a.admin),
        None,
    )
    .await;
    let ids: Vec<&str> = status["integrations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["tenant"].as_str().unwrap_or("operator"))
        .collect();
    assert!(
        ids.iter().all(|t| *t == "a"),
        "a sees only its own: {ids:?}"
    );
    assert!(status["intake"].is_null() && status["gpus"] == json!([]));
    assert_eq!(
        status["scrape_targets"],
        json!([]),
        "scrape targets are the operator's"
    );
    let (_, status) = call(
        "GET",
        &format!("{base}/api/v1/status"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(
        status["scrape_targets"][0]["url"],
        json!("http://127.0.0.1:9/metrics")
    );
    let (_, all) = call(
        "GET",
        &format!("{base}/api/v1/integrations"),
        Some(&operator),
        None,
    )
    .await;
    let owners: std::collections::BTreeSet<&str> = all["integrations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["tenant"].as_str().unwrap_or("operator"))
        .collect();
    assert_eq!(owners, ["a", "b", "operator"].into_iter().collect());
    // A tenant cannot widen its selection to another tenant's data.
    let body = json!({ "kind": "metrics", "type": "otlp", "name": "wide", "endpoint": receiver.endpoint(),
                       "select": { "resource": { KEY: "*" } } });
    let (status, answer) = call(
        "POST",
        &format!("{base}/api/v1/integrations"),
        Some(&a.admin),
        Some(body),
    )
    .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("select")),
        "{answer}"
    );
    let body = json!({ "select": { "resource": { KEY: "b" } } });
    let (status, _) = call(
        "PATCH",
        &format!("{base}/api/v1/integrations/{a_id}"),
        Some(&a.admin),
        Some(body),
    )
    .await;
    assert_eq!(status, 400);
    // Admin tokens do not work on intake; intake tokens not on the admin API.
    for token in [&operator, &a.admin] {
        let body = counter("x", None, "x", 1.0).encode_to_vec();
        assert_eq!(
            post_proto(&host, "/v1/metrics", Some(token), body).await,
            401
        );
    }
    let (status, _) = call(
        "GET",
        &format!("{base}/api/v1/status"),
        Some(operator_intake.trim()),
        None,
    )
    .await;
    assert_eq!(status, 401);
    // A deleted tenant's tokens stop working at once, and its integrations go.
    let (status, _) = call(
        "DELETE",
        &format!("{base}/api/v1/tenants/b"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        "GET",
        &format!("{base}/api/v1/status"),
        Some(&b.admin),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let body = counter("x", None, "x", 1.0).encode_to_vec();
    assert_eq!(
        post_proto(&host, "/v1/metrics", Some(&b.intake), body).await,
        401
    );
    let (_, all) = call(
        "GET",
        &format!("{base}/api/v1/integrations"),
        Some(&operator),
        None,
    )
    .await;
    assert!(
        all["integrations"]
            .as_array()
            .expect("list")
            .iter()
            .all(|i| i["tenant"] != "b")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_and_a_tenant_scrapes_only_its_own_series() {
    let (host, data, operator) =
        tenancy_host("require_intake_token = true\n[intake]\ngrpc_listen = \"127.0.0.1:0\"\n")
            .await;
    let operator_intake =
        std::fs::read_to_string(data.path().join("intake.token")).expect("intake");
    let grpc = format!("http://{}", host.grpc_addr().expect("gRPC"));
    let mut client = MetricsServiceClient::connect(grpc).await.expect("gRPC");
    let refused = client
        .export(counter("x", Some("a"), "anonymous", 1.0))
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let mut with_admin = tonic::Request::new(counter("x", None, "anonymous", 1.0));
    let admin_token = format!("Bearer {operator}").parse().expect("metadata");
    with_admin
        .metadata_mut()
        .insert("authorization", admin_token);
    let refused = client.export(with_admin).await.expect_err("an admin token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        !refused.message().contains(&operator),
        "the token is not echoed"
    );
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let a = team(&base, &operator, "a", false).await;
    let b = team(&base, &operator, "b", false).await;

    // Without a token nothing is taken: 401 over HTTP, UNAUTHENTICATED over gRPC.
    let body = counter("x", Some("a"), "anonymous", 1.0).encode_to_vec();
    assert_eq!(
        post_proto(&host, "/v1/metrics", None, body.clone()).await,
        401
    );
    assert_eq!(
        post_proto(&host, "/v1/metrics", Some("made-up"), body).await,
        401
    );
    let events = reqwest::Client::new()
        .post(format!("http://{}/v1/events", host.intake_addr()))
        .body(r#"{"event_type":"x"}"#)
        .send()
        .await
        .expect("events");
    assert_eq!(events.status().as_u16(), 401);
    assert_eq!(events.headers()["www-authenticate"], "Bearer");

    for (token, name) in [(&a.intake, "a.series"), (&b.intake, "b.series")] {
        let body = counter("app", None, name, 1.0).encode_to_vec();
        assert_eq!(
            post_proto(&host, "/v1/metrics", Some(token), body).await,
            200
        );
    }
    let body = counter("ops", None, "ops.series", 1.0).encode_to_vec();
    assert_eq!(
        post_proto(&host, "/v1/metrics", Some(operator_intake.trim()), body).await,
        200
    );

    let scrape = |token: Option<String>| {
        let url = format!(
            "http://{}/metrics",
            host.prometheus_addr().expect("prometheus")
        );
        async move {
            let mut req = reqwest::Client::new().get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let response = req.send().await.expect("scrape");
            (
                response.status().as_u16(),
                response.text().await.expect("text"),
            )
        }
    };
    assert_eq!(scrape(None).await.0, 401);
    assert_eq!(
        scrape(Some(a.intake.clone())).await.0,
        401,
        "intake tokens do not read"
    );
    let (status, text) = scrape(Some(operator.clone())).await;
    assert_eq!(status, 200);
    for name in [
        "a_series_total",
        "b_series_total",
        "ops_series_total",
        "wasmtel_",
    ] {
        assert!(text.contains(name), "the operator sees {name}");
    }
    let (status, text) = scrape(Some(a.admin.clone())).await;
    assert_eq!(status, 200);
    assert!(text.contains("a_series_total"), "{text}");
    for name in ["b_series", "ops_series", "wasmtel_"] {
        assert!(!text.contains(name), "tenant a sees {name}: {text}");
    }
    host.shutdown().await;

    // `public = true` opens /metrics again.
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"{KEY}\"\n[prometheus]\npublic = true\n",
        data.path().display()
    ))
    .await;
    let body = counter("app", None, "open.series", 1.0).encode_to_vec();
    assert_eq!(post_proto(&host, "/v1/metrics", None, body).await, 200);
    let text = wasmtel_tests::scrape(host.prometheus_addr().expect("prometheus")).await;
    assert!(text.contains("open_series_total"), "{text}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrations_own_transforms_change_its_data_only() {
    let (redacted, plain) = (Receiver::start().await, Receiver::start().await);
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ntransforms = [\"redact\"]\n[plugins.config.redact]\ndrop = \"secret\"\n",
        data.path().display(),
        redacted.endpoint()
    ))
    .await;
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let body =
        json!({ "kind": "logs", "type": "otlp", "name": "plain", "endpoint": plain.endpoint() });
    let (status, made) = call(
        "POST",
        &format!("{base}/api/v1/integrations"),
        Some(operator.trim()),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let mut request = logs("app", None, &["hello".into()]);
    request.resource_logs[0].scope_logs[0].log_records[0].attributes =
        vec![kv("secret", "s3cr3t"), kv("kept", "yes")];
    assert_eq!(
        post_proto(&host, "/v1/logs", None, request.encode_to_vec()).await,
        200
    );
    let keys = |r: &Received| -> Vec<Vec<String>> {
        r.logs
            .iter()
            .flat_map(|l| &l.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|rec| attrs(&rec.attributes).into_keys().collect())
            .collect()
    };
    redacted
        .wait_until("the redacted record", |r| !r.logs.is_empty())
        .await;
    plain
        .wait_until("the plain record", |r| !r.logs.is_empty())
        .await;
    assert_eq!(redacted.with(keys), [["kept"]], "redacted for [otlp]");
    assert_eq!(
        plain.with(keys),
        [["kept", "secret"]],
        "untouched elsewhere"
    );
    host.shutdown().await;
}

/// A counter request of one resource with a point per attribute value of `key`.
fn spread(service: &str, name: &str, values: &[&str]) -> ExportMetricsServiceRequest {
    let mut request = counter(service, None, name, 1.0);
    let points = &mut request.resource_metrics[0].scope_metrics[0].metrics[0].data;
    if let Some(Data::Sum(sum)) = points {
        let template = sum.data_points[0].clone();
        sum.data_points = values
            .iter()
            .map(|v| NumberDataPoint {
                attributes: vec![kv("key", v)],
                ..template.clone()
            })
            .collect();
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_limits_is_refused_and_counted_while_another_is_untouched() {
    let (host, _data, operator) = tenancy_host("[tenancy.limits]\nseries = 1000\n[delivery]\ninterval = \"1h\"\n[intake]\ngrpc_listen = \"127.0.0.1:0\"\n").await;
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let noisy = team(&base, &operator, "noisy", false).await;
    let quiet = team(&base, &operator, "quiet", false).await;
    let limits = json!({ "limits": { "resources": 1, "series": 2, "log_records_per_second": 5 } });
    let (status, tenant) = call(
        "PATCH",
        &format!("{base}/api/v1/tenants/noisy"),
        Some(&operator),
        Some(limits),
    )
    .await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(
        tenant["effective"],
        json!({ "resources": 1, "series": 2, "log_records_per_second": 5.0 })
    );
    let (status, bad) = call(
        "PATCH",
        &format!("{base}/api/v1/tenants/noisy"),
        Some(&operator),
        Some(json!({ "limits": { "queue_share": 2 } })),
    )
    .await;
    assert_eq!(status, 400, "{bad}");

    let values = ["a", "b", "c", "d", "e"];
    for t in [&noisy, &quiet] {
        // Five series of one resource, a second resource, and ten log records (twice its rate).
        let body = spread("one", "spread", &values).encode_to_vec();
        assert_eq!(
            post_proto(&host, "/v1/metrics", Some(&t.intake), body).await,
            200
        );
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/metrics", host.intake_addr()))
            .bearer_auth(&t.intake)
            .header("content-type", "application/json")
            .body(
                serde_json::to_string(&json!({"resourceMetrics": [{
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "two"}}]},
                    "scopeMetrics": [{"metrics": [{"name": "second", "sum": {"isMonotonic": true, "aggregationTemporality": 2,
                        "dataPoints": [{"asDouble": 1.0, "timeUnixNano": "2"}]}}]}]}]}))
                .expect("json"),
            )
            .send()
            .await
            .expect("intake");
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value =
            serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null);
        let refused = answer["partialSuccess"]["rejectedDataPoints"].as_i64();
        if t.name == "noisy" {
            assert_eq!(refused, Some(1), "{answer}");
            assert!(
                answer["partialSuccess"]["errorMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("limit of 1 resources")),
                "{answer}"
            );
        } else {
            assert_eq!(refused, None, "{answer}");
        }
        let bodies: Vec<String> = (0..10).map(|k| format!("{}-{k}", t.name)).collect();
        let body = logs("app", None, &bodies).encode_to_vec();
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/logs", host.intake_addr()))
            .bearer_auth(&t.intake)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("intake");
        if t.name == "noisy" {
            assert_eq!(response.status().as_u16(), 429);
            assert_eq!(response.headers()["retry-after"], "1");
        } else {
            assert_eq!(response.status().as_u16(), 200);
        }
    }
    // Over gRPC the rate is RESOURCE_EXHAUSTED, with when to retry.
    let grpc = format!("http://{}", host.grpc_addr().expect("gRPC"));
    let mut client = LogsServiceClient::connect(grpc).await.expect("gRPC");
    let bodies: Vec<String> = (0..10).map(|k| format!("noisy-grpc-{k}")).collect();
    let mut request = tonic::Request::new(logs("app", None, &bodies));
    let bearer = format!("Bearer {}", noisy.intake)
        .parse()
        .expect("metadata");
    request.metadata_mut().insert("authorization", bearer);
    let refused = client.export(request).await.expect_err("over its rate");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("log records per second"),
        "{refused:?}"
    );
    host.collect_now().await;
    quiet
        .logs
        .wait_until("quiet's records", |r| records(r).len() == 10)
        .await;
    quiet
        .metrics
        .wait_until("quiet's metrics", |r| last_values(r).len() == 2)
        .await;
    noisy
        .metrics
        .wait_until("noisy's metrics", |r| !r.metrics.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    quiet.metrics.with(|r| {
        let spread: usize = points(r).iter().filter(|(_, n, _)| n == "spread").count();
        assert_eq!(spread, 5, "all five series of the quiet tenant");
        assert!(points(r).iter().any(|(_, n, _)| n == "second"));
    });
    noisy.metrics.with(|r| {
        let mut got: Vec<f64> = points(r)
            .iter()
            .filter(|(_, n, _)| n == "spread")
            .map(|p| p.2)
            .collect();
        got.sort_by(f64::total_cmp);
        assert_eq!(
            got,
            [1.0, 1.0, 3.0],
            "two series kept, three folded into the overflow series"
        );
        assert!(
            points(r).iter().all(|(_, n, _)| n != "second"),
            "its second resource refused"
        );
    });
    assert!(
        noisy.logs.with(|r| r.logs.is_empty()),
        "its records refused whole"
    );
    // Counted per tenant, on the operator's /metrics.
    let response = reqwest::Client::new()
        .get(format!(
            "http://{}/metrics",
            host.prometheus_addr().expect("prometheus")
        ))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("scrape");
    let text = response.text().await.expect("text");
    let exposition = wasmtel_tests::Exposition::parse(&text);
    let refused = |limit: &str| {
        exposition.value(
            "wasmtel_tenant_refused_total",
            &[("limit", limit), ("tenant", "noisy")],
        )
    };
    assert_eq!(refused("resources"), Some(1.0), "{text}");
    assert_eq!(
        refused("log_records_per_second"),
        Some(20.0),
        "ten over HTTP, ten over gRPC"
    );
    assert!(
        !text.contains("tenant=\"quiet\""),
        "nothing of quiet's was refused"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_fills_at_most_its_share_of_a_shared_queue() {
    let stalled = Receiver::start().await;
    stalled.answer(503);
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"{KEY}\"\n\
         [otlp]\nendpoint = \"{}\"\ndelivery = {{ interval = \"1h\", logs_queue = 10, retry = {{ max_retries = 100, initial_backoff = \"10s\" }} }}\n",
        data.path().display(),
        stalled.endpoint()
    ))
    .await;
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let operator = operator.trim().to_owned();
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let (status, made) = call(
        "POST",
        &format!("{base}/api/v1/tenants"),
        Some(&operator),
        Some(json!({ "name": "noisy", "limits": { "queue_share": 0.5 } })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let noisy = made["intake_token"].as_str().expect("token").to_owned();
    let (_, made) = call(
        "POST",
        &format!("{base}/api/v1/tenants"),
        Some(&operator),
        Some(json!({ "name": "quiet" })),
    )
    .await;
    let quiet = made["intake_token"].as_str().expect("token").to_owned();
    let send = |token: String, n: usize| {
        let url = format!("http://{}/v1/logs", host.intake_addr());
        async move {
            let bodies: Vec<String> = (0..n).map(|k| format!("r{k}")).collect();
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-protobuf")
                .body(logs("app", None, &bodies).encode_to_vec())
                .send()
                .await
                .expect("intake");
            response.status().as_u16()
        }
    };
    assert_eq!(send(noisy.clone(), 4).await, 200, "within half of ten");
    assert_eq!(
        send(noisy.clone(), 4).await,
        429,
        "eight would be over half"
    );
    assert_eq!(
        send(quiet.clone(), 4).await,
        200,
        "the other tenant still has room"
    );
    assert_eq!(send(noisy, 1).await, 200, "five is half");
    let reports = host.integrations();
    let logs = reports.iter().find(|r| r.signal == "logs").expect("logs");
    assert_eq!(logs.items.accepted, 9, "{logs:?}");
    host.shutdown().await;
}

/// `bytes` with a custom section of `n` bytes appended: the same component, another digest.
fn with_custom_section(bytes: &[u8], n: usize) -> Vec<u8> {
    let leb = |mut v: usize, out: &mut Vec<u8>| loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    };
    let mut out = bytes.to_vec();
    out.push(0);
    leb(2 + n, &mut out);
    out.extend_from_slice(&[1, b'x']);
    out.extend(std::iter::repeat_n(0u8, n));
    out
}

/// An HTTP sink recording the body of every POST to `/logs`.
async fn line_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/logs",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .expect("lock")
                    .extend(body.lines().map(str::to_owned));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_uploaded_plugin_serves_only_that_tenant_and_reloads_on_upload() {
    let lines = std::fs::read(env!("WASMTEL_FIXTURE_LOGLINES")).expect("fixture");
    let transform = std::fs::read(env!("WASMTEL_FIXTURE_PASSTHROUGH")).expect("fixture");
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[tenancy]\nkey = \"{KEY}\"\nmax_plugin_bytes = {}\n",
        data.path().display(),
        lines.len() + 100
    ))
    .await;
    let operator = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let operator = operator.trim().to_owned();
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let a = team(&base, &operator, "a", false).await;
    let b = team(&base, &operator, "b", false).await;
    let upload = |token: String, name: &'static str, bytes: Vec<u8>| {
        let url = format!("{base}/api/v1/plugins/{name}");
        async move {
            let response = reqwest::Client::new()
                .put(url)
                .bearer_auth(token)
                .body(bytes)
                .send()
                .await
                .expect("admin");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let integration = |token: String, endpoint: String| {
        let url = format!("{base}/api/v1/integrations");
        let body =
            json!({ "kind": "logs", "type": "lines", "name": "lines", "endpoint": endpoint });
        async move { call("POST", &url, Some(&token), Some(body)).await }
    };
    let (sink_a, seen_a) = line_sink().await;
    let (sink_b, seen_b) = line_sink().await;

    let (status, answer) = upload(a.admin.clone(), "lines", lines.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["plugin"]
            .as_str()
            .is_some_and(|w| w.contains("exporter")),
        "{answer}"
    );
    assert_eq!(integration(a.admin.clone(), sink_a).await.0, 201);
    let (status, refused) = integration(b.admin.clone(), sink_b.clone()).await;
    assert_eq!(status, 400, "b has no plugin `lines`: {refused}");
    let (status, _) = upload(b.admin.clone(), "lines", lines.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(integration(b.admin.clone(), sink_b).await.0, 201);

    // Refused uploads change nothing.
    let (status, answer) = upload(operator.clone(), "lines", lines.clone()).await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = upload(a.intake.clone(), "lines", lines.clone()).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = upload(a.admin.clone(), "lines", b"not wasm".to_vec()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("would not load")),
        "{answer}"
    );
    let (status, answer) =
        upload(a.admin.clone(), "lines", with_custom_section(&lines, 1000)).await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = upload(a.admin.clone(), "lines", transform).await;
    assert_eq!(
        status, 409,
        "a transform cannot replace an exporter: {answer}"
    );
    let (status, _) = upload(a.admin.clone(), "../evil", lines.clone()).await;
    assert!(status == 400 || status == 404, "{status}");

    let digests = || -> Vec<String> {
        let mut d: Vec<String> = host
            .plugin_versions()
            .into_iter()
            .filter(|(name, _)| name == "lines")
            .filter_map(|(_, digest)| digest)
            .collect();
        d.sort();
        d
    };
    let before = digests();
    assert_eq!(before.len(), 2);
    assert_eq!(before[0], before[1], "both run the same bytes");

    for t in [&a, &b] {
        let events: Vec<Value> = (0..3)
            .map(|k| json!({"event_type": "chunk_produced", "model": "m", "request_id": format!("{}-{k}", t.name)}))
            .collect();
        assert_eq!(post_events_as(&host, &t.intake, &events).await, 202);
    }
    common::eventually("both sinks' lines", || {
        seen_a.lock().expect("lock").len() == 3 && seen_b.lock().expect("lock").len() == 3
    })
    .await;
    for (seen, name) in [(&seen_a, "a"), (&seen_b, "b")] {
        let got = seen.lock().expect("lock").clone();
        assert!(
            got.iter()
                .all(|l| l.contains(&format!("inference.request.id={name}-"))),
            "{name}'s plugin got {got:?}"
        );
    }

    // Uploaded again, it serves a's integration at once; b's keeps its own.
    let (status, _) = upload(a.admin.clone(), "lines", with_custom_section(&lines, 10)).await;
    assert_eq!(status, 200);
    let after = digests();
    assert_ne!(after, before);
    assert!(
        after.contains(&before[0]),
        "b's version is untouched: {after:?}"
    );
    let (_, listed) = call(
        "GET",
        &format!("{base}/api/v1/plugins"),
        Some(&b.admin),
        None,
    )
    .await;
    let rows = listed["plugins"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "b sees its own plugin only: {listed}");
    assert_eq!(rows[0]["state"], "running");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_its_own_models_in_the_history_and_tokens_are_stored_hashed() {
    let (host, data, operator) = tenancy_host("[admin]\nhistory_interval = \"100ms\"\n").await;
    let base = format!("http://{}", host.admin_addr().expect("admin"));
    let a = team(&base, &operator, "a", false).await;
    let b = team(&base, &operator, "b", false).await;
    for (t, model) in [(&a, "a-model"), (&b, "b-model")] {
        let ok = common::Completed::ok(model, "vllm");
        let events: Vec<Value> = (1..=3).map(|i| ok.event(i)).collect();
        assert_eq!(post_events_as(&host, &t.intake, &events).await, 202);
    }
    let models = |token: String| {
        let url = format!("{base}/api/v1/history");
        async move {
            let (status, history) = call("GET", &url, Some(&token), None).await;
            assert_eq!(status, 200);
            let mut names: Vec<String> = history["models"]
                .as_array()
                .expect("models")
                .iter()
                .filter_map(|m| m["model"].as_str().map(str::to_owned))
                .collect();
            names.sort();
            names
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while models(operator.clone()).await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the history never filled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(models(operator.clone()).await, ["a-model", "b-model"]);
    assert_eq!(models(a.admin.clone()).await, ["a-model"]);
    assert_eq!(models(b.admin.clone()).await, ["b-model"]);
    // GET shows no token, and the store holds none in the clear.
    let (_, shown) = call(
        "GET",
        &format!("{base}/api/v1/tenants/a"),
        Some(&operator),
        None,
    )
    .await;
    assert!(
        shown.get("admin_token").is_none() && shown.get("intake_token").is_none(),
        "{shown}"
    );
    host.shutdown().await;
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(data.path()).expect("data dir").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("wasmtel.db")
        {
            stored.extend(std::fs::read(entry.path()).expect("db"));
        }
    }
    let text = String::from_utf8_lossy(&stored);
    for token in [&a.admin, &a.intake, &b.admin, &b.intake] {
        assert!(
            !text.contains(token.as_str()),
            "a token in the clear in the store"
        );
    }
    assert!(text.contains("tenants"), "the store was read");
}
