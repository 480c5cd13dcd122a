//! Loading plugins: find the component, compile it through the cache, validate it and start it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use super::catalog::{self, CatalogError, Origin};
use super::exporter::ExporterPlugin;
use super::runtime::{Limits, Runtime, RuntimeError};
use crate::config::PluginsConfig;

/// Everything needed to turn a plugin name into a running plugin.
pub struct Loader {
    runtime: Arc<Runtime>,
    config: PluginsConfig,
    cache: Option<PathBuf>,
    scope: u64,
}

impl Loader {
    /// A loader over the shared runtime and the `[plugins]` settings, caching compiled plugins
    /// in `cache` (see [`PluginsConfig::cache_dir`]); the plugins it loads are counted in
    /// self-telemetry `scope` (see [`super::stats`]).
    pub fn new(
        config: &PluginsConfig,
        cache: Option<PathBuf>,
        scope: u64,
    ) -> Result<Self, RuntimeError> {
        Ok(Self {
            runtime: Runtime::shared()?,
            config: config.clone(),
            cache,
            scope,
        })
    }

    /// The limits of plugin `name`, counted in this loader's scope.
    fn limits(&self, name: &str) -> Limits {
        Limits {
            scope: self.scope,
            ..Limits::of(&self.config, name)
        }
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The component bytes for `name`: the directory's file, else the embedded plugin.
    pub fn find(&self, name: &str) -> Result<(Vec<u8>, Origin), CatalogError> {
        catalog::component(&self.config.dir, name)
    }

    /// Compiles component bytes, through the on-disk cache when one is configured.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, RuntimeError> {
        super::cache::compile(&self.runtime, bytes, self.cache.as_deref())
            .map(|(component, _)| component)
    }

    /// Validates `component` as exporter `name` and starts it with its merged configuration.
    pub fn exporter(
        &self,
        name: &str,
        component: &Component,
        overrides: &toml::Table,
    ) -> Result<ExporterPlugin, String> {
        let settings = catalog::config(&self.config, name, overrides).map_err(|e| e.to_string())?;
        ExporterPlugin::load(&self.runtime, name, component, settings, self.limits(name))
            .map_err(|e| e.to_string())
    }

    /// Validates `component` as view `name` and starts it with its merged configuration.
    pub fn view(
        &self,
        name: &str,
        component: &Component,
        overrides: &toml::Table,
    ) -> Result<super::view::ViewPlugin, String> {
        let settings = catalog::config(&self.config, name, overrides).map_err(|e| e.to_string())?;
        super::view::ViewPlugin::load(&self.runtime, name, component, settings, self.limits(name))
            .map_err(|e| e.to_string())
    }

    /// Finds, compiles and starts view `name`, ready to be bound to instruments.
    pub fn load_view(
        &self,
        name: &str,
        overrides: &toml::Table,
    ) -> Result<super::view::PluginView, String> {
        let (bytes, _) = self.find(name).map_err(|e| e.to_string())?;
        let component = self.compile(&bytes).map_err(|e| e.to_string())?;
        let plugin = self.view(name, &component, overrides)?;
        Ok(super::view::PluginView::new(
            name,
            overrides.clone(),
            plugin,
            super::cache::digest(&bytes),
        ))
    }

    /// Validates `component` as transform `name` and starts it with its merged configuration.
    pub fn transform(
        &self,
        name: &str,
        component: &Component,
        overrides: &toml::Table,
        on_failure: crate::config::OnFailure,
    ) -> Result<super::TransformPlugin, String> {
        let settings = catalog::config(&self.config, name, overrides).map_err(|e| e.to_string())?;
        super::TransformPlugin::load(
            &self.runtime,
            name,
            component,
            settings,
            self.limits(name),
            on_failure,
        )
        .map_err(|e| e.to_string())
    }

    /// Finds, compiles and starts transform `name`, ready to be a link of the chain.
    pub fn load_transform(
        &self,
        name: &str,
        overrides: &toml::Table,
        on_failure: crate::config::OnFailure,
    ) -> Result<super::transform::ChainLink, String> {
        let (bytes, _) = self.find(name).map_err(|e| e.to_string())?;
        let component = self.compile(&bytes).map_err(|e| e.to_string())?;
        let plugin = self.transform(name, &component, overrides, on_failure)?;
        Ok(super::transform::ChainLink::new(
            plugin,
            super::cache::digest(&bytes),
            overrides.clone(),
        ))
    }

    /// Finds, compiles and starts exporter `name`; returns it with its content digest.
    pub fn load_exporter(
        &self,
        name: &str,
        overrides: &toml::Table,
    ) -> Result<(ExporterPlugin, String, Origin), String> {
        let (bytes, origin) = self.find(name).map_err(|e| e.to_string())?;
        let component = self.compile(&bytes).map_err(|e| e.to_string())?;
        let plugin = self.exporter(name, &component, overrides)?;
        Ok((plugin, super::cache::digest(&bytes), origin))
    }

    /// Where a plugin named `name` would be read from in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.config.dir.join(format!("{name}.wasm"))
    }
}
