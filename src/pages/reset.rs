//! Two-step reset by e-mail (M-10 … M-15): the button on the code screen sends the
//! link; the link's page asks before it acts (a mail scanner's GET removes nothing,
//! REQ-41); its POST removes the association, ends every session of the account and
//! sends the user back to the login screen to enroll again.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::code;
use super::{Ctx, LOGIN_PATH};
use crate::auth::csrf;
use crate::auth::reset::{self, BROWSER_COOKIE, Refusal, Secret};
use crate::auth::session::{self, SessionState};
use crate::mail::{self, Notice};
use crate::store::{ReenrollBinding, ResetToken};
use crate::web::{self, Body, FormError};

const HOUR: i64 = 3600;

/// Whether the flow exists at all: switched on, and mail can be sent.
pub fn enabled(ctx: &Ctx) -> bool {
    ctx.cfg.reset.self_service && ctx.app.mailer().is_some()
}

pub async fn route(ctx: &Ctx, sub: &str, req: Request<Incoming>) -> Response<Body> {
    if !enabled(ctx) {
        return ctx.error_page(StatusCode::NOT_FOUND, ctx.t().not_found);
    }
    match (sub, req.method()) {
        ("", &Method::POST) => request(ctx, req).await,
        // The screen that answers the button's POST is at this address, so its language
        // switch (`?lang=`, remembered by the router's cookie) and a browser coming back
        // to it land here: they get the code screen, not an error.
        ("", &Method::GET | &Method::HEAD) => web::see_other(super::CODE_PATH),
        ("confirm", &Method::GET | &Method::HEAD) => confirm_page(ctx).await,
        ("confirm", &Method::POST) => confirm(ctx, req).await,
        ("" | "confirm", _) => ctx.error_page(StatusCode::METHOD_NOT_ALLOWED, ctx.t().bad_request),
        _ => ctx.error_page(StatusCode::NOT_FOUND, ctx.t().not_found),
    }
}

/// M-12: the button on the code screen. Nothing is removed yet (M-13).
async fn request(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let Some((_, s)) = ctx
        .session()
        .await
        .filter(|(_, s)| matches!(s.state, SessionState::PendingCode { .. }))
    else {
        return web::see_other(&super::login_with("expired"));
    };
    if let Err(r) = ctx.read_post(req, Some(&s)).await {
        return r;
    }
    let Some(account) = s.user().and_then(|u| ctx.cfg.user(u)).cloned() else {
        return web::see_other(LOGIN_PATH);
    };
    let (Some(host), Some(mailer)) = (ctx.host.clone(), ctx.app.mailer()) else {
        return ctx.error_page(StatusCode::NOT_FOUND, ctx.t().not_found);
    };
    let now = ctx.app.now();
    let uid = account.id.clone();
    let enrolled_at = match ctx.app.store.run(move |st| st.authenticator(&uid)).await {
        Ok(Some(a)) => a.enrolled_at,
        Ok(None) => return web::see_other(LOGIN_PATH),
        Err(e) => return ctx.internal_error("reading an authenticator failed", e),
    };

    // REQ-45: a few mails per account and per address an hour; over that a neutral word.
    let limits = &ctx.cfg.reset;
    let (user_key, ip_key) = (
        format!("reset-user:{}", account.id.to_lowercase()),
        format!("reset-ip:{}", ctx.client_ip),
    );
    let keys = [
        (user_key.as_str(), limits.max_per_account_per_hour),
        (ip_key.as_str(), limits.max_per_ip_per_hour),
    ];
    let keys: Vec<(String, usize)> = keys.iter().map(|(k, m)| (k.to_string(), *m)).collect();
    let allowed = ctx
        .app
        .store
        .run(move |st| {
            let keys: Vec<(&str, usize)> = keys.iter().map(|(k, m)| (k.as_str(), *m)).collect();
            st.rate_take(&keys, now, now - HOUR)
        })
        .await;
    match allowed {
        Ok(true) => {}
        Ok(false) => {
            ctx.audit("reset.limited", Some(&account.id), None).await;
            return code::form(
                ctx,
                StatusCode::TOO_MANY_REQUESTS,
                &s,
                None,
                Some(ctx.t().reset_limited.to_owned()),
            );
        }
        Err(e) => return ctx.internal_error("counting reset requests failed", e),
    }

    let token = Secret::generate(ctx.app.rng());
    let browser = Secret::generate(ctx.app.rng());
    let record = ResetToken {
        user: account.id.clone(),
        expires: now + limits.link_lifetime_secs,
        enrolled_at,
        browser: browser.hash_hex(),
    };
    let hash = token.hash();
    if let Err(e) = ctx.app.store.run(move |st| st.put_reset_token(&hash, &record)).await {
        return ctx.internal_error("storing a reset token failed", e);
    }
    let minutes = limits.link_lifetime_secs / 60;
    let origin = ctx.origin();
    let mail = mail::reset_mail(
        &ctx.app.render,
        ctx.lang,
        &account.id,
        &reset::link(&host, &token),
        minutes,
        &origin,
    );
    if let Err(e) = mailer.send(&account.email, mail).await {
        // SMTP trouble: the link of a mail that did not go out is void; nothing changes.
        let uid = account.id.clone();
        let _ = ctx.app.store.run(move |st| st.delete_reset_tokens(&uid)).await;
        ctx.audit("reset.mail_failed", Some(&account.id), Some(e.to_string()))
            .await;
        return code::form(
            ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            &s,
            Some(ctx.t().reset_mail_failed.to_owned()),
            None,
        );
    }
    ctx.audit("reset.requested", Some(&account.id), None).await;
    let notice = ctx
        .t()
        .reset_sent
        .replace("{email}", &reset::mask_email(&account.email))
        .replace("{minutes}", &minutes.to_string());
    let mut r = code::form(ctx, StatusCode::OK, &s, None, Some(notice));
    web::add_cookie(&mut r, &reset::browser_cookie(&browser, limits.link_lifetime_secs));
    r
}

fn token_from_query(ctx: &Ctx) -> Option<Secret> {
    web::query_param(&ctx.uri, "t").and_then(|t| Secret::parse(&t))
}

/// REQ-41: opening the link changes nothing; it asks.
async fn confirm_page(ctx: &Ctx) -> Response<Body> {
    let Some(token) = token_from_query(ctx) else {
        return page(ctx, StatusCode::GONE, None, Some(Refusal::Invalid));
    };
    let hash = token.hash();
    let found = ctx
        .app
        .store
        .run(move |st| {
            let t = st.reset_token(&hash)?;
            let a = match &t {
                Some(t) => st.authenticator(&t.user)?,
                None => None,
            };
            Ok((t, a))
        })
        .await;
    let (record, current) = match found {
        Ok(f) => f,
        Err(e) => return ctx.internal_error("reading a reset token failed", e),
    };
    let cookie = session::read_cookie(&ctx.headers, BROWSER_COOKIE);
    let verdict = reset::check(
        record.as_ref(),
        current.as_ref(),
        cookie,
        ctx.cfg.reset.same_browser,
        ctx.app.now(),
    );
    match verdict {
        Ok(()) => page(ctx, StatusCode::OK, record.map(|r| (r.user, token)), None),
        Err(Refusal::OtherBrowser) => page(ctx, StatusCode::FORBIDDEN, None, Some(Refusal::OtherBrowser)),
        Err(Refusal::Invalid) => page(ctx, StatusCode::GONE, None, Some(Refusal::Invalid)),
    }
}

fn page(ctx: &Ctx, status: StatusCode, ask: Option<(String, Secret)>, refusal: Option<Refusal>) -> Response<Body> {
    let t = ctx.t();
    let message = match refusal {
        Some(Refusal::OtherBrowser) => Some(t.reset_other_browser),
        Some(Refusal::Invalid) => Some(t.reset_invalid),
        None => None,
    };
    let (question, token) = match &ask {
        Some((user, token)) => (
            Some(t.reset_confirm_question.replace("{user}", user)),
            Some(token.as_str()),
        ),
        None => (None, None),
    };
    ctx.page(
        status,
        "reset_confirm.html",
        t.reset_confirm_title,
        minijinja::context! { question => question, token => token, message => message },
    )
}

/// The POST from the confirmation page: removes the association (M-15).
async fn confirm(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    if !ctx.host.as_ref().is_some_and(|h| csrf::same_origin(&ctx.headers, h)) {
        return ctx.error_page(StatusCode::FORBIDDEN, ctx.t().err_form);
    }
    // The token itself is the form's secret: only the mail's reader knows it.
    let form = match web::read_form(req, ctx.cfg.limits.max_form_bytes).await {
        Ok(f) => f,
        Err(FormError::TooLarge) => return ctx.error_page(StatusCode::PAYLOAD_TOO_LARGE, ctx.t().payload_too_large),
        Err(_) => return ctx.error_page(StatusCode::BAD_REQUEST, ctx.t().bad_request),
    };
    let Some(token) = form.get("t").and_then(Secret::parse) else {
        return page(ctx, StatusCode::GONE, None, Some(Refusal::Invalid));
    };
    let cookie = session::read_cookie(&ctx.headers, BROWSER_COOKIE).map(str::to_owned);
    let (now, same_browser, window) = (
        ctx.app.now(),
        ctx.cfg.reset.same_browser,
        ctx.cfg.reset.link_lifetime_secs,
    );
    let hash = token.hash();
    let binding_browser = cookie
        .as_deref()
        .and_then(Secret::parse)
        .map(|c| c.hash_hex())
        .unwrap_or_default();
    let outcome = ctx
        .app
        .store
        .run(move |st| {
            st.consume_reset_token(&hash, |record, current| {
                reset::check(record, current, cookie.as_deref(), same_browser, now).map(|()| ReenrollBinding {
                    browser: binding_browser,
                    until: now + window,
                })
            })
        })
        .await;
    let record = match outcome {
        Ok(Ok(record)) => record,
        Ok(Err(Refusal::OtherBrowser)) => return page(ctx, StatusCode::FORBIDDEN, None, Some(Refusal::OtherBrowser)),
        Ok(Err(Refusal::Invalid)) => return page(ctx, StatusCode::GONE, None, Some(Refusal::Invalid)),
        Err(e) => return ctx.internal_error("resetting two-step authentication failed", e),
    };
    // REQ-47: every session of the account ends, live connections included.
    ctx.app.end_user_sessions(&record.user).await;
    ctx.audit("reset.completed", Some(&record.user), None).await;
    ctx.app.notify(&record.user, Notice::ResetDone, ctx.lang, ctx.origin());
    // A token-free address after the POST (REQ-44).
    let mut r = web::see_other(&super::login_with("reset_done"));
    web::add_cookie(&mut r, &session::clear_session_cookie());
    r
}
