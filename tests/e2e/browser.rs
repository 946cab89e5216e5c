//! Debian's Chromium through chromedriver: one chromedriver for the whole test process,
//! one headless browser (own profile, own language, own viewport) per test.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const MISSING: &str = "skipped: chromium/chromedriver/certutil not installed \
     (apt-get install chromium chromium-driver libnss3-tools)";

/// Flags that work on these machines (no sandbox as root, nothing phoning home). No
/// `--ignore-certificate-errors`: the browsers trust the test CA (see `certs`).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// How long a page may take to get where a test expects it.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Skips the calling test when the browser is not installed, with a message that says
/// so and how to install it; under CI a missing browser fails the test instead.
macro_rules! require_browser {
    () => {
        if !crate::browser::available() {
            return;
        }
    };
}
pub(crate) use require_browser;

pub fn available() -> bool {
    if [CHROMIUM, CHROMEDRIVER, crate::certs::CERTUTIL]
        .iter()
        .all(|p| Path::new(p).exists())
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    if ci {
        panic!("{MISSING} — CI is set, so a missing browser is a failure");
    }
    // Straight to stderr: the harness captures `eprintln!` of passing tests, and a
    // skip nobody sees is a silent pass.
    let _ = writeln!(std::io::stderr(), "{MISSING}");
    false
}

/// The chromedriver of this test process, started on first use on a free port. It is
/// spawned from a thread that lives as long as the process, with a parent-death signal,
/// so it goes away with the test binary. The browsers it starts inherit its `HOME`,
/// whose NSS database trusts the test CA.
fn chromedriver() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let home = crate::certs::browser_home();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("chromedriver".into())
            .spawn(move || {
                use std::os::unix::process::CommandExt;
                let mut cmd = std::process::Command::new(CHROMEDRIVER);
                cmd.arg(format!("--port={port}"))
                    .env("HOME", &home)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                // SAFETY: prctl is async-signal-safe; nothing else runs between fork
                // and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                        Ok(())
                    });
                }
                let started = cmd.spawn().map(|_child| ());
                let ok = started.is_ok();
                let _ = tx.send(started);
                // PR_SET_PDEATHSIG fires when this *thread* ends: keep it alive.
                if ok {
                    loop {
                        std::thread::park();
                    }
                }
            })
            .expect("a thread for chromedriver");
        rx.recv()
            .expect("the chromedriver thread answers")
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("http://{addr}")
    })
}

/// A headless Chromium of one test: its own profile directory, its browser language
/// (`Accept-Language`) and its viewport in CSS pixels.
pub struct Browser {
    pub driver: WebDriver,
    _profile: tempfile::TempDir,
}

impl std::ops::Deref for Browser {
    type Target = WebDriver;
    fn deref(&self) -> &WebDriver {
        &self.driver
    }
}

impl Browser {
    pub async fn open(lang: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM).unwrap();
        for flag in FLAGS {
            caps.add_arg(flag).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .unwrap();
        caps.add_arg(&format!("--lang={lang}")).unwrap();
        caps.add_arg(&format!("--window-size={width},{height}")).unwrap();
        caps.add_experimental_option("prefs", serde_json::json!({ "intl": { "accept_languages": lang } }))
            .unwrap();
        let driver = WebDriver::new(chromedriver(), caps)
            .await
            .expect("a Chromium session from chromedriver");
        let b = Browser {
            driver,
            _profile: profile,
        };
        b.set_viewport(width, height).await;
        b
    }

    /// Makes the viewport (not the window) exactly `width`×`height` CSS pixels.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.driver
            .cdp()
            .emulation()
            .set_device_metrics_override(width, height, 1.0, width < 600)
            .await
            .unwrap();
    }

    /// Ends the browser session (a panicking test ends it in `Drop`).
    pub async fn close(self) {
        let Browser { driver, _profile } = self;
        driver.quit().await.unwrap();
    }

    /// The path of the page the browser shows.
    pub async fn path(&self) -> String {
        self.driver.current_url().await.unwrap().path().to_owned()
    }

    /// Waits until the browser is at `path` (a navigation or redirect chain may be
    /// under way) and the page has loaded.
    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now_at = self.path().await;
            if now_at == path && self.ready().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the browser stayed at {now_at}, expected {path}; page: {}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        self.js::<String>("return document.readyState").await == "complete"
    }

    /// Runs a script and converts what it returns.
    pub async fn js<T: serde::de::DeserializeOwned>(&self, script: &str) -> T {
        self.driver
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
            .convert()
            .unwrap()
    }

    /// Runs a script with one element as `arguments[0]`.
    pub async fn js_on<T: serde::de::DeserializeOwned>(&self, el: &WebElement, script: &str) -> T {
        self.driver
            .execute(script, vec![el.to_json().unwrap()])
            .await
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
            .convert()
            .unwrap()
    }

    pub async fn body_text(&self) -> String {
        self.js::<Option<String>>("return document.body ? document.body.innerText : ''")
            .await
            .unwrap_or_default()
    }

    pub async fn h1(&self) -> String {
        self.find(By::Tag("h1")).await.unwrap().text().await.unwrap()
    }

    pub async fn by_id(&self, id: &str) -> WebElement {
        self.find(By::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id} on the page: {e}"))
    }

    /// Waits for an element matching `css` (the page may still be on its way).
    pub async fn wait_css(&self, css: &str) -> WebElement {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(mut found) = self.find_all(By::Css(css)).await
                && !found.is_empty()
            {
                return found.remove(0);
            }
            assert!(
                Instant::now() < deadline,
                "no {css} at {}: {}",
                self.path().await,
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's heading reads `text`.
    pub async fn wait_h1(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let h1 = match self.find(By::Tag("h1")).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if h1 == text {
                return;
            }
            assert!(Instant::now() < deadline, "heading {h1:?}, expected {text:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the element with this id.
    pub async fn text_of(&self, id: &str) -> String {
        self.by_id(id).await.text().await.unwrap()
    }

    /// An attribute of the element with this id.
    pub async fn attr_of(&self, id: &str, name: &str) -> Option<String> {
        self.by_id(id).await.attr(name).await.unwrap()
    }

    /// The text of the `<label>` for the field with this id.
    pub async fn label_of(&self, id: &str) -> String {
        self.find(By::Css(format!("label[for={id}]")))
            .await
            .unwrap_or_else(|e| panic!("no label for #{id}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// The form's submit button on a gateway screen.
    pub async fn submit_button(&self) -> WebElement {
        self.find(By::Css("main form button[type=submit]"))
            .await
            .expect("a submit button")
    }

    /// Types into a field (after clearing it) with the mouse-free WebDriver call.
    pub async fn fill(&self, id: &str, text: &str) {
        let el = self.by_id(id).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// `<html lang>` of the page.
    pub async fn html_lang(&self) -> String {
        self.js("return document.documentElement.lang").await
    }

    /// The manual key under the QR code, without the spaces between its groups.
    pub async fn manual_key(&self) -> String {
        self.text_of("manual-key")
            .await
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    }

    /// The `id` of the focused element ("" for none).
    pub async fn focused_id(&self) -> String {
        self.js("return document.activeElement ? document.activeElement.id : ''")
            .await
    }

    /// Describes the focused element: tag, type and id, e.g. `button[submit]#`.
    pub async fn focused(&self) -> String {
        self.js("const e = document.activeElement; \
             return e ? e.tagName.toLowerCase() + '[' + (e.getAttribute('type') || '') + ']#' + e.id : ''")
            .await
    }

    /// Keyboard input to whatever has the focus, as a person types it.
    pub async fn type_keys(&self, keys: impl Into<TypingData>) {
        self.action_chain().send_keys(keys).perform().await.unwrap();
    }

    /// The page as PNG.
    pub async fn screenshot_png(&self) -> Vec<u8> {
        self.screenshot_as_png().await.unwrap()
    }
}
