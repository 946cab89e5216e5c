//! The built-in demo dashboard (`upstream.url: demo`): a small upstream on a loopback
//! port that shows who the gateway says you are, so the whole path — login, proxy,
//! identity headers — can be tried without a real dashboard. `/live` is a page whose
//! script (`/live.js`) opens a WebSocket (`/live/ws`) that counts, to show live
//! connections pass through the gateway too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::render::Renderer;
use crate::web::{self, Body};

/// The live page's script: external, so the page needs no inline script.
const LIVE_JS: &str = include_str!("../static/demo_live.js");
/// How often the live page's WebSocket sends the next number.
const TICK: Duration = Duration::from_millis(500);

/// Starts the demo upstream on 127.0.0.1 and returns its address.
pub async fn spawn() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let render = Arc::new(Renderer::new());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let render = render.clone();
                    async move { Ok::<_, Infallible>(page(&render, req)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn page(render: &Renderer, mut req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/live/ws" => return live_socket(&mut req),
        "/live.js" => {
            let mut r = web::text(StatusCode::OK, "text/javascript; charset=utf-8", LIVE_JS);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return r;
        }
        "/live" => return web::html(StatusCode::OK, render.render("demo_live.html", minijinja::context! {})),
        _ => {}
    }
    let h = req.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .unwrap_or("")
            .to_owned()
    };
    let html = render.render(
        "demo.html",
        minijinja::context! {
            user => get("remote-user"), email => get("remote-email"), groups => get("remote-groups"),
            xff => get("x-forwarded-for"), xfp => get("x-forwarded-proto"), xfh => get("x-forwarded-host"),
            path => req.uri().path(),
        },
    );
    web::html(StatusCode::OK, html)
}

/// `/live/ws`: accepts a WebSocket and sends 1, 2, 3, … every [`TICK`] until the
/// client goes away.
fn live_socket(req: &mut Request<Incoming>) -> Response<Body> {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_ws, key) else {
        return web::text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "a WebSocket endpoint\n",
        );
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (mut tx, mut rx) = ws.split();
        let mut tick = tokio::time::interval(TICK);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    n += 1;
                    if tx.send(Message::text(n.to_string())).await.is_err() {
                        return;
                    }
                }
                msg = rx.next() => match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    });
    let mut r = web::empty_response(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    r
}
