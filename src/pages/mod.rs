//! The gateway's own screens under `/_kanmon/`. Each module parses its form, asks
//! `auth` for the decision, and renders its template; none of them forwards anything.

mod admin;
mod code;
mod enroll;
mod health;
mod login;
mod logout;
mod reset;

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use minijinja::Value;

use crate::app::App;
use crate::auth::host::AllowedHost;
use crate::auth::session::{self, Session, SessionId};
use crate::auth::{csrf, redirect::SameSitePath};
use crate::config::Config;
use crate::i18n::{Lang, Text};
use crate::render::{CLOCK_SCRIPT, STYLESHEET};
use crate::web::{self, Body, Form, FormError};

pub const LOGIN_PATH: &str = "/_kanmon/login";
pub const ENROLL_PATH: &str = "/_kanmon/enroll";
pub const CODE_PATH: &str = "/_kanmon/code";
pub const LOGOUT_PATH: &str = "/_kanmon/logout";

/// Every route of the gateway's own screens, relative to `/_kanmon/`. [`route`] answers
/// 404 to anything not listed here before it looks further, so this list is the whole
/// surface, and the tests walk it (REQ-22, REQ-31, REQ-58, REQ-59).
pub const ROUTES: &[&str] = &[
    "login",
    "enroll",
    "code",
    "logout",
    "healthz",
    "static/kanmon.css",
    "static/clock.js",
    "reset",
    "reset/confirm",
    "admin",
    "admin/action",
    "admin/reauth",
];

/// What every screen needs to know about the request it answers.
pub struct Ctx {
    pub app: Arc<App>,
    pub cfg: Arc<Config>,
    /// `None` only while a request with a foreign Host is being refused.
    pub host: Option<AllowedHost>,
    pub lang: Lang,
    /// Set when the user picked a language with `?lang=`: remembered in a cookie.
    pub lang_chosen: bool,
    pub client_ip: IpAddr,
    pub request_id: String,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
}

impl Ctx {
    pub fn t(&self) -> &'static Text {
        self.lang.text()
    }

    /// A full page in the user's language, with the language switch pointing at the
    /// same screen.
    pub fn page(&self, status: StatusCode, template: &str, title: &str, extra: Value) -> Response<Body> {
        let other = if self.lang == Lang::Ja { Lang::En } else { Lang::Ja };
        let base = minijinja::context! {
            t => Value::from(minijinja::value::Serde(self.t())),
            issuer => &self.cfg.issuer,
            title => title,
            switch_url => self.switch_url(other),
            other_lang => other.code(),
        };
        let html = self
            .app
            .render
            .render(template, minijinja::context! { ..extra, ..base });
        web::html(status, html)
    }

    fn switch_url(&self, to: Lang) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(query) = self.uri.query() {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k != "lang" {
                    q.append_pair(&k, &v);
                }
            }
        }
        q.append_pair("lang", to.code());
        format!("{}?{}", self.uri.path(), q.finish())
    }

    pub fn error_page(&self, status: StatusCode, message: &str) -> Response<Body> {
        self.page(
            status,
            "error.html",
            self.t().error_title,
            minijinja::context! { status => status.as_u16(), message => message, request_id => &self.request_id },
        )
    }

    pub async fn session(&self) -> Option<(SessionId, Session)> {
        self.app.session(&self.headers).await
    }

    pub fn ip(&self) -> Option<String> {
        Some(self.client_ip.to_string())
    }

    pub fn user_agent(&self) -> Option<String> {
        self.headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(crate::audit::clean_user_agent)
    }

    /// Records an event caused at the screens, with this request's address and browser.
    pub async fn audit(&self, event: &str, user: Option<&str>, detail: Option<String>) {
        self.audit_as(crate::audit::BROWSER, event, user, detail).await;
    }

    pub async fn audit_as(&self, actor: &str, event: &str, user: Option<&str>, detail: Option<String>) {
        self.app
            .record(crate::store::AuditEvent {
                time: self.app.now(),
                event: event.to_owned(),
                user: user.map(str::to_owned),
                ip: self.ip(),
                detail,
                actor: actor.to_owned(),
                user_agent: self.user_agent(),
                outcome: crate::audit::outcome_of(event).to_owned(),
            })
            .await;
    }

    /// Time, address and browser of this request, for security e-mails.
    pub fn origin(&self) -> crate::mail::Origin {
        let user_agent = self.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
        crate::mail::Origin::new(self.app.now(), &self.client_ip.to_string(), user_agent)
    }

    /// A POST of this session's form: right content type and size, same origin, and
    /// the session's form token (REQ-33).
    pub async fn read_post(&self, req: Request<Incoming>, session: Option<&Session>) -> Result<Form, Response<Body>> {
        if !self.host.as_ref().is_some_and(|h| csrf::same_origin(&self.headers, h)) {
            return Err(self.error_page(StatusCode::FORBIDDEN, self.t().err_form));
        }
        let form = match web::read_form(req, self.cfg.limits.max_form_bytes).await {
            Ok(f) => f,
            Err(FormError::TooLarge) => {
                return Err(self.error_page(StatusCode::PAYLOAD_TOO_LARGE, self.t().payload_too_large));
            }
            Err(FormError::WrongType | FormError::Unreadable) => {
                return Err(self.error_page(StatusCode::BAD_REQUEST, self.t().bad_request));
            }
        };
        let token_ok = session.is_some_and(|s| csrf::token_matches(&s.csrf, form.get("csrf").unwrap_or("")));
        if !token_ok {
            return Err(self.error_page(StatusCode::FORBIDDEN, self.t().err_form));
        }
        Ok(form)
    }

    /// Stores `next` under a fresh id (dropping `old`) and answers with a redirect that
    /// sets the new cookie.
    pub async fn step_to(&self, old: Option<&SessionId>, next: Session, location: &str) -> Response<Body> {
        let id = SessionId::generate(self.app.rng());
        let (old_key, new_key) = (old.map(SessionId::key), id.key());
        match self
            .app
            .store
            .run(move |s| s.replace_session(old_key.as_ref(), &new_key, &next))
            .await
        {
            Ok(()) => {
                let mut r = web::see_other(location);
                web::add_cookie(&mut r, &session::session_cookie(&id));
                r
            }
            Err(e) => {
                tracing::error!(error = %e, request_id = %self.request_id, "storing a session failed");
                self.error_page(StatusCode::INTERNAL_SERVER_ERROR, self.t().internal_error)
            }
        }
    }

    pub fn internal_error(&self, what: &str, e: impl std::fmt::Display) -> Response<Body> {
        tracing::error!(error = %e, request_id = %self.request_id, "{what}");
        self.error_page(StatusCode::INTERNAL_SERVER_ERROR, self.t().internal_error)
    }
}

/// Dispatches a request under the reserved prefix.
pub async fn route(ctx: Ctx, route: &str, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let mut resp = match (route, &method) {
        // Only what is listed in ROUTES exists; under `admin/` the status page answers
        // itself, so that a non-administrator gets 403 on every path there.
        (r, _) if !ROUTES.contains(&r) && !r.starts_with("admin/") => {
            ctx.error_page(StatusCode::NOT_FOUND, ctx.t().not_found)
        }
        ("login", &Method::GET | &Method::HEAD) => login::show(&ctx).await,
        ("login", &Method::POST) => login::submit(&ctx, req).await,
        ("enroll", &Method::GET | &Method::HEAD) => enroll::show(&ctx).await,
        ("enroll", &Method::POST) => enroll::submit(&ctx, req).await,
        ("code", &Method::GET | &Method::HEAD) => code::show(&ctx).await,
        ("code", &Method::POST) => code::submit(&ctx, req).await,
        ("logout", &Method::GET | &Method::HEAD) => logout::show(&ctx).await,
        ("logout", &Method::POST) => logout::submit(&ctx, req).await,
        ("healthz", &Method::GET | &Method::HEAD) => health::healthz(&ctx).await,
        ("reset", _) => reset::route(&ctx, "", req).await,
        ("reset/confirm", _) => reset::route(&ctx, "confirm", req).await,
        ("admin", _) => admin::route(&ctx, "", req).await,
        (r, _) if r.starts_with("admin/") => admin::route(&ctx, &r["admin/".len()..], req).await,
        ("static/clock.js", &Method::GET | &Method::HEAD) => {
            let mut r = web::text(StatusCode::OK, "text/javascript; charset=utf-8", CLOCK_SCRIPT);
            web::secure_headers(&mut r);
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=3600"),
            );
            return r;
        }
        ("static/kanmon.css", &Method::GET | &Method::HEAD) => {
            let mut r = web::text(StatusCode::OK, "text/css; charset=utf-8", STYLESHEET);
            web::secure_headers(&mut r);
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=3600"),
            );
            return r;
        }
        ("login" | "enroll" | "code" | "logout" | "healthz" | "static/kanmon.css" | "static/clock.js", _) => {
            let mut r = ctx.error_page(StatusCode::METHOD_NOT_ALLOWED, ctx.t().bad_request);
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD, POST"));
            r
        }
        _ => ctx.error_page(StatusCode::NOT_FOUND, ctx.t().not_found),
    };
    if ctx.lang_chosen {
        web::add_cookie(&mut resp, &session::lang_cookie(ctx.lang));
    }
    resp
}

/// Where a login that has just stepped up goes next.
pub fn next_location(session: &Session) -> String {
    use crate::auth::session::SessionState::*;
    match &session.state {
        PendingPassword => LOGIN_PATH.to_owned(),
        PendingEnroll { .. } => ENROLL_PATH.to_owned(),
        PendingCode { .. } => CODE_PATH.to_owned(),
        Full { .. } => SameSitePath::parse(&session.redirect_target())
            .unwrap_or_else(SameSitePath::root)
            .as_str()
            .to_owned(),
    }
}

/// The login screen's address with a message code, for screens that end a login.
pub fn login_with(notice: &str) -> String {
    format!("{LOGIN_PATH}?notice={notice}")
}
