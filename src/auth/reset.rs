//! The rules of the self-service reset (M-12 … M-15, REQ-38 … REQ-50): what a reset
//! token is, when it may be used, who may enroll afterwards, and what the link says.

use sha2::{Digest, Sha256};

use crate::auth::Random;
use crate::auth::host::AllowedHost;
use crate::clock::UnixTime;
use crate::store::{Authenticator, ReenrollBinding, ResetToken};

/// The cookie that ties a reset link to the browser that asked for it (REQ-42).
pub const BROWSER_COOKIE: &str = "__Host-kanmon-reset";
pub const CONFIRM_PATH: &str = "/_kanmon/reset/confirm";
const TOKEN_BYTES: usize = 32;

/// A random secret in its URL form (256 bits, base64url).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    pub fn generate(rng: &dyn Random) -> Secret {
        use base64::Engine;
        let mut b = [0u8; TOKEN_BYTES];
        rng.fill(&mut b);
        Secret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
    }

    /// Only the shape we issue; anything else is not worth a database lookup.
    pub fn parse(s: &str) -> Option<Secret> {
        (s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| Secret(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored instead of the secret itself.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    pub fn hash_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.hash())
    }
}

/// The link in the e-mail: the host the browser used (already checked against the
/// allowed list, M-14), always over HTTPS.
pub fn link(host: &AllowedHost, token: &Secret) -> String {
    format!("https://{}{CONFIRM_PATH}?t={}", host.authority(), token.as_str())
}

/// `alice@example.com` → `a***@example.com`
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, used, expired, or for an association that no longer exists.
    Invalid,
    /// Right link, wrong browser (REQ-42): the page explains where to open it.
    OtherBrowser,
}

/// Whether a token may remove the association now, from this browser.
pub fn check(
    token: Option<&ResetToken>,
    current: Option<&Authenticator>,
    browser_cookie: Option<&str>,
    same_browser: bool,
    now: UnixTime,
) -> Result<(), Refusal> {
    let token = token.ok_or(Refusal::Invalid)?;
    if now >= token.expires {
        return Err(Refusal::Invalid);
    }
    if current.is_none_or(|a| a.enrolled_at != token.enrolled_at) {
        return Err(Refusal::Invalid);
    }
    if same_browser && !browser_matches(&token.browser, browser_cookie) {
        return Err(Refusal::OtherBrowser);
    }
    Ok(())
}

fn browser_matches(stored_hash: &str, cookie: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(secret) = cookie.and_then(Secret::parse) else {
        return false;
    };
    bool::from(secret.hash_hex().as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// After a self-service reset, only the browser that confirmed it may enroll, until the
/// binding runs out (REQ-50); after that, enrollment is open as at a first login.
pub fn may_enroll(binding: Option<&ReenrollBinding>, browser_cookie: Option<&str>, now: UnixTime) -> bool {
    match binding {
        Some(b) if now < b.until => browser_matches(&b.browser, browser_cookie),
        _ => true,
    }
}

pub fn browser_cookie(secret: &Secret, max_age_secs: i64) -> String {
    cookie::Cookie::build((BROWSER_COOKIE, secret.as_str().to_owned()))
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;

    fn token(browser: &Secret) -> ResetToken {
        ResetToken {
            user: "alice".into(),
            expires: 1000,
            enrolled_at: 5,
            browser: browser.hash_hex(),
        }
    }

    fn authenticator(enrolled_at: UnixTime) -> Authenticator {
        Authenticator {
            sealed_secret: String::new(),
            last_step: None,
            enrolled_at,
        }
    }

    #[test]
    fn req38_tokens_are_256_bit_and_stored_hashed() {
        let t = Secret::generate(&SystemRandom);
        assert_eq!(t.as_str().len(), 43);
        assert_ne!(t.hash_hex(), t.as_str());
        assert!(Secret::parse("short").is_none());
    }

    #[test]
    fn req39_req42_req49_when_a_token_works() {
        let b = Secret::generate(&SystemRandom);
        let other = Secret::generate(&SystemRandom);
        let t = token(&b);
        let a = authenticator(5);
        assert_eq!(check(Some(&t), Some(&a), Some(b.as_str()), true, 999), Ok(()));
        assert_eq!(
            check(Some(&t), Some(&a), Some(b.as_str()), true, 1000),
            Err(Refusal::Invalid),
            "expired"
        );
        assert_eq!(
            check(None, Some(&a), Some(b.as_str()), true, 1),
            Err(Refusal::Invalid),
            "unknown or used"
        );
        assert_eq!(
            check(Some(&t), Some(&authenticator(6)), Some(b.as_str()), true, 1),
            Err(Refusal::Invalid)
        );
        assert_eq!(check(Some(&t), None, Some(b.as_str()), true, 1), Err(Refusal::Invalid));
        assert_eq!(
            check(Some(&t), Some(&a), Some(other.as_str()), true, 1),
            Err(Refusal::OtherBrowser)
        );
        assert_eq!(check(Some(&t), Some(&a), None, true, 1), Err(Refusal::OtherBrowser));
        assert_eq!(
            check(Some(&t), Some(&a), None, false, 1),
            Ok(()),
            "binding switched off"
        );
    }

    #[test]
    fn req50_only_the_confirming_browser_enrolls_within_the_window() {
        let b = Secret::generate(&SystemRandom);
        let binding = ReenrollBinding {
            browser: b.hash_hex(),
            until: 100,
        };
        assert!(may_enroll(Some(&binding), Some(b.as_str()), 99));
        assert!(!may_enroll(Some(&binding), None, 99));
        assert!(!may_enroll(
            Some(&binding),
            Some(Secret::generate(&SystemRandom).as_str()),
            99
        ));
        assert!(may_enroll(Some(&binding), None, 100));
        assert!(may_enroll(None, None, 0));
    }

    #[test]
    fn masks_and_links() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        let host = AllowedHost {
            name: "localhost".into(),
            port: Some(8443),
        };
        let t = Secret::generate(&SystemRandom);
        assert_eq!(
            link(&host, &t),
            format!("https://localhost:8443/_kanmon/reset/confirm?t={}", t.as_str())
        );
    }
}
