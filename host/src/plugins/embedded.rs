//! The first-party plugins built from `guests/` and embedded in the binary.

/// Name and component bytes of every embedded plugin.
pub const PLUGINS: &[(&str, &[u8])] = &[
    ("datadog", include_bytes!(env!("WASMTEL_GUEST_DATADOG"))),
    (
        "drop-attributes",
        include_bytes!(env!("WASMTEL_GUEST_DROP_ATTRIBUTES")),
    ),
    (
        "prometheus-remote-write",
        include_bytes!(env!("WASMTEL_GUEST_PROMETHEUS_REMOTE_WRITE")),
    ),
    ("redact", include_bytes!(env!("WASMTEL_GUEST_REDACT"))),
    ("statsd", include_bytes!(env!("WASMTEL_GUEST_STATSD"))),
];

/// The embedded plugin named `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
