//! The front door: one decision per request. A gateway screen (`/_kanmon/…`), a
//! forwarded request (full session), or the way to the login (redirect or 401).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::auth::host;
use crate::auth::path::NormalizedPath;
use crate::auth::redirect::SameSitePath;
use crate::auth::session::{self, LANG_COOKIE};
use crate::auth::{client, csrf};
use crate::i18n::Lang;
use crate::live;
use crate::pages::{self, Ctx, LOGIN_PATH};
use crate::proxy::{Forward, Forwarded, ProxyError, StopSignal, is_websocket_upgrade};
use crate::web::{self, Body};

#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Raised when an HTTP/1.1 request head on this connection had both lengths.
    pub ambiguous: Option<Arc<AtomicBool>>,
}

impl ConnInfo {
    fn saw_ambiguous_framing(&self) -> bool {
        self.ambiguous.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

pub async fn handle(app: Arc<App>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = app.next_request_id();
    let method = req.method().clone();
    let path_for_log = req.uri().path().to_owned();
    let peer = conn.peer;
    let (mut resp, user) = decide(app.clone(), conn, &request_id, req).await;
    if method == Method::HEAD {
        head_without_body(&mut resp);
    }
    app.metrics.response(resp.status().as_u16());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let upstream_micros = resp.extensions().get::<UpstreamTime>().map(|t| t.0.as_micros() as u64);
    // Streamed bodies have no length up front; the log says so rather than guess.
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    // Query strings, cookies and authorization headers are never logged: they may
    // carry tokens.
    tracing::info!(
        target: "kanmon::access",
        request_id = %request_id, peer = %peer.ip(), method = %method, path = %path_for_log,
        status = resp.status().as_u16(), bytes = %bytes, user = user.as_deref().unwrap_or("-"),
        micros = started.elapsed().as_micros() as u64, upstream_micros = ?upstream_micros,
    );
    resp
}

/// A HEAD answer has the GET answer's headers and no body. hyper drops the body itself
/// on HTTP/1.1 but sends it on HTTP/2, where a client resets the stream on it (found
/// by the route walk in tests/it/security.rs). The length stays what a GET would get.
fn head_without_body(resp: &mut Response<Body>) {
    use http_body::Body as _;
    if let Some(len) = resp.body().size_hint().exact().filter(|n| *n > 0)
        && !resp.headers().contains_key(header::CONTENT_LENGTH)
    {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    *resp.body_mut() = web::empty();
}

/// Time until the upstream's response headers, carried to the access log.
#[derive(Debug, Clone, Copy)]
struct UpstreamTime(std::time::Duration);

async fn decide(
    app: Arc<App>,
    conn: ConnInfo,
    request_id: &str,
    req: Request<Incoming>,
) -> (Response<Body>, Option<String>) {
    let cfg = app.config();
    let headers = req.headers();
    let lang_param = web::query_param(req.uri(), "lang").and_then(|l| Lang::parse(&l));
    let lang = lang_param.unwrap_or_else(|| {
        Lang::negotiate(
            session::read_cookie(headers, LANG_COOKIE),
            headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
            cfg.default_lang,
        )
    });
    // Behind a trusted proxy, the client and the host it used come from its headers.
    let client_ip = client::client_ip(conn.peer.ip(), headers, &cfg.trusted_proxies);
    let host = match client::forwarded_host(conn.peer.ip(), headers, &cfg.trusted_proxies) {
        Some(h) => http::HeaderValue::from_str(&h).ok().and_then(|v| {
            let mut only = http::HeaderMap::new();
            only.insert(header::HOST, v);
            host::check(&http::Uri::from_static("/"), &only, &cfg.allowed_hosts)
        }),
        None => host::check(req.uri(), headers, &cfg.allowed_hosts),
    };
    let ctx = Ctx {
        app: app.clone(),
        cfg: cfg.clone(),
        host: host.clone(),
        lang,
        lang_chosen: lang_param.is_some(),
        client_ip,
        request_id: request_id.to_owned(),
        uri: req.uri().clone(),
        headers: headers.clone(),
    };
    // REQ-37: nothing runs for a host we do not answer to; REQ-65: nor for a request
    // whose length two servers could read differently.
    let Some(host) = host.filter(|_| !web::ambiguous_framing(headers) && !conn.saw_ambiguous_framing()) else {
        return (
            secured(ctx.error_page(StatusCode::BAD_REQUEST, ctx.t().bad_request)),
            None,
        );
    };
    let Ok(path) = NormalizedPath::parse(req.uri().path()) else {
        return (
            secured(ctx.error_page(StatusCode::BAD_REQUEST, ctx.t().bad_request)),
            None,
        );
    };
    if path.is_reserved() {
        let route = path.gateway_route().unwrap_or("").to_owned();
        return (secured(pages::route(ctx, &route, req).await), None);
    }

    // Skip-auth paths (public assets the config names) go through without identity.
    if cfg
        .upstream
        .skip_auth
        .iter()
        .any(|p| path.as_str().starts_with(p.as_str()))
    {
        let never: StopSignal = Box::pin(std::future::pending());
        let f = Forward {
            path: &path,
            user: None,
            client_ip,
            host: &host,
            stop: never,
        };
        return (forwarded(&ctx, app.proxy.forward(&cfg, req, f).await), None);
    }

    let session = app.session(headers).await;
    // REQ-25: a half-done login reaches nothing but its own step.
    if let Some((_, pending)) = session.as_ref().filter(|(_, s)| !s.is_full() && s.user().is_some())
        && is_navigation(&req)
    {
        return (secured(web::see_other(&pages::next_location(pending))), None);
    }
    let full = session.filter(|(_, s)| s.is_full());
    let user = full
        .as_ref()
        .and_then(|(_, s)| s.user())
        .and_then(|u| cfg.user(u).cloned());
    let (Some((id, _)), Some(user)) = (full, user) else {
        return (secured(login_required(&ctx, &req, &path)), None);
    };
    // REQ-66: a WebSocket only from a page of our own hosts.
    if is_websocket_upgrade(&req) && !csrf::websocket_origin_allowed(headers, &cfg.allowed_hosts) {
        return (
            secured(ctx.error_page(StatusCode::FORBIDDEN, ctx.t().forbidden)),
            Some(user.id.clone()),
        );
    }
    let stop: StopSignal = Box::pin(live::session_ended(app.clone(), id));
    let f = Forward {
        path: &path,
        user: Some(&user),
        client_ip,
        host: &host,
        stop,
    };
    let resp = forwarded(&ctx, app.proxy.forward(&cfg, req, f).await);
    (resp, Some(user.id.clone()))
}

/// The upstream's answer, or the 502/504 page (REQ-69: no address, no error text).
fn forwarded(ctx: &Ctx, result: Result<Forwarded, ProxyError>) -> Response<Body> {
    match result {
        Ok(f) => {
            ctx.app.metrics.upstream_latency(f.upstream_time);
            let mut resp = f.response;
            resp.extensions_mut().insert(UpstreamTime(f.upstream_time));
            resp
        }
        Err(e) => {
            let (status, message) = match e {
                ProxyError::Unreachable => (StatusCode::BAD_GATEWAY, ctx.t().bad_gateway),
                ProxyError::Timeout => (StatusCode::GATEWAY_TIMEOUT, ctx.t().gateway_timeout),
                ProxyError::BadRequestBody => (StatusCode::BAD_REQUEST, ctx.t().bad_request),
            };
            tracing::warn!(request_id = %ctx.request_id, ?e, "upstream failed");
            secured(ctx.error_page(status, message))
        }
    }
}

fn secured(mut resp: Response<Body>) -> Response<Body> {
    web::secure_headers(&mut resp);
    resp
}

/// G-1: a browser navigation goes to the login screen and comes back afterwards;
/// anything else (XHR, fetch, API, POST) gets 401 with a small JSON body (REQ-68).
fn login_required(ctx: &Ctx, req: &Request<Incoming>, path: &NormalizedPath) -> Response<Body> {
    if is_navigation(req) {
        let target = match req.uri().query() {
            Some(q) => format!("{}?{q}", path.as_str()),
            None => path.as_str().to_owned(),
        };
        let mut location = LOGIN_PATH.to_owned();
        if let Some(rd) = SameSitePath::parse(&target).filter(|p| p.as_str() != "/") {
            location.push_str("?rd=");
            location.push_str(&form_urlencoded::byte_serialize(rd.as_str().as_bytes()).collect::<String>());
        }
        return web::see_other(&location);
    }
    web::json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "error": "unauthorized", "message": ctx.t().unauthorized_json, "login": LOGIN_PATH }),
    )
}

fn is_navigation(req: &Request<Incoming>) -> bool {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let h = req.headers();
    let mode = h.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    if let Some(mode) = mode {
        return mode == "navigate";
    }
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}
