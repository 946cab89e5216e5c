//! kanmon (関門): a reverse-proxy authentication gateway. Everyone logs in with a
//! password and a TOTP code before anything reaches the application behind it.
//!
//! [`build`] turns a [`Config`] into a running gateway; the binary and the tests both
//! start it this way.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connector;
pub mod control;
pub mod demo;
pub mod framing;
pub mod gateway;
pub mod health;
pub mod i18n;
pub mod live;
pub mod mail;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod reload;
pub mod render;
pub mod server;
pub mod session_cache;
pub mod status;
pub mod store;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::auth::password::PasswordPool;
use crate::auth::seal::Sealer;
use crate::auth::{SharedRandom, SystemRandom};
use crate::clock::{SharedClock, SystemClock};
pub use crate::config::Config;
use crate::config::Upstream;
use crate::connector::{UpstreamConnector, Verify};
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::store::Store;

/// The name of the key file in the data directory.
pub const KEY_FILE: &str = "secret.key";
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// What a test may replace; the binary uses the defaults.
pub struct Options {
    pub clock: SharedClock,
    pub random: SharedRandom,
    /// Password-hashing threads; one per core by default.
    pub hash_workers: usize,
    /// Whether the system clock is synchronised (M-4); the kernel by default.
    pub clock_check: clock::SyncCheck,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandom),
            hash_workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            clock_check: clock::kernel_synchronised,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Key(#[from] auth::seal::KeyFileError),
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("cannot start the demo upstream: {0}")]
    Demo(std::io::Error),
    #[error("control socket {path}: {source}")]
    Control { path: String, source: std::io::Error },
}

/// Stops background tasks when the gateway is dropped or shut down.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A gateway that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    /// The plain-HTTP redirect listener's address, when configured.
    pub redirect_addr: Option<SocketAddr>,
    /// The metrics listener's address, when configured.
    pub metrics_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    reloader: Arc<Reloader>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    _tasks: Tasks,
    /// Dropped last: the socket file goes when the gateway stops.
    _control: control::SocketFile,
}

impl Running {
    /// Stops accepting, lets open requests and WebSockets finish (up to a grace
    /// period), then closes what is left, and returns when the server is done.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + server::SHUTDOWN_GRACE;
        while self.app.proxy.websockets.load(std::sync::atomic::Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.app.proxy.close_tunnels();
        let _ = self.server.await;
    }

    /// Reloads the configuration file now (what SIGHUP does).
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        self.reloader.reload_config().await
    }
}

pub async fn build(config: Config, options: Options) -> Result<Running, StartError> {
    tls::install_crypto_provider();
    if let Some(w) = config.users_file_warning() {
        tracing::warn!("{w}");
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    let sealer = Sealer::load_or_create(&config.data_dir.join(KEY_FILE), &*options.random)?;
    let store = Store::open(&config.data_dir)?;
    // Bound while we hold the database, so a stale socket file is ours to replace.
    let control_path = control::socket_path(&config.data_dir);
    let control_listener = control::bind(&config.data_dir).map_err(|source| StartError::Control {
        path: control_path.display().to_string(),
        source,
    })?;
    // REQ-74: an edit made while the gateway was not running (or before it noticed)
    // ends the sessions it would have ended at a reload.
    let ended = store.sync_accounts(&config.account_prints())?;
    if !ended.is_empty() {
        tracing::info!(ended_sessions_of = ?ended, "accounts changed since the last run");
    }
    let (tls, certs) = tls::server_config(&config).map_err(StartError::Tls)?;
    let demo = match config.upstream.target {
        Upstream::Demo => Some(demo::spawn().await.map_err(StartError::Demo)?),
        Upstream::Url(_) => None,
    };
    let proxy = Proxy::new(demo, upstream_connector(&config)?);
    let (listener, addr) = bind(config.listen).await?;
    let redirect = match config.http_redirect {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let metrics_listener = match config.metrics {
        Some(a) => Some(bind(a).await?),
        None => None,
    };

    // Built inside the runtime (lettre's pool needs it); a bad password file stops the
    // start here rather than at the first reset.
    let mailer = config
        .smtp
        .as_ref()
        .map(mail::Mailer::new)
        .transpose()
        .map_err(StartError::Smtp)?;
    let app = Arc::new(App::new(
        config,
        mailer,
        store,
        sealer,
        PasswordPool::new(options.hash_workers),
        options.clock,
        options.random,
        proxy,
    ));
    check_clock(&app, options.clock_check);
    app.forget_switched_off().await;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let server = tokio::spawn(server::serve_tls(listener, tls, app.clone(), shutdown_rx));
    let reloader = Arc::new(Reloader::new(app.clone(), certs.clone()));
    let mut tasks = vec![
        tokio::spawn(purge_loop(app.clone())),
        tokio::spawn(Reloader::new(app.clone(), certs).run()),
        tokio::spawn(control::serve(control_listener, app.clone())),
        tokio::spawn(clock_loop(app.clone(), options.clock_check)),
    ];
    let redirect_addr = redirect.map(|(l, a)| {
        tasks.push(tokio::spawn(server::serve_http_redirect(l, app.clone(), addr.port())));
        a
    });
    let metrics_addr = metrics_listener.map(|(l, a)| {
        tasks.push(tokio::spawn(metrics::serve(l, app.clone())));
        a
    });
    tracing::info!(%addr, ?redirect_addr, ?metrics_addr, "kanmon is listening");
    Ok(Running {
        addr,
        redirect_addr,
        metrics_addr,
        app,
        reloader,
        shutdown,
        server,
        _tasks: Tasks(tasks),
        _control: control::SocketFile(control_path),
    })
}

fn upstream_connector(config: &Config) -> Result<UpstreamConnector, StartError> {
    let u = &config.upstream;
    let verify = match (&u.ca_file, u.insecure_skip_verify) {
        (_, true) => {
            tracing::warn!("upstream.insecure_skip_verify is on: the upstream's certificate is NOT checked");
            Verify::Nothing
        }
        (Some(ca), false) => Verify::CaFile(ca),
        (None, false) => Verify::SystemRoots,
    };
    UpstreamConnector::new(Duration::from_secs(u.connect_timeout_secs), verify).map_err(StartError::Upstream)
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    Ok((listener, bound))
}

/// M-4: at start and every ten minutes, asks whether the clock is synchronised; TOTP
/// codes are only as right as the clock.
async fn clock_loop(app: Arc<App>, check: clock::SyncCheck) {
    let every = Duration::from_secs(clock::SYNC_CHECK_EVERY_SECS);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        check_clock(&app, check);
    }
}

fn check_clock(app: &App, check: clock::SyncCheck) {
    let state = check();
    if state == Some(false) {
        tracing::warn!(
            "the system clock is not synchronised: codes may be refused; run an NTP client (chrony, systemd-timesyncd or ntpd)"
        );
    }
    app.set_clock_synchronised(state);
}

/// Removes expired sessions and stale pending enrollments now and then.
async fn purge_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        app.purge_expired().await;
    }
}
