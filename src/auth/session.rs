//! Sessions and the login state machine. A session starts anonymous
//! (`PendingPassword`), steps up to `PendingEnroll` or `PendingCode` after the password
//! and to `Full` after the code; every step up gets a new id (REQ-28). Only a hash of the
//! id is stored, so a copy of the database logs nobody in.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Random;
use crate::auth::redirect::SameSitePath;
use crate::clock::UnixTime;
use crate::config::SessionSettings;

/// A pending login (password right, code not yet) lives this long (REQ-27).
pub const PENDING_TTL_SECS: i64 = 10 * 60;
/// "Last seen" is written at most this often, so proxied requests rarely write.
pub const TOUCH_EVERY_SECS: i64 = 60;
/// Wrong codes a pending login survives before the password is needed again (REQ-9).
pub const MAX_CODE_FAILURES: u32 = 5;
pub const SESSION_COOKIE: &str = "__Host-kanmon";
pub const LANG_COOKIE: &str = "__Host-kanmon-lang";
/// Every cookie of the gateway starts with this; none of them reaches the upstream.
pub const COOKIE_PREFIX: &str = "__Host-kanmon";

const ID_BYTES: usize = 32;

/// The session id as the browser holds it: 256 random bits, base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(…)")
    }
}

/// The stored form of an id: its SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

impl SessionId {
    pub fn generate(rng: &dyn Random) -> SessionId {
        let mut b = [0u8; ID_BYTES];
        rng.fill(&mut b);
        SessionId(b64(&b))
    }

    /// Accepts only the shape we issue; anything else is no session at all.
    pub fn parse(s: &str) -> Option<SessionId> {
        (s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| SessionId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0.as_bytes()).into())
    }
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Anonymous: holds a form token for the login form, nothing else.
    PendingPassword,
    /// Password right, no authenticator yet: may only see the enrollment screen.
    PendingEnroll { user: String },
    /// Password right, authenticator associated: may only enter a code (or ask for reset).
    PendingCode { user: String },
    /// Logged in.
    Full { user: String, auth_time: UnixTime },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(flatten)]
    pub state: SessionState,
    /// The form token every POST of this session must carry (REQ-33).
    pub csrf: String,
    pub created: UnixTime,
    pub last_seen: UnixTime,
    /// Where to go after login (already checked to be a same-site path).
    pub rd: Option<String>,
    #[serde(default)]
    pub code_failures: u32,
}

impl Session {
    pub fn new(state: SessionState, rng: &dyn Random, now: UnixTime, rd: Option<&SameSitePath>) -> Session {
        let mut token = [0u8; 32];
        rng.fill(&mut token);
        Session {
            state,
            csrf: b64(&token),
            created: now,
            last_seen: now,
            rd: rd.map(|p| p.as_str().to_owned()),
            code_failures: 0,
        }
    }

    /// The next state of the login, with a fresh form token and failure count; the
    /// return-to path travels along. The caller stores it under a new id.
    pub fn step_up(&self, state: SessionState, rng: &dyn Random, now: UnixTime) -> Session {
        let mut next = Session::new(state, rng, now, None);
        next.rd = self.rd.clone();
        next
    }

    pub fn user(&self) -> Option<&str> {
        match &self.state {
            SessionState::PendingPassword => None,
            SessionState::PendingEnroll { user }
            | SessionState::PendingCode { user }
            | SessionState::Full { user, .. } => Some(user),
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self.state, SessionState::Full { .. })
    }

    /// When the session ends by itself: pending ones after ten minutes, full ones after
    /// the idle or absolute timeout, whichever comes first.
    pub fn expires_at(&self, settings: &SessionSettings) -> UnixTime {
        match self.state {
            SessionState::Full { auth_time, .. } => {
                (self.last_seen + settings.idle_timeout_secs).min(auth_time + settings.absolute_timeout_secs)
            }
            _ => self.created + PENDING_TTL_SECS,
        }
    }

    pub fn is_live(&self, now: UnixTime, settings: &SessionSettings) -> bool {
        now < self.expires_at(settings)
    }

    /// Whether a request at `now` should update `last_seen` (at most once a minute).
    pub fn needs_touch(&self, now: UnixTime) -> bool {
        self.is_full() && now - self.last_seen >= TOUCH_EVERY_SECS
    }

    pub fn redirect_target(&self) -> String {
        self.rd
            .clone()
            .unwrap_or_else(|| SameSitePath::root().as_str().to_owned())
    }
}

/// `Set-Cookie` for a session id: host-only, Secure, HttpOnly, SameSite=Lax (REQ-31, REQ-73).
pub fn session_cookie(id: &SessionId) -> String {
    cookie::Cookie::build((SESSION_COOKIE, id.as_str().to_owned()))
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .build()
        .to_string()
}

pub fn clear_session_cookie() -> String {
    cookie::Cookie::build((SESSION_COOKIE, ""))
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

pub fn lang_cookie(lang: crate::i18n::Lang) -> String {
    cookie::Cookie::build((LANG_COOKIE, lang.code()))
        .secure(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::days(365))
        .build()
        .to_string()
}

/// The value of one of our cookies across all `Cookie` headers (HTTP/2 may send several).
pub fn read_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;

    fn settings() -> SessionSettings {
        SessionSettings {
            idle_timeout_secs: 1800,
            absolute_timeout_secs: 43200,
        }
    }

    /// REQ-30: 256-bit ids, base64url, no repeats.
    #[test]
    fn req30_ids_are_long_random_and_unique() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| SessionId::generate(&SystemRandom).as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 43 && SessionId::parse(i).is_some()));
        assert!(SessionId::parse("attacker123").is_none());
    }

    #[test]
    fn req27_pending_expires_after_ten_minutes() {
        let s = Session::new(
            SessionState::PendingCode { user: "alice".into() },
            &SystemRandom,
            1000,
            None,
        );
        assert!(s.is_live(1000 + PENDING_TTL_SECS - 1, &settings()));
        assert!(!s.is_live(1000 + PENDING_TTL_SECS, &settings()));
    }

    #[test]
    fn full_sessions_end_at_idle_or_absolute_timeout() {
        let mut s = Session::new(
            SessionState::Full {
                user: "a".into(),
                auth_time: 0,
            },
            &SystemRandom,
            0,
            None,
        );
        assert!(s.is_live(1799, &settings()));
        assert!(!s.is_live(1800, &settings()));
        s.last_seen = 43000;
        assert!(s.is_live(43199, &settings()));
        assert!(!s.is_live(43200, &settings()), "absolute timeout wins over activity");
    }

    #[test]
    fn req31_cookie_flags() {
        let c = session_cookie(&SessionId::generate(&SystemRandom));
        assert!(c.starts_with("__Host-kanmon="));
        for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(c.contains(flag), "{c}");
        }
        assert!(!c.contains("Domain"));
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; b=2".parse().unwrap());
        h.append(http::header::COOKIE, "__Host-kanmon=xyz".parse().unwrap());
        assert_eq!(read_cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(read_cookie(&h, "b"), Some("2"));
        assert_eq!(read_cookie(&h, "c"), None);
    }
}
