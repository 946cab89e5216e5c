//! `spawn_app()` and the helpers that make a test read like a user's story.

// Not every test binary path uses every helper.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, KeyInit, Mac};
use kanmon::clock::ManualClock;
use kanmon::{Config, Options, Running};
use reqwest::{Response, StatusCode};

use crate::upstream::Upstream;

/// A step boundary, so "now" and "the next step" are easy to reason about.
pub const START: i64 = 2_000_000_010;

pub const ALICE_PASSWORD: &str = "alice-correct-horse";
pub const BOB_PASSWORD: &str = "bob-battery-staple";
pub const CAROL_PASSWORD: &str = "carol-no-second-factor";

/// Hashing is slow on purpose; every test process hashes the three passwords once.
pub fn hashes() -> &'static [String; 3] {
    static H: OnceLock<[String; 3]> = OnceLock::new();
    H.get_or_init(|| {
        let rng = kanmon::auth::SystemRandom;
        [ALICE_PASSWORD, BOB_PASSWORD, CAROL_PASSWORD].map(|p| kanmon::auth::password::hash(p, &rng))
    })
}

pub struct Setup {
    /// Extra YAML appended to the generated config.
    pub extra_yaml: String,
    /// Extra keys inside the `upstream:` mapping, e.g. `skip_auth: ["/public/"]`.
    pub upstream_yaml: String,
    pub upstream: bool,
    /// The `smtp:` line (see `SmtpSink::yaml`); by default a port where nobody listens.
    pub smtp_yaml: Option<String>,
    /// Another upstream than the recording one (which still runs, unused), e.g. an
    /// `https://` server or nginx started by the test. `None`: the recording upstream.
    pub upstream_url: Option<String>,
    /// Files written next to the config before it is loaded (name, contents).
    pub files: Vec<(String, String)>,
    /// What the kernel is said to answer about the clock (M-4); the real kernel if unset.
    pub clock_check: Option<kanmon::clock::SyncCheck>,
    /// The gateway's certificate; `None`: a fresh self-signed one.
    pub tls: Option<TestTls>,
}

/// A certificate and key for a test gateway, and what its clients trust (the
/// certificate itself, or the CA that issued it).
pub struct TestTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub trust_pem: String,
}

impl TestTls {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`.
    pub fn self_signed() -> TestTls {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert_pem = ck.cert.pem();
        TestTls {
            trust_pem: cert_pem.clone(),
            cert_pem,
            key_pem: ck.signing_key.serialize_pem(),
        }
    }
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            extra_yaml: String::new(),
            upstream_yaml: String::new(),
            upstream: true,
            smtp_yaml: None,
            upstream_url: None,
            files: Vec::new(),
            clock_check: None,
            tls: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub clock: Arc<ManualClock>,
    pub upstream: Upstream,
    pub client: reqwest::Client,
    /// What clients trust: the gateway's certificate, or the CA that issued it.
    pub cert_pem: String,
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Setup::default()).await
}

pub async fn spawn_with(setup: Setup) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kanmon=warn")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let tls = setup.tls.unwrap_or_else(TestTls::self_signed);
    std::fs::write(dir.path().join("cert.pem"), &tls.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &tls.key_pem).unwrap();
    let cert_pem = tls.trust_pem;
    let upstream = Upstream::start().await;
    if !setup.upstream {
        upstream.stop();
    }
    let up = setup.upstream_url.unwrap_or_else(|| upstream.url());
    let mut yaml = config_yaml(&up, &setup.upstream_yaml, &setup.extra_yaml);
    if let Some(smtp) = setup.smtp_yaml {
        yaml = yaml.replace(DEFAULT_SMTP, &smtp);
    }
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &yaml).unwrap();
    for (name, text) in &setup.files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let config = Config::load(&path).unwrap();
    let clock = ManualClock::new(START);
    let mut options = Options {
        clock: clock.clone(),
        hash_workers: 2,
        ..Options::default()
    };
    if let Some(check) = setup.clock_check {
        options.clock_check = check;
    }
    let running = kanmon::build(config, options).await.unwrap();
    let port = running.addr.port();
    TestApp {
        base: format!("https://localhost:{port}"),
        port,
        clock,
        upstream,
        client: client(&cert_pem),
        cert_pem,
        dir,
        running: Some(running),
    }
}

/// The default `smtp:` line: a port where nobody listens, so mails fail quietly.
pub const DEFAULT_SMTP: &str =
    "smtp: { host: 127.0.0.1, port: 9, security: none, from: \"AVM EX <avm@example.com>\" }\n";

/// The test configuration: `cert.pem`/`key.pem` and `data` next to the file, the three
/// accounts (alice and bob with a second step, carol without), and `upstream_url`.
pub fn config_yaml(upstream_url: &str, upstream_extra: &str, extra: &str) -> String {
    let [a, b, c] = hashes();
    format!(
        r#"listen: 127.0.0.1:0
tls: {{ cert: cert.pem, key: key.pem }}
upstream: {{ url: "{upstream_url}", response_timeout: 2s, connect_timeout: 1s, {upstream_extra} }}
data_dir: data
issuer: AVM EX
default_lang: ja
{DEFAULT_SMTP}users:
  - {{ id: alice, email: alice@example.com, password_hash: "{a}", role: admin, two_factor: true }}
  - {{ id: bob, email: bob@example.com, password_hash: "{b}", role: user, two_factor: true }}
  - {{ id: carol, email: carol@example.com, password_hash: "{c}", role: user, two_factor: false }}
{extra}"#
    )
}

/// A browser-like client: keeps cookies, follows no redirects, trusts only the test's
/// certificate.
pub fn client(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The form token in a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form token in the page") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The manual key under the QR code, without the spaces between groups.
pub fn key_of(html: &str) -> String {
    let start = html.find("id=\"manual-key\"").expect("a manual key on the page");
    let section = &html[start..];
    let end = section.find("</p>").unwrap();
    section[..end]
        .split("<span>")
        .skip(1)
        .map(|s| s.split("</span>").next().unwrap())
        .collect::<String>()
}

/// Reference RFC 6238 code (HMAC-SHA1, 6 digits, 30 s), written independently of the
/// gateway's own implementation.
pub fn totp(base32_key: &str, unix_time: i64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(base32_key.as_bytes())
        .expect("a base32 key");
    let counter = (unix_time / 30) as u64;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[h.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn now(&self) -> i64 {
        use kanmon::clock::Clock;
        self.clock.now()
    }

    /// A fresh browser (its own cookie jar) for the same gateway.
    pub fn new_browser(&self) -> reqwest::Client {
        client(&self.cert_pem)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the gateway is running")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.get_with(&self.client, path).await
    }

    /// A top-level browser navigation.
    pub async fn get_with(&self, c: &reqwest::Client, path: &str) -> Response {
        c.get(self.url(path))
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap()
    }

    /// A same-origin form POST, as the browser sends it from our own page.
    pub async fn post_with(&self, c: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> Response {
        c.post(self.url(path))
            .header("origin", &self.base)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.post_with(&self.client, path, form).await
    }

    /// Opens the login screen and submits user ID and password.
    pub async fn login_with(&self, c: &reqwest::Client, user: &str, password: &str) -> Response {
        let page = self.get_with(c, "/_kanmon/login").await.text().await.unwrap();
        let csrf = csrf_of(&page);
        self.post_with(
            c,
            "/_kanmon/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }

    pub async fn login(&self, user: &str, password: &str) -> Response {
        self.login_with(&self.client, user, password).await
    }

    /// Submits a code on the screen the login is at (`/_kanmon/code` or `/_kanmon/enroll`).
    pub async fn submit_code_with(&self, c: &reqwest::Client, screen: &str, code: &str) -> Response {
        let page = self.get_with(c, screen).await.text().await.unwrap();
        let csrf = csrf_of(&page);
        self.post_with(c, screen, &[("csrf", &csrf), ("code", code)]).await
    }

    /// Password, enrollment screen, first code: returns the manual key.
    pub async fn enroll_with(&self, c: &reqwest::Client, user: &str, password: &str) -> String {
        let r = self.login_with(c, user, password).await;
        assert_eq!(location(&r), "/_kanmon/enroll");
        let page = self.get_with(c, "/_kanmon/enroll").await.text().await.unwrap();
        let key = key_of(&page);
        let r = self
            .post_with(
                c,
                "/_kanmon/enroll",
                &[("csrf", &csrf_of(&page)), ("code", &totp(&key, self.now()))],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "enrollment code accepted");
        key
    }

    pub async fn enroll(&self, user: &str, password: &str) -> String {
        self.enroll_with(&self.client, user, password).await
    }

    /// Logs in with password and code (the authenticator must exist); moves the clock
    /// one step on first, so the code is never a replay.
    pub async fn login_full_with(&self, c: &reqwest::Client, user: &str, password: &str, key: &str) -> Response {
        self.clock.advance(30);
        let r = self.login_with(c, user, password).await;
        assert_eq!(location(&r), "/_kanmon/code");
        self.submit_code_with(c, "/_kanmon/code", &totp(key, self.now())).await
    }

    /// An XHR-style request, the way the dashboard's scripts ask.
    pub async fn api_get_with(&self, c: &reqwest::Client, path: &str) -> Response {
        c.get(self.url(path))
            .header("accept", "application/json")
            .header("sec-fetch-mode", "cors")
            .send()
            .await
            .unwrap()
    }
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub fn session_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-kanmon="))
        .map(|c| {
            c.split(';')
                .next()
                .unwrap()
                .trim_start_matches("__Host-kanmon=")
                .to_owned()
        })
}
