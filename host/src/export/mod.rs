//! Export: Prometheus exposition, OTLP encoding and push, and the queues between them and intake.

pub mod delivery;
pub mod otlp;
pub mod plugin;
pub mod preset;
pub mod probe;
pub mod prometheus;
pub mod queue;
