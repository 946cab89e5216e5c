//! REQ-37: the Host check (`auth::host::check`) over any Host header(s) and request
//! target. What passes names an allowed host, in lower case, with no user info; its
//! authority passes again as the same host.
#![no_main]

use http::HeaderMap;
use http::header::{HOST, HeaderValue};
use kanmon::auth::host::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let allowed: Vec<String> = ["good.example", "localhost", "127.0.0.1", "[::1]"]
        .map(String::from)
        .to_vec();
    // Input: target NUL host [NUL host …]
    let mut parts = data.split(|b| *b == 0);
    let target = parts.next().unwrap_or_default();
    let uri = http::Uri::try_from(target).unwrap_or_else(|_| http::Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for h in parts.take(3) {
        if let Ok(v) = HeaderValue::from_bytes(h) {
            headers.append(HOST, v);
        }
    }
    let Some(host) = check(&uri, &headers, &allowed) else {
        return;
    };
    assert!(allowed.contains(&host.name), "{host:?}");
    assert_eq!(host.name, host.name.to_ascii_lowercase());
    let authority = host.authority();
    assert!(!authority.contains('@') && !authority.contains('/'), "{authority:?}");
    let mut again = HeaderMap::new();
    again.insert(HOST, HeaderValue::from_str(&authority).unwrap());
    assert_eq!(check(&http::Uri::from_static("/"), &again, &allowed), Some(host));
});
