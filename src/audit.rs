//! The audit trail's vocabulary: who acted and how it ended, decided in one place so
//! every record and log line says it the same way. The records themselves live in the
//! store; nothing here may hold a password, code, secret or token.

/// Someone at the gateway's screens (logged in or not).
pub const BROWSER: &str = "browser";
/// The gateway itself: reloads, mails, purges.
pub const SYSTEM: &str = "system";
/// An administrator's command on the server (`kanmon user …`).
pub const CLI: &str = "cli";

/// An administrator acting on the status page.
pub fn admin_actor(id: &str) -> String {
    format!("admin:{id}")
}

/// `failure` for events that refused, failed or limited something; `success` otherwise.
pub fn outcome_of(event: &str) -> &'static str {
    const FAILING: [&str; 10] = [
        "failed",
        "required",
        "refused",
        "rejected",
        "throttled",
        "limited",
        "replay",
        "locked",
        "abandoned",
        "denied",
    ];
    if FAILING.iter().any(|w| event.contains(w)) {
        "failure"
    } else {
        "success"
    }
}

/// A request's `User-Agent` as the trail keeps it: no control characters, bounded.
pub fn clean_user_agent(ua: &str) -> String {
    ua.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        for e in [
            "login.success",
            "enroll.completed",
            "admin.reset_2fa",
            "config.reloaded",
            "mail.reset_done",
        ] {
            assert_eq!(outcome_of(e), "success", "{e}");
        }
        for e in [
            "login.password_failed",
            "login.code_replay",
            "login.code_throttled",
            "account.locked",
            "config.rejected",
            "mail.locked.failed",
            "enroll.refused_other_browser",
            "admin.denied",
            "admin.step_up_required",
        ] {
            assert_eq!(outcome_of(e), "failure", "{e}");
        }
    }

    #[test]
    fn user_agents_lose_control_characters() {
        assert_eq!(clean_user_agent("a\r\nb"), "ab");
        assert_eq!(clean_user_agent(&"x".repeat(500)).len(), 200);
    }
}
