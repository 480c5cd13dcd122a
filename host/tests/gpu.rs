//! The GPU poller on real hardware. Ignored by default; on a machine with an NVIDIA GPU and
//! driver run `cargo test -p wasmtel --test gpu -- --ignored --nocapture`. With
//! `WASMTEL_GPU_PROCESS=<pid>` of a process holding at least 1 GiB of GPU memory, the test also
//! checks that process's series.

use std::collections::BTreeMap;

use wasmtel::metrics::{Registry, Storage};
use wasmtel::model::attributes::ValueRef;
use wasmtel::sources::gpu::{GpuPoller, nvml};

/// Every value of every GPU metric, by metric name.
fn values(registry: &Registry) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for instrument in registry.instruments() {
        let name = instrument.descriptor().name.clone();
        let mut seen = Vec::new();
        match instrument.storage() {
            Storage::Sum(t) => t.for_each(|s| seen.push(s.aggregator.value())),
            Storage::LastValue(t) => t.for_each(|s| seen.push(s.aggregator.value())),
            _ => {}
        }
        if !seen.is_empty() {
            out.insert(name, seen);
        }
    }
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver"]
fn every_gpu_metric_is_plausible_on_real_hardware() {
    let registry = Registry::new(2000);
    let mut poller =
        GpuPoller::new(&registry, Box::new(|| nvml::connect(nvml::LIBRARY))).expect("instruments");
    let gpus = poller.poll();
    assert!(gpus > 0, "NVML found no GPU");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(poller.poll(), gpus);
    let v = values(&registry);
    for (name, values) in &v {
        println!("{name}: {values:?}");
    }
    let all = |name: &str, ok: &dyn Fn(f64) -> bool| {
        let values = v.get(name).unwrap_or_else(|| panic!("{name} was not read"));
        assert!(values.iter().all(|x| ok(*x)), "{name}: {values:?}");
    };
    let some = |name: &str, ok: &dyn Fn(f64) -> bool| {
        if v.contains_key(name) {
            all(name, ok);
        } else {
            println!("{name}: not supported here");
        }
    };
    let ratio = |x: f64| (0.0..=1.0).contains(&x);
    let flag = |x: f64| x == 0.0 || x == 1.0;
    all("hw.gpu.utilization", &ratio);
    all("hw.gpu.memory.utilization", &ratio);
    all("hw.gpu.memory.limit", &|x| (1e9..=1e12).contains(&x));
    all("hw.gpu.memory.usage", &|x| (0.0..=1e12).contains(&x));
    all("hw.gpu.memory.free", &|x| (0.0..=1e12).contains(&x));
    let limit: f64 = v["hw.gpu.memory.limit"].iter().sum();
    let used: f64 = v["hw.gpu.memory.usage"].iter().sum();
    assert!(used <= limit, "used {used} of {limit}");
    all("hw.temperature", &|x| (5.0..=110.0).contains(&x));
    all("hw.power", &|x| x > 0.0 && x <= 2000.0);
    some("hw.gpu.power.limit", &|x| (10.0..=2000.0).contains(&x));
    some("hw.energy", &|x| x > 0.0);
    all("hw.gpu.clock.sm", &|x| (1e7..=5e9).contains(&x));
    all("hw.gpu.clock.memory", &|x| (1e7..=2e10).contains(&x));
    some("hw.gpu.pcie.throughput", &|x| (0.0..=1e11).contains(&x));
    some("hw.errors", &|x| x >= 0.0);
    some("hw.gpu.process.memory.usage", &|x| x > 0.0);
    for k in ["power", "thermal", "sw", "hw"] {
        some(&format!("gpu.throttle.{k}_active"), &flag);
    }
    if let Ok(pid) = std::env::var("WASMTEL_GPU_PROCESS") {
        let pid: i64 = pid.parse().expect("WASMTEL_GPU_PROCESS is a process id");
        let memory = process_memory(&registry, pid);
        println!("process {pid}: {memory:?} bytes of GPU memory");
        assert!(
            memory.is_some_and(|m| m >= 1e9),
            "process {pid}: {memory:?}"
        );
    }
}

/// The GPU memory the poller saw process `pid` use.
fn process_memory(registry: &Registry, pid: i64) -> Option<f64> {
    let instrument = registry
        .instruments()
        .into_iter()
        .find(|i| i.descriptor().name == "hw.gpu.process.memory.usage")?;
    let Storage::Sum(table) = instrument.storage() else {
        return None;
    };
    let mut found = None;
    table.for_each(|s| {
        if s.attributes.get("process.pid") == Some(ValueRef::Int(pid)) {
            found = Some(s.aggregator.value());
        }
    });
    found
}
