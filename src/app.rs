//! The running gateway's shared state: the current configuration and every service a
//! request may need. Built once by [`crate::build`].

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::auth::password::PasswordPool;
use crate::auth::seal::Sealer;
use crate::auth::session::{self, PENDING_TTL_SECS, Session, SessionId, SessionState};
use crate::auth::{Random, SharedRandom};
use crate::clock::{SharedClock, UnixTime};
use crate::config::Config;
use crate::i18n::Lang;
use crate::live::Live;
use crate::mail::{self, Mailer, Notice, Origin};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::render::Renderer;
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
        App {
            mailer: ArcSwapOption::from(mailer.map(Arc::new)),
            config: ArcSwap::from_pointee(config),
            store,
            sealer,
            passwords,
            clock,
            random,
            render: Renderer::new(),
            proxy,
            live: Live::default(),
            metrics: Metrics::default(),
        }
    }

    /// Replaces the configuration (reload). Accounts that were removed, or whose switch
    /// or password changed, lose their sessions (REQ-74); returns their IDs.
    pub async fn apply_config(&self, mut next: Config) -> Result<Vec<String>, String> {
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
        let affected: Vec<String> = old
            .users()
            .filter(|u| match next.user(&u.id) {
                None => true,
                Some(n) => n.two_factor != u.two_factor || n.password_hash != u.password_hash,
            })
            .map(|u| u.id.clone())
            .collect();
        let prints = next.account_prints();
        self.config.store(Arc::new(next));
        // The sessions end in the transaction that records the new prints; had the
        // process died in between, the next start would end them (REQ-74).
        match self.store.run(move |s| s.sync_accounts(&prints)).await {
            Ok(_) => self.live.sessions_changed(),
            Err(e) => {
                tracing::error!(error = %e, "recording the accounts failed; ending sessions one by one");
                for user in &affected {
                    self.end_user_sessions(user).await;
                }
            }
        }
        Ok(affected)
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
    }

    pub fn mailer(&self) -> Option<Arc<Mailer>> {
        self.mailer.load_full()
    }

    /// Sends a security notice in the background, if the config wants this kind and
    /// SMTP is set up; the outcome goes to the audit trail.
    pub fn notify(self: &Arc<Self>, user: &str, notice: Notice, lang: Lang, origin: Origin) {
        let cfg = self.config();
        let wanted = match notice {
            Notice::Enrolled => cfg.notify.enrollment,
            Notice::ResetDone => cfg.notify.reset,
            Notice::WrongCode => cfg.notify.wrong_code,
            Notice::Abandoned => cfg.notify.abandoned,
            Notice::Replay => cfg.notify.replay,
            Notice::Locked => cfg.notify.locked,
        };
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
            app.audit(&event, Some(&account.id), Some(origin.ip.clone()), detail)
                .await;
        });
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
        let found = self.store.run(move |s| s.session(&key)).await;
        let s = match found {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return None;
            }
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
            let key = id.key();
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

    /// Appends to the audit trail; a failure to write it is logged, never shown.
    pub async fn audit(&self, event: &str, user: Option<&str>, ip: Option<String>, detail: Option<String>) {
        let e = AuditEvent {
            time: self.now(),
            event: event.to_owned(),
            user: user.map(str::to_owned),
            ip,
            detail,
        };
        self.metrics.event(event);
        tracing::info!(target: "kanmon::audit", event = %e.event, user = ?e.user, ip = ?e.ip, detail = ?e.detail);
        if let Err(err) = self.store.run(move |s| s.audit(&e)).await {
            tracing::error!(error = %err, "audit write failed");
        }
    }
}
