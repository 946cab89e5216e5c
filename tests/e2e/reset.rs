//! M-12 … M-15 in a browser: the reset button on the code screen, the e-mail through a
//! real SMTP server on loopback, its link opened in the same browser, the confirmation,
//! the login screen's notice and the enrollment of a new key — and the same link in
//! another browser, which only explains where to open it.

use thirtyfour::prelude::*;

use crate::browser::{Browser, require_browser};
use crate::flows::{scan_qr, submit_password};
use crate::helpers::*;
use crate::smtp::{Mode, SmtpSink};
use crate::{EN, JA, Labels, trusted_gateway};

/// The subject of the reset e-mail, in English in both languages (BEHAVIOUR.md).
const SUBJECT: &str = "Two-Factor Authentication Reset";

async fn reset_by_email(l: &Labels, other: &Labels) {
    let sink = SmtpSink::start(Mode::Plain);
    let app = trusted_gateway(Setup {
        smtp_yaml: Some(sink.yaml("none", "")),
        ..Setup::default()
    })
    .await;
    let old_key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);

    // Password, then the reset button instead of a code.
    let b = Browser::open(l.accept, 1280, 800).await;
    b.goto(app.url("/reports")).await.unwrap();
    b.wait_path("/_kanmon/login").await;
    submit_password(&b, "alice", ALICE_PASSWORD).await;
    b.wait_path("/_kanmon/code").await;
    b.wait_h1(l.code_screen).await;
    let button = b
        .find(By::Css("main form.reset button[type=submit]"))
        .await
        .expect("M-12: the reset button on the code screen");
    assert_eq!(button.text().await.unwrap(), l.reset_button);
    button.click().await.unwrap();

    // The screen says where the mail went (masked), and the code form stays (M-13).
    let notice = b.wait_css("main .notice[role=status]").await.text().await.unwrap();
    assert!(
        notice.starts_with(l.reset_sent.0) && notice.contains(&format!("a***@example.com{}", l.reset_sent.1)),
        "{notice}"
    );
    assert!(!notice.contains("alice@example.com"), "{notice}");
    assert_eq!(b.h1().await, l.code_screen);
    assert_eq!(b.label_of("code").await, l.code_label);

    // The language switch on that screen leads to the code screen, not to a dead end.
    b.find(By::LinkText(other.switch_here))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_h1(other.code_screen).await;
    b.find(By::LinkText(l.switch_here))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_h1(l.code_screen).await;

    // The mail, from the real SMTP server.
    let mail = sink.wait_subject(SUBJECT).await;
    assert_eq!(mail.rcpt_tos, ["alice@example.com"]);
    let link = mail.link();
    assert!(
        link.starts_with(&app.url("/_kanmon/reset/confirm?t=")),
        "M-14: the host the browser used: {link}"
    );

    // REQ-42: in another browser the link only explains where to open it.
    let elsewhere = Browser::open(l.accept, 1280, 800).await;
    elsewhere.goto(&link).await.unwrap();
    elsewhere.wait_path("/_kanmon/reset/confirm").await;
    elsewhere.wait_h1(l.reset_confirm_title).await;
    let alert = elsewhere.wait_css("main [role=alert]").await.text().await.unwrap();
    assert!(alert.starts_with(l.reset_other_browser), "{alert}");
    assert!(
        elsewhere
            .find_all(By::Css("main form, main button"))
            .await
            .unwrap()
            .is_empty(),
        "no button in another browser"
    );
    elsewhere.close().await;

    // The same browser: the page asks first (REQ-41), the button removes the key.
    b.goto(&link).await.unwrap();
    b.wait_path("/_kanmon/reset/confirm").await;
    b.wait_h1(l.reset_confirm_title).await;
    let page = b.body_text().await;
    assert!(page.contains(l.reset_question), "{page}");
    let confirm = b.submit_button().await;
    assert_eq!(confirm.text().await.unwrap(), l.reset_confirm);
    confirm.click().await.unwrap();

    // M-15: the login screen says so, at an address without the token (REQ-44).
    b.wait_path("/_kanmon/login").await;
    b.wait_h1(l.login).await;
    let url = b.current_url().await.unwrap();
    assert_eq!(url.query(), Some("notice=reset_done"));
    let notice = b.wait_css("main .notice[role=status]").await.text().await.unwrap();
    assert!(notice.starts_with(l.reset_done), "{notice}");

    // The next login enrolls a new key, read off the screen, and opens the site.
    app.clock.advance(30);
    submit_password(&b, "alice", ALICE_PASSWORD).await;
    b.wait_path("/_kanmon/enroll").await;
    assert_eq!(b.h1().await, l.enroll);
    let key = scan_qr(&b).await.secret;
    assert_ne!(key, old_key, "a new key");
    b.fill("code", &totp(&key, app.now())).await;
    b.submit_button().await.click().await.unwrap();
    b.wait_path("/").await;
    let page = b.body_text().await;
    assert!(page.contains("remote-user: alice"), "the upstream's page: {page}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m12_m15_reset_by_email_in_japanese() {
    require_browser!();
    reset_by_email(&JA, &EN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m12_m15_reset_by_email_in_english() {
    require_browser!();
    reset_by_email(&EN, &JA).await;
}
