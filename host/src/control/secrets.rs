//! Credentials at rest: sealed with XChaCha20-Poly1305 under a key from the environment or a
//! 0600 key file created on first start.

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use super::files::{FileError, read_or_create};

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret.key";

/// The environment variable that gives the key (64 hex characters) instead of the file.
pub const KEY_ENV: &str = "WASMTEL_SECRET_KEY";

const NONCE: usize = 24;

/// Why secrets cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or created.
    #[error("secret key file {0}")]
    File(#[from] FileError),
    /// The key is not 64 hex characters.
    #[error("the secret key ({0}) must be 64 hex characters (32 bytes)")]
    BadKey(&'static str),
    /// Sealed data did not open: another key, or tampering.
    #[error("stored credentials cannot be decrypted: wrong key or damaged data")]
    Open,
}

/// Seals and opens credentials with one key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The key from `env_key` (hex) if given, else from `<dir>/secret.key`, created when missing.
    pub fn load_or_create(env_key: Option<&str>, dir: &Path) -> Result<Self, SecretError> {
        let (hex, source) = match env_key {
            Some(k) => (k.trim().to_owned(), KEY_ENV),
            None => (
                read_or_create(&dir.join(KEY_FILE), || {
                    const_hex::encode(XChaCha20Poly1305::generate_key(&mut OsRng))
                })?,
                KEY_FILE,
            ),
        };
        let bytes = const_hex::decode(&hex).map_err(|_| SecretError::BadKey(source))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey(source))?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// `plaintext` sealed under a fresh random nonce: nonce, then ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        // Encryption into a Vec cannot fail for inputs below the cipher's (huge) length limit.
        out.extend(self.cipher.encrypt(&nonce, plaintext).unwrap_or_default());
        out
    }

    /// Opens what [`Sealer::seal`] sealed.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealer = Sealer::load_or_create(None, dir.path()).expect("key");
        let sealed = sealer.seal(b"api-key: canary");
        assert!(
            !sealed.windows(6).any(|w| w == b"canary"),
            "not in the clear"
        );
        assert_ne!(
            sealer.seal(b"api-key: canary"),
            sealed,
            "a fresh nonce each time"
        );
        let again = Sealer::load_or_create(None, dir.path()).expect("same key file");
        assert_eq!(again.open(&sealed).expect("opens"), b"api-key: canary");
        let other = Sealer::load_or_create(Some(&"11".repeat(32)), dir.path()).expect("env key");
        assert!(matches!(other.open(&sealed), Err(SecretError::Open)));
        let mut tampered = sealed;
        *tampered.last_mut().expect("bytes") ^= 1;
        assert!(matches!(sealer.open(&tampered), Err(SecretError::Open)));
        assert!(matches!(
            Sealer::load_or_create(Some("zz"), dir.path()),
            Err(SecretError::BadKey(KEY_ENV))
        ));
    }
}
