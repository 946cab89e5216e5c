//! Time as the gateway sees it. Production reads the system clock; tests set the time,
//! so TOTP windows, expiry and lockout are checked exactly, without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to. Used by the test suite through the library
/// API; the `kanmon` binary never constructs one.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: UnixTime) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(start)))
    }
    pub fn set(&self, t: UnixTime) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// How often the kernel is asked whether the clock is synchronised (M-4).
pub const SYNC_CHECK_EVERY_SECS: u64 = 10 * 60;

/// Asks the kernel whether an NTP client keeps the system clock synchronised (M-4):
/// `Some(false)` when the clock is marked unsynchronised, `None` when it cannot tell.
pub type SyncCheck = fn() -> Option<bool>;

pub fn kernel_synchronised() -> Option<bool> {
    // SAFETY: a zeroed timex is a valid argument; with `modes == 0` adjtimex(2) only
    // reads the kernel's state and needs no privilege.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        return None;
    }
    Some(synchronised(state, t.status))
}

/// The kernel's answer read: `TIME_ERROR`, or `STA_UNSYNC` in the status, means the
/// clock is not disciplined by anything.
pub fn synchronised(state: libc::c_int, status: libc::c_int) -> bool {
    state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m4_kernel_answers_read() {
        assert!(synchronised(libc::TIME_OK, 0x2001));
        assert!(!synchronised(libc::TIME_ERROR, 0));
        assert!(!synchronised(libc::TIME_OK, libc::STA_UNSYNC));
        // The real call works without privileges, whatever it says on this machine.
        let _ = kernel_synchronised();
    }
}

/// Seconds since the epoch of a UTC calendar time (proleptic Gregorian).
pub fn unix_from_civil(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> UnixTime {
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of `mail::format_utc`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
}

/// `2026-11-25`, `2026-11-25T13:47` or `2026-11-25 13:47` (UTC), as typed into a filter.
pub fn parse_utc(s: &str) -> Option<UnixTime> {
    let s = s.trim();
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (hh, mm) = match time {
        Some(t) => {
            let (h, m) = t.split_once(':')?;
            (h.parse().ok()?, m.get(..2).unwrap_or(m).parse().ok()?)
        }
        None => (0, 0),
    };
    ((1..=12).contains(&m) && (1..=31).contains(&day) && hh < 24 && mm < 60 && (1970..=9999).contains(&y))
        .then(|| unix_from_civil(y, m, day, hh, mm, 0))
}

#[cfg(test)]
mod civil_tests {
    use super::*;

    #[test]
    fn civil_times() {
        assert_eq!(unix_from_civil(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_from_civil(2000, 2, 29, 0, 0, 0), 951_782_400);
        assert_eq!(unix_from_civil(2033, 5, 18, 3, 33, 20), 2_000_000_000);
        assert_eq!(parse_utc("2033-05-18T03:33"), Some(2_000_000_000 - 20));
        assert_eq!(parse_utc("2033-05-18 03:33"), Some(2_000_000_000 - 20));
        assert_eq!(parse_utc("2000-02-29"), Some(951_782_400));
        for bad in ["", "yesterday", "2026-13-01", "2026-11-25T25:00"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
