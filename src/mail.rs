//! Outgoing e-mail: one SMTP transport from the config and one builder for every
//! message kanmon sends (the reset link, security notices, the test message). Subjects
//! and bodies come from fixed texts and templates; user data only ever fills a body
//! that the templates escape, so no CR or LF reaches a header (REQ-57).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{NotifySettings, SmtpSecurity, SmtpSettings};
use crate::i18n::{Lang, Text};
use crate::render::Renderer;

const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// The reset e-mail's subject, the same in every language (the manual names it).
pub const RESET_SUBJECT: &str = "Two-Factor Authentication Reset";

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

/// Why a message was not sent, in words an operator understands.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot connect to the SMTP server {server}: {detail}")]
    Connect { server: String, detail: String },
    #[error("TLS with the SMTP server {server} failed: {detail}")]
    Tls { server: String, detail: String },
    #[error("the SMTP server {server} refused the login: {detail}")]
    Auth { server: String, detail: String },
    #[error("the SMTP server {server} rejected the message or recipient: {detail}")]
    Rejected { server: String, detail: String },
    #[error("{0}")]
    Address(String),
    #[error("sending through {server} failed: {detail}")]
    Other { server: String, detail: String },
}

/// A message ready to send: subject plus plain text and HTML bodies.
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mailer {
    /// Builds the transport (inside the async runtime: lettre's pool needs it).
    pub fn new(s: &SmtpSettings) -> Result<Mailer, String> {
        let from: Mailbox = s.from.parse().map_err(|e| format!("smtp.from `{}`: {e}", s.from))?;
        let mut tls = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            tls = tls.add_root_certificate(cert);
        }
        if s.insecure_skip_verify {
            tracing::warn!("smtp.insecure_skip_verify is on: the SMTP server's certificate is NOT checked");
            tls = tls.dangerous_accept_invalid_certs(true);
        }
        let tls = tls.build().map_err(|e| format!("smtp TLS settings: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .timeout(Some(SEND_TIMEOUT))
            .tls(match s.security {
                SmtpSecurity::None => Tls::None,
                SmtpSecurity::Starttls => Tls::Required(tls),
                SmtpSecurity::Tls => Tls::Wrapper(tls),
            });
        if let Some(user) = &s.username {
            builder = builder.credentials(Credentials::new(user.clone(), smtp_password(s)?));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            server: format!("{}:{}", s.host, s.port),
        })
    }

    pub async fn send(&self, to: &str, mail: Mail) -> Result<(), MailError> {
        let message = message(&self.from, to, mail)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| self.explain(e))
    }

    fn explain(&self, e: lettre::transport::smtp::Error) -> MailError {
        let server = self.server.clone();
        let detail = error_chain(&e);
        let code = e.status().map(|c| c.to_string());
        match code.as_deref() {
            Some("530" | "534" | "535" | "538") => MailError::Auth { server, detail },
            Some(c) if c.starts_with('5') || c.starts_with('4') => MailError::Rejected { server, detail },
            _ if e.is_tls() || detail.contains("certificate") || detail.contains("TLS") => {
                MailError::Tls { server, detail }
            }
            _ if e.is_timeout() || detail.contains("onnection") || detail.contains("refused") => {
                MailError::Connect { server, detail }
            }
            _ => MailError::Other { server, detail },
        }
    }
}

/// One recipient, a fixed sender, a subject from our own texts; lettre encodes every
/// header, so nothing in the mail can add one.
fn message(from: &Mailbox, to: &str, mail: Mail) -> Result<Message, MailError> {
    let to: Mailbox = to
        .parse()
        .map_err(|e| MailError::Address(format!("recipient `{to}`: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject)
        .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
        .map_err(|e| MailError::Address(e.to_string()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The SMTP password from its file (which must be readable only by kanmon, REQ-72) or
/// its environment variable.
fn smtp_password(s: &SmtpSettings) -> Result<String, String> {
    if let Some(path) = &s.password_file {
        let meta = std::fs::metadata(path).map_err(|e| format!("smtp.password_file {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "smtp.password_file {}: readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("smtp.password_file {}: {e}", path.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Some(var) = &s.password_env {
        return std::env::var(var).map_err(|_| format!("smtp.password_env: the variable {var} is not set"));
    }
    Err("smtp.username is set but neither smtp.password_file nor smtp.password_env".to_owned())
}

/// Facts about the request that caused a message, for the user to recognise it.
pub struct Origin {
    pub time: String,
    pub ip: String,
    pub browser: String,
}

impl Origin {
    pub fn new(unix: i64, ip: &str, user_agent: Option<&str>) -> Origin {
        let browser: String = user_agent
            .unwrap_or("-")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Origin {
            time: format_utc(unix),
            ip: ip.to_owned(),
            browser,
        }
    }
}

/// `2026-11-25 13:47 UTC`
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), so no calendar crate is needed.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The security notices (each can be switched off in `notify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Enrolled,
    ResetDone,
    WrongCode,
    Abandoned,
    Replay,
    Locked,
    /// An administrator removed the association.
    AdminReset,
    /// An administrator cleared the failure limits.
    AdminUnlock,
    /// An administrator ended every session.
    AdminLogout,
}

impl Notice {
    fn texts(self, t: &Text) -> (&'static str, &'static str, &'static str) {
        match self {
            Notice::Enrolled => (t.mail_enrolled_subject, t.mail_enrolled_body, t.mail_not_you_admin),
            Notice::ResetDone => (t.mail_reset_done_subject, t.mail_reset_done_body, t.mail_not_you_admin),
            Notice::WrongCode => (
                t.mail_wrong_code_subject,
                t.mail_wrong_code_body,
                t.mail_not_you_password,
            ),
            Notice::Abandoned => (t.mail_abandoned_subject, t.mail_abandoned_body, t.mail_not_you_password),
            Notice::Replay => (t.mail_replay_subject, t.mail_replay_body, t.mail_not_you_password),
            Notice::Locked => (t.mail_locked_subject, t.mail_locked_body, t.mail_not_you_password),
            Notice::AdminReset => (
                t.mail_admin_reset_subject,
                t.mail_admin_reset_body,
                t.mail_not_you_admin,
            ),
            Notice::AdminUnlock => (
                t.mail_admin_unlock_subject,
                t.mail_admin_unlock_body,
                t.mail_not_you_admin,
            ),
            Notice::AdminLogout => (
                t.mail_admin_logout_subject,
                t.mail_admin_logout_body,
                t.mail_not_you_admin,
            ),
        }
    }

    /// Whether the configuration wants this kind sent.
    pub fn wanted(self, n: &NotifySettings) -> bool {
        match self {
            Notice::Enrolled => n.enrollment,
            Notice::ResetDone => n.reset,
            Notice::WrongCode => n.wrong_code,
            Notice::Abandoned => n.abandoned,
            Notice::Replay => n.replay,
            Notice::Locked => n.locked,
            Notice::AdminReset | Notice::AdminUnlock | Notice::AdminLogout => n.admin,
        }
    }

    pub fn event(self) -> &'static str {
        match self {
            Notice::Enrolled => "mail.enrolled",
            Notice::ResetDone => "mail.reset_done",
            Notice::WrongCode => "mail.wrong_code",
            Notice::Abandoned => "mail.abandoned",
            Notice::Replay => "mail.replay",
            Notice::Locked => "mail.locked",
            Notice::AdminReset => "mail.admin_reset",
            Notice::AdminUnlock => "mail.admin_unlock",
            Notice::AdminLogout => "mail.admin_logout",
        }
    }
}

pub fn reset_mail(r: &Renderer, lang: Lang, user: &str, link: &str, minutes: i64, origin: &Origin) -> Mail {
    let t = lang.text();
    let ctx = minijinja::context! {
        t => minijinja::Value::from(minijinja::value::Serde(t)),
        greeting => t.mail_greeting.replace("{user}", user),
        body => t.mail_reset_body.replace("{user}", user),
        action => t.mail_reset_action.replace("{minutes}", &minutes.to_string()),
        not_you => t.mail_not_you_password,
        link => link, time => &origin.time, ip => &origin.ip, browser => &origin.browser,
    };
    Mail {
        subject: RESET_SUBJECT.to_owned(),
        text: r.render("mail/message.txt", ctx.clone()),
        html: r.render("mail/message.html", ctx),
    }
}

pub fn notice_mail(r: &Renderer, lang: Lang, notice: Notice, user: &str, origin: &Origin) -> Mail {
    let t = lang.text();
    let (subject, body, not_you) = notice.texts(t);
    let ctx = minijinja::context! {
        t => minijinja::Value::from(minijinja::value::Serde(t)),
        greeting => t.mail_greeting.replace("{user}", user),
        body => body.replace("{user}", user),
        not_you => not_you,
        time => &origin.time, ip => &origin.ip, browser => &origin.browser,
    };
    Mail {
        subject: subject.to_owned(),
        text: r.render("mail/message.txt", ctx.clone()),
        html: r.render("mail/message.html", ctx),
    }
}

pub fn test_mail(lang: Lang) -> Mail {
    let t = lang.text();
    Mail {
        subject: t.mail_test_subject.to_owned(),
        text: t.mail_test_body.to_owned(),
        html: format!("<p>{}</p>", t.mail_test_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_111_111_109), "2005-03-18 01:58 UTC");
        assert_eq!(format_utc(2_000_000_010), "2033-05-18 03:33 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn req57_user_data_never_reaches_a_header() {
        let r = Renderer::new();
        let origin = Origin::new(0, "127.0.0.1", Some("evil\r\nBcc: attacker@example.com"));
        assert!(!origin.browser.contains('\r') && !origin.browser.contains('\n'));
        let mail = reset_mail(
            &r,
            Lang::En,
            "x\r\nBcc: a@example.com",
            "https://localhost/x",
            30,
            &origin,
        );
        assert_eq!(mail.subject, RESET_SUBJECT);
        let from: Mailbox = "AVM EX <avm@example.com>".parse().unwrap();
        let formatted = String::from_utf8(message(&from, "alice@example.com", mail).unwrap().formatted()).unwrap();
        let headers = formatted.split("\r\n\r\n").next().unwrap();
        assert!(!headers.to_ascii_lowercase().contains("bcc"), "{headers}");
        assert!(
            headers.contains("Subject: Two-Factor Authentication Reset"),
            "{headers}"
        );
        assert!(message(&from, "a@example.com\r\nBcc: b@example.com", test_mail(Lang::En)).is_err());
        let m = notice_mail(&r, Lang::Ja, Notice::Enrolled, "<b>alice</b>", &origin);
        assert!(!m.html.contains("<b>alice</b>"), "the HTML body escapes user data");
    }
}
