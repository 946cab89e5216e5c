//! A real upstream HTTP server that records every request it receives and answers
//! with what it saw, plus a few special paths for streaming and slowness.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// All values of a header (name compared case-insensitively, as HTTP does).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(record.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn answer(record: Arc<Mutex<Vec<Seen>>>, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // `/ws`: a WebSocket echo; `/ws-refuse`: an upgrade request answered with 404.
    let ws_key = req.headers().get("sec-websocket-key").cloned();
    let upgrade = (req.uri().path() == "/ws").then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    };
    record.lock().unwrap().push(seen.clone());
    let path = parts.uri.path();
    if let (Some(upgrade), Some(key)) = (upgrade, ws_key) {
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let (mut tx, mut rx) = futures_util::StreamExt::split(ws);
            while let Some(Ok(msg)) = futures_util::StreamExt::next(&mut rx).await {
                if msg.is_text() || msg.is_binary() {
                    if futures_util::SinkExt::send(&mut tx, msg).await.is_err() {
                        return;
                    }
                } else if msg.is_close() {
                    return;
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        return Ok(Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap());
    }
    if path == "/ws-refuse" {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::from("no websocket here")).boxed())
            .unwrap());
    }
    if path == "/events" {
        // Server-sent events: an event every 200 ms, no length, for as long as asked.
        let stream = futures_stream(50, Duration::from_millis(200));
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap());
    }
    if path == "/redirect" {
        let here = parts
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        return Ok(Response::builder()
            .status(302)
            .header("location", format!("http://{here}/target?from=redirect"))
            .body(Full::new(Bytes::new()).boxed())
            .unwrap());
    }
    if let Some(mib) = path.strip_prefix("/big/").and_then(|n| n.parse::<u64>().ok()) {
        // `mib` MiB of zeros in 64 KiB chunks, generated as they are read.
        let chunk = Bytes::from(vec![0u8; 64 * 1024]);
        let chunks = mib * 16;
        let stream =
            futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))));
        return Ok(Response::builder()
            .header("content-length", (mib * 1024 * 1024).to_string())
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap());
    }
    if path == "/stream" {
        // Three chunks, 300 ms apart: a buffering proxy would deliver them together.
        let stream = futures_stream(3, Duration::from_millis(300));
        return Ok(Response::builder()
            .header("content-type", "text/plain")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap());
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let json = serde_json::json!({
        "method": seen.method, "uri": seen.uri,
        "headers": seen.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>(),
        "body_len": seen.body.len(),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("set-cookie", "app_session=upstream; Path=/")
        .header("set-cookie", "__Host-kanmon=forged-by-upstream; Path=/; Secure")
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "should-not-pass")
        .body(Full::new(Bytes::from(json.to_string())).boxed())
        .unwrap())
}

fn futures_stream(
    n: usize,
    gap: Duration,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..n {
            if tx
                .send(Ok(Frame::data(Bytes::from(format!("chunk{i}\n")))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    ReceiverStream(rx)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
