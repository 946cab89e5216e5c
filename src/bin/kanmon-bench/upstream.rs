//! The fast upstream both proxies forward to: plain HTTP/1.1 with keep-alive, a small
//! body on `/small`, 1 MiB on `/big`, and a WebSocket echo on `/ws`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpListener;

use crate::ws;

pub const SMALL_BODY: &[u8] = b"hello from the kanmon-bench upstream\n";
pub const BIG_BYTES: usize = 1024 * 1024;

fn big() -> Bytes {
    static BIG: OnceLock<Bytes> = OnceLock::new();
    BIG.get_or_init(|| Bytes::from(vec![b'x'; BIG_BYTES])).clone()
}

pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), service_fn(answer))
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/small" => Bytes::from_static(SMALL_BODY),
        "/big" => big(),
        "/ws" => return Ok(upgrade(&mut req)),
        _ => {
            return Ok(Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::from_static(b"not found\n")))
                .expect("a valid response"));
        }
    };
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(body))
        .expect("a valid response"))
}

/// Answers a WebSocket handshake with 101 and echoes every message on the tunnel.
fn upgrade(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(b"not a WebSocket handshake\n")))
            .expect("a valid response");
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = echo(BufStream::new(TokioIo::new(upgraded))).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", ws::accept_key(key.as_bytes()))
        .body(Full::new(Bytes::new()))
        .expect("a valid response")
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    loop {
        let frame = ws::read_frame(&mut s).await?;
        match frame.opcode {
            ws::CLOSE => {
                ws::write_frame(&mut s, ws::CLOSE, &frame.payload, None).await?;
                return Ok(());
            }
            ws::PING => ws::write_frame(&mut s, ws::PONG, &frame.payload, None).await?,
            ws::TEXT | ws::BINARY => ws::write_frame(&mut s, frame.opcode, &frame.payload, None).await?,
            _ => {}
        }
    }
}
