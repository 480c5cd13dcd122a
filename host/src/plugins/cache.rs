//! The compiled-artefact cache: precompiled components on disk, keyed by content hash,
//! so that a restart does not recompile.
//!
//! This is the one reviewed module of the host that uses `unsafe`:
//! [`Component::deserialize_file`] trusts its input to be wasmtime's own
//! output for this engine configuration. That holds because every file here
//! is written by [`compile`] itself, under a name that is the SHA-256 of the
//! source bytes and the engine's compatibility hash, into a directory the
//! host creates with mode 0700; a file that does not deserialize is deleted
//! and recompiled. Anyone able to write to that directory can already run
//! code as the host user.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::runtime::{Runtime, RuntimeError};

/// The SHA-256 of a component's bytes, in hex.
pub fn digest(bytes: &[u8]) -> String {
    const_hex::encode(Sha256::digest(bytes))
}

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Deserialized from a cache file.
    Cache,
    /// Compiled from the bytes.
    Compiled,
}

/// Compiles `bytes`, reusing and filling the cache in `dir` when one is given.
pub fn compile(
    runtime: &Runtime,
    bytes: &[u8],
    dir: Option<&Path>,
) -> Result<(Component, Source), RuntimeError> {
    let Some(dir) = dir else {
        return runtime.compile(bytes).map(|c| (c, Source::Compiled));
    };
    let path = entry(runtime, bytes, dir);
    if path.exists() {
        match load(runtime, &path) {
            Ok(component) => return Ok((component, Source::Cache)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding an unreadable cache entry: {e:#}");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let compiled = runtime
        .engine()
        .precompile_component(bytes)
        .map_err(|e| RuntimeError(format!("not a valid component: {e:#}")))?;
    if let Err(e) = store(dir, &path, &compiled) {
        tracing::warn!(dir = %dir.display(), "cannot write the plugin cache: {e}");
    }
    load_bytes(runtime, &compiled).map(|c| (c, Source::Compiled))
}

/// The cache file for `bytes`: content hash plus engine compatibility hash.
fn entry(runtime: &Runtime, bytes: &[u8], dir: &Path) -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    std::hash::Hash::hash(
        &runtime.engine().precompile_compatibility_hash(),
        &mut HashInto(&mut hasher),
    );
    dir.join(format!("{}.cwasm", const_hex::encode(hasher.finalize())))
}

/// Feeds `std::hash::Hash` output into a SHA-256.
struct HashInto<'a>(&'a mut Sha256);

impl std::hash::Hasher for HashInto<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn store(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(compiled)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[allow(unsafe_code)]
fn load(runtime: &Runtime, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `path` is a file this module wrote with `precompile_component` for an
    // engine with the same compatibility hash (it is part of the name); see the module docs.
    unsafe { Component::deserialize_file(runtime.engine(), path) }
}

#[allow(unsafe_code)]
fn load_bytes(runtime: &Runtime, compiled: &[u8]) -> Result<Component, RuntimeError> {
    // SAFETY: `compiled` was produced by `precompile_component` on this very engine just now.
    unsafe { Component::deserialize(runtime.engine(), compiled) }
        .map_err(|e| RuntimeError(format!("cannot load the compiled component: {e:#}")))
}
