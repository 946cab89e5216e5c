//! WebSockets through the gateway (G-4, REQ-66) and revocation reaching live
//! connections.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A TLS connection to the gateway that speaks HTTP/1.1 only, as browsers do for
/// WebSockets.
pub async fn tls_connect(app: &TestApp) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_to(app.port, &app.cert_pem).await
}

/// The same, to a gateway on `port` (e.g. the real binary) with certificate `cert_pem`.
pub async fn tls_connect_to(port: u16, cert_pem: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Opens a WebSocket to `path` with the given session cookie and Origin.
pub async fn open_ws(app: &TestApp, path: &str, cookie: Option<&str>, origin: &str) -> Result<Ws, StatusCode> {
    open_ws_at(app.port, &app.cert_pem, path, cookie, origin).await
}

/// The same, to a gateway on `port` with certificate `cert_pem`.
pub async fn open_ws_at(
    port: u16,
    cert_pem: &str,
    path: &str,
    cookie: Option<&str>,
    origin: &str,
) -> Result<Ws, StatusCode> {
    let mut req = format!("wss://localhost:{port}{path}").into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", format!("__Host-kanmon={c}").parse().unwrap());
    }
    let tls = tls_connect_to(port, cert_pem).await;
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(StatusCode::from_u16(resp.status().as_u16()).unwrap())
        }
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

pub async fn logged_in_cookie(app: &TestApp, c: &reqwest::Client) -> String {
    let r = app.login_with(c, "carol", CAROL_PASSWORD).await;
    session_cookie(&r).expect("a session cookie after login")
}

pub async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo in time")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("the tunnel closed: {other:?}"),
        }
    }
}

/// REQ-66: no session → 401; foreign Origin → 403; our Origin → frames echo, with the
/// identity headers on the upgrade request.
#[tokio::test]
async fn req66_websocket_needs_a_session_and_our_origin() {
    let app = spawn_app().await;
    assert_eq!(
        open_ws(&app, "/ws", None, &app.base).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let cookie = logged_in_cookie(&app, &app.client).await;
    assert_eq!(
        open_ws(&app, "/ws", Some(&cookie), "https://evil.example").await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    let before = app.upstream.seen().len();
    assert_eq!(
        app.upstream.seen().len(),
        before,
        "refused upgrades never reach the upstream"
    );

    let mut ws = open_ws(&app, "/ws", Some(&cookie), &app.base)
        .await
        .expect("the upgrade succeeds");
    assert_eq!(echo(&mut ws, "hello").await, "hello");
    assert_eq!(echo(&mut ws, "世界").await, "世界");
    let seen = app.upstream.last();
    assert_eq!(seen.uri, "/ws");
    assert_eq!(seen.header("remote-user").as_deref(), Some("carol"));
    assert!(seen.header("cookie").is_none_or(|c| !c.contains("__Host-kanmon")));
}

/// G-4: an upgrade the upstream does not accept is an ordinary response; no tunnel.
#[tokio::test]
async fn g4_an_upgrade_the_upstream_refuses_stays_http() {
    let app = spawn_app().await;
    let cookie = logged_in_cookie(&app, &app.client).await;
    assert_eq!(
        open_ws(&app, "/ws-refuse", Some(&cookie), &app.base).await.err(),
        Some(StatusCode::NOT_FOUND)
    );
}

/// Revocation reaches live connections: logout closes the user's open WebSocket within
/// a second.
#[tokio::test]
async fn logout_closes_open_websockets_within_a_second() {
    let app = spawn_app().await;
    let cookie = logged_in_cookie(&app, &app.client).await;
    let mut ws = open_ws(&app, "/ws", Some(&cookie), &app.base).await.unwrap();
    assert_eq!(echo(&mut ws, "before").await, "before");

    let page = app.get("/_kanmon/logout").await.text().await.unwrap();
    app.post("/_kanmon/logout", &[("csrf", &csrf_of(&page))]).await;
    let t = Instant::now();
    let ended = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the WebSocket is still open {:?} after logout",
        t.elapsed()
    );
}

/// Revocation reaches streams too: a server-sent-events response stops when the session
/// is ended by "log out everywhere" from another browser.
#[tokio::test]
async fn logout_everywhere_cuts_open_event_streams() {
    let app = spawn_app().await;
    let (a, b) = (app.new_browser(), app.new_browser());
    app.login_with(&a, "carol", CAROL_PASSWORD).await;
    app.login_with(&b, "carol", CAROL_PASSWORD).await;
    let mut events = a
        .get(app.url("/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(events.chunk().await.unwrap().is_some(), "the stream flows");

    let page = app.get_with(&b, "/_kanmon/logout").await.text().await.unwrap();
    app.post_with(&b, "/_kanmon/logout", &[("csrf", &csrf_of(&page)), ("everywhere", "1")])
        .await;
    let ended = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match events.chunk().await {
                Ok(Some(_)) => {}
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived the session");
}

/// SIGTERM's path: shutting down stops accepting but lets an open WebSocket go on until
/// its client closes it, then finishes.
#[tokio::test]
async fn shutdown_lets_an_open_websocket_finish() {
    let mut app = spawn_app().await;
    let cookie = logged_in_cookie(&app, &app.client).await;
    let mut ws = open_ws(&app, "/ws", Some(&cookie), &app.base).await.unwrap();
    let running = app.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        echo(&mut ws, "still here").await,
        "still here",
        "the tunnel survives the start of a shutdown"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.is_err(),
        "no new connections"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown finishes once the tunnel closed")
        .unwrap();
}
