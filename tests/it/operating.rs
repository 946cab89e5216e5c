//! Operating the gateway: reload (G-8, REQ-74), certificates (G-9), limits (REQ-71),
//! the HTTP redirect listener (REQ-60), metrics (G-10), skip-auth paths, redirects.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::websocket::tls_connect;

fn rewrite(app: &TestApp, f: impl FnOnce(String) -> String) {
    let path = app.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(text)).unwrap();
}

fn without_user(text: String, user: &str) -> String {
    text.lines()
        .filter(|l| !l.contains(&format!("id: {user},")))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// G-8: a bad file is refused with the reason and the old configuration stays in
/// force; a good one takes effect without a restart.
#[tokio::test]
async fn g8_reload_keeps_the_last_good_config() {
    let app = spawn_app().await;
    app.login("carol", CAROL_PASSWORD).await;
    rewrite(&app, |t| t.replace("users:", "users: [oops"));
    let err = app.running().reload().await.unwrap_err();
    assert!(err.contains("config.yaml"), "{err}");
    assert_eq!(
        app.api_get_with(&app.client, "/x").await.status(),
        StatusCode::OK,
        "sessions survive a refused reload"
    );
    let b = app.new_browser();
    assert_eq!(
        location(&app.login_with(&b, "bob", BOB_PASSWORD).await),
        "/_kanmon/enroll",
        "old accounts still work"
    );

    rewrite(&app, |t| {
        t.replace("users: [oops", "users:")
            .replace("issuer: AVM EX", "issuer: Renamed")
    });
    assert_eq!(app.running().reload().await.unwrap(), Vec::<String>::new());
    assert_eq!(
        app.api_get_with(&app.client, "/x").await.status(),
        StatusCode::OK,
        "a reload does not drop sessions"
    );
    assert_eq!(app.running().app.config().issuer, "Renamed");
}

/// REQ-74: removing an account, or switching its second step, ends its sessions.
#[tokio::test]
async fn req74_removed_or_switched_accounts_lose_their_sessions() {
    let app = spawn_app().await;
    let (carol, bob) = (app.new_browser(), app.new_browser());
    app.login_with(&carol, "carol", CAROL_PASSWORD).await;
    let key = app.enroll_with(&bob, "bob", BOB_PASSWORD).await;
    let _ = key;
    rewrite(&app, |t| {
        without_user(t, "carol").replace("role: user, two_factor: true", "role: user, two_factor: false")
    });
    let mut ended = app.running().reload().await.unwrap();
    ended.sort();
    assert_eq!(ended, ["bob", "carol"]);
    assert_eq!(app.api_get_with(&carol, "/x").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.api_get_with(&bob, "/x").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        location(&app.login_with(&bob, "bob", BOB_PASSWORD).await),
        "/",
        "bob now logs in with the password only"
    );
}

/// G-8: a change of the file is noticed without SIGHUP.
#[tokio::test]
async fn g8_a_changed_file_is_reloaded_by_itself() {
    let app = spawn_app().await;
    app.login("carol", CAROL_PASSWORD).await;
    rewrite(&app, |t| without_user(t, "carol"));
    let t = Instant::now();
    while app.api_get_with(&app.client, "/x").await.status() == StatusCode::OK {
        assert!(t.elapsed() < Duration::from_secs(5), "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// G-9: new certificate files are used for new connections; open ones go on.
#[tokio::test]
async fn g9_certificate_files_are_reloaded() {
    let app = spawn_app().await;
    let old_client = app.new_browser();
    assert_eq!(
        old_client
            .get(app.url("/_kanmon/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(app.dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(app.dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
    let new_client = client(&ck.cert.pem());
    let t = Instant::now();
    while new_client.get(app.url("/_kanmon/healthz")).send().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        old_client
            .get(app.url("/_kanmon/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "an open connection goes on"
    );
}

/// REQ-60: the plain-HTTP listener only redirects to HTTPS, on allowed hosts.
#[tokio::test]
async fn req60_http_listener_only_redirects() {
    let app = spawn_with(Setup {
        extra_yaml: "http_redirect: { listen: 127.0.0.1:0 }\n".into(),
        ..Setup::default()
    })
    .await;
    let port = app.running().redirect_addr.unwrap().port();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(format!("GET /dash?x=1 HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 308"), "{resp}");
    assert!(
        resp.to_lowercase()
            .contains(&format!("location: https://localhost:{}/dash?x=1", app.port)),
        "{resp}"
    );

    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(app.upstream.seen().is_empty());
}

/// G-10: Prometheus metrics on their own listener.
#[tokio::test]
async fn g10_metrics_count_requests_and_logins() {
    let app = spawn_with(Setup {
        extra_yaml: "metrics: { listen: 127.0.0.1:0 }\n".into(),
        ..Setup::default()
    })
    .await;
    app.login("carol", CAROL_PASSWORD).await;
    app.api_get_with(&app.client, "/x").await;
    let port = app.running().metrics_addr.unwrap().port();
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("kanmon_events_total{event=\"login.success\"} 1"),
        "{text}"
    );
    assert!(text.contains("kanmon_upstream_seconds_count 1"), "{text}");
    assert!(text.contains("kanmon_sessions 1"), "{text}");
    assert!(text.contains("kanmon_responses_total{class=\"2xx\"}"), "{text}");
}

/// REQ-71: one address cannot hold more than its share of connections.
#[tokio::test]
async fn req71_connections_per_address_are_limited() {
    let app = spawn_with(Setup {
        extra_yaml: "limits: { max_connections_per_ip: 2 }\n".into(),
        ..Setup::default()
    })
    .await;
    let _a = tls_connect(&app).await;
    let _b = tls_connect(&app).await;
    let mut c = tls_connect(&app).await;
    c.write_all(b"GET /_kanmon/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = c.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains("retry-after:"), "{head}");
    drop((_a, _b));
}

/// REQ-71: 500 slow clients holding half-sent headers do not stop a login.
#[tokio::test]
async fn req71_slow_clients_do_not_stop_a_login() {
    let app = spawn_app().await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        // From another loopback address, so the per-address limit is not what saves us.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut tcp = socket
            .connect(format!("127.0.0.1:{}", app.port).parse().unwrap())
            .await
            .unwrap();
        let _ = tcp.write_all(b"\x16\x03\x01").await; // a TLS record that never completes
        slow.push(tcp);
    }
    let t = Instant::now();
    let r = app.login("carol", CAROL_PASSWORD).await;
    assert_eq!(location(&r), "/");
    assert!(t.elapsed() < Duration::from_secs(2), "login took {:?}", t.elapsed());
    drop(slow);
}

/// Skip-auth paths reach the upstream without login and without identity; nothing else does.
#[tokio::test]
async fn skip_auth_paths_pass_without_login_or_identity() {
    let app = spawn_with(Setup {
        upstream_yaml: "skip_auth: [\"/public/\"]".into(),
        ..Setup::default()
    })
    .await;
    let r = app
        .client
        .get(app.url("/public/icon.png"))
        .header("remote-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = app.upstream.last();
    assert_eq!(seen.uri, "/public/icon.png");
    assert!(
        seen.header("remote-user").is_none(),
        "no identity on a public path, spoofed or not"
    );
    for path in ["/publicx", "/public", "/public/../private"] {
        let r = app.api_get_with(&app.client, path).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(app.upstream.seen().len(), 1);
}

/// A redirect to the upstream's own address becomes one to the gateway.
#[tokio::test]
async fn upstream_redirects_to_its_own_address_are_rewritten() {
    let app = spawn_app().await;
    app.login("carol", CAROL_PASSWORD).await;
    let r = app.get("/redirect").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/target?from=redirect");
}

/// Behind a trusted proxy the client is the right-most untrusted X-Forwarded-For entry
/// and the host is the proxy's X-Forwarded-Host (still checked against the allowed
/// list); without one, both headers are ignored.
#[tokio::test]
async fn trusted_proxies_decide_who_the_client_is() {
    let app = spawn_with(Setup {
        extra_yaml: "trusted_proxies: [\"127.0.0.1\"]\n".into(),
        ..Setup::default()
    })
    .await;
    app.login("carol", CAROL_PASSWORD).await;
    let r = app
        .client
        .get(app.url("/x"))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
        .header("x-forwarded-host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.upstream.last().header("x-forwarded-for").as_deref(),
        Some("198.51.100.7")
    );
    let r = app
        .client
        .get(app.url("/x"))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a forwarded host must be allowed too"
    );

    let plain = spawn_app().await;
    plain.login("carol", CAROL_PASSWORD).await;
    plain
        .client
        .get(plain.url("/x"))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(
        plain.upstream.last().header("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "no proxy trusted by default"
    );
}
