//! Other upstreams than the recording one, and the real binary under load and signals:
//! an HTTPS upstream (verified with a CA file, refused against the system roots,
//! accepted only with `insecure_skip_verify`), Debian's nginx as an independent
//! upstream, a 1 GiB download with flat memory, the WebSocket idle timeout, and SIGTERM
//! with an open WebSocket.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::upstream::Upstream;
use crate::websocket::{echo, logged_in_cookie, open_ws, open_ws_at};

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------
// An HTTPS upstream
// ---------------------------------------------------------------------------------

/// A small HTTPS server with its own self-signed certificate for "localhost"; it
/// answers every request with the `Remote-User` it received and records it.
struct TlsUpstream {
    port: u16,
    /// The upstream's certificate, the only root that vouches for it.
    ca_file: PathBuf,
    /// `Remote-User` of every request that got through the handshake.
    seen: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsUpstream {
    async fn start() -> TlsUpstream {
        kanmon::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let ca_file = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_file, ck.cert.pem()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let user = req
                            .headers()
                            .get("remote-user")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        record.lock().unwrap().push(user.clone());
                        let body = format!("tls upstream; remote-user={}", user.unwrap_or_default());
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsUpstream {
            port,
            ca_file,
            seen,
            task,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

/// A gateway in front of `up` with these extra `upstream:` keys; carol (password
/// only) logged in.
async fn gateway_for_tls(up: &TlsUpstream, upstream_yaml: String) -> TestApp {
    let app = spawn_with(Setup {
        upstream_url: Some(up.url()),
        upstream_yaml,
        ..Setup::default()
    })
    .await;
    assert_eq!(location(&app.login("carol", CAROL_PASSWORD).await), "/");
    app
}

/// Issue "Upstream over HTTPS" (a): with `ca_file` naming the upstream's certificate,
/// a logged-in request goes through over TLS and carries the identity header.
#[tokio::test]
async fn https_upstream_verified_with_the_ca_file() {
    let up = TlsUpstream::start().await;
    let app = gateway_for_tls(&up, format!("ca_file: \"{}\"", up.ca_file.display())).await;
    let r = app.api_get_with(&app.client, "/dashboard").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "tls upstream; remote-user=carol");
    assert_eq!(up.seen(), [Some("carol".to_owned())]);
}

/// Issue "Upstream over HTTPS" (b): without `ca_file` the system's roots decide; they
/// do not know a self-signed certificate, so the gateway answers 502 (REQ-69's generic
/// page) and nothing reaches the upstream.
#[tokio::test]
async fn https_upstream_unknown_to_the_system_roots_is_refused() {
    let up = TlsUpstream::start().await;
    let app = gateway_for_tls(&up, String::new()).await;
    let r = app.get("/dashboard").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let page = r.text().await.unwrap();
    assert!(!page.contains(&up.port.to_string()), "no upstream address: {page}");
    assert!(
        up.seen().is_empty(),
        "no request was sent over an unverified connection"
    );
}

/// Issue "Upstream over HTTPS" (c): `insecure_skip_verify: true`, an explicit choice,
/// accepts the certificate unchecked.
#[tokio::test]
async fn https_upstream_unverified_only_by_explicit_choice() {
    let up = TlsUpstream::start().await;
    let app = gateway_for_tls(&up, "insecure_skip_verify: true".into()).await;
    let r = app.api_get_with(&app.client, "/dashboard").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(up.seen(), [Some("carol".to_owned())]);
}

// ---------------------------------------------------------------------------------
// nginx as a second, independent upstream
// ---------------------------------------------------------------------------------

const NGINX: &str = "/usr/sbin/nginx";

/// Debian's nginx on a free loopback port, everything it writes inside a temp dir;
/// killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// `None` (with the reason printed) when nginx is not installed, unless `CI` is
    /// set: there it must be (`.ci/run` installs it), so the test fails.
    async fn start() -> Option<Nginx> {
        if !Path::new(NGINX).exists() {
            if std::env::var_os("CI").is_some() {
                panic!("{NGINX} is missing but CI is set: install it (apt-get install nginx)");
            }
            eprintln!("SKIPPED: {NGINX} is not installed (apt-get install nginx); set CI=1 to make this a failure");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format seen '$request_uri remote-user=$http_remote_user';
    access_log {d}/access.log seen;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location /redir {{ return 302 http://127.0.0.1:{port}/target; }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(format!("{d}/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let mut nginx = Nginx { child, port, dir };
        let t = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.file("error.log"));
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nginx is not listening: {}",
                nginx.file("error.log")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(nginx)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// `len` bytes of a xorshift sequence (incompressible, no repeating block a broken
/// copy could hide in) written to `path`; returns their SHA-256.
fn write_random_file(path: &Path, len: u64) -> [u8; 32] {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = Sha256::new();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; MIB as usize];
    for _ in 0..len / MIB {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        hash.update(&block);
        std::io::Write::write_all(&mut out, &block).unwrap();
    }
    std::io::Write::flush(&mut out).unwrap();
    hash.finalize().into()
}

/// G-5 against an independent server: a 64 MiB static file from nginx arrives
/// through the gateway byte for byte (length and SHA-256), with its Content-Length,
/// and nginx saw the identity header.
#[tokio::test]
async fn nginx_big_static_file_arrives_intact() {
    let Some(nginx) = Nginx::start().await else { return };
    let expected = write_random_file(&nginx.www().join("big.bin"), 64 * MIB);
    let app = spawn_with(Setup {
        upstream_url: Some(nginx.url()),
        ..Setup::default()
    })
    .await;
    app.login("carol", CAROL_PASSWORD).await;
    let mut r = app.api_get_with(&app.client, "/big.bin").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.content_length(), Some(64 * MIB));
    let (mut len, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = r.chunk().await.unwrap() {
        len += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(len, 64 * MIB);
    let got: [u8; 32] = hash.finalize().into();
    assert!(got == expected, "the file changed on its way through the gateway");
    assert!(
        nginx.file("access.log").contains("/big.bin remote-user=carol"),
        "{}",
        nginx.file("access.log")
    );
}

/// nginx's own absolute redirect (`return 302 http://127.0.0.1:PORT/target`) names
/// the upstream's address; the browser gets `/target` on the gateway instead.
#[tokio::test]
async fn nginx_absolute_redirect_is_rewritten_to_the_gateway() {
    let Some(nginx) = Nginx::start().await else { return };
    let app = spawn_with(Setup {
        upstream_url: Some(nginx.url()),
        ..Setup::default()
    })
    .await;
    app.login("carol", CAROL_PASSWORD).await;
    let r = app.get("/redir").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/target");
}

// ---------------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------------

/// `kanmon serve` as a subprocess with the test configuration (carol logs in with
/// her password only); its log goes to `gateway.log` in its directory. Killed when
/// dropped, so a failing test leaves nothing running.
struct Gateway {
    child: Child,
    port: u16,
    cert_pem: String,
    dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn start(upstream_url: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_pem = ck.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml(upstream_url, "", "")).unwrap();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kanmon"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("KANMON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the kanmon binary");
        let mut gw = Gateway {
            child,
            port: 0,
            cert_pem,
            dir,
        };
        let marker = "kanmon: listening on https://";
        let t = Instant::now();
        loop {
            let log = gw.log();
            if let Some(rest) = log.split(marker).nth(1)
                && let Some(addr) = rest.split_whitespace().next()
            {
                gw.port = addr.parse::<std::net::SocketAddr>().unwrap().port();
                return gw;
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("kanmon exited ({status}): {log}");
            }
            assert!(t.elapsed() < Duration::from_secs(20), "kanmon did not start: {log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn base(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Logs carol in with a fresh browser-like client and returns it.
    async fn login_carol(&self) -> (reqwest::Client, reqwest::Response) {
        let c = client(&self.cert_pem);
        let base = self.base();
        let page = c
            .get(format!("{base}/_kanmon/login"))
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = c
            .post(format!("{base}/_kanmon/login"))
            .header("origin", &base)
            .form(&[
                ("csrf", csrf_of(&page).as_str()),
                ("user", "carol"),
                ("password", CAROL_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), "/", "carol is logged in: {}", self.log());
        (c, r)
    }
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The highest `VmRSS` of `pid` seen until the sampler is stopped, every 10 ms.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How much the download through the real binary is.
const BIG_MIB: u64 = 1024;

/// G-5 at scale: 1 GiB streamed through the real binary (a debug build) arrives
/// complete while the gateway's resident memory stays flat — its peak during the
/// download less than 60 MiB above where it was before, nowhere near the body's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_streams_through_the_binary_with_flat_memory() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&upstream.url()).await;
    let (c, _) = gw.login_carol().await;
    // Warm the connections both ways, so their buffers count in the baseline.
    let warm = c.get(format!("{}/big/1", gw.base())).send().await.unwrap();
    assert_eq!(warm.bytes().await.unwrap().len() as u64, MIB);
    let before = vm_rss_kib(gw.pid()).expect("the gateway's VmRSS");

    let sampler = RssSampler::start(gw.pid());
    let t = Instant::now();
    let mut r = c.get(format!("{}/big/{BIG_MIB}", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut received = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    let took = t.elapsed();
    let peak = sampler.finish();
    eprintln!("{BIG_MIB} MiB through the binary in {took:?}; VmRSS {before} KiB before, peak {peak} KiB during");
    assert_eq!(received, BIG_MIB * MIB, "every byte arrived");
    assert!(
        peak < before + 60 * 1024,
        "memory grew with the body: {before} KiB before, {peak} KiB peak"
    );
}

// ---------------------------------------------------------------------------------
// WebSockets: idle timeout, SIGTERM
// ---------------------------------------------------------------------------------

/// Waits until the server closes the WebSocket (close frame, EOF or error).
async fn closed_by_server(ws: &mut crate::websocket::Ws) {
    loop {
        match ws.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(_)) => {}
        }
    }
}

/// `websocket.idle_timeout`: a tunnel with no traffic for the configured time is
/// closed (here within 3 s of a 1 s timeout); one with a frame every 300 ms is not.
#[tokio::test]
async fn websocket_idle_timeout_closes_only_quiet_tunnels() {
    let app = spawn_with(Setup {
        extra_yaml: "websocket: { idle_timeout: 1s }\n".into(),
        ..Setup::default()
    })
    .await;
    let cookie = logged_in_cookie(&app, &app.client).await;
    let mut quiet = open_ws(&app, "/ws", Some(&cookie), &app.base).await.unwrap();
    let mut busy = open_ws(&app, "/ws", Some(&cookie), &app.base).await.unwrap();
    assert_eq!(echo(&mut quiet, "once").await, "once");

    let quiet_side = async {
        let t = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(3), closed_by_server(&mut quiet)).await;
        assert!(closed.is_ok(), "the quiet tunnel is still open after {:?}", t.elapsed());
        t.elapsed()
    };
    let busy_side = async {
        let t = Instant::now();
        let mut i = 0;
        while t.elapsed() < Duration::from_secs(3) {
            let text = format!("frame {i}");
            assert_eq!(echo(&mut busy, &text).await, text, "the busy tunnel stays open");
            tokio::time::sleep(Duration::from_millis(300)).await;
            i += 1;
        }
    };
    let (quiet_after, ()) = tokio::join!(quiet_side, busy_side);
    assert!(
        quiet_after >= Duration::from_millis(500),
        "closed too early: {quiet_after:?}"
    );
    assert_eq!(
        echo(&mut busy, "after 3 s").await,
        "after 3 s",
        "the busy tunnel outlived the timeout"
    );
}

/// SIGTERM on the real binary: it stops accepting at once, lets an open WebSocket go
/// on until its client closes it, then exits with status 0.
#[tokio::test]
async fn sigterm_lets_an_open_websocket_finish_then_exits_cleanly() {
    let upstream = Upstream::start().await;
    let mut gw = Gateway::start(&upstream.url()).await;
    // The browser keeps its (idle) connection open throughout, as browsers do.
    let (_browser, login) = gw.login_carol().await;
    let cookie = session_cookie(&login).expect("a session cookie");
    let mut ws = open_ws_at(gw.port, &gw.cert_pem, "/ws", Some(&cookie), &gw.base())
        .await
        .expect("the upgrade succeeds");
    assert_eq!(echo(&mut ws, "before").await, "before");

    // SAFETY: kill(2) with the pid of the child this test started.
    let rc = unsafe { libc::kill(gw.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);

    let t = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        let text = format!("during shutdown {i}");
        assert_eq!(echo(&mut ws, &text).await, text, "the tunnel survives SIGTERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway waits for the open WebSocket"
    );

    ws.close(None).await.unwrap();
    drop(ws);
    let t = Instant::now();
    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no exit 5 s after the WebSocket closed: {}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("exited {:?} after the WebSocket closed", t.elapsed());
    assert_eq!(status.code(), Some(0), "{}", gw.log());
}
