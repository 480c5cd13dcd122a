//! Builds the test fixture plugins in `tests/fixtures/` and `examples/hello-exporter` as WebAssembly components.
//!
//! Each fixture's path is handed to the tests as `WASMTEL_FIXTURE_<NAME>`.

#[path = "../host/build_wasm.rs"]
mod build_wasm;

use std::path::PathBuf;

const FIXTURES: &[&str] = &[
    "spin",
    "hog",
    "escape",
    "passthrough",
    "loglines",
    "tagger",
    "rogue",
    "rogue_view",
    "rogue_transform",
    "contract_0_2_0",
];

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf();
    let fixtures = manifest.join("fixtures");
    println!(
        "cargo:rerun-if-changed={}",
        fixtures.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        fixtures.join("nap.rs").display()
    );
    for f in FIXTURES {
        println!(
            "cargo:rerun-if-changed={}",
            fixtures.join(f).join("src").display()
        );
    }
    let target = build_wasm::wasm_target_dir(&root);
    build_wasm::build_components(&fixtures.join("Cargo.toml"), &target);
    let example = root.join("examples/hello-exporter");
    println!("cargo:rerun-if-changed={}", example.join("src").display());
    build_wasm::build_components(&example.join("Cargo.toml"), &target);
    for f in FIXTURES.iter().chain(&["hello_exporter"]) {
        let wasm = target
            .join("wasm32-wasip2/release")
            .join(format!("{f}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!(
            "cargo:rustc-env=WASMTEL_FIXTURE_{}={}",
            f.to_uppercase(),
            wasm.display()
        );
    }
}
