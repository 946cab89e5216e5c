//! The screens on a 1280×800 desktop and a 390×844 phone viewport: no horizontal
//! scroll, the QR code at least 200 CSS px and fully visible, the manual key wrapping
//! only between its groups of four, the submit button on screen and clickable.

use serde::Deserialize;
use thirtyfour::prelude::*;

use crate::browser::{Browser, require_browser};
use crate::flows::submit_password;
use crate::helpers::*;
use crate::{EN, JA, trusted_app, wrong_code};

#[derive(Debug, Deserialize)]
struct Rect {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
    width: f64,
    height: f64,
}

#[derive(Debug, Deserialize)]
struct Viewport {
    width: f64,
    height: f64,
    scroll_width: f64,
}

async fn viewport(b: &Browser) -> Viewport {
    b.js("return { width: window.innerWidth, height: window.innerHeight, \
          scroll_width: document.documentElement.scrollWidth }")
        .await
}

async fn rect(b: &Browser, el: &WebElement) -> Rect {
    b.js_on(
        el,
        "const r = arguments[0].getBoundingClientRect(); \
         return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height }",
    )
    .await
}

fn inside(r: &Rect, v: &Viewport) -> bool {
    r.left >= 0.0 && r.top >= 0.0 && r.right <= v.width && r.bottom <= v.height
}

/// What every screen must satisfy at every size.
async fn check_screen(b: &Browser, what: &str, width: u32, height: u32) {
    b.js::<()>("window.scrollTo(0, 0)").await;
    let v = viewport(b).await;
    assert_eq!(
        (v.width, v.height),
        (f64::from(width), f64::from(height)),
        "{what}: the viewport"
    );
    assert!(
        v.scroll_width <= v.width,
        "{what} at {width}×{height}: horizontal scroll ({} > {})",
        v.scroll_width,
        v.width
    );
    // The button: on screen once scrolled to, and the element under its centre.
    let button = b.submit_button().await;
    assert!(button.is_displayed().await.unwrap(), "{what}: submit button displayed");
    b.js_on::<()>(&button, "arguments[0].scrollIntoView({ block: 'nearest' })")
        .await;
    let r = rect(b, &button).await;
    assert!(inside(&r, &v), "{what} at {width}×{height}: button {r:?} off screen");
    assert!(r.width >= 44.0 && r.height >= 30.0, "{what}: button big enough: {r:?}");
    let on_top: bool = b
        .js_on(
            &button,
            "const r = arguments[0].getBoundingClientRect(); \
             const e = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2); \
             return e === arguments[0] || arguments[0].contains(e)",
        )
        .await;
    assert!(on_top, "{what}: nothing covers the button");
    b.js::<()>("window.scrollTo(0, 0)").await;
}

/// The enrollment screen: the QR code and the key.
async fn check_enrollment(b: &Browser, width: u32, height: u32) {
    check_screen(b, "enrollment", width, height).await;
    let v = viewport(b).await;
    let qr = b.find(By::Css(".qr svg")).await.unwrap();
    let r = rect(b, &qr).await;
    assert!(
        r.width >= 200.0 && r.height >= 200.0,
        "QR code at {width}×{height} is {r:?}"
    );
    assert!(inside(&r, &v), "QR code at {width}×{height} not fully visible: {r:?}");

    #[derive(Debug, Deserialize)]
    struct Group {
        text: String,
        boxes: usize,
        right: f64,
    }
    let groups: Vec<Group> = b
        .js(
            "return Array.from(document.querySelectorAll('#manual-key span')).map(s => \
             ({ text: s.textContent, boxes: s.getClientRects().length, right: s.getBoundingClientRect().right }))",
        )
        .await;
    assert_eq!(groups.len(), 8, "32 characters in groups of four: {groups:?}");
    for g in &groups {
        assert_eq!(g.text.chars().count(), 4, "{groups:?}");
        assert_eq!(g.boxes, 1, "group {} split across lines at {width}×{height}", g.text);
        assert!(g.right <= v.width, "group {} off screen: {groups:?}", g.text);
    }
}

async fn layout_at(width: u32, height: u32) {
    let app = trusted_app().await;
    let b = Browser::open(JA.accept, width, height).await;
    b.goto(app.url("/page")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    check_screen(&b, "login (ja)", width, height).await;

    // A failed login: the error does not widen the page.
    submit_password(&b, "alice", "wrong").await;
    b.wait_css("[role=alert]").await;
    check_screen(&b, "login with error (ja)", width, height).await;
    submit_password(&b, "alice", ALICE_PASSWORD).await;

    b.wait_path("/_kanmon/enroll").await;
    check_enrollment(&b, width, height).await;
    // The same screen in English (the same pending key).
    b.find(By::LinkText(EN.switch_here))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_h1(EN.enroll).await;
    check_enrollment(&b, width, height).await;
    let key = b.manual_key().await;
    b.fill("code", &totp(&key, app.now())).await;
    b.submit_button().await.click().await.unwrap();
    b.wait_path("/page").await;

    // The code screen, plain and with an error.
    b.delete_all_cookies().await.unwrap();
    app.clock.advance(30);
    b.goto(app.url("/page")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    submit_password(&b, "alice", ALICE_PASSWORD).await;
    b.wait_path("/_kanmon/code").await;
    check_screen(&b, "code (ja)", width, height).await;
    b.fill("code", &wrong_code(&key, app.now())).await;
    b.submit_button().await.click().await.unwrap();
    b.wait_css("[role=alert]").await;
    check_screen(&b, "code with error (ja)", width, height).await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_on_a_1280x800_desktop() {
    require_browser!();
    layout_at(1280, 800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_on_a_390x844_phone() {
    require_browser!();
    layout_at(390, 844).await;
}
