//! Passwords: argon2id hashes in PHC format, verified on a small pool of worker threads
//! so hashing never runs on the async threads and a login flood cannot slow proxying.
//! Each worker keeps its memory block, which halves the cost of a hash (no page faults).

use std::sync::mpsc;
use std::thread;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::auth::Random;

/// OWASP's first argon2id row: 19 MiB, two passes, one lane.
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Jobs waiting for a worker; beyond this a login is refused as busy rather than queued
/// without bound.
const QUEUE_PER_WORKER: usize = 64;

/// Verified against for unknown users, so their answer takes as long as a wrong
/// password's (the hash of a random password nobody knows).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$kK2ZcY0m1pQHxkq6w9d0Ug$Qm2nD2m9D1oR0q8H8Qc2E7m7s3JbWmW3VpXQ3E9fY8M";

fn params() -> Params {
    Params::new(M_COST_KIB, T_COST, P_COST, None).expect("constant argon2 parameters are valid")
}

/// A PHC string for a new password, for `kanmon hash-password` and tests.
pub fn hash(password: &str, rng: &dyn Random) -> String {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("hashing with valid parameters and a 16-byte salt succeeds")
        .to_string()
}

/// Why `hash-password` refuses a password.
pub fn check_length(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password has {n} characters; at least {MIN_PASSWORD_CHARS} are needed"
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(format!(
            "the password has {n} characters; at most {MAX_PASSWORD_CHARS} are allowed"
        ));
    }
    Ok(())
}

/// Why a configured hash is refused: not argon2id PHC, or weaker than the OWASP
/// minimum this gateway hashes with (m=19456 KiB, t=2).
pub fn check_hash(phc: &str) -> Result<(), String> {
    let how = "must be an argon2id hash as printed by `kanmon hash-password`";
    let parsed = PasswordHash::new(phc).map_err(|_| how.to_owned())?;
    if parsed.algorithm.as_str() != "argon2id" || parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(how.to_owned());
    }
    let params = Params::try_from(&parsed).map_err(|_| how.to_owned())?;
    if params.m_cost() < M_COST_KIB || params.t_cost() < T_COST {
        return Err(format!(
            "the hash uses m={}, t={}, weaker than the minimum m={M_COST_KIB}, t={T_COST}; make a new one with `kanmon hash-password`",
            params.m_cost(),
            params.t_cost()
        ));
    }
    Ok(())
}

/// zxcvbn's view of a password (0 … 4) below this is worth a warning.
pub const WEAK_SCORE: u8 = 3;

/// A warning with zxcvbn's feedback when the password is guessable; `None` when it
/// scores [`WEAK_SCORE`] or more. `hints` are words the password should not rest on.
pub fn weakness(password: &str, hints: &[&str]) -> Option<String> {
    let estimate = zxcvbn::zxcvbn(password, hints);
    let score = u8::from(estimate.score());
    if score >= WEAK_SCORE {
        return None;
    }
    let mut out = format!("this password is weak (strength {score} of 4; at least {WEAK_SCORE} is advised)");
    if let Some(f) = estimate.feedback() {
        if let Some(w) = f.warning() {
            out.push_str(&format!(". {w}"));
        }
        for s in f.suggestions() {
            out.push_str(&format!("\n  - {s}"));
        }
    }
    Some(out)
}

struct Job {
    password: String,
    /// `None`: an unknown user; the dummy hash is verified and the answer is false.
    phc: Option<String>,
    reply: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub struct PasswordPool {
    jobs: mpsc::SyncSender<Job>,
}

impl PasswordPool {
    pub fn new(workers: usize) -> PasswordPool {
        let workers = workers.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(workers * QUEUE_PER_WORKER);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("kanmon-argon2-{i}"))
                .spawn(move || worker(rx))
                .expect("spawning a hashing thread");
        }
        PasswordPool { jobs: tx }
    }

    /// True only for a known user's right password. Unknown users cost the same.
    /// `None` when the pool is saturated: the caller answers "try again".
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Option<bool> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            password: password.to_owned(),
            phc: phc.map(str::to_owned),
            reply,
        };
        self.jobs.try_send(job).ok()?;
        answer.await.ok()
    }
}

fn worker(jobs: std::sync::Arc<std::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut memory = vec![Block::default(); params().block_count()];
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let known = job.phc.is_some();
        let ok = verify_with(&job.password, job.phc.as_deref().unwrap_or(DUMMY_HASH), &mut memory);
        let _ = job.reply.send(known && ok);
    }
}

/// Recomputes the hash with the PHC's own parameters into the worker's memory.
fn verify_with(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let (Some(salt), Some(expected)) = (parsed.salt.as_ref(), parsed.hash.as_ref()) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.as_bytes().len()];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    if argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut out,
            &mut memory[..params.block_count()],
        )
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;

    /// REQ-35: argon2id, m=19456, t=2, p=1, unique salt, PHC format.
    #[test]
    fn req35_hash_format_and_unique_salt() {
        let a = hash("correct horse battery", &SystemRandom);
        let b = hash("correct horse battery", &SystemRandom);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn pool_verifies_right_and_wrong_and_unknown() {
        let pool = PasswordPool::new(2);
        let h = hash("correct horse battery", &SystemRandom);
        assert_eq!(pool.verify("correct horse battery", Some(&h)).await, Some(true));
        assert_eq!(pool.verify("wrong horse battery", Some(&h)).await, Some(false));
        assert_eq!(pool.verify("correct horse battery", None).await, Some(false));
        assert_eq!(pool.verify("x", Some("$2y$10$notargon")).await, Some(false));
    }

    #[test]
    fn dummy_hash_parses_so_unknown_users_cost_a_full_hash() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(Params::try_from(&parsed).unwrap().m_cost(), M_COST_KIB);
        assert!(!verify_with(
            "anything",
            DUMMY_HASH,
            &mut vec![Block::default(); params().block_count()]
        ));
    }

    #[test]
    fn m1_weak_or_foreign_hashes_are_refused() {
        assert!(check_hash(&hash("correct horse battery", &SystemRandom)).is_ok());
        assert!(check_hash(DUMMY_HASH).is_ok());
        let weak_m = "$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$0J3pHx5J0bLyPzT1S9Xl7+7Zr2kGZQ2+KJqbqQ4mG1g";
        assert!(check_hash(weak_m).unwrap_err().contains("m=4096"));
        let weak_t =
            "$argon2id$v=19$m=19456,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$0J3pHx5J0bLyPzT1S9Xl7+7Zr2kGZQ2+KJqbqQ4mG1g";
        assert!(check_hash(weak_t).unwrap_err().contains("t=1"));
        let argon2i =
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0J3pHx5J0bLyPzT1S9Xl7+7Zr2kGZQ2+KJqbqQ4mG1g";
        assert!(check_hash(argon2i).unwrap_err().contains("argon2id"));
        assert!(check_hash("$2y$10$abc").is_err());
    }

    #[test]
    fn m1_zxcvbn_warns_about_guessable_passwords_only() {
        let w = weakness("password1", &[]).expect("a weak password");
        assert!(w.contains("weak"), "{w}");
        assert!(weakness("x7#Lq!zR8pW2vN-Tb4", &[]).is_none());
    }

    #[test]
    fn length_limits() {
        assert!(check_length("short").is_err());
        assert!(check_length("long enough").is_ok());
        assert!(check_length(&"x".repeat(129)).is_err());
    }
}
