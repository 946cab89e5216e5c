//! Failure limits at the code and password steps (REQ-9 … REQ-15), driven with the
//! injected clock.

use reqwest::StatusCode;

use crate::helpers::*;

fn wrong_for(right: &str) -> &'static str {
    if right == "000000" { "111111" } else { "000000" }
}

/// Starts a login up to the code screen in a fresh browser; returns it and the form token.
async fn at_code_step(app: &TestApp) -> (reqwest::Client, String) {
    let b = app.new_browser();
    let r = app.login_with(&b, "alice", ALICE_PASSWORD).await;
    assert_eq!(location(&r), "/_kanmon/code");
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    (b, csrf_of(&page))
}

async fn submit(app: &TestApp, b: &reqwest::Client, csrf: &str, code: &str) -> (StatusCode, String) {
    let r = app
        .post_with(b, "/_kanmon/code", &[("csrf", csrf), ("code", code)])
        .await;
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// The page without the parts that differ per request.
fn masked(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").next().unwrap().to_owned()
}

/// REQ-10, REQ-12: five wrong codes in one browser slow the account down in another;
/// while slowed, the right code gets exactly the wrong code's answer.
#[tokio::test]
async fn req10_req12_failures_count_per_account_across_browsers() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let (a, csrf) = at_code_step(&app).await;
    let wrong = wrong_for(&totp(&key, app.now()));
    for _ in 0..5 {
        submit(&app, &a, &csrf, wrong).await;
    }
    let (b, csrf) = at_code_step(&app).await;
    let (right_status, right_page) = submit(&app, &b, &csrf, &totp(&key, app.now())).await;
    let (wrong_status, wrong_page) = submit(&app, &b, &csrf, wrong).await;
    assert_eq!(
        right_status,
        StatusCode::UNAUTHORIZED,
        "a right code is refused while slowed"
    );
    assert_eq!(
        (right_status, masked(&right_page)),
        (wrong_status, masked(&wrong_page)),
        "same answer"
    );
    assert_eq!(app.api_get_with(&b, "/x").await.status(), StatusCode::UNAUTHORIZED);

    app.clock.advance(31);
    let (c, csrf) = at_code_step(&app).await;
    let (status, _) = submit(&app, &c, &csrf, &totp(&key, app.now())).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "after the back-off the right code works");
}

/// REQ-13: a success clears the count.
#[tokio::test]
async fn req13_a_success_clears_the_count() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    for round in 0..2 {
        app.clock.advance(30);
        let (b, csrf) = at_code_step(&app).await;
        let right = totp(&key, app.now());
        for _ in 0..4 {
            submit(&app, &b, &csrf, wrong_for(&right)).await;
        }
        let (status, _) = submit(&app, &b, &csrf, &right).await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "round {round}: four failures and a success never slow down"
        );
    }
}

/// REQ-11: after a hundred wrong codes in a row (respecting the back-off) the code step
/// is locked; even the right code fails, the user is told, and a reset clears it.
#[tokio::test]
async fn req11_a_hundred_failures_lock_the_code_step() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    for n in 0..100u32 {
        // Wait out the back-off, so every try is counted (30 s from the fifth failure,
        // doubling every five, at most 15 minutes); a fresh login each time, since a
        // pending login lives ten minutes.
        if n >= 5 {
            app.clock.advance((30i64 << ((n - 5) / 5).min(20)).min(15 * 60) + 1);
        }
        let (b, csrf) = at_code_step(&app).await;
        let (status, _) = submit(&app, &b, &csrf, wrong_for(&totp(&key, app.now()))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {n}");
    }
    app.clock.advance(15 * 60 + 1);
    let (b, csrf) = at_code_step(&app).await;
    let (status, page) = submit(&app, &b, &csrf, &totp(&key, app.now())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "locked: the right code is refused");
    assert!(
        page.contains("コードが正しくありません"),
        "with the wrong code's message"
    );
    let audit = app.running().app.store.recent_audit(50).unwrap();
    assert!(
        audit.iter().any(|e| e.event == "account.locked"),
        "the lock is in the audit trail"
    );
    app.clock.advance(24 * 3600);
    let (b, csrf) = at_code_step(&app).await;
    let (status, _) = submit(&app, &b, &csrf, &totp(&key, app.now())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a lock does not expire by itself");
}

/// REQ-15, REQ-34: the password step is limited per user ID and per address; unknown
/// users are limited exactly like known ones, and the answer says when to come back.
#[tokio::test]
async fn req15_password_failures_are_limited_per_account_and_address() {
    let app = spawn_app().await;
    for user in ["carol", "nobody"] {
        for i in 0..10 {
            let r = app.login(user, "wrong password").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user} attempt {i}");
        }
        let r = app
            .login(user, if user == "carol" { CAROL_PASSWORD } else { "x" })
            .await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{user}: the limit holds even for the right password"
        );
        let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry > 0 && retry <= 15 * 60, "{retry}");
        assert!(r.text().await.unwrap().contains("分後にもう一度"), "a clear message");
    }
    app.clock.advance(15 * 60);
    let b = app.new_browser();
    assert_eq!(
        location(&app.login_with(&b, "carol", CAROL_PASSWORD).await),
        "/",
        "the window passes"
    );

    // Per address: many user IDs from one address.
    for i in 0..50 {
        app.login(&format!("user{i}"), "wrong").await;
    }
    let r = app.login_with(&app.new_browser(), "carol", CAROL_PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "fifty failures from one address stop it"
    );
}

/// `n` pending logins of alice, made at once, each at the code step.
async fn pending_logins(app: &TestApp, n: usize) -> Vec<(reqwest::Client, String)> {
    futures_util::future::join_all((0..n).map(|_| at_code_step(app))).await
}

/// `n` wrong codes, one from each pending login, all at once; every answer is the
/// wrong code's.
async fn wrong_codes_at_once(app: &TestApp, logins: &[(reqwest::Client, String)], wrong: &str) {
    let answers = futures_util::future::join_all(logins.iter().map(|(b, csrf)| submit(app, b, csrf, wrong))).await;
    for (status, _) in answers {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

fn audited(app: &TestApp, event: &str) -> usize {
    let audit = app.running().app.store.recent_audit(1000).unwrap();
    audit.iter().filter(|e| e.event == event).count()
}

/// REQ-7, REQ-10: wrong codes submitted at the same moment from several pending logins
/// of one account are all counted against the account: no lost update. Five at once
/// (as many as are checked before the account slows down), in several rounds.
#[tokio::test]
async fn req7_req10_concurrent_wrong_codes_are_all_counted() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    let store = &app.running().app.store;
    let n = kanmon::auth::throttle::SLOW_AFTER as usize;
    for round in 0..5 {
        app.clock.advance(30);
        let logins = pending_logins(&app, n).await;
        wrong_codes_at_once(&app, &logins, wrong_for(&totp(&key, app.now()))).await;
        let counted = store.code_failures("alice").unwrap().consecutive;
        assert_eq!(
            counted as usize, n,
            "round {round}: {n} wrong codes at once, {counted} counted"
        );
        store.clear_failures("alice", true, false).unwrap();
    }
    assert_eq!(audited(&app, "login.code_failed"), 5 * n);
}

/// REQ-10, REQ-12: many wrong codes at the same moment cannot slip past the account's
/// gate: only as many are checked (and counted) as the gate lets through one by one;
/// the rest get the same answer unchecked.
#[tokio::test]
async fn req10_req12_concurrent_wrong_codes_cannot_outrun_the_gate() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    let slow_after = kanmon::auth::throttle::SLOW_AFTER;
    let n = 3 * slow_after as usize;
    app.clock.advance(30);
    let logins = pending_logins(&app, n).await;
    wrong_codes_at_once(&app, &logins, wrong_for(&totp(&key, app.now()))).await;
    let failures = app.running().app.store.code_failures("alice").unwrap();
    assert_eq!(
        (
            failures.consecutive,
            audited(&app, "login.code_failed"),
            audited(&app, "login.code_throttled")
        ),
        (slow_after, slow_after as usize, n - slow_after as usize),
        "{n} at once: only {slow_after} may be checked"
    );
}
