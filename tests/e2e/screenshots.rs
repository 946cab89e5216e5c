//! The demo as a person sees it, one language at a time at 1280×800: login, QR
//! enrollment, the dashboard behind the gateway, logout (G-7), and the code screen of
//! the next login. With `KANMON_SCREENSHOTS=1` each screen is saved as
//! `docs/screenshots/<screen>-<lang>.png` for the README.

use thirtyfour::prelude::*;

use crate::browser::{Browser, require_browser};
use crate::flows::{scan_qr, submit_password};
use crate::helpers::*;
use crate::{DemoGateway, EN, JA, Labels, keep_screenshot};

async fn tour(l: &Labels) {
    let demo = DemoGateway::start().await;
    let b = Browser::open(l.accept, 1280, 800).await;
    let shot = |screen: &'static str| {
        let b = &b;
        async move {
            keep_screenshot(&format!("{screen}-{}", l.lang), &b.screenshot_png().await);
        }
    };

    b.goto(demo.url("/")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    b.wait_h1(l.login).await;
    shot("login").await;
    submit_password(&b, "alice", ALICE_PASSWORD).await;

    b.wait_path("/_kanmon/enroll").await;
    assert_eq!(b.h1().await, l.enroll);
    let key = scan_qr(&b).await.secret;
    b.by_id("code").await.focus().await.unwrap();
    shot("enroll").await;
    b.fill("code", &totp(&key, demo.now())).await;
    b.submit_button().await.click().await.unwrap();

    b.wait_path("/").await;
    assert_eq!(b.text_of("remote-user").await, "alice");
    assert_eq!(b.text_of("remote-email").await, "alice@example.com");
    assert_eq!(b.text_of("remote-groups").await, "admin");
    shot("dashboard").await;

    // G-7, logout: the dashboard links to it; its button ends the session and the
    // logged-out screen says so; the site asks for a login again.
    b.find(By::Css("a[href='/_kanmon/logout']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_path("/_kanmon/logout").await;
    b.wait_h1(l.logout).await;
    shot("logout").await;
    let button = b.submit_button().await;
    assert_eq!(button.text().await.unwrap(), l.logout);
    button.click().await.unwrap();
    let status = b.wait_css("main [role=status]").await;
    assert_eq!(status.text().await.unwrap(), l.logged_out);
    assert_eq!(b.path().await, "/_kanmon/logout");
    assert_eq!(b.h1().await, l.logout);
    assert!(b.find_all(By::Css("main form")).await.unwrap().is_empty());
    let cookies = b.get_all_cookies().await.unwrap();
    assert!(
        cookies.iter().all(|c| c.name != "__Host-kanmon"),
        "the session cookie is gone: {cookies:?}"
    );
    b.goto(demo.url("/live")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    b.wait_h1(l.login).await;

    // The next login asks for the code.
    demo.clock.advance(30);
    submit_password(&b, "alice", ALICE_PASSWORD).await;
    b.wait_path("/_kanmon/code").await;
    assert_eq!(b.h1().await, l.code_screen);
    shot("code").await;
    b.fill("code", &totp(&key, demo.now())).await;
    b.submit_button().await.click().await.unwrap();
    b.wait_path("/live").await;
    b.wait_h1("ライブ / Live").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g7_the_demo_in_japanese_login_enrollment_dashboard_logout_code() {
    require_browser!();
    tour(&JA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g7_the_demo_in_english_login_enrollment_dashboard_logout_code() {
    require_browser!();
    tour(&EN).await;
}
