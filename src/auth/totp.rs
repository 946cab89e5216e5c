//! RFC 6238 codes: HMAC-SHA1, 6 digits, 30-second steps, T0 = 0 — what every
//! authenticator app honours. Deciding whether a code is right, and whether its step
//! was used before, lives here; storing the last used step is the store's job.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

use crate::auth::Random;
use crate::clock::UnixTime;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: usize = 6;
/// Steps accepted on either side of the current one (RFC 6238 §5.2).
pub const SKEW_STEPS: i64 = 1;
/// How far (in steps) a wrong code is looked up to tell the user their clock is off.
pub const CLOCK_HINT_STEPS: i64 = 20;
/// Newly made secrets: 160 bits (RFC 4226 R6 recommends it).
pub const SECRET_BYTES: usize = 20;
/// Imported secrets are accepted down to 120 bits (the dashboard manual's 24 characters).
pub const MIN_SECRET_BYTES: usize = 15;

/// A step number: `unix_time / 30`.
pub type TotpStep = i64;

pub fn step_at(t: UnixTime) -> TotpStep {
    t.div_euclid(STEP_SECS)
}

/// A shared TOTP secret. Its bytes leave this module only sealed or as the enrollment
/// key URI.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    pub fn generate(rng: &dyn Random) -> TotpSecret {
        let mut b = vec![0u8; SECRET_BYTES];
        rng.fill(&mut b);
        TotpSecret(b)
    }

    pub fn from_bytes(b: Vec<u8>) -> Option<TotpSecret> {
        (b.len() >= MIN_SECRET_BYTES).then_some(TotpSecret(b))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32, upper case, no padding: the `secret=` of the key URI.
    pub fn base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The base32 key in groups of four, as shown under the QR code.
    pub fn grouped(&self) -> Vec<String> {
        self.base32()
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    /// `otpauth://totp/<Issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
    /// with the label and issuer percent-encoded (`%20`, never `+`).
    pub fn key_uri(&self, issuer: &str, account: &str) -> String {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, URI_COMPONENT).to_string();
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            enc(issuer),
            enc(account),
            self.base32(),
            enc(issuer)
        )
    }

    fn totp(&self) -> Totp {
        // Length, digits and step are fixed above; totp-rs's own check would refuse
        // the 15-byte secrets we deliberately still accept.
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS as u8)
            .with_step_duration(STEP_SECS as u64)
            .with_skew(0)
            .with_secret(self.0.clone())
            .build_noncompliant()
    }

    /// The code for a step (for tests and the reference in docs).
    pub fn code_at(&self, step: TotpStep) -> String {
        self.totp().generate((step.max(0) * STEP_SECS) as u64).to_string()
    }
}

/// Everything but unreserved characters is escaped in label and issuer.
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A code as the user typed it, cleaned: spaces and dashes inside are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFormatError {
    NotDigits,
    WrongLength,
}

impl Code {
    pub fn parse(input: &str) -> Result<Code, CodeFormatError> {
        let cleaned: String = input.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        // Full-width digits (typed with a Japanese IME) count as digits.
        let cleaned: String = cleaned
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
                _ => c,
            })
            .collect();
        if !cleaned.chars().all(|c| c.is_ascii_digit()) {
            return Err(CodeFormatError::NotDigits);
        }
        if cleaned.len() != DIGITS {
            return Err(CodeFormatError::WrongLength);
        }
        Ok(Code(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a code means for a secret at a time, before the replay guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Right for this step (within ±1 of now).
    Matches(TotpStep),
    /// Wrong now, but right for a step this many seconds away: the phone's clock is off.
    /// Positive: the phone is ahead.
    ClockOff(i64),
    Wrong,
}

pub fn check(secret: &TotpSecret, code: &Code, now: UnixTime) -> Check {
    let totp = secret.totp();
    let now_step = step_at(now);
    let matches = |step: TotpStep| {
        let expected = totp.generate((step.max(0) * STEP_SECS) as u64).to_string();
        step >= 0 && bool::from(expected.as_bytes().ct_eq(code.as_str().as_bytes()))
    };
    // All three window steps are computed, so timing does not tell which one matched.
    let window: Vec<TotpStep> = (now_step - SKEW_STEPS..=now_step + SKEW_STEPS)
        .filter(|s| matches(*s))
        .collect();
    if let Some(step) = window.first() {
        return Check::Matches(*step);
    }
    for distance in SKEW_STEPS + 1..=CLOCK_HINT_STEPS {
        for step in [now_step + distance, now_step - distance] {
            if matches(step) {
                return Check::ClockOff((step - now_step) * STEP_SECS);
            }
        }
    }
    Check::Wrong
}

/// Whether a matched step may be accepted: never one at or before the last one used
/// (RFC 6238 §5.2: a code is accepted at most once).
pub fn is_fresh(step: TotpStep, last_used: Option<TotpStep>) -> bool {
    last_used.is_none_or(|last| step > last)
}

/// The outcome of a code against an associated authenticator, replay guard included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted(TotpStep),
    /// Right code, but its step (or a later one) was already used (REQ-6).
    Replayed,
    ClockOff(i64),
    Wrong,
    /// Not checked: the account is slowed down or locked (answered like `Wrong`).
    Throttled,
}

pub fn verdict(secret: &TotpSecret, code: &Code, now: UnixTime, last_used: Option<TotpStep>) -> Verdict {
    match check(secret, code, now) {
        Check::Matches(step) if is_fresh(step, last_used) => Verdict::Accepted(step),
        Check::Matches(_) => Verdict::Replayed,
        Check::ClockOff(secs) => Verdict::ClockOff(secs),
        Check::Wrong => Verdict::Wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totp(alg: Algorithm, seed: &[u8], digits: u8, step: u64) -> Totp {
        Builder::new()
            .with_algorithm(alg)
            .with_digits(digits)
            .with_step_duration(step)
            .with_secret(seed.to_vec())
            .build_noncompliant()
    }

    /// REQ-1: RFC 6238 Appendix B, all 18 values.
    #[test]
    fn req1_rfc6238_appendix_b() {
        let sha1 = b"12345678901234567890".as_slice();
        let sha256 = b"12345678901234567890123456789012".as_slice();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".as_slice();
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, c1, c256, c512) in table {
            assert_eq!(
                totp(Algorithm::SHA1, sha1, 8, 30).generate(t).to_string(),
                c1,
                "SHA1 {t}"
            );
            assert_eq!(
                totp(Algorithm::SHA256, sha256, 8, 30).generate(t).to_string(),
                c256,
                "SHA256 {t}"
            );
            assert_eq!(
                totp(Algorithm::SHA512, sha512, 8, 30).generate(t).to_string(),
                c512,
                "SHA512 {t}"
            );
        }
    }

    /// REQ-1: RFC 4226 Appendix D (HOTP is TOTP with a one-second step).
    #[test]
    fn req1_rfc4226_appendix_d() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
        ];
        let hotp = totp(Algorithm::SHA1, b"12345678901234567890", 6, 1);
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp.generate(counter as u64).to_string(), *code, "counter {counter}");
        }
    }

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn req4_window_is_previous_current_next() {
        let s = secret();
        let now = 1_111_111_111;
        let t = step_at(now);
        for d in [-1, 0, 1] {
            let code = Code::parse(&s.code_at(t + d)).unwrap();
            assert_eq!(check(&s, &code, now), Check::Matches(t + d));
        }
        for d in [-2i64, 2] {
            let code = Code::parse(&s.code_at(t + d)).unwrap();
            assert_eq!(check(&s, &code, now), Check::ClockOff(d * STEP_SECS));
        }
        let code = Code::parse(&s.code_at(t + 5 * 60 / STEP_SECS)).unwrap();
        assert_eq!(check(&s, &code, now), Check::ClockOff(300));
    }

    #[test]
    fn req6_replay_guard_accepts_only_later_steps() {
        assert!(is_fresh(10, None));
        assert!(is_fresh(11, Some(10)));
        assert!(!is_fresh(10, Some(10)));
        assert!(!is_fresh(9, Some(10)));
    }

    #[test]
    fn req6_verdict_applies_the_replay_guard() {
        let s = secret();
        let now = 1_111_111_111;
        let t = step_at(now);
        let code = Code::parse(&s.code_at(t)).unwrap();
        assert_eq!(verdict(&s, &code, now, Some(t - 1)), Verdict::Accepted(t));
        assert_eq!(verdict(&s, &code, now, Some(t)), Verdict::Replayed);
        assert_eq!(verdict(&s, &code, now, Some(t + 1)), Verdict::Replayed);
        let wrong = Code::parse(if s.code_at(t) == "000000" { "000001" } else { "000000" }).unwrap();
        assert!(matches!(
            verdict(&s, &wrong, now, None),
            Verdict::Wrong | Verdict::ClockOff(_)
        ));
    }

    #[test]
    fn req2_codes_as_people_type_them() {
        assert_eq!(Code::parse("123 456").unwrap().as_str(), "123456");
        assert_eq!(Code::parse(" 012-345 ").unwrap().as_str(), "012345");
        assert_eq!(Code::parse("１２３４５６").unwrap().as_str(), "123456");
        assert_eq!(Code::parse("12345"), Err(CodeFormatError::WrongLength));
        assert_eq!(Code::parse("1234567"), Err(CodeFormatError::WrongLength));
        assert_eq!(Code::parse("12a456"), Err(CodeFormatError::NotDigits));
        assert_eq!(Code::parse(""), Err(CodeFormatError::WrongLength));
    }

    #[test]
    fn req18_req19_key_uri() {
        let s = TotpSecret::from_bytes(vec![0xffu8; 20]).unwrap();
        assert_eq!(s.base32().len(), 32);
        assert_eq!(s.grouped().len(), 8);
        let uri = s.key_uri("AVM EX", "山田 taro@example.com");
        assert!(
            uri.starts_with("otpauth://totp/AVM%20EX:%E5%B1%B1%E7%94%B0%20taro%40example.com?secret="),
            "{uri}"
        );
        assert!(
            uri.ends_with("&issuer=AVM%20EX&algorithm=SHA1&digits=6&period=30"),
            "{uri}"
        );
        assert!(!uri.contains('+'));
    }

    #[test]
    fn req16_secrets_are_160_bits_and_short_imports_are_refused() {
        let s = TotpSecret::generate(&crate::auth::SystemRandom);
        assert_eq!(s.as_bytes().len(), 20);
        assert!(TotpSecret::from_bytes(vec![1; 15]).is_some());
        assert!(TotpSecret::from_bytes(vec![1; 14]).is_none());
    }
}

/// Property tests (REQ-1, REQ-4, REQ-5, REQ-6): the window logic against a reference
/// written here from the RFCs alone — SHA-1 (FIPS 180-4), HMAC (RFC 2104), dynamic
/// truncation (RFC 4226 §5.3) and the ±1-step window with the clock hint — over random
/// secrets, times and codes.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn sha1(msg: &[u8]) -> [u8; 20] {
        let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
        let mut data = msg.to_vec();
        data.push(0x80);
        while data.len() % 64 != 56 {
            data.push(0);
        }
        data.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
        for block in data.chunks(64) {
            let mut w = [0u32; 80];
            for (i, word) in block.chunks(4).enumerate() {
                w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let [mut a, mut b, mut c, mut d, mut e] = h;
            for (i, wi) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..=19 => ((b & c) | (!b & d), 0x5A827999),
                    20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                    40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                    _ => (b ^ c ^ d, 0xCA62C1D6),
                };
                let t = a
                    .rotate_left(5)
                    .wrapping_add(f)
                    .wrapping_add(e)
                    .wrapping_add(k)
                    .wrapping_add(*wi);
                e = d;
                d = c;
                c = b.rotate_left(30);
                b = a;
                a = t;
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
                *x = x.wrapping_add(y);
            }
        }
        let mut out = [0u8; 20];
        for (i, x) in h.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
        }
        out
    }

    fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..20].copy_from_slice(&sha1(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(msg.iter().copied()).collect();
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(sha1(&inner)).collect();
        sha1(&outer)
    }

    fn hotp(key: &[u8], counter: u64) -> String {
        let h = hmac_sha1(key, &counter.to_be_bytes());
        let off = (h[19] & 0x0f) as usize;
        let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
        format!("{:06}", bin % 1_000_000)
    }

    /// RFC 6238 §5.2 with kanmon's choices: the earliest of previous, current and next
    /// step matches; otherwise the nearest step up to 20 away (later first) is a hint.
    fn reference_check(key: &[u8], code: &str, now: i64) -> Check {
        let now_step = now.div_euclid(30);
        let at = |s: i64| s >= 0 && hotp(key, s as u64) == code;
        if let Some(s) = (now_step - 1..=now_step + 1).find(|s| at(*s)) {
            return Check::Matches(s);
        }
        for d in 2..=20 {
            for s in [now_step + d, now_step - d] {
                if at(s) {
                    return Check::ClockOff((s - now_step) * 30);
                }
            }
        }
        Check::Wrong
    }

    #[test]
    fn the_reference_meets_the_rfc_vectors() {
        assert_eq!(
            data_encoding::HEXLOWER.encode(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            data_encoding::HEXLOWER.encode(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
        // RFC 2202 test case 1 and 6 (a key longer than a block).
        assert_eq!(
            data_encoding::HEXLOWER.encode(&hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            data_encoding::HEXLOWER.encode(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
        let rfc4226 = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
        ];
        for (c, want) in rfc4226.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", c as u64), *want);
        }
    }

    fn secret() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=64)
    }

    /// Any time from 1970 to 2106.
    fn time() -> impl Strategy<Value = i64> {
        0i64..=u32::MAX as i64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn req1_codes_match_the_reference(key in secret(), step in 0i64..=(u32::MAX as i64 / 30)) {
            let s = TotpSecret::from_bytes(key.clone()).unwrap();
            prop_assert_eq!(s.code_at(step), hotp(&key, step as u64));
        }

        /// A code from a step near now gets exactly the reference's answer: matched in
        /// the ±1 window, a clock hint up to 20 steps away, wrong beyond.
        #[test]
        fn req4_window_matches_the_reference(key in secret(), now in time(), offset in -25i64..=25) {
            let s = TotpSecret::from_bytes(key.clone()).unwrap();
            let step = now.div_euclid(30) + offset;
            prop_assume!(step >= 0);
            let typed = hotp(&key, step as u64);
            let code = Code::parse(&typed).unwrap();
            let got = check(&s, &code, now);
            prop_assert_eq!(got, reference_check(&key, &typed, now));
            // Barring a collision of codes, the answer is the step's own.
            if reference_check(&key, &typed, now) == Check::Matches(step) {
                prop_assert!(offset.abs() <= SKEW_STEPS);
            }
        }

        /// Any six digits get the reference's answer.
        #[test]
        fn req4_any_code_gets_the_reference_answer(key in secret(), now in time(), n in 0u32..1_000_000) {
            let typed = format!("{n:06}");
            let s = TotpSecret::from_bytes(key.clone()).unwrap();
            prop_assert_eq!(check(&s, &Code::parse(&typed).unwrap(), now), reference_check(&key, &typed, now));
        }

        /// REQ-5, REQ-6: a matched code is accepted only for a step after the last used.
        #[test]
        fn req6_verdict_applies_the_replay_guard(key in secret(), now in time(), offset in -1i64..=1, last in prop::option::of(-3i64..=3)) {
            let s = TotpSecret::from_bytes(key.clone()).unwrap();
            let step = now.div_euclid(30) + offset;
            prop_assume!(step >= 0);
            let typed = hotp(&key, step as u64);
            let last_used = last.map(|d| now.div_euclid(30) + d);
            let Check::Matches(matched) = reference_check(&key, &typed, now) else {
                unreachable!("a code of the window matches")
            };
            let want = if last_used.is_none_or(|l| matched > l) { Verdict::Accepted(matched) } else { Verdict::Replayed };
            prop_assert_eq!(verdict(&s, &Code::parse(&typed).unwrap(), now, last_used), want);
        }
    }
}
