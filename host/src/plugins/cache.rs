//! The compiled-artefact cache: precompiled components on disk, keyed by content hash,
//! so that a restart does not recompile.
//!
//! This is the one reviewed module of the host that uses `unsafe`:
//! [`Component::deserialize`] trusts its input to be wasmtime's own output for
//! this engine configuration. A cached artefact is used only when all of this
//! holds, else it is deleted and the component compiled again:
//! - the directory and the file belong to the host's user and nobody else may
//!   write to them (the host creates the directory with mode 0700);
//! - the file starts with the cache's header, whose engine fingerprint is this
//!   engine's (wasmtime's compatibility hash) and whose SHA-256 is the
//!   payload's, so a truncated, damaged or foreign file is never loaded.
//!
//! Anyone who could still forge an artefact can already write the host user's
//! files, and so run code as that user.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::error::{PluginError, WasmError};
use super::runtime::Runtime;

/// The first bytes of every cache file.
const MAGIC: &[u8; 16] = b"wasmtel-cwasm-1\n";
/// Header length: magic, engine fingerprint, payload SHA-256.
const HEADER: usize = MAGIC.len() + 32 + 32;

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
) -> Result<(Component, Source), PluginError> {
    let Some(dir) = dir else {
        return runtime.compile(bytes).map(|c| (c, Source::Compiled));
    };
    let fingerprint = fingerprint(runtime);
    let path = entry(bytes, &fingerprint, dir);
    match load(runtime, dir, &path, &fingerprint) {
        Ok(Some(component)) => return Ok((component, Source::Cache)),
        Ok(None) => {}
        Err(why) => {
            tracing::warn!(path = %path.display(), "not using a plugin cache entry: {why}; compiling again");
            let _ = std::fs::remove_file(&path);
        }
    }
    let compiled = runtime
        .engine()
        .precompile_component(bytes)
        .map_err(|e| PluginError::Compile(WasmError::from_wasmtime(&e)))?;
    if let Err(e) = store(dir, &path, &fingerprint, &compiled) {
        tracing::warn!(dir = %dir.display(), "cannot write the plugin cache: {e}");
    }
    deserialize(runtime, &compiled).map(|c| (c, Source::Compiled))
}

/// The SHA-256 of the engine's compatibility hash: artefacts of another engine never match.
fn fingerprint(runtime: &Runtime) -> [u8; 32] {
    let mut hasher = Sha256::new();
    std::hash::Hash::hash(
        &runtime.engine().precompile_compatibility_hash(),
        &mut HashInto(&mut hasher),
    );
    hasher.finalize().into()
}

/// The cache file for `bytes`: content hash plus engine fingerprint.
fn entry(bytes: &[u8], fingerprint: &[u8; 32], dir: &Path) -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update(fingerprint);
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

fn store(dir: &Path, path: &Path, fingerprint: &[u8; 32], compiled: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(MAGIC)?;
    file.write_all(fingerprint)?;
    file.write_all(&Sha256::digest(compiled))?;
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

/// Why a file or directory cannot be trusted: it is not the host user's, or others may write to it.
fn untrusted(what: &str, meta: &std::fs::Metadata) -> Option<String> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Some(format!(
            "the {what} belongs to user {}, not the host's user {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "the {what} is writable by others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    None
}

/// The cached component at `path`: `Ok(None)` when there is none, `Err` when there is one that
/// must not be used.
fn load(
    runtime: &Runtime,
    dir: &Path,
    path: &Path,
    fingerprint: &[u8; 32],
) -> Result<Option<Component>, String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(None);
    };
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    let dir_meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    if let Some(why) = untrusted("cache directory", &dir_meta).or_else(|| untrusted("file", &meta))
    {
        return Err(why);
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("it is not a wasmtel cache file".into());
    }
    let (recorded_engine, rest) = bytes[MAGIC.len()..].split_at(32);
    let (recorded_hash, payload) = rest.split_at(32);
    if recorded_engine != fingerprint {
        return Err("it was compiled by another engine".into());
    }
    if recorded_hash != Sha256::digest(payload).as_slice() {
        return Err("its content does not match its recorded hash".into());
    }
    deserialize(runtime, payload)
        .map(Some)
        .map_err(|e| e.chain())
}

#[allow(unsafe_code)]
fn deserialize(runtime: &Runtime, compiled: &[u8]) -> Result<Component, PluginError> {
    // SAFETY: `compiled` is `precompile_component` output for an engine with this engine's
    // compatibility hash: made just now, or read from a file the host user alone can write
    // whose recorded fingerprint and content hash were checked (see the module docs).
    unsafe { Component::deserialize(runtime.engine(), compiled) }
        .map_err(|e| PluginError::Compile(WasmError::from_wasmtime(&e)))
}
