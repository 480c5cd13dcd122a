//! The GPU poller: reads every NVIDIA GPU each interval and records the readings as metrics
//! named after the OpenTelemetry hardware semantic conventions.
//!
//! The reads go through [`GpuLibrary`]: NVML on a real machine ([`nvml`]), a scripted fake in
//! tests. A machine without a GPU or driver is said once in the log and polled quietly on.

pub mod nvml;

#[cfg(test)]
mod fake;

use super::kubernetes::{Attribution, Owner};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{MetricSpec, register};
use crate::metrics::{ConflictError, Instrument, Registry};
use crate::model::attributes::{AttributeSet, ValueRef};
use crate::model::metric::InstrumentKind;

/// The instrumentation scope of the GPU metrics.
pub const GPU_SCOPE: &str = "wasmtel.gpu";

/// One thing read from a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// GPU and memory utilisation.
    Utilization,
    /// Memory used, free and total.
    Memory,
    /// Die temperature (°C).
    Temperature,
    /// Power draw (W).
    Power,
    /// Enforced power limit (W).
    PowerLimit,
    /// Energy used since the driver loaded (J).
    Energy,
    /// SM clock (Hz).
    SmClock,
    /// Memory clock (Hz).
    MemoryClock,
    /// PCIe receive throughput (bytes/s).
    PcieReceive,
    /// PCIe transmit throughput (bytes/s).
    PcieTransmit,
    /// Corrected ECC errors over the device's life.
    EccCorrected,
    /// Uncorrected ECC errors over the device's life.
    EccUncorrected,
    /// GPU memory per process.
    Processes,
    /// Clock throttle reasons.
    Throttle,
}

/// Every field, in the order they are read.
pub const FIELDS: [Field; 14] = [
    Field::Utilization,
    Field::Memory,
    Field::Temperature,
    Field::Power,
    Field::PowerLimit,
    Field::Energy,
    Field::SmClock,
    Field::MemoryClock,
    Field::PcieReceive,
    Field::PcieTransmit,
    Field::EccCorrected,
    Field::EccUncorrected,
    Field::Processes,
    Field::Throttle,
];

/// What reading one field gives, in the metric's unit.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// GPU and memory utilisation, in percent.
    Utilization {
        /// Time a kernel ran.
        gpu: u32,
        /// Time device memory was read or written.
        memory: u32,
    },
    /// Memory in bytes.
    Memory {
        /// Allocated.
        used: u64,
        /// Unallocated.
        free: u64,
        /// Installed.
        total: u64,
    },
    /// One number, already in the metric's unit.
    Value(f64),
    /// GPU memory used per process id, in bytes.
    Processes(Vec<(u32, u64)>),
    /// NVML clock throttle reason bits.
    Throttle(u64),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    /// The device does not have this field.
    #[error("not supported")]
    NotSupported,
    /// This device's read failed; the other devices are read on.
    #[error("{0}")]
    Device(String),
    /// The library failed; it is initialised again on the next poll.
    #[error("{0}")]
    Library(String),
}

/// The name and identity of a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its UUID (`GPU-…`).
    pub uuid: String,
    /// Its product name.
    pub name: String,
}

/// Access to the GPUs of this machine.
pub trait GpuLibrary: Send {
    /// How many GPUs there are.
    fn device_count(&mut self) -> Result<u32, GpuError>;
    /// Who GPU `index` is.
    fn identity(&mut self, index: u32) -> Result<Identity, GpuError>;
    /// Reads one field of GPU `index`.
    fn read(&mut self, index: u32, field: Field) -> Result<Reading, GpuError>;
}

/// Opens the library: called at the first poll, and again after the library failed.
pub type Connect = Box<dyn FnMut() -> Result<Box<dyn GpuLibrary>, GpuError> + Send>;

/// Which throttle kinds NVML's reason bits mean, as (power, thermal, sw, hw).
///
/// GpuIdle is not a throttle; a bit not in the table counts as hardware.
pub fn throttle_kinds(bits: u64) -> [bool; 4] {
    const IDLE: u64 = 0x1;
    // (bit, power, thermal, sw, hw)
    const TABLE: [(u64, [bool; 4]); 8] = [
        (0x2, [false, false, true, false]),   // ApplicationsClocksSetting
        (0x4, [true, false, true, false]),    // SwPowerCap
        (0x8, [false, false, false, true]),   // HwSlowdown
        (0x10, [false, false, true, false]),  // SyncBoost
        (0x20, [false, true, true, false]),   // SwThermalSlowdown
        (0x40, [false, true, false, true]),   // HwThermalSlowdown
        (0x80, [true, false, false, true]),   // HwPowerBrakeSlowdown
        (0x100, [false, false, true, false]), // DisplayClockSetting
    ];
    let mut kinds = [false; 4];
    let mut rest = bits & !IDLE;
    for (bit, meaning) in TABLE {
        if rest & bit != 0 {
            rest &= !bit;
            for (k, m) in kinds.iter_mut().zip(meaning) {
                *k |= m;
            }
        }
    }
    kinds[3] |= rest != 0;
    kinds
}

/// The GPU instruments.
struct Instruments {
    utilization: Arc<Instrument>,
    memory_utilization: Arc<Instrument>,
    memory_usage: Arc<Instrument>,
    memory_free: Arc<Instrument>,
    memory_limit: Arc<Instrument>,
    temperature: Arc<Instrument>,
    power: Arc<Instrument>,
    power_limit: Arc<Instrument>,
    energy: Arc<Instrument>,
    sm_clock: Arc<Instrument>,
    memory_clock: Arc<Instrument>,
    pcie: Arc<Instrument>,
    errors: Arc<Instrument>,
    process_memory: Arc<Instrument>,
    /// power, thermal, sw, hw.
    throttle: [Arc<Instrument>; 4],
}

impl Instruments {
    /// Ends every series of GPU `uuid`.
    fn forget(&self, uuid: &str) {
        let uuid = ValueRef::Str(uuid);
        let mut all = vec![
            &self.utilization,
            &self.memory_utilization,
            &self.memory_usage,
            &self.memory_free,
            &self.memory_limit,
            &self.temperature,
            &self.power,
            &self.power_limit,
            &self.energy,
            &self.sm_clock,
            &self.memory_clock,
            &self.pcie,
            &self.errors,
            &self.process_memory,
        ];
        all.extend(self.throttle.iter());
        for instrument in all {
            instrument.retain_series(|set: &AttributeSet| set.get("gpu.uuid") != Some(uuid));
        }
    }
}

/// Every GPU metric: name, unit, kind and description (the README lists the same).
pub const METRICS: [MetricSpec; 18] = {
    use InstrumentKind::ObservableUpDownCounter as UpDown;
    use InstrumentKind::{ObservableCounter as Counter, ObservableGauge as Gauge};
    [
        (
            "hw.gpu.utilization",
            "1",
            Gauge,
            "Fraction of time a kernel ran on the GPU (hw.gpu.task=general).",
        ),
        (
            "hw.gpu.memory.utilization",
            "1",
            Gauge,
            "Fraction of time device memory was read or written.",
        ),
        ("hw.gpu.memory.usage", "By", UpDown, "GPU memory in use."),
        ("hw.gpu.memory.free", "By", UpDown, "GPU memory free."),
        ("hw.gpu.memory.limit", "By", UpDown, "GPU memory installed."),
        ("hw.temperature", "Cel", Gauge, "GPU die temperature."),
        ("hw.power", "W", Gauge, "GPU power draw."),
        (
            "hw.gpu.power.limit",
            "W",
            Gauge,
            "Enforced GPU power limit.",
        ),
        (
            "hw.energy",
            "J",
            Counter,
            "Energy the GPU used since the driver loaded.",
        ),
        ("hw.gpu.clock.sm", "Hz", Gauge, "SM clock frequency."),
        (
            "hw.gpu.clock.memory",
            "Hz",
            Gauge,
            "Memory clock frequency.",
        ),
        (
            "hw.gpu.pcie.throughput",
            "By/s",
            Gauge,
            "PCIe throughput by network.io.direction.",
        ),
        (
            "hw.errors",
            "{error}",
            Counter,
            "ECC errors over the GPU's life, by error.type (corrected, uncorrected).",
        ),
        (
            "hw.gpu.process.memory.usage",
            "By",
            UpDown,
            "GPU memory used by one process (process.pid).",
        ),
        (
            "gpu.throttle.power_active",
            "",
            Gauge,
            "1 while clocks are held down for power reasons.",
        ),
        (
            "gpu.throttle.thermal_active",
            "",
            Gauge,
            "1 while clocks are held down for thermal reasons.",
        ),
        (
            "gpu.throttle.sw_active",
            "",
            Gauge,
            "1 while software holds clocks down.",
        ),
        (
            "gpu.throttle.hw_active",
            "",
            Gauge,
            "1 while hardware holds clocks down.",
        ),
    ]
};

impl Instruments {
    fn register(registry: &Registry) -> Result<Self, ConflictError> {
        let [
            utilization,
            memory_utilization,
            memory_usage,
            memory_free,
            memory_limit,
            temperature,
            power,
            power_limit,
            energy,
            sm_clock,
            memory_clock,
            pcie,
            errors,
            process_memory,
            power_throttle,
            thermal_throttle,
            sw_throttle,
            hw_throttle,
        ] = register(registry, &METRICS, GPU_SCOPE)?;
        Ok(Self {
            utilization,
            memory_utilization,
            memory_usage,
            memory_free,
            memory_limit,
            temperature,
            power,
            power_limit,
            energy,
            sm_clock,
            memory_clock,
            pcie,
            errors,
            process_memory,
            throttle: [power_throttle, thermal_throttle, sw_throttle, hw_throttle],
        })
    }
}

/// Polls the GPUs and records what it reads.
pub struct GpuPoller {
    connect: Connect,
    library: Option<Box<dyn GpuLibrary>>,
    instruments: Instruments,
    /// (GPU UUID, field) pairs found unsupported, logged once each.
    unsupported: HashSet<(String, Field)>,
    /// (GPU index or UUID, field) pairs whose last read failed, logged when they start failing.
    failing: HashSet<(String, Option<Field>)>,
    /// Whether the library is unavailable, logged when that starts.
    unavailable: bool,
    /// Which pod each GPU and GPU process belongs to, on Kubernetes.
    attribution: Option<Arc<Attribution>>,
    /// The owner each GPU's series were last recorded with.
    owners: HashMap<String, Option<Owner>>,
}

impl std::fmt::Debug for GpuPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuPoller").finish_non_exhaustive()
    }
}

impl GpuPoller {
    /// A poller recording into `registry`, opening the library with `connect`.
    pub fn new(registry: &Registry, connect: Connect) -> Result<Self, ConflictError> {
        Ok(Self {
            connect,
            library: None,
            instruments: Instruments::register(registry)?,
            unsupported: HashSet::new(),
            failing: HashSet::new(),
            unavailable: false,
            attribution: None,
            owners: HashMap::new(),
        })
    }

    /// Names, on every GPU series and per-process series, the pod and container that
    /// `attribution` says the GPU (or the process) belongs to.
    pub fn with_attribution(mut self, attribution: Arc<Attribution>) -> Self {
        self.attribution = Some(attribution);
        self
    }

    /// Reads every GPU once; returns how many were read.
    pub fn poll(&mut self) -> usize {
        let Some(mut library) = self.library.take().or_else(|| self.open()) else {
            return 0;
        };
        let count = match library.device_count() {
            Ok(count) => count,
            Err(e) => {
                tracing::warn!(error = %e, "NVML failed; it is initialised again at the next poll");
                return 0;
            }
        };
        let mut read = 0;
        for index in 0..count {
            match self.poll_device(library.as_mut(), index) {
                Ok(()) => read += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "NVML failed; it is initialised again at the next poll");
                    return read;
                }
            }
        }
        self.library = Some(library);
        read
    }

    /// Opens the library, saying once when it cannot be opened and once when it comes back.
    fn open(&mut self) -> Option<Box<dyn GpuLibrary>> {
        match (self.connect)() {
            Ok(library) => {
                if self.unavailable {
                    tracing::info!("NVML is available: GPU metrics are on");
                }
                self.unavailable = false;
                Some(library)
            }
            Err(e) => {
                if !self.unavailable {
                    tracing::info!(reason = %e, "no NVIDIA GPU or driver: GPU metrics are off until NVML loads");
                }
                self.unavailable = true;
                None
            }
        }
    }

    /// Reads and records every field of GPU `index`; a library failure ends the poll.
    fn poll_device(&mut self, library: &mut dyn GpuLibrary, index: u32) -> Result<(), GpuError> {
        let id = match library.identity(index) {
            Ok(id) => {
                self.recovered(&index.to_string(), None);
                id
            }
            Err(GpuError::Library(e)) => return Err(GpuError::Library(e)),
            Err(e) => {
                self.failed(&index.to_string(), None, &e);
                return Ok(());
            }
        };
        let base = [
            ("gpu.index", ValueRef::Int(i64::from(index))),
            ("gpu.name", ValueRef::Str(&id.name)),
            ("gpu.uuid", ValueRef::Str(&id.uuid)),
            ("hw.id", ValueRef::Str(&id.uuid)),
            ("hw.type", ValueRef::Str("gpu")),
        ];
        let owner = self.attribution.as_ref().and_then(|a| a.owner(&id.uuid));
        if self.owners.get(&id.uuid) != Some(&owner) {
            // Its series under the previous owner end: the GPU changed hands.
            self.instruments.forget(&id.uuid);
            self.owners.insert(id.uuid.clone(), owner.clone());
        }
        for field in FIELDS {
            match library.read(index, field) {
                Ok(reading) => {
                    self.recovered(&id.uuid, Some(field));
                    self.record(&base, owner.as_ref(), field, reading);
                }
                Err(GpuError::NotSupported) => {
                    if self.unsupported.insert((id.uuid.clone(), field)) {
                        tracing::info!(gpu = %id.uuid, field = ?field, "not supported by this GPU; skipped");
                    }
                }
                Err(GpuError::Library(e)) => return Err(GpuError::Library(e)),
                Err(e) => self.failed(&id.uuid, Some(field), &e),
            }
        }
        Ok(())
    }

    fn failed(&mut self, gpu: &str, field: Option<Field>, e: &GpuError) {
        if self.failing.insert((gpu.to_owned(), field)) {
            tracing::warn!(gpu = %gpu, field = ?field, error = %e, "reading the GPU failed; the other GPUs are read on");
        }
    }

    fn recovered(&mut self, gpu: &str, field: Option<Field>) {
        if self.failing.remove(&(gpu.to_owned(), field)) {
            tracing::info!(gpu = %gpu, field = ?field, "reading the GPU works again");
        }
    }

    /// Records one reading of `field` for the GPU whose attributes are `gpu`, allocated to
    /// `owner` if to anyone.
    fn record(
        &self,
        gpu: &[(&str, ValueRef<'_>)],
        owner: Option<&Owner>,
        field: Field,
        reading: Reading,
    ) {
        let owned = owner.map(Owner::attributes);
        let mut base: Vec<(&str, ValueRef<'_>)> = gpu.to_vec();
        base.extend(owned.iter().flatten().map(|(k, v)| (*k, ValueRef::Str(v))));
        let base = &base[..];
        let i = &self.instruments;
        let with = |extra: (&'static str, ValueRef<'_>), instrument: &Instrument, v: f64| {
            let mut attrs: Vec<(&str, ValueRef<'_>)> = base.to_vec();
            attrs.push(extra);
            attrs.sort_by(|a, b| a.0.cmp(b.0));
            instrument.record(&attrs, v);
        };
        let (receive, transmit) = (ValueRef::Str("receive"), ValueRef::Str("transmit"));
        match reading {
            Reading::Utilization { gpu, memory } => {
                let general = ("hw.gpu.task", ValueRef::Str("general"));
                with(general, &i.utilization, f64::from(gpu) / 100.0);
                i.memory_utilization.record(base, f64::from(memory) / 100.0);
            }
            Reading::Memory { used, free, total } => {
                i.memory_usage.record(base, used as f64);
                i.memory_free.record(base, free as f64);
                i.memory_limit.record(base, total as f64);
            }
            Reading::Processes(processes) => {
                for (pid, bytes) in &processes {
                    // A process in a pod carries its container and pod, and the GPU's owner
                    // names; a host process on the same GPU carries neither.
                    let placed = self
                        .attribution
                        .as_ref()
                        .map(|a| a.process(*pid))
                        .unwrap_or_default();
                    let mut attrs: Vec<(&str, ValueRef<'_>)> = gpu.to_vec();
                    if placed.pod_uid.is_some() {
                        attrs.extend(owned.iter().flatten().map(|(k, v)| (*k, ValueRef::Str(v))));
                    }
                    if let Some(id) = &placed.container_id {
                        attrs.push(("container.id", ValueRef::Str(id)));
                    }
                    if let Some(uid) = &placed.pod_uid {
                        attrs.push(("k8s.pod.uid", ValueRef::Str(uid)));
                    }
                    attrs.push(("process.pid", ValueRef::Int(i64::from(*pid))));
                    attrs.sort_by(|a, b| a.0.cmp(b.0));
                    i.process_memory.record(&attrs, *bytes as f64);
                }
                // A process that ended has no series any more.
                let uuid = base.iter().find(|(k, _)| *k == "gpu.uuid").map(|(_, v)| *v);
                i.process_memory.retain_series(|set: &AttributeSet| {
                    set.get("gpu.uuid") != uuid
                        || processes.iter().any(|(pid, _)| {
                            set.get("process.pid") == Some(ValueRef::Int(i64::from(*pid)))
                        })
                });
            }
            Reading::Throttle(bits) => {
                for (instrument, on) in i.throttle.iter().zip(throttle_kinds(bits)) {
                    instrument.record(base, f64::from(u8::from(on)));
                }
            }
            Reading::Value(v) => match field {
                Field::Temperature => i.temperature.record(base, v),
                Field::Power => i.power.record(base, v),
                Field::PowerLimit => i.power_limit.record(base, v),
                Field::Energy => i.energy.record(base, v),
                Field::SmClock => i.sm_clock.record(base, v),
                Field::MemoryClock => i.memory_clock.record(base, v),
                Field::PcieReceive => with(("network.io.direction", receive), &i.pcie, v),
                Field::PcieTransmit => with(("network.io.direction", transmit), &i.pcie, v),
                Field::EccCorrected => {
                    with(("error.type", ValueRef::Str("corrected")), &i.errors, v)
                }
                Field::EccUncorrected => {
                    with(("error.type", ValueRef::Str("uncorrected")), &i.errors, v);
                }
                // These fields have their own reading shapes, handled above.
                Field::Utilization | Field::Memory | Field::Processes | Field::Throttle => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::fake::{FakeDevice, Script, connect};
    use super::*;
    use crate::metrics::Storage;

    #[test]
    fn throttle_reasons_map_as_the_table_says() {
        let cases: [(u64, [bool; 4]); 12] = [
            (0x1, [false, false, false, false]),  // GpuIdle is not a throttle
            (0x2, [false, false, true, false]),   // ApplicationsClocksSetting
            (0x4, [true, false, true, false]),    // SwPowerCap
            (0x8, [false, false, false, true]),   // HwSlowdown
            (0x10, [false, false, true, false]),  // SyncBoost
            (0x20, [false, true, true, false]),   // SwThermalSlowdown
            (0x40, [false, true, false, true]),   // HwThermalSlowdown
            (0x80, [true, false, false, true]),   // HwPowerBrakeSlowdown
            (0x100, [false, false, true, false]), // DisplayClockSetting
            (0x200, [false, false, false, true]), // unknown → hw
            (0x1 | 0x4 | 0x40, [true, true, true, true]),
            (0, [false; 4]),
        ];
        for (bits, want) in cases {
            assert_eq!(throttle_kinds(bits), want, "{bits:#x}");
        }
    }

    fn gpu(uuid: &str, fields: Vec<(Field, Result<Reading, GpuError>)>) -> FakeDevice {
        FakeDevice {
            identity: Ok(Identity {
                uuid: uuid.into(),
                name: "NVIDIA H100 80GB HBM3".into(),
            }),
            fields: fields.into_iter().collect::<HashMap<_, _>>(),
        }
    }

    fn full(uuid: &str) -> FakeDevice {
        gpu(
            uuid,
            vec![
                (
                    Field::Utilization,
                    Ok(Reading::Utilization {
                        gpu: 87,
                        memory: 40,
                    }),
                ),
                (
                    Field::Memory,
                    Ok(Reading::Memory {
                        used: 30,
                        free: 50,
                        total: 80,
                    }),
                ),
                (Field::Temperature, Ok(Reading::Value(61.0))),
                (Field::Power, Ok(Reading::Value(312.5))),
                (Field::PowerLimit, Ok(Reading::Value(700.0))),
                (Field::Energy, Ok(Reading::Value(123_456.789))),
                (Field::SmClock, Ok(Reading::Value(1.98e9))),
                (Field::MemoryClock, Ok(Reading::Value(2.619e9))),
                (Field::PcieReceive, Ok(Reading::Value(1024.0))),
                (Field::PcieTransmit, Ok(Reading::Value(2048.0))),
                (Field::EccCorrected, Ok(Reading::Value(3.0))),
                (Field::EccUncorrected, Ok(Reading::Value(0.0))),
                (
                    Field::Processes,
                    Ok(Reading::Processes(vec![(4242, 1 << 30), (7, 512)])),
                ),
                (Field::Throttle, Ok(Reading::Throttle(0x4))),
            ],
        )
    }

    /// `name` → (attributes other than the GPU's own, rendered `k=v`, sorted) → value.
    fn readings(registry: &Registry, name: &str) -> Vec<(String, String, f64)> {
        let instrument = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == name)
            .expect("registered");
        let mut out = Vec::new();
        let mut visit = |attrs: &AttributeSet, v: f64| {
            let uuid = attrs
                .get("gpu.uuid")
                .map(|v| v.to_string())
                .unwrap_or_default();
            let rest: Vec<String> = attrs
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        *k,
                        "gpu.index" | "gpu.name" | "gpu.uuid" | "hw.id" | "hw.type"
                    )
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push((uuid, rest.join(","), v));
        };
        match instrument.storage() {
            Storage::Sum(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            Storage::LastValue(t) => t.for_each(|s| visit(&s.attributes, s.aggregator.value())),
            _ => panic!("not a number"),
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    fn poller(script: &Arc<Mutex<Script>>) -> (Registry, GpuPoller) {
        let registry = Registry::new(100);
        let poller = GpuPoller::new(&registry, connect(script)).expect("instruments");
        (registry, poller)
    }

    #[test]
    fn every_field_becomes_its_metric_in_its_unit() {
        let script = Arc::new(Mutex::new(Script {
            devices: vec![full("GPU-a")],
            ..Script::default()
        }));
        let (registry, mut p) = poller(&script);
        assert_eq!(p.poll(), 1);
        let one = |name: &str| readings(&registry, name);
        let a = |rest: &str, v: f64| ("GPU-a".to_owned(), rest.to_owned(), v);
        assert_eq!(one("hw.gpu.utilization"), [a("hw.gpu.task=general", 0.87)]);
        assert_eq!(one("hw.gpu.memory.utilization"), [a("", 0.4)]);
        assert_eq!(one("hw.gpu.memory.usage"), [a("", 30.0)]);
        assert_eq!(one("hw.gpu.memory.free"), [a("", 50.0)]);
        assert_eq!(one("hw.gpu.memory.limit"), [a("", 80.0)]);
        assert_eq!(one("hw.temperature"), [a("", 61.0)]);
        assert_eq!(one("hw.power"), [a("", 312.5)]);
        assert_eq!(one("hw.gpu.power.limit"), [a("", 700.0)]);
        assert_eq!(one("hw.energy"), [a("", 123_456.789)]);
        assert_eq!(one("hw.gpu.clock.sm"), [a("", 1.98e9)]);
        assert_eq!(one("hw.gpu.clock.memory"), [a("", 2.619e9)]);
        assert_eq!(
            one("hw.gpu.pcie.throughput"),
            [
                a("network.io.direction=receive", 1024.0),
                a("network.io.direction=transmit", 2048.0)
            ]
        );
        assert_eq!(
            one("hw.errors"),
            [
                a("error.type=corrected", 3.0),
                a("error.type=uncorrected", 0.0)
            ]
        );
        assert_eq!(
            one("hw.gpu.process.memory.usage"),
            [
                a("process.pid=4242", 1073741824.0),
                a("process.pid=7", 512.0)
            ]
        );
        let throttles: Vec<f64> = ["power", "thermal", "sw", "hw"]
            .map(|k| one(&format!("gpu.throttle.{k}_active"))[0].2)
            .to_vec();
        assert_eq!(throttles, [1.0, 0.0, 1.0, 0.0], "SwPowerCap: power and sw");
        // The GPU's own attributes, as the semantic conventions and the issue name them.
        let instrument = registry
            .instruments()
            .into_iter()
            .find(|i| i.descriptor().name == "hw.power")
            .expect("power");
        let Storage::LastValue(t) = instrument.storage() else {
            panic!("gauge")
        };
        t.for_each(|s| {
            let attrs: Vec<String> = s
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            assert_eq!(
                attrs,
                [
                    "gpu.index=0",
                    "gpu.name=NVIDIA H100 80GB HBM3",
                    "gpu.uuid=GPU-a",
                    "hw.id=GPU-a",
                    "hw.type=gpu"
                ]
            );
        });
        assert_eq!(&*instrument.descriptor().scope.name, GPU_SCOPE);
    }

    #[test]
    fn an_ended_process_loses_its_series_on_that_gpu_only() {
        let script = Arc::new(Mutex::new(Script {
            devices: vec![full("GPU-a"), full("GPU-b")],
            ..Script::default()
        }));
        let (registry, mut p) = poller(&script);
        p.poll();
        script.lock().expect("script").devices[0]
            .fields
            .insert(Field::Processes, Ok(Reading::Processes(vec![(7, 1024)])));
        p.poll();
        let pids: Vec<(String, String, f64)> = readings(&registry, "hw.gpu.process.memory.usage");
        let a = |uuid: &str, rest: &str, v: f64| (uuid.to_owned(), rest.to_owned(), v);
        assert_eq!(
            pids,
            [
                a("GPU-a", "process.pid=7", 1024.0),
                a("GPU-b", "process.pid=4242", 1073741824.0),
                a("GPU-b", "process.pid=7", 512.0),
            ]
        );
    }

    #[test]
    fn unsupported_fields_and_failing_devices_do_not_stop_the_rest() {
        let script = Arc::new(Mutex::new(Script {
            devices: vec![
                gpu(
                    "GPU-old",
                    vec![
                        (Field::Temperature, Ok(Reading::Value(50.0))),
                        (Field::Power, Err(GpuError::Device("Unknown Error".into()))),
                    ],
                ),
                FakeDevice {
                    identity: Err(GpuError::Device("GPU is lost".into())),
                    fields: HashMap::new(),
                },
                full("GPU-new"),
            ],
            ..Script::default()
        }));
        let (registry, mut p) = poller(&script);
        let (lines, ()) = capture(|| {
            for _ in 0..3 {
                assert_eq!(p.poll(), 3, "every device polled, failing or not");
            }
        });
        assert_eq!(
            readings(&registry, "hw.temperature").len(),
            2,
            "GPU-old and GPU-new"
        );
        assert_eq!(readings(&registry, "hw.power").len(), 1, "only GPU-new");
        let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        // 12 fields GPU-old does not have, each said once over three polls.
        assert_eq!(count("not supported by this GPU"), 12, "{lines:#?}");
        assert_eq!(
            count("reading the GPU failed"),
            2,
            "the power read and the lost GPU, once each"
        );
        assert_eq!(script.lock().expect("script").connects, 1);
    }

    #[test]
    fn no_library_is_said_once_and_a_failed_library_is_opened_again() {
        let script = Arc::new(Mutex::new(Script {
            connect_error: Some("libnvidia-ml.so.1: cannot open shared object file".into()),
            devices: vec![full("GPU-a")],
            ..Script::default()
        }));
        let (registry, mut p) = poller(&script);
        let (lines, ()) = capture(|| {
            assert_eq!((p.poll(), p.poll()), (0, 0));
        });
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("no NVIDIA GPU or driver"))
                .count(),
            1,
            "{lines:#?}"
        );
        assert!(readings(&registry, "hw.power").is_empty());
        script.lock().expect("script").connect_error = None;
        assert_eq!(p.poll(), 1, "the driver appeared");
        script.lock().expect("script").count_error =
            Some(GpuError::Library("Uninitialized".into()));
        assert_eq!(p.poll(), 0);
        script.lock().expect("script").count_error = None;
        assert_eq!(p.poll(), 1);
        assert_eq!(
            script.lock().expect("script").connects,
            4,
            "two refused, the first, and one after the failure"
        );
        assert_eq!(readings(&registry, "hw.power").len(), 1);
    }

    /// Log lines written while `f` runs on this thread.
    fn capture<T>(f: impl FnOnce() -> T) -> (Vec<String>, T) {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lines").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        (text.lines().map(str::to_owned).collect(), out)
    }

    /// The kubelet's PodResources `v1` messages as the kubelet writes them, fields attribution
    /// does not read included (written here from the kubelet's `api.proto`).
    mod kubelet {
        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct ListPodResourcesResponse {
            #[prost(message, repeated, tag = "1")]
            pub(super) pod_resources: Vec<PodResources>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct PodResources {
            #[prost(string, tag = "1")]
            pub(super) name: String,
            #[prost(string, tag = "2")]
            pub(super) namespace: String,
            #[prost(message, repeated, tag = "3")]
            pub(super) containers: Vec<ContainerResources>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct ContainerResources {
            #[prost(string, tag = "1")]
            pub(super) name: String,
            #[prost(message, repeated, tag = "2")]
            pub(super) devices: Vec<ContainerDevices>,
            #[prost(int64, repeated, tag = "3")]
            pub(super) cpu_ids: Vec<i64>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct ContainerDevices {
            #[prost(string, tag = "1")]
            pub(super) resource_name: String,
            #[prost(string, repeated, tag = "2")]
            pub(super) device_ids: Vec<String>,
            #[prost(message, optional, tag = "3")]
            pub(super) topology: Option<TopologyInfo>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct TopologyInfo {
            #[prost(message, repeated, tag = "1")]
            pub(super) nodes: Vec<NumaNode>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct NumaNode {
            #[prost(int64, tag = "1")]
            pub(super) id: i64,
        }
    }

    /// The kubelet's answer: `pod` in `namespace` has container `container` holding `gpus`.
    fn allocation(pod: &str, container: &str, gpus: &[&str]) -> kubelet::ListPodResourcesResponse {
        use kubelet::*;
        ListPodResourcesResponse {
            pod_resources: vec![PodResources {
                name: pod.into(),
                namespace: "inference".into(),
                containers: vec![ContainerResources {
                    name: container.into(),
                    devices: vec![ContainerDevices {
                        resource_name: "nvidia.com/gpu".into(),
                        device_ids: gpus.iter().map(|g| (*g).to_owned()).collect(),
                        topology: Some(TopologyInfo {
                            nodes: vec![NumaNode { id: 0 }],
                        }),
                    }],
                    cpu_ids: vec![2, 3],
                }],
            }],
        }
    }

    /// A fake kubelet: the PodResources `List` method on a unix socket, answering what `answer`
    /// holds at each call.
    #[derive(Clone)]
    struct Kubelet(Arc<Mutex<kubelet::ListPodResourcesResponse>>);

    impl tonic::server::UnaryService<bytes::Bytes> for Kubelet {
        type Response = bytes::Bytes;
        type Future = std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<tonic::Response<bytes::Bytes>, tonic::Status>,
                    > + Send,
            >,
        >;

        fn call(&mut self, _: tonic::Request<bytes::Bytes>) -> Self::Future {
            let answer = prost::Message::encode_to_vec(&*self.0.lock().expect("answer"));
            Box::pin(async move { Ok(tonic::Response::new(answer.into())) })
        }
    }

    impl tower_service::Service<tonic::codegen::http::Request<tonic::body::Body>> for Kubelet {
        type Response = tonic::codegen::http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
        >;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(
            &mut self,
            request: tonic::codegen::http::Request<tonic::body::Body>,
        ) -> Self::Future {
            assert_eq!(request.uri().path(), "/v1.PodResourcesLister/List");
            let service = self.clone();
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(crate::grpc::Raw);
                Ok(grpc.unary(service, request).await)
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gpu_and_process_series_name_the_pod_the_kubelet_allocated_the_gpu_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("kubelet.sock");
        let answer = Arc::new(Mutex::new(allocation("ranker-0", "server", &["GPU-a"])));
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
            Kubelet(answer.clone()),
            tokio_stream::wrappers::UnixListenerStream::new(listener),
        ));
        // The host's /proc: pid 4242 runs in the pod (containerd, cgroup v2), pid 7 on the host.
        let proc_root = dir.path().join("proc");
        let uid = "7a9c1e3f-5b7d-4e9f-8a1c-3e5f7a9b1c3d";
        let id = "3f1c7e5d9a0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d0e2f4a6b8c0d";
        for (pid, cgroup) in [
            (
                "4242",
                format!(
                    "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope\n",
                    uid.replace('-', "_")
                ),
            ),
            ("7", "0::/system.slice/Xorg.service\n".to_owned()),
        ] {
            std::fs::create_dir_all(proc_root.join(pid)).expect("mkdir");
            std::fs::write(proc_root.join(pid).join("cgroup"), cgroup).expect("cgroup");
        }
        let attribution = Attribution::new(socket, proc_root);
        attribution.refresh().await;

        let script = Arc::new(Mutex::new(Script {
            devices: vec![full("GPU-a"), full("GPU-b")],
            ..Script::default()
        }));
        let (registry, p) = poller(&script);
        let mut p = p.with_attribution(attribution.clone());
        let poll = |p: &mut GpuPoller| p.poll();
        poll(&mut p);
        let owned = "k8s.container.name=server,k8s.namespace.name=inference,k8s.pod.name=ranker-0";
        let row = |uuid: &str, rest: &str, v: f64| (uuid.to_owned(), rest.to_owned(), v);
        assert_eq!(
            readings(&registry, "hw.gpu.memory.usage"),
            [row("GPU-a", owned, 30.0), row("GPU-b", "", 30.0)]
        );
        let in_pod = format!("container.id={id},{owned},k8s.pod.uid={uid},process.pid=4242");
        assert_eq!(
            readings(&registry, "hw.gpu.process.memory.usage"),
            [
                row("GPU-a", &in_pod, 1073741824.0),
                row("GPU-a", "process.pid=7", 512.0),
                row(
                    "GPU-b",
                    &format!("container.id={id},k8s.pod.uid={uid},process.pid=4242"),
                    1073741824.0
                ),
                row("GPU-b", "process.pid=7", 512.0),
            ],
            "a host process on the pod's GPU is not the pod's; on GPU-b, no pod's, the pod's \
             process keeps its cgroup's container and pod but no names"
        );

        // The GPU changes hands: its series under the old pod end.
        *answer.lock().expect("answer") = allocation("ranker-1", "server", &["GPU-a"]);
        attribution.refresh().await;
        poll(&mut p);
        let memory = readings(&registry, "hw.gpu.memory.usage");
        assert_eq!(
            memory,
            [
                row("GPU-a", &owned.replace("ranker-0", "ranker-1"), 30.0),
                row("GPU-b", "", 30.0)
            ]
        );

        // No kubelet socket: no attribution, and the series carry no pod.
        let gone = Attribution::new(dir.path().join("absent.sock"), dir.path().join("proc"));
        gone.refresh().await;
        assert_eq!(gone.owner("GPU-a"), None);
    }
}
