//! A backend outage with a disk queue, in a process of its own so that resident memory is this
//! test's alone: what memory cannot hold waits on disk, and every acknowledged record is
//! delivered once, in order, when the backend returns.

mod common;

use std::collections::HashSet;

use wasmtel_tests::{post_events, resident};

/// `n` events from `from` on, each a record with its own request id and 200 bytes of padding.
fn batch(from: u64, n: u64) -> Vec<u8> {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"event_type\":\"generation_completed\",\"model\":\"m\",\"request_id\":\"req-{i}\",\"attributes\":{{\"pad\":\"{}\"}}}}\n",
                "x".repeat(200)
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// A host with a disk queue (and `delivery`, `on_full`) exporting to a collector that is down;
/// with its data directory, kept while the host runs.
async fn down(
    delivery: &str,
    on_full: &str,
) -> (wasmtel::Host, wasmtel_tests::Receiver, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("data");
    let receiver = wasmtel_tests::Receiver::start().await;
    receiver.answer(503);
    let host = common::start(&format!(
        "data_dir = \"{}\"\n[intake]\non_full = \"{on_full}\"\n[derive]\nrule_set = \"none\"\n\
         [otlp]\nendpoint = \"{}\"\ncompression = \"none\"\ndelivery.interval = \"1h\"\n\
         delivery.queue = \"disk\"\ndelivery.fsync = \"never\"\n{delivery}\
         [otlp.delivery.retry]\nmax_retries = 1000\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\nbreaker_cooldown = \"50ms\"\n",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    (host, receiver, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_disk_not_data_and_the_journal_shrinks_back() {
    // Memory holds 2,000 records; the outage brings 100,000 (about 33 MiB of journal). One
    // export in flight at a time, so that the order they arrive in is the queue's.
    let (host, receiver, _data) = down(
        "delivery.logs_queue = 2000\ndelivery.max_in_flight = 1\n",
        "reject",
    )
    .await;
    let addr = host.intake_addr();
    let before = resident();
    const TOTAL: u64 = 100_000;
    for from in (0..TOTAL).step_by(1000) {
        let answer =
            post_events(addr, Some("application/x-ndjson"), batch(from, 1000), false).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
    }
    let report = || {
        host.integrations()
            .into_iter()
            .find(|r| r.signal == "logs")
            .expect("logs report")
    };
    let during = report();
    let disk = during.disk_queue.expect("a disk queue");
    assert!(
        disk.spilled >= TOTAL - 2000 - 1000,
        "what memory cannot hold waits on disk: {disk:?}"
    );
    assert!(disk.bytes > 20 << 20, "{disk:?}");
    assert_eq!(during.items.dropped, 0);
    let grown = resident().saturating_sub(before);
    eprintln!(
        "outage: {TOTAL} records accepted, {} spilled, journal {} MiB, resident memory grew {} MiB",
        disk.spilled,
        disk.bytes >> 20,
        grown >> 20
    );
    assert!(
        grown < 120 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );

    // The backend returns: every record arrives exactly once, in order, and the journal empties.
    receiver.answer(200);
    receiver
        .wait_until("every accepted record", |r| {
            r.request_ids().len() as u64 >= TOTAL
        })
        .await;
    let ids = receiver.with(|r| r.request_ids());
    assert_eq!(ids.len() as u64, TOTAL, "none twice");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len() as u64, TOTAL);
    let order: Vec<u64> = ids
        .iter()
        .map(|id| id.trim_start_matches("req-").parse().expect("number"))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "in the order accepted"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = report();
        let disk = r.disk_queue.expect("disk");
        if disk.bytes == 0 && r.items.queued == 0 {
            assert_eq!((r.items.delivered, r.items.dropped), (TOTAL, 0), "{r:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the journal did not shrink: {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    host.shutdown().await;

    // Past its size on disk the `on_full` rule applies: `reject` (the default) refuses with
    // 503 and loses nothing accepted; `drop_oldest` drops the oldest records, counted.
    for on_full in ["reject", "drop_oldest"] {
        past_its_size_on_disk(on_full).await;
    }
}

/// A disk queue of 2 MiB under a backend that is down, with `on_full`.
async fn past_its_size_on_disk(on_full: &str) {
    let (host, receiver, _data) = down(
        "delivery.logs_queue = 1000\ndelivery.max_disk_bytes = 2097152\n",
        on_full,
    )
    .await;
    let addr = host.intake_addr();
    const SENT: u64 = 20_000;
    let mut acked = 0;
    for from in (0..SENT).step_by(1000) {
        let answer =
            post_events(addr, Some("application/x-ndjson"), batch(from, 1000), false).await;
        match (on_full, answer.status) {
            (_, 202) => acked = from + 1000,
            ("reject", 503) => {
                let error = answer.body["error"].as_str().unwrap_or_default().to_owned();
                assert!(error.contains("is full; retry later"), "{error}");
                break;
            }
            (_, status) => panic!("{on_full}: {status} {:?}", answer.body),
        }
    }
    let r = host
        .integrations()
        .into_iter()
        .find(|r| r.signal == "logs")
        .expect("logs report");
    let c = r.items;
    assert_eq!(
        c.accepted,
        c.delivered + c.refused + c.dropped + c.queued,
        "{c:?}"
    );
    match on_full {
        "reject" => {
            assert!(acked < SENT, "{on_full}: the 2 MiB queue never filled");
            assert_eq!(c.dropped, 0);
        }
        _ => {
            assert_eq!(acked, SENT);
            assert!(c.dropped > 0, "{on_full}: {c:?}");
        }
    }
    let kept = acked - c.dropped;
    receiver.answer(200);
    receiver
        .wait_until("what was kept", |rr| rr.request_ids().len() as u64 >= kept)
        .await;
    let ids = receiver.with(|r| r.request_ids());
    assert_eq!(ids.len() as u64, kept, "{on_full}: the rest, once each");
    let last = format!("req-{}", acked - 1);
    assert!(ids.contains(&last), "{on_full}: the newest were kept");
    host.shutdown().await;
}
