//! Sources: what the host measures by itself, polled on an interval (GPUs through NVML).

pub mod gpu;
