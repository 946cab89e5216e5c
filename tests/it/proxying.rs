//! Forwarding, black-box against a real recording upstream: G-1, G-3, G-4, G-5 and
//! REQ-62, REQ-63, REQ-67, REQ-68, REQ-69.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Version};

use crate::helpers::*;
use crate::security::{carol_session, raw_request};

/// A browser-like client that speaks HTTP/1.1 only (the default one negotiates h2).
fn h1_client(app: &TestApp) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tls_certs_only([reqwest::Certificate::from_pem(app.cert_pem.as_bytes()).unwrap()])
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// ---- G-1, REQ-68: no session ------------------------------------------------------------

/// G-1, REQ-68: without a session, scripts, forms and API clients get 401 with a small
/// JSON body and no `WWW-Authenticate` (no browser password dialog); top-level
/// navigations are redirected to the login screen with the way back. The upstream sees
/// none of it.
#[tokio::test]
async fn g1_req68_no_session_401_json_for_scripts_redirect_for_navigations() {
    let app = spawn_app().await;
    let c = &app.client;
    let u = |p: &str| app.url(p);
    let not_navigations = [
        ("XHR GET", app.api_get_with(c, "/dashboard/data").await),
        (
            "fetch GET asking for HTML",
            c.get(u("/dashboard"))
                .header("accept", "text/html")
                .header("sec-fetch-mode", "cors")
                .send()
                .await
                .unwrap(),
        ),
        (
            "API GET, no browser headers",
            c.get(u("/api/v1/items")).send().await.unwrap(),
        ),
        (
            "API GET asking for JSON",
            c.get(u("/api/v1/items"))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap(),
        ),
        (
            "form POST (a navigation, but not GET)",
            c.post(u("/dashboard/save"))
                .header("accept", "text/html")
                .header("sec-fetch-mode", "navigate")
                .form(&[("a", "1")])
                .send()
                .await
                .unwrap(),
        ),
        (
            "JSON POST",
            c.post(u("/api/v1/items"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        ("DELETE", c.delete(u("/api/v1/items/1")).send().await.unwrap()),
        ("HEAD without HTML", c.head(u("/api/v1/items")).send().await.unwrap()),
    ];
    for (what, r) in not_navigations {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(r.headers().get("www-authenticate").is_none(), "{what}");
        assert!(r.headers().get("location").is_none(), "{what}");
        let is_head = what.starts_with("HEAD");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{what}"
        );
        if !is_head {
            let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{what}: JSON body: {e}"));
            assert_eq!(body["error"], "unauthorized", "{what}");
            assert_eq!(body["login"], "/_kanmon/login", "{what}");
        }
    }

    let navigations = [
        ("Sec-Fetch-Mode: navigate", app.get("/dashboard?a=1&b=%20").await),
        (
            "Accept: text/html without fetch metadata",
            c.get(u("/dashboard?a=1&b=%20"))
                .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                .send()
                .await
                .unwrap(),
        ),
        (
            "HEAD navigation",
            c.head(u("/dashboard?a=1&b=%20"))
                .header("sec-fetch-mode", "navigate")
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, r) in navigations {
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{what}");
        assert_eq!(
            location(&r),
            "/_kanmon/login?rd=%2Fdashboard%3Fa%3D1%26b%3D%2520",
            "{what}"
        );
    }
    let r = app.get("/").await;
    assert_eq!(location(&r), "/_kanmon/login", "no rd for the start page");
    assert!(app.upstream.seen().is_empty(), "{:?}", app.upstream.seen());
}

// ---- G-3, REQ-62: identity and forwarding headers ---------------------------------------

/// G-3, REQ-62: identity headers the client sends, in any case and with `_` for `-`,
/// are removed; the upstream sees exactly one of each, with the gateway's values. Over
/// HTTP/1.1 (names as typed) and HTTP/2.
#[tokio::test]
async fn g3_req62_identity_headers_from_the_client_are_replaced() {
    let app = spawn_app().await;
    let sid = carol_session(&app).await;
    for (proto, c) in [("HTTP/1.1", h1_client(&app)), ("HTTP/2", app.new_browser())] {
        let r = c
            .get(app.url("/whoami"))
            .header("cookie", format!("__Host-kanmon={sid}"))
            .header("Remote-User", "mallory")
            .header("REMOTE-USER", "mallory2")
            .header("remote_user", "mallory3")
            .header("Remote_User", "mallory4")
            .header("Remote-Email", "mallory@evil.example")
            .header("Remote_Email", "mallory@evil.example")
            .header("Remote-Groups", "admin")
            .header("remote_groups", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{proto}");
        let seen = app.upstream.last();
        assert_eq!(seen.header_all("remote-user"), ["carol"], "{proto}");
        assert_eq!(seen.header_all("remote-email"), ["carol@example.com"], "{proto}");
        assert_eq!(seen.header_all("remote-groups"), ["user"], "{proto}");
        let spoofed: Vec<_> = seen
            .headers
            .iter()
            .filter(|(n, v)| n.contains('_') || v.contains("mallory") || v == "admin")
            .collect();
        assert!(spoofed.is_empty(), "{proto}: {spoofed:?}");
    }
}

/// REQ-62: with configured identity header names, those are the ones set and cleaned.
#[tokio::test]
async fn req62_configured_identity_header_names_are_cleaned_too() {
    let app = spawn_with(Setup {
        extra_yaml: "identity_headers: { user: X-Auth-User, email: X-Auth-Email, groups: X-Auth-Groups }\n".into(),
        ..Setup::default()
    })
    .await;
    let sid = carol_session(&app).await;
    let r = h1_client(&app)
        .get(app.url("/whoami"))
        .header("cookie", format!("__Host-kanmon={sid}"))
        .header("X-Auth-User", "mallory")
        .header("x_auth_user", "mallory")
        .header("X_Auth_Groups", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = app.upstream.last();
    assert_eq!(seen.header_all("x-auth-user"), ["carol"]);
    assert_eq!(seen.header_all("x-auth-email"), ["carol@example.com"]);
    assert_eq!(seen.header_all("x-auth-groups"), ["user"]);
    assert!(seen.headers.iter().all(|(n, _)| !n.contains('_')), "{:?}", seen.headers);
}

/// G-3: `X-Forwarded-For/-Proto/-Host`, `Forwarded` and `X-Real-IP` are the gateway's
/// statement about the client; whatever the client sent is replaced.
#[tokio::test]
async fn g3_forwarding_headers_are_set_by_the_gateway() {
    let app = spawn_app().await;
    let sid = carol_session(&app).await;
    let r = h1_client(&app)
        .get(app.url("/where"))
        .header("cookie", format!("__Host-kanmon={sid}"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-For", "7.7.7.7")
        .header("X_Forwarded_For", "6.6.6.6")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Port", "80")
        .header("Forwarded", "for=6.6.6.6;proto=http;host=evil.example")
        .header("X-Real-IP", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = app.upstream.last();
    let authority = format!("localhost:{}", app.port);
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.header_all("x-forwarded-host"), [authority.as_str()]);
    assert_eq!(
        seen.header_all("forwarded"),
        [format!("for=127.0.0.1;proto=https;host=\"{authority}\"")]
    );
    assert!(seen.header("x-real-ip").is_none() && seen.header("x-forwarded-port").is_none());
    assert_eq!(
        seen.header_all("host"),
        [app.upstream.addr.to_string()],
        "the upstream's own host"
    );
    let leaked: Vec<_> = seen
        .headers
        .iter()
        .filter(|(_, v)| v.contains("6.6.6.6") || v.contains("7.7.7.7") || v.contains("evil.example"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

// ---- REQ-63: cookies --------------------------------------------------------------------

/// REQ-63: the gateway's cookies never reach the upstream, the application's own cookies
/// do (in one `Cookie` header); the upstream's `Set-Cookie` reaches the browser unless
/// it tries to set the gateway's cookie.
#[tokio::test]
async fn req63_gateway_cookies_stay_at_the_gateway_app_cookies_pass_both_ways() {
    let app = spawn_app().await;
    let sid = carol_session(&app).await;
    for (proto, c) in [("HTTP/1.1", h1_client(&app)), ("HTTP/2", app.new_browser())] {
        let r = c
            .get(app.url("/cookies"))
            .header(
                "cookie",
                format!("app_pref=dark; __Host-kanmon={sid}; __Host-kanmon-lang=en; other=2"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{proto}");
        assert_eq!(
            set_cookies(&r),
            ["app_session=upstream; Path=/"],
            "{proto}: the upstream's cookie, and not its forged session cookie"
        );
        let seen = app.upstream.last();
        assert_eq!(seen.header_all("cookie"), ["app_pref=dark; other=2"], "{proto}");
        let leaked: Vec<_> = seen
            .headers
            .iter()
            .filter(|(_, v)| v.contains("__Host-kanmon") || v.contains(&sid))
            .collect();
        assert!(leaked.is_empty(), "{proto}: {leaked:?}");
    }

    // Only the gateway's cookie: the upstream sees no Cookie header at all.
    let r = app.api_get_with(&app.client, "/cookies").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(app.upstream.last().header("cookie").is_none());
    // The browser's jar took the app's cookie, kept its own session, and sends both on.
    let r = app.api_get_with(&app.client, "/cookies").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the forged cookie did not replace the session"
    );
    assert_eq!(app.upstream.last().header_all("cookie"), ["app_session=upstream"]);
}

// ---- REQ-67: hop-by-hop headers ---------------------------------------------------------

/// REQ-67: hop-by-hop request headers, and every header the client names in
/// `Connection`, stop at the gateway; so do the upstream's (`Connection: x-upstream-hop`
/// and the header it names).
#[tokio::test]
async fn req67_hop_by_hop_headers_are_removed_both_ways() {
    let app = spawn_app().await;
    let sid = carol_session(&app).await;
    let request = format!(
        "GET /hop HTTP/1.1\r\nHost: localhost:{port}\r\nCookie: __Host-kanmon={sid}\r\n\
         Connection: X-Foo, x-bar, close\r\nX-Foo: secret-foo\r\nX-Bar: secret-bar\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\
         Proxy: http://evil.example:3128\r\nProxy_Authorization: Basic eA==\r\n\
         Proxy-Authentication-Info: x\r\nUpgrade: websocket\r\nX-Keep: kept\r\n\r\n",
        port = app.port
    );
    let r = raw_request(&app, request.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = app.upstream.last();
    for gone in [
        "connection",
        "x-foo",
        "x-bar",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "proxy",
        "proxy_authorization",
        "proxy-authentication-info",
        "upgrade",
    ] {
        assert!(
            seen.header(gone).is_none(),
            "{gone} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header_all("x-keep"), ["kept"], "end-to-end headers pass");

    // The response side, over HTTP/1.1 on the wire and over HTTP/2.
    assert!(r.header("x-upstream-hop").is_none(), "{r:?}");
    assert!(
        r.header_all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("x-upstream-hop")),
        "{r:?}"
    );
    for (proto, c) in [("HTTP/1.1", h1_client(&app)), ("HTTP/2", app.new_browser())] {
        let r = c
            .get(app.url("/hop"))
            .header("cookie", format!("__Host-kanmon={sid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{proto}");
        assert!(r.headers().get("x-upstream-hop").is_none(), "{proto}");
        assert!(
            r.headers()
                .get_all("connection")
                .iter()
                .all(|v| !v.to_str().unwrap().contains("x-upstream-hop")),
            "{proto}"
        );
        assert!(
            r.headers().get("strict-transport-security").is_some(),
            "{proto}: HSTS on proxied answers too (REQ-70)"
        );
    }
}

// ---- G-4: streaming and large bodies ----------------------------------------------------

/// G-4: a streamed response (three chunks 300 ms apart) reaches the browser as it is
/// produced, over HTTP/2 and HTTP/1.1: a buffering proxy would deliver the first chunk
/// only with the last.
#[tokio::test]
async fn g4_streamed_responses_are_not_buffered_h2_and_h1() {
    let app = spawn_app().await;
    let sid = carol_session(&app).await;
    for (expected, c) in [
        (Version::HTTP_2, app.new_browser()),
        (Version::HTTP_11, h1_client(&app)),
    ] {
        let started = Instant::now();
        let mut r = c
            .get(app.url("/stream"))
            .header("cookie", format!("__Host-kanmon={sid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.version(), expected);
        let mut body = Vec::new();
        let mut first_at = None;
        while let Some(chunk) = r.chunk().await.unwrap() {
            first_at.get_or_insert_with(|| started.elapsed());
            body.extend_from_slice(&chunk);
        }
        let done_at = started.elapsed();
        let first_at = first_at.expect("a body");
        assert_eq!(body, b"chunk0\nchunk1\nchunk2\n", "{expected:?}");
        assert!(
            first_at < Duration::from_millis(250),
            "{expected:?}: first chunk after {first_at:?}"
        );
        assert!(
            done_at >= first_at + Duration::from_millis(450),
            "{expected:?}: first chunk at {first_at:?}, whole body at {done_at:?}"
        );
    }
}

/// G-4: an 8 MiB upload reaches the upstream intact, over HTTP/2 and HTTP/1.1.
#[tokio::test]
async fn g4_large_upload_reaches_the_upstream_intact() {
    let app = spawn_app().await;
    let sid = carol_session(&app).await;
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for (expected, c) in [
        (Version::HTTP_2, app.new_browser()),
        (Version::HTTP_11, h1_client(&app)),
    ] {
        let r = c
            .post(app.url("/upload"))
            .header("cookie", format!("__Host-kanmon={sid}"))
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{expected:?}");
        assert_eq!(r.version(), expected);
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(echo["body_len"], body.len(), "{expected:?}");
        let seen = app.upstream.last();
        assert_eq!(seen.method, "POST");
        assert!(seen.body == body, "{expected:?}: the bytes arrived unchanged");
    }
}

// ---- G-5, REQ-69: upstream down or slow -------------------------------------------------

fn assert_generic(page: &str, app: &TestApp, request_id: &str) {
    let page = page.replace(request_id, "");
    let port = app.upstream.addr.port().to_string();
    assert!(!page.contains(&port), "the upstream's port in {page}");
    assert!(!page.contains("127.0.0.1"), "the upstream's address in {page}");
    let lower = page.to_ascii_lowercase();
    for word in [
        "refused",
        "error trying to connect",
        "connect error",
        "os error",
        "hyper",
        "tcp",
        "elapsed",
        "errno",
    ] {
        assert!(!lower.contains(word), "{word:?} in {page}");
    }
}

/// G-5, REQ-69: with the upstream down, a logged-in user gets a 502 page in their
/// language that names neither the upstream nor the OS error; the gateway's own screens
/// keep working.
#[tokio::test]
async fn g5_req69_upstream_down_gives_a_generic_502_page_in_the_users_language() {
    let app = spawn_with(Setup {
        upstream: false,
        ..Setup::default()
    })
    .await;
    let r = app.get("/_kanmon/login").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the login screen works without the upstream"
    );
    let r = app.login("carol", CAROL_PASSWORD).await;
    assert_eq!(location(&r), "/");

    let r = app.get("/dashboard").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(r.headers()["cache-control"], "no-store", "the gateway's own page");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("ダッシュボードに接続できません"),
        "Japanese by default: {page}"
    );
    assert_generic(&page, &app, &rid);

    let r = app
        .client
        .get(app.url("/dashboard"))
        .header("accept", "text/html")
        .header("accept-language", "en-GB,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("The dashboard cannot be reached"),
        "English when asked: {page}"
    );
    assert_generic(&page, &app, &rid);

    let r = app.get("/_kanmon/logout").await;
    assert_eq!(r.status(), StatusCode::OK, "the gateway keeps serving its screens");
}

/// G-5, REQ-69: an upstream slower than `response_timeout` (2 s in the tests) gets a
/// 504 page after the timeout, not after the upstream's 5 s; meanwhile the gateway
/// answers its own screens at once.
#[tokio::test]
async fn g5_req69_slow_upstream_gives_504_and_the_gateway_keeps_serving() {
    let app = spawn_app().await;
    carol_session(&app).await;
    let started = Instant::now();
    let slow = async {
        app.client
            .get(app.url("/slow"))
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap()
    };
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let r = app.get_with(&app.new_browser(), "/_kanmon/login").await;
        (r.status(), t.elapsed())
    };
    let (r, (login_status, login_took)) = tokio::join!(slow, meanwhile);
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(4500),
        "answered after {took:?}"
    );
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let page = r.text().await.unwrap();
    assert!(page.contains("ダッシュボードの応答がありません"), "{page}");
    assert_generic(&page, &app, &rid);
    assert_eq!(login_status, StatusCode::OK);
    assert!(login_took < Duration::from_secs(1), "login screen took {login_took:?}");
    assert_eq!(app.upstream.last().uri, "/slow");
}

// ---- G-3: what passes unchanged ---------------------------------------------------------

/// G-3: method, path, query, body and end-to-end headers pass through unchanged.
#[tokio::test]
async fn g3_method_path_query_and_body_pass_through_unchanged() {
    let app = spawn_app().await;
    carol_session(&app).await;
    let c = &app.client;
    let r = c
        .put(app.url("/api/v1/items?x=1&y=%20&z=a%2Fb&w=/../q"))
        .header("content-type", "application/json")
        .header("x-custom", "kept")
        .header("authorization", "Bearer app-token")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = app.upstream.last();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.uri, "/api/v1/items?x=1&y=%20&z=a%2Fb&w=/../q");
    assert_eq!(seen.body, br#"{"name":"x"}"#);
    assert_eq!(seen.header_all("content-type"), ["application/json"]);
    assert_eq!(seen.header_all("x-custom"), ["kept"]);
    assert_eq!(seen.header_all("authorization"), ["Bearer app-token"]);

    for method in ["PATCH", "DELETE", "OPTIONS", "HEAD", "GET"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c
            .request(m, app.url("/caf%C3%A9/a%20b?q=%E3%81%82"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{method}");
        let seen = app.upstream.last();
        assert_eq!(seen.method, method);
        assert_eq!(seen.uri, "/caf%C3%A9/a%20b?q=%E3%81%82", "{method}");
    }
}
