//! Which Host a request may name (REQ-37, M-14): only one the configuration allows.
//! Everything built from the host (reset links, redirects) can trust the result.

use http::HeaderMap;
use http::header::HOST;

/// An allowed host as the browser wrote it: lower-cased name plus optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    pub name: String,
    pub port: Option<u16>,
}

impl AllowedHost {
    /// `name[:port]`, as used in URLs built for the browser.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The request's host, from exactly one `Host` header or the HTTP/2 `:authority`
/// (which must agree when both exist), checked against the allowed names.
pub fn check(uri: &http::Uri, headers: &HeaderMap, allowed: &[String]) -> Option<AllowedHost> {
    let mut hosts = headers.get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return None;
    }
    let header = match header {
        Some(v) => Some(parse(v.to_str().ok()?)?),
        None => None,
    };
    let authority = match uri.authority() {
        Some(a) => Some(parse(a.as_str())?),
        None => None,
    };
    let host = match (header, authority) {
        (Some(h), Some(a)) if h != a => return None,
        (Some(h), _) => h,
        (None, Some(a)) => a,
        (None, None) => return None,
    };
    allowed.contains(&host.name).then_some(host)
}

/// `name[:port]` with a DNS name, IPv4 address or bracketed IPv6 address and a numeric
/// port. No user info, no trailing junk.
fn parse(s: &str) -> Option<AllowedHost> {
    if s.is_empty() || s.len() > 255 || s.contains('@') {
        return None;
    }
    let (name, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match s.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return None;
        }
        (name.trim_end_matches('.').to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some(AllowedHost { name, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn allowed() -> Vec<String> {
        vec![
            "good.example".into(),
            "localhost".into(),
            "127.0.0.1".into(),
            "[::1]".into(),
        ]
    }

    fn with_host(h: &str) -> Option<AllowedHost> {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(h).unwrap());
        check(&"/".parse().unwrap(), &headers, &allowed())
    }

    #[test]
    fn req37_allowed_hosts_pass_with_their_port() {
        assert_eq!(with_host("good.example").unwrap().authority(), "good.example");
        assert_eq!(with_host("Good.Example:8443").unwrap().authority(), "good.example:8443");
        assert_eq!(with_host("good.example.").unwrap().name, "good.example");
        assert_eq!(with_host("[::1]:8443").unwrap().authority(), "[::1]:8443");
        assert!(with_host("127.0.0.1:8443").is_some());
    }

    #[test]
    fn req37_host_matrix_is_refused() {
        for h in [
            "evil.example",
            "good.example:evil.example",
            "good.example:@evil.example",
            "good.example:1234@evil.example",
            "good.example.evil.example",
            "evil-good.example",
            "good.example:'<a href=\"//evil.example/?",
            "good.example:99999999",
            "",
        ] {
            assert!(with_host(h).is_none(), "{h}");
        }
    }

    #[test]
    fn req37_duplicate_or_disagreeing_hosts_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append(HOST, HeaderValue::from_static("good.example"));
        headers.append(HOST, HeaderValue::from_static("good.example"));
        assert!(check(&"/".parse().unwrap(), &headers, &allowed()).is_none());

        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("evil.example"));
        let absolute: http::Uri = "https://good.example/x".parse().unwrap();
        assert!(check(&absolute, &headers, &allowed()).is_none());

        let h2: http::Uri = "https://good.example/x".parse().unwrap();
        assert!(check(&h2, &HeaderMap::new(), &allowed()).is_some());
    }
}
