//! kanmon-bench (issue 8): kanmon against Debian's nginx as a TLS reverse proxy in front
//! of the same fast upstream, the cost of a full login against the machine's raw argon2id
//! rate, proxying under a login flood, 1,000 WebSockets, memory and start-up time.
//!
//! `cargo run --release --bin kanmon-bench` runs everything (3 runs of each figure) and
//! writes docs/benchmarks.md; `-- --smoke` checks every part in well under a minute,
//! failing on any error, for CI. Needs `wrk` and `nginx` on the PATH.

mod argon;
mod client;
mod procs;
mod report;
mod stats;
mod upstream;
mod wrk;
mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_rustls::TlsConnector;

use crate::client::Conn;
use crate::procs::{Gateway, GatewaySetup, Nginx};
use crate::upstream::{BIG_BYTES, SMALL_BODY};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*).into()) };
}
pub(crate) use bail;

#[derive(Parser)]
#[command(name = "kanmon-bench", about = "Benchmark kanmon against nginx (issue 8)")]
struct Args {
    /// A few seconds of each part, one run, small counts; exit 1 on any error (CI).
    #[arg(long)]
    smoke: bool,
    /// Runs of each figure (median, min and max are reported). Default 3, smoke 1.
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds of each wrk measurement. Default 10, smoke 1.
    #[arg(long)]
    duration: Option<u64>,
    /// Where the Markdown report goes. Default docs/benchmarks.md; smoke prints it only.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these parts (comma-separated): startup, throughput, isolation, logins,
    /// websockets. The report shows "—" for the others.
    #[arg(long, value_delimiter = ',', value_parser = ["startup", "throughput", "isolation", "logins", "websockets"])]
    only: Vec<String>,
    /// Internal: run the gateway with this configuration (what `kanmon serve` does).
    #[arg(long, hide = true, value_name = "CONFIG")]
    serve: Option<PathBuf>,
}

/// How much of everything one invocation does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub smoke: bool,
    pub runs: usize,
    pub cores: usize,
    pub wrk_secs: u64,
    pub warmup_secs: u64,
    pub connections: usize,
    pub threads: usize,
    pub two_factor_accounts: usize,
    pub password_accounts: usize,
    pub login_concurrency: usize,
    pub flood_concurrency: usize,
    pub paced_delay_ms: u64,
    pub sessions: usize,
    pub websockets: usize,
    pub ws_secs: u64,
    pub ws_interval_ms: u64,
    pub argon_secs: f64,
    pub startup_runs: usize,
    pub idle_wait: Duration,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let smoke = args.smoke;
        Plan {
            smoke,
            runs: args.runs.unwrap_or(if smoke { 1 } else { 3 }).max(1),
            cores,
            wrk_secs: args.duration.unwrap_or(if smoke { 1 } else { 10 }).max(1),
            warmup_secs: if smoke { 0 } else { 2 },
            connections: 64,
            threads: 2,
            two_factor_accounts: if smoke { 8 } else { 1000 },
            password_accounts: if smoke { 4 } else { 50 },
            // Enough logins in flight that a hashing worker never waits for a client
            // busy with the other three requests of its login.
            login_concurrency: 2 * cores,
            flood_concurrency: 4 * cores,
            paced_delay_ms: 20,
            sessions: if smoke { 50 } else { 10_000 },
            websockets: if smoke { 20 } else { 1000 },
            ws_secs: if smoke { 1 } else { 5 },
            ws_interval_ms: 100,
            argon_secs: if smoke { 1.0 } else { 5.0 },
            startup_runs: if smoke { 1 } else { 5 },
            idle_wait: Duration::from_secs(1),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(config) = &args.serve {
        return procs::serve(config);
    }
    kanmon::tls::install_crypto_provider();
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kanmon-bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A thousand WebSockets are two thousand sockets in this process and in the gateway.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn say(msg: impl AsRef<str>) {
    eprintln!("kanmon-bench: {}", msg.as_ref());
}

/// A temp directory removed at the end (unless KANMON_BENCH_KEEP is set).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!("kanmon-bench-{}", std::process::id()));
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KANMON_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            say(format!("kept {}", self.0.display()));
        }
    }
}

/// Everything a phase needs.
pub struct Bench {
    pub plan: Plan,
    dir: PathBuf,
    tls: TlsConnector,
    setup: GatewaySetup,
    upstream: SocketAddr,
    password: String,
    two_factor: Vec<String>,
    password_only: Vec<String>,
    /// (user, authenticator key) of every enrolled account.
    keys: Vec<(String, String)>,
    /// Cookies of logged-in sessions, all still live.
    sessions: Arc<Mutex<Vec<String>>>,
    /// The latest TOTP step any two-step account used.
    last_step: u64,
    gateway: Gateway,
    nginx: Nginx,
    pub results: report::Results,
}

async fn run(args: &Args) -> Result<()> {
    let plan = Plan::new(args);
    for tool in ["wrk", "nginx"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not on the PATH; install it: apt-get install -y nginx wrk");
        }
    }
    if let Some(load) = report::load_average() {
        let one: f64 = load.split(' ').next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
        if one > plan.cores as f64 / 2.0 && !plan.smoke {
            say(format!(
                "the machine is busy (load average {load}); figures will be noisy"
            ));
        }
    }
    let began = Instant::now();
    let temp = TempDir::new()?;
    let dir = temp.0.clone();
    say(format!(
        "{} mode, {} run(s), {} cores; working in {}",
        if plan.smoke { "smoke" } else { "full" },
        plan.runs,
        plan.cores,
        dir.display()
    ));

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    let tls = client::tls_connector(ck.cert.der().clone())?;
    let upstream = upstream::start().await?;

    let password = "kanmon-bench-password".to_owned();
    let hash = kanmon::auth::password::hash(&password, &kanmon::auth::SystemRandom);
    let two_factor: Vec<String> = (0..plan.two_factor_accounts).map(|i| format!("tf{i:05}")).collect();
    let password_only: Vec<String> = (0..plan.password_accounts).map(|i| format!("pw{i:05}")).collect();
    let mut users_yaml = String::new();
    for (id, two) in two_factor
        .iter()
        .map(|u| (u, true))
        .chain(password_only.iter().map(|u| (u, false)))
    {
        users_yaml.push_str(&format!(
            "  - {{ id: {id}, email: {id}@example.com, password_hash: \"{hash}\", role: user, two_factor: {two} }}\n"
        ));
    }
    let setup = GatewaySetup {
        cert: cert.clone(),
        key: key.clone(),
        upstream,
        users_yaml,
    };
    let gateway = Gateway::start(&dir.join("kanmon"), &setup, &tls).await?;
    let nginx = Nginx::start(&dir.join("nginx"), &cert, &key, upstream, &tls).await?;
    say(format!(
        "upstream {upstream}, kanmon {} (pid {}), nginx {} (pid {})",
        gateway.addr,
        gateway.proc.pid(),
        nginx.addr,
        nginx.proc.pid()
    ));

    let mut b = Bench {
        results: report::Results::new(&plan),
        plan,
        dir,
        tls,
        setup,
        upstream,
        password,
        two_factor,
        password_only,
        keys: Vec::new(),
        sessions: Arc::default(),
        last_step: 0,
        gateway,
        nginx,
    };
    let part = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if part("logins") {
        b.enroll().await?;
    }
    b.first_session().await?;
    if part("startup") {
        b.startup().await?;
    }
    if part("throughput") {
        b.throughput().await?;
    }
    if part("isolation") {
        b.isolation().await?;
    }
    if part("logins") {
        b.logins().await?;
    }
    if part("websockets") {
        b.top_up_sessions().await?;
        b.websockets_and_memory().await?;
    }

    b.results.total = began.elapsed();
    if let Some(load) = report::load_average() {
        b.results.machine.push(("Load average at the end".into(), load));
    }
    let markdown = report::markdown(&b.plan, &b.results);
    let out = match (&args.out, b.plan.smoke) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md")),
        (None, true) => None,
    };
    match out {
        Some(p) => {
            let kept = std::fs::read_to_string(&p)
                .ok()
                .and_then(|old| report::kept_notes(&old));
            let notes = kept.unwrap_or_else(|| format!("{}\n", report::NOTES_MARK));
            let text = format!("{markdown}\n{notes}");
            std::fs::write(&p, text)?;
            println!("{markdown}");
            say(format!("wrote {}", p.display()));
        }
        None => println!("{markdown}"),
    }
    say(format!("done in {:.0} s", b.results.total.as_secs_f64()));
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs `job(worker, index)` for every index in `0..n` on `workers` tasks, each with
/// its own kept-alive connection to `addr`. The first error stops everything.
async fn for_each<T, F, Fut>(addr: SocketAddr, tls: &TlsConnector, workers: usize, n: usize, job: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Conn, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (Conn, Result<T>)> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..workers.min(n).max(1) {
        let (next, failed, job) = (next.clone(), failed.clone(), job.clone());
        let mut conn = Conn::new(addr, tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return Ok(out);
                }
                let (c, r) = job(conn, i).await;
                conn = c;
                match r {
                    Ok(v) => out.push((i, v)),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

/// Waits until the TOTP step is later than `step` (plus a little, so both clocks agree).
async fn wait_for_step_after(step: u64) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let current = now.as_secs() / client::STEP_SECS;
        if current > step {
            return;
        }
        let next_boundary = Duration::from_secs((step + 1) * client::STEP_SECS);
        tokio::time::sleep(next_boundary.saturating_sub(now) + Duration::from_millis(50)).await;
    }
}

/// A login flood: password-only logins on `workers` connections until stopped; every
/// session made is kept.
struct Flood {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Flood {
    fn start(b: &Bench, workers: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|w| {
                let (stop, count, sessions) = (stop.clone(), count.clone(), b.sessions.clone());
                let mut conn = Conn::new(b.gateway.addr, b.tls.clone());
                let users = b.password_only.clone();
                let password = b.password.clone();
                tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        let user = &users[i % users.len()];
                        let cookie = client::login_password_only(&mut conn, user, &password).await?;
                        sessions.lock().expect("not poisoned").push(cookie);
                        count.fetch_add(1, Ordering::Relaxed);
                        i += workers;
                    }
                    Ok(())
                })
            })
            .collect();
        Flood { stop, count, tasks }
    }

    fn done(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        Ok(self.count.load(Ordering::Relaxed))
    }
}

impl Bench {
    fn load(&self, url: String, cookie: bool, min_body: usize, secs: u64, delay_ms: u64) -> wrk::Load {
        wrk::Load {
            url,
            connections: self.plan.connections,
            threads: self.plan.threads,
            secs,
            cookie: cookie.then(|| self.any_session()),
            delay_ms,
            min_body,
        }
    }

    fn any_session(&self) -> String {
        self.sessions.lock().expect("not poisoned")[0].clone()
    }

    /// First logins of every two-step account: password, QR screen, first code.
    async fn enroll(&mut self) -> Result<()> {
        say(format!(
            "enrolling {} two-step accounts (password + key + first code)",
            self.two_factor.len()
        ));
        let users = Arc::new(self.two_factor.clone());
        let password = Arc::new(self.password.clone());
        let started = Instant::now();
        let enrolled = for_each(
            self.gateway.addr,
            &self.tls,
            self.plan.login_concurrency,
            users.len(),
            move |mut conn, i| {
                let (users, password) = (users.clone(), password.clone());
                async move {
                    let r = client::enroll(&mut conn, &users[i], &password).await;
                    (conn, r.map(|v| (users[i].clone(), v)))
                }
            },
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        self.results.enroll_rate = Some(enrolled.len() as f64 / secs);
        for (user, (key, step, cookie)) in enrolled {
            self.last_step = self.last_step.max(step);
            self.keys.push((user, key));
            self.sessions.lock().expect("not poisoned").push(cookie);
        }
        Ok(())
    }

    /// A password-only session, the one wrk sends.
    async fn first_session(&mut self) -> Result<()> {
        let mut conn = Conn::new(self.gateway.addr, self.tls.clone());
        let cookie = client::login_password_only(&mut conn, &self.password_only[0], &self.password).await?;
        self.sessions.lock().expect("not poisoned").insert(0, cookie);
        Ok(())
    }

    /// Fresh gateways (own data directory each): spawn to the first answered health
    /// check, then the resident set once idle.
    async fn startup(&mut self) -> Result<()> {
        say(format!(
            "start-up and idle memory, {} fresh starts",
            self.plan.startup_runs
        ));
        for i in 0..self.plan.startup_runs {
            let mut g = Gateway::start(&self.dir.join(format!("startup-{i}")), &self.setup, &self.tls).await?;
            tokio::time::sleep(self.plan.idle_wait).await;
            let rss = g.rss_mib()?;
            g.proc.stop();
            self.results.startup.push(report::StartRun {
                startup_ms: g.startup.as_secs_f64() * 1000.0,
                idle_rss_mib: rss,
            });
        }
        Ok(())
    }

    /// Logged-in requests through kanmon vs nginx vs the upstream directly.
    async fn throughput(&mut self) -> Result<()> {
        let sizes = [
            (report::Size::Small, "/small", SMALL_BODY.len()),
            (report::Size::Big, "/big", BIG_BYTES),
        ];
        for run in 0..self.plan.runs {
            for (size, path, min_body) in sizes {
                let mut targets = [report::Target::Upstream, report::Target::Nginx, report::Target::Kanmon];
                targets.rotate_left(run % 3);
                let mut outcome = report::ThroughputRun {
                    size,
                    upstream: None,
                    nginx: None,
                    kanmon: None,
                };
                for target in targets {
                    let url = match target {
                        report::Target::Upstream => format!("http://{}{path}", self.upstream),
                        report::Target::Nginx => format!("https://{}{path}", self.nginx.addr),
                        report::Target::Kanmon => format!("https://{}{path}", self.gateway.addr),
                    };
                    say(format!(
                        "run {}/{}: {} connections, {} responses, {}",
                        run + 1,
                        self.plan.runs,
                        self.plan.connections,
                        size.label(),
                        target.label()
                    ));
                    if self.plan.warmup_secs > 0 {
                        wrk::run(
                            &self.load(url.clone(), true, min_body, self.plan.warmup_secs, 0),
                            &self.dir,
                        )
                        .await?;
                    }
                    let (nginx, kanmon) = (self.nginx.proc.pid(), self.gateway.proc.pid());
                    let cpu = move || match target {
                        // The bench process serves the upstream.
                        report::Target::Upstream => procs::cpu_secs(std::process::id()),
                        report::Target::Nginx => procs::cpu_secs_tree(nginx),
                        report::Target::Kanmon => procs::cpu_secs(kanmon),
                    };
                    let load = self.load(url, true, min_body, self.plan.wrk_secs, 0);
                    let o = wrk::run_measuring(&load, &self.dir, cpu).await?;
                    match target {
                        report::Target::Upstream => outcome.upstream = Some(o),
                        report::Target::Nginx => outcome.nginx = Some(o),
                        report::Target::Kanmon => outcome.kanmon = Some(o),
                    }
                }
                self.results.throughput.push(outcome);
            }
        }
        Ok(())
    }

    /// p99 of logged-in requests at a steady pace, without and then during a login flood.
    async fn isolation(&mut self) -> Result<()> {
        let url = format!("https://{}/small", self.gateway.addr);
        for run in 0..self.plan.runs {
            say(format!(
                "run {}/{}: isolation — paced requests, then the same during a login flood",
                run + 1,
                self.plan.runs
            ));
            let load = self.load(
                url.clone(),
                true,
                SMALL_BODY.len(),
                self.plan.wrk_secs,
                self.plan.paced_delay_ms,
            );
            let quiet = wrk::run(&load, &self.dir).await?;
            let flood = Flood::start(self, self.plan.flood_concurrency);
            tokio::time::sleep(Duration::from_millis(if self.plan.smoke { 300 } else { 1000 })).await;
            let (before, t0) = (flood.done(), Instant::now());
            let busy = wrk::run(&load, &self.dir).await;
            let logins = (flood.done() - before) as f64 / t0.elapsed().as_secs_f64();
            let total = flood.finish().await?;
            let busy = busy?;
            if total == 0 {
                bail!("the login flood logged nobody in");
            }
            self.results.isolation.push(report::IsolationRun {
                quiet,
                busy,
                flood_logins_per_sec: logins,
            });
        }
        Ok(())
    }

    /// Full logins (password + code) of distinct accounts against the raw hash rate
    /// measured just before, in the same run. Each account's code is good once per
    /// 30-second step, so each round starts in a step no account has used yet.
    async fn logins(&mut self) -> Result<()> {
        for run in 0..self.plan.runs {
            say(format!(
                "run {}/{}: raw argon2id hashes/s on {} threads",
                run + 1,
                self.plan.runs,
                self.plan.cores
            ));
            let (cores, secs) = (self.plan.cores, self.plan.argon_secs);
            let raw = tokio::task::spawn_blocking(move || argon::hashes_per_sec(cores, secs)).await?;
            let wait = ((self.last_step + 1) * client::STEP_SECS).saturating_sub(client::unix_now());
            if wait > 0 {
                say(format!("waiting {wait} s for the next TOTP step"));
            }
            wait_for_step_after(self.last_step).await;
            say(format!(
                "run {}/{}: {} full logins, {} at a time",
                run + 1,
                self.plan.runs,
                self.keys.len(),
                self.plan.login_concurrency
            ));
            let keys = Arc::new(self.keys.clone());
            let password = Arc::new(self.password.clone());
            let started = Instant::now();
            let cpu_before = procs::cpu_secs(self.gateway.proc.pid());
            let client_before = procs::cpu_secs(std::process::id());
            let done = for_each(
                self.gateway.addr,
                &self.tls,
                self.plan.login_concurrency,
                keys.len(),
                move |mut conn, i| {
                    let (keys, password) = (keys.clone(), password.clone());
                    async move {
                        let (user, key) = &keys[i];
                        let r = client::login_full(&mut conn, user, &password, key).await;
                        (conn, r)
                    }
                },
            )
            .await?;
            let rate = done.len() as f64 / started.elapsed().as_secs_f64();
            let per_login = |secs: f64| secs * 1000.0 / done.len() as f64;
            let cpu_ms = per_login(procs::cpu_secs(self.gateway.proc.pid()) - cpu_before);
            let client_cpu_ms = per_login(procs::cpu_secs(std::process::id()) - client_before);
            for (cookie, step) in done {
                self.last_step = self.last_step.max(step);
                self.sessions.lock().expect("not poisoned").push(cookie);
            }
            self.results.logins.push(report::LoginRun {
                raw_hashes_per_sec: raw,
                logins_per_sec: rate,
                kanmon_cpu_ms: cpu_ms,
                client_cpu_ms,
                accounts: self.keys.len(),
            });
        }
        Ok(())
    }

    async fn top_up_sessions(&mut self) -> Result<()> {
        let have = self.sessions.lock().expect("not poisoned").len();
        if have >= self.plan.sessions {
            return Ok(());
        }
        say(format!(
            "logging in {} more sessions (password-only accounts) to reach {}",
            self.plan.sessions - have,
            self.plan.sessions
        ));
        let flood = Flood::start(self, self.plan.flood_concurrency);
        while self.sessions.lock().expect("not poisoned").len() < self.plan.sessions {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if flood.tasks.iter().any(|t| t.is_finished()) {
                break;
            }
        }
        flood.finish().await?;
        Ok(())
    }

    /// Per run: a restarted gateway (same database) with every session used once, then
    /// the WebSockets opened and echoing; resident set with sessions, and with both.
    async fn websockets_and_memory(&mut self) -> Result<()> {
        let sessions = self.sessions.lock().expect("not poisoned").clone();
        for run in 0..self.plan.runs {
            say(format!(
                "run {}/{}: restart, {} sessions used, {} WebSockets",
                run + 1,
                self.plan.runs,
                sessions.len(),
                self.plan.websockets
            ));
            self.gateway.proc.stop();
            self.gateway = Gateway::start(&self.dir.join("kanmon"), &self.setup, &self.tls).await?;
            let rss_fresh = self.gateway.rss_mib()?;
            let cookies = Arc::new(sessions.clone());
            let ok = for_each(self.gateway.addr, &self.tls, 16, cookies.len(), move |mut conn, i| {
                let cookies = cookies.clone();
                async move {
                    let r = conn.get("/small", Some(&cookies[i])).await;
                    let r = match r {
                        Ok(r) if r.status == 200 => Ok(()),
                        Ok(r) => Err(format!("session {i}: status {} (not live?)", r.status).into()),
                        Err(e) => Err(e),
                    };
                    (conn, r)
                }
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss_sessions = self.gateway.rss_mib()?;

            let clients = self.open_websockets(self.gateway.addr, &sessions).await?;
            let (clients, kanmon_rtts) = echo_phase(clients, self.plan.ws_secs, self.plan.ws_interval_ms).await?;
            let rss_ws = self.gateway.rss_mib()?;
            close_all(clients).await;

            let clients = self.open_websockets(self.nginx.addr, &sessions).await?;
            let (clients, nginx_rtts) = echo_phase(clients, self.plan.ws_secs, self.plan.ws_interval_ms).await?;
            close_all(clients).await;

            self.results.websockets.push(report::WsRun {
                connections: self.plan.websockets,
                sessions: ok.len(),
                kanmon: report::Rtt::of(kanmon_rtts),
                nginx: report::Rtt::of(nginx_rtts),
                rss_fresh_mib: rss_fresh,
                rss_sessions_mib: rss_sessions,
                rss_sessions_ws_mib: rss_ws,
            });
        }
        Ok(())
    }

    async fn open_websockets(&self, addr: SocketAddr, sessions: &[String]) -> Result<Vec<ws::Client>> {
        let n = self.plan.websockets;
        let cookies: Arc<Vec<String>> = Arc::new((0..n).map(|i| sessions[i % sessions.len()].clone()).collect());
        let next = Arc::new(AtomicUsize::new(0));
        // Opened 32 at a time, as browsers arriving, not as a SYN flood.
        let tasks: Vec<_> = (0..32.min(n))
            .map(|_| {
                let (cookies, next, tls) = (cookies.clone(), next.clone(), self.tls.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= cookies.len() {
                            return Ok::<_, Error>(mine);
                        }
                        mine.push(ws::Client::connect(addr, &tls, Some(&cookies[i])).await?);
                    }
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for t in tasks {
            all.extend(t.await??);
        }
        Ok(all)
    }
}

/// Every connection sends a small message every `interval_ms` (starts spread over one
/// interval) and waits for its echo; returns the round-trip times in milliseconds.
async fn echo_phase(clients: Vec<ws::Client>, secs: u64, interval_ms: u64) -> Result<(Vec<ws::Client>, Vec<f64>)> {
    let n = clients.len().max(1) as u64;
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let offset = Duration::from_millis(interval_ms * i as u64 / n);
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, Duration::from_millis(interval_ms));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut rtts = Vec::new();
                let payload = format!("kanmon-bench echo from connection {i:05}");
                loop {
                    tick.tick().await;
                    if tokio::time::Instant::now() >= until {
                        return Ok::<_, Error>((c, rtts));
                    }
                    rtts.push(c.echo(payload.as_bytes()).await?.as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut all = Vec::new();
    for t in tasks {
        let (c, r) = t.await??;
        clients.push(c);
        all.extend(r);
    }
    if all.is_empty() {
        bail!("no WebSocket echo completed");
    }
    Ok((clients, all))
}

async fn close_all(clients: Vec<ws::Client>) {
    let tasks: Vec<_> = clients.into_iter().map(|c| tokio::spawn(c.close())).collect();
    for t in tasks {
        let _ = t.await;
    }
}
