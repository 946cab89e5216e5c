//! REQ-64: the one normalized form of a request path (`auth::path::NormalizedPath`).
//! Whatever it accepts normalizes to a path that starts with `/`, has no `//`, no `.`
//! or `..` segment and no `\`, and normalizes to itself again (idempotent), so the
//! routing decision and the forwarded request cannot disagree.
#![no_main]

use kanmon::auth::path::NormalizedPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = NormalizedPath::parse(raw) else {
        return;
    };
    let s = n.as_str();
    assert!(s.starts_with('/'), "{raw:?} → {s:?}");
    assert!(!s.contains("//"), "{raw:?} → {s:?}");
    assert!(!s.contains('\\'), "{raw:?} → {s:?}");
    for seg in s.split('/') {
        assert!(seg != "." && seg != "..", "{raw:?} → {s:?}");
    }
    let again = NormalizedPath::parse(s).unwrap_or_else(|e| panic!("{raw:?} → {s:?} is refused: {e:?}"));
    assert_eq!(again, n, "{raw:?}: not idempotent");
    assert_eq!(
        n.is_reserved(),
        s == "/_kanmon" || s.starts_with("/_kanmon/"),
        "{raw:?} → {s:?}"
    );
    // A path the HTTP parser took (the only kind a request brings) stays one the
    // upstream's request can carry.
    let valid = |p: &str| p.parse::<http::uri::PathAndQuery>().is_ok_and(|pq| pq.path() == p);
    if valid(raw) {
        assert!(valid(s), "{raw:?} → {s:?}");
    }
});
