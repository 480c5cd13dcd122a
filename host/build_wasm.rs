//! Shared by the build scripts of `host/` and `tests/`: compiles a wasm workspace to components.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/wasm` beside the workspace's target directory.
pub(crate) fn wasm_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("wasm")
}

/// Runs `cargo build --release --target wasm32-wasip2` on a wasm workspace.
pub(crate) fn build_components(manifest: &Path, target: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target);
    // The outer build's flags and wrappers (clippy, coverage) are not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cargo runs");
    assert!(
        status.success(),
        "building the plugins in {} failed",
        manifest.display()
    );
}
