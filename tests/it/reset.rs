//! Two-step reset by e-mail and the security e-mails (M-3, M-10 … M-15, REQ-36 … REQ-51,
//! REQ-56), against a real SMTP server on loopback.

use reqwest::StatusCode;

use crate::helpers::*;
use crate::smtp::{Mode, SmtpSink};

const RESET: &str = "Two-Factor Authentication Reset";

async fn with_sink(mode: Mode, security: &str, extra: &str, more_yaml: &str) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start(mode);
    let app = spawn_with(Setup {
        smtp_yaml: Some(sink.yaml(security, extra)),
        extra_yaml: more_yaml.to_owned(),
        ..Setup::default()
    })
    .await;
    (app, sink)
}

/// Logs alice in up to the code screen in browser `b` and presses the reset button.
async fn request_reset(app: &TestApp, b: &reqwest::Client) -> reqwest::Response {
    app.clock.advance(30);
    let r = app.login_with(b, "alice", ALICE_PASSWORD).await;
    assert_eq!(location(&r), "/_kanmon/code");
    let page = app.get_with(b, "/_kanmon/code").await.text().await.unwrap();
    assert!(
        page.contains("二段階認証をリセット"),
        "M-12: the reset button is on the code screen"
    );
    app.post_with(b, "/_kanmon/reset", &[("csrf", &csrf_of(&page))]).await
}

/// The path and query of a link, for a client of this gateway.
fn path_of(link: &str) -> String {
    let after = link.split_once("://").unwrap().1;
    after[after.find('/').unwrap()..].to_owned()
}

async fn code_screen_shows_code_prompt(app: &TestApp, user: &str, password: &str) -> String {
    let c = app.new_browser();
    location(&app.login_with(&c, user, password).await)
}

/// M-12 … M-15, REQ-41, REQ-43, REQ-46, REQ-47, REQ-49: the whole flow.
#[tokio::test]
async fn m12_m15_reset_by_email_end_to_end() {
    let (app, sink) = with_sink(Mode::Plain, "none", "", "").await;
    let a = app.new_browser();
    let old_key = app.enroll_with(&a, "alice", ALICE_PASSWORD).await;
    sink.wait_subject("新しい認証アプリケーションが登録されました").await; // REQ-48

    let b = app.new_browser();
    let r = request_reset(&app, &b).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("a***@example.com"),
        "the screen says where the mail went, masked"
    );

    let mail = sink.wait_subject(RESET).await;
    assert_eq!(mail.rcpt_tos, ["alice@example.com"]);
    let link = mail.link();
    assert!(
        link.starts_with(&format!("https://localhost:{}/_kanmon/reset/confirm?t=", app.port)),
        "M-14: {link}"
    );
    assert!(mail.text.contains("127.0.0.1"), "REQ-46: the requesting address");
    assert!(
        mail.text.contains("パスワードを変更"),
        "REQ-46: advice if it was not them"
    );
    assert!(mail.text.contains("30分"), "REQ-46: how long the link is valid");
    assert!(
        !mail.text.contains(&old_key) && !mail.html.contains(&old_key),
        "no secret but the link"
    );
    assert_eq!(
        mail.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("to"))
            .count(),
        1,
        "REQ-57"
    );
    assert!(
        !mail
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("bcc") || n.eq_ignore_ascii_case("cc"))
    );

    // M-13, REQ-41: opening the link (as mail scanners do) changes nothing.
    for _ in 0..3 {
        assert_eq!(
            b.head(app.url(&path_of(&link))).send().await.unwrap().status(),
            StatusCode::OK
        );
        let r = app.get_with(&b, &path_of(&link)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "REQ-44");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("アカウント alice から認証アプリケーションの関連付けを解除しますか"),
            "{text}"
        );
    }
    assert_eq!(
        code_screen_shows_code_prompt(&app, "alice", ALICE_PASSWORD).await,
        "/_kanmon/code"
    );

    // The POST from the confirmation page removes the association.
    let r = app
        .post_with(&b, "/_kanmon/reset/confirm", &[("t", link.split("t=").nth(1).unwrap())])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        "/_kanmon/login?notice=reset_done",
        "REQ-44: a token-free address"
    );
    let page = app.get_with(&b, &location(&r)).await.text().await.unwrap();
    assert!(
        page.contains("二段階認証がリセットされました"),
        "M-15: the login screen says so"
    );
    assert_eq!(
        app.api_get_with(&a, "/x").await.status(),
        StatusCode::UNAUTHORIZED,
        "REQ-47: sessions ended"
    );
    sink.wait_subject("二段階認証がリセットされました").await;

    // REQ-43, REQ-49: the next login enrolls a new key; the old key's codes are refused.
    app.clock.advance(30);
    let r = app.login_with(&b, "alice", ALICE_PASSWORD).await;
    assert_eq!(location(&r), "/_kanmon/enroll");
    let page = app.get_with(&b, "/_kanmon/enroll").await.text().await.unwrap();
    let new_key = key_of(&page);
    assert_ne!(new_key, old_key);
    let r = app
        .post_with(
            &b,
            "/_kanmon/enroll",
            &[("csrf", &csrf_of(&page)), ("code", &totp(&old_key, app.now()))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old key's code is refused");
    let r = app
        .post_with(
            &b,
            "/_kanmon/enroll",
            &[("csrf", &csrf_of(&page)), ("code", &totp(&new_key, app.now()))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// REQ-42, REQ-50: the link works only in the browser that asked; after the reset, only
/// the browser that confirmed it enrolls.
#[tokio::test]
async fn req42_req50_the_link_belongs_to_the_asking_browser() {
    let (app, sink) = with_sink(Mode::Plain, "none", "", "").await;
    app.enroll("alice", ALICE_PASSWORD).await;
    let b = app.new_browser();
    request_reset(&app, &b).await;
    let link = sink.wait_subject(RESET).await.link();
    let token = link.split("t=").nth(1).unwrap().to_owned();

    let elsewhere = app.new_browser();
    let r = app.get_with(&elsewhere, &path_of(&link)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text().await.unwrap().contains("アドレス欄"),
        "the page says how to open it in the right browser"
    );
    let r = app
        .post_with(&elsewhere, "/_kanmon/reset/confirm", &[("t", &token)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        code_screen_shows_code_prompt(&app, "alice", ALICE_PASSWORD).await,
        "/_kanmon/code",
        "nothing removed"
    );

    let r = app.post_with(&b, "/_kanmon/reset/confirm", &[("t", &token)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = app.login_with(&elsewhere, "alice", ALICE_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "REQ-50: no QR for another browser");
    assert!(r.text().await.unwrap().contains("リセットを確定したWebブラウザー"));
    assert_eq!(
        location(&app.login_with(&b, "alice", ALICE_PASSWORD).await),
        "/_kanmon/enroll"
    );
}

/// REQ-39, REQ-40: single use, expiry, newer voids older, a right code voids the link.
#[tokio::test]
async fn req39_req40_links_are_single_use_short_lived_and_voidable() {
    let (app, sink) = with_sink(Mode::Plain, "none", "", "").await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    let b = app.new_browser();

    // Newer voids older.
    request_reset(&app, &b).await;
    request_reset(&app, &b).await;
    let mails: Vec<_> = sink
        .wait_for(3)
        .await
        .into_iter()
        .filter(|m| m.subject == RESET)
        .collect();
    assert_eq!(mails.len(), 2);
    let (first, second) = (mails[0].link(), mails[1].link());
    assert_eq!(app.get_with(&b, &path_of(&first)).await.status(), StatusCode::GONE);
    assert_eq!(app.get_with(&b, &path_of(&second)).await.status(), StatusCode::OK);

    // A right code voids the link (M-13 still lets the user in).
    let r = app.submit_code_with(&b, "/_kanmon/code", &totp(&key, app.now())).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get_with(&b, &path_of(&second)).await.status(), StatusCode::GONE);

    // Expiry, then single use.
    let c = app.new_browser();
    request_reset(&app, &c).await;
    let third = sink
        .wait_for(4)
        .await
        .into_iter()
        .rfind(|m| m.subject == RESET)
        .unwrap()
        .link();
    let token = third.split("t=").nth(1).unwrap().to_owned();
    // Past the link's 30 minutes (and past the hourly mail limit, for the next step).
    app.clock.advance(61 * 60);
    assert_eq!(app.get_with(&c, &path_of(&third)).await.status(), StatusCode::GONE);
    assert_eq!(
        app.post_with(&c, "/_kanmon/reset/confirm", &[("t", &token)])
            .await
            .status(),
        StatusCode::GONE
    );

    let d = app.new_browser();
    request_reset(&app, &d).await;
    let fourth = sink
        .wait_for(5)
        .await
        .into_iter()
        .rfind(|m| m.subject == RESET)
        .unwrap()
        .link();
    let token = fourth.split("t=").nth(1).unwrap().to_owned();
    assert_eq!(
        app.post_with(&d, "/_kanmon/reset/confirm", &[("t", &token)])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.post_with(&d, "/_kanmon/reset/confirm", &[("t", &token)])
            .await
            .status(),
        StatusCode::GONE
    );
}

/// REQ-45: at most three reset e-mails per account an hour; then a neutral message.
#[tokio::test]
async fn req45_reset_mails_are_limited() {
    let (app, sink) = with_sink(
        Mode::Plain,
        "none",
        "",
        "notify: { enrollment: false, wrong_code: false }\n",
    )
    .await;
    app.enroll("alice", ALICE_PASSWORD).await;
    let b = app.new_browser();
    for i in 0..4 {
        let r = request_reset(&app, &b).await;
        let expected = if i < 3 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(r.status(), expected, "request {i}");
    }
    assert_eq!(sink.wait_for(3).await.len(), 3);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 3, "no fourth mail");
    app.clock.advance(3600);
    assert_eq!(
        request_reset(&app, &b).await.status(),
        StatusCode::OK,
        "an hour later it works again"
    );
}

/// SMTP trouble: the user is told, the audit trail has the server's answer, nothing
/// changes; a rejecting server likewise.
#[tokio::test]
async fn smtp_failures_are_told_and_change_nothing() {
    for mode in [None, Some(Mode::Reject)] {
        let sink = mode.map(SmtpSink::start);
        let smtp_yaml = sink.as_ref().map(|s| s.yaml("none", ""));
        let app = spawn_with(Setup {
            smtp_yaml,
            ..Setup::default()
        })
        .await;
        app.enroll("alice", ALICE_PASSWORD).await;
        let b = app.new_browser();
        let r = request_reset(&app, &b).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.text().await.unwrap().contains("メールを送信できませんでした"));
        let audit = app.running().app.store.recent_audit(20).unwrap();
        let failure = audit
            .iter()
            .find(|e| e.event == "reset.mail_failed")
            .expect("an audit entry");
        let detail = failure.detail.clone().unwrap_or_default();
        match mode {
            None => assert!(detail.contains("cannot connect"), "{detail}"),
            Some(_) => assert!(detail.contains("550") && detail.contains("rejected"), "{detail}"),
        }
        assert_eq!(
            code_screen_shows_code_prompt(&app, "alice", ALICE_PASSWORD).await,
            "/_kanmon/code"
        );
    }
}

/// REQ-56: STARTTLS checks the server's certificate; a self-signed one fails unless its
/// CA is configured or the check explicitly turned off; a server without STARTTLS fails.
#[tokio::test]
async fn req56_starttls_verifies_certificates() {
    let tls_sink = SmtpSink::start(Mode::StartTls);
    let cert = tls_sink.cert_path.clone().unwrap();
    let cases = [
        (tls_sink.yaml("starttls", ""), false),
        (
            tls_sink.yaml("starttls", &format!(", ca_file: \"{}\"", cert.display())),
            true,
        ),
        (tls_sink.yaml("starttls", ", insecure_skip_verify: true"), true),
    ];
    for (yaml, works) in cases {
        let app = spawn_with(Setup {
            smtp_yaml: Some(yaml.clone()),
            ..Setup::default()
        })
        .await;
        app.enroll("alice", ALICE_PASSWORD).await;
        let status = request_reset(&app, &app.new_browser()).await.status();
        assert_eq!(status == StatusCode::OK, works, "{yaml}");
    }
    assert!(
        tls_sink.messages().iter().all(|m| m.tls),
        "everything that arrived came over TLS"
    );
    let plain = SmtpSink::start(Mode::Plain);
    let app = spawn_with(Setup {
        smtp_yaml: Some(plain.yaml("starttls", ", insecure_skip_verify: true")),
        ..Setup::default()
    })
    .await;
    app.enroll("alice", ALICE_PASSWORD).await;
    assert_eq!(
        request_reset(&app, &app.new_browser()).await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no STARTTLS, no mail"
    );
    assert!(plain.messages().iter().all(|m| m.subject != RESET));
}

/// The screen that answers the reset button's POST is at `/_kanmon/reset`; its language
/// switch (a GET there) and a browser coming back to it get the code screen.
#[tokio::test]
async fn a_get_of_the_reset_address_leads_to_the_code_screen() {
    let (app, _sink) = with_sink(Mode::Plain, "none", "", "").await;
    app.enroll("alice", ALICE_PASSWORD).await;
    let b = app.new_browser();
    assert_eq!(request_reset(&app, &b).await.status(), StatusCode::OK);
    let r = app.get_with(&b, "/_kanmon/reset?lang=en").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/_kanmon/code");
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    assert!(
        page.contains("Enter authentication code"),
        "in the language picked: {page}"
    );
    let r = b.head(app.url("/_kanmon/reset")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// REQ-51: self-service reset can be switched off.
#[tokio::test]
async fn req51_self_service_reset_can_be_switched_off() {
    let (app, _sink) = with_sink(Mode::Plain, "none", "", "reset: { self_service: false }\n").await;
    app.enroll("alice", ALICE_PASSWORD).await;
    let b = app.new_browser();
    app.clock.advance(30);
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    assert!(!page.contains("/_kanmon/reset"), "no reset button");
    let r = app.post_with(&b, "/_kanmon/reset", &[("csrf", &csrf_of(&page))]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_with(&b, "/_kanmon/reset/confirm?t=x").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// REQ-8, REQ-14: a wrong code after the right password is told once per login; a used
/// code is told too; a login left at the code step is told when it expires.
#[tokio::test]
async fn req8_req14_security_mails_for_wrong_replayed_and_abandoned_codes() {
    let (app, sink) = with_sink(Mode::Plain, "none", "", "").await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    let before = sink.wait_for(1).await.len();
    let b = app.new_browser();
    app.clock.advance(30);
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    let right = totp(&key, app.now());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        app.post_with(&b, "/_kanmon/code", &[("csrf", &csrf_of(&page)), ("code", wrong)])
            .await;
    }
    let m = sink.wait_subject("誤った認証コードが入力されました").await;
    assert!(m.text.contains("パスワードが第三者に知られています"));
    // The replay: the enrollment code's step again, in a new login.
    let c = app.new_browser();
    app.clock.advance(-30);
    app.login_with(&c, "alice", ALICE_PASSWORD).await;
    let enrolled_code = totp(&key, app.now());
    app.submit_code_with(&c, "/_kanmon/code", &enrolled_code).await;
    sink.wait_subject("使用済みの認証コードが入力されました").await;
    // Abandoned at the code step: told when the pending login expires.
    let d = app.new_browser();
    app.login_with(&d, "alice", ALICE_PASSWORD).await;
    app.clock.advance(11 * 60);
    app.running().app.purge_expired().await;
    sink.wait_subject("ログインが認証コードの入力前に中断されました").await;
    let wrong_code_mails = sink
        .messages()
        .iter()
        .filter(|m| m.subject == "誤った認証コードが入力されました")
        .count();
    assert_eq!(wrong_code_mails, 1, "one notice per login, not per wrong code");
    assert!(sink.messages().len() >= before + 3);
}

/// M-14, REQ-36: the link uses the host the browser used, never one a header names.
#[tokio::test]
async fn m14_req36_the_link_host_is_the_one_the_browser_used() {
    let (app, sink) = with_sink(Mode::Plain, "none", "", "").await;
    app.enroll("alice", ALICE_PASSWORD).await;
    // The browser used 127.0.0.1 this time, and sent forwarding headers that must not count.
    let b = app.new_browser();
    app.clock.advance(30);
    let base = format!("https://127.0.0.1:{}", app.port);
    let page = b
        .get(format!("{base}/_kanmon/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    b.post(format!("{base}/_kanmon/login"))
        .header("origin", &base)
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("user", "alice"),
            ("password", ALICE_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let page = b
        .get(format!("{base}/_kanmon/code"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = b
        .post(format!("{base}/_kanmon/reset"))
        .header("origin", &base)
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example")
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let link = sink.wait_subject(RESET).await.link();
    assert!(link.starts_with(&format!("https://127.0.0.1:{}/", app.port)), "{link}");
}

/// `kanmon smtp-test`: sends, or says in plain words why not, with a non-zero exit.
#[tokio::test]
async fn smtp_test_command_explains_failures() {
    let bin = env!("CARGO_BIN_EXE_kanmon");
    let dir = tempfile::tempdir().unwrap();
    let run = |smtp: String| {
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!("listen: 127.0.0.1:0\ntls: {{ cert: c, key: k }}\nupstream: {{ url: demo }}\ndata_dir: d\n{smtp}"),
        )
        .unwrap();
        std::process::Command::new(bin)
            .args(["smtp-test", "--config"])
            .arg(&path)
            .args(["--to", "ops@example.com"])
            .output()
            .unwrap()
    };
    let sink = SmtpSink::start(Mode::Plain);
    let out = run(sink.yaml("none", ""));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sink.wait_for(1).await[0].rcpt_tos, ["ops@example.com"]);

    let reject = SmtpSink::start(Mode::Reject);
    let out = run(reject.yaml("none", ""));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected") && err.contains("550"), "{err}");

    let out = run("smtp: { host: 127.0.0.1, port: 9, security: none, from: a@example.com }\n".into());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
