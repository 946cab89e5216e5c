//! The only code that touches redb. Typed operations on sessions, authenticators,
//! pending enrollments and the audit trail; nothing of redb leaks out, so another
//! backend can stand behind the same API. Every read-modify-write is one write
//! transaction, which redb serializes: the replay guard is atomic (REQ-7).
//!
//! All calls block (a commit waits for the disk): async code runs them through
//! [`Store::run`], off the async threads.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::auth::session::{Session, SessionKey};
use crate::auth::throttle::{CodeFailures, Gate};
use crate::auth::totp::Verdict;
use crate::clock::UnixTime;

const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// `user key ++ 0x00 ++ session key` → (): every session of a user, to end them all.
const USER_SESSIONS: TableDefinition<&[u8], ()> = TableDefinition::new("user_sessions");
const AUTHENTICATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("authenticators");
const PENDING_ENROLLMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("pending_enrollments");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// SHA-256 of a reset token → the token's record.
const RESET_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reset_tokens");
/// user → SHA-256 of their one current reset token (a newer one voids older ones).
const RESET_BY_USER: TableDefinition<&str, &[u8]> = TableDefinition::new("reset_by_user");
/// `kind:key` → times of recent events, for hourly limits.
const RATE: TableDefinition<&str, &[u8]> = TableDefinition::new("rate");
/// user → their code-step failures (REQ-10, REQ-11).
const CODE_FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("code_failures");
/// user → the browser allowed to enroll after a self-service reset (REQ-50).
const REENROLL: TableDefinition<&str, &[u8]> = TableDefinition::new("reenroll");
/// user → time of their last successful login, kept with the audit record that says so.
const LAST_LOGIN: TableDefinition<&str, i64> = TableDefinition::new("last_login");

/// The audit event whose record also updates the user's last login.
pub const LOGIN_SUCCESS: &str = "login.success";
/// Audit records looked at, at most, for one filtered query (newest first).
const AUDIT_SCAN_LIMIT: usize = 200_000;
/// user → the print of what their logins were checked against (password hash and
/// second-step switch) in the configuration the stored sessions were made under.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");

pub const DB_FILE: &str = "kanmon.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is open in another kanmon process")]
    AlreadyOpen,
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("a stored record cannot be read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the database task stopped")]
    TaskFailed,
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(e.into()) }
    })*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T> = std::result::Result<T, StoreError>;

fn user_sessions_in(
    sessions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    index: &impl ReadableTable<&'static [u8], ()>,
    user: &str,
) -> Result<Vec<Session>> {
    let mut prefix = user_key(user).into_bytes();
    prefix.push(0);
    let mut end = prefix.clone();
    *end.last_mut().expect("non-empty") = 1;
    let mut out = Vec::new();
    for entry in index.range(prefix.as_slice()..end.as_slice())? {
        let (k, _) = entry?;
        if let Some(v) = sessions.get(&k.value()[prefix.len()..])? {
            out.push(from_json(v.value())?);
        }
    }
    Ok(out)
}

/// A user's associated authenticator. `last_step` is the replay guard (REQ-6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticator {
    /// The TOTP secret, sealed for ("totp", user).
    pub sealed_secret: String,
    pub last_step: Option<i64>,
    pub enrolled_at: UnixTime,
}

/// A secret shown on the enrollment screen but not yet confirmed with a code (M-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEnrollment {
    pub sealed_secret: String,
    pub created: UnixTime,
}

/// How the enrollment screen's secret came about, so the screen can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The first one for this user.
    New,
    /// The same secret as shown before, still within its life.
    Reused,
    /// An earlier one had expired and was replaced.
    Replaced,
}

/// A reset link's record; only the SHA-256 of the token is stored (REQ-38).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetToken {
    pub user: String,
    pub expires: UnixTime,
    /// The association it may remove: a newer authenticator voids the link.
    pub enrolled_at: UnixTime,
    /// SHA-256 (hex) of the requesting browser's binding cookie.
    pub browser: String,
}

/// The browser that may enroll after a self-service reset, until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReenrollBinding {
    pub browser: String,
    pub until: UnixTime,
}

/// One record of the audit trail. Fields added later have serde defaults, so records
/// written by older versions stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: UnixTime,
    pub event: String,
    /// The account concerned.
    pub user: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
    /// Who acted: `browser` (someone at the login screens), `admin:ID`, `cli`, `system`.
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// `success`, `failure` or `info`.
    #[serde(default)]
    pub outcome: String,
}

/// Which audit records a query wants; every part that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The account, case-insensitively.
    pub user: Option<String>,
    /// A part of the event name (`login`, `admin.reset_2fa`).
    pub event: Option<String>,
    pub from: Option<UnixTime>,
    /// Exclusive.
    pub to: Option<UnixTime>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| e.user.as_ref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
            && self.event.as_ref().is_none_or(|ev| e.event.contains(ev.as_str()))
            && self.from.is_none_or(|t| e.time >= t)
            && self.to.is_none_or(|t| e.time < t)
    }
}

/// What the store knows about one account, for the status of administrators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRecord {
    pub authenticator: Option<Authenticator>,
    pub pending_enrollment: bool,
    pub code_failures: CodeFailures,
    pub last_login: Option<UnixTime>,
    /// Every stored session of the account (expired ones are purged within a minute).
    pub sessions: Vec<Session>,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

fn user_key(user: &str) -> String {
    user.to_lowercase()
}

/// The rate key of a typed user ID's password failures (existing account or not).
pub fn password_key(user: &str) -> String {
    format!("password-user:{}", user_key(user))
}

/// The rate key of a client address's password failures.
pub fn password_ip_key(ip: &std::net::IpAddr) -> String {
    format!("password-ip:{ip}")
}

fn index_key(user: &str, key: &SessionKey) -> Vec<u8> {
    let mut k = user_key(user).into_bytes();
    k.push(0);
    k.extend_from_slice(&key.0);
    k
}

/// Removes every session of a user (and its index entries) inside `txn`.
fn delete_sessions_of(txn: &redb::WriteTransaction, user: &str) -> Result<usize> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut index = txn.open_table(USER_SESSIONS)?;
    let mut prefix = user_key(user).into_bytes();
    prefix.push(0);
    let mut end = prefix.clone();
    *end.last_mut().expect("non-empty") = 1;
    let keys: Vec<Vec<u8>> = index
        .range(prefix.as_slice()..end.as_slice())?
        .map(|e| e.map(|(k, _)| k.value().to_vec()))
        .collect::<std::result::Result<_, _>>()?;
    for k in &keys {
        index.remove(k.as_slice())?;
        sessions.remove(&k[prefix.len()..])?;
    }
    Ok(keys.len())
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(b)?)
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = Database::create(dir.join(DB_FILE)).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
            e => StoreError::Db(e.into()),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(SESSIONS)?;
        txn.open_table(USER_SESSIONS)?;
        txn.open_table(AUTHENTICATORS)?;
        txn.open_table(PENDING_ENROLLMENTS)?;
        txn.open_table(AUDIT)?;
        txn.open_table(RESET_TOKENS)?;
        txn.open_table(RESET_BY_USER)?;
        txn.open_table(RATE)?;
        txn.open_table(REENROLL)?;
        txn.open_table(CODE_FAILURES)?;
        txn.open_table(LAST_LOGIN)?;
        txn.open_table(ACCOUNTS)?;
        txn.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Runs blocking store work off the async threads.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| StoreError::TaskFailed)?
    }

    /// A cheap read that proves the database answers (health checks).
    pub fn ping(&self) -> Result<()> {
        let txn = self.db.begin_read()?;
        txn.open_table(SESSIONS)?;
        Ok(())
    }

    // ---- sessions ----------------------------------------------------------------

    pub fn session(&self, key: &SessionKey) -> Result<Option<Session>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let value = table.get(key.0.as_slice())?;
        value.map(|v| from_json(v.value())).transpose()
    }

    /// Stores `session` under `new`, and removes `old` in the same transaction: a step
    /// up of the login is one atomic change of id (REQ-28).
    pub fn replace_session(&self, old: Option<&SessionKey>, new: &SessionKey, session: &Session) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut index = txn.open_table(USER_SESSIONS)?;
            if let Some(old) = old {
                let previous: Option<Session> = sessions
                    .remove(old.0.as_slice())?
                    .map(|v| from_json(v.value()))
                    .transpose()?;
                if let Some(user) = previous.as_ref().and_then(Session::user) {
                    index.remove(index_key(user, old).as_slice())?;
                }
            }
            sessions.insert(new.0.as_slice(), to_json(session)?.as_slice())?;
            if let Some(user) = session.user() {
                index.insert(index_key(user, new).as_slice(), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Read-modify-write of one session. `f` returns the new record, or `None` to delete
    /// it; its second value is handed back.
    pub fn update_session<R>(
        &self,
        key: &SessionKey,
        f: impl FnOnce(Option<Session>) -> (Option<Session>, R),
    ) -> Result<R> {
        let txn = self.db.begin_write()?;
        let result = {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut index = txn.open_table(USER_SESSIONS)?;
            let current: Option<Session> = sessions
                .get(key.0.as_slice())?
                .map(|v| from_json(v.value()))
                .transpose()?;
            let existed = current.clone();
            let (next, result) = f(current);
            match (&existed, &next) {
                (_, Some(s)) => {
                    sessions.insert(key.0.as_slice(), to_json(s)?.as_slice())?;
                }
                (Some(old), None) => {
                    sessions.remove(key.0.as_slice())?;
                    if let Some(user) = old.user() {
                        index.remove(index_key(user, key).as_slice())?;
                    }
                }
                (None, None) => {}
            }
            result
        };
        txn.commit()?;
        Ok(result)
    }

    pub fn delete_session(&self, key: &SessionKey) -> Result<()> {
        self.update_session(key, |_| (None, ()))
    }

    /// Ends every session of a user; returns how many there were.
    pub fn delete_user_sessions(&self, user: &str) -> Result<usize> {
        let txn = self.db.begin_write()?;
        let count = delete_sessions_of(&txn, user)?;
        txn.commit()?;
        Ok(count)
    }

    /// Every stored session of a user.
    pub fn user_sessions(&self, user: &str) -> Result<Vec<Session>> {
        let txn = self.db.begin_read()?;
        let sessions = txn.open_table(SESSIONS)?;
        let index = txn.open_table(USER_SESSIONS)?;
        user_sessions_in(&sessions, &index, user)
    }

    /// REQ-74: brings the stored account prints (user, print) to those of the
    /// configuration in force and, in the same transaction, ends every session of an
    /// account that is gone or whose print changed; returns those accounts. Run at every
    /// start and every reload, so an edit ends the sessions it should even when the
    /// gateway was stopped, or killed, before it saw the edit.
    pub fn sync_accounts(&self, accounts: &[(String, [u8; 32])]) -> Result<Vec<String>> {
        let txn = self.db.begin_write()?;
        let ended = {
            let mut table = txn.open_table(ACCOUNTS)?;
            let stored: Vec<(String, Vec<u8>)> = table
                .iter()?
                .map(|e| e.map(|(k, v)| (k.value().to_owned(), v.value().to_vec())))
                .collect::<std::result::Result<_, _>>()?;
            let wanted: std::collections::HashMap<String, &[u8; 32]> =
                accounts.iter().map(|(u, p)| (user_key(u), p)).collect();
            let mut ended = Vec::new();
            for (user, print) in &stored {
                if wanted.get(user).is_none_or(|p| p.as_slice() != print.as_slice()) {
                    delete_sessions_of(&txn, user)?;
                    ended.push(user.clone());
                }
                if !wanted.contains_key(user) {
                    table.remove(user.as_str())?;
                }
            }
            for (user, print) in &wanted {
                table.insert(user.as_str(), print.as_slice())?;
            }
            ended
        };
        txn.commit()?;
        Ok(ended)
    }

    /// Deletes sessions for which `is_live` says no, and pending enrollments older than
    /// `pending_before`. Returns the sessions removed.
    pub fn purge(&self, is_live: impl Fn(&Session) -> bool, pending_before: UnixTime) -> Result<Vec<Session>> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut index = txn.open_table(USER_SESSIONS)?;
            let mut dead = Vec::new();
            for entry in sessions.iter()? {
                let (k, v) = entry?;
                let keep = from_json::<Session>(v.value()).map(|s| is_live(&s).then_some(s));
                match keep {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => dead.push((k.value().to_vec(), from_json::<Session>(v.value()).ok())),
                }
            }
            for (k, s) in &dead {
                sessions.remove(k.as_slice())?;
                if let (Some(user), Ok(key)) = (s.as_ref().and_then(Session::user), <[u8; 32]>::try_from(k.as_slice()))
                {
                    index.remove(index_key(user, &SessionKey(key)).as_slice())?;
                }
            }
            let mut pending = txn.open_table(PENDING_ENROLLMENTS)?;
            pending.retain(|_, v| from_json::<PendingEnrollment>(v).is_ok_and(|p| p.created >= pending_before))?;
            dead.into_iter().filter_map(|(_, s)| s).collect::<Vec<Session>>()
        };
        txn.commit()?;
        Ok(removed)
    }

    pub fn session_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(SESSIONS)?.len()?)
    }

    // ---- authenticators ------------------------------------------------------------

    pub fn authenticator(&self, user: &str) -> Result<Option<Authenticator>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUTHENTICATORS)?;
        let value = table.get(user_key(user).as_str())?;
        value.map(|v| from_json(v.value())).transpose()
    }

    /// Read-modify-write of a user's authenticator in one transaction. `f` returns the
    /// record to store (or `None` to leave it unchanged) and a result.
    pub fn update_authenticator<R>(
        &self,
        user: &str,
        f: impl FnOnce(Option<&Authenticator>) -> (Option<Authenticator>, R),
    ) -> Result<R> {
        let txn = self.db.begin_write()?;
        let result = {
            let mut table = txn.open_table(AUTHENTICATORS)?;
            let key = user_key(user);
            let current: Option<Authenticator> = table.get(key.as_str())?.map(|v| from_json(v.value())).transpose()?;
            let (next, result) = f(current.as_ref());
            if let Some(next) = next {
                table.insert(key.as_str(), to_json(&next)?.as_slice())?;
            }
            result
        };
        txn.commit()?;
        Ok(result)
    }

    /// Associates an authenticator confirmed by a right code, unless one exists already,
    /// and drops the pending enrollment and any re-enrollment binding. True when stored.
    pub fn complete_enrollment(&self, user: &str, authenticator: &Authenticator) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let stored = {
            let mut table = txn.open_table(AUTHENTICATORS)?;
            let key = user_key(user);
            if table.get(key.as_str())?.is_some() {
                false
            } else {
                table.insert(key.as_str(), to_json(authenticator)?.as_slice())?;
                txn.open_table(PENDING_ENROLLMENTS)?.remove(key.as_str())?;
                txn.open_table(REENROLL)?.remove(key.as_str())?;
                true
            }
        };
        txn.commit()?;
        Ok(stored)
    }

    pub fn remove_authenticator(&self, user: &str) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let removed = txn
            .open_table(AUTHENTICATORS)?
            .remove(user_key(user).as_str())?
            .is_some();
        txn.commit()?;
        Ok(removed)
    }

    /// Removes everything of a user's second step in one transaction: the association,
    /// a pending enrollment, reset links, code failures and a re-enrollment binding.
    /// The next login enrolls again. True when an authenticator was associated.
    pub fn reset_second_factor(&self, user: &str) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let key = user_key(user);
        let had = {
            let had = txn.open_table(AUTHENTICATORS)?.remove(key.as_str())?.is_some();
            txn.open_table(PENDING_ENROLLMENTS)?.remove(key.as_str())?;
            txn.open_table(CODE_FAILURES)?.remove(key.as_str())?;
            txn.open_table(REENROLL)?.remove(key.as_str())?;
            let old = txn
                .open_table(RESET_BY_USER)?
                .remove(key.as_str())?
                .map(|v| v.value().to_vec());
            if let Some(old) = old {
                txn.open_table(RESET_TOKENS)?.remove(old.as_slice())?;
            }
            had
        };
        txn.commit()?;
        Ok(had)
    }

    /// The (lower-cased) IDs of every account with an associated authenticator.
    pub fn associated_users(&self) -> Result<Vec<String>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUTHENTICATORS)?;
        table.iter()?.map(|e| Ok(e?.0.value().to_owned())).collect()
    }

    /// The stored state of several accounts, read in one transaction.
    pub fn account_records(&self, users: &[String]) -> Result<Vec<AccountRecord>> {
        let txn = self.db.begin_read()?;
        let authenticators = txn.open_table(AUTHENTICATORS)?;
        let pending = txn.open_table(PENDING_ENROLLMENTS)?;
        let failures = txn.open_table(CODE_FAILURES)?;
        let last = txn.open_table(LAST_LOGIN)?;
        let sessions = txn.open_table(SESSIONS)?;
        let index = txn.open_table(USER_SESSIONS)?;
        users
            .iter()
            .map(|u| {
                let key = user_key(u);
                Ok(AccountRecord {
                    authenticator: authenticators
                        .get(key.as_str())?
                        .map(|v| from_json(v.value()))
                        .transpose()?,
                    pending_enrollment: pending.get(key.as_str())?.is_some(),
                    code_failures: failures
                        .get(key.as_str())?
                        .map(|v| from_json(v.value()))
                        .transpose()?
                        .unwrap_or_default(),
                    last_login: last.get(key.as_str())?.map(|v| v.value()),
                    sessions: user_sessions_in(&sessions, &index, u)?,
                })
            })
            .collect()
    }

    // ---- pending enrollments -------------------------------------------------------

    /// The pending secret for a user: the stored one if created after `valid_since`,
    /// else a new one from `make` (stored before it is returned).
    pub fn pending_enrollment(
        &self,
        user: &str,
        now: UnixTime,
        valid_since: UnixTime,
        make: impl FnOnce() -> String,
    ) -> Result<(PendingEnrollment, Freshness)> {
        let txn = self.db.begin_write()?;
        let result = {
            let mut table = txn.open_table(PENDING_ENROLLMENTS)?;
            let key = user_key(user);
            let current: Option<PendingEnrollment> =
                table.get(key.as_str())?.map(|v| from_json(v.value())).transpose()?;
            match current {
                Some(p) if p.created >= valid_since => (p, Freshness::Reused),
                previous => {
                    let p = PendingEnrollment {
                        sealed_secret: make(),
                        created: now,
                    };
                    table.insert(key.as_str(), to_json(&p)?.as_slice())?;
                    (
                        p,
                        if previous.is_some() {
                            Freshness::Replaced
                        } else {
                            Freshness::New
                        },
                    )
                }
            }
        };
        txn.commit()?;
        Ok(result)
    }

    pub fn peek_pending_enrollment(&self, user: &str) -> Result<Option<PendingEnrollment>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PENDING_ENROLLMENTS)?;
        let value = table.get(user_key(user).as_str())?;
        value.map(|v| from_json(v.value())).transpose()
    }

    // ---- reset tokens -------------------------------------------------------------

    /// Stores a user's new reset token, voiding the previous one.
    pub fn put_reset_token(&self, hash: &[u8; 32], token: &ResetToken) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let mut by_user = txn.open_table(RESET_BY_USER)?;
            let key = user_key(&token.user);
            let old = by_user.get(key.as_str())?.map(|v| v.value().to_vec());
            if let Some(old) = old {
                tokens.remove(old.as_slice())?;
            }
            tokens.insert(hash.as_slice(), to_json(token)?.as_slice())?;
            by_user.insert(key.as_str(), hash.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn reset_token(&self, hash: &[u8; 32]) -> Result<Option<ResetToken>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESET_TOKENS)?;
        let value = table.get(hash.as_slice())?;
        value.map(|v| from_json(v.value())).transpose()
    }

    /// Voids the user's outstanding reset token, if any.
    pub fn delete_reset_tokens(&self, user: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let mut by_user = txn.open_table(RESET_BY_USER)?;
            let old = by_user.remove(user_key(user).as_str())?.map(|v| v.value().to_vec());
            if let Some(old) = old {
                tokens.remove(old.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Uses a reset token: if `accept` approves the record (and the user's current
    /// authenticator), in one transaction the token is consumed, the authenticator and
    /// any pending enrollment are removed, and the re-enrollment binding is stored.
    /// The token is consumed even when refused for expiry, so it never works later.
    pub fn consume_reset_token<R>(
        &self,
        hash: &[u8; 32],
        accept: impl FnOnce(Option<&ResetToken>, Option<&Authenticator>) -> std::result::Result<ReenrollBinding, R>,
    ) -> Result<std::result::Result<ResetToken, R>> {
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let record: Option<ResetToken> = tokens.get(hash.as_slice())?.map(|v| from_json(v.value())).transpose()?;
            let key = record.as_ref().map(|r| user_key(&r.user));
            let mut authenticators = txn.open_table(AUTHENTICATORS)?;
            let current: Option<Authenticator> = match &key {
                Some(k) => authenticators
                    .get(k.as_str())?
                    .map(|v| from_json(v.value()))
                    .transpose()?,
                None => None,
            };
            match (accept(record.as_ref(), current.as_ref()), record, key) {
                (Ok(binding), Some(record), Some(key)) => {
                    tokens.remove(hash.as_slice())?;
                    txn.open_table(RESET_BY_USER)?.remove(key.as_str())?;
                    authenticators.remove(key.as_str())?;
                    txn.open_table(PENDING_ENROLLMENTS)?.remove(key.as_str())?;
                    txn.open_table(REENROLL)?
                        .insert(key.as_str(), to_json(&binding)?.as_slice())?;
                    Ok(record)
                }
                (Ok(_), _, _) => unreachable!("accept approves only an existing token"),
                (Err(why), _, _) => Err(why),
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    pub fn reenroll_binding(&self, user: &str) -> Result<Option<ReenrollBinding>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REENROLL)?;
        let value = table.get(user_key(user).as_str())?;
        value.map(|v| from_json(v.value())).transpose()
    }

    pub fn delete_reenroll_binding(&self, user: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(REENROLL)?.remove(user_key(user).as_str())?;
        txn.commit()?;
        Ok(())
    }

    // ---- failure limits ---------------------------------------------------------

    pub fn code_failures(&self, user: &str) -> Result<CodeFailures> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CODE_FAILURES)?;
        let value = table.get(user_key(user).as_str())?;
        Ok(value.map(|v| from_json(v.value())).transpose()?.unwrap_or_default())
    }

    /// Counts one more wrong code, atomically; returns the new record and whether this
    /// failure locked the account.
    pub fn record_code_failure(&self, user: &str, now: UnixTime) -> Result<(CodeFailures, bool)> {
        let txn = self.db.begin_write()?;
        let result = {
            let mut table = txn.open_table(CODE_FAILURES)?;
            let key = user_key(user);
            let current: CodeFailures = table
                .get(key.as_str())?
                .map(|v| from_json(v.value()))
                .transpose()?
                .unwrap_or_default();
            let (next, locked) = current.after_failure(now);
            table.insert(key.as_str(), to_json(&next)?.as_slice())?;
            (next, locked)
        };
        txn.commit()?;
        Ok(result)
    }

    /// Decides a submitted code in one write transaction: the account's failure gate
    /// (REQ-12: while slowed or locked no code is checked), the verdict with its replay
    /// guard (REQ-6), storing the step of a right code (REQ-7) and counting a wrong one
    /// (REQ-10, REQ-11). redb runs write transactions one at a time, so submissions at
    /// the same moment can neither pass a closed gate together nor lose a count.
    /// `judge` gets the stored authenticator and gives the verdict; the result is that
    /// verdict (`Throttled` when the gate was closed) and whether this failure locked the
    /// account, or `None` when the user has no authenticator.
    pub fn attempt_code(
        &self,
        user: &str,
        now: UnixTime,
        judge: impl FnOnce(&Authenticator) -> Verdict,
    ) -> Result<Option<(Verdict, bool)>> {
        let txn = self.db.begin_write()?;
        let result = {
            let key = user_key(user);
            let mut failures_table = txn.open_table(CODE_FAILURES)?;
            let failures: CodeFailures = failures_table
                .get(key.as_str())?
                .map(|v| from_json(v.value()))
                .transpose()?
                .unwrap_or_default();
            let mut authenticators = txn.open_table(AUTHENTICATORS)?;
            let current: Option<Authenticator> = authenticators
                .get(key.as_str())?
                .map(|v| from_json(v.value()))
                .transpose()?;
            if failures.gate(now) != Gate::Open {
                Some((Verdict::Throttled, false))
            } else if let Some(a) = current {
                match judge(&a) {
                    Verdict::Accepted(step) => {
                        let next = Authenticator {
                            last_step: Some(step),
                            ..a
                        };
                        authenticators.insert(key.as_str(), to_json(&next)?.as_slice())?;
                        Some((Verdict::Accepted(step), false))
                    }
                    Verdict::Throttled => Some((Verdict::Throttled, false)),
                    wrong => {
                        let (next, locked) = failures.after_failure(now);
                        failures_table.insert(key.as_str(), to_json(&next)?.as_slice())?;
                        Some((wrong, locked))
                    }
                }
            } else {
                None
            }
        };
        txn.commit()?;
        Ok(result)
    }

    /// Clears failure limits on an account: the code step's count and lock and/or the
    /// password step's recent failures (after a success, an unlock or a reset).
    pub fn clear_failures(&self, user: &str, code: bool, password: bool) -> Result<()> {
        let txn = self.db.begin_write()?;
        if code {
            txn.open_table(CODE_FAILURES)?.remove(user_key(user).as_str())?;
        }
        if password {
            txn.open_table(RATE)?.remove(password_key(user).as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Recent event times under each key (oldest first), since `since`.
    pub fn times(&self, keys: &[&str], since: UnixTime) -> Result<Vec<Vec<UnixTime>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RATE)?;
        keys.iter()
            .map(|k| {
                let mut t: Vec<UnixTime> = table
                    .get(*k)?
                    .map(|v| from_json(v.value()))
                    .transpose()?
                    .unwrap_or_default();
                t.retain(|x| *x > since);
                Ok(t)
            })
            .collect()
    }

    /// Adds an event time under each key, dropping those not after `since`.
    pub fn add_time(&self, keys: &[&str], now: UnixTime, since: UnixTime) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RATE)?;
            for key in keys {
                let mut t: Vec<UnixTime> = table
                    .get(*key)?
                    .map(|v| from_json(v.value()))
                    .transpose()?
                    .unwrap_or_default();
                t.retain(|x| *x > since);
                t.push(now);
                table.insert(*key, to_json(&t)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    // ---- hourly limits ----------------------------------------------------------

    /// Records an event for each key unless one of them already had `max` events since
    /// `since`; all or nothing, in one transaction. True when recorded (allowed).
    pub fn rate_take(&self, keys: &[(&str, usize)], now: UnixTime, since: UnixTime) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let allowed = {
            let mut table = txn.open_table(RATE)?;
            let mut updated = Vec::with_capacity(keys.len());
            let mut allowed = true;
            for (key, max) in keys {
                let mut times: Vec<UnixTime> = table
                    .get(*key)?
                    .map(|v| from_json(v.value()))
                    .transpose()?
                    .unwrap_or_default();
                times.retain(|t| *t >= since);
                if times.len() >= *max {
                    allowed = false;
                }
                times.push(now);
                updated.push((*key, times));
            }
            if allowed {
                for (key, times) in updated {
                    table.insert(key, to_json(&times)?.as_slice())?;
                }
            }
            allowed
        };
        txn.commit()?;
        Ok(allowed)
    }

    // ---- audit trail -------------------------------------------------------------

    /// Appends a record; a successful login also becomes the user's last login.
    pub fn audit(&self, event: &AuditEvent) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(AUDIT)?;
            let next = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            table.insert(next, to_json(event)?.as_slice())?;
            if let (LOGIN_SUCCESS, Some(user)) = (event.event.as_str(), &event.user) {
                txn.open_table(LAST_LOGIN)?
                    .insert(user_key(user).as_str(), event.time)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes audit records older than `before` (the oldest come first); returns how many.
    pub fn prune_audit(&self, before: UnixTime) -> Result<usize> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut table = txn.open_table(AUDIT)?;
            let mut old = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                // An unreadable record has no time to keep it by.
                match from_json::<AuditEvent>(v.value()) {
                    Ok(e) if e.time >= before => break,
                    _ => old.push(k.value()),
                }
            }
            for k in &old {
                table.remove(*k)?;
            }
            old.len()
        };
        txn.commit()?;
        Ok(removed)
    }

    /// The newest `limit` records that match, newest first (looking at no more than a
    /// bounded number of records, so the page stays fast on a long trail).
    pub fn query_audit(&self, filter: &AuditFilter, limit: usize) -> Result<Vec<AuditEvent>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev().take(AUDIT_SCAN_LIMIT) {
            let (_, v) = entry?;
            // One unreadable record does not hide the rest of the trail.
            let Ok(e) = from_json::<AuditEvent>(v.value()) else {
                continue;
            };
            if filter.matches(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The newest `limit` audit events, newest first.
    pub fn recent_audit(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        table
            .iter()?
            .rev()
            .take(limit)
            .map(|e| {
                let (_, v) = e?;
                from_json(v.value())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SystemRandom;
    use crate::auth::session::{SessionId, SessionState};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    fn full(user: &str) -> Session {
        Session::new(
            SessionState::Full {
                user: user.into(),
                auth_time: 0,
            },
            &SystemRandom,
            0,
            None,
        )
    }

    #[test]
    fn second_open_of_the_same_file_is_refused() {
        let (dir, _s) = store();
        assert!(matches!(Store::open(dir.path()), Err(StoreError::AlreadyOpen)));
    }

    #[test]
    fn replace_moves_a_session_to_a_new_id() {
        let (_d, s) = store();
        let a = SessionId::generate(&SystemRandom).key();
        let b = SessionId::generate(&SystemRandom).key();
        s.replace_session(None, &a, &full("alice")).unwrap();
        s.replace_session(Some(&a), &b, &full("alice")).unwrap();
        assert!(s.session(&a).unwrap().is_none());
        assert!(s.session(&b).unwrap().is_some());
        assert_eq!(
            s.delete_user_sessions("ALICE").unwrap(),
            1,
            "the index followed the move"
        );
        assert!(s.session(&b).unwrap().is_none());
    }

    #[test]
    fn ending_a_users_sessions_leaves_others() {
        let (_d, s) = store();
        let keys: Vec<_> = (0..3).map(|_| SessionId::generate(&SystemRandom).key()).collect();
        s.replace_session(None, &keys[0], &full("alice")).unwrap();
        s.replace_session(None, &keys[1], &full("alice")).unwrap();
        s.replace_session(None, &keys[2], &full("alicex")).unwrap();
        assert_eq!(s.delete_user_sessions("alice").unwrap(), 2);
        assert!(s.session(&keys[2]).unwrap().is_some());
    }

    /// REQ-74: sessions of accounts whose print changed or that are gone end when the
    /// prints are brought up to date; the first sync only records.
    #[test]
    fn req74_syncing_account_prints_ends_sessions_of_changed_accounts() {
        let (_d, s) = store();
        let keys: Vec<_> = (0..3).map(|_| SessionId::generate(&SystemRandom).key()).collect();
        for (k, u) in keys.iter().zip(["alice", "bob", "carol"]) {
            s.replace_session(None, k, &full(u)).unwrap();
        }
        let accounts = |bob: u8| {
            vec![
                ("Alice".to_owned(), [1u8; 32]),
                ("bob".to_owned(), [bob; 32]),
                ("carol".to_owned(), [3u8; 32]),
            ]
        };
        assert!(s.sync_accounts(&accounts(2)).unwrap().is_empty(), "first run: recorded");
        assert!(s.sync_accounts(&accounts(2)).unwrap().is_empty(), "nothing changed");
        assert!(s.session(&keys[1]).unwrap().is_some());
        assert_eq!(s.sync_accounts(&accounts(9)).unwrap(), ["bob"]);
        assert!(s.session(&keys[1]).unwrap().is_none(), "bob's session ended");
        let mut without_carol = accounts(9);
        without_carol.pop();
        assert_eq!(s.sync_accounts(&without_carol).unwrap(), ["carol"]);
        assert!(s.session(&keys[2]).unwrap().is_none(), "carol is gone");
        assert!(s.session(&keys[0]).unwrap().is_some(), "alice is untouched");
        assert!(s.sync_accounts(&without_carol).unwrap().is_empty());
    }

    #[test]
    fn pending_enrollment_is_reused_then_replaced() {
        let (_d, s) = store();
        let (p1, f1) = s.pending_enrollment("bob", 100, 0, || "one".into()).unwrap();
        assert_eq!((p1.sealed_secret.as_str(), f1), ("one", Freshness::New));
        let (p2, f2) = s.pending_enrollment("bob", 200, 50, || "two".into()).unwrap();
        assert_eq!((p2.sealed_secret.as_str(), f2), ("one", Freshness::Reused));
        let (p3, f3) = s.pending_enrollment("bob", 900, 150, || "three".into()).unwrap();
        assert_eq!((p3.sealed_secret.as_str(), f3), ("three", Freshness::Replaced));
    }

    #[test]
    fn enrollment_completes_once() {
        let (_d, s) = store();
        let a = Authenticator {
            sealed_secret: "x".into(),
            last_step: Some(5),
            enrolled_at: 1,
        };
        assert!(s.complete_enrollment("bob", &a).unwrap());
        assert!(!s.complete_enrollment("bob", &a).unwrap());
        assert!(s.remove_authenticator("bob").unwrap());
        assert!(s.authenticator("bob").unwrap().is_none());
    }

    fn event(time: UnixTime, event: &str, user: Option<&str>) -> AuditEvent {
        AuditEvent {
            time,
            event: event.into(),
            user: user.map(str::to_owned),
            ip: None,
            detail: None,
            actor: "system".into(),
            user_agent: None,
            outcome: "info".into(),
        }
    }

    #[test]
    fn old_audit_records_stay_readable() {
        let old = r#"{"time":5,"event":"login.success","user":"alice","ip":"127.0.0.1","detail":null}"#;
        let e: AuditEvent = serde_json::from_str(old).unwrap();
        assert_eq!((e.actor.as_str(), e.user_agent, e.outcome.as_str()), ("", None, ""));
    }

    #[test]
    fn audit_is_pruned_filtered_and_keeps_the_last_login() {
        let (_d, s) = store();
        s.audit(&event(10, "login.success", Some("Alice"))).unwrap();
        s.audit(&event(20, "login.code_failed", Some("bob"))).unwrap();
        s.audit(&event(30, "login.success", Some("bob"))).unwrap();
        let f = AuditFilter {
            user: Some("alice".into()),
            ..AuditFilter::default()
        };
        assert_eq!(s.query_audit(&f, 10).unwrap().len(), 1);
        let f = AuditFilter {
            event: Some("code".into()),
            from: Some(15),
            to: Some(25),
            ..AuditFilter::default()
        };
        assert_eq!(s.query_audit(&f, 10).unwrap()[0].time, 20);
        let records = s.account_records(&["alice".into(), "bob".into()]).unwrap();
        assert_eq!((records[0].last_login, records[1].last_login), (Some(10), Some(30)));
        assert_eq!(s.prune_audit(25).unwrap(), 2);
        assert_eq!(s.recent_audit(10).unwrap().len(), 1);
        assert_eq!(
            s.account_records(&["alice".into()]).unwrap()[0].last_login,
            Some(10),
            "the last login outlives the pruned record"
        );
    }

    #[test]
    fn resetting_the_second_factor_removes_everything_of_it() {
        let (_d, s) = store();
        let a = Authenticator {
            sealed_secret: "x".into(),
            last_step: None,
            enrolled_at: 1,
        };
        s.complete_enrollment("bob", &a).unwrap();
        s.record_code_failure("bob", 5).unwrap();
        let token = ResetToken {
            user: "bob".into(),
            expires: 100,
            enrolled_at: 1,
            browser: String::new(),
        };
        s.put_reset_token(&[7; 32], &token).unwrap();
        assert_eq!(s.associated_users().unwrap(), ["bob"]);
        assert!(s.reset_second_factor("BOB").unwrap());
        assert!(s.associated_users().unwrap().is_empty());
        assert!(s.authenticator("bob").unwrap().is_none());
        assert!(s.reset_token(&[7; 32]).unwrap().is_none());
        assert_eq!(s.code_failures("bob").unwrap(), CodeFailures::default());
        assert!(!s.reset_second_factor("bob").unwrap());
    }

    #[test]
    fn audit_is_newest_first() {
        let (_d, s) = store();
        for i in 0..3 {
            s.audit(&event(i, &format!("e{i}"), None)).unwrap();
        }
        let events = s.recent_audit(2).unwrap();
        assert_eq!(
            events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
            ["e2", "e1"]
        );
    }
}
