//! The administrators' status page (REQ-52 … REQ-54): accounts (paged, searchable),
//! the audit trail, the gateway's health, and the actions on an account as
//! CSRF-protected POSTs that need a recent authentication (step-up). Who may do what
//! is decided in `auth::admin`; the actions themselves are `crate::admin`'s.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use minijinja::Value;
use serde::Serialize;

use super::Ctx;
use super::code::{check_code, tell_lock};
use crate::admin::{self, AccountStatus, Actor, AdminError, Command};
use crate::audit;
use crate::auth::admin::{AdminSession, admin_of, step_up_fresh};
use crate::auth::session::{Session, SessionId, SessionState};
use crate::auth::throttle;
use crate::auth::totp::{Code, Verdict};
use crate::clock::parse_utc;
use crate::config::User;
use crate::i18n::Text;
use crate::mail::format_utc;
use crate::status;
use crate::store::{self, AuditEvent, AuditFilter};
use crate::web::{self, Body};

pub const ADMIN_PATH: &str = "/_kanmon/admin";
const PAGE_SIZE: usize = 50;
const AUDIT_ROWS: usize = 100;

/// Every path under `/_kanmon/admin`: anyone but an administrator gets 403 first.
pub async fn route(ctx: &Ctx, sub: &str, req: Request<Incoming>) -> Response<Body> {
    let current = ctx.session().await;
    let granted = current
        .as_ref()
        .and_then(|(_, s)| admin_of(s, &ctx.cfg))
        .zip(current.as_ref());
    let Some((admin, (id, session))) = granted else {
        if let Some(user) = current.as_ref().and_then(|(_, s)| s.user()) {
            ctx.audit("admin.denied", Some(user), None).await;
        }
        return ctx.error_page(StatusCode::FORBIDDEN, ctx.t().forbidden);
    };
    match (sub, req.method()) {
        ("", &Method::GET | &Method::HEAD) => {
            let notice = done_notice(ctx);
            show(ctx, session, &admin, View::ok(notice)).await
        }
        ("action", &Method::POST) => action(ctx, req, session, &admin).await,
        ("reauth", &Method::POST) => reauth(ctx, req, id, session, &admin).await,
        ("" | "action" | "reauth", _) => ctx.error_page(StatusCode::METHOD_NOT_ALLOWED, ctx.t().bad_request),
        _ => ctx.error_page(StatusCode::NOT_FOUND, ctx.t().not_found),
    }
}

/// How the page is shown besides its data.
struct View {
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    /// Show the re-authentication form (step-up).
    challenge: bool,
}

impl View {
    fn ok(notice: Option<String>) -> View {
        View {
            status: StatusCode::OK,
            notice,
            error: None,
            challenge: false,
        }
    }

    fn error(status: StatusCode, error: &str) -> View {
        View {
            status,
            notice: None,
            error: Some(error.to_owned()),
            challenge: false,
        }
    }

    fn challenge(error: Option<&str>) -> View {
        View {
            status: StatusCode::UNAUTHORIZED,
            notice: None,
            error: error.map(str::to_owned),
            challenge: true,
        }
    }
}

/// The words for an action, also used to confirm it after the redirect.
fn action_label<'a>(t: &'a Text, action: &str) -> Option<&'a str> {
    match action {
        "reset-2fa" => Some(t.action_reset),
        "unlock" => Some(t.action_unlock),
        "logout" => Some(t.action_logout),
        _ => None,
    }
}

fn done_notice(ctx: &Ctx) -> Option<String> {
    let t = ctx.t();
    let done = web::query_param(&ctx.uri, "done")?;
    if done == "reauth" {
        return Some(t.admin_reauthenticated.to_owned());
    }
    let label = action_label(t, &done)?;
    let user = web::query_param(&ctx.uri, "user").unwrap_or_default();
    Some(t.admin_done.replace("{what}", &format!("{label} ({user})")))
}

#[derive(Serialize)]
struct Row {
    id: String,
    email: String,
    role: String,
    two_factor: bool,
    authenticator: &'static str,
    locked: String,
    failures: u32,
    last_login: String,
    sessions: usize,
    is_self: bool,
}

#[derive(Serialize)]
struct AuditRow {
    time: String,
    event: String,
    user: String,
    actor: String,
    ip: String,
    user_agent: String,
    outcome: String,
    detail: String,
}

fn row(t: &Text, a: AccountStatus, admin: &AdminSession) -> Row {
    Row {
        is_self: a.id.eq_ignore_ascii_case(&admin.id),
        authenticator: match (a.authenticator, a.pending_enrollment) {
            (true, _) => t.associated,
            (false, true) => t.enrolling,
            (false, false) => t.not_associated,
        },
        locked: match (a.locked, a.slowed_until) {
            (true, _) => t.yes.to_owned(),
            (false, Some(until)) => t.slowed_until.replace("{time}", &format_utc(until)),
            (false, None) => t.no.to_owned(),
        },
        last_login: a.last_login.map_or_else(|| t.never.to_owned(), format_utc),
        id: a.id,
        email: a.email,
        role: a.role,
        two_factor: a.two_factor,
        failures: a.code_failures,
        sessions: a.open_sessions,
    }
}

fn audit_row(e: AuditEvent) -> AuditRow {
    let dash = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".to_owned());
    AuditRow {
        time: format_utc(e.time),
        event: e.event,
        user: dash(e.user),
        actor: dash(Some(e.actor)),
        ip: dash(e.ip),
        user_agent: dash(e.user_agent),
        outcome: dash(Some(e.outcome)),
        detail: dash(e.detail),
    }
}

/// The accounts matching the search (ID or e-mail, case-insensitive), in ID order.
fn search(ctx: &Ctx, q: &str) -> Vec<Arc<User>> {
    let q = q.to_lowercase();
    ctx.cfg
        .users()
        .filter(|u| q.is_empty() || u.id.to_lowercase().contains(&q) || u.email.to_lowercase().contains(&q))
        .cloned()
        .collect()
}

fn page_url(q: &str, page: usize) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if !q.is_empty() {
        s.append_pair("q", q);
    }
    s.append_pair("page", &page.to_string());
    format!("{ADMIN_PATH}?{}", s.finish())
}

fn param(ctx: &Ctx, name: &str) -> String {
    web::query_param(&ctx.uri, name).unwrap_or_default().trim().to_owned()
}

async fn show(ctx: &Ctx, s: &Session, admin: &AdminSession, view: View) -> Response<Body> {
    let t = ctx.t();
    let q = param(ctx, "q");
    let matching = search(ctx, &q);
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = param(ctx, "page").parse::<usize>().unwrap_or(1).clamp(1, pages);
    let shown = &matching[(page - 1) * PAGE_SIZE..(page * PAGE_SIZE).min(matching.len())];
    let statuses = match admin::statuses(&ctx.app, shown).await {
        Ok(s) => s,
        Err(e) => return ctx.internal_error("reading account states failed", e),
    };
    let rows: Vec<Row> = statuses.into_iter().map(|a| row(t, a, admin)).collect();

    let (who, event, from, to) = (
        param(ctx, "who"),
        param(ctx, "event"),
        param(ctx, "from"),
        param(ctx, "to"),
    );
    let filter = AuditFilter {
        user: Some(who.clone()).filter(|w| !w.is_empty()),
        event: Some(event.clone()).filter(|e| !e.is_empty()),
        from: parse_utc(&from),
        to: parse_utc(&to),
    };
    let audit = match ctx.app.store.run(move |st| st.query_audit(&filter, AUDIT_ROWS)).await {
        Ok(a) => a.into_iter().map(audit_row).collect::<Vec<_>>(),
        Err(e) => return ctx.internal_error("reading the audit trail failed", e),
    };

    let h = status::health(&ctx.app).await;
    let yes_no = |v: Option<bool>, none: &str| match v {
        Some(true) => t.yes.to_owned(),
        Some(false) => t.no.to_owned(),
        None => none.to_owned(),
    };
    let health = minijinja::context! {
        upstream => yes_no(Some(h.upstream_reachable), t.unknown),
        smtp => match (&h.smtp_server, h.smtp_reachable) {
            (Some(server), r) => format!("{} ({server})", yes_no(r, t.unknown)),
            (None, _) => t.not_configured.to_owned(),
        },
        clock => yes_no(h.clock_synchronised, t.unknown),
        clock_bad => h.clock_synchronised == Some(false),
        cert => h.certificate_expires.map_or_else(|| t.unknown.to_owned(), format_utc),
        config => format_utc(h.config_loaded_at),
    };
    let count = t.admin_accounts_count.replace("{n}", &matching.len().to_string());
    ctx.page(
        view.status,
        "admin.html",
        t.admin_title,
        minijinja::context! {
            wide => true,
            csrf => &s.csrf, admin_id => &admin.id,
            notice => view.notice, error => view.error, challenge => view.challenge,
            q => &q, rows => Value::from(minijinja::value::Serde(&rows)), count => count,
            page_label => t.admin_page.replace("{n}", &page.to_string()).replace("{total}", &pages.to_string()),
            prev_url => (page > 1).then(|| page_url(&q, page - 1)),
            next_url => (page < pages).then(|| page_url(&q, page + 1)),
            who => who, event => event, from => from, to => to, audit => Value::from(minijinja::value::Serde(&audit)),
            health => health,
        },
    )
}

/// An action on an account: CSRF-checked, and only with a recent authentication.
async fn action(ctx: &Ctx, req: Request<Incoming>, s: &Session, admin: &AdminSession) -> Response<Body> {
    let form = match ctx.read_post(req, Some(s)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let t = ctx.t();
    let actor_name = audit::admin_actor(&admin.id);
    let user = form.get("user").unwrap_or("").trim().to_owned();
    let what = form.get("action").unwrap_or("");
    let command = match what {
        "reset-2fa" => Command::Reset2fa {
            user: user.clone(),
            reason: form.get("reason").unwrap_or("").to_owned(),
        },
        "unlock" => Command::Unlock { user: user.clone() },
        "logout" => Command::Logout { user: user.clone() },
        _ => return ctx.error_page(StatusCode::BAD_REQUEST, t.bad_request),
    };
    // REQ-52: the last authentication must be recent; otherwise ask again first.
    if !step_up_fresh(admin.auth_time, ctx.app.now()) {
        ctx.audit_as(
            &actor_name,
            "admin.step_up_required",
            Some(&user).filter(|u| !u.is_empty()).map(String::as_str),
            Some(format!("action: {what}")),
        )
        .await;
        return show(ctx, s, admin, View::challenge(None)).await;
    }
    let actor = Actor {
        name: actor_name,
        admin: Some(admin.id.clone()),
        ip: ctx.ip(),
        user_agent: ctx.user_agent(),
    };
    match admin::run(&ctx.app, &actor, command).await {
        Ok(_) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("done", what).append_pair("user", &user);
            web::see_other(&format!("{ADMIN_PATH}?{}", q.finish()))
        }
        Err(AdminError::UnknownUser(_)) => {
            show(ctx, s, admin, View::error(StatusCode::NOT_FOUND, t.err_unknown_user)).await
        }
        Err(AdminError::NoReason) => {
            show(
                ctx,
                s,
                admin,
                View::error(StatusCode::UNPROCESSABLE_ENTITY, t.err_reason_required),
            )
            .await
        }
        Err(AdminError::OwnAssociation) => {
            ctx.audit_as(
                &actor.name,
                "admin.reset_2fa_refused",
                Some(&admin.id),
                Some("own association".into()),
            )
            .await;
            show(ctx, s, admin, View::error(StatusCode::FORBIDDEN, t.err_own_association)).await
        }
        Err(AdminError::Store(e)) => ctx.internal_error("an administrator's action failed", e),
    }
}

/// Step-up: password and code again; when both are right, the session moves to a new
/// id with a fresh authentication time.
async fn reauth(
    ctx: &Ctx,
    req: Request<Incoming>,
    id: &SessionId,
    s: &Session,
    admin: &AdminSession,
) -> Response<Body> {
    let form = match ctx.read_post(req, Some(s)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let t = ctx.t();
    let now = ctx.app.now();
    let Some(account) = ctx.cfg.user(&admin.id).cloned() else {
        return ctx.error_page(StatusCode::FORBIDDEN, t.forbidden);
    };
    let actor = audit::admin_actor(&account.id);
    // The login's password limit applies here too: a stolen session guesses no faster.
    let key = store::password_key(&account.id);
    let (lookup, since) = (key.clone(), now - throttle::PASSWORD_WINDOW_SECS);
    let recent = match ctx.app.store.run(move |st| st.times(&[&lookup], since)).await {
        Ok(r) => r,
        Err(e) => return ctx.internal_error("reading password failures failed", e),
    };
    let limit = ctx.cfg.limits.password_failures_per_account;
    if throttle::password_gate(&recent[0], limit, now).is_err() {
        ctx.audit_as(&actor, "admin.step_up_throttled", Some(&account.id), None)
            .await;
        return show(ctx, s, admin, View::challenge(Some(t.err_stepup))).await;
    }
    let password = form.get("password").unwrap_or("");
    let verified = ctx
        .app
        .passwords
        .verify(password, Some(&account.password_hash))
        .await
        .unwrap_or(false);
    let verdict = match (verified, Code::parse(form.get("code").unwrap_or(""))) {
        (true, Ok(code)) => match check_code(&ctx.app, &account.id, code, now).await {
            Ok(v) => v,
            Err(e) => return ctx.internal_error("checking a code failed", e),
        },
        _ => None,
    };
    if let Some((_, true)) = verdict {
        tell_lock(ctx, &account.id).await;
    }
    let verdict = verdict.map(|(v, _)| v);
    if let Some(Verdict::Accepted(_)) = verdict {
        let uid = account.id.clone();
        if let Err(e) = ctx.app.store.run(move |st| st.clear_failures(&uid, true, false)).await {
            tracing::error!(error = %e, "clearing after a right code failed");
        }
        ctx.audit_as(&actor, "admin.step_up", Some(&account.id), None).await;
        let next = s.step_up(
            SessionState::Full {
                user: account.id.clone(),
                auth_time: now,
            },
            ctx.app.rng(),
            now,
        );
        return ctx.step_to(Some(id), next, &format!("{ADMIN_PATH}?done=reauth")).await;
    }
    if !verified {
        let result = ctx.app.store.run(move |st| st.add_time(&[&key], now, since)).await;
        if let Err(e) = result {
            tracing::error!(error = %e, "counting a password failure failed");
        }
    }
    let which = if verified { "code" } else { "password" };
    ctx.audit_as(
        &actor,
        "admin.step_up_failed",
        Some(&account.id),
        Some(format!("wrong {which}")),
    )
    .await;
    show(ctx, s, admin, View::challenge(Some(t.err_stepup))).await
}
