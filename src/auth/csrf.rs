//! Cross-site request forgery (REQ-33): every POST carries its session's form token,
//! and a browser that says where the request came from must say "this site".

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::auth::host::AllowedHost;

pub fn token_matches(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// `Origin`, when sent, must be this very origin; otherwise `Sec-Fetch-Site`, when
/// sent, must be same-origin (or none: typed into the address bar).
///
/// `Origin: null` is what browsers send with every form POST from our own pages: the
/// gateway's `Referrer-Policy: no-referrer` makes them hide the origin (Fetch,
/// "serializing a request origin"). For it the browser's `Sec-Fetch-Site` decides, and
/// only `same-origin` passes.
pub fn same_origin(headers: &HeaderMap, host: &AllowedHost) -> bool {
    let site = headers.get("sec-fetch-site").map(|v| v.to_str());
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        if origin.as_bytes() == b"null" {
            return matches!(site, Some(Ok("same-origin")));
        }
        return origin
            .to_str()
            .is_ok_and(|o| o == format!("https://{}", host.authority()));
    }
    match site {
        None => true,
        Some(Ok(site)) => matches!(site, "same-origin" | "none"),
        Some(Err(_)) => false,
    }
}

/// REQ-66: a WebSocket handshake must come from a page of one of our own hosts; the
/// browser always sends `Origin` with it, so a missing one is refused too.
pub fn websocket_origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(authority) = origin.strip_prefix("https://") else {
        return false;
    };
    let mut h = HeaderMap::new();
    let Ok(value) = http::HeaderValue::from_str(authority) else {
        return false;
    };
    h.insert(http::header::HOST, value);
    crate::auth::host::check(&http::Uri::from_static("/"), &h, allowed).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> AllowedHost {
        AllowedHost {
            name: "good.example".into(),
            port: Some(8443),
        }
    }

    #[test]
    fn req33_origin_checks() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, &host()));
        h.insert("origin", "https://good.example:8443".parse().unwrap());
        assert!(same_origin(&h, &host()));
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, &host()));
        h.insert("origin", "null".parse().unwrap());
        assert!(!same_origin(&h, &host()));
        // A form POST from our own page under `Referrer-Policy: no-referrer`.
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h, &host()));
        for site in ["cross-site", "same-site", "none"] {
            h.insert("sec-fetch-site", site.parse().unwrap());
            assert!(!same_origin(&h, &host()), "Origin: null with {site}");
        }
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h, &host()));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h, &host()));
    }

    #[test]
    fn req66_websocket_origins() {
        let allowed = vec!["good.example".to_owned(), "localhost".to_owned()];
        let with = |o: &str| {
            let mut h = HeaderMap::new();
            h.insert("origin", o.parse().unwrap());
            websocket_origin_allowed(&h, &allowed)
        };
        assert!(with("https://good.example"));
        assert!(with("https://localhost:8443"));
        assert!(!with("https://evil.example"));
        assert!(!with("http://good.example"));
        assert!(!with("https://good.example.evil.example"));
        assert!(!with("null"));
        assert!(!websocket_origin_allowed(&HeaderMap::new(), &allowed));
    }

    #[test]
    fn req33_token_comparison() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("", ""));
    }
}
