//! The `kanmon` command as an administrator uses it: `hash-password` (M-1),
//! `check-config` (M-3, G-8), `serve` and `healthcheck` (G-9, G-10), run as the built
//! binary.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{CAROL_PASSWORD, client, csrf_of, location, session_cookie};

/// A valid argon2id hash (of "kanmon-demo-2fa", from config.example.yaml).
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$y3Pc6KdOARZabmzG8Qd7XQ$gadNCfrCTDAwFEBK9AIZj6D/MRTtr1wZl7gyMOIooKk";

/// M-1: `hash-password` prints one argon2id line (OWASP parameters) for the password
/// read on standard input, and that hash verifies the password.
#[tokio::test]
async fn m1_hash_password_prints_a_verifiable_argon2id_hash() {
    let out = kanmon(&["hash-password"], Some("correct horse battery\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    let hash = lines[0];
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    let pool = kanmon::auth::password::PasswordPool::new(1);
    assert_eq!(pool.verify("correct horse battery", Some(hash)).await, Some(true));
    assert_eq!(pool.verify("correct horse batter", Some(hash)).await, Some(false));

    // Two runs never print the same hash (random salt).
    let again = kanmon(&["hash-password"], Some("correct horse battery\n"));
    assert_ne!(String::from_utf8(again.stdout).unwrap(), stdout);
}

/// M-1: the line's end is not part of the password (LF or CRLF).
#[tokio::test]
async fn m1_hash_password_drops_the_trailing_newline() {
    let pool = kanmon::auth::password::PasswordPool::new(1);
    for input in ["abcdefgh\n", "abcdefgh\r\n"] {
        let out = kanmon(&["hash-password"], Some(input));
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let hash = stdout.trim_end();
        assert_eq!(pool.verify("abcdefgh", Some(hash)).await, Some(true), "{input:?}");
        assert_eq!(pool.verify(input, Some(hash)).await, Some(false), "{input:?}");
    }
}

/// M-1: a password too short to be one is refused, with the reason, and nothing is
/// printed to be pasted into the configuration.
#[test]
fn m1_hash_password_refuses_a_short_password() {
    let out = kanmon(&["hash-password"], Some("abcde\n"));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    let err = stderr(&out);
    assert!(err.contains('8') && err.contains('5'), "{err}");
}

/// M-1: a guessable password still gets its hash, with zxcvbn's warning and advice on
/// standard error; a strong one gets no warning.
#[test]
fn m1_hash_password_warns_about_a_weak_password() {
    let out = kanmon(&["hash-password"], Some("password1\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("$argon2id$"));
    let err = stderr(&out);
    assert!(err.contains("weak") && err.contains("of 4"), "{err}");
    assert!(err.contains("common"), "zxcvbn's own feedback: {err}");

    let out = kanmon(&["hash-password"], Some("violet-tractor-harbour-87-quietly\n"));
    assert!(out.status.success());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = kanmon(&["hash-password"], Some(&format!("{}\n", "x".repeat(129))));
    assert!(!out.status.success() && out.stdout.is_empty(), "128 characters at most");
}

/// M-1: an error in the users file names that file, the line and the field.
#[test]
fn m1_check_config_names_the_users_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "users.yaml",
        &format!(
            "- id: taro\n  email: taro@example.com\n  password_hash: \"{HASH}\"\n  role: user\n  two_factor: false\n- id: hanako\n  email: hanako@example.com\n  password_hash: \"{}\"\n  role: user\n  two_factor: false\n",
            HASH.replace("t=2", "t=1")
        ),
    );
    let path = write(
        dir.path(),
        "config.yaml",
        &format!("{}users_file: users.yaml\n", minimal_config(8443)),
    );
    let out = kanmon(&["check-config", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let users = dir.path().join("users.yaml");
    assert!(
        err.contains(&format!("{}:8: users[1].password_hash", users.display())),
        "{err}"
    );
    assert!(err.contains("t=1"), "{err}");
}

/// G-8: the shipped example configuration is valid.
#[test]
fn g8_check_config_accepts_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let out = kanmon(&["check-config", "--config", example.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

/// G-8: a misspelt key is refused with exit code 2, naming file, line and key.
#[test]
fn g8_check_config_names_file_line_and_misspelt_key() {
    let dir = tempfile::tempdir().unwrap();
    // Top level, line 5.
    let top = write(
        dir.path(),
        "top.yaml",
        "listen: 127.0.0.1:8443\ntls: { cert: c.pem, key: k.pem }\nupstream: { url: demo }\ndata_dir: data\nisuser: AVM EX\n",
    );
    // Nested in a block mapping, line 4.
    let nested = write(
        dir.path(),
        "nested.yaml",
        "listen: 127.0.0.1:8443\ntls:\n  cert: c.pem\n  kye: k.pem\nupstream: { url: demo }\ndata_dir: data\n",
    );
    for (path, line, key) in [(&top, 5, "isuser"), (&nested, 4, "kye")] {
        let out = kanmon(&["check-config", "--config", path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("{}:{line}", path.display())), "{err}");
        assert!(err.contains(key), "{err}");
    }
}

/// M-3: an account with two-step authentication and no `smtp` section is refused,
/// naming the account and the missing section.
#[test]
fn m3_check_config_refuses_two_step_without_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let users = format!(
        "users:\n  - {{ id: taro, email: taro@example.com, password_hash: \"{HASH}\", role: user, two_factor: true }}\n"
    );
    let path = write(dir.path(), "config.yaml", &format!("{}{users}", minimal_config(8443)));
    let out = kanmon(&["check-config", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("taro") && err.contains("smtp"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");

    // The same account with an smtp section is fine: the refusal was about smtp.
    let smtp = "smtp: { host: 127.0.0.1, port: 25, security: none, from: \"AVM EX <avm@example.com>\" }\n";
    let path = write(dir.path(), "ok.yaml", &format!("{}{smtp}{users}", minimal_config(8443)));
    let out = kanmon(&["check-config", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// G-8: broken YAML (an unquoted `: ` in a value) is refused with exit code 2 and the
/// line of the fault.
#[test]
fn g8_check_config_reports_the_line_of_a_yaml_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config.yaml",
        "listen: 127.0.0.1:8443\ntls: { cert: c.pem, key: k.pem }\nupstream: { url: demo }\ndata_dir: data\nissuer: AVM: EX\ndefault_lang: ja\n",
    );
    let out = kanmon(&["check-config", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let with_line = format!("{}:", path.display());
    let line: usize = err
        .split(&with_line)
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a line number after the file name: {err}"));
    assert_eq!(line, 5, "{err}");
}

/// G-8: a configuration file that is not there is a configuration error (exit 2).
#[test]
fn g8_check_config_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let out = kanmon(&["check-config", "--config", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("absent.yaml"), "{}", stderr(&out));
}

/// G-8: `serve` with an invalid configuration does not start: exit 2 with the reason.
#[test]
fn g8_serve_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config.yaml",
        &format!("{}listen_port: 9\n", minimal_config(free_port())),
    );
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_kanmon")).args(["serve", "--config", path.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("listen_port") && err.contains("config.yaml:6"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

/// G-9, G-10: `serve` makes a self-signed certificate and its data directory on first
/// start, `healthcheck` sees it running, SIGTERM stops it cleanly, and a second start
/// on the same data directory finds its key, certificate and sessions again.
// Multi-threaded: the test blocks while it waits, and the browser's connection must
// still be served meanwhile (an HTTP/2 shutdown waits for its ping to be answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g9_g10_serve_starts_answers_health_stops_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let hash = kanmon::auth::password::hash(CAROL_PASSWORD, &kanmon::auth::SystemRandom);
    let port = free_port();
    let config = write(
        dir.path(),
        "config.yaml",
        &format!(
            "{}users:\n  - {{ id: carol, email: carol@example.com, password_hash: \"{hash}\", role: user, two_factor: false }}\n",
            minimal_config(port)
        ),
    );
    let (cert, key) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
    let data = dir.path().join("data");
    assert!(!cert.exists() && !data.exists());
    assert!(!healthcheck(&config).status.success(), "nothing runs yet");

    let mut server = Server::start(&config, dir.path(), "first");
    server.wait_healthy(&config);
    assert_eq!(mode(&key), 0o600, "the private key is private");
    assert!(std::fs::read_to_string(&cert).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(mode(&data) & 0o077, 0, "the data directory is private");
    assert_eq!(mode(&data.join("secret.key")), 0o600);
    assert!(data.join("kanmon.redb").is_file());
    let secret_key = std::fs::read(data.join("secret.key")).unwrap();
    let cert_pem = std::fs::read_to_string(&cert).unwrap();

    // A real login through the running binary (demo upstream, password-only user).
    let base = format!("https://localhost:{port}");
    let browser = client(&cert_pem);
    let page = browser
        .get(format!("{base}/_kanmon/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = browser
        .post(format!("{base}/_kanmon/login"))
        .header("origin", &base)
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("user", "carol"),
            ("password", CAROL_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/");
    let session = session_cookie(&r).expect("a session cookie");
    let r = browser.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains(">carol</td>"));

    // The browser keeps its connection open; SIGTERM still ends the process promptly.
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM: {}", server.stderr());
    assert!(!healthcheck(&config).status.success(), "stopped means unhealthy");
    drop(browser);

    let mut again = Server::start(&config, dir.path(), "second");
    again.wait_healthy(&config);
    assert_eq!(std::fs::read(data.join("secret.key")).unwrap(), secret_key, "same key");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), cert_pem, "same certificate");
    // The session made before the restart is still valid: it lives in the database.
    let r = client(&cert_pem)
        .get(format!("{base}/"))
        .header("cookie", format!("__Host-kanmon={session}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", location(&r));
    assert!(r.text().await.unwrap().contains(">carol</td>"));
    let status = again.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", again.stderr());
}

// ---- helpers of this file --------------------------------------------------------

/// A configuration without accounts: demo upstream, self-signed certificate in `tls/`.
pub(crate) fn minimal_config(port: u16) -> String {
    format!(
        "listen: 127.0.0.1:{port}\ntls: {{ cert: tls/cert.pem, key: tls/key.pem, self_signed_if_missing: true }}\nupstream: {{ url: demo }}\ndata_dir: data\nissuer: AVM EX\n"
    )
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the binary to completion with `stdin` as its input.
fn kanmon(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kanmon"));
    cmd.args(args).env_remove("KANMON_CONFIG");
    match stdin {
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
        None => run_with_timeout(&mut cmd, Duration::from_secs(10)),
    }
}

pub(crate) fn healthcheck(config: &Path) -> Output {
    kanmon(&["healthcheck", "--config", config.to_str().unwrap()], None)
}

/// Runs a command that should end by itself; kills it after `limit`.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let deadline = Instant::now() + limit;
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the child we started; at worst it already ended.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the command did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    waiter.join().unwrap()
}

/// A `kanmon serve` process, killed if a test fails before stopping it.
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(config: &Path, dir: &Path, name: &str) -> Server {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kanmon"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("KANMON_CONFIG")
            .env("KANMON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Server { child, log }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `kanmon healthcheck` until it succeeds (at most 10 s).
    pub(crate) fn wait_healthy(&mut self, config: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("kanmon serve ended early ({status}): {}", self.stderr());
            }
            let out = healthcheck(config);
            if out.status.success() {
                assert!(self.stderr().contains("listening on"), "{}", self.stderr());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy within 10 s: {}\n{}",
                stderr(&out),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGKILL (no chance to clean up) and reaps the process.
    pub(crate) fn kill9(&mut self) {
        // SAFETY: kill(2) on the child we started and have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    /// Sends a signal (SIGHUP: reload) to the running process.
    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the child we started and have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }

    /// Sends SIGTERM and waits for the exit (at most `limit`).
    pub(crate) fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the child we started and have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {limit:?} after SIGTERM: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
