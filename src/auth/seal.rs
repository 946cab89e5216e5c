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

/// Property tests (REQ-24): whatever is sealed opens again, only with its key, purpose
/// and account; any single-byte change of a sealed value, in its text or in the bytes
/// under the base64, and any truncation or extension, makes it unopenable.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::auth::SystemRandom;
    use proptest::prelude::*;

    fn sealed_case() -> impl Strategy<Value = ([u8; KEY_BYTES], String, Vec<u8>)> {
        (
            any::<[u8; KEY_BYTES]>(),
            "[a-zA-Z0-9@._-]{0,20}",
            prop::collection::vec(any::<u8>(), 0..48),
        )
    }

    proptest! {
        #[test]
        fn req24_seal_open_round_trip((key, account, plaintext) in sealed_case(), other_key in any::<[u8; KEY_BYTES]>()) {
            let s = Sealer::new(&key);
            let sealed = s.seal("totp", &account, &plaintext, &SystemRandom);
            prop_assert_eq!(s.open("totp", &account, &sealed), Some(plaintext.clone()));
            prop_assert_eq!(s.open("reset", &account, &sealed), None);
            prop_assert_eq!(s.open("totp", &format!("{account}x"), &sealed), None);
            prop_assume!(other_key != key);
            prop_assert_eq!(Sealer::new(&other_key).open("totp", &account, &sealed), None);
            // Two seals of one plaintext differ (fresh nonce) and both open.
            let again = s.seal("totp", &account, &plaintext, &SystemRandom);
            prop_assert_ne!(&again, &sealed);
            prop_assert_eq!(s.open("totp", &account, &again), Some(plaintext));
        }

        #[test]
        fn req24_any_single_byte_change_of_the_text_is_detected(
            (key, account, plaintext) in sealed_case(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let s = Sealer::new(&key);
            let sealed = s.seal("totp", &account, &plaintext, &SystemRandom);
            let mut bytes = sealed.clone().into_bytes();
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            // A change that leaves no text cannot even be handed to `open`.
            if let Ok(text) = String::from_utf8(bytes) {
                prop_assert_eq!(s.open("totp", &account, &text), None, "{} → {}", sealed, text);
            }
        }

        #[test]
        fn req24_any_single_byte_change_of_the_blob_is_detected(
            (key, account, plaintext) in sealed_case(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let s = Sealer::new(&key);
            let sealed = s.seal("totp", &account, &plaintext, &SystemRandom);
            let mut blob = B64.decode(sealed.strip_prefix(VERSION).unwrap()).unwrap();
            let i = at.index(blob.len());
            blob[i] ^= flip;
            let tampered = format!("{VERSION}{}", B64.encode(&blob));
            prop_assert_eq!(s.open("totp", &account, &tampered), None);
        }

        #[test]
        fn req24_truncated_or_extended_values_are_refused(
            (key, account, plaintext) in sealed_case(),
            cut in any::<prop::sample::Index>(),
            extra in "[A-Za-z0-9_-]{1,8}",
        ) {
            let s = Sealer::new(&key);
            let sealed = s.seal("totp", &account, &plaintext, &SystemRandom);
            let n = cut.index(sealed.len());
            prop_assert_eq!(s.open("totp", &account, &sealed[..n]), None);
            prop_assert_eq!(s.open("totp", &account, &format!("{sealed}{extra}")), None);
        }

        /// Opening arbitrary text never panics and opens nothing.
        #[test]
        fn req24_arbitrary_text_opens_nothing(text in any::<String>(), v1 in any::<bool>()) {
            let s = Sealer::new(&[7; KEY_BYTES]);
            let text = if v1 { format!("{VERSION}{text}") } else { text };
            prop_assert_eq!(s.open("totp", "alice", &text), None);
        }
    }
}
