//! The processes under test: kanmon (this binary re-executed in `--serve` mode, which is
//! `kanmon serve` line for line, so the gateway measured is always the current build)
//! and Debian's nginx, each with a temp configuration of its own.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tokio_rustls::TlsConnector;

use crate::client::Conn;
use crate::{Result, bail};

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident set of a process, in MiB (VmRSS from /proc).
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let Some(kib) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    else {
        bail!("no VmRSS for process {pid}")
    };
    Ok(kib / 1024.0)
}

/// Spawns `cmd` so that it gets SIGTERM if the bench dies first (killed, or a panic that
/// skips the destructors).
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
}

/// CPU time (user + system) a process has used so far, in seconds (all its threads).
pub fn cpu_secs(pid: u32) -> f64 {
    cpu_secs_with(pid, false)
}

/// The same for a process and its children: nginx's master and workers.
pub fn cpu_secs_tree(pid: u32) -> f64 {
    cpu_secs_with(pid, true)
}

fn cpu_secs_with(pid: u32, children: bool) -> f64 {
    fn fields(pid: &str) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; the fields after it do not.
        let rest = &stat[stat.rfind(')')? + 1..];
        Some(rest.split_whitespace().map(str::to_owned).collect())
    }
    // After the name: state, ppid, …; utime and stime are the 12th and 13th.
    let ticks = |f: &[String]| -> f64 {
        f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let me = pid.to_string();
    let mut total = fields(&me).map_or(0.0, |f| ticks(&f));
    if let Ok(dir) = std::fs::read_dir("/proc")
        && children
    {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit())
                && let Some(f) = fields(&name)
                && f.get(1) == Some(&me)
            {
                total += ticks(&f);
            }
        }
    }
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    total / hz
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    name: &'static str,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill(2) on the id of a child we started and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("kanmon-bench: {} did not stop on SIGTERM; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- kanmon ---------------------------------------------------------------------

pub struct GatewaySetup {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub upstream: SocketAddr,
    /// Pre-rendered `users:` entries.
    pub users_yaml: String,
}

impl GatewaySetup {
    pub fn config(&self, port: u16) -> String {
        format!(
            r#"# written by kanmon-bench
listen: 127.0.0.1:{port}
tls: {{ cert: "{cert}", key: "{key}" }}
upstream: {{ url: "http://{up}", connect_timeout: 5s, response_timeout: 60s }}
data_dir: data
issuer: kanmon bench
default_lang: en
# Two-step accounts need an smtp section; no mail is sent (every notice is off).
smtp: {{ host: 127.0.0.1, port: 9, security: none, from: "kanmon bench <bench@example.com>" }}
notify: {{ enrollment: false, reset: false, wrong_code: false, abandoned: false, replay: false }}
session: {{ idle_timeout: 4h, absolute_timeout: 12h }}
limits: {{ max_connections: 20000, max_connections_per_ip: 20000 }}
log: {{ format: text }}
users:
{users}"#,
            cert = self.cert.display(),
            key = self.key.display(),
            up = self.upstream,
            users = self.users_yaml,
        )
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// Spawn to first 200 from /_kanmon/healthz.
    pub startup: Duration,
}

impl Gateway {
    /// Writes the config into `dir` (its data directory beside it, kept across starts)
    /// and starts the gateway; returns once it answered its health check.
    pub async fn start(dir: &Path, setup: &GatewaySetup, tls: &TlsConnector) -> Result<Gateway> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let config = dir.join("config.yaml");
        std::fs::write(&config, setup.config(port))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kanmon.log"))?;
        let exe = std::env::current_exe()?;
        let started = Instant::now();
        let mut cmd = Command::new(exe);
        cmd.arg("--serve")
            .arg(&config)
            .env_remove("KANMON_LOG")
            .env_remove("KANMON_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The gateway logs as configured (every request at info); KANMON_BENCH_LOG sets
        // its KANMON_LOG filter, e.g. "warn" to measure without the access log.
        if let Some(filter) = std::env::var_os("KANMON_BENCH_LOG") {
            cmd.env("KANMON_LOG", filter);
        }
        let child = spawn_tied(&mut cmd)?;
        let mut proc = Proc {
            child: Some(child),
            name: "kanmon",
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conn = Conn::new(addr, tls.clone());
        let deadline = started + Duration::from_secs(20);
        loop {
            if let Ok(r) = conn.get("/_kanmon/healthz", None).await
                && r.status == 200
            {
                break;
            }
            if !proc.alive() {
                bail!(
                    "kanmon exited during start-up; see {}",
                    dir.join("kanmon.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("kanmon did not answer /_kanmon/healthz within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let startup = started.elapsed();
        Ok(Gateway { proc, addr, startup })
    }

    pub fn rss_mib(&self) -> Result<f64> {
        rss_mib(self.proc.pid())
    }
}

/// `kanmon-bench --serve CONFIG`: what `kanmon serve --config CONFIG` does.
pub fn serve(path: &Path) -> ExitCode {
    let config = match kanmon::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KANMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    runtime.block_on(async move {
        let running = match kanmon::build(config, kanmon::Options::default()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kanmon: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("kanmon: listening on https://{}", running.addr);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

// ---- nginx ----------------------------------------------------------------------

pub struct Nginx {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Nginx {
    pub async fn start(dir: &Path, cert: &Path, key: &Path, upstream: SocketAddr, tls: &TlsConnector) -> Result<Nginx> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        // As root, workers would otherwise run as nobody, who cannot enter the temp dir.
        let user = if root { "user root;\n" } else { "" };
        let d = dir.display();
        let conf = format!(
            r#"# written by kanmon-bench: nginx as a TLS reverse proxy, like kanmon
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 20000;
{user}pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  upstream app {{
    server {upstream};
    keepalive 128;
    keepalive_requests 1000000;
  }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_buffer_size 64k;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;
      proxy_read_timeout 600s;
      add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
    }}
  }}
}}
"#,
            cert = cert.display(),
            key = key.display(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = spawn_tied(
            Command::new("nginx")
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let mut proc = Proc {
            child: Some(child),
            name: "nginx",
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conn = Conn::new(addr, tls.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = conn.get("/small", None).await
                && r.status == 200
            {
                return Ok(Nginx { proc, addr });
            }
            if !proc.alive() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("nginx did not come up: {}", log.trim());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
