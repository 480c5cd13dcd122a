//! The one `bindgen!` of the host: Rust types and call stubs for the plugin contract in `wit/`, through the host's world in `host/wit/`.
//!
//! Everything generated stays in the private `generated` module; the rest of
//! the host uses the re-exports below.

#[allow(missing_docs, unreachable_pub, unsafe_code, clippy::all)]
mod generated {
    wasmtime::component::bindgen!({
        path: ["../wit", "wit"],
        world: "wasmtel:host/plugin-host",
    });
}

pub use generated::exports::wasmtel::plugin::encoder;
pub use generated::exports::wasmtel::plugin::key_reader;
pub use generated::exports::wasmtel::plugin::reader;
pub use generated::exports::wasmtel::plugin::span_encoder;
pub use generated::exports::wasmtel::plugin::span_transformer;
pub use generated::exports::wasmtel::plugin::transformer;
pub use generated::exports::wasmtel::plugin::viewer;
pub use generated::wasmtel::plugin::host;
pub use generated::wasmtel::plugin::types;
