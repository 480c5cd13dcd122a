//! Builds the first-party plugins in `guests/` as WebAssembly components, for embedding.
//!
//! Each `guests/<name>` crate is compiled for `wasm32-wasip2` (the toolchain
//! file installs the target) into `target/wasm`, and its path is handed to
//! the crate as `WASMTEL_GUEST_<NAME>` for `include_bytes!`.

mod build_wasm;

use std::path::PathBuf;

use build_wasm::{build_components, wasm_target_dir};

/// The first-party plugins, embedded in the binary.
const GUESTS: &[&str] = &[
    "datadog",
    "drop-attributes",
    "prometheus-remote-write",
    "redact",
    "statsd",
];

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    let guests = root.join("guests");
    let mut inputs = vec![
        guests.join("Cargo.toml"),
        root.join("wit"),
        root.join("sdk-guest/src"),
        root.join("sdk-guest/macro/src"),
        root.join("sdk-guest/naming/src"),
    ];
    inputs.extend(GUESTS.iter().flat_map(|g| {
        [
            guests.join(g).join("src"),
            guests.join(g).join("Cargo.toml"),
        ]
    }));
    for input in inputs {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    let target = wasm_target_dir(&root);
    build_components(&guests.join("Cargo.toml"), &target);
    for name in GUESTS {
        let wasm = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!(
            "cargo:rustc-env=WASMTEL_GUEST_{}={}",
            name.to_uppercase().replace('-', "_"),
            wasm.display()
        );
    }
}
