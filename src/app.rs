//! The running gateway's shared state: the current configuration and every service a
//! request may need. Built once by [`crate::build`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::audit;
use crate::auth::password::PasswordPool;
use crate::auth::seal::Sealer;
use crate::auth::session::{self, PENDING_TTL_SECS, Session, SessionId, SessionState};
use crate::auth::{Random, SharedRandom};
use crate::clock::{SharedClock, UnixTime};
use crate::config::{AccountChanges, Config};
use crate::i18n::Lang;
use crate::live::Live;
use crate::mail::{self, Mailer, Notice, Origin};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::render::Renderer;
use crate::session_cache::SessionCache;
use crate::store::{AuditEvent, Store, StoreError};

pub struct App {
    config: ArcSwap<Config>,
    mailer: ArcSwapOption<Mailer>,
    pub store: Store,
    pub sealer: Sealer,
    pub passwords: PasswordPool,
    pub clock: SharedClock,
    pub random: SharedRandom,
    pub render: Renderer,
    pub proxy: Proxy,
    pub live: Live,
    pub metrics: Metrics,
    sessions: SessionCache,
    /// Request ids: a random prefix per process and a counter, so the hot path makes no
    /// system call for them (they only need to be unique, not secret).
    request_ids: (u32, std::sync::atomic::AtomicU64),
    /// When the configuration in force was loaded (start or reload).
    pub loaded_at: AtomicI64,
    /// The kernel's last word on the clock (M-4): `None` when it cannot tell.
    clock_synchronised: ArcSwapOption<bool>,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        mailer: Option<Mailer>,
        store: Store,
        sealer: Sealer,
        passwords: PasswordPool,
        clock: SharedClock,
        random: SharedRandom,
        proxy: Proxy,
    ) -> App {
        let prefix = u32::from_be_bytes(crate::auth::random::random_bytes::<4>(&*random));
        App {
            mailer: ArcSwapOption::from(mailer.map(Arc::new)),
            config: ArcSwap::from_pointee(config),
            store,
            sealer,
            passwords,
            clock: clock.clone(),
            random,
            render: Renderer::new(),
            proxy,
            live: Live::default(),
            metrics: Metrics::default(),
            sessions: SessionCache::default(),
            request_ids: (prefix, Default::default()),
            loaded_at: AtomicI64::new(clock.now()),
            clock_synchronised: ArcSwapOption::empty(),
        }
    }

    /// Replaces the configuration (reload). Accounts that were removed, or whose switch
    /// or password changed, lose their sessions (REQ-74); an account whose second step
    /// was switched off loses its association too (M-11). Returns what changed.
    pub async fn apply_config(&self, mut next: Config) -> Result<AccountChanges, String> {
        let old = self.config();
        if next.smtp != old.smtp {
            let mailer = next.smtp.as_ref().map(Mailer::new).transpose()?;
            self.mailer.store(mailer.map(Arc::new));
        }
        // What the process is bound to cannot change without a restart.
        next.listen = old.listen;
        next.data_dir = old.data_dir.clone();
        next.http_redirect = old.http_redirect;
        next.metrics = old.metrics;
        let changes = AccountChanges::between(&old, &next);
        let prints = next.account_prints();
        self.config.store(Arc::new(next));
        self.loaded_at.store(self.now(), Ordering::Relaxed);
        for user in &changes.second_step_off {
            let u = user.clone();
            match self.store.run(move |s| s.reset_second_factor(&u)).await {
                Ok(true) => {
                    let detail = Some("two_factor switched off".to_owned());
                    self.audit("account.association_removed", Some(user), None, detail)
                        .await;
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, user, "removing an association failed"),
            }
        }
        // The sessions end in the transaction that records the new account prints; had
        // the process died in between, the next start would end them (REQ-74).
        match self.store.run(move |s| s.sync_accounts(&prints)).await {
            Ok(_) => self.live.sessions_changed(),
            Err(e) => {
                tracing::error!(error = %e, "recording the accounts failed; ending sessions one by one");
                for user in &changes.ended {
                    self.end_user_sessions(user).await;
                }
            }
        }
        Ok(changes)
    }

    /// M-11 at start: an account whose second step was switched off while the gateway
    /// was stopped loses its association now, as a reload would have done.
    pub async fn forget_switched_off(&self) {
        let cfg = self.config();
        let off: Vec<String> = match self.store.run(|s| s.associated_users()).await {
            Ok(users) => users
                .into_iter()
                .filter(|u| cfg.user(u).is_some_and(|a| !a.two_factor))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "reading associations failed");
                return;
            }
        };
        for user in off {
            let u = user.clone();
            match self.store.run(move |s| s.reset_second_factor(&u)).await {
                Ok(_) => {
                    let detail = Some("two_factor is off in the configuration at start".to_owned());
                    self.audit("account.association_removed", Some(&user), None, detail)
                        .await;
                }
                Err(e) => tracing::error!(error = %e, user, "removing an association failed"),
            }
        }
    }

    /// Removes expired sessions and stale pending enrollments. A login that stopped at
    /// the code step until it expired is worth telling the user about: someone may know
    /// their password.
    pub async fn purge_expired(self: &Arc<Self>) {
        let now = self.now();
        let cfg = self.config();
        let result = self
            .store
            .run(move |s| s.purge(|sess| sess.is_live(now, &cfg.session), now - PENDING_TTL_SECS))
            .await;
        match result {
            Ok(removed) => {
                for s in &removed {
                    if let SessionState::PendingCode { user } = &s.state {
                        self.audit("login.abandoned", Some(user), None, None).await;
                        let origin = Origin::new(s.created, "-", None);
                        self.notify(user, Notice::Abandoned, self.config().default_lang, origin);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "purging sessions failed"),
        }
        let before = now - self.config().audit.retention_secs;
        match self.store.run(move |s| s.prune_audit(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned audit records past their retention"),
            Err(e) => tracing::error!(error = %e, "pruning the audit trail failed"),
        }
    }

    /// Records what the kernel says about the clock (M-4).
    pub fn set_clock_synchronised(&self, state: Option<bool>) {
        self.clock_synchronised.store(state.map(Arc::new));
    }

    pub fn clock_synchronised(&self) -> Option<bool> {
        self.clock_synchronised.load().as_deref().copied()
    }

    pub fn mailer(&self) -> Option<Arc<Mailer>> {
        self.mailer.load_full()
    }

    /// Sends a security notice in the background, if the config wants this kind and
    /// SMTP is set up; the outcome goes to the audit trail.
    pub fn notify(self: &Arc<Self>, user: &str, notice: Notice, lang: Lang, origin: Origin) {
        let cfg = self.config();
        let wanted = notice.wanted(&cfg.notify);
        let (Some(account), Some(mailer), true) = (cfg.user(user).cloned(), self.mailer(), wanted) else {
            return;
        };
        let app = self.clone();
        tokio::spawn(async move {
            let mail = mail::notice_mail(&app.render, lang, notice, &account.id, &origin);
            let result = mailer.send(&account.email, mail).await;
            let detail = result.as_ref().err().map(|e| e.to_string());
            let event = if result.is_ok() {
                notice.event().to_owned()
            } else {
                format!("{}.failed", notice.event())
            };
            app.audit(
                &event,
                Some(&account.id),
                Some(origin.ip.clone()).filter(|ip| ip != "-"),
                detail,
            )
            .await;
        });
    }

    /// A new request id, e.g. `3fa2c1d0-000000000000002a`.
    pub fn next_request_id(&self) -> String {
        let n = self.request_ids.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{:08x}-{n:012x}", self.request_ids.0)
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn rng(&self) -> &dyn Random {
        &*self.random
    }

    /// The live session named by the request's cookie, if any. Expired sessions count
    /// as none; a full session's "last seen" is refreshed at most once a minute.
    pub async fn session(&self, headers: &http::HeaderMap) -> Option<(SessionId, Session)> {
        let id = SessionId::parse(session::read_cookie(headers, session::SESSION_COOKIE)?)?;
        let s = self.session_by_id(&id).await?;
        Some((id, s))
    }

    pub async fn session_by_id(&self, id: &SessionId) -> Option<Session> {
        let key = id.key();
        let epoch = self.live.epoch();
        let s = match self.sessions.get(&key, epoch) {
            Some(s) => s,
            None => match self.store.run(move |s| s.session(&key)).await {
                Ok(Some(s)) => {
                    self.sessions.put(key, &s, epoch);
                    s
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "session lookup failed");
                    return None;
                }
            },
        };
        let cfg = self.config();
        let now = self.now();
        if !s.is_live(now, &cfg.session) {
            return None;
        }
        // A removed account, or one whose switch changed, keeps no session (REQ-74).
        if let Some(user) = s.user()
            && cfg.user(user).is_none()
        {
            return None;
        }
        if s.needs_touch(now) {
            self.sessions.touch(&key, now);
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                let _ = store.update_session(&key, |cur| {
                    let next = cur.map(|mut c| {
                        c.last_seen = now;
                        c
                    });
                    (next, ())
                });
            });
        }
        Some(s)
    }

    /// Ends one session on the server, and its live connections.
    pub async fn end_session(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = id.key();
        self.store.run(move |s| s.delete_session(&key)).await?;
        self.live.sessions_changed();
        Ok(())
    }

    /// Ends every session of a user, and their live connections; returns how many.
    pub async fn end_user_sessions(&self, user: &str) -> usize {
        let u = user.to_owned();
        let n = match self.store.run(move |s| s.delete_user_sessions(&u)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, user, "ending a user's sessions failed");
                0
            }
        };
        self.live.sessions_changed();
        n
    }

    /// Appends a record by the gateway itself (actor `system`); a failure to write it is
    /// logged, never shown.
    pub async fn audit(&self, event: &str, user: Option<&str>, ip: Option<String>, detail: Option<String>) {
        self.record(AuditEvent {
            time: self.now(),
            event: event.to_owned(),
            user: user.map(str::to_owned),
            ip,
            detail,
            actor: audit::SYSTEM.to_owned(),
            user_agent: None,
            outcome: audit::outcome_of(event).to_owned(),
        })
        .await;
    }

    /// Appends a record to the audit trail and writes it as a structured log line.
    pub async fn record(&self, e: AuditEvent) {
        self.metrics.event(&e.event);
        tracing::info!(
            target: "kanmon::audit",
            event = %e.event, user = ?e.user, actor = %e.actor, ip = ?e.ip,
            user_agent = ?e.user_agent, outcome = %e.outcome, detail = ?e.detail,
        );
        if let Err(err) = self.store.run(move |s| s.audit(&e)).await {
            tracing::error!(error = %err, "audit write failed");
        }
    }
}
