//! Memory under stalled uploads, in a process of its own so that resident memory is this
//! test's alone: a thousand bodies sent fast then stalled stay within the body budget.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtel_tests::{ndjson, post_events, resident};

fn chunk() -> Vec<u8> {
    ndjson(&[json!({"event_type": "chunk_produced", "model": "m"})])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_fast_then_stalled_uploads_stay_within_the_body_budget_and_are_closed() {
    const BUDGET: u64 = 32 << 20;
    let host = common::start(&format!(
        "{}\n[connections]\nstall_timeout = \"2s\"\nmax_body_memory = {BUDGET}\n",
        common::CHUNK_RULE
    ))
    .await;
    let addr = host.intake_addr();
    let before = resident();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Each declares 8 MiB, sends 1 MiB as fast as the host reads it, then stalls.
    let body = bytes::Bytes::from(vec![b' '; 1 << 20]);
    let mut uploads = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let body = body.clone();
        uploads.spawn(async move {
            let started = Instant::now();
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_send_buffer_size(64 * 1024).expect("SO_SNDBUF");
            let stream = socket.connect(addr).await.expect("connect");
            let (mut reader, mut writer) = stream.into_split();
            let head = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: 8388608\r\n\r\n";
            let sending = async {
                if writer.write_all(head).await.is_ok() {
                    let _ = writer.write_all(&body).await;
                }
                std::future::pending::<()>().await
            };
            let mut answer = Vec::new();
            // An end of stream or a reset both mean the host closed it.
            let closed = tokio::select! {
                _ = reader.read_to_end(&mut answer) => true,
                () = sending => unreachable!(),
                () = tokio::time::sleep(Duration::from_secs(8)) => false,
            };
            let answer = String::from_utf8_lossy(&answer).into_owned();
            (closed, started.elapsed(), answer)
        });
    }
    // Meanwhile a normal client is served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = post_events(addr, Some("application/x-ndjson"), chunk(), false).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);

    let (mut refused, mut cut) = (0, 0);
    while let Some(upload) = uploads.join_next().await {
        let (closed, took, answer) = upload.expect("upload task");
        assert!(closed, "an upload still open after {took:?}: {answer}");
        // Within the 1 s a body may wait for room, the 2 s stall timeout, and the slack a
        // loaded 2-core machine needs to open a thousand connections (never the 8 s of rates).
        assert!(took < Duration::from_secs(7), "closed after {took:?}");
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("connections.max_body_memory"), "{answer}");
            assert!(
                answer.to_ascii_lowercase().contains("retry-after: 1"),
                "{answer}"
            );
            refused += 1;
        } else if answer.starts_with("HTTP/1.1 408") {
            cut += 1;
        }
    }
    sampling.abort();
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!(
        "{refused} refused (503), {cut} cut (408); resident memory grew by {} MiB at most",
        grown >> 20
    );
    assert!(
        refused > 0,
        "no upload waited out the budget ({cut} cut by the stall timeout)"
    );
    // The budget, plus per connection its 64 KiB free, the frame it waits with and hyper's
    // buffers (about 100 KiB measured), plus a constant.
    assert!(
        grown < BUDGET + 1000 * (192 << 10) + (64 << 20),
        "resident memory grew by {} MiB",
        grown >> 20
    );
    let answer = post_events(addr, Some("application/x-ndjson"), chunk(), false).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    host.shutdown().await;
}
