//! Administrators' commands on runtime state (M-1, M-11): the status of accounts,
//! removing a user's association, clearing failure limits, ending sessions. One place
//! for each rule, used by the control socket of a running gateway, by `kanmon user …`
//! when no gateway runs (the database opened directly), and by the status page.
//! Every action is audited with its actor and e-mails the user.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::audit;
use crate::auth::admin as rules;
use crate::auth::throttle::Gate;
use crate::clock::{SharedClock, UnixTime};
use crate::config::{Config, User};
use crate::mail::{self, Mailer, Notice, Origin};
use crate::render::Renderer;
use crate::store::{AccountRecord, AuditEvent, Store, StoreError};

/// A command, as the control socket receives it (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// One account, or every account.
    Status { user: Option<String> },
    /// Remove the association: the next login enrolls again.
    #[serde(rename = "reset-2fa")]
    Reset2fa { user: String, reason: String },
    /// Clear every failure limit of the account (back-off and lock).
    Unlock { user: String },
    /// End every session of the account.
    Logout { user: String },
}

/// What an account looks like to an administrator. Never a secret, token or hash
/// (REQ-53).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatus {
    pub id: String,
    pub email: String,
    pub role: String,
    pub two_factor: bool,
    pub authenticator: bool,
    pub enrolled_at: Option<UnixTime>,
    pub pending_enrollment: bool,
    /// The code step is locked (100 wrong codes) until a reset or an unlock.
    pub locked: bool,
    /// The code step waits until then (back-off after wrong codes).
    pub slowed_until: Option<UnixTime>,
    pub code_failures: u32,
    pub last_login: Option<UnixTime>,
    pub open_sessions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    Status {
        accounts: Vec<AccountStatus>,
    },
    Done {
        user: String,
        /// What was done, in one sentence.
        message: String,
        /// For the commands that end sessions.
        sessions_ended: Option<usize>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no account `{0}` in the configuration")]
    UnknownUser(String),
    #[error("a reason is required")]
    NoReason,
    #[error("administrators reset their own two-step authentication through the e-mail link, not here")]
    OwnAssociation,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who asks, for the audit trail and the self-reset rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `cli` or `admin:ID`.
    pub name: String,
    /// The administrator's account when acting on the status page.
    pub admin: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn cli() -> Actor {
        Actor {
            name: audit::CLI.to_owned(),
            admin: None,
            ip: None,
            user_agent: None,
        }
    }
}

/// What the commands need from where they run: a running gateway (its sessions have
/// live connections to end) or the database opened by the command itself.
pub trait Env: Send + Sync {
    fn config(&self) -> Arc<Config>;
    fn store(&self) -> &Store;
    fn now(&self) -> UnixTime;
    fn end_sessions(&self, user: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;
    fn record(&self, e: AuditEvent) -> impl Future<Output = ()> + Send;
    /// Sends a notice (when the config wants it and SMTP is set); the outcome is audited.
    fn notify(&self, user: &str, notice: Notice, origin: Origin) -> impl Future<Output = ()> + Send;
}

pub async fn run<E: Env>(env: &E, actor: &Actor, command: Command) -> Result<Output, AdminError> {
    let cfg = env.config();
    match command {
        Command::Status { user } => {
            let accounts: Vec<Arc<User>> = match user {
                Some(u) => vec![known(&cfg, &u)?],
                None => cfg.users().cloned().collect(),
            };
            Ok(Output::Status {
                accounts: statuses(env, &accounts).await?,
            })
        }
        Command::Reset2fa { user, reason } => {
            let account = known(&cfg, &user)?;
            let reason = rules::reason(&reason).ok_or(AdminError::NoReason)?;
            if !rules::may_reset_association(actor.admin.as_deref(), &account.id) {
                return Err(AdminError::OwnAssociation);
            }
            let id = account.id.clone();
            let had = env.store().run(move |s| s.reset_second_factor(&id)).await?;
            let ended = env.end_sessions(&account.id).await?;
            let detail = format!("reason: {reason}; authenticator was associated: {had}; sessions ended: {ended}");
            finish(env, actor, &account, "admin.reset_2fa", detail, Notice::AdminReset).await;
            Ok(done(
                &account,
                format!(
                    "removed the two-step association of {} (the next login enrolls again)",
                    account.id
                ),
                Some(ended),
            ))
        }
        Command::Unlock { user } => {
            let account = known(&cfg, &user)?;
            let id = account.id.clone();
            env.store().run(move |s| s.clear_failures(&id, true, true)).await?;
            finish(env, actor, &account, "admin.unlock", String::new(), Notice::AdminUnlock).await;
            Ok(done(
                &account,
                format!("cleared the failure limits of {}", account.id),
                None,
            ))
        }
        Command::Logout { user } => {
            let account = known(&cfg, &user)?;
            let ended = env.end_sessions(&account.id).await?;
            let detail = format!("sessions ended: {ended}");
            finish(env, actor, &account, "admin.logout", detail, Notice::AdminLogout).await;
            Ok(done(
                &account,
                format!("ended the sessions of {}", account.id),
                Some(ended),
            ))
        }
    }
}

fn known(cfg: &Config, user: &str) -> Result<Arc<User>, AdminError> {
    cfg.user(user)
        .cloned()
        .ok_or_else(|| AdminError::UnknownUser(user.to_owned()))
}

fn done(account: &User, message: String, sessions_ended: Option<usize>) -> Output {
    Output::Done {
        user: account.id.clone(),
        message,
        sessions_ended,
    }
}

async fn finish<E: Env>(env: &E, actor: &Actor, account: &User, event: &str, detail: String, notice: Notice) {
    env.record(AuditEvent {
        time: env.now(),
        event: event.to_owned(),
        user: Some(account.id.clone()),
        ip: actor.ip.clone(),
        detail: (!detail.is_empty()).then_some(detail),
        actor: actor.name.clone(),
        user_agent: actor.user_agent.clone(),
        outcome: audit::outcome_of(event).to_owned(),
    })
    .await;
    let origin = Origin::new(
        env.now(),
        actor.ip.as_deref().unwrap_or("-"),
        actor.user_agent.as_deref(),
    );
    env.notify(&account.id, notice, origin).await;
}

/// The status of these accounts, read from the store in one transaction.
pub async fn statuses<E: Env>(env: &E, accounts: &[Arc<User>]) -> Result<Vec<AccountStatus>, StoreError> {
    let ids: Vec<String> = accounts.iter().map(|u| u.id.clone()).collect();
    let records = env.store().run(move |s| s.account_records(&ids)).await?;
    let (now, cfg) = (env.now(), env.config());
    Ok(accounts
        .iter()
        .zip(records)
        .map(|(u, r)| status_of(u, r, now, &cfg))
        .collect())
}

fn status_of(u: &User, r: AccountRecord, now: UnixTime, cfg: &Config) -> AccountStatus {
    let gate = r.code_failures.gate(now);
    AccountStatus {
        id: u.id.clone(),
        email: u.email.clone(),
        role: u.role.as_str().to_owned(),
        two_factor: u.two_factor,
        authenticator: r.authenticator.is_some(),
        enrolled_at: r.authenticator.map(|a| a.enrolled_at),
        pending_enrollment: r.pending_enrollment,
        locked: gate == Gate::Locked,
        slowed_until: match gate {
            Gate::SlowedUntil(t) => Some(t),
            _ => None,
        },
        code_failures: r.code_failures.consecutive,
        last_login: r.last_login,
        open_sessions: r
            .sessions
            .iter()
            .filter(|s| s.is_full() && s.is_live(now, &cfg.session))
            .count(),
    }
}

/// The commands inside a running gateway: ending sessions also ends their live
/// connections.
impl Env for Arc<App> {
    fn config(&self) -> Arc<Config> {
        App::config(self)
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn now(&self) -> UnixTime {
        App::now(self)
    }

    async fn end_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let u = user.to_owned();
        let n = self.store.run(move |s| s.delete_user_sessions(&u)).await?;
        self.live.sessions_changed();
        Ok(n)
    }

    async fn record(&self, e: AuditEvent) {
        App::record(self, e).await;
    }

    async fn notify(&self, user: &str, notice: Notice, origin: Origin) {
        App::notify(self, user, notice, App::config(self).default_lang, origin);
    }
}

/// The commands on a stopped gateway: the command opened the database itself.
pub struct Offline {
    pub config: Arc<Config>,
    pub store: Store,
    pub mailer: Option<Mailer>,
    pub render: Renderer,
    pub clock: SharedClock,
}

impl Env for Offline {
    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    async fn end_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let u = user.to_owned();
        self.store.run(move |s| s.delete_user_sessions(&u)).await
    }

    async fn record(&self, e: AuditEvent) {
        tracing::info!(
            target: "kanmon::audit",
            event = %e.event, user = ?e.user, actor = %e.actor, outcome = %e.outcome, detail = ?e.detail,
        );
        if let Err(err) = self.store.run(move |s| s.audit(&e)).await {
            tracing::error!(error = %err, "audit write failed");
        }
    }

    async fn notify(&self, user: &str, notice: Notice, origin: Origin) {
        let Some(account) = self.config.user(user).cloned() else {
            return;
        };
        let Some(mailer) = self.mailer.as_ref().filter(|_| notice.wanted(&self.config.notify)) else {
            return;
        };
        let mail = mail::notice_mail(&self.render, self.config.default_lang, notice, &account.id, &origin);
        let result = mailer.send(&account.email, mail).await;
        let (event, detail) = match &result {
            Ok(()) => (notice.event().to_owned(), None),
            Err(e) => (format!("{}.failed", notice.event()), Some(e.to_string())),
        };
        self.record(AuditEvent {
            time: self.now(),
            event: event.clone(),
            user: Some(account.id.clone()),
            ip: None,
            detail,
            actor: audit::SYSTEM.to_owned(),
            user_agent: None,
            outcome: audit::outcome_of(&event).to_owned(),
        })
        .await;
    }
}

/// A table for the terminal: one line per account.
pub fn status_table(accounts: &[AccountStatus]) -> String {
    let header = [
        "ID",
        "ROLE",
        "2FA",
        "AUTHENTICATOR",
        "LOCKED",
        "FAILURES",
        "LAST LOGIN",
        "SESSIONS",
    ];
    let rows: Vec<[String; 8]> = accounts
        .iter()
        .map(|a| {
            [
                a.id.clone(),
                a.role.clone(),
                if a.two_factor { "on" } else { "off" }.to_owned(),
                match (a.authenticator, a.pending_enrollment) {
                    (true, _) => "associated".to_owned(),
                    (false, true) => "enrolling".to_owned(),
                    (false, false) => "none".to_owned(),
                },
                match (a.locked, a.slowed_until) {
                    (true, _) => "locked".to_owned(),
                    (false, Some(t)) => format!("slowed until {}", mail::format_utc(t)),
                    (false, None) => "no".to_owned(),
                },
                a.code_failures.to_string(),
                a.last_login.map_or("never".to_owned(), mail::format_utc),
                a.open_sessions.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_json_lines() {
        let c: Command = serde_json::from_str(r#"{"command":"reset-2fa","user":"bob","reason":"lost phone"}"#).unwrap();
        assert_eq!(
            c,
            Command::Reset2fa {
                user: "bob".into(),
                reason: "lost phone".into()
            }
        );
        let c: Command = serde_json::from_str(r#"{"command":"status","user":null}"#).unwrap();
        assert_eq!(c, Command::Status { user: None });
        assert!(serde_json::from_str::<Command>(r#"{"command":"drop-tables"}"#).is_err());
    }

    #[test]
    fn the_table_lines_up() {
        let a = AccountStatus {
            id: "alice".into(),
            email: "a@example.com".into(),
            role: "admin".into(),
            two_factor: true,
            authenticator: true,
            enrolled_at: Some(0),
            pending_enrollment: false,
            locked: true,
            slowed_until: None,
            code_failures: 100,
            last_login: Some(0),
            open_sessions: 2,
        };
        let t = status_table(&[a]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID     ROLE   2FA"), "{t}");
        assert!(lines[1].contains("associated") && lines[1].contains("locked") && lines[1].contains("1970-01-01"));
    }
}
