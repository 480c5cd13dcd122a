//! The system poller: CPU and memory of the machine and of the host process, read from `/proc`
//! and recorded as the OpenTelemetry system and process semantic conventions name them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{MetricSpec, register};
use crate::metrics::{ConflictError, Instrument, Registry};
use crate::model::attributes::ValueRef;
use crate::model::metric::InstrumentKind;

/// The instrumentation scope of the system metrics.
pub const SYSTEM_SCOPE: &str = "wasmtel.system";

/// Every system metric: name, unit, kind and description (the README lists the same).
pub const METRICS: [MetricSpec; 5] = [
    (
        "system.cpu.utilization",
        "1",
        InstrumentKind::ObservableGauge,
        "Fraction of CPU time in each cpu.mode since the last poll, over all CPUs.",
    ),
    (
        "system.memory.usage",
        "By",
        InstrumentKind::ObservableUpDownCounter,
        "Memory in each system.memory.state (used, free, cached, buffers).",
    ),
    (
        "system.memory.utilization",
        "1",
        InstrumentKind::ObservableGauge,
        "Fraction of memory in each system.memory.state.",
    ),
    (
        "process.cpu.utilization",
        "1",
        InstrumentKind::ObservableGauge,
        "CPU time of the host process in each cpu.mode since the last poll, over its elapsed time and available CPUs.",
    ),
    (
        "process.memory.usage",
        "By",
        InstrumentKind::ObservableUpDownCounter,
        "Resident memory of the host process.",
    ),
];

/// Cumulative CPU time by mode, in clock ticks, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user, nice, system, idle, iowait, interrupt (irq + softirq), steal.
    pub modes: [u64; 7],
}

/// The `cpu.mode` value of each entry of [`CpuTimes::modes`].
pub const CPU_MODES: [&str; 7] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "interrupt",
    "steal",
];

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `MemTotal`.
    pub total: u64,
    /// `MemFree`.
    pub free: u64,
    /// `Buffers`.
    pub buffers: u64,
    /// `Cached` plus reclaimable slab (`SReclaimable`).
    pub cached: u64,
}

impl Memory {
    /// Memory neither free, nor buffers, nor cache.
    pub fn used(&self) -> u64 {
        self.total
            .saturating_sub(self.free)
            .saturating_sub(self.buffers)
            .saturating_sub(self.cached)
    }
}

/// A `/proc` file that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct ProcError {
    file: String,
    reason: String,
}

fn proc_error(file: &str, reason: impl Into<String>) -> ProcError {
    ProcError {
        file: file.into(),
        reason: reason.into(),
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_stat(text: &str) -> Result<CpuTimes, ProcError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| proc_error("stat", "no `cpu` line"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| proc_error("stat", format!("`{line}`: {e}")))?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return Err(proc_error(
            "stat",
            format!("`{line}` has fewer than 4 times"),
        ));
    }
    Ok(CpuTimes {
        modes: [at(0), at(1), at(2), at(3), at(4), at(5) + at(6), at(7)],
    })
}

/// Parses `/proc/meminfo` (values in kB).
pub fn parse_meminfo(text: &str) -> Result<Memory, ProcError> {
    let field = |name: &str| -> Result<u64, ProcError> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .ok_or_else(|| proc_error("meminfo", format!("no `{name}`")))?;
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| proc_error("meminfo", format!("`{line}` has no number of kB")))
    };
    Ok(Memory {
        total: field("MemTotal")?,
        free: field("MemFree")?,
        buffers: field("Buffers")?,
        cached: field("Cached")? + field("SReclaimable").unwrap_or(0),
    })
}

/// Parses user and system time (clock ticks) from `/proc/<pid>/stat`.
pub fn parse_process_stat(text: &str) -> Result<(u64, u64), ProcError> {
    // The command name is in parentheses and may hold spaces: fields count from the last `)`.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| proc_error("self/stat", "no `)` after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) … utime(11) stime(12).
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| proc_error("self/stat", format!("field {} is not a number", i + 3)))
    };
    Ok((tick(11)?, tick(12)?))
}

/// Parses resident pages from `/proc/<pid>/statm`.
pub fn parse_statm(text: &str) -> Result<u64, ProcError> {
    text.split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| proc_error("self/statm", "no resident page count"))
}

/// What the previous poll read, to turn cumulative CPU times into utilisation.
#[derive(Debug, Clone, Copy)]
struct Previous {
    cpu: CpuTimes,
    process: (u64, u64),
    at: Instant,
}

/// Polls `/proc` and records what it reads.
#[derive(Debug)]
pub struct SystemPoller {
    root: PathBuf,
    cpu_utilization: Arc<Instrument>,
    memory_usage: Arc<Instrument>,
    memory_utilization: Arc<Instrument>,
    process_cpu: Arc<Instrument>,
    process_memory: Arc<Instrument>,
    previous: Option<Previous>,
    ticks_per_second: f64,
    page_size: u64,
    cpus: f64,
}

impl SystemPoller {
    /// A poller reading `root` (`/proc`, or a directory laid out like it) into `registry`.
    pub fn new(registry: &Registry, root: impl Into<PathBuf>) -> Result<Self, ConflictError> {
        let [
            cpu_utilization,
            memory_usage,
            memory_utilization,
            process_cpu,
            process_memory,
        ] = register(registry, &METRICS, SYSTEM_SCOPE)?;
        Ok(Self {
            root: root.into(),
            cpu_utilization,
            memory_usage,
            memory_utilization,
            process_cpu,
            process_memory,
            previous: None,
            ticks_per_second: rustix::param::clock_ticks_per_second() as f64,
            page_size: rustix::param::page_size() as u64,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        })
    }

    fn read(&self, file: &str) -> Result<String, ProcError> {
        std::fs::read_to_string(self.root.join(file)).map_err(|e| proc_error(file, e.to_string()))
    }

    /// Reads `/proc` once and records it; CPU utilisation needs a previous poll to compare with.
    pub fn poll(&mut self) -> Result<(), ProcError> {
        let now = Instant::now();
        let memory = parse_meminfo(&self.read("meminfo")?)?;
        let states = [
            ("used", memory.used()),
            ("free", memory.free),
            ("cached", memory.cached),
            ("buffers", memory.buffers),
        ];
        for (state, bytes) in states {
            let attrs = [("system.memory.state", ValueRef::Str(state))];
            self.memory_usage.record(&attrs, bytes as f64);
            if memory.total > 0 {
                let share = bytes as f64 / memory.total as f64;
                self.memory_utilization.record(&attrs, share);
            }
        }
        let resident = parse_statm(&self.read("self/statm")?)?;
        self.process_memory
            .record(&[], (resident * self.page_size) as f64);
        let cpu = parse_stat(&self.read("stat")?)?;
        let process = parse_process_stat(&self.read("self/stat")?)?;
        if let Some(before) = self.previous {
            self.record_cpu(&before, &cpu, process, now);
        }
        self.previous = Some(Previous {
            cpu,
            process,
            at: now,
        });
        Ok(())
    }

    fn record_cpu(&self, before: &Previous, cpu: &CpuTimes, process: (u64, u64), now: Instant) {
        let deltas: Vec<u64> = cpu
            .modes
            .iter()
            .zip(before.cpu.modes)
            .map(|(now, then)| now.saturating_sub(then))
            .collect();
        let total: u64 = deltas.iter().sum();
        if total > 0 {
            for (mode, delta) in CPU_MODES.iter().zip(&deltas) {
                let attrs = [("cpu.mode", ValueRef::Str(mode))];
                self.cpu_utilization
                    .record(&attrs, *delta as f64 / total as f64);
            }
        }
        let elapsed = now.duration_since(before.at).as_secs_f64();
        if elapsed > 0.0 {
            let available = elapsed * self.ticks_per_second * self.cpus;
            let (user, system) = (
                process.0.saturating_sub(before.process.0),
                process.1.saturating_sub(before.process.1),
            );
            for (mode, ticks) in [("user", user), ("system", system)] {
                let attrs = [("cpu.mode", ValueRef::Str(mode))];
                self.process_cpu.record(&attrs, ticks as f64 / available);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Storage;

    const STAT: &str =
        "cpu  100 10 50 800 20 5 5 10 0 0\ncpu0 50 5 25 400 10 3 2 5 0 0\nintr 1 2 3\n";
    const MEMINFO: &str = "MemTotal:       16000 kB\nMemFree:         4000 kB\nMemAvailable:    9000 kB\nBuffers:         1000 kB\nCached:          3000 kB\nSwapCached:         0 kB\nSReclaimable:    1000 kB\n";
    const SELF_STAT: &str = "4242 (wasm tel) (x) S 1 4242 4242 0 -1 4194560 900 0 0 0 300 120 0 0 20 0 9 0 100 2000000 1500 18446744073709551615";

    #[test]
    fn proc_files_parse_exactly() {
        assert_eq!(
            parse_stat(STAT).expect("stat").modes,
            [100, 10, 50, 800, 20, 10, 10]
        );
        let m = parse_meminfo(MEMINFO).expect("meminfo");
        assert_eq!(
            (m.total, m.free, m.buffers, m.cached, m.used()),
            (16_384_000, 4_096_000, 1_024_000, 4_096_000, 7_168_000)
        );
        assert_eq!(
            parse_process_stat(SELF_STAT).expect("self/stat"),
            (300, 120)
        );
        assert_eq!(
            parse_statm("5000 1500 300 10 0 900 0\n").expect("statm"),
            1500
        );
    }

    #[test]
    fn malformed_proc_files_are_errors_naming_the_file() {
        let err = |r: Result<(), ProcError>| r.map_err(|e| e.to_string()).expect_err("malformed");
        assert_eq!(err(parse_stat("intr 1\n").map(drop)), "stat: no `cpu` line");
        assert_eq!(
            err(parse_stat("cpu  1 x 3 4\n").map(drop)),
            "stat: `cpu  1 x 3 4`: invalid digit found in string"
        );
        assert_eq!(
            err(parse_stat("cpu  1 2\n").map(drop)),
            "stat: `cpu  1 2` has fewer than 4 times"
        );
        assert_eq!(
            err(parse_meminfo("MemFree: 1 kB\n").map(drop)),
            "meminfo: no `MemTotal`"
        );
        assert_eq!(
            err(parse_meminfo("MemTotal: lots\n").map(drop)),
            "meminfo: `MemTotal: lots` has no number of kB"
        );
        assert_eq!(
            err(parse_process_stat("4242 wasmtel S").map(drop)),
            "self/stat: no `)` after the command name"
        );
        assert_eq!(
            err(parse_process_stat("1 (a) S 1 2").map(drop)),
            "self/stat: field 14 is not a number"
        );
        assert_eq!(
            err(parse_statm("").map(drop)),
            "self/statm: no resident page count"
        );
    }

    /// name → (attributes `k=v`, value), sorted.
    fn readings(registry: &Registry, name: &str) -> Vec<(String, f64)> {
        let instrument = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == name)
            .expect("registered");
        let mut out = Vec::new();
        let mut visit = |attrs: &crate::model::attributes::AttributeSet, v: f64| {
            let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push((a.join(","), v));
        };
        match instrument.storage() {
            Storage::Sum(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            Storage::LastValue(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            _ => panic!("not a number"),
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn write(root: &std::path::Path, file: &str, text: &str) {
        std::fs::create_dir_all(root.join("self")).expect("dir");
        std::fs::write(root.join(file), text).expect("write");
    }

    #[test]
    fn a_poll_records_memory_at_once_and_cpu_from_the_second_poll_on() {
        let root = tempfile::tempdir().expect("tempdir");
        write(root.path(), "stat", STAT);
        write(root.path(), "meminfo", MEMINFO);
        write(root.path(), "self/stat", SELF_STAT);
        write(root.path(), "self/statm", "5000 1500 300 10 0 900 0\n");
        let registry = Registry::new(100);
        let mut poller = SystemPoller::new(&registry, root.path()).expect("instruments");
        poller.poll().expect("first poll");
        assert!(
            readings(&registry, "system.cpu.utilization").is_empty(),
            "nothing to compare with yet"
        );
        let mb = |kb: f64| kb * 1024.0;
        assert_eq!(
            readings(&registry, "system.memory.usage"),
            [
                ("system.memory.state=buffers".to_owned(), mb(1000.0)),
                ("system.memory.state=cached".to_owned(), mb(4000.0)),
                ("system.memory.state=free".to_owned(), mb(4000.0)),
                ("system.memory.state=used".to_owned(), mb(7000.0)),
            ]
        );
        let shares: Vec<f64> = readings(&registry, "system.memory.utilization")
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(shares, [0.0625, 0.25, 0.25, 0.4375]);
        let page = rustix::param::page_size() as f64;
        assert_eq!(
            readings(&registry, "process.memory.usage"),
            [(String::new(), 1500.0 * page)]
        );

        // 100 more ticks: 40 user, 10 system, 50 idle; the process used 30 + 10 of them.
        write(root.path(), "stat", "cpu  140 10 60 850 20 5 5 10 0 0\n");
        write(
            root.path(),
            "self/stat",
            &SELF_STAT.replace(" 300 120 ", " 330 130 "),
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        poller.poll().expect("second poll");
        let cpu: Vec<(String, f64)> = readings(&registry, "system.cpu.utilization");
        let mode = |m: &str| {
            cpu.iter()
                .find(|(a, _)| a == &format!("cpu.mode={m}"))
                .map(|r| r.1)
        };
        assert_eq!(
            (mode("user"), mode("system"), mode("idle"), mode("nice")),
            (Some(0.4), Some(0.1), Some(0.5), Some(0.0))
        );
        assert_eq!(cpu.len(), 7);
        let process = readings(&registry, "process.cpu.utilization");
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // The poll was at least 50 ms after the first: at most 30 ticks over 0.05 s of every CPU.
        let most = |t: f64| t / (0.05 * ticks * cpus);
        let (system, user) = (process[0].1, process[1].1);
        assert!(user > 0.0 && user <= most(30.0), "{process:?}");
        assert!(system > 0.0 && system <= most(10.0), "{process:?}");
        assert!(
            (user / system - 3.0).abs() < 1e-9,
            "30 user ticks to 10 system ticks"
        );
    }

    #[test]
    fn a_missing_proc_file_is_an_error_naming_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new(100);
        let mut poller = SystemPoller::new(&registry, root.path()).expect("instruments");
        let err = poller.poll().expect_err("no files").to_string();
        assert!(err.starts_with("meminfo: "), "{err}");
    }
}
