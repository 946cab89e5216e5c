//! REQ-29, REQ-31: `auth::session::read_cookie` over arbitrary `Cookie` headers (several
//! of them, as HTTP/2 sends), then the shapes read from them: a session id
//! (`SessionId::parse`), a reset-binding or link secret (`reset::Secret::parse`) and a
//! language (`Lang::parse`). What is found is always a trimmed piece of one header and
//! holds no `;`; only the shape the gateway issues is taken as an id.
#![no_main]

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use kanmon::auth::reset::{BROWSER_COOKIE, Secret};
use kanmon::auth::session::{LANG_COOKIE, SESSION_COOKIE, SessionId, read_cookie};
use kanmon::i18n::Lang;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // A NUL byte separates header lines: one input, several Cookie headers.
    for part in data.split(|b| *b == 0).take(8) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(COOKIE, v);
        }
    }
    let texts: Vec<&str> = headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    for name in [SESSION_COOKIE, LANG_COOKIE, BROWSER_COOKIE, "", "a"] {
        let Some(value) = read_cookie(&headers, name) else {
            continue;
        };
        assert!(!value.contains(';'), "{value:?}");
        assert_eq!(value, value.trim(), "{value:?}");
        assert!(texts.iter().any(|t| t.contains(value)), "{value:?} is in no header");
        if let Some(id) = SessionId::parse(value) {
            assert_eq!(id.as_str().len(), 43);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            let _ = id.key();
        }
        if let Some(s) = Secret::parse(value) {
            assert_eq!(s.as_str(), value);
            let _ = s.hash_hex();
        }
        if let Some(lang) = Lang::parse(value) {
            assert!(value.eq_ignore_ascii_case(lang.code()));
        }
    }
});
