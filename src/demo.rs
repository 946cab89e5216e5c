//! The built-in demo dashboard (`upstream.url: demo`): a small upstream on a loopback
//! port that shows who the gateway says you are, so the whole path — login, proxy,
//! identity headers — can be tried without a real dashboard.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::render::Renderer;
use crate::web::{self, Body};

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

fn page(render: &Renderer, req: Request<Incoming>) -> Response<Body> {
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
