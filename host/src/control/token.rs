//! The admin API's bearer token: configured, or generated once into a file only its owner reads.

use std::path::Path;

use super::files::{FileError, read_or_create};

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// The operator's intake token file's name in the data directory.
pub const INTAKE_TOKEN_FILE: &str = "intake.token";

/// The configured token, else the one in `<dir>/admin.token`, created (mode 0600, from the
/// operating system's random source) when missing.
pub fn load_or_create(configured: Option<&str>, dir: &Path) -> Result<String, FileError> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    read_or_create(&dir.join(TOKEN_FILE), crate::tenancy::new_token)
}

/// The operator's intake token (used while tenancy is on), from `<dir>/intake.token`, created
/// (mode 0600) when missing.
pub fn intake(dir: &Path) -> Result<String, FileError> {
    read_or_create(&dir.join(INTAKE_TOKEN_FILE), crate::tenancy::new_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reused_unless_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = load_or_create(None, dir.path()).expect("created");
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(load_or_create(None, dir.path()).expect("read"), token);
        assert_eq!(
            load_or_create(Some("set"), dir.path()).expect("configured"),
            "set"
        );
    }
}
