//! The browsers trust the gateways' certificates properly instead of ignoring
//! certificate errors: every test process makes its own certificate authority, which
//! may only vouch for `localhost` and `127.0.0.1` (name constraints) and whose key never
//! leaves the process's memory; each test gateway gets a certificate it issued; the CA
//! is the one trust anchor added to an NSS database in a home directory of this process
//! (`$HOME/.pki/nssdb`, where Chromium on Linux looks), and chromedriver starts Chromium
//! with that `HOME`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, NameConstraints,
};

use crate::helpers::TestTls;

pub const CERTUTIL: &str = "/usr/bin/certutil";

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("kanmon e2e test CA (pid {})", std::process::id()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName("localhost".into()),
                GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 1], [255, 255, 255, 255])),
            ],
            excluded_subtrees: Vec::new(),
        });
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    })
}

/// A certificate for a test gateway at `localhost` / `127.0.0.1`, issued by this
/// process's CA, which is what clients (the browsers and reqwest) trust.
pub fn gateway_tls() -> TestTls {
    let ca = ca();
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    TestTls {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        trust_pem: ca.pem.clone(),
    }
}

/// The `HOME` for the browsers of this process: `.pki/nssdb` in it trusts this
/// process's CA for TLS servers and nothing else. It lives under cargo's scratch
/// directory for tests; homes of test processes that are gone are removed first.
pub fn browser_home() -> PathBuf {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    remove_stale_homes(scratch);
    let home = scratch.join(format!("e2e-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let ca_file = home.join("kanmon-test-ca.pem");
    std::fs::write(&ca_file, &ca().pem).unwrap();
    let db = format!("sql:{}", nssdb.display());
    certutil(&["-d", &db, "-N", "--empty-password"]);
    // "C,,": a trusted CA for TLS servers only (not for client certificates, e-mail or
    // code signing).
    certutil(&[
        "-d",
        &db,
        "-A",
        "-t",
        "C,,",
        "-n",
        "kanmon e2e test CA",
        "-i",
        ca_file.to_str().unwrap(),
    ]);
    home
}

fn certutil(args: &[&str]) {
    let out = Command::new(CERTUTIL)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {CERTUTIL}: {e}"));
    assert!(
        out.status.success(),
        "certutil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes `e2e-home-<pid>` directories whose process no longer runs.
fn remove_stale_homes(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("e2e-home-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The trust is real: the browser opens a gateway whose certificate the test CA issued,
/// and refuses one with a certificate of its own (no certificate errors are ignored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsers_trust_the_test_ca_and_no_other_certificate() {
    use crate::browser::{Browser, PATIENCE, require_browser};
    require_browser!();
    let trusted = crate::trusted_app().await;
    let untrusted = crate::helpers::spawn_app().await;
    let b = Browser::open(crate::EN.accept, 1280, 800).await;
    b.goto(trusted.url("/_kanmon/login")).await.unwrap();
    b.wait_h1(crate::EN.login).await;

    // Chromium shows its interstitial instead of the page (WebDriver's navigation may
    // report the error too).
    let _ = b.goto(untrusted.url("/_kanmon/login")).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let page = b.body_text().await;
        if page.contains("ERR_CERT_AUTHORITY_INVALID") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a self-signed certificate was accepted: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(untrusted.upstream.seen().is_empty());
    b.close().await;
}
