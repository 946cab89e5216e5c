//! Administration (issue 5): the status page and its step-up (REQ-52 … REQ-54), the
//! `kanmon user …` commands through the control socket and on a stopped gateway, the
//! audit trail's fields and retention, accounts in a users file with reload (M-1, M-11,
//! REQ-74), and the clock checks (M-4).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kanmon::store::{AuditEvent, Store};
use reqwest::StatusCode;

use crate::helpers::*;
use crate::smtp::{Mode, SmtpSink};

const ADMIN: &str = "/_kanmon/admin";

/// A gateway sending mail to a real SMTP sink.
async fn with_sink(setup: Setup) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start(Mode::Plain);
    let app = spawn_with(Setup {
        smtp_yaml: Some(sink.yaml("none", "")),
        ..setup
    })
    .await;
    (app, sink)
}

/// The status page as browser `c` sees it.
async fn page(app: &TestApp, c: &reqwest::Client, query: &str) -> (StatusCode, String) {
    let r = app.get_with(c, &format!("{ADMIN}{query}")).await;
    (r.status(), r.text().await.unwrap())
}

/// Submits an action from the status page (with the page's form token).
async fn act(app: &TestApp, c: &reqwest::Client, action: &str, user: &str, reason: &str) -> reqwest::Response {
    let (_, html) = page(app, c, "").await;
    app.post_with(
        c,
        &format!("{ADMIN}/action"),
        &[
            ("csrf", &csrf_of(&html)),
            ("action", action),
            ("user", user),
            ("reason", reason),
        ],
    )
    .await
}

/// The audit trail, newest first (read through the running gateway's store).
fn trail(app: &TestApp) -> Vec<AuditEvent> {
    app.running().app.store.recent_audit(10_000).unwrap()
}

fn find<'a>(trail: &'a [AuditEvent], event: &str, user: &str) -> &'a AuditEvent {
    trail
        .iter()
        .find(|e| e.event == event && e.user.as_deref() == Some(user))
        .unwrap_or_else(|| panic!("no {event} for {user} in {trail:#?}"))
}

/// `kanmon user ARGS --config FILE`, off the test's async thread (the gateway under
/// test answers the control socket meanwhile).
async fn cli(app: &TestApp, args: &[&str]) -> Output {
    let mut all: Vec<String> = vec!["user".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.push("--config".into());
    all.push(app.config_path().display().to_string());
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kanmon"))
            .args(&all)
            .env_remove("KANMON_CONFIG")
            .env("KANMON_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stops the gateway and waits until its database is free (the background tasks let
/// go of it a moment after the server stops).
async fn stop(app: &mut TestApp) {
    app.running.take().unwrap().shutdown().await;
    let t = Instant::now();
    loop {
        match Store::open(&app.data_dir()) {
            Ok(_) => return,
            Err(e) => assert!(t.elapsed() < Duration::from_secs(10), "the database stays open: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the status page ------------------------------------------------------------------

/// REQ-52, REQ-54: only a full session of an administrator with a second step sees the
/// status page; everyone else gets 403 on every admin path, POSTs included.
#[tokio::test]
async fn req52_req54_non_admins_get_403_on_every_admin_path() {
    let [_, _, carol_hash] = hashes();
    let app = spawn_with(Setup {
        extra_yaml: format!(
            "  - {{ id: dave, email: dave@example.com, password_hash: \"{carol_hash}\", role: admin, two_factor: false }}\n"
        ),
        ..Setup::default()
    })
    .await;
    let bob = app.new_browser();
    app.enroll_with(&bob, "bob", BOB_PASSWORD).await;
    let carol = app.new_browser();
    app.login_with(&carol, "carol", CAROL_PASSWORD).await;
    // REQ-54: an admin account that skips the second step gets no admin access.
    let dave = app.new_browser();
    assert_eq!(location(&app.login_with(&dave, "dave", CAROL_PASSWORD).await), "/");
    let anonymous = app.new_browser();
    // A user who stopped at the code step.
    let pending = app.new_browser();
    assert_eq!(
        location(&app.login_with(&pending, "bob", BOB_PASSWORD).await),
        "/_kanmon/code"
    );

    for (who, c) in [
        ("bob", &bob),
        ("carol", &carol),
        ("dave", &dave),
        ("anonymous", &anonymous),
        ("pending", &pending),
    ] {
        for path in [ADMIN, "/_kanmon/admin/", "/_kanmon/admin/action", "/_kanmon/admin/x/y"] {
            let r = app.get_with(c, path).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who} GET {path}");
        }
        // With the user's own form token, from our own origin: still 403.
        let logout = app.get_with(c, "/_kanmon/logout").await.text().await.unwrap();
        let csrf = if logout.contains("name=\"csrf\"") {
            csrf_of(&logout)
        } else {
            String::new()
        };
        for path in ["/_kanmon/admin/action", "/_kanmon/admin/reauth", ADMIN] {
            let r = app
                .post_with(
                    c,
                    path,
                    &[
                        ("csrf", csrf.as_str()),
                        ("action", "unlock"),
                        ("user", "alice"),
                        ("password", BOB_PASSWORD),
                    ],
                )
                .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who} POST {path}");
        }
    }
    let t = trail(&app);
    assert_eq!(find(&t, "admin.denied", "bob").outcome, "failure");
}

/// REQ-52, REQ-53, M-4: an administrator sees accounts, audit trail and health, and
/// never a secret, token or hash; an unsynchronised clock is shown with the advice.
#[tokio::test]
async fn req53_admin_sees_state_but_no_secret() {
    let app = spawn_with(Setup {
        clock_check: Some(|| Some(false)),
        ..Setup::default()
    })
    .await;
    let a = app.new_browser();
    let alice_key = app.enroll_with(&a, "alice", ALICE_PASSWORD).await;
    let bob = app.new_browser();
    let bob_key = app.enroll_with(&bob, "bob", BOB_PASSWORD).await;
    app.login_with(&app.new_browser(), "carol", CAROL_PASSWORD).await;

    let (status, html) = page(&app, &a, "").await;
    assert_eq!(status, StatusCode::OK);
    for id in ["alice", "bob", "carol"] {
        assert!(html.contains(&format!("<td class=\"account-id\">{id}</td>")), "{id}");
    }
    assert!(html.contains("関連付け済み"), "bob's authenticator is associated");
    assert!(html.contains("3 件"), "the count");
    assert!(html.contains("login.success"), "the audit trail");
    assert!(
        html.contains("NTPクライアント"),
        "M-4: the clock is not synchronised, with the advice"
    );
    assert!(html.contains("2033-05-18"), "last login times");
    // REQ-53: no secret, token or hash anywhere.
    for secret in [alice_key.as_str(), bob_key.as_str(), "$argon2id$", &hashes()[1][30..]] {
        assert!(!html.contains(secret), "the page shows {secret}");
    }
    // A filtered trail.
    let (_, html) = page(&app, &a, "?who=bob&event=login").await;
    let rows = html.matches("class=\"audit-row\"").count();
    assert!(rows >= 1, "{html}");
    let audit = &html[html.find("audit-title").unwrap()..];
    assert!(!audit.contains("<td>carol</td>"), "the filter by account works");
    let (_, html) = page(&app, &a, "?from=2040-01-01").await;
    assert!(html.contains("該当する記録はありません"), "nothing after 2040");

    // M-4: healthz?verbose says so too; the plain healthz is unchanged.
    let r = app
        .client
        .get(app.url("/_kanmon/healthz?verbose"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({ "status": "ok", "clock_synchronised": false }));
    let plain = app.client.get(app.url("/_kanmon/healthz")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), r#"{"status":"ok"}"#);
}

/// M-4: with the real kernel's answer, healthz?verbose carries a boolean (or null when
/// the kernel cannot tell) equal to what the kernel says.
#[tokio::test]
async fn m4_healthz_verbose_reports_the_kernel_clock_state() {
    let app = spawn_app().await;
    let v: serde_json::Value = app
        .client
        .get(app.url("/_kanmon/healthz?verbose"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = kanmon::clock::kernel_synchronised();
    assert_eq!(v["clock_synchronised"], serde_json::json!(expected));
}

/// REQ-52: an action without a recent authentication is refused and the page asks for
/// password and code; after that the action goes through, is audited with its reason,
/// ends the user's sessions and e-mails the user.
#[tokio::test]
async fn req52_reset_needs_step_up_then_ends_sessions_audits_and_mails() {
    let (app, sink) = with_sink(Setup::default()).await;
    let a = app.new_browser();
    let alice_key = app.enroll_with(&a, "alice", ALICE_PASSWORD).await;
    let bob = app.new_browser();
    app.enroll_with(&bob, "bob", BOB_PASSWORD).await;

    // Six minutes after alice's login, an action is challenged.
    app.clock.advance(6 * 60);
    let r = act(&app, &a, "reset-2fa", "bob", "lost phone and mailbox").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(html.contains("/_kanmon/admin/reauth") && html.contains("type=\"password\""));
    assert_eq!(
        app.api_get_with(&bob, "/x").await.status(),
        StatusCode::OK,
        "nothing was done"
    );
    find(&trail(&app), "admin.step_up_required", "bob");

    // A wrong code does not re-authenticate.
    let wrong = app
        .post_with(
            &a,
            "/_kanmon/admin/reauth",
            &[
                ("csrf", &csrf_of(&html)),
                ("password", ALICE_PASSWORD),
                ("code", "000000"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // Password and code: a new session id with a fresh authentication time.
    let r = app
        .post_with(
            &a,
            "/_kanmon/admin/reauth",
            &[
                ("csrf", &csrf_of(&html)),
                ("password", ALICE_PASSWORD),
                ("code", &totp(&alice_key, app.now())),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/_kanmon/admin?done=reauth");
    assert!(session_cookie(&r).is_some(), "a new session id");
    find(&trail(&app), "admin.step_up", "alice");

    let r = act(&app, &a, "reset-2fa", "bob", "lost phone and mailbox").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let (_, html) = page(&app, &a, &location(&r)["/_kanmon/admin".len()..]).await;
    assert!(html.contains("完了しました"), "the page confirms");

    assert_eq!(
        app.api_get_with(&bob, "/x").await.status(),
        StatusCode::UNAUTHORIZED,
        "bob's sessions ended"
    );
    app.clock.advance(30);
    assert_eq!(
        location(&app.login_with(&app.new_browser(), "bob", BOB_PASSWORD).await),
        "/_kanmon/enroll",
        "the next login enrolls again"
    );
    let t = trail(&app);
    let e = find(&t, "admin.reset_2fa", "bob");
    assert_eq!(e.actor, "admin:alice");
    assert_eq!(e.outcome, "success");
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
    assert!(e.detail.as_deref().unwrap().contains("lost phone and mailbox"), "{e:?}");
    let mail = sink.wait_subject("管理者が二段階認証をリセットしました").await;
    assert_eq!(mail.rcpt_tos, ["bob@example.com"]);
    assert!(mail.text.contains("bob"));
}

/// REQ-52: an administrator cannot reset their own association on the page; a reason
/// is required; unlock and end-sessions work; an unknown account is said to be one.
#[tokio::test]
async fn req52_self_reset_refused_reason_required_unlock_and_logout() {
    let app = spawn_app().await;
    let a = app.new_browser();
    app.enroll_with(&a, "alice", ALICE_PASSWORD).await;
    let bob = app.new_browser();
    app.enroll_with(&bob, "bob", BOB_PASSWORD).await;

    let r = act(&app, &a, "reset-2fa", "alice", "testing").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("メール"), "points at the e-mail flow");
    let store = &app.running().app.store;
    assert!(store.authenticator("alice").unwrap().is_some(), "nothing removed");
    find(&trail(&app), "admin.reset_2fa_refused", "alice");

    let r = act(&app, &a, "reset-2fa", "bob", "   ").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(store.authenticator("bob").unwrap().is_some());

    let r = act(&app, &a, "unlock", "nobody", "").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A locked account is shown so, and unlocked.
    for _ in 0..100 {
        store.record_code_failure("bob", app.now()).unwrap();
    }
    let (_, html) = page(&app, &a, "?q=bob").await;
    let row = &html[html.find("<td class=\"account-id\">bob</td>").unwrap()..];
    assert!(row.contains("<td>はい</td><td>100</td>"), "locked, 100 failures");
    let r = act(&app, &a, "unlock", "bob", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(store.code_failures("bob").unwrap().consecutive, 0);
    assert_eq!(find(&trail(&app), "admin.unlock", "bob").actor, "admin:alice");

    let r = act(&app, &a, "logout", "bob", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.api_get_with(&bob, "/x").await.status(), StatusCode::UNAUTHORIZED);
    assert!(
        find(&trail(&app), "admin.logout", "bob")
            .detail
            .as_deref()
            .unwrap()
            .contains("sessions ended: 1")
    );

    // REQ-33: no form token, no action.
    let r = app
        .post_with(&a, "/_kanmon/admin/action", &[("action", "logout"), ("user", "bob")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// The status page stays fast with 10,000 accounts: it reads the store only for the
/// 50 accounts it shows, and searches the configuration in memory.
#[tokio::test]
async fn status_page_is_fast_with_10000_accounts() {
    let [_, _, hash] = hashes();
    let mut extra = String::new();
    for i in 0..10_000 {
        extra.push_str(&format!(
            "  - {{ id: user{i:05}, email: user{i:05}@example.com, password_hash: \"{hash}\", role: user, two_factor: false }}\n"
        ));
    }
    let t = Instant::now();
    let app = spawn_with(Setup {
        extra_yaml: extra,
        ..Setup::default()
    })
    .await;
    eprintln!("start with 10,003 accounts: {:?}", t.elapsed());
    let a = app.new_browser();
    app.enroll_with(&a, "alice", ALICE_PASSWORD).await;
    for (query, expect) in [
        ("", "10003 件"),
        ("?page=150", "150 &#x2f; 201"),
        ("?q=user09", "1000 件"),
        ("?q=USER09999%40EXAMPLE", "1 件"),
    ] {
        let t = Instant::now();
        let (status, html) = page(&app, &a, query).await;
        let took = t.elapsed();
        eprintln!("GET {ADMIN}{query}: {took:?}");
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(expect), "{query}: {expect}");
        assert!(html.matches("class=\"account-id\"").count() <= 50, "paged");
        assert!(took < Duration::from_secs(2), "{query} took {took:?}");
    }
}

// ---- the commands ---------------------------------------------------------------------

/// The control socket: owner-only, and the commands work through it while the gateway
/// runs (live sessions end at once); an unknown ID is an error; the file goes at stop.
#[tokio::test]
async fn commands_work_through_the_control_socket_while_running() {
    let (mut app, sink) = with_sink(Setup::default()).await;
    let socket = app.data_dir().join("control.sock");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner-only");

    app.enroll("alice", ALICE_PASSWORD).await;
    let bob = app.new_browser();
    let bob_key = app.enroll_with(&bob, "bob", BOB_PASSWORD).await;
    app.login_with(&app.new_browser(), "carol", CAROL_PASSWORD).await;

    let out = cli(&app, &["status"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("SESSIONS"), "{table}");
    let bob_line = lines.iter().find(|l| l.starts_with("bob ")).unwrap();
    assert!(
        bob_line.contains("user") && bob_line.contains("on") && bob_line.contains("associated"),
        "{bob_line}"
    );
    assert!(
        bob_line.contains("2033-05-18") && bob_line.trim_end().ends_with('1'),
        "{bob_line}"
    );
    assert!(!table.contains(&bob_key) && !table.contains("argon2"), "REQ-53");

    let out = cli(&app, &["status", "nobody"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no account `nobody`"), "{}", stderr(&out));

    // Ending sessions through the socket ends the live session in the browser at once.
    let out = cli(&app, &["logout", "bob"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 session(s) ended"), "{}", stdout(&out));
    assert_eq!(app.api_get_with(&bob, "/x").await.status(), StatusCode::UNAUTHORIZED);

    let out = cli(&app, &["reset-2fa", "bob", "--reason", "new phone"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(app.running().app.store.authenticator("bob").unwrap().is_none());
    let t = trail(&app);
    let e = find(&t, "admin.reset_2fa", "bob");
    assert_eq!(e.actor, "cli");
    assert!(e.detail.as_deref().unwrap().contains("new phone"));
    assert_eq!(find(&t, "admin.logout", "bob").actor, "cli");
    sink.wait_subject("管理者が二段階認証をリセットしました").await;
    sink.wait_subject("管理者がすべてのセッションを終了しました").await;

    let out = cli(&app, &["unlock", "carol"]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    app.running.take().unwrap().shutdown().await;
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}

/// The control socket refuses another user (SO_PEERCRED), even when the file's
/// permissions would let them connect.
#[tokio::test]
async fn control_socket_refuses_other_users() {
    let app = spawn_app().await;
    let socket = app.data_dir().join("control.sock");
    // Open the way for the test only: directory and socket reachable by everyone.
    for dir in [app.dir.path(), &app.data_dir()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'{\"command\":\"status\",\"user\":null}\\n')\nprint(s.makefile().readline())";
    let path = socket.display().to_string();
    let run = move |uid: Option<u32>| {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", script, &path]);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        cmd.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run(Some(65534)), run(None)))
        .await
        .unwrap();
    let (nobody, owner) = out;
    let answer = stdout(&nobody);
    assert!(
        answer.contains("\"ok\":false") && answer.contains("may not control"),
        "{answer}{}",
        stderr(&nobody)
    );
    assert!(!answer.contains("alice"), "nothing about accounts: {answer}");
    assert!(stdout(&owner).contains("\"ok\":true"), "{}", stderr(&owner));
}

/// The commands on a stopped gateway open the database themselves: status, logout
/// (stored sessions), reset-2fa (audited as `cli`, the user mailed), unlock; an unknown
/// ID and a missing reason are errors.
#[tokio::test]
async fn commands_work_on_a_stopped_gateway() {
    let (mut app, sink) = with_sink(Setup::default()).await;
    let bob = app.new_browser();
    app.enroll_with(&bob, "bob", BOB_PASSWORD).await;
    stop(&mut app).await;
    assert!(!app.data_dir().join("control.sock").exists());

    let out = cli(&app, &["status", "BOB"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out).lines().nth(1).unwrap().to_owned();
    assert!(line.starts_with("bob ") && line.contains("associated"), "{line}");

    let out = cli(&app, &["logout", "bob"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 session(s) ended"), "{}", stdout(&out));

    let out = cli(&app, &["reset-2fa", "bob"]).await;
    assert_eq!(out.status.code(), Some(2), "clap: --reason is required");
    let out = cli(&app, &["reset-2fa", "bob", "--reason", " "]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reason"), "{}", stderr(&out));
    let out = cli(&app, &["reset-2fa", "nobody", "--reason", "x"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no account `nobody`"));

    let out = cli(&app, &["reset-2fa", "bob", "--reason", "lost phone"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("removed the two-step association of bob"));
    let out = cli(&app, &["unlock", "bob"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let mail = sink.wait_subject("管理者が二段階認証をリセットしました").await;
    assert_eq!(mail.rcpt_tos, ["bob@example.com"]);

    let store = Store::open(&app.data_dir()).unwrap();
    assert!(store.authenticator("bob").unwrap().is_none());
    let t = store.recent_audit(1000).unwrap();
    let e = find(&t, "admin.reset_2fa", "bob");
    assert_eq!((e.actor.as_str(), e.outcome.as_str()), ("cli", "success"));
    assert!(e.detail.as_deref().unwrap().contains("lost phone"));
    find(&t, "admin.unlock", "bob");
    find(&t, "mail.admin_reset", "bob");
}

// ---- the audit trail -------------------------------------------------------------------

/// Every record has actor, address, user agent and outcome; none holds a password, a
/// code or a secret — not even a password typed into the user ID field.
#[tokio::test]
async fn audit_records_carry_actor_user_agent_and_outcome_and_no_secret() {
    let app = spawn_app().await;
    let ua = "TestBrowser/1.0 (kanmon)";
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(app.cert_pem.as_bytes()).unwrap()])
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(ua)
        .build()
        .unwrap();
    app.login_with(&c, "alice", "wrong-password-123").await;
    app.login_with(&c, ALICE_PASSWORD, ALICE_PASSWORD).await;
    let key = app.enroll_with(&c, "alice", ALICE_PASSWORD).await;
    let b = app.new_browser();
    let used = totp(&key, app.now());
    app.clock.advance(30);
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    app.submit_code_with(&b, "/_kanmon/code", &used).await;
    let wrong_code = if totp(&key, app.now()) == "123456" {
        "654321"
    } else {
        "123456"
    };
    app.submit_code_with(&b, "/_kanmon/code", wrong_code).await;

    let t = trail(&app);
    let failed = find(&t, "login.password_failed", "alice");
    assert_eq!(failed.actor, "browser");
    assert_eq!(failed.outcome, "failure");
    assert_eq!(failed.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(failed.user_agent.as_deref(), Some(ua));
    let unknown = t
        .iter()
        .find(|e| e.event == "login.password_failed" && e.user.is_none())
        .expect("the attempt with a password as user ID");
    assert_eq!(unknown.detail.as_deref(), Some("unknown user ID"));
    assert_eq!(find(&t, "login.success", "alice").outcome, "success");
    assert_eq!(find(&t, "login.code_failed", "alice").outcome, "failure");
    assert_eq!(find(&t, "login.code_replay", "alice").outcome, "failure");
    find(&t, "enroll.completed", "alice");

    // Every text field (times are numbers, where six digits could turn up by chance).
    let all: String = t
        .iter()
        .map(|e| {
            format!(
                "{}|{:?}|{:?}|{:?}|{}|{:?}|{}\n",
                e.event, e.user, e.ip, e.detail, e.actor, e.user_agent, e.outcome
            )
        })
        .collect();
    for secret in [
        ALICE_PASSWORD,
        "wrong-password-123",
        key.as_str(),
        wrong_code,
        "$argon2id$",
    ] {
        assert!(!all.contains(secret), "the trail holds {secret}");
    }
}

/// Records older than `audit.retention` are pruned in the background.
#[tokio::test]
async fn audit_retention_prunes_old_records() {
    let app = spawn_with(Setup {
        extra_yaml: "audit: { retention: 1d }\n".into(),
        ..Setup::default()
    })
    .await;
    app.login("carol", CAROL_PASSWORD).await;
    assert!(trail(&app).iter().any(|e| e.event == "login.success"));
    app.clock.advance(2 * 86_400);
    app.running().app.purge_expired().await;
    assert!(
        !trail(&app).iter().any(|e| e.event == "login.success"),
        "pruned after a day"
    );
    let (records, _) = (app.running().app.store.account_records(&["carol".into()]).unwrap(), ());
    assert_eq!(records[0].last_login, Some(START), "the last login stays");
}

// ---- accounts in a users file, reload ----------------------------------------------------

/// M-1, REQ-74, M-11: accounts in a users file; a change of that file alone is
/// reloaded: a removed account loses its session at once, the reload records what
/// changed; a second step switched off and on again means a new enrollment.
#[tokio::test]
async fn m1_m11_users_file_changes_are_applied_at_once_and_recorded() {
    let [_, bob_hash, carol_hash] = hashes();
    let dave = format!(
        "- id: dave\n  email: dave@example.com\n  password_hash: \"{carol_hash}\"\n  role: user\n  two_factor: false\n"
    );
    let erin = |two_factor: bool| {
        format!(
            "- id: erin\n  email: erin@example.com\n  password_hash: \"{bob_hash}\"\n  role: user\n  two_factor: {two_factor}\n"
        )
    };
    let app = spawn_with(Setup {
        extra_yaml: "users_file: users.yaml\n".into(),
        files: vec![("users.yaml".into(), format!("{dave}{}", erin(true)))],
        ..Setup::default()
    })
    .await;
    let d = app.new_browser();
    assert_eq!(location(&app.login_with(&d, "dave", CAROL_PASSWORD).await), "/");
    let e = app.new_browser();
    let erin_key = app.enroll_with(&e, "erin", BOB_PASSWORD).await;
    let _ = erin_key;

    // Only the users file changes: dave removed, erin's second step switched off.
    let users = app.dir.path().join("users.yaml");
    std::fs::write(&users, erin(false)).unwrap();
    // The reload is recorded once its effects are done.
    let t = Instant::now();
    while !trail(&app).iter().any(|e| e.event == "config.reloaded") {
        assert!(t.elapsed() < Duration::from_secs(5), "the users file was not reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.api_get_with(&d, "/x").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.api_get_with(&e, "/x").await.status(), StatusCode::UNAUTHORIZED);
    let reload = trail(&app)
        .into_iter()
        .find(|e| e.event == "config.reloaded")
        .expect("the reload is recorded");
    let detail = reload.detail.unwrap();
    assert!(
        detail.contains("removed: dave") && detail.contains("changed: erin"),
        "{detail}"
    );
    assert_eq!(reload.actor, "system");
    find(&trail(&app), "account.association_removed", "erin");
    assert_eq!(
        location(&app.login_with(&app.new_browser(), "erin", BOB_PASSWORD).await),
        "/",
        "M-11: password only now"
    );

    // Switched on again: a new enrollment, not the old authenticator.
    std::fs::write(&users, erin(true)).unwrap();
    app.running().reload().await.unwrap();
    assert_eq!(
        location(&app.login_with(&app.new_browser(), "erin", BOB_PASSWORD).await),
        "/_kanmon/enroll"
    );

    // A bad users file is refused, naming it and the line; the accounts stay.
    std::fs::write(&users, "- id: erin\n  email: nope\n").unwrap();
    let err = app.running().reload().await.unwrap_err();
    assert!(err.contains("users.yaml:1") || err.contains("users.yaml:2"), "{err}");
    assert!(app.running().app.config().user("erin").is_some());
}

/// M-11: a second step switched off while the gateway was stopped is forgotten at the
/// next start, so switching it on again means a new enrollment there too.
#[tokio::test]
async fn m11_second_step_switched_off_while_stopped_is_forgotten_at_start() {
    let mut app = spawn_app().await;
    app.enroll("bob", BOB_PASSWORD).await;
    stop(&mut app).await;
    let path = app.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("role: user, two_factor: true", "role: user, two_factor: false"),
    )
    .unwrap();
    let options = kanmon::Options {
        clock: app.clock.clone(),
        hash_workers: 1,
        ..kanmon::Options::default()
    };
    let running = kanmon::build(kanmon::Config::load(&path).unwrap(), options)
        .await
        .unwrap();
    assert!(running.app.store.authenticator("bob").unwrap().is_none());
    let t = running.app.store.recent_audit(100).unwrap();
    assert_eq!(find(&t, "account.association_removed", "bob").actor, "system");
    running.shutdown().await;
}

// ---- M-4: the clock on the enrollment screen ---------------------------------------------

/// M-4: the enrollment screen carries the server's time and a hidden, localized
/// warning that a same-origin script shows when the browser's clock is off by more
/// than 15 s; no inline script.
#[tokio::test]
async fn m4_enrollment_screen_compares_the_browsers_clock() {
    let app = spawn_app().await;
    app.login("alice", ALICE_PASSWORD).await;
    let r = app.get("/_kanmon/enroll").await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    let warning = &html[html.find("id=\"clock-skew\"").expect("the warning element")..];
    let warning = &warning[..warning.find("</p>").unwrap()];
    assert!(
        warning.contains("role=\"alert\"") && warning.contains(" hidden"),
        "{warning}"
    );
    assert!(warning.contains(&format!("data-server-time=\"{START}\"")), "{warning}");
    assert!(warning.contains("15秒"), "localized: {warning}");
    assert!(html.contains("<script src=\"/_kanmon/static/clock.js\" defer></script>"));

    let r = app.get("/_kanmon/static/clock.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let js = r.text().await.unwrap();
    assert!(js.contains("data-server-time") && js.contains("> 15") && js.contains("hidden = false"));
}
