//! Loading plugins: find the component, compile it through the cache, validate it as its kind
//! and start it with its merged configuration — the one way every plugin is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use super::catalog::{self, Origin};
use super::error::PluginError;
use super::kind::PluginKind;
use super::limits::Limits;
use super::plugin::Plugin;
use super::runtime::Runtime;
use super::stats::Stats;
use crate::config::PluginsConfig;

/// Everything needed to turn a plugin name into a running plugin.
#[derive(Debug)]
pub struct Loader {
    runtime: Arc<Runtime>,
    config: PluginsConfig,
    cache: Option<PathBuf>,
    stats: Stats,
}

impl Loader {
    /// A loader over the shared runtime and the `[plugins]` settings, caching compiled plugins
    /// in `cache` (see [`crate::Config::plugin_cache`]); the plugins it loads count their calls
    /// in `stats`.
    pub fn new(
        config: &PluginsConfig,
        cache: Option<PathBuf>,
        stats: Stats,
    ) -> Result<Self, PluginError> {
        Ok(Self {
            runtime: Runtime::shared()?,
            config: config.clone(),
            cache,
            stats,
        })
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The statistics its plugins count in.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The component bytes for `name`: the directory's file, else the embedded plugin.
    pub fn find(&self, name: &str) -> Result<(Vec<u8>, Origin), PluginError> {
        Ok(catalog::component(&self.config.dir, name)?)
    }

    /// Compiles component bytes, through the on-disk cache when one is configured.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        super::cache::compile(&self.runtime, bytes, self.cache.as_deref())
            .map(|(component, _)| component)
    }

    /// Validates `component` as a plugin of kind `K` named `name` and starts it with its merged
    /// configuration (`<name>.toml`, `[plugins.config.<name>]`, then `overrides`).
    pub fn load<K: PluginKind>(
        &self,
        name: &str,
        component: &Component,
        overrides: &toml::Table,
    ) -> Result<Plugin<K>, PluginError> {
        let settings = catalog::config(&self.config, name, overrides)?;
        Plugin::load(
            &self.runtime,
            name,
            component,
            settings,
            Limits::of(&self.config, name),
            &self.stats,
        )
    }

    /// Finds, compiles and starts plugin `name` as kind `K`; returns it with its content
    /// digest and where it was found.
    pub fn open<K: PluginKind>(
        &self,
        name: &str,
        overrides: &toml::Table,
    ) -> Result<(Plugin<K>, String, Origin), PluginError> {
        let (bytes, origin) = self.find(name)?;
        let (plugin, digest) = self.open_bytes(name, &bytes, overrides)?;
        Ok((plugin, digest, origin))
    }

    /// Compiles and starts component `bytes` as plugin `name` of kind `K`; returns it with its
    /// content digest.
    pub fn open_bytes<K: PluginKind>(
        &self,
        name: &str,
        bytes: &[u8],
        overrides: &toml::Table,
    ) -> Result<(Plugin<K>, String), PluginError> {
        let component = self.compile(bytes)?;
        let plugin = self.load(name, &component, overrides)?;
        Ok((plugin, super::cache::digest(bytes)))
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The settings and limits plugin `name` runs with, before any integration's own.
    pub fn configured(&self, name: &str) -> Result<(Vec<(String, String)>, Limits), PluginError> {
        let settings = catalog::config(&self.config, name, &toml::Table::new())?;
        Ok((settings, Limits::of(&self.config, name)))
    }
}
