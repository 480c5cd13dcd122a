//! The system poller against this machine's `/proc`, read again independently by the test.

use std::collections::BTreeMap;

use wasmtel::metrics::{Registry, Storage};
use wasmtel::sources::system::SystemPoller;

/// name → attribute values joined by `,` → value.
fn values(registry: &Registry) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for instrument in registry.instruments() {
        let entry = out.entry(instrument.descriptor().name.clone()).or_default();
        let mut visit = |attrs: &wasmtel::model::attributes::AttributeSet, v: f64| {
            let key: Vec<String> = attrs.iter().map(|(_, v)| v.to_string()).collect();
            entry.insert(key.join(","), v);
        };
        match instrument.storage() {
            Storage::Sum(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            Storage::LastValue(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            _ => {}
        }
    }
    out
}

/// A `/proc` key's value in kB, as bytes.
fn kb(file: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(file).expect("proc file");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .expect("key present");
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kb * 1024.0
}

#[test]
fn readings_agree_with_proc() {
    let registry = Registry::new(100);
    let mut poller = SystemPoller::new(&registry, "/proc").expect("instruments");
    poller.poll().expect("first poll");
    // Work for a while so that the process has CPU time to show.
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(300) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    poller.poll().expect("second poll");
    let v = values(&registry);

    let memory = &v["system.memory.usage"];
    let total: f64 = memory.values().sum();
    assert_eq!(total, kb("/proc/meminfo", "MemTotal"), "{memory:?}");
    let shares: f64 = v["system.memory.utilization"].values().sum();
    assert!((shares - 1.0).abs() < 1e-9, "{shares}");

    let cpu = &v["system.cpu.utilization"];
    let modes: Vec<&str> = cpu.keys().map(String::as_str).collect();
    assert_eq!(
        modes,
        [
            "idle",
            "interrupt",
            "iowait",
            "nice",
            "steal",
            "system",
            "user"
        ]
    );
    let sum: f64 = cpu.values().sum();
    assert!((sum - 1.0).abs() < 1e-9, "{cpu:?}");
    assert!(cpu.values().all(|f| (0.0..=1.0).contains(f)));

    let rss = kb("/proc/self/status", "VmRSS");
    let reported = v["process.memory.usage"][""];
    assert!(
        reported > rss * 0.5 && reported < rss * 2.0,
        "{reported} vs VmRSS {rss}"
    );

    let process = &v["process.cpu.utilization"];
    assert!(process["user"] > 0.0, "the busy loop shows: {process:?}");
    assert!(
        process.values().all(|f| (0.0..=1.0).contains(f)),
        "{process:?}"
    );
}
