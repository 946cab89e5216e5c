//! REQ-2, REQ-3: a typed code (`auth::totp::Code::parse`): any text gives a code of
//! exactly six ASCII digits or a format error, never a panic; checking it against a
//! secret at any time never panics either.
#![no_main]

use kanmon::auth::totp::{Code, TotpSecret, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The time comes from the server's clock, not from outside: any time until 2106.
    let (time, text) = match data.split_first_chunk::<4>() {
        Some((t, rest)) => (i64::from(u32::from_le_bytes(*t)), rest),
        None => (0, data),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(code) = Code::parse(text) {
        let s = code.as_str();
        assert!(
            s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()),
            "{text:?} → {s:?}"
        );
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        let _ = check(&secret, &code, time);
    }
});
