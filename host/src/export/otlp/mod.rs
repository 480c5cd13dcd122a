//! OTLP encoders: metrics straight from the engine's series into protobuf, and log records.

pub mod logs;
pub mod metrics;
pub mod wire;
