//! The rules of codes and keys not covered elsewhere (REQ-2, REQ-3, REQ-5, REQ-17,
//! REQ-26), TLS versions (REQ-70) and secrets in configuration (REQ-72).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

async fn at_code_step(app: &TestApp) -> (reqwest::Client, String) {
    let b = app.new_browser();
    assert_eq!(
        location(&app.login_with(&b, "alice", ALICE_PASSWORD).await),
        "/_kanmon/code"
    );
    let page = app.get_with(&b, "/_kanmon/code").await.text().await.unwrap();
    (b, csrf_of(&page))
}

/// REQ-2: a code with a leading zero is accepted as six digits; its five-digit form and
/// anything with letters are not.
#[tokio::test]
async fn req2_leading_zero_codes_work_and_short_forms_do_not() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    // Move on to a step whose code starts with 0 (about one step in ten).
    loop {
        app.clock.advance(30);
        if totp(&key, app.now()).starts_with('0') {
            break;
        }
    }
    let code = totp(&key, app.now());
    let (b, csrf) = at_code_step(&app).await;
    for bad in [&code[1..], "0a1234", "٠١٢٣٤٥"] {
        let r = app
            .post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", bad)])
            .await;
        assert_ne!(r.status(), StatusCode::SEE_OTHER, "{bad}");
    }
    let r = app
        .post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{code}");
}

/// REQ-3: HMAC-SHA1 as advertised; the same key with SHA-256 gives codes that fail.
#[tokio::test]
async fn req3_only_sha1_codes_are_accepted() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let raw = data_encoding::BASE32_NOPAD.decode(key.as_bytes()).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&raw).unwrap();
    mac.update(&((app.now() / 30) as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[h.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    let sha256_code = format!("{:06}", bin % 1_000_000);
    let sha1_code = totp(&key, app.now());
    let (b, csrf) = at_code_step(&app).await;
    if sha256_code != sha1_code {
        let r = app
            .post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", &sha256_code)])
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = app
        .post_with(&b, "/_kanmon/code", &[("csrf", &csrf), ("code", &sha1_code)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// REQ-5: time comes only from the server's clock: parameters or headers that name a
/// time change nothing, and the Date header is the real time.
#[tokio::test]
async fn req5_time_comes_only_from_the_server_clock() {
    let app = spawn_app().await;
    let key = app.enroll("alice", ALICE_PASSWORD).await;
    app.clock.advance(30);
    let future = app.now() + 600;
    let code = totp(&key, future);
    let (b, csrf) = at_code_step(&app).await;
    let r = b
        .post(app.url(&format!("/_kanmon/code?time={future}&ts={future}")))
        .header("origin", &app.base)
        .header("x-timestamp", future.to_string())
        .header("date", "Sat, 01 Jan 2033 00:00:00 GMT")
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", code.as_str()),
            ("time", &future.to_string()),
            ("ts", &future.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a code for another time stays wrong"
    );
    let date = r.headers()["date"].to_str().unwrap().to_owned();
    let sent = httpdate_to_unix(&date);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((sent - now).abs() <= 5, "Date {date} is the real time");
}

/// Parses an IMF-fixdate (`Wed, 25 Nov 2026 14:17:01 GMT`).
fn httpdate_to_unix(s: &str) -> i64 {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let day: i64 = parts[1].parse().unwrap();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])
    .unwrap() as i64
        + 1;
    let year: i64 = parts[3].parse().unwrap();
    let hms: Vec<i64> = parts[4].split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// REQ-17: keys are unique per user and per enrollment: 200 enrollment screens, each
/// with a fresh key, never repeat one.
#[tokio::test]
async fn req17_every_enrollment_gets_a_new_unique_key() {
    let app = spawn_with(Setup {
        extra_yaml: "limits: { password_failures_per_account: 100000, password_failures_per_ip: 100000 }\n".into(),
        ..Setup::default()
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    let mut previous = String::new();
    for i in 0..200 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let password = if i % 2 == 0 { ALICE_PASSWORD } else { BOB_PASSWORD };
        let b = app.new_browser();
        assert_eq!(location(&app.login_with(&b, user, password).await), "/_kanmon/enroll");
        let key = key_of(&app.get_with(&b, "/_kanmon/enroll").await.text().await.unwrap());
        assert_ne!(key, previous);
        assert!(seen.insert(key.clone()), "key repeated at {i}");
        previous = key;
        // The pending key lives ten minutes; after that a new one is made.
        app.clock.advance(if i % 2 == 1 { 11 * 60 } else { 0 });
    }
}

/// REQ-26: who is being verified comes only from the server's session; a user field in
/// the code form, the query or a header changes nothing.
#[tokio::test]
async fn req26_the_user_at_the_code_step_comes_from_the_session() {
    let app = spawn_app().await;
    let alice_key = app.enroll("alice", ALICE_PASSWORD).await;
    let bob_key = app.enroll_with(&app.new_browser(), "bob", BOB_PASSWORD).await;
    app.clock.advance(30);
    let (b, csrf) = at_code_step(&app).await;
    // Bob's right code in alice's pending login, with every way of naming bob.
    let r = b
        .post(app.url("/_kanmon/code?user=bob"))
        .header("origin", &app.base)
        .header("x-remote-user", "bob")
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", &totp(&bob_key, app.now())),
            ("user", "bob"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .post_with(
            &b,
            "/_kanmon/code",
            &[("csrf", &csrf), ("code", &totp(&alice_key, app.now())), ("user", "bob")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    app.api_get_with(&b, "/whoami").await;
    assert_eq!(app.upstream.last().header("remote-user").as_deref(), Some("alice"));
}

/// A ClientHello offering only TLS 1.1 (record and handshake version 0x0302).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites
    body.extend_from_slice(&[0x01, 0x00]); // no compression
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x02, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

/// REQ-70: TLS 1.2 and 1.3 only; a TLS 1.1 client gets an alert, never a ServerHello.
#[tokio::test]
async fn req70_tls_1_1_is_refused_1_2_and_1_3_work() {
    let app = spawn_app().await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "an alert or a closed connection, not a handshake: {:?}",
        &buf[..n]
    );

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(app.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_protocol_versions(&[version])
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await;
        assert!(tls.is_ok(), "{version:?}");
    }
}

/// REQ-72: an SMTP password file readable by others stops the start, naming the file
/// and the fix; so does an inline password (config validation).
#[tokio::test]
async fn req72_open_secrets_in_configuration_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "hunter2\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\ntls: {{ cert: cert.pem, key: key.pem }}\nupstream: {{ url: demo }}\ndata_dir: data\n\
         smtp: {{ host: 127.0.0.1, port: 25, security: none, from: a@example.com, username: u, password_file: {} }}\n",
        pw.display()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = kanmon::Config::load(&path).unwrap();
    let err = kanmon::build(config, kanmon::Options::default())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("chmod 600") && err.contains("smtp-password"), "{err}");
}
