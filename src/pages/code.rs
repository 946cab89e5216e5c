//! The "Enter authentication code" screen (M-9), and what it shares with enrollment:
//! reading a typed code and counting wrong ones.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{CODE_PATH, Ctx, LOGIN_PATH, login_with, next_location};
use crate::auth::session::{MAX_CODE_FAILURES, Session, SessionId, SessionState};
use crate::auth::totp::{self, Code, CodeFormatError, TotpSecret, Verdict};
use crate::i18n::Text;
use crate::mail::Notice;
use crate::web::{self, Body};

pub async fn show(ctx: &Ctx) -> Response<Body> {
    match ctx.session().await {
        Some((_, s)) if matches!(s.state, SessionState::PendingCode { .. }) => {
            form(ctx, StatusCode::OK, &s, None, None)
        }
        Some((_, s)) if !matches!(s.state, SessionState::PendingPassword) => web::see_other(&next_location(&s)),
        _ => web::see_other(&login_with("expired")),
    }
}

pub fn form(
    ctx: &Ctx,
    status: StatusCode,
    s: &Session,
    error: Option<String>,
    notice: Option<String>,
) -> Response<Body> {
    ctx.page(
        status,
        "code.html",
        ctx.t().code_title,
        minijinja::context! {
            csrf => &s.csrf, action => CODE_PATH, error => error, notice => notice,
            reset_enabled => super::reset::enabled(ctx),
        },
    )
}

pub async fn submit(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let current = ctx.session().await;
    let (id, s, user) = match current {
        Some((id, s)) => match &s.state {
            SessionState::PendingCode { user } => {
                let user = user.clone();
                (id, s, user)
            }
            _ => return web::see_other(&next_location(&s)),
        },
        None => return web::see_other(&login_with("expired")),
    };
    let form_data = match ctx.read_post(req, Some(&s)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let code = match Code::parse(form_data.get("code").unwrap_or("")) {
        Ok(c) => c,
        Err(e) => {
            return form(
                ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                &s,
                Some(format_error(ctx.t(), e)),
                None,
            );
        }
    };

    let now = ctx.app.now();
    let outcome = check_code(&ctx.app, &user, code, now).await;
    match outcome {
        Ok(Some((Verdict::Accepted(_), _))) => {
            ctx.audit("login.success", Some(&user), None).await;
            // REQ-13, REQ-40: a right code clears the failure count and voids any
            // outstanding reset link.
            let uid = user.clone();
            let cleanup = ctx.app.store.run(move |st| {
                st.clear_failures(&uid, true, false)?;
                st.delete_reset_tokens(&uid)
            });
            if let Err(e) = cleanup.await {
                tracing::error!(error = %e, "clearing after a right code failed");
            }
            let next = s.step_up(SessionState::Full { user, auth_time: now }, ctx.app.rng(), now);
            let location = next_location(&next);
            ctx.step_to(Some(&id), next, &location).await
        }
        Ok(Some((verdict, newly_locked))) => {
            let replay = verdict == Verdict::Replayed;
            let event = match verdict {
                Verdict::Replayed => "login.code_replay",
                Verdict::Throttled => "login.code_throttled",
                _ => "login.code_failed",
            };
            ctx.audit(event, Some(&user), None).await;
            if newly_locked {
                tell_lock(ctx, &user).await;
            }
            // The password was right: tell the user once per login (REQ-8, REQ-14).
            let notice = if replay {
                Some(Notice::Replay)
            } else {
                (s.code_failures == 0).then_some(Notice::WrongCode)
            };
            if let Some(notice) = notice {
                ctx.app.notify(&user, notice, ctx.lang, ctx.origin());
            }
            match count_failure(ctx, &id).await {
                Ok(true) => web::see_other(&login_with("too_many")),
                Ok(false) => form(
                    ctx,
                    StatusCode::UNAUTHORIZED,
                    &s,
                    Some(wrong_code_message(ctx.t(), verdict)),
                    None,
                ),
                Err(r) => r,
            }
        }
        // The authenticator was removed while this login was pending.
        Ok(None) => web::see_other(LOGIN_PATH),
        Err(e) => ctx.internal_error("checking a code failed", e),
    }
}

/// Decides a code in one write transaction — the account's gate, the verdict, the
/// replay guard and the failure count — so of two concurrent submissions of one code
/// exactly one wins (REQ-7), and wrong codes sent at the same moment are each counted
/// and cannot slip past the gate together (REQ-10, REQ-12). Returns the verdict and
/// whether this failure locked the account; `None` when no authenticator is associated.
pub async fn check_code(
    app: &std::sync::Arc<crate::app::App>,
    user: &str,
    code: Code,
    now: crate::clock::UnixTime,
) -> Result<Option<(Verdict, bool)>, crate::store::StoreError> {
    let app = app.clone();
    let uid = user.to_owned();
    app.clone()
        .store
        .run(move |st| {
            st.attempt_code(&uid, now, |a| {
                match app
                    .sealer
                    .open("totp", &uid, &a.sealed_secret)
                    .and_then(TotpSecret::from_bytes)
                {
                    Some(secret) => totp::verdict(&secret, &code, now, a.last_step),
                    None => {
                        tracing::error!(user = %uid, "a stored secret cannot be opened");
                        Verdict::Wrong
                    }
                }
            })
        })
        .await
}

pub fn format_error(t: &Text, e: CodeFormatError) -> String {
    match e {
        CodeFormatError::NotDigits => t.err_code_not_digits,
        CodeFormatError::WrongLength => t.err_code_length,
    }
    .to_owned()
}

/// The message for a wrong code; when the code belongs to another time, the phone's
/// clock is off and the user is told by how much (M-4).
pub fn wrong_code_message(t: &Text, verdict: Verdict) -> String {
    match verdict {
        Verdict::ClockOff(secs) => {
            let minutes = ((secs.abs() + 30) / 60).max(1).to_string();
            let text = if secs > 0 {
                t.err_clock_ahead
            } else {
                t.err_clock_behind
            };
            text.replace("{n}", &minutes)
        }
        _ => t.err_code_wrong.to_owned(),
    }
}

/// REQ-11: the failure that locked the account is told to the user.
pub async fn tell_lock(ctx: &Ctx, user: &str) {
    ctx.audit("account.locked", Some(user), None).await;
    ctx.app.notify(user, Notice::Locked, ctx.lang, ctx.origin());
}

/// Counts a wrong code against the pending login; after [`MAX_CODE_FAILURES`] the
/// login is void (REQ-9). True when it was voided.
pub async fn count_failure(ctx: &Ctx, id: &SessionId) -> Result<bool, Response<Body>> {
    let key = id.key();
    let voided = ctx
        .app
        .store
        .run(move |st| {
            st.update_session(&key, |cur| match cur {
                Some(mut s) => {
                    s.code_failures += 1;
                    if s.code_failures >= MAX_CODE_FAILURES {
                        (None, true)
                    } else {
                        (Some(s), false)
                    }
                }
                None => (None, true),
            })
        })
        .await;
    voided.map_err(|e| ctx.internal_error("counting a wrong code failed", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{EN, JA};

    #[test]
    fn m4_clock_hint_says_how_far_and_which_way() {
        assert_eq!(
            wrong_code_message(&EN, Verdict::ClockOff(300)),
            EN.err_clock_ahead.replace("{n}", "5")
        );
        assert_eq!(
            wrong_code_message(&EN, Verdict::ClockOff(-90)),
            EN.err_clock_behind.replace("{n}", "2")
        );
        assert!(wrong_code_message(&JA, Verdict::ClockOff(-60)).contains("約1分遅れ"));
        assert_eq!(wrong_code_message(&EN, Verdict::Wrong), EN.err_code_wrong);
    }
}
