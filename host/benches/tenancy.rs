//! What routing per tenant costs, beside the single integration that takes everything.
//!
//! Metrics: 100 tenants' resources of 100 series each (20 counters × 5 attribute sets),
//! collected and encoded as OTLP once for one integration that selects everything, against
//! 100 integrations each selecting its tenant (the producers its selection picked, kept until
//! producers change, then the same encoder). Prints both and the ratio (target ≤ 1.3×).
//!
//! Logs: 100 tenants each sending one OTLP request of 100 records, stamped with the tenant at
//! intake, through the pipeline into one integration that takes everything, against 100
//! tenants' integrations (each a real exporter with its selection, indexed by tenant). Prints
//! records per second for both and the ratio (target ≥ 0.8×).

mod timing;

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtel::config::{OtlpConfig, PluginsConfig};
use wasmtel::derive::Deriver;
use wasmtel::export::exporter::{BuildContext, Exporter};
use wasmtel::export::otlp::metrics::encode_all;
use wasmtel::export::selection::Selection;
use wasmtel::export::spec::ExporterSpec;
use wasmtel::intake::otlp::Tally;
use wasmtel::intake::otlp::records::{Stamp, log_record, scan};
use wasmtel::load::logs_body;
use wasmtel::metrics::{Admission, Descriptor, Producer, Registries, Registry};
use wasmtel::model::Signal;
use wasmtel::model::attributes::{AttributeSet, Value, ValueRef};
use wasmtel::model::content::Content;
use wasmtel::model::metric::InstrumentKind;
use wasmtel::model::record::{Origin, Record};
use wasmtel::model::resource::Resource;
use wasmtel::model::select::Select;
use wasmtel::pipeline::{Pipeline, RecordSink};
use wasmtel::telemetry::SelfTelemetry;
use wasmtel::tenancy::{Principal, Tenancy};

const TENANTS: usize = 100;
const KEY: &str = "service.namespace";

fn tenant(i: usize) -> String {
    format!("tenant-{i}")
}

/// Selects tenant `i`'s data, as a tenant's integration is pinned.
fn select_of(i: usize) -> Select {
    let mut select = Select::default();
    select.pin(KEY, &tenant(i)).expect("pinned");
    select
}

/// 100 tenants' resources of 20 counters × 5 series each.
fn registries() -> Registries {
    let own = Resource::from_attributes(AttributeSet::from_pairs(vec![(
        Arc::from("service.name"),
        Value::Str(Arc::from("wasmtel")),
    )]));
    let all = Registries::new(Arc::new(Registry::new(2000)), own);
    for i in 0..TENANTS {
        let resource = AttributeSet::from_pairs(vec![
            (Arc::from("service.name"), Value::Str(Arc::from("app"))),
            (Arc::from(KEY), Value::Str(Arc::from(tenant(i).as_str()))),
        ]);
        let registry = all
            .received(&resource, &Admission::default())
            .expect("room");
        for c in 0..20 {
            let counter = registry
                .instrument(
                    Descriptor {
                        name: format!("requests.{c}"),
                        unit: "1".into(),
                        description: String::new(),
                        kind: InstrumentKind::Counter,
                        scope: "bench".into(),
                    },
                    &[],
                )
                .expect("counter");
            for s in 0..5 {
                let model = format!("model-{s}");
                counter.record(&[("model", ValueRef::Str(&model))], 1.0);
            }
        }
    }
    all
}

fn one_integration(all: &Registries) -> usize {
    let producers = all.all();
    let pairs: Vec<_> = producers
        .iter()
        .map(|p| (p.id, &p.resource, &*p.registry))
        .collect();
    encode_all(&pairs, None, &|_| true).len()
}

/// What each tenant's integration does at a collection: its selection's producers (picked
/// once, kept until producers change), encoded.
fn per_tenant(all: &Registries, selections: &[Selection]) -> usize {
    selections
        .iter()
        .map(|selection| {
            let producers: Vec<Producer> = selection.producers(all);
            let pairs: Vec<_> = producers
                .iter()
                .map(|p| (p.id, &p.resource, &*p.registry))
                .collect();
            let select = selection.select();
            encode_all(&pairs, None, &|name| select.metric(name)).len()
        })
        .sum()
}

fn metrics(c: &mut Criterion) {
    let all = registries();
    let selects: Vec<Selection> = (0..TENANTS).map(|i| Selection::new(select_of(i))).collect();
    let whole = one_integration(&all);
    let routed = per_tenant(&all, &selects);
    assert!(
        routed > whole / 2,
        "every tenant's series encoded: {routed} vs {whole}"
    );
    let mut group = c.benchmark_group("collect_encode_10000_series_of_100_tenants");
    group.sample_size(20);
    group.bench_function("one_integration_everything", |b| {
        b.iter(|| black_box(one_integration(&all)))
    });
    group.bench_function("100_tenant_integrations", |b| {
        b.iter(|| black_box(per_tenant(&all, &selects)))
    });
    group.finish();
    let one = timing::best_of_five(|| {
        black_box(one_integration(&all));
    });
    let many = timing::best_of_five(|| {
        black_box(per_tenant(&all, &selects));
    });
    println!(
        "\nmetrics, 10,000 series of 100 tenants collected and encoded: one integration {:.2} ms, 100 tenants' integrations {:.2} ms, ratio {:.2}x (target <= 1.3x)\n",
        one * 1e3,
        many * 1e3,
        many / one
    );
}

/// A pipeline whose sinks are real OTLP exporters (not started: records wait in their queues).
fn pipeline(sinks: Vec<(Option<String>, Select)>, ctx: &BuildContext) -> Pipeline {
    let registry = Arc::new(Registry::new(10));
    let telemetry = SelfTelemetry::register(&registry).expect("self metrics");
    let deriver = Deriver::new(&Default::default(), &registry).expect("rules");
    let events = Arc::new(Origin::events(
        &Resource::from_attributes(AttributeSet::empty()),
        None,
    ));
    let pipeline = Pipeline::new(deriver, Vec::new(), telemetry, events);
    for (i, (owner, select)) in sinks.into_iter().enumerate() {
        let config = OtlpConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            select,
            ..OtlpConfig::default()
        };
        let mut spec = ExporterSpec::otlp(&format!("sink-{i}"), &config, &Default::default())
            .expect("spec")
            .expect("an endpoint");
        spec.tenant = owner;
        let exporter = Exporter::build(&spec, ctx).expect("exporter");
        pipeline.add_sink(exporter as Arc<dyn RecordSink>);
    }
    pipeline
}

fn logs(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let _entered = runtime.enter();
    let tenancy = Arc::new(Tenancy::on(KEY, false));
    let registry = Arc::new(Registry::new(10));
    let ctx = BuildContext {
        registries: Arc::new(Registries::new(
            registry.clone(),
            Resource::from_attributes(AttributeSet::empty()),
        )),
        telemetry: SelfTelemetry::register(&registry).expect("self metrics"),
        transforms: Default::default(),
        plugins: wasmtel::plugins::PluginSet::new(&PluginsConfig::default(), None)
            .expect("plugins"),
        on_full: wasmtel::export::delivery::queue::OnFull::DropOldest,
        data_dir: std::env::temp_dir(),
        tenancy: tenancy.clone(),
    };
    let requests: Vec<Vec<Record>> = (0..TENANTS)
        .map(|i| {
            let sender = Principal::Tenant(Arc::from(tenant(i).as_str()));
            let stamp = Stamp {
                attributes: &|a: &mut Vec<_>| tenancy.stamp(&sender, a),
                tenant: sender.tenant().map(Arc::from),
            };
            let body = Bytes::from(logs_body(i as u64, 100));
            scan(
                &body,
                &mut Tally::default(),
                &stamp,
                (log_record, &Content::genai()),
            )
            .expect("valid")
            .records
        })
        .collect();
    let records = (TENANTS * 100) as u64;
    let one = pipeline(vec![(None, Select::default())], &ctx);
    let many = pipeline(
        (0..TENANTS)
            .map(|i| (Some(tenant(i)), select_of(i)))
            .collect(),
        &ctx,
    );
    let send = |p: &Pipeline| {
        for request in &requests {
            p.ingest_records(Signal::Logs, request).expect("taken");
        }
    };
    let mut group = c.benchmark_group("route_10000_log_records_of_100_tenants");
    group.throughput(Throughput::Elements(records));
    group.sample_size(20);
    group.bench_function("one_integration_everything", |b| b.iter(|| send(&one)));
    group.bench_function("100_tenant_integrations", |b| b.iter(|| send(&many)));
    group.finish();
    let rate = |p: &Pipeline| records as f64 / timing::best_of_five(|| send(p));
    let (unrouted, routed) = (rate(&one), rate(&many));
    println!(
        "\nlogs, 10,000 records of 100 tenants: one integration {:.2} M records/s, 100 tenants' integrations {:.2} M records/s, ratio {:.2}x (target >= 0.8x)\n",
        unrouted / 1e6,
        routed / 1e6,
        routed / unrouted
    );
}

criterion_group!(benches, metrics, logs);
criterion_main!(benches);
