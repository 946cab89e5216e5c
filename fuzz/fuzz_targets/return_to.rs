//! REQ-61: the return-to path after login (`auth::redirect::SameSitePath::parse`).
//! Whatever it accepts starts with exactly one `/` (never `//` or `/\`), holds no `\`
//! and no control character, and stays so after percent-decoding as often as it decodes.
#![no_main]

use kanmon::auth::redirect::SameSitePath;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode;

fn assert_same_site(s: &[u8], raw: &str) {
    assert!(s.starts_with(b"/"), "{raw:?} → {s:?}: not a path");
    assert!(!s.starts_with(b"//"), "{raw:?} → {s:?}: an authority");
    assert!(!s.contains(&b'\\'), "{raw:?} → {s:?}: a backslash");
    let text = String::from_utf8_lossy(s);
    assert!(
        !text.chars().any(char::is_control),
        "{raw:?} → {s:?}: a control character"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Some(p) = SameSitePath::parse(raw) else {
        return;
    };
    assert_eq!(p.as_str(), raw, "kept as given");
    let mut cur: Vec<u8> = raw.as_bytes().to_vec();
    loop {
        assert_same_site(&cur, raw);
        let next: Vec<u8> = percent_decode(&cur).collect();
        if next == cur {
            break;
        }
        cur = next;
    }
});
