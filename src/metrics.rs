//! Prometheus metrics, served as text on their own listener (G-10): requests by status
//! class, upstream latency, security events by kind, active sessions, open WebSockets.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::app::App;
use crate::web;

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    /// Responses by status class: index 0 for 1xx … 4 for 5xx.
    responses: [AtomicU64; 5],
    upstream_buckets: [AtomicU64; BUCKETS.len()],
    upstream_count: AtomicU64,
    upstream_micros: AtomicU64,
    events: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.upstream_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.upstream_count.fetch_add(1, Ordering::Relaxed);
        self.upstream_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Security events (logins by outcome, enrollments, logouts, reloads).
    pub fn event(&self, kind: &str) {
        if let Ok(mut e) = self.events.lock() {
            *e.entry(kind.to_owned()).or_default() += 1;
        }
    }

    pub fn render(&self, sessions: u64, websockets: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP kanmon_responses_total Responses sent, by status class.");
        let _ = writeln!(out, "# TYPE kanmon_responses_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "kanmon_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kanmon_upstream_seconds Time until the upstream's response headers."
        );
        let _ = writeln!(out, "# TYPE kanmon_upstream_seconds histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.upstream_buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "kanmon_upstream_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.upstream_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "kanmon_upstream_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.upstream_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "kanmon_upstream_seconds_sum {sum}");
        let _ = writeln!(out, "kanmon_upstream_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP kanmon_events_total Security events, by kind (login.success, login.code_failed, …)."
        );
        let _ = writeln!(out, "# TYPE kanmon_events_total counter");
        if let Ok(events) = self.events.lock() {
            for (k, v) in events.iter() {
                let _ = writeln!(out, "kanmon_events_total{{event=\"{k}\"}} {v}");
            }
        }
        let _ = writeln!(out, "# HELP kanmon_sessions Sessions stored (pending and logged in).");
        let _ = writeln!(out, "# TYPE kanmon_sessions gauge");
        let _ = writeln!(out, "kanmon_sessions {sessions}");
        let _ = writeln!(out, "# HELP kanmon_websockets Open WebSocket tunnels.");
        let _ = writeln!(out, "# TYPE kanmon_websockets gauge");
        let _ = writeln!(out, "kanmon_websockets {websockets}");
        out
    }
}

/// Serves `GET /metrics` (plain HTTP) until the task is aborted.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    if req.uri().path() != "/metrics" {
                        return Ok::<_, Infallible>(web::text(
                            http::StatusCode::NOT_FOUND,
                            "text/plain",
                            "not found\n",
                        ));
                    }
                    let sessions = app.store.run(|s| s.session_count()).await.unwrap_or(0);
                    let ws = app.proxy.websockets.load(Ordering::Relaxed);
                    let body = app.metrics.render(sessions, ws);
                    Ok(web::text(http::StatusCode::OK, "text/plain; version=0.0.4", body))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.response(200);
        m.response(502);
        m.upstream_latency(Duration::from_millis(3));
        m.upstream_latency(Duration::from_millis(300));
        m.event("login.success");
        let text = m.render(7, 2);
        assert!(text.contains("kanmon_responses_total{class=\"2xx\"} 1"));
        assert!(text.contains("kanmon_responses_total{class=\"5xx\"} 1"));
        assert!(text.contains("kanmon_upstream_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("kanmon_upstream_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("kanmon_upstream_seconds_count 2"));
        assert!(text.contains("kanmon_events_total{event=\"login.success\"} 1"));
        assert!(text.contains("kanmon_sessions 7") && text.contains("kanmon_websockets 2"));
    }
}
