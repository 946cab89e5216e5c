//! End-to-end tests in a real browser (issue 7): Debian's Chromium, headless, driven
//! through chromedriver (WebDriver). Every test starts its own gateway over TLS on a
//! random port — in front of the recording upstream of the integration tests, or of
//! the built-in demo dashboard — and its own browser, and acts like a person: reads
//! the QR code from a screenshot, types codes, uses the keyboard only, looks at the
//! layout on a desktop and a phone viewport.
//!
//! The browsers trust the gateways' certificates through an NSS database with a test CA
//! (see `certs`), not by ignoring certificate errors.
//!
//! Without /usr/bin/chromium, /usr/bin/chromedriver and /usr/bin/certutil every test
//! says it was skipped and passes; with the environment variable `CI` set, a missing
//! browser fails them.
//! `KANMON_SCREENSHOTS=1` rewrites `docs/screenshots/`.

#[path = "../it/helpers.rs"]
mod helpers;
// Not every part of the integration tests' upstream is used here.
#[allow(dead_code)]
#[path = "../it/upstream.rs"]
mod upstream;
// The real SMTP server of the integration tests, for the reset e-mail.
#[allow(dead_code)]
#[path = "../it/smtp.rs"]
mod smtp;

mod browser;
mod certs;

mod flows;
mod layout;
mod live;
mod reset;
mod screenshots;

use std::sync::Arc;

use kanmon::clock::{Clock, ManualClock};

use crate::helpers::{START, Setup, TestApp, client, hashes, spawn_with};

/// A gateway in front of the recording upstream (as `spawn_with` of the integration
/// tests) with a certificate from the test CA, which the browsers trust.
pub async fn trusted_gateway(setup: Setup) -> TestApp {
    spawn_with(Setup {
        tls: Some(certs::gateway_tls()),
        ..setup
    })
    .await
}

/// `trusted_gateway` with the integration tests' default setup.
pub async fn trusted_app() -> TestApp {
    trusted_gateway(Setup::default()).await
}

/// What a screen must say, per language, as BEHAVIOUR.md's table of labels has it.
pub struct Labels {
    /// Accept-Language of a browser that prefers this language.
    pub accept: &'static str,
    /// `<html lang>`.
    pub lang: &'static str,
    pub login: &'static str,
    pub user_id: &'static str,
    pub password: &'static str,
    pub enroll: &'static str,
    pub hint: &'static str,
    pub code_label: &'static str,
    pub submit: &'static str,
    pub code_screen: &'static str,
    /// The language switch that leads to this language from the other one.
    pub switch_here: &'static str,
    /// The button on the code screen that sends the reset e-mail.
    pub reset_button: &'static str,
    /// The start and end of the notice after it, around the masked address.
    pub reset_sent: (&'static str, &'static str),
    /// The confirmation page behind the link: heading, question, button.
    pub reset_confirm_title: &'static str,
    pub reset_question: &'static str,
    pub reset_confirm: &'static str,
    /// The page for the link opened in another browser.
    pub reset_other_browser: &'static str,
    /// The login screen's notice after the reset.
    pub reset_done: &'static str,
    pub logout: &'static str,
    pub logged_out: &'static str,
}

pub const JA: Labels = Labels {
    accept: "ja",
    lang: "ja",
    login: "ログイン",
    user_id: "ユーザーID",
    password: "パスワード",
    enroll: "QRコードをスキャン",
    hint: "QRコードをスキャンできない場合はコードを手入力してください。",
    code_label: "Authenticator App コード",
    submit: "送信",
    code_screen: "認証コードを入力",
    switch_here: "日本語",
    reset_button: "二段階認証をリセット",
    reset_sent: (
        "「Two-Factor Authentication Reset」という件名のメールを ",
        " に送信しました。",
    ),
    reset_confirm_title: "二段階認証のリセット",
    reset_question: "アカウント alice から認証アプリケーションの関連付けを解除しますか?",
    reset_confirm: "関連付けを解除",
    reset_other_browser: "このリンクは「二段階認証をリセット」をクリックしたWebブラウザーで開いてください。",
    reset_done: "二段階認証がリセットされました。",
    logout: "ログアウト",
    logged_out: "ログアウトしました。",
};

pub const EN: Labels = Labels {
    accept: "en-US",
    lang: "en",
    login: "Log in",
    user_id: "User ID",
    password: "Password",
    enroll: "Scan QR code",
    hint: "If you cannot scan the QR code, enter the code manually.",
    code_label: "Authenticator App code",
    submit: "Submit",
    code_screen: "Enter authentication code",
    switch_here: "English",
    reset_button: "Reset two-step authentication",
    reset_sent: (
        "An e-mail with the subject “Two-Factor Authentication Reset” was sent to ",
        ". ",
    ),
    reset_confirm_title: "Reset two-step authentication",
    reset_question: "Remove the authenticator from account alice?",
    reset_confirm: "Remove the authenticator",
    reset_other_browser: "Open this link in the browser where you clicked “Reset two-step authentication”.",
    reset_done: "Two-step authentication was reset.",
    logout: "Log out",
    logged_out: "You have been logged out.",
};

/// The `otpauth://` key URI of a QR code, taken apart.
#[derive(Debug)]
pub struct KeyUri {
    pub kind: String,
    pub label: String,
    pub secret: String,
    pub issuer: Option<String>,
    pub algorithm: Option<String>,
    pub digits: Option<String>,
    pub period: Option<String>,
}

impl KeyUri {
    pub fn parse(text: &str) -> KeyUri {
        let url = url::Url::parse(text).unwrap_or_else(|e| panic!("not a URI in the QR code: {text:?}: {e}"));
        assert_eq!(url.scheme(), "otpauth", "{text}");
        let label = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
            .decode_utf8()
            .unwrap()
            .into_owned();
        let q = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        KeyUri {
            kind: url.host_str().unwrap_or("").to_owned(),
            label,
            secret: q("secret").unwrap_or_else(|| panic!("no secret in {text}")),
            issuer: q("issuer"),
            algorithm: q("algorithm"),
            digits: q("digits"),
            period: q("period"),
        }
    }
}

/// Reads the one QR code in a PNG screenshot.
pub fn decode_qr(png: &[u8]) -> String {
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .expect("a PNG screenshot")
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the screenshot");
    let (_meta, content) = grids[0].decode().expect("a readable QR code");
    content
}

/// A 6-digit code that is not the right one at `now`, nor at any step the gateway
/// would explain as a clock offset: a plain wrong code.
pub fn wrong_code(key: &str, now: i64) -> String {
    let near: Vec<String> = (-40..=40).map(|step| helpers::totp(key, now + step * 30)).collect();
    (0..10u32)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .expect("some repeated digit is no code nearby")
}

/// Writes a screenshot to `docs/screenshots/<name>.png`, only when asked with
/// `KANMON_SCREENSHOTS=1` (normal test runs leave the committed files alone).
pub fn keep_screenshot(name: &str, png: &[u8]) {
    if std::env::var("KANMON_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A gateway in front of the built-in demo dashboard (`upstream: { url: demo }`), with
/// a two-step account (alice) and one without (carol).
pub struct DemoGateway {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    _running: kanmon::Running,
}

impl DemoGateway {
    pub async fn start() -> DemoGateway {
        let dir = tempfile::tempdir().unwrap();
        let tls = certs::gateway_tls();
        std::fs::write(dir.path().join("cert.pem"), &tls.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &tls.key_pem).unwrap();
        let [a, _, c] = hashes();
        let yaml = format!(
            r#"listen: 127.0.0.1:0
tls: {{ cert: cert.pem, key: key.pem }}
upstream: {{ url: demo }}
data_dir: data
issuer: AVM EX
default_lang: ja
smtp: {{ host: 127.0.0.1, port: 2525, security: none, from: "AVM EX <avm@example.com>" }}
users:
  - {{ id: alice, email: alice@example.com, password_hash: "{a}", role: admin, two_factor: true }}
  - {{ id: carol, email: carol@example.com, password_hash: "{c}", role: user, two_factor: false }}
"#
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = kanmon::Config::load(&path).unwrap();
        let clock = ManualClock::new(START);
        let options = kanmon::Options {
            clock: clock.clone(),
            hash_workers: 1,
            ..kanmon::Options::default()
        };
        let running = kanmon::build(config, options).await.unwrap();
        DemoGateway {
            base: format!("https://localhost:{}", running.addr.port()),
            clock,
            client: client(&tls.trust_pem),
            _dir: dir,
            _running: running,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
