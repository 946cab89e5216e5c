//! REQ-21 (the screens' language): `i18n::Lang::negotiate` over any `Accept-Language`
//! and language cookie never panics; a valid cookie wins, and a header that names
//! neither supported language leaves the configured default.
#![no_main]

use kanmon::i18n::Lang;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let default = if first & 1 == 0 { Lang::Ja } else { Lang::En };
    let text = String::from_utf8_lossy(rest);
    let (cookie, header) = match text.split_once('\n') {
        Some((c, h)) => (Some(c), h),
        None => (None, text.as_ref()),
    };
    let lang = Lang::negotiate(cookie, Some(header), default);
    if let Some(c) = cookie.and_then(Lang::parse) {
        assert_eq!(lang, c, "a valid cookie wins");
    }
    let lower = header.to_ascii_lowercase();
    if cookie.and_then(Lang::parse).is_none() && !lower.contains("ja") && !lower.contains("en") {
        assert_eq!(lang, default, "{header:?}");
    }
    assert_eq!(Lang::negotiate(None, None, default), default);
});
