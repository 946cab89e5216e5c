//! A person logging in: first login with the QR code read off the screen (M-5, M-6,
//! G-1, G-2, G-3), in Japanese and in English (switch link, Accept-Language); a later
//! login with a wrong code and then the right one (M-9, errors announced and tied to
//! the field); the whole thing with the keyboard only.

use thirtyfour::prelude::*;

use crate::browser::{Browser, require_browser};
use crate::helpers::*;
use crate::{EN, JA, KeyUri, Labels, decode_qr, trusted_app, wrong_code};

/// Login screen: types user ID and password and presses the button.
pub async fn submit_password(b: &Browser, user: &str, password: &str) {
    b.fill("user", user).await;
    b.fill("password", password).await;
    b.submit_button().await.click().await.unwrap();
}

/// On the "Scan QR code" screen: reads the QR code from a screenshot of the page and
/// checks it against the key printed under it.
pub async fn scan_qr(b: &Browser) -> KeyUri {
    let png = b.screenshot_png().await;
    let uri = KeyUri::parse(&decode_qr(&png));
    assert_eq!(uri.kind, "totp", "{uri:?}");
    assert_eq!(uri.label, "AVM EX:alice", "{uri:?}");
    assert_eq!(uri.issuer.as_deref(), Some("AVM EX"), "{uri:?}");
    assert_eq!(uri.algorithm.as_deref().unwrap_or("SHA1"), "SHA1", "{uri:?}");
    assert_eq!(uri.digits.as_deref().unwrap_or("6"), "6", "{uri:?}");
    assert_eq!(uri.period.as_deref().unwrap_or("30"), "30", "{uri:?}");
    assert_eq!(uri.secret.len(), 32, "160-bit secret: {uri:?}");
    assert_eq!(
        b.manual_key().await,
        uri.secret,
        "the key under the QR code is the QR code's secret"
    );
    uri
}

/// The upstream's record of the request for `uri` (the browser asks for more, such as
/// `/favicon.ico`).
fn seen_at(app: &TestApp, uri: &str) -> crate::upstream::Seen {
    let seen = app.upstream.seen();
    seen.iter()
        .find(|s| s.uri == uri)
        .unwrap_or_else(|| panic!("the upstream never saw {uri}: {seen:?}"))
        .clone()
}

/// From the login screen to the protected page, for alice's first login: password,
/// the QR code read off the screen, the code of the authenticator app typed in.
async fn first_login(b: &Browser, now: i64, l: &Labels, target: &str) {
    b.wait_h1(l.login).await;
    assert_eq!(b.html_lang().await, l.lang);
    assert_eq!(b.label_of("user").await, l.user_id);
    assert_eq!(b.label_of("password").await, l.password);
    assert_eq!(b.submit_button().await.text().await.unwrap(), l.login);
    submit_password(b, "alice", ALICE_PASSWORD).await;

    b.wait_path("/_kanmon/enroll").await;
    assert_eq!(b.h1().await, l.enroll);
    let uri = scan_qr(b).await;
    let hint = b.find(By::Css("p.hint")).await.unwrap().text().await.unwrap();
    assert_eq!(hint, l.hint);
    assert_eq!(b.label_of("code").await, l.code_label);
    assert_eq!(b.submit_button().await.text().await.unwrap(), l.submit);
    b.fill("code", &totp(&uri.secret, now)).await;
    b.submit_button().await.click().await.unwrap();

    b.wait_path(target).await;
    let page = b.body_text().await;
    assert!(
        page.contains("remote-user: alice"),
        "the upstream's page, reached as alice: {page}"
    );
}

/// M-5, M-6, G-1, G-2: a browser that prefers Japanese asks for a protected page, is
/// sent to the login screen (ログイン), and after the password and the code read from
/// the QR code lands on the page it asked for, served by the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m5_m6_first_login_in_japanese_with_the_qr_code_read_off_the_screen() {
    require_browser!();
    let app = trusted_app().await;
    let b = Browser::open(JA.accept, 1280, 800).await;
    b.goto(app.url("/anything")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    first_login(&b, app.now(), &JA, "/anything").await;
    let seen = seen_at(&app, "/anything");
    assert_eq!(seen.header("remote-user").as_deref(), Some("alice"));
    b.close().await;
}

/// The same in English, chosen with the switch on the login screen of a browser that
/// prefers Japanese; the page first asked for survives the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_in_english_chosen_with_the_language_switch() {
    require_browser!();
    let app = trusted_app().await;
    let b = Browser::open(JA.accept, 1280, 800).await;
    b.goto(app.url("/anything?x=1")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    b.wait_h1(JA.login).await;
    let switch = b.find(By::LinkText(EN.switch_here)).await.unwrap();
    assert_eq!(switch.attr("hreflang").await.unwrap().as_deref(), Some("en"));
    switch.click().await.unwrap();
    b.wait_h1(EN.login).await;
    first_login(&b, app.now(), &EN, "/anything").await;
    seen_at(&app, "/anything?x=1");
    b.close().await;
}

/// The same in English because the browser asks for it (Accept-Language: en-US).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_in_english_from_accept_language() {
    require_browser!();
    let app = trusted_app().await;
    let b = Browser::open(EN.accept, 1280, 800).await;
    b.goto(app.url("/anything")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    first_login(&b, app.now(), &EN, "/anything").await;
    let accept_language = seen_at(&app, "/anything").header("accept-language").unwrap_or_default();
    assert!(accept_language.starts_with("en-US"), "{accept_language}");
    b.close().await;
}

/// M-9: a later login asks for the code; a wrong code is refused with a message that
/// is announced (`role="alert"`) and tied to the field (`aria-describedby`), and the
/// right code then opens the page first asked for.
async fn later_login_wrong_code_then_right_one(l: &Labels) {
    let app = trusted_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let b = Browser::open(l.accept, 1280, 800).await;
    b.goto(app.url("/reports?month=5")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    b.wait_h1(l.login).await;
    submit_password(&b, "alice", ALICE_PASSWORD).await;

    b.wait_path("/_kanmon/code").await;
    assert_eq!(b.h1().await, l.code_screen);
    assert_eq!(b.label_of("code").await, l.code_label);
    assert_eq!(b.attr_of("code", "aria-describedby").await, None, "no error yet");
    b.fill("code", &wrong_code(&key, app.now())).await;
    b.submit_button().await.click().await.unwrap();

    let alert = b.wait_css("[role=alert]").await;
    assert!(alert.is_displayed().await.unwrap(), "the error is visible");
    assert!(!alert.text().await.unwrap().trim().is_empty());
    let alert_id = alert.id().await.unwrap().expect("the error has an id");
    assert_eq!(b.attr_of("code", "aria-describedby").await, Some(alert_id));
    assert_eq!(b.attr_of("code", "aria-invalid").await.as_deref(), Some("true"));
    assert_eq!(b.path().await, "/_kanmon/code");

    b.fill("code", &totp(&key, app.now())).await;
    b.submit_button().await.click().await.unwrap();
    b.wait_path("/reports").await;
    assert!(b.body_text().await.contains("remote-user: alice"));
    seen_at(&app, "/reports?month=5");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m9_later_login_wrong_code_then_right_one_in_japanese() {
    require_browser!();
    later_login_wrong_code_then_right_one(&JA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m9_later_login_wrong_code_then_right_one_in_english() {
    require_browser!();
    later_login_wrong_code_then_right_one(&EN).await;
}

/// Presses Tab until the focus is on the form's submit button (at most `max` times).
async fn tab_to_submit(b: &Browser, max: usize) {
    for _ in 0..max {
        b.type_keys(Key::Tab).await;
        if b.focused().await == "button[submit]#" {
            return;
        }
    }
    panic!("Tab never reached the submit button; focus on {}", b.focused().await);
}

/// Keyboard only: the focus starts in the first field of every form, and login,
/// enrollment, logout and the code form are completed with typing, Tab and Enter —
/// including a wrong password, whose error is announced and tied to the fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_login_enrollment_logout_and_code() {
    require_browser!();
    let app = trusted_app().await;
    let b = Browser::open(JA.accept, 1280, 800).await;
    b.goto(app.url("/private")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    assert_eq!(b.focused_id().await, "user", "focus lands on the user ID");

    // A wrong password first.
    b.type_keys("alice" + Key::Tab + "not-the-password" + Key::Enter).await;
    let alert = b.wait_css("[role=alert]").await;
    assert!(alert.is_displayed().await.unwrap());
    let alert_id = alert.id().await.unwrap().expect("the error has an id");
    for field in ["user", "password"] {
        assert_eq!(b.attr_of(field, "aria-describedby").await.as_ref(), Some(&alert_id));
    }
    assert_eq!(b.focused_id().await, "user", "focus back on the first field");
    assert_eq!(
        b.by_id("user").await.prop("value").await.unwrap().as_deref(),
        Some("alice")
    );
    b.type_keys(Key::Tab + ALICE_PASSWORD + Key::Enter).await;

    // Enrollment: the code field has the focus; Tab leads to the button.
    b.wait_path("/_kanmon/enroll").await;
    assert_eq!(b.focused_id().await, "code", "focus lands on the code field");
    let key = b.manual_key().await;
    b.type_keys(totp(&key, app.now())).await;
    b.type_keys(Key::Tab).await;
    assert_eq!(b.focused().await, "button[submit]#", "Tab from the code reaches Submit");
    b.type_keys(Key::Enter).await;
    b.wait_path("/private").await;
    assert!(b.body_text().await.contains("remote-user: alice"));

    // Logout: Tab to the button, Enter.
    b.goto(app.url("/_kanmon/logout")).await.unwrap();
    b.wait_path("/_kanmon/logout").await;
    tab_to_submit(&b, 8).await;
    b.type_keys(Key::Enter).await;
    b.wait_css("main [role=status]").await;
    assert!(b.find_all(By::Css("main form")).await.unwrap().is_empty(), "logged out");

    // A later login: the code form, a wrong code, then the right one.
    app.clock.advance(30);
    b.goto(app.url("/private")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    assert_eq!(b.focused_id().await, "user");
    b.type_keys("alice" + Key::Tab + ALICE_PASSWORD + Key::Enter).await;
    b.wait_path("/_kanmon/code").await;
    assert_eq!(b.focused_id().await, "code", "focus lands on the code field");
    b.type_keys(wrong_code(&key, app.now()) + Key::Enter).await;
    b.wait_css("[role=alert]").await;
    assert_eq!(b.focused_id().await, "code", "focus back on the code field");
    assert_eq!(
        b.attr_of("code", "aria-describedby").await.as_deref(),
        Some("code-error")
    );
    b.type_keys(totp(&key, app.now()) + Key::Enter).await;
    b.wait_path("/private").await;
    assert!(b.body_text().await.contains("remote-user: alice"));
    b.close().await;
}
