//! Files only the host's user may read: created once with mode 0600, read on every start.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A private file could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    path: PathBuf,
    source: std::io::Error,
}

/// The trimmed text of `path`, or `make()` written there first (mode 0600, its directory
/// created) when the file is missing or empty.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, FileError> {
    let fail = |source| FileError {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => std::fs::remove_file(path).map_err(fail)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = make();
    let mut file = open_private(path).map_err(fail)?;
    writeln!(file, "{text}").map_err(fail)?;
    Ok(text)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_then_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("f");
        assert_eq!(
            read_or_create(&path, || "one".into()).expect("created"),
            "one"
        );
        assert_eq!(read_or_create(&path, || "two".into()).expect("read"), "one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
