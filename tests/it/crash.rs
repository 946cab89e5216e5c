//! Crash safety (issue 6; REQ-24, REQ-32, REQ-74, G-9): the built binary is killed with
//! SIGKILL at a random moment during or after a step that writes (completing an
//! enrollment, logging out everywhere, reloading an edited configuration), in a loop.
//! After every restart the database opens (the process gets healthy), what was
//! answered as done is there, and nothing is half-done: an enrollment is associated
//! with its key or not at all, a logout ended all of the user's sessions or none, and
//! the edited configuration is in force with every session it ends ended.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;

use crate::cli::{Server, free_port, write};
use crate::helpers::{CAROL_PASSWORD, client, csrf_of, key_of, location, session_cookie, totp};

const OTHER_PASSWORD: &str = "dave-changed-password";
/// Users who enroll, one per enrollment round.
const ENROLLERS: usize = 3;
/// Rounds: enrollment, logout everywhere and reload, three times each.
const ROUNDS: usize = 9;

/// A small deterministic generator: the seed is printed, so a failing order of events
/// can be looked at again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The gateway's files and how to reach it.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    hash: String,
    other_hash: String,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let rng = kanmon::auth::SystemRandom;
        let hash = kanmon::auth::password::hash(CAROL_PASSWORD, &rng);
        let other_hash = kanmon::auth::password::hash(OTHER_PASSWORD, &rng);
        let port = free_port();
        let config = dir.path().join("config.yaml");
        let site = Site {
            dir,
            config,
            port,
            hash,
            other_hash,
        };
        site.write_config(false, false);
        site
    }

    /// The configuration; `dave_changed`: dave's password was changed, `dave_two_step`:
    /// his second step was switched on. Written whole and renamed into place, as an
    /// editor or a configuration tool does.
    fn write_config(&self, dave_changed: bool, dave_two_step: bool) {
        let user = |id: &str, hash: &str, two_factor: bool| {
            format!(
                "  - {{ id: {id}, email: {id}@example.com, password_hash: \"{hash}\", role: user, two_factor: {two_factor} }}\n"
            )
        };
        let mut users = String::new();
        for i in 0..ENROLLERS {
            users.push_str(&user(&format!("u{i}"), &self.hash, true));
        }
        users.push_str(&user("carol", &self.hash, false));
        users.push_str(&user("erin", &self.hash, false));
        let dave_hash = if dave_changed { &self.other_hash } else { &self.hash };
        users.push_str(&user("dave", dave_hash, dave_two_step));
        let text = format!(
            "listen: 127.0.0.1:{}\ntls: {{ cert: tls/cert.pem, key: tls/key.pem, self_signed_if_missing: true }}\nupstream: {{ url: demo }}\ndata_dir: data\nissuer: AVM EX\nsmtp: {{ host: 127.0.0.1, port: 9, security: none, from: \"AVM EX <avm@example.com>\" }}\nusers:\n{users}",
            self.port
        );
        let tmp = write(self.dir.path(), "config.yaml.new", &text);
        std::fs::rename(tmp, &self.config).unwrap();
    }

    fn start(&self, name: &str) -> (Server, reqwest::Client) {
        let mut server = Server::start(&self.config, self.dir.path(), name);
        server.wait_healthy(&self.config);
        let cert = std::fs::read_to_string(self.dir.path().join("tls/cert.pem")).unwrap();
        (server, client(&cert))
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn browser(&self) -> reqwest::Client {
        let cert = std::fs::read_to_string(self.dir.path().join("tls/cert.pem")).unwrap();
        client(&cert)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn login(&self, b: &reqwest::Client, user: &str, password: &str) -> reqwest::Response {
        let page = b
            .get(self.url("/_kanmon/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        b.post(self.url("/_kanmon/login"))
            .header("origin", self.url(""))
            .form(&[
                ("csrf", csrf_of(&page).as_str()),
                ("user", user),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// A full session's cookie value for a password-only user.
    async fn full_session(&self, user: &str, password: &str) -> String {
        let r = self.login(&self.browser(), user, password).await;
        assert_eq!(location(&r), "/", "{user} logs in");
        session_cookie(&r).unwrap()
    }

    /// Whether a session cookie still reaches the application (200) or not (401).
    async fn reaches(&self, session: &str) -> bool {
        let r = self
            .browser()
            .get(self.url("/"))
            .header("cookie", format!("__Host-kanmon={session}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::OK => true,
            StatusCode::UNAUTHORIZED => false,
            other => panic!("unexpected {other}"),
        }
    }

    async fn healthz(&self, b: &reqwest::Client) -> StatusCode {
        b.get(self.url("/_kanmon/healthz")).send().await.unwrap().status()
    }

    async fn post(&self, b: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        b.post(self.url(path))
            .header("origin", self.url(""))
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

/// Sends a request in the background, waits `delay`, kills the gateway with SIGKILL and
/// returns the answer if one came before the kill.
async fn kill_during(
    server: &mut Server,
    request: reqwest::RequestBuilder,
    delay: Duration,
) -> Option<(StatusCode, String)> {
    let task = tokio::spawn(async move {
        let r = request.send().await.ok()?;
        Some((r.status(), location(&r)))
    });
    tokio::time::sleep(delay).await;
    server.kill9();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the request ends once the process is gone")
        .unwrap()
}

/// The step of the next code that is neither used nor out of the window.
async fn next_step(last_used: i64) -> i64 {
    loop {
        let current = now() / 30;
        if last_used < current + 1 {
            return (last_used + 1).max(current);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 6: kill -9 during and after enrollment, logout everywhere and a configuration
/// reload, nine rounds; after each restart the database opens, what was confirmed is
/// there, and nothing is half-done.
// Multi-threaded: the test blocks on the process while the browsers' requests run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_during_writes_leaves_a_consistent_database() {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let site = Site::new();
    // dave's password is the other one after an odd number of reloads.
    let mut dave_changed = false;
    let mut enrolled = 0;
    let mut reloads = 0;
    for round in 0..ROUNDS {
        let (mut server, b) = site.start(&format!("round{round}"));
        assert_eq!(site.healthz(&b).await, StatusCode::OK, "round {round}");
        // Mostly within the first 10 ms (a step takes a few), sometimes well after.
        let delay = Duration::from_micros(if rng.below(4) == 0 {
            100_000 + rng.below(300_000)
        } else {
            rng.below(10_000)
        });
        let what = format!("round {round} (seed {seed}, kill after {delay:?})");
        match round % 3 {
            0 => {
                let user = format!("u{enrolled}");
                enrolled += 1;
                let r = site.login(&b, &user, CAROL_PASSWORD).await;
                assert_eq!(location(&r), "/_kanmon/enroll", "{what}");
                let page = b
                    .get(site.url("/_kanmon/enroll"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let key = key_of(&page);
                let step = now() / 30;
                let code = totp(&key, step * 30);
                let request = b
                    .post(site.url("/_kanmon/enroll"))
                    .header("origin", site.url(""))
                    .form(&[("csrf", csrf_of(&page).as_str()), ("code", &code)]);
                let answer = kill_during(&mut server, request, delay).await;
                let (mut server, b) = site.start(&format!("round{round}-after"));
                assert_eq!(site.healthz(&b).await, StatusCode::OK, "{what}: the database opens");
                let c = site.browser();
                let at = location(&site.login(&c, &user, CAROL_PASSWORD).await);
                println!("{what}: enrollment answered {answer:?}, after restart at {at}");
                match &answer {
                    Some((StatusCode::SEE_OTHER, _)) => {
                        assert_eq!(at, "/_kanmon/code", "{what}: a confirmed enrollment is kept")
                    }
                    Some((status, _)) => panic!("{what}: the enrollment code was refused: {status}"),
                    None => assert!(at == "/_kanmon/code" || at == "/_kanmon/enroll", "{what}: {at}"),
                }
                if at == "/_kanmon/code" {
                    // The key that was confirmed works (its next step: the last is used).
                    let code = totp(&key, next_step(step).await * 30);
                    let page = c
                        .get(site.url("/_kanmon/code"))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    let r = site
                        .post(&c, "/_kanmon/code", &[("csrf", &csrf_of(&page)), ("code", &code)])
                        .await;
                    assert_eq!(location(&r), "/", "{what}: the enrolled key logs in");
                } else {
                    // Not associated: the user enrolls again, and the key shown then works.
                    let page = c
                        .get(site.url("/_kanmon/enroll"))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    let key = key_of(&page);
                    let r = site
                        .post(
                            &c,
                            "/_kanmon/enroll",
                            &[("csrf", &csrf_of(&page)), ("code", &totp(&key, now()))],
                        )
                        .await;
                    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{what}: enrolling again works");
                }
                server.terminate(Duration::from_secs(10));
            }
            1 => {
                let (s1, s2) = (
                    site.full_session("carol", CAROL_PASSWORD).await,
                    site.full_session("carol", CAROL_PASSWORD).await,
                );
                let erin = site.full_session("erin", CAROL_PASSWORD).await;
                let page = b
                    .get(site.url("/_kanmon/logout"))
                    .header("cookie", format!("__Host-kanmon={s1}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let request = b
                    .post(site.url("/_kanmon/logout"))
                    .header("origin", site.url(""))
                    .header("cookie", format!("__Host-kanmon={s1}"))
                    .form(&[("csrf", csrf_of(&page).as_str()), ("everywhere", "1")]);
                let answer = kill_during(&mut server, request, delay).await;
                let (mut server, b) = site.start(&format!("round{round}-after"));
                assert_eq!(site.healthz(&b).await, StatusCode::OK, "{what}: the database opens");
                let (r1, r2) = (site.reaches(&s1).await, site.reaches(&s2).await);
                println!("{what}: logout answered {answer:?}, sessions alive after restart: {r1}");
                assert_eq!(r1, r2, "{what}: all of carol's sessions ended, or none");
                if answer.is_some() {
                    assert!(!r1, "{what}: a logout that was answered is kept");
                }
                assert!(site.reaches(&erin).await, "{what}: other users keep their sessions");
                server.terminate(Duration::from_secs(10));
            }
            _ => {
                let password = if dave_changed { OTHER_PASSWORD } else { CAROL_PASSWORD };
                let dave = site.full_session("dave", password).await;
                let erin = site.full_session("erin", CAROL_PASSWORD).await;
                // The edit: dave's password changes, and the last time his second step
                // is switched on too; either ends his sessions (REQ-74).
                reloads += 1;
                let two_step = reloads == ROUNDS / 3;
                dave_changed = !dave_changed;
                site.write_config(dave_changed, two_step);
                server.signal(libc::SIGHUP);
                tokio::time::sleep(delay).await;
                server.kill9();
                let (mut server, b) = site.start(&format!("round{round}-after"));
                assert_eq!(site.healthz(&b).await, StatusCode::OK, "{what}: the database opens");
                assert!(!site.reaches(&dave).await, "{what}: dave's session ended with the edit");
                assert!(site.reaches(&erin).await, "{what}: erin's session is untouched");
                let password = if dave_changed { OTHER_PASSWORD } else { CAROL_PASSWORD };
                let at = location(&site.login(&site.browser(), "dave", password).await);
                let want = if two_step { "/_kanmon/enroll" } else { "/" };
                assert_eq!(at, want, "{what}: the edited configuration is in force");
                server.terminate(Duration::from_secs(10));
            }
        }
        let _ = std::fs::metadata(site.data().join("kanmon.redb")).expect("the database file");
    }
}

/// REQ-74: a configuration edited while the gateway was stopped (or killed before it
/// noticed) ends, at the next start, the sessions of accounts whose password or second
/// step changed, exactly as a reload would; other sessions survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req74_an_edit_made_while_stopped_ends_sessions_at_the_next_start() {
    let site = Site::new();
    let (mut server, _) = site.start("first");
    let dave = site.full_session("dave", CAROL_PASSWORD).await;
    let erin = site.full_session("erin", CAROL_PASSWORD).await;
    assert!(site.reaches(&dave).await && site.reaches(&erin).await);
    server.terminate(Duration::from_secs(10));
    site.write_config(true, false);
    let (mut server, _) = site.start("second");
    assert!(!site.reaches(&dave).await, "dave's password changed: his session ended");
    assert!(site.reaches(&erin).await, "erin's account is unchanged");
    assert_eq!(
        location(&site.login(&site.browser(), "dave", OTHER_PASSWORD).await),
        "/"
    );
    server.terminate(Duration::from_secs(10));
}
