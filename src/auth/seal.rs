//! Secrets at rest (REQ-24): AES-256-GCM under a key kept outside the database. The
//! associated data binds a blob to its purpose and account, so a sealed secret cannot
//! be moved to another user; the `v1.` prefix leaves room for key rotation.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::auth::Random;

const VERSION: &str = "v1.";
const NONCE_BYTES: usize = 12;
pub const KEY_BYTES: usize = 32;

pub struct Sealer {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: the key file is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: String, mode: u32 },
    #[error("{path}: the key file must hold exactly {KEY_BYTES} bytes")]
    WrongLength { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Sealer {
    pub fn new(key: &[u8; KEY_BYTES]) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new_from_slice(key).expect("a 32-byte key"),
        }
    }

    /// Reads the key file, or creates it (mode 0600) on first start.
    pub fn load_or_create(path: &Path, rng: &dyn Random) -> Result<Sealer, KeyFileError> {
        let display = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: display.clone(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyFileError::TooOpen { path: display, mode });
                }
                let bytes = std::fs::read(path).map_err(io)?;
                let key: [u8; KEY_BYTES] = bytes
                    .try_into()
                    .map_err(|_| KeyFileError::WrongLength { path: display.clone() })?;
                Ok(Sealer::new(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                rng.fill(&mut key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(&key).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(Sealer::new(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn seal(&self, purpose: &str, account: &str, plaintext: &[u8], rng: &dyn Random) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill(&mut nonce);
        let aad = aad(purpose, account);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a short message cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{VERSION}{}", B64.encode(blob))
    }

    /// `None` for anything not sealed by this key for this purpose and account.
    pub fn open(&self, purpose: &str, account: &str, sealed: &str) -> Option<Vec<u8>> {
        let blob = B64.decode(sealed.strip_prefix(VERSION)?).ok()?;
        if blob.len() < NONCE_BYTES + 16 {
            return None;
        }
        let (nonce, ct) = blob.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        let aad = aad(purpose, account);
        self.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .ok()
    }
}

fn aad(purpose: &str, account: &str) -> Vec<u8> {
    // Length-prefixed, so ("a", "bc") and ("ab", "c") differ.
    format!("kanmon/{}/{purpose}/{}/{account}", purpose.len(), account.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;

    #[test]
    fn req24_round_trip_and_binding() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal("totp", "alice", b"secret bytes", &SystemRandom);
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("secret"));
        assert_eq!(s.open("totp", "alice", &sealed).unwrap(), b"secret bytes");
        assert!(s.open("totp", "bob", &sealed).is_none(), "moved to another account");
        assert!(s.open("reset", "alice", &sealed).is_none(), "used for another purpose");
        assert!(
            Sealer::new(&[8; 32]).open("totp", "alice", &sealed).is_none(),
            "another key"
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            s.open("totp", "alice", std::str::from_utf8(&tampered).unwrap())
                .is_none()
        );
        assert!(s.open("totp", "alice", "v2.AAAA").is_none());
    }

    #[test]
    fn req72_key_file_is_created_0600_and_refused_when_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = Sealer::load_or_create(&path, &SystemRandom).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = a.seal("totp", "alice", b"x", &SystemRandom);
        let b = Sealer::load_or_create(&path, &SystemRandom).unwrap();
        assert_eq!(
            b.open("totp", "alice", &sealed).unwrap(),
            b"x",
            "the same key is read back"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Sealer::load_or_create(&path, &SystemRandom).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
