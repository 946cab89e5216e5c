//! Failure limits (REQ-9 … REQ-15). The code step counts wrong codes per account, across
//! sessions and addresses (RFC 4226 §7.3): from the fifth on, the account waits longer
//! between tries (30 s, doubling every five failures), and after a hundred it is locked
//! until a reset or an administrator unlocks it (NIST SP 800-63B). The password step
//! counts failures per typed user ID — existing or not, so the limit says nothing about
//! who exists — and per client address.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// Wrong codes before the account's code step slows down.
pub const SLOW_AFTER: u32 = 5;
/// Wrong codes in a row that lock the code step.
pub const LOCK_AFTER: u32 = 100;
const FIRST_DELAY_SECS: i64 = 30;
const MAX_DELAY_SECS: i64 = 15 * 60;

/// The password step's window and limits.
pub const PASSWORD_WINDOW_SECS: i64 = 15 * 60;

/// An account's code-step failures, stored by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFailures {
    pub consecutive: u32,
    pub last_failure: UnixTime,
    pub locked_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Too many recent failures: no code is checked until then.
    SlowedUntil(UnixTime),
    Locked,
}

impl CodeFailures {
    pub fn gate(&self, now: UnixTime) -> Gate {
        if self.locked_at.is_some() {
            return Gate::Locked;
        }
        if self.consecutive < SLOW_AFTER {
            return Gate::Open;
        }
        let doublings = (self.consecutive - SLOW_AFTER) / SLOW_AFTER;
        let delay = FIRST_DELAY_SECS
            .saturating_mul(1 << doublings.min(20))
            .min(MAX_DELAY_SECS);
        let until = self.last_failure + delay;
        if now < until {
            Gate::SlowedUntil(until)
        } else {
            Gate::Open
        }
    }

    /// The record after one more wrong code; `true` when this one locked the account.
    pub fn after_failure(&self, now: UnixTime) -> (CodeFailures, bool) {
        let consecutive = self.consecutive.saturating_add(1);
        let newly_locked = self.locked_at.is_none() && consecutive >= LOCK_AFTER;
        let locked_at = self.locked_at.or(newly_locked.then_some(now));
        (
            CodeFailures {
                consecutive,
                last_failure: now,
                locked_at,
            },
            newly_locked,
        )
    }
}

/// Whether another password attempt may be checked, given the failures in the window
/// (oldest first). `Err(retry_after_secs)` when not.
pub fn password_gate(failures: &[UnixTime], max: usize, now: UnixTime) -> Result<(), i64> {
    let recent: Vec<UnixTime> = failures
        .iter()
        .copied()
        .filter(|t| *t > now - PASSWORD_WINDOW_SECS)
        .collect();
    if recent.len() < max {
        return Ok(());
    }
    // Free again when enough of them leave the window.
    let oldest_that_matters = recent[recent.len() - max];
    Err((oldest_that_matters + PASSWORD_WINDOW_SECS - now).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(n: u32, now: UnixTime) -> CodeFailures {
        let mut f = CodeFailures::default();
        for _ in 0..n {
            f = f.after_failure(now).0;
        }
        f
    }

    #[test]
    fn req10_slow_down_from_the_fifth_failure_doubling() {
        assert_eq!(after(4, 100).gate(100), Gate::Open);
        assert_eq!(after(5, 100).gate(100), Gate::SlowedUntil(130));
        assert_eq!(after(5, 100).gate(130), Gate::Open);
        assert_eq!(after(10, 100).gate(100), Gate::SlowedUntil(160));
        assert_eq!(after(15, 100).gate(100), Gate::SlowedUntil(220));
        assert_eq!(after(99, 100).gate(100), Gate::SlowedUntil(100 + MAX_DELAY_SECS));
    }

    #[test]
    fn req11_locked_after_a_hundred_until_cleared() {
        let (f, locked) = after(99, 100).after_failure(200);
        assert!(locked);
        assert_eq!(f.gate(1_000_000), Gate::Locked);
        assert!(!f.after_failure(300).1, "locks once");
        assert_eq!(
            CodeFailures::default().gate(0),
            Gate::Open,
            "cleared on success or unlock"
        );
    }

    #[test]
    fn req15_password_window() {
        let now = 10_000;
        assert_eq!(password_gate(&[], 3, now), Ok(()));
        assert_eq!(password_gate(&[now - 10, now - 5], 3, now), Ok(()));
        assert_eq!(
            password_gate(&[now - 100, now - 10, now - 5], 3, now),
            Err(PASSWORD_WINDOW_SECS - 100)
        );
        assert_eq!(
            password_gate(&[now - PASSWORD_WINDOW_SECS, now - 10, now - 5], 3, now),
            Ok(()),
            "old ones expire"
        );
    }
}
