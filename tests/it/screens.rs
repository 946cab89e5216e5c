//! The gateway's own screens as a user sees them: the labels of the BEHAVIOUR table in
//! both languages (M-5, M-6, M-9), the language switch, accessible forms, the QR and
//! its key (M-5, REQ-18, REQ-19), error, logout (G-7), health (G-10) and redirect
//! screens (G-2, G-6), and the demo upstream behind it all (G-3).

use reqwest::{Response, StatusCode};

use crate::helpers::*;

const EN: &str = "en-US,en;q=0.9";

/// The labels of one language, written out from the BEHAVIOUR table (not taken from
/// `i18n.rs`, so a typo there fails here).
struct Labels {
    lang: &'static str,
    login_screen: &'static str,
    user_id: &'static str,
    password: &'static str,
    login_button: &'static str,
    enroll_screen: &'static str,
    manual_key_hint: &'static str,
    code_field: &'static str,
    submit: &'static str,
    code_screen: &'static str,
}

const JA_LABELS: Labels = Labels {
    lang: "ja",
    login_screen: "ログイン画面",
    user_id: "ユーザーID",
    password: "パスワード",
    login_button: "ログイン",
    enroll_screen: "QRコードをスキャン",
    manual_key_hint: "QRコードをスキャンできない場合はコードを手入力してください。",
    code_field: "Authenticator App コード",
    submit: "送信",
    code_screen: "認証コードを入力",
};

const EN_LABELS: Labels = Labels {
    lang: "en",
    login_screen: "Log in",
    user_id: "User ID",
    password: "Password",
    login_button: "Log in",
    enroll_screen: "Scan QR code",
    manual_key_hint: "If you cannot scan the QR code, enter the code manually.",
    code_field: "Authenticator App code",
    submit: "Submit",
    code_screen: "Enter authentication code",
};

/// Login, enrollment (M-5, M-6) and code (M-9) screens carry the table's labels.
async fn assert_labels(accept_language: Option<&str>, l: &Labels) {
    let app = spawn_app().await;
    let c = &app.client;

    let page = page_with(&app, c, "/_kanmon/login", accept_language).await;
    assert_eq!(html_lang(&page), l.lang, "{page}");
    assert!(
        page.contains(&format!("<title>{} | AVM EX</title>", l.login_screen)),
        "{page}"
    );
    assert!(
        page.contains(&format!("<label for=\"user\">{}</label>", l.user_id)),
        "{page}"
    );
    assert!(
        page.contains(&format!("<label for=\"password\">{}</label>", l.password)),
        "{page}"
    );
    assert!(page.contains(&format!(">{}</button>", l.login_button)), "{page}");

    // Log in in Japanese (no header), then look at the next screen in the tested language.
    assert_eq!(location(&app.login("alice", ALICE_PASSWORD).await), "/_kanmon/enroll");
    let page = page_with(&app, c, "/_kanmon/enroll", accept_language).await;
    assert_eq!(html_lang(&page), l.lang, "{page}");
    assert!(page.contains(&format!("<h1>{}</h1>", l.enroll_screen)), "{page}");
    assert!(page.contains(l.manual_key_hint), "{page}");
    assert!(
        page.contains(&format!("<label for=\"code\">{}</label>", l.code_field)),
        "{page}"
    );
    assert!(page.contains(&format!(">{}</button>", l.submit)), "{page}");
    let key = key_of(&page);
    let r = app
        .post(
            "/_kanmon/enroll",
            &[("csrf", &csrf_of(&page)), ("code", &totp(&key, app.now()))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let other = app.new_browser();
    app.clock.advance(30);
    assert_eq!(
        location(&app.login_with(&other, "alice", ALICE_PASSWORD).await),
        "/_kanmon/code"
    );
    let page = page_with(&app, &other, "/_kanmon/code", accept_language).await;
    assert_eq!(html_lang(&page), l.lang, "{page}");
    assert!(page.contains(&format!("<h1>{}</h1>", l.code_screen)), "{page}");
    assert!(
        page.contains(&format!("<label for=\"code\">{}</label>", l.code_field)),
        "{page}"
    );
    assert!(page.contains(&format!(">{}</button>", l.submit)), "{page}");
}

/// M-5, M-6, M-9: the screens speak Japanese by default (`default_lang: ja`), with the
/// manual's labels.
#[tokio::test]
async fn m5_m6_m9_labels_are_japanese_by_default() {
    assert_labels(None, &JA_LABELS).await;
}

/// M-5, M-6, M-9: a browser asking for English gets the English labels.
#[tokio::test]
async fn m5_m6_m9_labels_are_english_for_an_english_browser() {
    assert_labels(Some(EN), &EN_LABELS).await;
}

/// Follows a screen's language switch both ways: the choice is remembered in a cookie
/// and beats the browser's Accept-Language until switched back.
async fn assert_language_switch(app: &TestApp, c: &reqwest::Client, path: &str, ja_marker: &str, en_marker: &str) {
    let page = page_with(app, c, path, Some("ja")).await;
    assert_eq!(html_lang(&page), "ja", "{path}: {page}");
    assert!(page.contains(ja_marker) && !page.contains(en_marker), "{path}: {page}");
    let to_en = switch_link(&page);
    assert_eq!(to_en, format!("{path}?lang=en"), "{path}");

    let r = get_lang(app, c, &to_en, Some("ja")).await;
    assert!(
        set_cookies(&r).iter().any(|c| c.starts_with("__Host-kanmon-lang=en;")),
        "{path}: the choice is remembered: {:?}",
        set_cookies(&r)
    );
    let page = r.text().await.unwrap();
    assert_eq!(html_lang(&page), "en", "{path}: {page}");
    assert!(page.contains(en_marker) && !page.contains(ja_marker), "{path}: {page}");

    // Later pages, without the query, stay English although the browser prefers ja.
    let page = page_with(app, c, path, Some("ja")).await;
    assert_eq!(html_lang(&page), "en", "{path}: the cookie beats Accept-Language");
    assert!(page.contains(en_marker), "{path}: {page}");
    let to_ja = switch_link(&page);
    assert_eq!(to_ja, format!("{path}?lang=ja"), "{path}");

    let r = get_lang(app, c, &to_ja, Some(EN)).await;
    assert!(
        set_cookies(&r).iter().any(|c| c.starts_with("__Host-kanmon-lang=ja;")),
        "{path}: {:?}",
        set_cookies(&r)
    );
    assert_eq!(html_lang(&r.text().await.unwrap()), "ja", "{path}");
    let page = page_with(app, c, path, Some(EN)).await;
    assert_eq!(html_lang(&page), "ja", "{path}: switched back for good");
    assert!(page.contains(ja_marker), "{path}: {page}");
}

/// The language switch on the login screen and on an error page.
#[tokio::test]
async fn language_switch_on_login_and_error_screens() {
    let app = spawn_app().await;
    assert_language_switch(&app, &app.new_browser(), "/_kanmon/login", "ユーザーID", "User ID").await;
    assert_language_switch(
        &app,
        &app.new_browser(),
        "/_kanmon/nope",
        "ページが見つかりません",
        "Page not found",
    )
    .await;
}

/// The language switch on the enrollment (M-5) and code (M-9) screens, mid-login.
#[tokio::test]
async fn m5_m9_language_switch_on_enroll_and_code_screens() {
    let app = spawn_app().await;
    let c = app.new_browser();
    app.login_with(&c, "alice", ALICE_PASSWORD).await;
    assert_language_switch(&app, &c, "/_kanmon/enroll", "QRコードをスキャン", "Scan QR code").await;

    let key = app.enroll("bob", BOB_PASSWORD).await;
    let c = app.new_browser();
    app.clock.advance(30);
    assert_eq!(
        location(&app.login_with(&c, "bob", BOB_PASSWORD).await),
        "/_kanmon/code"
    );
    assert_language_switch(
        &app,
        &c,
        "/_kanmon/code",
        "認証コードを入力",
        "Enter authentication code",
    )
    .await;
    // Switching languages did not disturb the pending login.
    let r = app.submit_code_with(&c, "/_kanmon/code", &totp(&key, app.now())).await;
    assert_eq!(location(&r), "/");
}

/// G-7: the language switch on the logout screen, logged in and logged out.
#[tokio::test]
async fn g7_language_switch_on_logout_screens() {
    let app = spawn_app().await;
    let c = app.new_browser();
    assert_language_switch(
        &app,
        &c,
        "/_kanmon/logout",
        "ログアウトしました。",
        "You have been logged out.",
    )
    .await;
    let c = app.new_browser();
    assert_eq!(location(&app.login_with(&c, "carol", CAROL_PASSWORD).await), "/");
    assert_language_switch(
        &app,
        &c,
        "/_kanmon/logout",
        "carol としてログインしています",
        "You are logged in as carol.",
    )
    .await;
}

/// G-2: switching the language on the login screen keeps where the user was going.
#[tokio::test]
async fn g2_language_switch_on_login_keeps_rd() {
    let app = spawn_app().await;
    let r = app.get("/reports?month=2024-05").await;
    let login_url = location(&r);
    assert_eq!(login_url, "/_kanmon/login?rd=%2Freports%3Fmonth%3D2024-05");
    let page = app.get(&login_url).await.text().await.unwrap();
    let to_en = switch_link(&page);
    assert_eq!(to_en, format!("{login_url}&lang=en"));
    let page = app.get(&to_en).await.text().await.unwrap();
    assert_eq!(html_lang(&page), "en");
    assert_eq!(switch_link(&page), format!("{login_url}&lang=ja"));
    let r = app
        .post(
            "/_kanmon/login",
            &[
                ("csrf", &csrf_of(&page)),
                ("user", "carol"),
                ("password", CAROL_PASSWORD),
            ],
        )
        .await;
    assert_eq!(location(&r), "/reports?month=2024-05");
}

/// Every visible input has a `<label for>` that matches its id; the fields carry the
/// autocomplete tokens password managers and phones use (M-6, M-9).
#[tokio::test]
async fn m6_m9_forms_are_labelled_and_autocomplete_friendly() {
    let app = spawn_app().await;
    let login = app.get("/_kanmon/login").await.text().await.unwrap();
    let user = input_by_id(&login, "user");
    assert_eq!(attr(user, "autocomplete").as_deref(), Some("username"), "{user}");
    let password = input_by_id(&login, "password");
    assert_eq!(attr(password, "autocomplete").as_deref(), Some("current-password"));
    assert_eq!(attr(password, "type").as_deref(), Some("password"));

    app.login("alice", ALICE_PASSWORD).await;
    let enroll = app.get("/_kanmon/enroll").await.text().await.unwrap();
    let key = key_of(&enroll);
    let r = app
        .post(
            "/_kanmon/enroll",
            &[("csrf", &csrf_of(&enroll)), ("code", &totp(&key, app.now()))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let logout = app.get("/_kanmon/logout").await.text().await.unwrap();

    let c = app.new_browser();
    app.clock.advance(30);
    app.login_with(&c, "alice", ALICE_PASSWORD).await;
    let code = app.get_with(&c, "/_kanmon/code").await.text().await.unwrap();
    // A wrong code: the page with its error is labelled too.
    let wrong = format!("{:06}", (totp(&key, app.now()).parse::<u32>().unwrap() + 1) % 1_000_000);
    let code_error = app
        .post_with(&c, "/_kanmon/code", &[("csrf", &csrf_of(&code)), ("code", &wrong)])
        .await
        .text()
        .await
        .unwrap();

    for (screen, page) in [("enroll", &enroll), ("code", &code), ("code error", &code_error)] {
        let field = input_by_id(page, "code");
        assert_eq!(
            attr(field, "autocomplete").as_deref(),
            Some("one-time-code"),
            "{screen}"
        );
        assert_eq!(attr(field, "inputmode").as_deref(), Some("numeric"), "{screen}");
    }
    for (screen, page) in [
        ("login", &login),
        ("enroll", &enroll),
        ("code", &code),
        ("code error", &code_error),
        ("logout", &logout),
    ] {
        let inputs: Vec<&str> = tags(page, "input")
            .into_iter()
            .filter(|t| attr(t, "type").as_deref() != Some("hidden"))
            .collect();
        assert!(!inputs.is_empty() || screen == "logout", "{screen}");
        for input in inputs {
            let id = attr(input, "id").unwrap_or_else(|| panic!("{screen}: an input without id: {input}"));
            assert!(
                page.contains(&format!("for=\"{id}\"")),
                "{screen}: no <label for=\"{id}\">: {page}"
            );
            assert_eq!(
                tags(page, "label")
                    .iter()
                    .filter(|l| attr(l, "for").as_deref() == Some(&id))
                    .count(),
                1,
                "{screen}: one label for {id}"
            );
        }
    }
    assert!(
        logout.contains("type=\"checkbox\""),
        "the logout screen has its checkbox"
    );
}

/// M-5, REQ-18, REQ-19: an inline SVG QR code (no XML declaration inside HTML) and the
/// key as 32 base32 characters in eight groups of four.
#[tokio::test]
async fn m5_qr_is_inline_svg_and_key_is_grouped() {
    let app = spawn_app().await;
    app.login("alice", ALICE_PASSWORD).await;
    let page = app.get("/_kanmon/enroll").await.text().await.unwrap();
    let svg_at = page.find("<svg").expect("an inline SVG");
    assert!(page[svg_at..].contains("</svg>"));
    assert!(!page.contains("<?xml"), "no XML declaration in an HTML page");
    let qr = &page[page.find("class=\"qr\"").unwrap()..svg_at];
    assert!(qr.contains("role=\"img\""), "the QR has a role for screen readers");

    let start = page.find("id=\"manual-key\"").unwrap();
    let section = &page[start..start + page[start..].find("</p>").unwrap()];
    let groups: Vec<&str> = section
        .split("<span>")
        .skip(1)
        .map(|s| s.split("</span>").next().unwrap())
        .collect();
    assert_eq!(groups.len(), 8, "{section}");
    for g in &groups {
        assert_eq!(g.len(), 4, "{section}");
        assert!(
            g.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
            "{g}"
        );
    }
    let key = groups.concat();
    assert_eq!(key.len(), 32);
    assert_eq!(
        data_encoding::BASE32_NOPAD.decode(key.as_bytes()).unwrap().len(),
        20,
        "160 bits"
    );
    assert!(!page.contains("otpauth://"), "the key URI is in the QR only");
}

/// M-5, REQ-19: the key URI an authenticator app reads from the QR code.
#[test]
fn m5_key_uri_format() {
    let secret = kanmon::auth::totp::TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
    assert_eq!(
        secret.key_uri("AVM EX", "alice"),
        "otpauth://totp/AVM%20EX:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=AVM%20EX&algorithm=SHA1&digits=6&period=30"
    );
}

/// G-6: an unknown gateway path is a localized 404 page whose request id matches the
/// `x-request-id` header (so a user can quote it to an administrator).
#[tokio::test]
async fn g6_unknown_gateway_path_is_a_localized_404_with_request_id() {
    let app = spawn_app().await;
    for (al, text, lang) in [
        (None, "ページが見つかりません", "ja"),
        (Some(EN), "Page not found", "en"),
    ] {
        let r = get_lang(&app, &app.client, "/_kanmon/nope", al).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id.len() >= 8, "{id}");
        let page = r.text().await.unwrap();
        assert_eq!(html_lang(&page), lang);
        assert!(page.contains(text), "{page}");
        assert!(page.contains(&format!("<code>{id}</code>")), "{id} in {page}");
    }
    assert!(app.upstream.seen().is_empty(), "G-6: never forwarded");
}

/// M-1: a wrong password shows the login screen again with an announced error tied to
/// the field, and keeps the typed user ID.
#[tokio::test]
async fn m1_wrong_password_shows_the_form_again_with_an_accessible_error() {
    let app = spawn_app().await;
    for (al, text) in [
        (None, "ユーザーIDまたはパスワードが正しくありません。"),
        (Some(EN), "The user ID or password is incorrect."),
    ] {
        let c = app.new_browser();
        let page = page_with(&app, &c, "/_kanmon/login", al).await;
        let mut req = c.post(app.url("/_kanmon/login")).header("origin", &app.base).form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("user", "alice"),
            ("password", "wrong-password"),
        ]);
        if let Some(al) = al {
            req = req.header("accept-language", al);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let page = r.text().await.unwrap();
        let user = input_by_id(&page, "user");
        assert_eq!(attr(user, "value").as_deref(), Some("alice"), "{user}");
        let error_id = attr(user, "aria-describedby").expect("the field points at the error");
        let error = element_by_id(&page, &error_id);
        assert_eq!(attr(error, "role").as_deref(), Some("alert"), "{error}");
        let after = &page[page.find(error).unwrap() + error.len()..];
        assert!(after[..after.find("</").unwrap()].contains(text), "{page}");
        assert!(page.contains("name=\"csrf\""), "the form can be sent again");
    }
}

/// G-7: the logout screen asks for a click (a POST form) when logged in, and says it is
/// done, with a way back to the login, when not; the POST ends the session.
#[tokio::test]
async fn g7_logout_screen_with_and_without_session() {
    let app = spawn_app().await;
    let page = app.get("/_kanmon/logout").await.text().await.unwrap();
    assert!(page.contains("ログアウトしました。"), "{page}");
    assert!(page.contains("href=\"/_kanmon/login\""), "{page}");
    assert!(!page.contains("<form"), "{page}");

    assert_eq!(location(&app.login("carol", CAROL_PASSWORD).await), "/");
    let r = app.get("/_kanmon/logout").await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    let form = tags(&page, "form");
    assert_eq!(form.len(), 1, "{page}");
    assert_eq!(attr(form[0], "method").as_deref(), Some("post"));
    assert_eq!(attr(form[0], "action").as_deref(), Some("/_kanmon/logout"));
    assert!(page.contains("<button type=\"submit\">ログアウト</button>"), "{page}");

    let r = app.post("/_kanmon/logout", &[("csrf", &csrf_of(&page))]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&app.get("/").await), "/_kanmon/login");
}

/// G-10: the health endpoint answers with a small JSON document.
#[tokio::test]
async fn g10_healthz_is_ok_json() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/_kanmon/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
}

/// G-2: a logged-in user who opens the login screen goes on to the site (to a valid
/// `rd`, never elsewhere).
#[tokio::test]
async fn g2_logged_in_user_is_sent_on_from_the_login_screen() {
    let app = spawn_app().await;
    assert_eq!(location(&app.login("carol", CAROL_PASSWORD).await), "/");
    for (path, to) in [
        ("/_kanmon/login", "/"),
        ("/_kanmon/login?rd=%2Fdash%3Fa%3D1", "/dash?a=1"),
        ("/_kanmon/login?rd=%2F%2Fevil.example%2F", "/"),
        ("/_kanmon/login?rd=https%3A%2F%2Fevil.example%2F", "/"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&r), to, "{path}");
    }
}

/// M-9: the code and enrollment screens without a pending login send the user to the
/// login screen with a localized "expired" notice.
#[tokio::test]
async fn m9_code_screen_without_pending_login_redirects_with_notice() {
    let app = spawn_app().await;
    for screen in ["/_kanmon/code", "/_kanmon/enroll"] {
        let r = app.get(screen).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{screen}");
        assert_eq!(location(&r), "/_kanmon/login?notice=expired", "{screen}");
    }
    for (al, text) in [
        (None, "時間切れです。もう一度ログインしてください。"),
        (Some(EN), "Your login took too long. Please log in again."),
    ] {
        let page = page_with(&app, &app.client, "/_kanmon/login?notice=expired", al).await;
        let notice = element_containing(&page, text);
        assert_eq!(attr(notice, "role").as_deref(), Some("status"), "{page}");
    }
    let page = app.get("/_kanmon/login").await.text().await.unwrap();
    assert!(!page.contains("時間切れ"), "no notice without the query");
}

/// The stylesheet of the screens is served as CSS (the CSP allows only `'self'`).
#[tokio::test]
async fn static_stylesheet_is_served_as_css() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/_kanmon/static/kanmon.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"].to_str().unwrap().starts_with("text/css"),
        "{:?}",
        r.headers()
    );
    let css = r.text().await.unwrap();
    assert!(css.contains("body") && css.contains('{'), "{css}");
    assert!(app.upstream.seen().is_empty());
}

/// G-3, M-2: with `upstream: { url: demo }` a password-only user reaches the built-in
/// demo dashboard, which shows the identity the gateway sent.
#[tokio::test]
async fn g3_demo_upstream_shows_the_logged_in_user() {
    let demo = DemoGateway::start().await;
    let c = &demo.client;
    let r = c.get(demo.url("/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(location(&r), "/_kanmon/login");
    let page = c
        .get(demo.url("/_kanmon/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(demo.url("/_kanmon/login"))
        .header("origin", &demo.base)
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("user", "carol"),
            ("password", CAROL_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/");
    let r = c.get(demo.url("/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("<td id=\"remote-user\">carol</td>"), "{page}");
    assert!(
        page.contains("<td id=\"remote-email\">carol@example.com</td>"),
        "{page}"
    );
    assert!(page.contains("<td id=\"remote-groups\">user</td>"), "{page}");
}

// ---- helpers of this file --------------------------------------------------------

/// A gateway in front of the built-in demo upstream.
struct DemoGateway {
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    _running: kanmon::Running,
}

impl DemoGateway {
    async fn start() -> DemoGateway {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_pem = ck.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let hash = kanmon::auth::password::hash(CAROL_PASSWORD, &kanmon::auth::SystemRandom);
        let yaml = format!(
            r#"listen: 127.0.0.1:0
tls: {{ cert: cert.pem, key: key.pem }}
upstream: {{ url: demo }}
data_dir: data
issuer: AVM EX
users:
  - {{ id: carol, email: carol@example.com, password_hash: "{hash}", role: user, two_factor: false }}
"#
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = kanmon::Config::load(&path).unwrap();
        let options = kanmon::Options {
            clock: kanmon::clock::ManualClock::new(START),
            hash_workers: 1,
            ..kanmon::Options::default()
        };
        let running = kanmon::build(config, options).await.unwrap();
        DemoGateway {
            base: format!("https://localhost:{}", running.addr.port()),
            client: client(&cert_pem),
            _dir: dir,
            _running: running,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A navigation with an optional `Accept-Language`.
async fn get_lang(app: &TestApp, c: &reqwest::Client, path: &str, accept_language: Option<&str>) -> Response {
    let mut req = c
        .get(app.url(path))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate");
    if let Some(al) = accept_language {
        req = req.header("accept-language", al);
    }
    req.send().await.unwrap()
}

async fn page_with(app: &TestApp, c: &reqwest::Client, path: &str, accept_language: Option<&str>) -> String {
    let r = get_lang(app, c, path, accept_language).await;
    assert!(
        r.status() == StatusCode::OK || r.status() == StatusCode::NOT_FOUND,
        "{path}: {}",
        r.status()
    );
    r.text().await.unwrap()
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `lang` attribute of the `<html>` element.
fn html_lang(html: &str) -> String {
    let tag = tags(html, "html").into_iter().next().expect("an <html> element");
    attr(tag, "lang").expect("<html lang>")
}

/// The target of the language switch in the page header (HTML-unescaped).
fn switch_link(html: &str) -> String {
    let links: Vec<String> = tags(html, "a")
        .into_iter()
        .filter_map(|t| attr(t, "href"))
        .filter(|h| h.contains("lang="))
        .collect();
    assert_eq!(links.len(), 1, "one language switch: {html}");
    links[0].clone()
}

/// The opening tags `<name …>` of a page, in order.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let end = after.find('>').expect("a closed tag") + i + open.len() + 1;
        if after.starts_with([' ', '>', '\n', '/']) {
            out.push(&rest[i..end]);
        }
        rest = &rest[end..];
    }
    out
}

/// An attribute of a tag, HTML-unescaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(unescape(value))
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn input_by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let found: Vec<&str> = tags(html, "input")
        .into_iter()
        .filter(|t| attr(t, "id").as_deref() == Some(id))
        .collect();
    assert_eq!(found.len(), 1, "one input with id {id}: {html}");
    found[0]
}

/// The opening tag of the element with this id.
fn element_by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(" id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id}: {html}"));
    let start = html[..at].rfind('<').unwrap();
    &html[start..at + html[at..].find('>').unwrap() + 1]
}

/// The opening tag of the innermost element whose text holds `text`.
fn element_containing<'a>(html: &'a str, text: &str) -> &'a str {
    let at = html.find(text).unwrap_or_else(|| panic!("no {text:?} in {html}"));
    let start = html[..at].rfind('<').unwrap();
    &html[start..start + html[start..].find('>').unwrap() + 1]
}
