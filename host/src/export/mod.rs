//! Export: every integration — native OTLP or an exporter plugin, configured or stored — built
//! from one spec by one builder and delivered by one engine; plus the Prometheus exposition.

pub mod delivery;
pub mod exporter;
pub mod otlp;
pub mod plugin;
pub mod preset;
pub mod probe;
pub mod prometheus;
pub mod selection;
pub mod spec;
pub mod transport;

/// `data` gzipped at level 1: several times cheaper than the default level, for most of its
/// gain on telemetry (exposition text, OTLP protobuf).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}
