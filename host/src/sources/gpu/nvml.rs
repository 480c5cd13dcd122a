//! The GPUs through NVML (`libnvidia-ml.so.1`, loaded at run time by nvml-wrapper).

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use super::{Field, GpuError, GpuLibrary, Identity, Reading};

/// The NVML library file the host loads by default.
pub const LIBRARY: &str = "libnvidia-ml.so.1";

/// Opens NVML from `library` (a file name or path).
pub fn connect(library: &str) -> Result<Box<dyn GpuLibrary>, GpuError> {
    Nvml::builder()
        .lib_path(OsStr::new(library))
        .init()
        .map(|nvml| Box::new(NvmlGpus(nvml)) as Box<dyn GpuLibrary>)
        .map_err(|e| GpuError::Library(format!("{library}: {e}")))
}

/// The GPUs NVML sees.
struct NvmlGpus(Nvml);

/// Sorts NVML's errors into the poller's three kinds.
fn error(e: NvmlError) -> GpuError {
    match e {
        NvmlError::NotSupported => GpuError::NotSupported,
        NvmlError::Uninitialized
        | NvmlError::DriverNotLoaded
        | NvmlError::LibraryNotFound
        | NvmlError::LibloadingError(_)
        | NvmlError::FailedToLoadSymbol(_)
        | NvmlError::Unknown => GpuError::Library(e.to_string()),
        other => GpuError::Device(other.to_string()),
    }
}

impl GpuLibrary for NvmlGpus {
    fn device_count(&mut self) -> Result<u32, GpuError> {
        self.0.device_count().map_err(error)
    }

    fn identity(&mut self, index: u32) -> Result<Identity, GpuError> {
        let device = self.0.device_by_index(index).map_err(error)?;
        Ok(Identity {
            uuid: device.uuid().map_err(error)?,
            name: device.name().map_err(error)?,
        })
    }

    fn read(&mut self, index: u32, field: Field) -> Result<Reading, GpuError> {
        let d = self.0.device_by_index(index).map_err(error)?;
        let value = |v: Result<f64, NvmlError>| v.map(Reading::Value).map_err(error);
        match field {
            Field::Utilization => d
                .utilization_rates()
                .map(|u| Reading::Utilization {
                    gpu: u.gpu,
                    memory: u.memory,
                })
                .map_err(error),
            Field::Memory => d
                .memory_info()
                .map(|m| Reading::Memory {
                    used: m.used,
                    free: m.free,
                    total: m.total,
                })
                .map_err(error),
            Field::Temperature => value(d.temperature(TemperatureSensor::Gpu).map(f64::from)),
            // Milliwatts, millijoules and megahertz from NVML.
            Field::Power => value(d.power_usage().map(|mw| f64::from(mw) / 1e3)),
            Field::PowerLimit => value(d.enforced_power_limit().map(|mw| f64::from(mw) / 1e3)),
            Field::Energy => value(d.total_energy_consumption().map(|mj| mj as f64 / 1e3)),
            Field::SmClock => value(d.clock_info(Clock::SM).map(|mhz| f64::from(mhz) * 1e6)),
            Field::MemoryClock => {
                value(d.clock_info(Clock::Memory).map(|mhz| f64::from(mhz) * 1e6))
            }
            // Kilobytes per second from NVML.
            Field::PcieReceive => value(
                d.pcie_throughput(PcieUtilCounter::Receive)
                    .map(|kb| f64::from(kb) * 1024.0),
            ),
            Field::PcieTransmit => value(
                d.pcie_throughput(PcieUtilCounter::Send)
                    .map(|kb| f64::from(kb) * 1024.0),
            ),
            Field::EccCorrected => value(
                d.total_ecc_errors(MemoryError::Corrected, EccCounter::Aggregate)
                    .map(|n| n as f64),
            ),
            Field::EccUncorrected => value(
                d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate)
                    .map(|n| n as f64),
            ),
            Field::Processes => {
                let mut processes: Vec<(u32, u64)> = Vec::new();
                let compute = d.running_compute_processes().map_err(error)?;
                let graphics = d.running_graphics_processes().unwrap_or_default();
                for p in compute.into_iter().chain(graphics) {
                    let UsedGpuMemory::Used(bytes) = p.used_gpu_memory else {
                        continue;
                    };
                    match processes.iter_mut().find(|(pid, _)| *pid == p.pid) {
                        Some((_, seen)) => *seen = (*seen).max(bytes),
                        None => processes.push((p.pid, bytes)),
                    }
                }
                Ok(Reading::Processes(processes))
            }
            Field::Throttle => d
                .current_throttle_reasons()
                .map(|r| Reading::Throttle(r.bits()))
                .map_err(error),
        }
    }
}
