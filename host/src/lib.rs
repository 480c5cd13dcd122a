//! wasmtel: a telemetry host for inference and GPU machines.
//!
//! Events arrive over HTTP ([`intake`]), derivation rules ([`derive`]) turn
//! them into measurements, the aggregation engine ([`metrics`]) keeps the
//! series, and exporters ([`export`]) serve Prometheus and push OTLP.

pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod derive;
pub mod export;
pub mod grpc;
pub mod host;
pub mod intake;
pub mod load;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plugins;
pub(crate) mod pool;
pub mod redact;
pub mod scaffold;
pub mod server;
pub mod sources;
pub mod telemetry;
pub mod tenancy;
pub mod ticker;
pub mod trial;

pub use config::Config;
pub use host::Host;
