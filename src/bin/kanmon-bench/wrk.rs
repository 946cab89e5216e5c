//! Debian's wrk as the load generator: keep-alive connections, TLS, and a Lua `done`
//! hook that prints the figures in a line this module parses.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::client::SESSION_COOKIE;
use crate::{Result, bail};

const MARK: &str = "KANMON_BENCH";

/// One wrk run.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub secs: u64,
    pub cookie: Option<String>,
    /// Pause of each connection before each request (0: as fast as possible).
    pub delay_ms: u64,
    /// Smallest body a right answer has, to catch error pages answered with 200.
    pub min_body: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time the server under test used per request (µs), when measured.
    pub cpu_us: f64,
}

fn script(delay_ms: u64) -> String {
    let delay = if delay_ms > 0 {
        format!("delay = function() return {delay_ms} end\n")
    } else {
        String::new()
    };
    format!(
        r#"-- written by kanmon-bench
{delay}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{MARK} requests=%.0f duration_us=%.0f bytes=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#
    )
}

/// Runs wrk and measures the CPU time `cpu` says the server used meanwhile.
pub async fn run_measuring(load: &Load, dir: &Path, cpu: impl Fn() -> f64) -> Result<Outcome> {
    let before = cpu();
    let mut o = run(load, dir).await?;
    let used = cpu() - before;
    o.cpu_us = used * 1e6 / o.requests as f64;
    Ok(o)
}

pub async fn run(load: &Load, dir: &Path) -> Result<Outcome> {
    let path = dir.join(format!("wrk-delay-{}.lua", load.delay_ms));
    if !path.exists() {
        std::fs::write(&path, script(load.delay_ms))?;
    }
    let mut cmd = std::process::Command::new("wrk");
    cmd.arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.secs))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&path);
    if let Some(c) = &load.cookie {
        cmd.arg("-H").arg(format!("Cookie: {SESSION_COOKIE}={c}"));
    }
    cmd.arg(&load.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = Duration::from_secs(load.secs + 30);
    // On a blocking thread, so that the async work of the bench (a login flood, the
    // upstream) goes on meanwhile.
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<Option<std::process::Output>> {
        let mut child = crate::procs::spawn_tied(&mut cmd)?;
        let deadline = std::time::Instant::now() + limit;
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().map(Some)
    })
    .await??;
    let Some(out) = out else {
        bail!("wrk against {} did not finish", load.url)
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with(MARK)) else {
        bail!(
            "wrk against {} printed no summary (exit {}): {}{}",
            load.url,
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let requests = field("requests");
    let errors: Vec<String> = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .filter(|k| field(k) != 0.0)
        .map(|k| format!("{k}={}", field(k)))
        .collect();
    if !errors.is_empty() {
        bail!(
            "wrk against {} saw errors ({}; status counts answers ≥ 400)",
            load.url,
            errors.join(", ")
        );
    }
    if requests.is_nan() || requests <= 0.0 {
        bail!("wrk against {} completed no request", load.url);
    }
    let per_request = field("bytes") / requests;
    if per_request < load.min_body as f64 {
        bail!(
            "wrk against {} got {per_request:.0} bytes per answer, less than the {}-byte body: not the upstream's answers",
            load.url,
            load.min_body
        );
    }
    Ok(Outcome {
        requests: requests as u64,
        rps: requests / (field("duration_us") / 1e6),
        p50_ms: field("p50_us") / 1000.0,
        p99_ms: field("p99_us") / 1000.0,
        max_ms: field("max_us") / 1000.0,
        cpu_us: f64::NAN,
    })
}
