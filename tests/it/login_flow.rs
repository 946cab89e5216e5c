//! The login state machine, end to end: M-2, M-5 … M-9, G-1, G-2, G-7 and the REQs on
//! codes and sessions.

use reqwest::StatusCode;

use crate::helpers::*;

/// M-5, M-6, G-1, G-2: a first login enrolls and lands where the user was going.
#[tokio::test]
async fn m5_m6_first_login_enrolls_and_lands_on_the_requested_url() {
    let app = spawn_app().await;
    let r = app.get("/anything?x=1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login_url = location(&r);
    assert_eq!(login_url, "/_kanmon/login?rd=%2Fanything%3Fx%3D1");
    assert!(
        app.upstream.seen().is_empty(),
        "nothing reached the upstream before login"
    );

    let page = app.get(&login_url).await.text().await.unwrap();
    let r = app
        .post(
            "/_kanmon/login",
            &[
                ("csrf", &csrf_of(&page)),
                ("user", "alice"),
                ("password", ALICE_PASSWORD),
            ],
        )
        .await;
    assert_eq!(location(&r), "/_kanmon/enroll");

    let r = app.get("/_kanmon/enroll").await;
    assert_eq!(r.headers()["cache-control"], "no-store", "REQ-22");
    let page = r.text().await.unwrap();
    assert!(page.contains("QRコードをスキャン"), "the manual's screen title");
    assert!(page.contains("QRコードをスキャンできない場合はコードを手入力してください。"));
    assert!(page.contains("<svg"), "an inline QR code");
    let key = key_of(&page);
    assert_eq!(key.len(), 32, "160-bit key, 32 base32 characters");
    assert!(key.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    assert_eq!(
        page.matches("<span>").count() - page[..page.find("manual-key").unwrap()].matches("<span>").count(),
        8,
        "groups of four"
    );

    let r = app
        .post(
            "/_kanmon/enroll",
            &[("csrf", &csrf_of(&page)), ("code", &totp(&key, app.now()))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/anything?x=1");

    let r = app.get("/anything?x=1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let seen = app.upstream.last();
    assert_eq!(seen.uri, "/anything?x=1");
    assert_eq!(seen.header("remote-user").as_deref(), Some("alice"));
    assert_eq!(seen.header("remote-email").as_deref(), Some("alice@example.com"));
    assert_eq!(seen.header("remote-groups").as_deref(), Some("admin"));
}

/// M-9: once an authenticator is associated, the next login asks for a code.
#[tokio::test]
async fn m9_later_login_asks_for_the_code() {
    let app = spawn_app().await;
    let key = app.enroll("bob", BOB_PASSWORD).await;
    let other = app.new_browser();
    app.clock.advance(30);
    let r = app.login_with(&other, "bob", BOB_PASSWORD).await;
    assert_eq!(location(&r), "/_kanmon/code");
    let page = app.get_with(&other, "/_kanmon/code").await.text().await.unwrap();
    assert!(page.contains("認証コードを入力") && page.contains("Authenticator App コード") && page.contains("送信"));
    assert!(page.contains("autocomplete=\"one-time-code\"") && page.contains("inputmode=\"numeric\""));
    assert!(!page.contains(&key[..8]), "REQ-21: the key is never shown again");
    let r = app
        .submit_code_with(&other, "/_kanmon/code", &totp(&key, app.now()))
        .await;
    assert_eq!(location(&r), "/");
    assert_eq!(app.get_with(&other, "/").await.status(), StatusCode::OK);
}

/// M-2: an account with the switch off goes straight through after the password.
#[tokio::test]
async fn m2_account_without_two_step_goes_straight_through() {
    let app = spawn_app().await;
    let r = app.login("carol", CAROL_PASSWORD).await;
    assert_eq!(location(&r), "/");
    assert_eq!(app.get("/").await.status(), StatusCode::OK);
    assert_eq!(app.upstream.last().header("remote-user").as_deref(), Some("carol"));
}

/// REQ-20, M-8: a secret shown but not confirmed grants nothing; coming back within
/// its life shows the same key and says so.
#[tokio::test]
async fn m8_abandoned_enrollment_grants_nothing_and_keeps_the_key() {
    let app = spawn_app().await;
    app.login("alice", ALICE_PASSWORD).await;
    let first = key_of(&app.get("/_kanmon/enroll").await.text().await.unwrap());
    assert_eq!(
        app.api_get_with(&app.client, "/dashboard").await.status(),
        StatusCode::UNAUTHORIZED
    );

    app.clock.advance(120);
    app.login("alice", ALICE_PASSWORD).await;
    let page = app.get("/_kanmon/enroll").await.text().await.unwrap();
    assert_eq!(key_of(&page), first, "the same pending key within ten minutes");
    assert!(
        page.contains("先ほどと同じキーです"),
        "the screen says it is the same key"
    );

    app.clock.advance(11 * 60);
    app.login("alice", ALICE_PASSWORD).await;
    let page = app.get("/_kanmon/enroll").await.text().await.unwrap();
    assert_ne!(key_of(&page), first, "an expired pending key is replaced");
    assert!(page.contains("新しいキーです"), "the screen says it is a new key");
}

/// REQ-6: a code is accepted once; an older step after a newer one is refused too.
#[tokio::test]
async fn req6_a_code_is_accepted_only_once() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    // The enrollment code's step is used: the same code in a new login is refused.
    let b = app.new_browser();
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    let r = app.submit_code_with(&b, "/_kanmon/code", &totp(&key, app.now())).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The next step's code works; then the previous step's code is refused.
    let r = app
        .submit_code_with(&b, "/_kanmon/code", &totp(&key, app.now() + 30))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let c = app.new_browser();
    app.login_with(&c, "alice", ALICE_PASSWORD).await;
    let r = app
        .submit_code_with(&c, "/_kanmon/code", &totp(&key, app.now() - 30))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// REQ-7: two pending logins submit the same right code at once: exactly one wins,
/// in each of 50 runs.
#[tokio::test]
async fn req7_concurrent_submissions_of_one_code_exactly_one_wins() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    for run in 0..50 {
        app.clock.advance(30);
        let (a, b) = (app.new_browser(), app.new_browser());
        tokio::join!(
            app.login_with(&a, "alice", ALICE_PASSWORD),
            app.login_with(&b, "alice", ALICE_PASSWORD)
        );
        let pa = app.get_with(&a, "/_kanmon/code").await.text().await.unwrap();
        let pb = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
        let code = totp(&key, app.now());
        let (ca, cb) = (csrf_of(&pa), csrf_of(&pb));
        let (fa, fb) = (
            [("csrf", ca.as_str()), ("code", &code)],
            [("csrf", cb.as_str()), ("code", &code)],
        );
        let (ra, rb) = tokio::join!(
            app.post_with(&a, "/_kanmon/code", &fa),
            app.post_with(&b, "/_kanmon/code", &fb)
        );
        let wins = [ra.status(), rb.status()]
            .iter()
            .filter(|s| **s == StatusCode::SEE_OTHER)
            .count();
        assert_eq!(wins, 1, "run {run}: {:?} {:?}", ra.status(), rb.status());
    }
}

/// REQ-4: previous, current and next step only.
#[tokio::test]
async fn req4_window_is_one_step_each_side() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(300);
    for (offset, accepted) in [(-60, false), (60, false), (-30, true), (30, true)] {
        app.clock.advance(90);
        let b = app.new_browser();
        app.login_with(&b, "alice", ALICE_PASSWORD).await;
        let r = app
            .submit_code_with(&b, "/_kanmon/code", &totp(&key, app.now() + offset))
            .await;
        assert_eq!(r.status() == StatusCode::SEE_OTHER, accepted, "offset {offset}");
    }
}

/// REQ-9: five wrong codes void the pending login; the right code then fails too.
#[tokio::test]
async fn req9_five_wrong_codes_void_the_pending_login() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let b = app.new_browser();
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    let right = totp(&key, app.now());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    let csrf = csrf_of(&page);
    for i in 1..=5 {
        let r = app
            .post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", wrong)])
            .await;
        if i < 5 {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        } else {
            assert_eq!(location(&r), "/_kanmon/login?notice=too_many");
        }
    }
    let r = app
        .post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", &right)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&r).starts_with("/_kanmon/login"),
        "back to the password, not in"
    );
    assert_eq!(app.api_get_with(&b, "/").await.status(), StatusCode::UNAUTHORIZED);
}

/// REQ-27: a pending login expires after ten minutes.
#[tokio::test]
async fn req27_pending_login_expires_after_ten_minutes() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let b = app.new_browser();
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    app.clock.advance(10 * 60);
    let r = app
        .post_with(
            &b,
            "/_kanmon/code",
            &[("csrf", &csrf_of(&page)), ("code", &totp(&key, app.now()))],
        )
        .await;
    assert_eq!(location(&r), "/_kanmon/login?notice=expired");
    assert_eq!(app.api_get_with(&b, "/").await.status(), StatusCode::UNAUTHORIZED);
}

/// Codes as people type them: spaces ignored; letters and wrong lengths get their own
/// message; a code from a phone whose clock is off says so (M-4).
#[tokio::test]
async fn codes_as_people_type_them_and_the_clock_hint() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let b = app.new_browser();
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let post = |code: String| {
        let (b, csrf) = (b.clone(), csrf.clone());
        let app = &app;
        async move {
            app.post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", &code)])
                .await
        }
    };
    let r = post("12a456".into()).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("数字のみ"));
    let r = post("12345".into()).await;
    assert!(r.text().await.unwrap().contains("コードは6桁です"));
    let r = post(totp(&key, app.now() + 5 * 60)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.text().await.unwrap().contains("約5分進んでいる"),
        "the phone is five minutes fast"
    );
    let code = totp(&key, app.now());
    let r = post(format!("{} {}", &code[..3], &code[3..])).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a space inside the code is fine");
}

/// REQ-28, REQ-32: a new id at every step; older ids, and ids after logout, are dead.
#[tokio::test]
async fn req28_req32_session_ids_rotate_and_die() {
    let app = spawn_app().await;
    let r = app.get("/_kanmon/login").await;
    let anonymous = session_cookie(&r).expect("an anonymous session for the form token");
    let page = r.text().await.unwrap();
    let r = app
        .post(
            "/_kanmon/login",
            &[
                ("csrf", &csrf_of(&page)),
                ("user", "alice"),
                ("password", ALICE_PASSWORD),
            ],
        )
        .await;
    let pending = session_cookie(&r).expect("a new id after the password");
    let page = app.get("/_kanmon/enroll").await.text().await.unwrap();
    let key = key_of(&page);
    let r = app
        .post(
            "/_kanmon/enroll",
            &[("csrf", &csrf_of(&page)), ("code", &totp(&key, app.now()))],
        )
        .await;
    let full = session_cookie(&r).expect("a new id after the code");
    assert!(anonymous != pending && pending != full && anonymous != full);
    assert_eq!(full.len(), 43, "REQ-30: 256 bits, base64url");

    let raw = app.new_browser();
    let with_cookie = |id: &str| {
        raw.get(app.url("/data"))
            .header("cookie", format!("__Host-kanmon={id}"))
            .header("accept", "application/json")
            .send()
    };
    assert_eq!(with_cookie(&pending).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_cookie(&full).await.unwrap().status(), StatusCode::OK);

    let page = app.get("/_kanmon/logout").await.text().await.unwrap();
    assert!(page.contains("ログアウト"));
    let r = app.post("/_kanmon/logout", &[("csrf", &csrf_of(&page))]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        with_cookie(&full).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "logout ends it on the server"
    );
}

/// REQ-29: an id the client made up is never adopted.
#[tokio::test]
async fn req29_session_fixation_is_refused() {
    let app = spawn_app().await;
    let planted = "A".repeat(43);
    let c = app.new_browser();
    let r = c
        .get(app.url("/_kanmon/login"))
        .header("cookie", format!("__Host-kanmon={planted}"))
        .send()
        .await
        .unwrap();
    let issued = session_cookie(&r).unwrap();
    assert_ne!(issued, planted);
    app.login_with(&c, "carol", CAROL_PASSWORD).await;
    let r = c
        .get(app.url("/x"))
        .header("cookie", format!("__Host-kanmon={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// G-7: "log out everywhere" ends the user's other sessions too.
#[tokio::test]
async fn g7_logout_everywhere_ends_all_sessions_of_the_user() {
    let app = spawn_app().await;
    let (a, b) = (app.new_browser(), app.new_browser());
    app.login_with(&a, "carol", CAROL_PASSWORD).await;
    app.login_with(&b, "carol", CAROL_PASSWORD).await;
    assert_eq!(app.api_get_with(&b, "/x").await.status(), StatusCode::OK);
    let page = app.get_with(&a, "/_kanmon/logout").await.text().await.unwrap();
    app.post_with(&a, "/_kanmon/logout", &[("csrf", &csrf_of(&page)), ("everywhere", "1")])
        .await;
    assert_eq!(app.api_get_with(&a, "/x").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.api_get_with(&b, "/x").await.status(), StatusCode::UNAUTHORIZED);
}

/// Session lifetimes from the config: idle and absolute timeouts end a full session.
#[tokio::test]
async fn idle_timeout_ends_a_session() {
    let app = spawn_app().await;
    app.login("carol", CAROL_PASSWORD).await;
    app.clock.advance(29 * 60);
    assert_eq!(app.api_get_with(&app.client, "/x").await.status(), StatusCode::OK);
    app.clock.advance(29 * 60);
    // Activity moved "last seen" on (written at most once a minute, in the background).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.api_get_with(&app.client, "/x").await.status(), StatusCode::OK);
    app.clock.advance(31 * 60);
    assert_eq!(
        app.api_get_with(&app.client, "/x").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// REQ-25: a login that passed the password but not the code reaches nothing else: a
/// navigation goes back to its own step, anything else gets 401.
#[tokio::test]
async fn req25_a_pending_login_reaches_only_its_own_step() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    let b = app.new_browser();
    app.clock.advance(30);
    app.login_with(&b, "alice", ALICE_PASSWORD).await;
    for path in ["/", "/dashboard", "/api/v1/items"] {
        assert_eq!(location(&app.get_with(&b, path).await), "/_kanmon/code", "{path}");
        assert_eq!(
            app.api_get_with(&b, path).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(location(&app.get_with(&b, "/_kanmon/enroll").await), "/_kanmon/code");
    assert!(app.upstream.seen().is_empty());
    let r = app.submit_code_with(&b, "/_kanmon/code", &totp(&key, app.now())).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the pending login still completes");
}
