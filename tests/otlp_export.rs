//! OTLP/HTTP push tests: a real in-test collector decodes the protobuf the host sends.

mod common;

use std::time::Duration;

use common::{Completed, exposition, post_ndjson, start, step};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data};
use serde_json::json;
use wasmtel_tests::{Receiver, attrs};

/// The exporter label of the native OTLP exporter's self-metrics.
const EXPORTER: &str = "otlp";

fn config(receiver: &Receiver, extra: &str) -> String {
    format!(
        "shutdown_timeout = \"5s\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n{extra}\n[otlp.headers]\nauthorization = \"Bearer t0ken\"\n[resource]\nservice_name = \"svc-under-test\"\n",
        receiver.endpoint()
    )
}

#[tokio::test]
async fn metrics_and_logs_arrive_as_otlp_protobuf() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "")).await;
    let ok = Completed {
        model: "m1",
        engine: "vllm",
        total_ms: 1500.0,
        ttfc_ms: Some(100.0),
        tpot_ms: Some(20.0),
        input: 10,
        output: 50,
        throughput: Some(40.0),
        error: None,
    };
    let failed = Completed {
        error: Some("timeout"),
        total_ms: 3000.0,
        ttfc_ms: None,
        tpot_ms: None,
        throughput: None,
        ..ok
    };
    let mut started = step("generation_started", 1);
    started["attributes"] = json!({ "region": "eu-west", "gpu": { "index": 0 }, "tags": ["a", 1] });
    let events = [started, ok.event(1), ok.event(2), failed.event(3)];
    let r = post_ndjson(&host, &events).await;
    assert_eq!(r.status, 202);
    host.collect_now().await;
    receiver
        .wait_until("a metrics batch", |r| !r.metrics.is_empty())
        .await;
    receiver
        .wait_until("all log records", |r| {
            r.logs
                .iter()
                .map(|l| l.resource_logs[0].scope_logs[0].log_records.len())
                .sum::<usize>()
                == 4
        })
        .await;

    receiver.with(|r| {
        let request = &r.metrics[0];
        let rm = &request.resource_metrics[0];
        let resource = attrs(&rm.resource.as_ref().expect("resource").attributes);
        assert_eq!(resource["service.name"], "svc-under-test");
        assert!(
            resource.contains_key("host.name")
                && resource.contains_key("device.id")
                && resource.contains_key("service.instance.id")
        );
        let derived = rm
            .scope_metrics
            .iter()
            .find(|s| {
                s.scope
                    .as_ref()
                    .is_some_and(|sc| sc.name == "wasmtel.derive")
            })
            .expect("derive scope");
        let metric = |name: &str| {
            derived
                .metrics
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };

        let duration = metric("gen_ai.server.request.duration");
        assert_eq!(duration.unit, "s");
        let Some(Data::Histogram(h)) = &duration.data else {
            panic!("not a histogram")
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(h.data_points.len(), 2);
        let success = h
            .data_points
            .iter()
            .find(|p| !attrs(&p.attributes).contains_key("error.type"))
            .expect("success series");
        assert_eq!(
            attrs(&success.attributes).into_iter().collect::<Vec<_>>(),
            vec![
                ("gen_ai.request.model".to_owned(), "m1".to_owned()),
                ("inference.device.id".to_owned(), "dev-1".to_owned()),
                ("inference.engine".to_owned(), "vllm".to_owned()),
                ("inference.org.id".to_owned(), "org-1".to_owned()),
            ]
        );
        assert_eq!(
            (success.count, success.sum, success.min, success.max),
            (2, Some(3.0), Some(1.5), Some(1.5))
        );
        assert_eq!(success.explicit_bounds[..3], [0.01, 0.02, 0.04]);
        assert_eq!(
            success.bucket_counts.len(),
            success.explicit_bounds.len() + 1
        );
        assert_eq!(success.bucket_counts[8], 2, "1.5 s falls in (1.28, 2.56]");
        assert!(
            success.start_time_unix_nano > 0
                && success.time_unix_nano >= success.start_time_unix_nano
        );

        let requests = metric("inference.requests");
        assert_eq!(requests.unit, "{request}");
        let Some(Data::Sum(sum)) = &requests.data else {
            panic!("not a sum")
        };
        assert!(sum.is_monotonic);
        let failed_point = sum
            .data_points
            .iter()
            .find(|p| attrs(&p.attributes).get("error.type").map(String::as_str) == Some("timeout"))
            .expect("failed series");
        assert_eq!(
            failed_point.value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(1.0))
        );

        let usage = metric("gen_ai.client.token.usage");
        let Some(Data::Histogram(u)) = &usage.data else {
            panic!("not a histogram")
        };
        let output = u
            .data_points
            .iter()
            .find(|p| attrs(&p.attributes)["gen_ai.token.type"] == "output")
            .expect("output tokens");
        assert_eq!((output.count, output.sum), (3, Some(150.0)));

        let own = rm
            .scope_metrics
            .iter()
            .find(|s| s.scope.as_ref().is_some_and(|sc| sc.name == "wasmtel"))
            .expect("self scope");
        assert!(
            own.metrics
                .iter()
                .any(|m| m.name == "wasmtel.intake.events.accepted")
        );

        let records: Vec<_> = r
            .logs
            .iter()
            .flat_map(|l| l.resource_logs[0].scope_logs[0].log_records.iter())
            .collect();
        let scope = r.logs[0].resource_logs[0].scope_logs[0]
            .scope
            .as_ref()
            .expect("scope");
        assert_eq!(scope.name, "wasmtel.events");
        assert_eq!(
            records
                .iter()
                .map(|l| l.event_name.as_str())
                .collect::<Vec<_>>(),
            [
                "generation_started",
                "generation_completed",
                "generation_completed",
                "generation_completed"
            ]
        );
        let first = attrs(&records[0].attributes);
        assert_eq!(first["region"], "eu-west");
        assert_eq!(first["tags"], "[a,1]");
        assert_eq!(first["inference.request.id"], "req-1");
        let last = records[3];
        assert_eq!(last.time_unix_nano, 1_793_534_400_500_000_000);
        assert!(last.observed_time_unix_nano > last.time_unix_nano);
        assert_eq!(last.trace_id, hex(&format!("{:032x}", 4)));
        assert_eq!(last.span_id, hex(&format!("{:016x}", 4)));
        assert_eq!(last.severity_text, "ERROR");
        let last_attrs = attrs(&last.attributes);
        assert_eq!(last_attrs["error.type"], "timeout");
        assert_eq!(last_attrs["inference.metric.total_duration_ms"], "3000");
        assert_eq!(last_attrs["gen_ai.request.model"], "m1");
        assert_eq!(last_attrs["inference.stream"], "true");

        for headers in &r.headers {
            assert_eq!(headers["authorization"], "Bearer t0ken");
            assert_eq!(headers["content-type"], "application/x-protobuf");
        }
    });
    host.shutdown().await;
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test]
async fn a_down_collector_never_blocks_intake_and_the_oldest_records_are_dropped() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    // Chosen loss: `drop_oldest` keeps intake answering 202 and drops what does not fit.
    let host = start(&format!(
        "{}[intake]\non_full = \"drop_oldest\"\n",
        config(
            &receiver,
            "delivery.logs_queue = 10\ndelivery.logs_batch = 10\n",
        )
    ))
    .await;
    let events: Vec<_> = (0..50).map(|i| step("chunk_produced", i)).collect();
    let r = post_ndjson(&host, &events).await;
    assert_eq!(r.status, 202, "intake answers while the collector is down");
    receiver
        .wait_until("a refused attempt", |r| r.refused >= 2)
        .await;
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "wasmtel_export_dropped_total",
            &[("integration", "otlp"), ("signal", "logs")]
        ),
        Some(40.0)
    );

    receiver.answer(200);
    receiver
        .wait_until("the retried batch", |r| !r.logs.is_empty())
        .await;
    let ids: Vec<String> = receiver.with(|r| {
        r.logs
            .iter()
            .flat_map(|l| l.resource_logs[0].scope_logs[0].log_records.iter())
            .map(|rec| attrs(&rec.attributes)["inference.request.id"].clone())
            .collect()
    });
    let want: Vec<String> = (40..50).map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, want, "exactly the newest ten survive, in order");
    host.shutdown().await;
}

#[tokio::test]
async fn a_rejected_batch_is_counted_failed_and_not_retried() {
    let receiver = Receiver::start().await;
    receiver.answer(400);
    let host = start(&config(&receiver, "logs = false")).await;
    host.collect_now().await;
    receiver
        .wait_until("one refused batch", |r| r.refused == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.with(|r| r.refused), 1, "no retry of a 400");
    let m = exposition(&host).await;
    assert_eq!(
        m.value(
            "wasmtel_export_batches_total",
            &[
                ("integration", EXPORTER),
                ("outcome", "failed"),
                ("signal", "metrics")
            ]
        ),
        Some(1.0)
    );
    host.shutdown().await;
}

#[tokio::test]
async fn shutdown_flushes_pending_metrics_and_logs() {
    let receiver = Receiver::start().await;
    let host = start(&config(&receiver, "")).await;
    let ok = Completed {
        total_ms: 10.0,
        ..Completed::ok("m1", "vllm")
    };
    let events: Vec<_> = (0..7).map(|i| ok.event(i)).collect();
    post_ndjson(&host, &events).await;
    host.shutdown().await;
    receiver.with(|r| {
        assert_eq!(
            r.metrics.len(),
            1,
            "the final collection, not the hourly one"
        );
        let logged: usize = r
            .logs
            .iter()
            .map(|l| l.resource_logs[0].scope_logs[0].log_records.len())
            .sum();
        assert_eq!(logged, 7);
    });
}

#[tokio::test]
async fn an_unreachable_collector_is_logged_once_per_state_change() {
    let logs = wasmtel_tests::capture_logs();
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let host = start(&config(&receiver, "logs = false")).await;
    let url = format!("{}/v1/metrics", receiver.endpoint());
    let lines = |needle: &str| logs.count(&[url.as_str(), needle]);
    host.collect_now().await;
    host.collect_now().await;
    receiver
        .wait_until("several failed attempts", |r| r.refused >= 4)
        .await;
    assert_eq!(lines("export is failing"), 1);
    receiver.answer(200);
    receiver
        .wait_until("both batches", |r| r.metrics.len() == 2)
        .await;
    assert_eq!(lines("export is delivering again"), 1);
    receiver.answer(503);
    host.collect_now().await;
    receiver
        .wait_until("a new failure", |r| r.refused >= 6)
        .await;
    assert_eq!(lines("export is failing"), 2);
    assert_eq!(lines("export is delivering again"), 1);
    drop(host);
}

#[tokio::test]
async fn metrics_are_pushed_every_interval_and_counted_ok() {
    let receiver = Receiver::start().await;
    let toml = format!(
        "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"300ms\"\nlogs = false\n",
        receiver.endpoint()
    );
    let host = start(&toml).await;
    post_ndjson(&host, &[Completed::ok("m1", "vllm").event(1)]).await;
    receiver
        .wait_until("three interval exports", |r| r.metrics.len() >= 3)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = exposition(&host).await;
        let ok = m.value(
            "wasmtel_export_batches_total",
            &[
                ("integration", EXPORTER),
                ("outcome", "ok"),
                ("signal", "metrics"),
            ],
        );
        if ok.is_some_and(|n| n >= 3.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ok batches not counted: {ok:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.with(|r| {
        let stamps: Vec<u64> = r
            .metrics
            .iter()
            .map(|m| {
                let derived = m.resource_metrics[0]
                    .scope_metrics
                    .iter()
                    .find(|s| {
                        s.scope
                            .as_ref()
                            .is_some_and(|sc| sc.name == "wasmtel.derive")
                    })
                    .expect("derived");
                let Some(Data::Sum(sum)) = &derived
                    .metrics
                    .iter()
                    .find(|x| x.name == "inference.requests")
                    .expect("requests")
                    .data
                else {
                    panic!("sum")
                };
                sum.data_points[0].time_unix_nano
            })
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[1] > w[0]),
            "each export is a new collection: {stamps:?}"
        );
    });
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redact_transform_rewrites_log_records_before_export() {
    let receiver = Receiver::start().await;
    let extra = "[[transforms]]\nplugin = \"redact\"\nconfig = { drop = \"inference.request.id\", hash = \"gen_ai.request.model\", salt = \"s\", \"rename.error.type\" = \"failure\" }\n";
    let toml = format!("{}\n{extra}", config(&receiver, ""));
    let host = start(&toml).await;
    let failed = Completed {
        error: Some("timeout"),
        ..Completed::ok("m1", "vllm")
    };
    post_ndjson(&host, &[failed.event(1)]).await;
    receiver
        .wait_until("the log record", |r| !r.logs.is_empty())
        .await;
    receiver.with(|r| {
        let record = &r.logs[0].resource_logs[0].scope_logs[0].log_records[0];
        let a = attrs(&record.attributes);
        assert!(!a.contains_key("inference.request.id"), "{a:?}");
        // sha256("s" + "m1")
        assert_eq!(
            a["gen_ai.request.model"],
            "9c9cab25e7ce7ceb0b588388deb5fbd2e99ecc93bc31097c2b729646e9abfc84"
        );
        assert_eq!(a["failure"], "timeout");
        assert!(!a.contains_key("error.type"));
        assert_eq!(a["inference.engine"], "vllm");
        assert_eq!(record.event_name, "generation_completed");
        assert_eq!(record.trace_id.len(), 16);
    });
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_transform_fails_open_by_default_and_closed_when_asked() {
    let passthrough = env!("WASMTEL_FIXTURE_PASSTHROUGH");
    for (policy, delivered) in [("open", true), ("closed", false)] {
        let dir =
            std::env::temp_dir().join(format!("wasmtel-transform-{policy}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(passthrough, dir.join("trapper.wasm")).expect("copy");
        let receiver = Receiver::start().await;
        let extra = format!(
            "[plugins]\ndir = \"{}\"\n[[transforms]]\nplugin = \"trapper\"\non_failure = \"{policy}\"\nconfig = {{ trap = \"true\" }}\n",
            dir.display()
        );
        let toml = format!("{}\n{extra}", config(&receiver, "logs = false"));
        let host = start(&toml).await;
        post_ndjson(&host, &[Completed::ok("m1", "vllm").event(1)]).await;
        host.collect_now().await;
        if delivered {
            receiver
                .wait_until("the untouched batch", |r| r.metrics.len() == 1)
                .await;
            receiver.with(|r| {
                let names: Vec<&str> = r.metrics[0].resource_metrics[0]
                    .scope_metrics
                    .iter()
                    .flat_map(|s| s.metrics.iter().map(|m| m.name.as_str()))
                    .collect();
                assert!(names.contains(&"inference.requests"), "{names:?}");
            });
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                receiver.with(|r| r.metrics.len()),
                0,
                "fail-closed drops the batch"
            );
        }
        host.shutdown().await;
    }
}

#[tokio::test]
async fn exponential_histograms_are_exported_when_chosen_and_omitted_from_prometheus() {
    let receiver = Receiver::start().await;
    let extra = "[metrics]\ndefault_histogram_aggregation = \"base2_exponential_bucket_histogram\"\n[derive]\nrule_set = \"none\"\n[[derive.rules]]\nevent_type = \"generation_completed\"\ninstrument = \"histogram\"\nname = \"latency\"\nunit = \"ms\"\nfield = \"total_duration_ms\"\n";
    let host = start(&config(&receiver, extra)).await;
    let events: Vec<_> = [1.0, 2.0, 4.0, 3.0, 0.0]
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let mut e = step("generation_completed", i as u32);
            e["metrics"] = json!({ "total_duration_ms": ms });
            e
        })
        .collect();
    assert_eq!(post_ndjson(&host, &events).await.status, 202);
    host.collect_now().await;
    receiver
        .wait_until("a metrics batch", |r| !r.metrics.is_empty())
        .await;
    receiver.with(|r| {
        let metric = r.metrics[0].resource_metrics[0]
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == "latency")
            .expect("latency exported");
        let Some(Data::ExponentialHistogram(h)) = &metric.data else {
            panic!("not exponential: {:?}", metric.data)
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum, p.zero_count), (5, Some(10.0), 1));
        assert_eq!((p.min, p.max), (Some(0.0), Some(4.0)));
        // 1 and 4 fall in buckets -1 and 2·2^s − 1: 129 buckets at scale 6 fit in 160, 257 at 7 do not.
        assert_eq!(p.scale, 6);
        let positive = p.positive.as_ref().expect("positive buckets");
        assert_eq!(positive.offset, -1);
        assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 4);
        assert_eq!(
            positive.bucket_counts[0], 1,
            "1.0 sits in bucket -1: (2^(-1/64), 1]"
        );
        assert_eq!(
            *positive.bucket_counts.last().expect("last"),
            1,
            "4.0 is the last"
        );
    });
    let exp = exposition(&host).await;
    assert_eq!(exp.count("latency_milliseconds_count"), 0);
    assert_eq!(exp.count("latency_milliseconds_bucket"), 0);
    host.shutdown().await;
}

#[tokio::test]
async fn exemplars_carry_the_trace_of_the_event_they_came_from() {
    exemplars_arrive("").await;
}

#[tokio::test]
async fn exemplars_reach_transforms_and_survive_them() {
    let dir = std::env::temp_dir().join(format!("wasmtel-exemplars-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(env!("WASMTEL_FIXTURE_PASSTHROUGH"), dir.join("same.wasm")).expect("copy");
    exemplars_arrive(&format!(
        "[plugins]\ndir = \"{}\"\n[[transforms]]\nplugin = \"same\"\n",
        dir.display()
    ))
    .await;
}

/// Posts three traced events (two in one bucket) to a host configured with `extra` and checks
/// the exemplars exported with the duration histogram.
async fn exemplars_arrive(extra: &str) {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
    let receiver = Receiver::start().await;
    let host = start(&format!("{}\n{extra}", config(&receiver, "logs = false"))).await;
    let fast = Completed {
        total_ms: 40.0,
        ..Completed::ok("m1", "vllm")
    };
    let slow = Completed {
        total_ms: 30_000.0,
        ..fast
    };
    post_ndjson(&host, &[fast.event(1), slow.event(2), fast.event(3)]).await;
    host.collect_now().await;
    receiver
        .wait_until("a metrics batch", |r| !r.metrics.is_empty())
        .await;
    let exemplars = receiver.with(|r| {
        let metric = r.metrics[0].resource_metrics[0]
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == "gen_ai.server.request.duration")
            .cloned()
            .expect("duration");
        let Some(Data::Histogram(h)) = metric.data else {
            panic!("histogram")
        };
        let mut out: Vec<(f64, Vec<u8>, Vec<u8>)> = h.data_points[0]
            .exemplars
            .iter()
            .map(|e| {
                let Some(Value::AsDouble(v)) = e.value else {
                    panic!("a double")
                };
                (v, e.trace_id.clone(), e.span_id.clone())
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    });
    // One exemplar per bucket, the latest measurement in it: event 3 replaced event 1.
    let ids = |seq: u32| {
        (
            hex(&format!("{:032x}", seq + 1)),
            hex(&format!("{:016x}", seq + 1)),
        )
    };
    let (t3, s3) = ids(3);
    let (t2, s2) = ids(2);
    assert_eq!(exemplars, [(0.04, t3, s3), (30.0, t2, s2)]);
    host.shutdown().await;
}

#[tokio::test]
async fn delta_preference_sends_counter_changes_and_keeps_up_down_counters_cumulative() {
    let receiver = Receiver::start().await;
    let extra = "temporality_preference = \"delta\"\nlogs = false\n[derive]\nrule_set = \"none\"\n[[derive.rules]]\nevent_type = \"chunk_produced\"\ninstrument = \"counter\"\nname = \"chunks\"\n[[derive.rules]]\nevent_type = \"generation_started\"\ninstrument = \"up_down_counter\"\nname = \"queue\"\n";
    let host = start(&config(&receiver, extra)).await;
    let batch = |chunks: u32, started: u32| -> Vec<serde_json::Value> {
        (0..chunks)
            .map(|i| step("chunk_produced", i))
            .chain((0..started).map(|i| step("generation_started", i)))
            .collect()
    };
    // (name → (temporality, value, start, time)) of one export.
    let export = |n: usize| {
        receiver.with(|r| {
            let mut out = std::collections::BTreeMap::new();
            for m in r.metrics[n].resource_metrics[0]
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == "chunks" || m.name == "queue")
            {
                let Some(Data::Sum(sum)) = &m.data else {
                    panic!("a sum")
                };
                let p = &sum.data_points[0];
                let value = match p.value {
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                            v,
                        ),
                    ) => v,
                    other => panic!("{other:?}"),
                };
                out.insert(
                    m.name.clone(),
                    (
                        sum.aggregation_temporality,
                        value,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                    ),
                );
            }
            out
        })
    };
    let (delta, cumulative) = (
        AggregationTemporality::Delta as i32,
        AggregationTemporality::Cumulative as i32,
    );
    for (round, (chunks, started)) in [(2, 2), (1, 1), (0, 0)].into_iter().enumerate() {
        if chunks + started > 0 {
            post_ndjson(&host, &batch(chunks, started)).await;
        }
        host.collect_now().await;
        receiver
            .wait_until("the export", |r| r.metrics.len() > round)
            .await;
    }
    let (first, second, third) = (export(0), export(1), export(2));
    assert_eq!((first["chunks"].0, first["chunks"].1), (delta, 2.0));
    assert_eq!((first["queue"].0, first["queue"].1), (cumulative, 2.0));
    assert_eq!((second["chunks"].0, second["chunks"].1), (delta, 1.0));
    assert_eq!(
        second["chunks"].2, first["chunks"].3,
        "a delta point starts where the previous export ended"
    );
    assert_eq!((second["queue"].0, second["queue"].1), (cumulative, 3.0));
    assert!(!third.contains_key("chunks"), "a quiet counter is left out");
    assert_eq!(third["queue"].1, 3.0);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_call_is_counted_timed_and_its_failures_named() {
    let dir = std::env::temp_dir().join(format!("wasmtel-plugin-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Names no other test uses: the counts are process-wide.
    let passthrough = env!("WASMTEL_FIXTURE_PASSTHROUGH");
    std::fs::copy(passthrough, dir.join("counted.wasm")).expect("copy");
    std::fs::copy(passthrough, dir.join("counted-trap.wasm")).expect("copy");
    let receiver = Receiver::start().await;
    let extra = format!(
        "[plugins]\ndir = \"{}\"\n[[transforms]]\nplugin = \"counted\"\n[[transforms]]\nplugin = \"counted-trap\"\nconfig = {{ trap = \"true\" }}\n",
        dir.display()
    );
    let data = dir.join("data");
    let host = start(&format!(
        "data_dir = \"{}\"\n{}\n{extra}",
        data.display(),
        config(&receiver, "logs = false")
    ))
    .await;
    post_ndjson(&host, &[Completed::ok("m1", "vllm").event(1)]).await;
    for _ in 0..3 {
        host.collect_now().await;
    }
    receiver
        .wait_until("three batches", |r| r.metrics.len() == 3)
        .await;
    let m = exposition(&host).await;
    let calls = |plugin: &str, function: &str, outcome: &str| {
        let labels = [
            ("plugin", plugin),
            ("function", function),
            ("outcome", outcome),
        ];
        (
            m.value("wasmtel_plugin_calls_total", &labels),
            m.value("wasmtel_plugin_call_duration_seconds_count", &labels),
        )
    };
    assert_eq!(calls("counted", "init", "ok"), (Some(1.0), Some(1.0)));
    assert_eq!(
        calls("counted", "transform-metrics", "ok"),
        (Some(3.0), Some(3.0))
    );
    // The trapping one: it traps, is re-created after a backoff (init again) and refused
    // while it backs off; each call counted under its outcome.
    let (trapped, timed) = calls("counted-trap", "transform-metrics", "trap");
    assert!(trapped.is_some_and(|n| n >= 1.0), "{trapped:?}");
    assert_eq!(trapped, timed);
    assert_eq!(
        m.value(
            "wasmtel_plugin_traps_total",
            &[("plugin", "counted-trap"), ("cause", "trap")]
        ),
        trapped
    );
    assert!(
        m.value(
            "wasmtel_plugin_items_total",
            &[("plugin", "counted"), ("direction", "in")]
        )
        .is_some_and(|n| n > 0.0)
    );
    assert_eq!(
        m.value(
            "wasmtel_plugin_items_total",
            &[("plugin", "counted"), ("direction", "in")]
        ),
        m.value(
            "wasmtel_plugin_items_total",
            &[("plugin", "counted"), ("direction", "out")]
        ),
        "a pass-through returns what it was given"
    );
    assert!(
        m.value("wasmtel_plugin_memory_bytes", &[("plugin", "counted")])
            .is_some_and(|b| b >= 65536.0)
    );
    // The API shows the same totals.
    let (_, plugins, _) = common::Api::new(&host, &data).get("/api/v1/plugins").await;
    let counted = plugins["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "counted"))
        .cloned()
        .expect("counted listed");
    assert_eq!(counted["stats"]["calls"]["ok"], 4, "{counted}");
    host.shutdown().await;
}

/// A host exporting to `receiver` through `transforms` (plugins from `dir`), after one completed
/// request's metrics and log record reached it.
async fn one_event_through(
    receiver: &Receiver,
    dir: &std::path::Path,
    transforms: &str,
) -> wasmtel::Host {
    let plugins = format!("[plugins]\ndir = \"{}\"\n{transforms}", dir.display());
    let host = start(&format!("{}\n{plugins}", config(receiver, ""))).await;
    post_ndjson(&host, &[Completed::ok("m1", "vllm").event(1)]).await;
    host.collect_now().await;
    receiver
        .wait_until("metrics and logs", |r| {
            !r.metrics.is_empty() && !r.logs.is_empty()
        })
        .await;
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_is_given_only_what_it_reads_and_its_edits_apply_to_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Names no other test uses: the call counts are process-wide.
    let passthrough = env!("WASMTEL_FIXTURE_PASSTHROUGH");
    std::fs::copy(passthrough, dir.path().join("lean.wasm")).expect("copy");
    std::fs::copy(passthrough, dir.path().join("whole.wasm")).expect("copy");
    std::fs::copy(passthrough, dir.path().join("keyed.wasm")).expect("copy");
    let receiver = Receiver::start().await;
    // `lean` reads the attribute table of metric batches and nothing of log batches; `whole`,
    // after it, reads everything; `keyed`, first, reads the table cut down to `service.name`.
    // Each writes what crossed into the resource.
    let host = one_event_through(
        &receiver,
        dir.path(),
        "[[transforms]]\nplugin = \"keyed\"\nconfig = { \"reads.metrics\" = \"attributes\", \"reads.logs\" = \"none\", attribute_keys = \"service.name\", report = \"keyed.seen\" }\n\
         [[transforms]]\nplugin = \"lean\"\nconfig = { \"reads.metrics\" = \"attributes\", \"reads.logs\" = \"none\", report = \"lean.seen\" }\n\
         [[transforms]]\nplugin = \"whole\"\nconfig = { report = \"whole.seen\" }\n",
    )
    .await;
    receiver.with(|r| {
        let rm = &r.metrics[0].resource_metrics[0];
        let resource = attrs(&rm.resource.as_ref().expect("resource").attributes);
        let seen = |key: &str| -> Vec<(String, usize)> {
            resource[key]
                .split(' ')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("k=v");
                    (k.to_owned(), v.parse().expect("a count"))
                })
                .collect()
        };
        let (lean, whole) = (seen("lean.seen"), seen("whole.seen"));
        let count = |of: &[(String, usize)], key: &str| {
            of.iter().find(|(k, _)| k == key).expect("reported").1
        };
        // The lean transform got the attribute table whole, and no metric, point or bucket.
        assert_eq!(
            count(&lean, "sets"),
            count(&whole, "sets"),
            "{lean:?} {whole:?}"
        );
        assert!(count(&lean, "sets") > 1, "{lean:?}");
        // Cut down to `service.name`, the points' sets are one empty set and the resource's
        // holds its name: two sets crossed, and the report reached the resource alone.
        let keyed = seen("keyed.seen");
        assert_eq!(count(&keyed, "sets"), 2, "{keyed:?}");
        assert!(
            r.metrics[0].resource_metrics[0]
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .all(|m| !format!("{m:?}").contains("keyed.seen")),
            "an edit of the resource's cut set reaches no point"
        );
        for part in ["metrics", "points", "bounds", "counts"] {
            assert_eq!(count(&lean, part), 0, "{part}: {lean:?}");
            assert!(count(&whole, part) > 0, "{part}: {whole:?}");
        }
        // What it did not read still went out, exactly as the batch held it.
        let points: usize = rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(points, count(&whole, "points"));
        let requests = rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == "inference.requests")
            .expect("inference.requests");
        let Some(Data::Sum(sum)) = &requests.data else {
            panic!("a sum")
        };
        assert_eq!(sum.data_points.len(), 1);
        assert_eq!(
            sum.data_points[0].value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(1.0))
        );
        // Logs: `lean` reads none, so it was not called for them; `whole` saw the record and
        // its body.
        let record = &r.logs[0].resource_logs[0].scope_logs[0].log_records[0];
        let attributes = attrs(&record.attributes);
        assert!(!attributes.contains_key("lean.seen"), "{attributes:?}");
        assert!(
            attributes["whole.seen"].ends_with("records=1 bodies=1"),
            "{attributes:?}"
        );
    });
    let m = exposition(&host).await;
    let calls = |plugin: &str, function: &str| {
        m.value(
            "wasmtel_plugin_calls_total",
            &[
                ("plugin", plugin),
                ("function", function),
                ("outcome", "ok"),
            ],
        )
    };
    assert_eq!(calls("lean", "transform-metrics"), Some(1.0));
    assert_eq!(calls("lean", "transform-logs"), None);
    assert_eq!(calls("whole", "transform-logs"), Some(1.0));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_that_reads_nothing_is_never_called_and_the_data_flows_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A name no other test uses: the call counts are process-wide.
    std::fs::copy(
        env!("WASMTEL_FIXTURE_PASSTHROUGH"),
        dir.path().join("idle.wasm"),
    )
    .expect("copy");
    let receiver = Receiver::start().await;
    let host = one_event_through(
        &receiver,
        dir.path(),
        "[[transforms]]\nplugin = \"idle\"\nconfig = { \"reads.metrics\" = \"none\", \"reads.logs\" = \"none\", report = \"idle.seen\" }\n",
    )
    .await;
    receiver.with(|r| {
        let rm = &r.metrics[0].resource_metrics[0];
        let resource = attrs(&rm.resource.as_ref().expect("resource").attributes);
        assert!(!resource.contains_key("idle.seen"), "{resource:?}");
        assert!(
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "inference.requests")
        );
        let record = &r.logs[0].resource_logs[0].scope_logs[0].log_records[0];
        assert!(!attrs(&record.attributes).contains_key("idle.seen"));
    });
    let m = exposition(&host).await;
    for function in ["transform-metrics", "transform-logs"] {
        let labels = [
            ("plugin", "idle"),
            ("function", function),
            ("outcome", "ok"),
        ];
        assert_eq!(m.value("wasmtel_plugin_calls_total", &labels), None);
    }
    host.shutdown().await;
}
