//! Forwarding to the upstream. Knows nothing of login screens: it is handed a request
//! that the gateway has already let through and the user it belongs to. Header hygiene
//! both ways (REQ-62, REQ-63, REQ-67), bodies streamed, upstream errors reduced to
//! "unreachable" or "too slow" (REQ-69).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::auth::host::AllowedHost;
use crate::auth::path::NormalizedPath;
use crate::auth::session::COOKIE_PREFIX;
use crate::config::{Config, IdentityHeaders, Upstream, User};
use crate::web::{Body, HSTS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Refused, reset, or no connection in time: 502.
    Unreachable,
    /// Connected, but no response headers in time: 504.
    Timeout,
}

pub struct Proxy {
    client: Client<HttpConnector, Body>,
    /// Where the built-in demo dashboard listens, when the config asks for it.
    demo: Option<SocketAddr>,
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

/// Headers about the client that only the gateway may state.
const FORWARDING: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
];

impl Proxy {
    pub fn new(demo: Option<SocketAddr>, connect_timeout: Duration) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Proxy { client, demo }
    }

    fn authority(&self, cfg: &Config) -> Option<String> {
        match &cfg.upstream.target {
            Upstream::Demo => self.demo.map(|a| a.to_string()),
            Upstream::Url(uri) => uri.authority().map(|a| a.to_string()),
        }
    }

    pub async fn forward(
        &self,
        cfg: &Config,
        req: Request<Incoming>,
        path: &NormalizedPath,
        user: &User,
        client_ip: IpAddr,
        host: &AllowedHost,
    ) -> Result<Response<Body>, ProxyError> {
        let authority = self.authority(cfg).ok_or(ProxyError::Unreachable)?;
        let (parts, body) = req.into_parts();
        let uri = match parts.uri.query() {
            Some(q) => format!("http://{authority}{}?{q}", path.as_str()),
            None => format!("http://{authority}{}", path.as_str()),
        };
        let uri: http::Uri = uri.parse().map_err(|_| ProxyError::Unreachable)?;

        let mut headers = request_headers(&parts.headers, &cfg.identity_headers);
        set(&mut headers, header::HOST, &authority);
        set_identity(&mut headers, &cfg.identity_headers, user);
        set_forwarding(&mut headers, client_ip, host);

        let mut out = Request::new(body.map_err(Into::into).boxed());
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;

        let timeout = Duration::from_secs(cfg.upstream.response_timeout_secs);
        let resp = match tokio::time::timeout(timeout, self.client.request(out)).await {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
                return Err(ProxyError::Unreachable);
            }
            Ok(Ok(r)) => r,
        };
        let (mut parts, body) = resp.into_parts();
        response_headers(&mut parts.headers);
        Ok(Response::from_parts(parts, body.map_err(Into::into).boxed()))
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
/// cookies; HSTS added when the upstream did not send it.
fn response_headers(headers: &mut HeaderMap) {
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
    for c in cookies {
        let ours = c
            .to_str()
            .map(|s| s.trim_start().starts_with(COOKIE_PREFIX))
            .unwrap_or(false);
        if !ours {
            headers.append(header::SET_COOKIE, c);
        }
    }
    if !headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
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
        response_headers(&mut h);
        assert!(!h.contains_key("x-internal") && !h.contains_key(header::CONNECTION));
        assert!(!h.contains_key("proxy-status"));
        let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["app=1; Path=/"]);
        assert_eq!(h.get(header::STRICT_TRANSPORT_SECURITY).unwrap(), HSTS);
    }
}
