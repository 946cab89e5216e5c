//! Who may administer, and when (REQ-52 … REQ-54): only a full session of an account
//! with `role: admin` that logs in with a second step; actions need an authentication
//! no older than five minutes (step-up); an administrator's own association is reset
//! through the e-mail flow, not from the status page. The control socket answers only
//! its own user (and root).

use crate::auth::session::{Session, SessionState};
use crate::clock::UnixTime;
use crate::config::{Config, Role, User};

/// An administrator's action needs an authentication at most this old.
pub const STEP_UP_SECS: i64 = 5 * 60;
/// Longest reason kept for an administrator's action.
pub const MAX_REASON_CHARS: usize = 500;

/// A session allowed on the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    pub id: String,
    pub auth_time: UnixTime,
}

/// The administrator behind a session: a full session of an account that is an admin
/// in the configuration in force and cannot skip the second step (REQ-54).
pub fn admin_of(session: &Session, cfg: &Config) -> Option<AdminSession> {
    let SessionState::Full { user, auth_time } = &session.state else {
        return None;
    };
    let account: &User = cfg.user(user)?;
    (account.role == Role::Admin && account.two_factor).then(|| AdminSession {
        id: account.id.clone(),
        auth_time: *auth_time,
    })
}

/// Whether the authentication is recent enough for an action (REQ-52).
pub fn step_up_fresh(auth_time: UnixTime, now: UnixTime) -> bool {
    now - auth_time <= STEP_UP_SECS
}

/// An administrator acting on the page may not remove their own association; the
/// command line (the server's operator) may.
pub fn may_reset_association(acting_admin: Option<&str>, target: &str) -> bool {
    acting_admin.is_none_or(|a| !a.eq_ignore_ascii_case(target))
}

/// The reason as recorded: one line, bounded, and required.
pub fn reason(text: &str) -> Option<String> {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    let trimmed = one_line.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// The control socket's peer check: the gateway's own user, or root.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;

    fn cfg() -> Config {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$y3Pc6KdOARZabmzG8Qd7XQ$gadNCfrCTDAwFEBK9AIZj6D/MRTtr1wZl7gyMOIooKk";
        let text = format!(
            "listen: 127.0.0.1:1\ntls: {{ cert: c, key: k }}\nupstream: {{ url: demo }}\ndata_dir: d\nsmtp: {{ host: h, port: 25, security: none, from: a@example.com }}\nusers:\n  - {{ id: Root, email: r@example.com, password_hash: \"{hash}\", role: admin }}\n  - {{ id: lazy, email: l@example.com, password_hash: \"{hash}\", role: admin, two_factor: false }}\n  - {{ id: bob, email: b@example.com, password_hash: \"{hash}\", role: user }}\n"
        );
        Config::parse(std::path::Path::new("/k/config.yaml"), &text).unwrap()
    }

    fn session(state: SessionState) -> Session {
        Session::new(state, &SystemRandom, 0, None)
    }

    /// REQ-52, REQ-54: admins with a full session and a second step only.
    #[test]
    fn req52_req54_only_full_sessions_of_two_step_admins() {
        let cfg = cfg();
        let full = |u: &str| {
            session(SessionState::Full {
                user: u.into(),
                auth_time: 7,
            })
        };
        assert_eq!(
            admin_of(&full("root"), &cfg),
            Some(AdminSession {
                id: "Root".into(),
                auth_time: 7
            })
        );
        assert_eq!(admin_of(&full("bob"), &cfg), None, "a user");
        assert_eq!(admin_of(&full("lazy"), &cfg), None, "REQ-54: an admin without a code");
        assert_eq!(admin_of(&full("gone"), &cfg), None, "removed from the config");
        let pending = session(SessionState::PendingCode { user: "root".into() });
        assert_eq!(admin_of(&pending, &cfg), None, "password only");
    }

    #[test]
    fn req52_step_up_after_five_minutes() {
        assert!(step_up_fresh(1000, 1000 + STEP_UP_SECS));
        assert!(!step_up_fresh(1000, 1000 + STEP_UP_SECS + 1));
    }

    #[test]
    fn own_association_only_by_mail_or_command_line() {
        assert!(!may_reset_association(Some("Root"), "root"));
        assert!(may_reset_association(Some("root"), "bob"));
        assert!(may_reset_association(None, "root"));
    }

    #[test]
    fn reasons_are_required_single_line_and_bounded() {
        assert_eq!(reason("  "), None);
        assert_eq!(reason("lost phone\r\nBcc: x").as_deref(), Some("lost phone  Bcc: x"));
        assert_eq!(reason(&"x".repeat(900)).unwrap().len(), MAX_REASON_CHARS);
    }

    #[test]
    fn control_socket_peers() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(!peer_allowed(65534, 1000));
    }
}
