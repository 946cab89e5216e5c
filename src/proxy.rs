//! Forwarding to the upstream. Knows nothing of login screens: it is handed a request
//! that the gateway has already let through and the user it belongs to. Header hygiene
//! both ways (REQ-62, REQ-63, REQ-67), bodies streamed, upstream errors reduced to
//! "unreachable" or "too slow" (REQ-69).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::auth::host::AllowedHost;
use crate::auth::path::NormalizedPath;
use crate::auth::session::COOKIE_PREFIX;
use crate::config::{Config, IdentityHeaders, Upstream, User, WebSocketSettings};
use crate::connector::UpstreamConnector;
use crate::live::Revocable;
use crate::web::{Body, BoxError, HSTS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Refused, reset, or no connection in time: 502.
    Unreachable,
    /// Connected, but no response headers in time: 504.
    Timeout,
    /// The client's own body broke off or was malformed (a bad chunk size): 400.
    BadRequestBody,
}

pub struct Proxy {
    client: Client<UpstreamConnector, Body>,
    /// Where the built-in demo dashboard listens, when the config asks for it.
    demo: Option<SocketAddr>,
    /// Open WebSocket tunnels.
    pub websockets: Arc<AtomicI64>,
    /// Tells every open tunnel to close (at the end of a graceful shutdown).
    close_tunnels: watch::Sender<bool>,
}

/// Resolves when a connection that outlives its request must stop (its session ended).
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// What the gateway decided about a request it lets through.
pub struct Forward<'a> {
    pub path: &'a NormalizedPath,
    /// The logged-in user; `None` on a skip-auth path (no identity headers then).
    pub user: Option<&'a User>,
    pub client_ip: IpAddr,
    pub host: &'a AllowedHost,
    /// Ends streamed responses and WebSocket tunnels when the session ends.
    pub stop: StopSignal,
}

pub struct Forwarded {
    pub response: Response<Body>,
    /// Time until the upstream's response headers.
    pub upstream_time: Duration,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the non-standard ones proxies still see.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `Proxy-*` headers concern one hop, never the application (REQ-67); so does `Proxy`,
/// which CGI-style upstreams turn into `HTTP_PROXY` ("httpoxy"). Compared in the
/// canonical form, so `Proxy_Authorization` counts too.
fn is_proxy_header(canonical: &str) -> bool {
    canonical == "proxy" || canonical.starts_with("proxy-")
}

/// Headers about the client or the original request that only the gateway may state;
/// routing hints like `X-Original-URL` could make an upstream see another path.
const FORWARDING: [&str; 9] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-uri",
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
];

impl Proxy {
    pub fn new(demo: Option<SocketAddr>, connector: UpstreamConnector) -> Proxy {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Proxy {
            client,
            demo,
            websockets: Arc::default(),
            close_tunnels: watch::channel(false).0,
        }
    }

    /// Closes every open WebSocket tunnel (the end of a graceful shutdown).
    pub fn close_tunnels(&self) {
        let _ = self.close_tunnels.send(true);
    }

    /// `host:port` of the upstream, for a reachability check.
    pub fn upstream_authority(&self, cfg: &Config) -> Option<String> {
        let (scheme, authority) = self.target(cfg)?;
        Some(if authority.contains(':') && !authority.ends_with(']') {
            authority
        } else if scheme == "https" {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        })
    }

    /// Scheme and authority of the upstream.
    fn target(&self, cfg: &Config) -> Option<(&'static str, String)> {
        match &cfg.upstream.target {
            Upstream::Demo => self.demo.map(|a| ("http", a.to_string())),
            Upstream::Url(uri) => {
                let scheme = if uri.scheme_str() == Some("https") {
                    "https"
                } else {
                    "http"
                };
                uri.authority().map(|a| (scheme, a.to_string()))
            }
        }
    }

    pub async fn forward(
        &self,
        cfg: &Config,
        mut req: Request<Incoming>,
        f: Forward<'_>,
    ) -> Result<Forwarded, ProxyError> {
        let (scheme, authority) = self.target(cfg).ok_or(ProxyError::Unreachable)?;
        let websocket = is_websocket_upgrade(&req);
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let uri = match parts.uri.query() {
            Some(q) => format!("{scheme}://{authority}{}?{q}", f.path.as_str()),
            None => format!("{scheme}://{authority}{}", f.path.as_str()),
        };
        let uri: http::Uri = uri.parse().map_err(|_| ProxyError::Unreachable)?;

        let mut headers = request_headers(&parts.headers, &cfg.identity_headers);
        set(&mut headers, header::HOST, &authority);
        if let Some(user) = f.user {
            set_identity(&mut headers, &cfg.identity_headers, user);
        }
        set_forwarding(&mut headers, f.client_ip, f.host);
        if websocket {
            set(&mut headers, header::CONNECTION, "upgrade");
            set(&mut headers, header::UPGRADE, "websocket");
        }

        // Remember whether a failure came from the client's body rather than the upstream.
        let body_failed = Arc::new(AtomicBool::new(false));
        let failed = body_failed.clone();
        let body = body.map_err(move |e| {
            failed.store(true, Ordering::Relaxed);
            BoxError::from(e)
        });
        let mut out = Request::new(body.boxed());
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;

        let started = Instant::now();
        let timeout = Duration::from_secs(cfg.upstream.response_timeout_secs);
        let mut resp = match tokio::time::timeout(timeout, self.client.request(out)).await {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Err(_)) if body_failed.load(Ordering::Relaxed) => return Err(ProxyError::BadRequestBody),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
                return Err(ProxyError::Unreachable);
            }
            Ok(Ok(r)) => r,
        };
        let upstream_time = started.elapsed();

        // A tunnel only after the upstream really agreed; any other answer is an
        // ordinary response and the connection stays HTTP.
        if let Some(client_upgrade) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let (mut parts, _) = resp.into_parts();
            let keep: Vec<(HeaderName, HeaderValue)> = [header::UPGRADE, header::CONNECTION]
                .into_iter()
                .filter_map(|n| parts.headers.get(&n).map(|v| (n, v.clone())))
                .collect();
            response_headers(&mut parts.headers, &authority);
            parts.headers.extend(keep);
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                f.stop,
                cfg.websocket.clone(),
                self.websockets.clone(),
                self.close_tunnels.subscribe(),
            ));
            return Ok(Forwarded {
                response: Response::from_parts(parts, crate::web::empty()),
                upstream_time,
            });
        }

        let (mut parts, body) = resp.into_parts();
        response_headers(&mut parts.headers, &authority);
        let body = body.map_err(Into::into).boxed();
        // A body of unknown length may stream for a long time: it ends with the session.
        let streamed = !parts.headers.contains_key(header::CONTENT_LENGTH);
        let body = if streamed && f.user.is_some() {
            Revocable::wrap(body, f.stop)
        } else {
            body
        };
        Ok(Forwarded {
            response: Response::from_parts(parts, body),
            upstream_time,
        })
    }
}

/// A WebSocket handshake (HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket`).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    req.version() == Version::HTTP_11 && connection_upgrade && websocket
}

/// Copies bytes both ways until either side closes, the tunnel idles or grows too old,
/// the session ends, or the gateway shuts down.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    stop: StopSignal,
    limits: WebSocketSettings,
    open: Arc<AtomicI64>,
    mut closing: watch::Receiver<bool>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            return;
        }
    };
    open.fetch_add(1, Ordering::Relaxed);
    let activity = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut client = Activity::new(TokioIo::new(client), activity.clone(), started);
    let mut upstream = Activity::new(TokioIo::new(upstream), activity.clone(), started);
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let watchdog = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1).min(idle)).await;
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            if started.elapsed().saturating_sub(last) >= idle {
                return "idle";
            }
        }
    };
    let reason = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => if r.is_ok() { "closed" } else { "error" },
        _ = stop => "session ended",
        _ = tokio::time::sleep(Duration::from_secs(limits.max_lifetime_secs)) => "maximum lifetime",
        r = watchdog => r,
        _ = closing.wait_for(|c| *c) => "shutdown",
    };
    open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(reason, "WebSocket tunnel closed");
}

/// Records when bytes last moved (milliseconds since the tunnel started).
struct Activity<T> {
    inner: T,
    last: Arc<AtomicU64>,
    started: Instant,
}

impl<T> Activity<T> {
    fn new(inner: T, last: Arc<AtomicU64>, started: Instant) -> Self {
        Activity { inner, last, started }
    }
    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A header name in the form upstream servers may read it as: lower case, `_` as `-`.
fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Names listed in `Connection` headers are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The client's headers minus hop-by-hop headers, forwarding headers, identity headers
/// in any spelling (REQ-62), and the gateway's own cookies (REQ-63).
fn request_headers(incoming: &HeaderMap, identity: &IdentityHeaders) -> HeaderMap {
    let listed = connection_listed(incoming);
    let identity: Vec<String> = [&identity.user, &identity.email, &identity.groups]
        .iter()
        .map(|n| canonical(n))
        .collect();
    let mut out = HeaderMap::with_capacity(incoming.len() + 6);
    for (name, value) in incoming {
        let n = name.as_str();
        let c = canonical(n);
        let drop = HOP_BY_HOP.contains(&n)
            || is_proxy_header(&c)
            || listed.iter().any(|l| l == n)
            || FORWARDING.contains(&c.as_str())
            || identity.contains(&c)
            || name == header::HOST
            || name == header::COOKIE;
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    // HTTP/2 may split cookies over several headers; HTTP/1.1 wants one.
    let kept: Vec<&str> = incoming
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(COOKIE_PREFIX))
        .collect();
    if !kept.is_empty() {
        set(&mut out, header::COOKIE, &kept.join("; "));
    }
    out
}

fn set_identity(headers: &mut HeaderMap, names: &IdentityHeaders, user: &User) {
    for (name, value) in [
        (&names.user, &user.id),
        (&names.email, &user.email),
        (&names.groups, &user.role.as_str().to_owned()),
    ] {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.insert(n, v);
        }
    }
}

fn set_forwarding(headers: &mut HeaderMap, client_ip: IpAddr, host: &AllowedHost) {
    let authority = host.authority();
    let for_value = match client_ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    set(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &client_ip.to_string(),
    );
    set(headers, HeaderName::from_static("x-forwarded-proto"), "https");
    set(headers, HeaderName::from_static("x-forwarded-host"), &authority);
    set(
        headers,
        header::FORWARDED,
        &format!("for={for_value};proto=https;host=\"{authority}\""),
    );
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The upstream's answer minus hop-by-hop headers and any attempt to set the gateway's
/// cookies; redirects and cookie domains that name the upstream's own address are made
/// to point at the gateway; HSTS added when the upstream did not send it.
fn response_headers(headers: &mut HeaderMap, upstream_authority: &str) {
    let listed = connection_listed(headers);
    let proxy: Vec<String> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| is_proxy_header(&canonical(n)))
        .map(str::to_owned)
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(listed).chain(proxy) {
        headers.remove(name.as_str());
    }
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    headers.remove(header::SET_COOKIE);
    let upstream_host = upstream_authority
        .rsplit_once(':')
        .map_or(upstream_authority, |(h, _)| h);
    for c in cookies {
        let ours = c
            .to_str()
            .map(|s| s.trim_start().starts_with(COOKIE_PREFIX))
            .unwrap_or(false);
        if !ours {
            headers.append(header::SET_COOKIE, without_domain(c, upstream_host));
        }
    }
    if let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && let Some(local) = same_authority_path(location, upstream_authority)
        && let Ok(v) = HeaderValue::from_str(&local)
    {
        headers.insert(header::LOCATION, v);
    }
    if !headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}

/// `http://upstream:port/x?y` → `/x?y`: a redirect to the upstream's own address
/// becomes one to the same path on the gateway.
fn same_authority_path(location: &str, upstream_authority: &str) -> Option<String> {
    let uri: http::Uri = location.parse().ok()?;
    let authority = uri.authority()?;
    if !authority.as_str().eq_ignore_ascii_case(upstream_authority) {
        return None;
    }
    Some(uri.path_and_query().map_or("/".to_owned(), |pq| pq.as_str().to_owned()))
}

/// Drops a `Domain=` attribute naming the upstream's host, so the cookie belongs to the
/// gateway's host instead.
fn without_domain(cookie: HeaderValue, upstream_host: &str) -> HeaderValue {
    let Ok(text) = cookie.to_str() else { return cookie };
    let mut changed = false;
    let kept: Vec<&str> = text
        .split(';')
        .filter(|attr| {
            let a = attr.trim();
            let names_upstream = a.len() > 7
                && a[..7].eq_ignore_ascii_case("domain=")
                && a[7..].trim_start_matches('.').eq_ignore_ascii_case(upstream_host);
            changed |= names_upstream;
            !names_upstream
        })
        .collect();
    if !changed {
        return cookie;
    }
    HeaderValue::from_str(&kept.join(";")).unwrap_or(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> IdentityHeaders {
        IdentityHeaders {
            user: "Remote-User".into(),
            email: "Remote-Email".into(),
            groups: "Remote-Groups".into(),
        }
    }

    #[test]
    fn req62_identity_headers_in_every_spelling_are_removed() {
        let mut h = HeaderMap::new();
        for n in [
            "remote-user",
            "REMOTE-USER",
            "remote_user",
            "Remote_Email",
            "remote-groups",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("mallory"),
            );
        }
        h.insert("x-keep", HeaderValue::from_static("yes"));
        let out = request_headers(&h, &names());
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out.contains_key("x-keep"));
    }

    #[test]
    fn req63_req67_cookies_and_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("app=1; __Host-kanmon=secret"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-kanmon-lang=en; other=2"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("proxy", HeaderValue::from_static("http://evil.example:3128"));
        h.insert("proxy_authorization", HeaderValue::from_static("Basic eA=="));
        let out = request_headers(&h, &names());
        assert_eq!(out.get(header::COOKIE).unwrap(), "app=1; other=2");
        for gone in [
            "connection",
            "x-secret-hop",
            "te",
            "x-forwarded-for",
            "proxy",
            "proxy_authorization",
        ] {
            assert!(!out.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn req67_response_hygiene() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("X-Internal"));
        h.insert("x-internal", HeaderValue::from_static("1"));
        h.insert("proxy-status", HeaderValue::from_static("upstream-proxy"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("__Host-kanmon=forged; Path=/"),
        );
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://10.0.0.5:8080/next?x=1"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("s=1; Domain=10.0.0.5; Path=/"),
        );
        response_headers(&mut h, "10.0.0.5:8080");
        assert_eq!(
            h[header::LOCATION],
            "/next?x=1",
            "no redirect to the upstream's private address"
        );
        assert!(h.get_all(header::SET_COOKIE).iter().any(|c| c == "s=1; Path=/"));
        assert!(!h.contains_key("x-internal") && !h.contains_key(header::CONNECTION));
        assert!(!h.contains_key("proxy-status"));
        let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["app=1; Path=/", "s=1; Path=/"]);
        assert_eq!(h.get(header::STRICT_TRANSPORT_SECURITY).unwrap(), HSTS);
    }
}
