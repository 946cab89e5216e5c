//! Listeners: TLS in front of hyper's HTTP/1.1 + HTTP/2 server, with the limits that
//! keep one client from starving the rest (REQ-71), and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::{Config, Limits};
use crate::framing::FramingWatch;
use crate::gateway::{self, ConnInfo};
use crate::web::{self, Body};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADERS: usize = 100;
/// How long open requests may run on after a shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// What a client over its connection limit is told to wait.
const RETRY_AFTER_SECS: &str = "10";

/// Built per connection from the current configuration, so a reload changes limits.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_buf_size(limits.max_header_bytes)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Open connections per client address (REQ-71).
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A slot for `ip`, or `None` when it already holds `max` connections.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut t = self.0.lock().ok()?;
        let n = t.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.0.lock()
            && let Some(n) = t.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Accepts TLS connections until `shutdown` turns true, then lets open requests finish
/// (up to a grace period).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let limits = app.config().limits.clone();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; closing");
                    continue;
                };
                let limits = app.config().limits.clone();
                let ip_slot = per_ip.take(peer.ip(), limits.max_connections_per_ip);
                let _ = tcp.set_nodelay(true);
                let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let builder = http_builder(&limits);
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    match ip_slot {
                        // HTTP/2 frames every message itself; HTTP/1.1 bytes are watched
                        // for ambiguous lengths (REQ-65).
                        Some(_slot) if h2 => {
                            serve_connection(&builder, watcher, app, ConnInfo { peer, ambiguous: None }, TokioIo::new(tls)).await
                        }
                        Some(_slot) => {
                            let (io, flag) = FramingWatch::new(tls);
                            let conn = ConnInfo { peer, ambiguous: Some(flag) };
                            serve_connection(&builder, watcher, app, conn, TokioIo::new(io)).await
                        }
                        None => {
                            tracing::warn!(%peer, "too many connections from one address; answering 429");
                            let svc = service_fn(|_req: hyper::Request<Incoming>| async { Ok::<_, Infallible>(too_many()) });
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing open connections"),
    }
}

fn too_many() -> Response<Body> {
    let mut r = web::text(
        StatusCode::TOO_MANY_REQUESTS,
        "text/plain; charset=utf-8",
        "Too many connections / 接続数が多すぎます\n",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    web::secure_headers(&mut r);
    r
}

/// The optional plain-HTTP listener: every request is redirected to HTTPS on an allowed
/// host (REQ-60); nothing else is served over plain HTTP.
pub async fn serve_http_redirect(listener: TcpListener, app: Arc<App>, https_port: u16) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let builder = http_builder(&app.config().limits);
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let cfg = app.config();
                async move { Ok::<_, Infallible>(redirect_to_https(&cfg, https_port, &req)) }
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

fn redirect_to_https(cfg: &Config, https_port: u16, req: &hyper::Request<Incoming>) -> Response<Body> {
    let Some(host) = crate::auth::host::check(req.uri(), req.headers(), &cfg.allowed_hosts) else {
        return web::text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "Bad request\n");
    };
    let public = cfg
        .public_url
        .as_ref()
        .filter(|u| u.host().is_some_and(|h| h.eq_ignore_ascii_case(&host.name)));
    let port = match public {
        Some(u) => u.port_u16().unwrap_or(443),
        None => https_port,
    };
    let authority = if port == 443 {
        host.name.clone()
    } else {
        format!("{}:{port}", host.name)
    };
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut r = web::empty_response(StatusCode::PERMANENT_REDIRECT);
    if let Ok(v) = HeaderValue::from_str(&format!("https://{authority}{pq}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    app: Arc<App>,
    conn_info: ConnInfo,
    io: I,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = conn_info.peer;
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let (app, conn_info) = (app.clone(), conn_info.clone());
        async move { Ok::<_, Infallible>(gateway::handle(app, conn_info, req).await) }
    });
    if let Err(e) = watcher.watch(builder.serve_connection_with_upgrades(io, svc)).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
