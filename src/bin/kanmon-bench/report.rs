//! The figures of every run, and the Markdown report: medians with min and max, each
//! against its aim from issue 8.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Plan;
use crate::stats::{Spread, percentile};
use crate::upstream::SMALL_BODY;
use crate::wrk::Outcome;

/// Everything after this line in an existing report is written by hand (the analysis of
/// missed aims) and kept when the benchmark rewrites the file.
pub const NOTES_MARK: &str =
    "<!-- Hand-written notes below this line are kept when kanmon-bench rewrites the file. -->";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Small,
    Big,
}

impl Size {
    pub fn label(self) -> String {
        match self {
            Size::Small => format!("small ({} B)", SMALL_BODY.len()),
            Size::Big => "1 MiB".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Upstream,
    Nginx,
    Kanmon,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Upstream => "upstream directly (plain HTTP)",
            Target::Nginx => "nginx (TLS)",
            Target::Kanmon => "kanmon (TLS, logged in)",
        }
    }
}

pub struct ThroughputRun {
    pub size: Size,
    pub upstream: Option<Outcome>,
    pub nginx: Option<Outcome>,
    pub kanmon: Option<Outcome>,
}

pub struct StartRun {
    pub startup_ms: f64,
    pub idle_rss_mib: f64,
}

pub struct IsolationRun {
    pub quiet: Outcome,
    pub busy: Outcome,
    pub flood_logins_per_sec: f64,
}

pub struct LoginRun {
    pub raw_hashes_per_sec: f64,
    pub logins_per_sec: f64,
    /// CPU time the gateway used per full login (ms).
    pub kanmon_cpu_ms: f64,
    /// CPU time the bench (the browsers, and the idle upstream) used per login (ms).
    pub client_cpu_ms: f64,
    pub accounts: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Rtt {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

impl Rtt {
    pub fn of(mut ms: Vec<f64>) -> Rtt {
        ms.sort_by(f64::total_cmp);
        Rtt {
            p50: percentile(&ms, 50.0),
            p99: percentile(&ms, 99.0),
            max: ms.last().copied().unwrap_or(f64::NAN),
            samples: ms.len(),
        }
    }
}

pub struct WsRun {
    pub connections: usize,
    pub sessions: usize,
    pub kanmon: Rtt,
    pub nginx: Rtt,
    pub rss_fresh_mib: f64,
    pub rss_sessions_mib: f64,
    pub rss_sessions_ws_mib: f64,
}

pub struct Results {
    pub machine: Vec<(String, String)>,
    pub date: String,
    pub throughput: Vec<ThroughputRun>,
    pub startup: Vec<StartRun>,
    pub isolation: Vec<IsolationRun>,
    pub logins: Vec<LoginRun>,
    pub websockets: Vec<WsRun>,
    pub enroll_rate: Option<f64>,
    pub total: Duration,
}

impl Results {
    pub fn new(plan: &Plan) -> Results {
        Results {
            machine: machine(plan),
            date: utc_now(),
            throughput: Vec::new(),
            startup: Vec::new(),
            isolation: Vec::new(),
            logins: Vec::new(),
            websockets: Vec::new(),
            enroll_rate: None,
            total: Duration::ZERO,
        }
    }
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().next().map(|l| l.trim().to_owned())
}

fn machine(plan: &Plan) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let unknown = || "unknown".to_owned();
    vec![
        ("CPU".into(), format!("{model}, {} cores (nproc)", plan.cores)),
        ("Memory".into(), mem),
        ("Kernel".into(), format!("Linux {kernel}")),
        (
            "rustc".into(),
            command_line("rustc", &["--version"]).unwrap_or_else(unknown),
        ),
        ("nginx".into(), command_line("nginx", &["-v"]).unwrap_or_else(unknown)),
        ("wrk".into(), command_line("wrk", &["-v"]).unwrap_or_else(unknown)),
        ("Load average at start".into(), load_average().unwrap_or_else(unknown)),
    ]
}

/// The 1-, 5- and 15-minute load averages: other work on the machine makes figures noisy.
pub fn load_average() -> Option<String> {
    let l = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Today's date and time in UTC, from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// The hand-written part of an existing report, if it has one.
pub fn kept_notes(old: &str) -> Option<String> {
    old.find(NOTES_MARK).map(|i| old[i..].to_owned())
}

// ---- formatting -----------------------------------------------------------------

fn spread_of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    Spread::of(&v)
}

fn num(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    // Thousands separated by a thin space, for the integer part only.
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// "median (min–max) unit", or the single value when there was one run.
fn show(s: Option<Spread>, decimals: usize, unit: &str) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.min == s.max => format!("{}{unit}", num(s.median, decimals)),
        Some(s) => format!(
            "{}{unit} ({}{}{})",
            num(s.median, decimals),
            num(s.min, decimals),
            if s.min < 0.0 { " to " } else { "–" },
            num(s.max, decimals)
        ),
    }
}

enum Aim {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    None,
}

impl Aim {
    fn text(&self, unit: &str, decimals: usize) -> String {
        match self {
            Aim::AtLeast(x) => format!("≥ {}{unit}", num(*x, decimals)),
            Aim::AtMost(x) => format!("≤ {}{unit}", num(*x, decimals)),
            Aim::Below(x) => format!("< {}{unit}", num(*x, decimals)),
            Aim::None => "(none set)".into(),
        }
    }

    /// "met", or by how much the median misses.
    fn verdict(&self, s: Option<Spread>, unit: &str, decimals: usize) -> String {
        let Some(s) = s else { return "not measured".into() };
        // A shortfall in a percentage is in percentage points.
        let unit = if unit == " %" { " points" } else { unit };
        let m = s.median;
        match *self {
            Aim::AtLeast(x) if m >= x => "✅ met".into(),
            Aim::AtLeast(x) => format!("❌ missed by {}{unit}", num(x - m, decimals)),
            Aim::AtMost(x) if m <= x => "✅ met".into(),
            Aim::AtMost(x) => format!("❌ missed by {}{unit}", num(m - x, decimals)),
            Aim::Below(x) if m < x => "✅ met".into(),
            Aim::Below(x) => format!("❌ missed by {}{unit}", num(m - x, decimals)),
            Aim::None => "—".into(),
        }
    }
}

fn runs_of(r: &Results, size: Size) -> impl Iterator<Item = &ThroughputRun> {
    r.throughput.iter().filter(move |t| t.size == size)
}

fn pick(t: &ThroughputRun, target: Target) -> Option<&Outcome> {
    match target {
        Target::Upstream => t.upstream.as_ref(),
        Target::Nginx => t.nginx.as_ref(),
        Target::Kanmon => t.kanmon.as_ref(),
    }
}

fn ratio_runs(r: &Results, size: Size) -> Option<Spread> {
    spread_of(runs_of(r, size).filter_map(|t| Some(100.0 * t.kanmon?.rps / t.nginx?.rps)))
}

fn added_p99_runs(r: &Results, size: Size) -> Option<Spread> {
    spread_of(runs_of(r, size).filter_map(|t| Some(t.kanmon?.p99_ms - t.nginx?.p99_ms)))
}

pub fn markdown(plan: &Plan, r: &Results) -> String {
    let mut md = String::new();
    let runs = plan.runs;
    let _ = writeln!(md, "# Benchmarks (issue 8)\n");
    let _ = writeln!(
        md,
        "Written by `cargo run --release --bin kanmon-bench`{} on {}; the run took {:.0} s. \
         Every figure is the **median of {runs} run{}** with the smallest and largest run in brackets; \
         every ratio and difference is computed within one run (the same minute, the same machine \
         state) and its median taken over the runs.\n",
        if plan.smoke {
            " -- --smoke (smoke mode: tiny counts, not figures to quote)"
        } else {
            ""
        },
        r.date,
        r.total.as_secs_f64(),
        if runs == 1 { "" } else { "s" },
    );
    let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in &r.machine {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "\nThe load generator, the upstream, the proxy under test and (for logins) the hashing \
         all share these cores, as they would on a small single-machine installation.\n"
    );

    // ---- summary against the aims
    let _ = writeln!(md, "## Against the aims\n");
    let _ = writeln!(md, "| # | Figure | Result | Aim | Verdict |\n|---|---|---|---|---|");
    let mut row = |n: &str, figure: &str, s: Option<Spread>, decimals: usize, unit: &str, aim: Aim| {
        let _ = writeln!(
            md,
            "| {n} | {figure} | {} | {} | {} |",
            show(s, decimals, unit),
            aim.text(unit, decimals),
            aim.verdict(s, unit, decimals)
        );
    };
    for size in [Size::Small, Size::Big] {
        row(
            "1",
            &format!("Throughput, {}: kanmon ÷ nginx", size.label()),
            ratio_runs(r, size),
            1,
            " %",
            Aim::AtLeast(90.0),
        );
        row(
            "1",
            &format!("p99 added over nginx, {}", size.label()),
            added_p99_runs(r, size),
            2,
            " ms",
            Aim::AtMost(1.0),
        );
    }
    row(
        "2",
        "Full logins/s ÷ raw argon2id hashes/s",
        spread_of(r.logins.iter().map(|l| 100.0 * l.logins_per_sec / l.raw_hashes_per_sec)),
        1,
        " %",
        Aim::AtLeast(85.0),
    );
    row(
        "3",
        "p99 of logged-in requests during a login flood",
        spread_of(r.isolation.iter().map(|i| i.busy.p99_ms)),
        2,
        " ms",
        Aim::Below(20.0),
    );
    let ws_n = r.websockets.first().map_or(plan.websockets, |w| w.connections);
    row(
        "4",
        &format!("WebSocket echo round trip p99, {ws_n} connections through kanmon"),
        spread_of(r.websockets.iter().map(|w| w.kanmon.p99)),
        2,
        " ms",
        Aim::None,
    );
    row(
        "5",
        "Resident set, idle",
        spread_of(r.startup.iter().map(|s| s.idle_rss_mib)),
        1,
        " MiB",
        Aim::AtMost(30.0),
    );
    let sessions_n = r.websockets.first().map_or(plan.sessions, |w| w.sessions);
    row(
        "5",
        &format!("Resident set, {sessions_n} live sessions + {ws_n} WebSockets"),
        spread_of(r.websockets.iter().map(|w| w.rss_sessions_ws_mib)),
        1,
        " MiB",
        Aim::AtMost(150.0),
    );
    row(
        "5",
        "Start-up to first answered request",
        spread_of(r.startup.iter().map(|s| s.startup_ms)),
        1,
        " ms",
        Aim::AtMost(200.0),
    );

    // ---- 1
    let _ = writeln!(
        md,
        "\n## 1. Logged-in requests: kanmon, nginx, the upstream directly\n\n\
         `wrk -t{} -c{} -d{}s` (after a {} s warm-up on the same connections' target), keep-alive, \
         TLS 1.3 to both proxies with the same ECDSA P-256 certificate, the session cookie sent to all \
         three. The upstream is a hyper HTTP/1.1 server inside the bench process. nginx (started \
         by the bench with a config of its own): \
         `worker_processes auto`, `proxy_http_version 1.1`, an upstream block with `keepalive 128`, \
         `keepalive_requests` raised for clients and upstream, 16 × 64 KiB proxy buffers and no temp \
         files, access log on (kanmon logs every request too). *CPU per request* is the user + \
         system time the proxy's processes used during the measurement (from /proc), divided by the \
         requests wrk completed: unlike requests/s it hardly depends on what else the machine \
         is doing. For the upstream row it is the bench process, which serves the upstream.\n",
        plan.threads, plan.connections, plan.wrk_secs, plan.warmup_secs,
    );
    let _ = writeln!(
        md,
        "| Response | Through | Requests/s | p50 | p99 | CPU per request |\n|---|---|---|---|---|---|"
    );
    for size in [Size::Small, Size::Big] {
        for target in [Target::Upstream, Target::Nginx, Target::Kanmon] {
            let outs: Vec<&Outcome> = runs_of(r, size).filter_map(|t| pick(t, target)).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                size.label(),
                target.label(),
                show(spread_of(outs.iter().map(|o| o.rps)), 0, ""),
                show(spread_of(outs.iter().map(|o| o.p50_ms)), 2, " ms"),
                show(spread_of(outs.iter().map(|o| o.p99_ms)), 2, " ms"),
                show(spread_of(outs.iter().map(|o| o.cpu_us)), 1, " µs"),
            );
        }
        let cpu_ratio = spread_of(runs_of(r, size).filter_map(|t| Some(t.kanmon?.cpu_us / t.nginx?.cpu_us)));
        let _ = writeln!(
            md,
            "| {} | **kanmon ÷ nginx; p99 added** | **{}** | | **{}** | **× {}** |",
            size.label(),
            show(ratio_runs(r, size), 1, " %"),
            show(added_p99_runs(r, size), 2, " ms"),
            show(cpu_ratio, 2, ""),
        );
    }

    // ---- 2
    let accounts = r.logins.first().map_or(0, |l| l.accounts);
    let _ = writeln!(
        md,
        "\n## 2. Full logins against raw password hashing\n\n\
         A full login is what a browser does: login screen, user ID + password (argon2id, \
         m=19456 KiB, t=2, p=1), code screen, 6-digit TOTP code (computed in the bench with \
         HMAC-SHA1) — four HTTPS requests and a fresh session. Each run logs in all {accounts} \
         two-step accounts once ({} at a time, one kept-alive connection each), in a TOTP step \
         none of them has used (a code is good once per account and step). The raw rate is \
         argon2id with the same parameters on {} threads, each reusing its memory block as \
         kanmon's hashing workers do, measured in the same run just before.\n",
        plan.login_concurrency, plan.cores,
    );
    let _ = writeln!(
        md,
        "| Raw argon2id hashes/s | Full logins/s | Logins ÷ hashes | kanmon CPU per login | one hash (CPU) | \
         the bench's browsers, CPU per login |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |",
        show(spread_of(r.logins.iter().map(|l| l.raw_hashes_per_sec)), 1, ""),
        show(spread_of(r.logins.iter().map(|l| l.logins_per_sec)), 1, ""),
        show(
            spread_of(r.logins.iter().map(|l| 100.0 * l.logins_per_sec / l.raw_hashes_per_sec)),
            1,
            " %"
        ),
        show(spread_of(r.logins.iter().map(|l| l.kanmon_cpu_ms)), 2, " ms"),
        show(
            spread_of(
                r.logins
                    .iter()
                    .map(|l| 1000.0 * plan.cores as f64 / l.raw_hashes_per_sec)
            ),
            2,
            " ms"
        ),
        show(spread_of(r.logins.iter().map(|l| l.client_cpu_ms)), 2, " ms"),
    );
    if let Some(e) = r.enroll_rate {
        let _ = writeln!(
            md,
            "\nFor reference, the first logins (password, QR screen, first code) ran at {} per second (one run).",
            num(e, 1)
        );
    }

    // ---- 3
    let _ = writeln!(
        md,
        "\n## 3. Proxying during a login flood\n\n\
         {} wrk connections, each pausing {} ms before every request (at most {} requests/s, a \
         busy dashboard rather than a saturating load), for {} s without logins and then for {} s \
         while {} clients log in (password-only accounts) as fast as the gateway lets them — \
         enough to keep every hashing worker busy with a queue behind it.\n",
        plan.connections,
        plan.paced_delay_ms,
        num(plan.connections as f64 * 1000.0 / plan.paced_delay_ms.max(1) as f64, 0),
        plan.wrk_secs,
        plan.wrk_secs,
        plan.flood_concurrency,
    );
    let _ = writeln!(
        md,
        "| | Requests/s | p50 | p99 | max | Logins/s meanwhile |\n|---|---|---|---|---|---|"
    );
    for (label, pick) in [
        (
            "No logins",
            (|i: &IsolationRun| i.quiet) as fn(&IsolationRun) -> Outcome,
        ),
        ("During the login flood", |i: &IsolationRun| i.busy),
    ] {
        let outs: Vec<Outcome> = r.isolation.iter().map(pick).collect();
        let logins = if label == "No logins" {
            "0".to_owned()
        } else {
            show(spread_of(r.isolation.iter().map(|i| i.flood_logins_per_sec)), 1, "")
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {logins} |",
            show(spread_of(outs.iter().map(|o| o.rps)), 0, ""),
            show(spread_of(outs.iter().map(|o| o.p50_ms)), 2, " ms"),
            show(spread_of(outs.iter().map(|o| o.p99_ms)), 2, " ms"),
            show(spread_of(outs.iter().map(|o| o.max_ms)), 2, " ms"),
        );
    }

    // ---- 4
    let _ = writeln!(
        md,
        "\n## 4. WebSockets\n\n\
         {ws_n} WebSockets opened through the proxy (each with a logged-in session's cookie and \
         the page's Origin), to an echo on the upstream. Each sends a {}-byte message every {} ms \
         (starts spread over the interval) for {} s and times the echo; the percentiles are over \
         every round trip of the run. nginx in the same run for comparison.\n",
        "kanmon-bench echo from connection 00000".len(),
        plan.ws_interval_ms,
        plan.ws_secs,
    );
    let _ = writeln!(
        md,
        "| Through | Round trips per run | p50 | p99 | max |\n|---|---|---|---|---|"
    );
    for (label, f) in [
        ("kanmon", (|w: &WsRun| w.kanmon) as fn(&WsRun) -> Rtt),
        ("nginx", |w: &WsRun| w.nginx),
    ] {
        let rtts: Vec<Rtt> = r.websockets.iter().map(f).collect();
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} |",
            show(spread_of(rtts.iter().map(|x| x.samples as f64)), 0, ""),
            show(spread_of(rtts.iter().map(|x| x.p50)), 2, " ms"),
            show(spread_of(rtts.iter().map(|x| x.p99)), 2, " ms"),
            show(spread_of(rtts.iter().map(|x| x.max)), 2, " ms"),
        );
    }

    // ---- 5
    let _ = writeln!(
        md,
        "\n## 5. Memory and start-up\n\n\
         Resident set is VmRSS of the gateway process from /proc. *Idle*: {} fresh starts, each \
         with an empty data directory, {} s after its first answered health check; the same runs \
         give the start-up time, from spawning the process to the first 200 from \
         `/_kanmon/healthz` (TLS handshake included). *With sessions*: per run the gateway is \
         restarted on the database holding all sessions, every session is used once (one proxied \
         request each), then the WebSockets are opened and echo as above; read while they are \
         all open.\n",
        plan.startup_runs,
        plan.idle_wait.as_secs(),
    );
    let _ = writeln!(md, "| Figure | Result |\n|---|---|");
    let _ = writeln!(
        md,
        "| Start-up to first answered request | {} |",
        show(spread_of(r.startup.iter().map(|s| s.startup_ms)), 1, " ms")
    );
    let _ = writeln!(
        md,
        "| Resident set, idle (fresh start) | {} |",
        show(spread_of(r.startup.iter().map(|s| s.idle_rss_mib)), 1, " MiB")
    );
    let _ = writeln!(
        md,
        "| Resident set, restarted on the full database, before any request | {} |",
        show(spread_of(r.websockets.iter().map(|w| w.rss_fresh_mib)), 1, " MiB")
    );
    let _ = writeln!(
        md,
        "| Resident set, {sessions_n} sessions used | {} |",
        show(spread_of(r.websockets.iter().map(|w| w.rss_sessions_mib)), 1, " MiB")
    );
    let _ = writeln!(
        md,
        "| Resident set, {sessions_n} sessions + {ws_n} open WebSockets | {} |",
        show(spread_of(r.websockets.iter().map(|w| w.rss_sessions_ws_mib)), 1, " MiB")
    );
    let _ = writeln!(
        md,
        "\n## Reproduce\n\n\
         ```sh\n\
         apt-get install -y nginx wrk\n\
         cargo run --release --bin kanmon-bench              # this report (~8 min)\n\
         cargo run --release --bin kanmon-bench -- --smoke   # every part briefly; exit 1 on any error\n\
         ```\n\n\
         `--runs N`, `--duration SECS` (each wrk measurement), `--only startup,throughput,isolation,logins,websockets` \
         and `--out FILE` narrow a run; `KANMON_BENCH_LOG=warn` runs the gateway without its access log; \
         `KANMON_BENCH_KEEP=1` keeps the temp directory (configs, logs, databases). The gateway measured is \
         `kanmon-bench --serve CONFIG`, the same code as `kanmon serve` (so it is always the current build; its \
         binary is about 1 MiB larger, which adds under 1 MiB of resident set)."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_spreads() {
        assert_eq!(num(12345.678, 1), "12,345.7");
        assert_eq!(num(-1.5, 2), "-1.50");
        assert_eq!(num(999.0, 0), "999");
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!(show(s, 1, " ms"), "2.0 ms (1.0–3.0)");
        assert_eq!(Aim::AtLeast(90.0).verdict(s, " %", 1), "❌ missed by 88.0 points");
        assert_eq!(show(Spread::of(&[-1.0, 2.0, 3.0]), 0, ""), "2 (-1 to 3)");
        assert_eq!(Aim::AtMost(2.0).verdict(s, " ms", 1), "✅ met");
    }

    #[test]
    fn notes_are_kept() {
        let old = format!("# generated\n{NOTES_MARK}\n## Analysis\nwhy\n");
        assert_eq!(kept_notes(&old).unwrap(), format!("{NOTES_MARK}\n## Analysis\nwhy\n"));
        assert!(kept_notes("# nothing").is_none());
    }
}
