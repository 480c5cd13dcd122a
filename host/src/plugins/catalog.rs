//! Where a plugin comes from: a `.wasm` in the plugin directory, else the embedded first-party one,
//! with its configuration merged from the directory, the host config and the integration.

use std::path::{Path, PathBuf};

use crate::config::{PluginsConfig, flatten};

/// Where a plugin's component was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `<dir>/<name>.wasm`.
    File(PathBuf),
    /// Built into the binary.
    Embedded,
}

/// A plugin that is neither in the directory nor embedded, or whose files cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The name is not a plugin name (a path, say): nothing is looked up.
    #[error("{0}")]
    Name(String),
    /// No such plugin.
    #[error("no plugin `{name}`: neither {} nor an embedded plugin", path.display())]
    Missing {
        /// The plugin name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The component bytes of plugin `name`: the directory's file wins over the embedded one.
pub fn component(dir: &Path, name: &str) -> Result<(Vec<u8>, Origin), CatalogError> {
    if let Some(reason) = crate::config::plugin_name_error(name) {
        return Err(CatalogError::Name(reason));
    }
    let path = dir.join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => Ok((bytes, Origin::File(path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => super::embedded::find(name)
            .map(|bytes| (bytes.to_vec(), Origin::Embedded))
            .ok_or(CatalogError::Missing {
                name: name.to_owned(),
                path,
            }),
        Err(e) => Err(CatalogError::File {
            path,
            reason: e.to_string(),
        }),
    }
}

/// Plugin `name`'s configuration: `<dir>/<name>.toml`, then `[plugins.config.<name>]`, then `overrides`; later wins.
pub fn config(
    plugins: &PluginsConfig,
    name: &str,
    overrides: &toml::Table,
) -> Result<Vec<(String, String)>, CatalogError> {
    let path = plugins.dir.join(format!("{name}.toml"));
    let mut merged = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_err(|e| CatalogError::File {
                path,
                reason: e.message().to_owned(),
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => {
            return Err(CatalogError::File {
                path,
                reason: e.to_string(),
            });
        }
    };
    if let Some(table) = plugins.config.get(name) {
        merged.extend(table.clone());
    }
    merged.extend(overrides.clone());
    let settings = flatten(&merged);
    settings
        .iter()
        .filter(|(key, _)| crate::config::is_secret_key(key))
        .for_each(|(_, value)| crate::redact::register(value));
    Ok(settings)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_that_is_a_path_is_not_looked_up() {
        let refused = super::component(std::path::Path::new("plugins"), "../evil")
            .expect_err("not looked up");
        assert!(
            refused.to_string().contains("not a plugin name"),
            "{refused}"
        );
    }
}
