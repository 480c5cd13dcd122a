//! Log forwarding per record: what every received OTLP/protobuf log record costs from request
//! bytes in to export request bytes out — walked and sliced at intake, framed into the export
//! request — beside the path of an agent that decodes: `prost` decode, a clone into the export
//! batch, `prost` encode. 8,200 records (82 requests of 100, as `wasmtel load` sends them),
//! framed into one export request. Prints ns per record for both and the ratio.
//!
//! And the queue those records wait in: pushed as they arrive (82 pushes of 100), taken in one
//! batch and resolved as delivered, in memory beside a disk queue (journal synced never, and
//! at every push). Prints ns per record for each and the ratios.

mod timing;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use wasmtel::export::delivery::journal::Fsync;
use wasmtel::export::delivery::queue::{OnFull, Queue};
use wasmtel::export::otlp::frame;
use wasmtel::intake::otlp::Tally;
use wasmtel::intake::otlp::records::{Stamp, log_record, scan};
use wasmtel::load::logs_body;
use wasmtel::model::content::Content;
use wasmtel::model::record::Record;

const REQUESTS: u64 = 82;
const BATCH: u64 = 100;
const RECORDS: u64 = REQUESTS * BATCH;

fn ours(bodies: &[Bytes]) -> Vec<u8> {
    let mut records = Vec::with_capacity(RECORDS as usize);
    for body in bodies {
        records.extend(
            scan(
                body,
                &mut Tally::default(),
                &Stamp::NONE,
                (log_record, &Content::genai()),
            )
            .expect("valid")
            .records,
        );
    }
    frame(&records)
}

fn decoding(bodies: &[Bytes]) -> Vec<u8> {
    let mut batch = ExportLogsServiceRequest::default();
    for body in bodies {
        let request = ExportLogsServiceRequest::decode(body.as_ref()).expect("valid");
        batch
            .resource_logs
            .extend(request.resource_logs.iter().cloned());
    }
    batch.encode_to_vec()
}

fn forward(c: &mut Criterion) {
    let bodies: Vec<Bytes> = (0..REQUESTS)
        .map(|n| Bytes::from(logs_body(n, BATCH)))
        .collect();
    assert_eq!(
        ExportLogsServiceRequest::decode(&ours(&bodies)[..])
            .expect("valid")
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum::<u64>(),
        RECORDS
    );
    timing::forwarding(
        c,
        ("forward_8200_log_records", "log record", RECORDS),
        || ours(&bodies),
        || decoding(&bodies),
    );
}

/// Pushes every request's records, takes them as one batch and resolves it as delivered.
fn through(queue: &Queue<Record>, requests: &[Vec<Record>]) {
    for records in requests {
        queue.push(records.clone()).expect("pushed");
    }
    let taken = queue.take(usize::MAX, usize::MAX).expect("records");
    let n = taken.count();
    queue.finish(taken, n, 0, Vec::new());
}

fn queues(c: &mut Criterion) {
    let requests: Vec<Vec<Record>> = (0..REQUESTS)
        .map(|n| {
            let body = Bytes::from(logs_body(n, BATCH));
            scan(
                &body,
                &mut Tally::default(),
                &Stamp::NONE,
                (log_record, &Content::genai()),
            )
            .expect("valid")
            .records
        })
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let durable = |name: &str, fsync| {
        Queue::durable(
            (usize::MAX, usize::MAX),
            OnFull::Reject,
            &dir.path().join(name),
            (fsync, u64::MAX),
        )
        .expect("journal")
        .0
    };
    let memory = Queue::new(usize::MAX, usize::MAX, OnFull::Reject);
    let never = durable("never", Fsync::Never);
    let always = durable("always", Fsync::Always);
    let mut group = c.benchmark_group("queue_8200_log_records");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    for (name, queue) in [
        ("memory", &memory),
        ("disk_fsync_never", &never),
        ("disk_fsync_always", &always),
    ] {
        group.bench_function(name, |b| b.iter(|| through(queue, &requests)));
    }
    group.finish();
    let per =
        |q: &Queue<Record>| timing::best_of_five(|| through(q, &requests)) * 1e9 / RECORDS as f64;
    let (m, n, a) = (per(&memory), per(&never), per(&always));
    println!(
        "\nqueue per record: memory {m:.0} ns, disk (fsync never) {n:.0} ns ({:.1}x), disk (fsync always, one per push of {BATCH}) {a:.0} ns ({:.1}x)\n",
        n / m,
        a / m
    );
}

criterion_group!(benches, forward, queues);
criterion_main!(benches);
