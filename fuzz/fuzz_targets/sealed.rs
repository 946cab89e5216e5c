//! REQ-24: the sealed-secret format (`auth::seal::Sealer`). Opening any string never
//! panics and opens nothing that was not sealed; what is sealed opens again, only for
//! its own purpose and account.
#![no_main]

use kanmon::auth::Random;
use kanmon::auth::seal::Sealer;
use libfuzzer_sys::fuzz_target;

/// Deterministic nonces, so a finding replays exactly.
struct Counter(std::sync::atomic::AtomicU8);

impl Random for Counter {
    fn fill(&self, buf: &mut [u8]) {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = n.wrapping_add(i as u8));
    }
}

fuzz_target!(|data: &[u8]| {
    let sealer = Sealer::new(&[7; 32]);
    let text = String::from_utf8_lossy(data);
    assert!(sealer.open("totp", "alice", &text).is_none(), "{text:?} opened");
    let with_prefix = format!("v1.{text}");
    assert!(
        sealer.open("totp", "alice", &with_prefix).is_none(),
        "{with_prefix:?} opened"
    );

    let (account, plaintext) = match data.iter().position(|b| *b == 0) {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => ("alice".to_owned(), data),
    };
    let rng = Counter(std::sync::atomic::AtomicU8::new(data.len() as u8));
    let sealed = sealer.seal("totp", &account, plaintext, &rng);
    assert!(sealed.starts_with("v1."));
    assert_eq!(sealer.open("totp", &account, &sealed).as_deref(), Some(plaintext));
    assert!(sealer.open("reset", &account, &sealed).is_none());
    assert!(sealer.open("totp", &format!("{account}x"), &sealed).is_none());
    assert!(Sealer::new(&[8; 32]).open("totp", &account, &sealed).is_none());
});
