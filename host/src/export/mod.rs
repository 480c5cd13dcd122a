//! Export: every integration — native OTLP or an exporter plugin, configured or stored — built
//! from one spec by one builder and delivered by one engine; plus the Prometheus exposition.

pub mod delivery;
pub mod exporter;
pub mod otlp;
pub mod plugin;
pub mod preset;
pub mod probe;
pub mod prometheus;
pub mod spec;
pub mod transport;
