//! The login screen: user ID and password (M-1, M-2), the first step of the login.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Ctx, next_location};
use crate::auth::redirect::SameSitePath;
use crate::auth::reset;
use crate::auth::session::{self, Session, SessionId, SessionState};
use crate::auth::throttle;
use crate::store;
use crate::web::{self, Body};

/// Longest password the form accepts; longer ones are not hashed at all.
const MAX_PASSWORD_BYTES: usize = 1024;

pub async fn show(ctx: &Ctx) -> Response<Body> {
    let current = ctx.session().await;
    let rd = web::query_param(&ctx.uri, "rd").and_then(|p| SameSitePath::parse(&p));
    if let Some((_, s)) = &current
        && s.is_full()
    {
        let to = rd.unwrap_or_else(SameSitePath::root);
        return web::see_other(to.as_str());
    }
    let notice = match web::query_param(&ctx.uri, "notice").as_deref() {
        Some("expired") => Some(ctx.t().err_expired),
        Some("too_many") => Some(ctx.t().err_too_many_codes),
        Some("reset_done") => Some(ctx.t().reset_done),
        _ => None,
    };
    // An anonymous session carries the form token and the return-to path.
    let old_key = current.as_ref().map(|(id, _)| id.key());
    let (id, s, store_it) = match current {
        Some((id, s))
            if s.state == SessionState::PendingPassword
                && (rd.is_none() || s.rd.as_deref() == rd.as_ref().map(|r| r.as_str())) =>
        {
            (id, s, false)
        }
        _ => {
            let s = Session::new(SessionState::PendingPassword, ctx.app.rng(), ctx.app.now(), rd.as_ref());
            (SessionId::generate(ctx.app.rng()), s, true)
        }
    };
    if store_it {
        let (key, record) = (id.key(), s.clone());
        if let Err(e) = ctx
            .app
            .store
            .run(move |st| st.replace_session(old_key.as_ref(), &key, &record))
            .await
        {
            return ctx.internal_error("storing a login session failed", e);
        }
    }
    let mut r = form(ctx, StatusCode::OK, &s, "", notice, None);
    if store_it {
        web::add_cookie(&mut r, &session::session_cookie(&id));
    }
    r
}

/// A refused password attempt. The typed ID is recorded only when it names an account:
/// people type their password into the wrong field, and the trail never holds one.
async fn audit_attempt(ctx: &Ctx, event: &str, typed_user: &str) {
    match ctx.cfg.user(typed_user) {
        Some(u) => ctx.audit(event, Some(&u.id), None).await,
        None => ctx.audit(event, None, Some("unknown user ID".to_owned())).await,
    }
}

fn form(
    ctx: &Ctx,
    status: StatusCode,
    s: &Session,
    user: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response<Body> {
    ctx.page(
        status,
        "login.html",
        ctx.t().login_screen,
        minijinja::context! { csrf => &s.csrf, user => user, notice => notice, error => error },
    )
}

pub async fn submit(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let current = ctx.session().await;
    let posted = match ctx.read_post(req, current.as_ref().map(|(_, s)| s)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((id, s)) = current else {
        unreachable!("read_post refuses a POST without a session")
    };
    let typed_user = posted.get("user").unwrap_or("").trim();
    let password = posted.get("password").unwrap_or("");

    // REQ-15: failures are counted per typed user ID (existing or not) and per address;
    // over the limit nothing is hashed and everybody gets the same answer.
    let now = ctx.app.now();
    let limits = &ctx.cfg.limits;
    let keys = [store::password_key(typed_user), store::password_ip_key(&ctx.client_ip)];
    let (lookup, since) = (keys.clone(), now - throttle::PASSWORD_WINDOW_SECS);
    let recent = match ctx
        .app
        .store
        .run(move |st| st.times(&[&lookup[0], &lookup[1]], since))
        .await
    {
        Ok(r) => r,
        Err(e) => return ctx.internal_error("reading password failures failed", e),
    };
    let gate = throttle::password_gate(&recent[0], limits.password_failures_per_account, now).and(
        throttle::password_gate(&recent[1], limits.password_failures_per_ip, now),
    );
    if let Err(retry_after) = gate {
        audit_attempt(ctx, "login.password_throttled", typed_user).await;
        let minutes = ((retry_after + 59) / 60).to_string();
        let message = ctx.t().err_throttled.replace("{n}", &minutes);
        let mut r = form(ctx, StatusCode::TOO_MANY_REQUESTS, &s, typed_user, None, Some(&message));
        if let Ok(v) = http::HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return r;
    }

    let cfg = ctx.cfg.clone();
    let account = cfg
        .user(typed_user)
        .filter(|_| password.len() <= MAX_PASSWORD_BYTES)
        .cloned();
    let verified = ctx
        .app
        .passwords
        .verify(password, account.as_ref().map(|u| u.password_hash.as_str()))
        .await;
    let Some(verified) = verified else {
        return ctx.error_page(StatusCode::SERVICE_UNAVAILABLE, ctx.t().internal_error);
    };
    let user = match (verified, account) {
        (true, Some(user)) => user,
        _ => {
            let result = ctx
                .app
                .store
                .run(move |st| st.add_time(&[&keys[0], &keys[1]], now, since))
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "counting a password failure failed");
            }
            audit_attempt(ctx, "login.password_failed", typed_user).await;
            // One answer for unknown user and wrong password (REQ-34).
            return form(
                ctx,
                StatusCode::UNAUTHORIZED,
                &s,
                typed_user,
                None,
                Some(ctx.t().err_credentials),
            );
        }
    };
    let uid = user.id.clone();
    if let Err(e) = ctx.app.store.run(move |st| st.clear_failures(&uid, false, true)).await {
        tracing::error!(error = %e, "clearing password failures failed");
    }

    let next_state = if !user.two_factor {
        SessionState::Full {
            user: user.id.clone(),
            auth_time: now,
        }
    } else {
        let uid = user.id.clone();
        let found = ctx
            .app
            .store
            .run(move |st| Ok((st.authenticator(&uid)?, st.reenroll_binding(&uid)?)))
            .await;
        match found {
            Ok((Some(_), _)) => SessionState::PendingCode { user: user.id.clone() },
            // REQ-50: right after a self-service reset, only the browser that confirmed
            // it may register the new authenticator.
            Ok((None, binding)) => {
                let cookie = session::read_cookie(&ctx.headers, reset::BROWSER_COOKIE);
                if !reset::may_enroll(binding.as_ref(), cookie, now) {
                    ctx.audit("enroll.refused_other_browser", Some(&user.id), None).await;
                    return form(
                        ctx,
                        StatusCode::FORBIDDEN,
                        &s,
                        typed_user,
                        None,
                        Some(ctx.t().reenroll_elsewhere),
                    );
                }
                SessionState::PendingEnroll { user: user.id.clone() }
            }
            Err(e) => return ctx.internal_error("reading an authenticator failed", e),
        }
    };
    let event = if matches!(next_state, SessionState::Full { .. }) {
        "login.success"
    } else {
        "login.password_ok"
    };
    ctx.audit(event, Some(&user.id), None).await;
    let next = s.step_up(next_state, ctx.app.rng(), now);
    let location = next_location(&next);
    ctx.step_to(Some(&id), next, &location).await
}
