//! A small in-memory cache of logged-in sessions, so a proxied request usually costs a
//! hash-map lookup instead of a database read. Every change that ends sessions bumps the
//! live-connection epoch (see `live`), which empties the cache for practical purposes:
//! an entry is used only if it was stored in the current epoch. Only full sessions are
//! cached; pending ones change with every wrong code.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::session::{Session, SessionKey};
use crate::clock::UnixTime;

/// Beyond this many entries the cache starts over (cheaper than tracking age).
const CAPACITY: usize = 16_384;

#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<SessionKey, (Session, u64)>>,
}

impl SessionCache {
    pub fn get(&self, key: &SessionKey, epoch: u64) -> Option<Session> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(_, e)| *e == epoch).map(|(s, _)| s.clone())
    }

    pub fn put(&self, key: SessionKey, session: &Session, epoch: u64) {
        if !session.is_full() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(key, (session.clone(), epoch));
        }
    }

    /// Keeps the cached copy's "last seen" in step with the stored one.
    pub fn touch(&self, key: &SessionKey, now: UnixTime) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some((s, _)) = entries.get_mut(key)
        {
            s.last_seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;
    use crate::auth::session::{SessionId, SessionState};

    #[test]
    fn entries_live_only_in_their_epoch_and_only_full_sessions_are_kept() {
        let cache = SessionCache::default();
        let key = SessionId::generate(&SystemRandom).key();
        let full = Session::new(
            SessionState::Full {
                user: "a".into(),
                auth_time: 0,
            },
            &SystemRandom,
            0,
            None,
        );
        cache.put(key, &full, 1);
        assert!(cache.get(&key, 1).is_some());
        assert!(cache.get(&key, 2).is_none(), "a session change anywhere invalidates");
        cache.touch(&key, 99);
        assert_eq!(cache.get(&key, 1).unwrap().last_seen, 99);
        let pending = Session::new(SessionState::PendingCode { user: "a".into() }, &SystemRandom, 0, None);
        let other = SessionId::generate(&SystemRandom).key();
        cache.put(other, &pending, 1);
        assert!(cache.get(&other, 1).is_none());
    }
}
