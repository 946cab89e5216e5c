//! Reloading without a restart (G-8, G-9): the configuration on SIGHUP and when its file
//! changes, the certificate when its files change. A file that fails validation is
//! refused with the reason in the log, and the last good configuration stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::Config;
use crate::tls::CertStore;

/// How often the files are looked at.
const POLL_EVERY: Duration = Duration::from_secs(1);

pub struct Reloader {
    app: Arc<App>,
    path: PathBuf,
    certs: Arc<CertStore>,
}

/// What changed files look like: a hash of their contents (missing files hash empty).
fn fingerprint(paths: &[&Path]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).unwrap_or_default());
        h.update([0]);
    }
    h.finalize().into()
}

impl Reloader {
    pub fn new(app: Arc<App>, certs: Arc<CertStore>) -> Reloader {
        let path = app.config().source.clone();
        Reloader { app, path, certs }
    }

    /// The config file and the users file it names.
    fn config_print(&self) -> [u8; 32] {
        let cfg = self.app.config();
        match &cfg.users_file {
            Some(users) => fingerprint(&[&self.path, users]),
            None => fingerprint(&[&self.path]),
        }
    }

    fn cert_print(&self) -> [u8; 32] {
        let cfg = self.app.config();
        fingerprint(&[&cfg.tls.cert, &cfg.tls.key])
    }

    /// Watches for SIGHUP and file changes until the task is aborted.
    pub async fn run(self) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let (mut config_seen, mut cert_seen) = (self.config_print(), self.cert_print());
        loop {
            let signalled = tokio::select! {
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                _ = tokio::time::sleep(POLL_EVERY) => false,
            };
            let config_now = self.config_print();
            if signalled || config_now != config_seen {
                config_seen = config_now;
                let _ = self.reload_config().await;
            }
            let cert_now = self.cert_print();
            if signalled || cert_now != cert_seen {
                cert_seen = cert_now;
                self.reload_certificate();
            }
        }
    }

    /// Loads the file and, if it is valid, puts it in force. Returns the accounts whose
    /// sessions ended, or the reason the file was refused.
    pub async fn reload_config(&self) -> Result<Vec<String>, String> {
        let next = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "configuration refused; the previous one stays in force");
                self.app.audit("config.rejected", None, None, Some(e.to_string())).await;
                return Err(e.to_string());
            }
        };
        if let Some(w) = next.users_file_warning() {
            tracing::warn!("{w}");
        }
        let old = self.app.config();
        for (what, changed) in [
            ("listen", next.listen != old.listen),
            ("data_dir", next.data_dir != old.data_dir),
            ("http_redirect", next.http_redirect != old.http_redirect),
            ("metrics", next.metrics != old.metrics),
        ] {
            if changed {
                tracing::warn!(
                    setting = what,
                    "this setting changes only at a restart; the old value stays in force"
                );
            }
        }
        let tls_moved = next.tls != old.tls;
        let changes = match self.app.apply_config(next).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "configuration refused; the previous one stays in force");
                self.app.audit("config.rejected", None, None, Some(e.clone())).await;
                return Err(e);
            }
        };
        if tls_moved {
            self.reload_certificate();
        }
        let summary = changes.summary();
        tracing::info!(accounts = %summary, "configuration reloaded");
        self.app.audit("config.reloaded", None, None, Some(summary)).await;
        Ok(changes.ended)
    }

    fn reload_certificate(&self) {
        match self.certs.reload(&self.app.config()) {
            Ok(()) => tracing::info!("certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "certificate refused; the previous one stays in use"),
        }
    }
}
