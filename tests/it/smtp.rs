//! A real SMTP server on loopback for the tests: Debian's aiosmtpd, started per test by
//! tests/smtp/sink.py, which writes every message it accepts as JSON.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// STARTTLS required, with the given certificate.
    StartTls,
    /// Answers 550 to every recipient.
    Reject,
}

pub struct SmtpSink {
    pub port: u16,
    out: tempfile::TempDir,
    /// The sink's certificate (PEM), for STARTTLS.
    pub cert_path: Option<PathBuf>,
    child: Child,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    /// Every header as received, for checks that nothing was injected.
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub html: String,
    pub tls: bool,
}

impl Received {
    /// The first https:// link in the text body.
    pub fn link(&self) -> String {
        let start = self.text.find("https://").expect("a link in the mail");
        self.text[start..].split_whitespace().next().unwrap().to_owned()
    }
}

impl SmtpSink {
    pub fn start(mode: Mode) -> SmtpSink {
        let present = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            present,
            "the SMTP tests need Debian's aiosmtpd: apt-get install python3-aiosmtpd"
        );
        let out = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script).arg(match mode {
            Mode::Plain => "plain",
            Mode::StartTls => "starttls",
            Mode::Reject => "reject",
        });
        cmd.arg(out.path());
        let mut cert_path = None;
        if mode == Mode::StartTls {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
            let (c, k) = (out.path().join("sink.crt"), out.path().join("sink.key"));
            std::fs::write(&c, ck.cert.pem()).unwrap();
            std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
            cmd.arg(&c).arg(&k);
            cert_path = Some(c);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the SMTP sink");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP sink did not start: {line:?}"));
        SmtpSink {
            port,
            out,
            cert_path,
            child,
        }
    }

    /// The `smtp:` line for a gateway config that sends through this sink.
    pub fn yaml(&self, security: &str, extra: &str) -> String {
        format!(
            "smtp: {{ host: 127.0.0.1, port: {}, security: {security}, from: \"AVM EX <avm@example.com>\"{extra} }}\n",
            self.port
        )
    }

    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<_> = std::fs::read_dir(self.out.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits (bounded) until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let t = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "expected {n} mails, got {}: {m:?}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a message with this subject.
    pub async fn wait_subject(&self, subject: &str) -> Received {
        let t = Instant::now();
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m.subject == subject) {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no mail `{subject}`: {:?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
