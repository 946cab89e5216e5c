//! The YAML configuration: parsed into raw serde structs (unknown keys refused), then
//! validated into a typed [`Config`]. Every error names the file, the line when it can
//! be found, the field and the reason, so an administrator can fix it without guessing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::i18n::Lang;

/// One account, as the administrator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub two_factor: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The built-in demo dashboard, served on a loopback port of its own.
    Demo,
    /// `http://host:port` or `https://host:port`; requests keep their path and query.
    Url(http::Uri),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub target: Upstream,
    pub connect_timeout_secs: u64,
    pub response_timeout_secs: u64,
    /// Normalized path prefixes forwarded without login (and without identity).
    pub skip_auth: Vec<String>,
    /// Roots for an `https://` upstream's certificate instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// An `https://` upstream's certificate is not checked at all (warned at start).
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketSettings {
    pub idle_timeout_secs: u64,
    pub max_lifetime_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_form_bytes: usize,
    /// Failed passwords per typed user ID, and per client address, in 15 minutes.
    pub password_failures_per_account: usize,
    pub password_failures_per_ip: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout_secs: u64,
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed_if_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub from: String,
    /// Roots for the server's certificate instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The server's certificate is not checked (explicit choice, warned at start).
    pub insecure_skip_verify: bool,
}

/// The self-service reset by e-mail (M-10 … M-15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetSettings {
    /// Off: no reset button, the endpoints answer 404; administrators reset instead.
    pub self_service: bool,
    pub link_lifetime_secs: i64,
    pub max_per_account_per_hour: usize,
    pub max_per_ip_per_hour: usize,
    /// The link works only in the browser that asked for it (REQ-42).
    pub same_browser: bool,
}

/// Which security e-mails are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    pub enrollment: bool,
    pub reset: bool,
    pub wrong_code: bool,
    pub abandoned: bool,
    pub replay: bool,
    pub locked: bool,
    /// An administrator reset, unlocked or logged out the account.
    pub admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub user: String,
    pub email: String,
    pub groups: String,
}

/// The audit trail in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Records older than this are pruned in the background.
    pub retention_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub source: PathBuf,
    /// A separate file with more accounts (`users_file:`), watched like the config.
    pub users_file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub tls: TlsSettings,
    pub upstream: UpstreamSettings,
    pub public_url: Option<http::Uri>,
    /// Lower-case host names (no port) the gateway answers to.
    pub allowed_hosts: Vec<String>,
    /// Proxies in front of the gateway whose `X-Forwarded-For`/`-Host` count.
    pub trusted_proxies: Vec<crate::auth::client::Cidr>,
    pub data_dir: PathBuf,
    pub issuer: String,
    pub default_lang: Lang,
    pub smtp: Option<SmtpSettings>,
    pub reset: ResetSettings,
    pub notify: NotifySettings,
    pub session: SessionSettings,
    pub identity_headers: IdentityHeaders,
    pub websocket: WebSocketSettings,
    pub limits: Limits,
    /// A plain-HTTP listener that only redirects to HTTPS.
    pub http_redirect: Option<SocketAddr>,
    /// Where the Prometheus metrics are served (plain HTTP; keep it on loopback).
    pub metrics: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub audit: AuditSettings,
    /// Keyed by the lower-cased user ID: IDs are matched case-insensitively.
    users: BTreeMap<String, Arc<User>>,
}

impl User {
    /// A print of what a login of this account is checked against: the password hash
    /// and the second-step switch. A session made under another print ends (REQ-74).
    pub fn print(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"kanmon account v1\0");
        h.update([u8::from(self.two_factor)]);
        h.update(self.password_hash.as_bytes());
        h.finalize().into()
    }
}

impl Config {
    /// Every account's print, for the store's check of its sessions (REQ-74).
    pub fn account_prints(&self) -> Vec<(String, [u8; 32])> {
        self.users().map(|u| (u.id.clone(), u.print())).collect()
    }

    pub fn user(&self, id: &str) -> Option<&Arc<User>> {
        self.users.get(&id.to_lowercase())
    }

    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// A warning when the users file (password hashes) is readable by group or others.
    pub fn users_file_warning(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.users_file.as_ref()?;
        let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "{}: the password hashes are readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                file.display(),
                file.display()
            )
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            field: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: e.location().map(|l| l.line()),
            field: String::new(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Validator { path, text, base }.validate(raw)
    }
}

/// What a reload changes in the accounts, by user ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Any field changed (e-mail, role, password hash, two-step switch).
    pub changed: Vec<String>,
    /// Removed, or switch or password changed: these lose their sessions (REQ-74).
    pub ended: Vec<String>,
    /// Two-step switched off: the association goes too, so switching it on again
    /// means a new enrollment (M-11).
    pub second_step_off: Vec<String>,
}

impl AccountChanges {
    pub fn between(old: &Config, next: &Config) -> AccountChanges {
        let mut c = AccountChanges::default();
        for u in old.users() {
            match next.user(&u.id) {
                None => {
                    c.removed.push(u.id.clone());
                    c.ended.push(u.id.clone());
                }
                Some(n) => {
                    if **n != **u {
                        c.changed.push(u.id.clone());
                    }
                    if n.two_factor != u.two_factor || n.password_hash != u.password_hash {
                        c.ended.push(u.id.clone());
                    }
                    if u.two_factor && !n.two_factor {
                        c.second_step_off.push(u.id.clone());
                    }
                }
            }
        }
        c.added = next
            .users()
            .filter(|n| old.user(&n.id).is_none())
            .map(|n| n.id.clone())
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line for the audit trail: IDs only, never a hash.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, ids) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
            ("sessions ended", &self.ended),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what}: {}", ids.join(", ")));
            }
        }
        if parts.is_empty() {
            "no account changes".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

// ---- raw YAML shape -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    tls: RawTls,
    upstream: RawUpstream,
    public_url: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    data_dir: String,
    #[serde(default = "default_issuer")]
    issuer: String,
    #[serde(default)]
    default_lang: Option<String>,
    smtp: Option<RawSmtp>,
    #[serde(default)]
    reset: RawReset,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    identity_headers: RawIdentityHeaders,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    websocket: RawWebSocket,
    http_redirect: Option<RawListen>,
    metrics: Option<RawListen>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    audit: RawAudit,
    users_file: Option<String>,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    retention: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    listen: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebSocket {
    idle_timeout: Option<String>,
    max_lifetime: Option<String>,
}

fn default_issuer() -> String {
    "kanmon".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    #[serde(default)]
    self_signed_if_missing: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    #[serde(default)]
    connect_timeout: Option<String>,
    #[serde(default)]
    response_timeout: Option<String>,
    #[serde(default)]
    skip_auth: Vec<String>,
    ca_file: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: u16,
    security: SmtpSecurity,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    from: String,
    ca_file: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReset {
    self_service: Option<bool>,
    link_lifetime: Option<String>,
    max_per_account_per_hour: Option<usize>,
    max_per_ip_per_hour: Option<usize>,
    same_browser: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    enrollment: Option<bool>,
    reset: Option<bool>,
    wrong_code: Option<bool>,
    abandoned: Option<bool>,
    replay: Option<bool>,
    locked: Option<bool>,
    admin: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentityHeaders {
    user: Option<String>,
    email: Option<String>,
    groups: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_form_bytes: Option<usize>,
    password_failures_per_account: Option<usize>,
    password_failures_per_ip: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    header_read_timeout: Option<String>,
    max_header_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: String,
    email: String,
    password_hash: String,
    role: Role,
    #[serde(default = "default_two_factor")]
    two_factor: bool,
}

fn default_two_factor() -> bool {
    true
}

// ---- validation ------------------------------------------------------------------

const DEFAULT_IDLE_TIMEOUT: &str = "30m";
const DEFAULT_ABSOLUTE_TIMEOUT: &str = "12h";
const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
const DEFAULT_RESPONSE_TIMEOUT: &str = "60s";
const DEFAULT_MAX_FORM_BYTES: usize = 16 * 1024;
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_PASSWORD_FAILURES_PER_ACCOUNT: usize = 10;
const DEFAULT_PASSWORD_FAILURES_PER_IP: usize = 50;
const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const DEFAULT_RESET_LINK_LIFETIME: &str = "30m";
const DEFAULT_RESETS_PER_ACCOUNT_PER_HOUR: usize = 3;
const DEFAULT_RESETS_PER_IP_PER_HOUR: usize = 10;
const DEFAULT_WS_IDLE_TIMEOUT: &str = "10m";
const DEFAULT_WS_MAX_LIFETIME: &str = "12h";
const DEFAULT_AUDIT_RETENTION: &str = "180d";
const MAX_USER_ID_CHARS: usize = 64;

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn err(&self, field: &str, needle: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.to_owned(),
            line: self.line_of(field, needle),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The first line that holds the field's key (and the offending value, when given).
    fn line_of(&self, field: &str, needle: &str) -> Option<usize> {
        let key = field.rsplit('.').next().unwrap_or(field);
        let key = key.split('[').next().unwrap_or(key);
        let lines: Vec<&str> = self.text.lines().collect();
        let hit = |l: &&str| l.contains(&format!("{key}:"));
        lines
            .iter()
            .position(|l| hit(l) && (needle.is_empty() || l.contains(needle)))
            .or_else(|| {
                (!needle.is_empty())
                    .then(|| lines.iter().position(|l| l.contains(needle)))
                    .flatten()
            })
            .or_else(|| lines.iter().position(hit))
            .map(|i| i + 1)
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&self, field: &str, value: Option<&str>, default: &str) -> Result<i64, ConfigError> {
        let v = value.unwrap_or(default);
        parse_duration(v).ok_or_else(|| {
            self.err(
                field,
                v,
                format!("`{v}` is not a duration; write e.g. 30s, 10m, 12h or 1d"),
            )
        })
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            self.err(
                "listen",
                &raw.listen,
                "expected an address and port such as 127.0.0.1:8443",
            )
        })?;

        let target = if raw.upstream.url == "demo" {
            Upstream::Demo
        } else {
            Upstream::Url(self.upstream_url(&raw.upstream.url)?)
        };
        let upstream = UpstreamSettings {
            target,
            connect_timeout_secs: self.duration(
                "upstream.connect_timeout",
                raw.upstream.connect_timeout.as_deref(),
                DEFAULT_CONNECT_TIMEOUT,
            )? as u64,
            response_timeout_secs: self.duration(
                "upstream.response_timeout",
                raw.upstream.response_timeout.as_deref(),
                DEFAULT_RESPONSE_TIMEOUT,
            )? as u64,
            skip_auth: self.skip_auth(&raw.upstream.skip_auth)?,
            ca_file: raw.upstream.ca_file.as_deref().map(|p| self.path(p)),
            insecure_skip_verify: raw.upstream.insecure_skip_verify,
        };

        let public_url = match raw.public_url.as_deref() {
            None => None,
            Some(u) => Some(self.public_url(u)?),
        };

        let mut allowed_hosts = vec!["localhost".to_owned()];
        if !listen.ip().is_unspecified() {
            allowed_hosts.push(host_of_ip(listen.ip()));
        }
        if let Some(host) = public_url.as_ref().and_then(|u| u.host()) {
            allowed_hosts.push(host.to_ascii_lowercase());
        }
        for h in &raw.allowed_hosts {
            let host = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c)) {
                return Err(self.err(
                    "allowed_hosts",
                    h,
                    format!("`{h}` is not a host name (no scheme, port or path)"),
                ));
            }
            allowed_hosts.push(host);
        }
        allowed_hosts.sort();
        allowed_hosts.dedup();
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .map(|p| {
                crate::auth::client::Cidr::parse(p).ok_or_else(|| {
                    self.err(
                        "trusted_proxies",
                        p,
                        format!("`{p}` is not an address or range such as 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let default_lang = match raw.default_lang.as_deref() {
            None => Lang::Ja,
            Some(l) => Lang::parse(l).ok_or_else(|| {
                self.err(
                    "default_lang",
                    l,
                    format!("`{l}` is not a supported language: use ja or en"),
                )
            })?,
        };

        if raw.issuer.trim().is_empty() || raw.issuer.contains(':') || has_control(&raw.issuer) {
            return Err(self.err(
                "issuer",
                &raw.issuer,
                "must be a non-empty name without `:` or control characters",
            ));
        }

        let smtp = raw.smtp.map(|s| self.smtp(s)).transpose()?;
        let users_file = raw.users_file.as_deref().map(|p| self.path(p));
        let mut accounts = Accounts::new(smtp.is_some());
        accounts.add(self, Some("users"), raw.users)?;
        if let Some(file) = &users_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                self.err(
                    "users_file",
                    raw.users_file.as_deref().unwrap_or(""),
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let list = parse_users_file(file, &text)?;
            let v = Validator {
                path: file,
                text: &text,
                base: self.base,
            };
            accounts.add(&v, None, list)?;
        }
        let users = accounts.users;
        let audit = AuditSettings {
            retention_secs: self.duration(
                "audit.retention",
                raw.audit.retention.as_deref(),
                DEFAULT_AUDIT_RETENTION,
            )?,
        };

        Ok(Config {
            source: self.path.to_owned(),
            users_file,
            audit,
            listen,
            tls: TlsSettings {
                cert: self.path(&raw.tls.cert),
                key: self.path(&raw.tls.key),
                self_signed_if_missing: raw.tls.self_signed_if_missing,
            },
            upstream,
            public_url,
            allowed_hosts,
            trusted_proxies,
            data_dir: self.path(&raw.data_dir),
            issuer: raw.issuer.trim().to_owned(),
            default_lang,
            smtp,
            reset: ResetSettings {
                self_service: raw.reset.self_service.unwrap_or(true),
                link_lifetime_secs: self.duration(
                    "reset.link_lifetime",
                    raw.reset.link_lifetime.as_deref(),
                    DEFAULT_RESET_LINK_LIFETIME,
                )?,
                max_per_account_per_hour: raw
                    .reset
                    .max_per_account_per_hour
                    .unwrap_or(DEFAULT_RESETS_PER_ACCOUNT_PER_HOUR),
                max_per_ip_per_hour: raw.reset.max_per_ip_per_hour.unwrap_or(DEFAULT_RESETS_PER_IP_PER_HOUR),
                same_browser: raw.reset.same_browser.unwrap_or(true),
            },
            notify: NotifySettings {
                enrollment: raw.notify.enrollment.unwrap_or(true),
                reset: raw.notify.reset.unwrap_or(true),
                wrong_code: raw.notify.wrong_code.unwrap_or(true),
                abandoned: raw.notify.abandoned.unwrap_or(true),
                replay: raw.notify.replay.unwrap_or(true),
                locked: raw.notify.locked.unwrap_or(true),
                admin: raw.notify.admin.unwrap_or(true),
            },
            session: SessionSettings {
                idle_timeout_secs: self.duration(
                    "session.idle_timeout",
                    raw.session.idle_timeout.as_deref(),
                    DEFAULT_IDLE_TIMEOUT,
                )?,
                absolute_timeout_secs: self.duration(
                    "session.absolute_timeout",
                    raw.session.absolute_timeout.as_deref(),
                    DEFAULT_ABSOLUTE_TIMEOUT,
                )?,
            },
            identity_headers: IdentityHeaders {
                user: self.header_name("identity_headers.user", raw.identity_headers.user, "Remote-User")?,
                email: self.header_name("identity_headers.email", raw.identity_headers.email, "Remote-Email")?,
                groups: self.header_name("identity_headers.groups", raw.identity_headers.groups, "Remote-Groups")?,
            },
            websocket: WebSocketSettings {
                idle_timeout_secs: self.duration(
                    "websocket.idle_timeout",
                    raw.websocket.idle_timeout.as_deref(),
                    DEFAULT_WS_IDLE_TIMEOUT,
                )? as u64,
                max_lifetime_secs: self.duration(
                    "websocket.max_lifetime",
                    raw.websocket.max_lifetime.as_deref(),
                    DEFAULT_WS_MAX_LIFETIME,
                )? as u64,
            },
            limits: self.limits(&raw.limits)?,
            http_redirect: raw
                .http_redirect
                .map(|l| self.listen_addr("http_redirect.listen", &l.listen))
                .transpose()?,
            metrics: raw
                .metrics
                .map(|l| self.listen_addr("metrics.listen", &l.listen))
                .transpose()?,
            log_format: raw.log.format,
            users,
        })
    }

    fn listen_addr(&self, field: &str, v: &str) -> Result<SocketAddr, ConfigError> {
        v.parse().map_err(|_| {
            self.err(
                field,
                v,
                format!("`{v}` is not an address and port such as 127.0.0.1:8080"),
            )
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let positive = |field: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(self.err(field, "0", "must be greater than 0")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let max_header_bytes = positive(
            "limits.max_header_bytes",
            raw.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
        )?;
        if max_header_bytes < 8192 {
            return Err(self.err("limits.max_header_bytes", "", "must be at least 8192"));
        }
        Ok(Limits {
            max_form_bytes: positive("limits.max_form_bytes", raw.max_form_bytes, DEFAULT_MAX_FORM_BYTES)?,
            password_failures_per_account: positive(
                "limits.password_failures_per_account",
                raw.password_failures_per_account,
                DEFAULT_PASSWORD_FAILURES_PER_ACCOUNT,
            )?,
            password_failures_per_ip: positive(
                "limits.password_failures_per_ip",
                raw.password_failures_per_ip,
                DEFAULT_PASSWORD_FAILURES_PER_IP,
            )?,
            max_connections: positive("limits.max_connections", raw.max_connections, DEFAULT_MAX_CONNECTIONS)?,
            max_connections_per_ip: positive(
                "limits.max_connections_per_ip",
                raw.max_connections_per_ip,
                DEFAULT_MAX_CONNECTIONS_PER_IP,
            )?,
            header_read_timeout_secs: self.duration(
                "limits.header_read_timeout",
                raw.header_read_timeout.as_deref(),
                DEFAULT_HEADER_READ_TIMEOUT,
            )? as u64,
            max_header_bytes,
        })
    }

    /// Skip-auth prefixes are compared with normalized paths, so they are normalized too;
    /// the gateway's own prefix can never be one.
    fn skip_auth(&self, prefixes: &[String]) -> Result<Vec<String>, ConfigError> {
        prefixes
            .iter()
            .map(|p| {
                let n = crate::auth::path::NormalizedPath::parse(p)
                    .map_err(|_| self.err("upstream.skip_auth", p, format!("`{p}` is not a path starting with /")))?;
                if n.is_reserved() || n.as_str() == "/" {
                    return Err(self.err(
                        "upstream.skip_auth",
                        p,
                        format!("`{p}` would open the gateway's own paths or everything"),
                    ));
                }
                Ok(n.as_str().to_owned())
            })
            .collect()
    }

    fn upstream_url(&self, u: &str) -> Result<http::Uri, ConfigError> {
        let bad = |why: &str| self.err("upstream.url", u, format!("`{u}` {why}"));
        let uri: http::Uri = u.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("must start with http:// or https:// (or be `demo`)")),
        }
        if uri.authority().is_none() {
            return Err(bad("has no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("must not have a path or query: requests keep their own"));
        }
        Ok(uri)
    }

    fn public_url(&self, u: &str) -> Result<http::Uri, ConfigError> {
        let uri: http::Uri = u
            .parse()
            .map_err(|_| self.err("public_url", u, format!("`{u}` is not a URL")))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(self.err("public_url", u, "must be an https:// URL with a host"));
        }
        Ok(uri)
    }

    fn header_name(&self, field: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
        let v = v.unwrap_or_else(|| default.to_owned());
        if http::HeaderName::from_bytes(v.as_bytes()).is_err() {
            return Err(self.err(field, &v, format!("`{v}` is not a valid HTTP header name")));
        }
        Ok(v)
    }

    fn smtp(&self, s: RawSmtp) -> Result<SmtpSettings, ConfigError> {
        if s.password.is_some() {
            return Err(self.err(
                "smtp.password",
                "",
                "inline passwords are refused: put the password in a file readable only by kanmon (chmod 600) and name it in `password_file`, or name an environment variable in `password_env`",
            ));
        }
        if s.host.trim().is_empty() || has_control(&s.host) {
            return Err(self.err("smtp.host", &s.host, "must be a host name"));
        }
        if has_control(&s.from) || !s.from.contains('@') {
            return Err(self.err(
                "smtp.from",
                &s.from,
                "must be an address such as `AVM EX <avm@example.com>`",
            ));
        }
        Ok(SmtpSettings {
            host: s.host,
            port: s.port,
            security: s.security,
            username: s.username,
            password_file: s.password_file.map(|p| self.path(&p)),
            password_env: s.password_env,
            from: s.from,
            ca_file: s.ca_file.map(|p| self.path(&p)),
            insecure_skip_verify: s.insecure_skip_verify,
        })
    }
}

/// The accounts read so far, from the config and the users file; IDs and e-mails must
/// be unique across both.
struct Accounts {
    has_smtp: bool,
    users: BTreeMap<String, Arc<User>>,
    /// Lower-cased e-mail → the file that has it.
    emails: std::collections::HashMap<String, PathBuf>,
    /// Lower-cased ID → the file that has it.
    ids: std::collections::HashMap<String, PathBuf>,
}

impl Accounts {
    fn new(has_smtp: bool) -> Accounts {
        Accounts {
            has_smtp,
            users: BTreeMap::new(),
            emails: Default::default(),
            ids: Default::default(),
        }
    }

    /// Validates the entries of one list: `list` is the top-level key they are under,
    /// or `None` when the whole file is the list.
    fn add(&mut self, v: &Validator, list: Option<&str>, raw: Vec<RawUser>) -> Result<(), ConfigError> {
        for (i, u) in raw.into_iter().enumerate() {
            let err = |f: &str, reason: String| ConfigError {
                file: v.path.to_owned(),
                line: entry_field_line(v.text, list, i, f).or_else(|| v.line_of(f, &u.id)),
                field: format!("users[{i}].{f}"),
                reason,
            };
            for (f, value) in [("id", &u.id), ("email", &u.email), ("password_hash", &u.password_hash)] {
                if has_control(value) {
                    return Err(err(
                        f,
                        "contains a control character (a tab, line break or the like)".into(),
                    ));
                }
            }
            if u.id.is_empty() || u.id.chars().count() > MAX_USER_ID_CHARS || u.id.contains(':') || u.id.trim() != u.id
            {
                return Err(err(
                    "id",
                    format!(
                        "`{}` is not a valid user ID: 1 to {MAX_USER_ID_CHARS} characters, no `:`, no spaces at either end, no control characters",
                        u.id
                    ),
                ));
            }
            if !is_plausible_email(&u.email) {
                return Err(err("email", format!("`{}` is not an e-mail address", u.email)));
            }
            if let Err(why) = crate::auth::password::check_hash(&u.password_hash) {
                return Err(err("password_hash", why));
            }
            if u.two_factor && !self.has_smtp {
                return Err(err(
                    "two_factor",
                    format!(
                        "account `{}` has two-step authentication on, which needs the `smtp` section (the reset e-mail); add an `smtp` section or set two_factor: false",
                        u.id
                    ),
                ));
            }
            let key = u.id.to_lowercase();
            if let Some(first) = self.ids.get(&key) {
                return Err(err(
                    "id",
                    format!(
                        "user ID `{}` appears twice (IDs are case-insensitive; the other one is in {})",
                        u.id,
                        first.display()
                    ),
                ));
            }
            let email = u.email.to_lowercase();
            if let Some(first) = self.emails.get(&email) {
                return Err(err(
                    "email",
                    format!("`{}` is used by another account (in {})", u.email, first.display()),
                ));
            }
            self.ids.insert(key.clone(), v.path.to_owned());
            self.emails.insert(email, v.path.to_owned());
            self.users.insert(
                key,
                Arc::new(User {
                    id: u.id,
                    email: u.email,
                    password_hash: u.password_hash,
                    role: u.role,
                    two_factor: u.two_factor,
                }),
            );
        }
        Ok(())
    }
}

/// A users file is a YAML list of the same entries as `users:` (empty: no accounts).
fn parse_users_file(file: &Path, text: &str) -> Result<Vec<RawUser>, ConfigError> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Vec::new());
    }
    serde_norway::from_str(text).map_err(|e| ConfigError {
        file: file.to_owned(),
        line: e.location().map(|l| l.line()),
        field: String::new(),
        reason: e.to_string(),
    })
}

/// The 0-based first line of each entry of a block-style YAML list, and the line after
/// the list: under the top-level key `list`, or the whole document when `None`.
fn list_entries(text: &str, list: Option<&str>) -> (Vec<usize>, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = match list {
        Some(k) => match lines
            .iter()
            .position(|l| l.strip_prefix(k).is_some_and(|r| r.starts_with(':')))
        {
            Some(p) => p + 1,
            None => return (Vec::new(), 0),
        },
        None => 0,
    };
    let (mut starts, mut indent) = (Vec::new(), None);
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim_start();
        if !(t.is_empty() || t.starts_with('#')) {
            let ind = l.len() - t.len();
            let item = t == "-" || t.starts_with("- ");
            if list.is_some() && ind == 0 && !item {
                break;
            }
            if item && indent.is_none_or(|x| x == ind) {
                indent = Some(ind);
                starts.push(i);
            }
        }
        i += 1;
    }
    (starts, i)
}

/// The 1-based line of `field` in the `index`-th list entry (the entry's first line when
/// the field is not written there); `None` for flow-style lists.
fn entry_field_line(text: &str, list: Option<&str>, index: usize, field: &str) -> Option<usize> {
    let (starts, end) = list_entries(text, list);
    let start = *starts.get(index)?;
    let stop = starts.get(index + 1).copied().unwrap_or(end);
    let lines: Vec<&str> = text.lines().collect();
    let hit = (start..stop).find(|&n| {
        let l = lines[n];
        l.contains(&format!("{field}:")) && !l.trim_start().starts_with('#')
    });
    Some(hit.unwrap_or(start) + 1)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn is_plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

fn host_of_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `90`, `90s`, `10m`, `12h`, `1d` → seconds.
fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0J3pHx5J0bLyPzT1S9Xl7+7Zr2kGZQ2+KJqbqQ4mG1g";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/kanmon/config.yaml"), text)
    }

    fn base(users: &str, smtp: bool) -> String {
        let smtp = if smtp {
            "smtp: { host: 127.0.0.1, port: 25, security: none, from: \"a <a@example.com>\" }\n"
        } else {
            ""
        };
        format!(
            "listen: 127.0.0.1:8443\ntls: {{ cert: c.crt, key: c.key }}\nupstream: {{ url: demo }}\ndata_dir: data\n{smtp}users:\n{users}"
        )
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let c = parse(&base("", false)).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/kanmon/data"));
        assert_eq!(c.tls.cert, Path::new("/etc/kanmon/c.crt"));
        assert_eq!(c.default_lang, Lang::Ja);
        assert!(c.allowed_hosts.contains(&"localhost".to_owned()));
        assert!(c.allowed_hosts.contains(&"127.0.0.1".to_owned()));
    }

    #[test]
    fn upstream_url_is_http_or_https_without_a_path() {
        let with =
            |url: &str| parse(&base("", false).replace("url: demo", &format!("url: \"{url}\", ca_file: ca.pem")));
        let c = with("https://app.internal:8443").unwrap();
        assert_eq!(
            c.upstream.target,
            Upstream::Url("https://app.internal:8443".parse().unwrap())
        );
        assert_eq!(c.upstream.ca_file.as_deref(), Some(Path::new("/etc/kanmon/ca.pem")));
        assert!(with("http://127.0.0.1:8080").is_ok());
        for bad in ["ftp://x", "https://app.internal/dash", "127.0.0.1:8080"] {
            assert_eq!(with(bad).unwrap_err().field, "upstream.url", "{bad}");
        }
    }

    #[test]
    fn unknown_key_names_its_line() {
        let e = parse("listen: 127.0.0.1:1\nlisten_port: 3\n").unwrap_err();
        assert!(e.reason.contains("listen_port"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn m3_two_step_account_without_smtp_is_refused_naming_the_account() {
        let users = format!("  - {{ id: alice, email: a@example.com, password_hash: \"{HASH}\", role: admin }}\n");
        let e = parse(&base(&users, false)).unwrap_err();
        assert!(e.reason.contains("alice") && e.reason.contains("smtp"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
        assert!(parse(&base(&users, true)).is_ok());
    }

    #[test]
    fn bad_user_fields_name_field_and_line() {
        let users = format!(
            "  - {{ id: alice, email: a@example.com, password_hash: \"{HASH}\", role: user }}\n  - {{ id: Alice, email: b@example.com, password_hash: \"{HASH}\", role: user }}\n"
        );
        let e = parse(&base(&users, true)).unwrap_err();
        assert_eq!(e.field, "users[1].id");
        assert_eq!(e.line, Some(8), "{e}");

        let users = "  - { id: bob, email: not-an-address, password_hash: \"x\", role: user }\n";
        let e = parse(&base(users, true)).unwrap_err();
        assert_eq!(e.field, "users[0].email", "{e}");

        let users = "  - { id: bob, email: b@example.com, password_hash: \"$2y$10$abc\", role: user }\n";
        let e = parse(&base(users, true)).unwrap_err();
        assert_eq!(e.field, "users[0].password_hash", "{e}");
    }

    /// M-1: a hash weaker than the minimum is refused with its line and field.
    #[test]
    fn m1_weak_password_hash_names_line_and_field() {
        let weak = HASH.replace("m=19456,t=2", "m=4096,t=2");
        let users = format!(
            "  - id: alice\n    email: a@example.com\n    password_hash: \"{HASH}\"\n    role: user\n  - id: bob\n    email: b@example.com\n    password_hash: \"{weak}\"\n    role: user\n"
        );
        let e = parse(&base(&users, true)).unwrap_err();
        assert_eq!(e.field, "users[1].password_hash", "{e}");
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.reason.contains("m=4096") && e.reason.contains("19456"), "{e}");
    }

    /// M-1: control characters anywhere in an account are refused.
    #[test]
    fn m1_control_characters_in_accounts_are_refused() {
        for (field, id, email) in [
            ("id", "ali\\x07ce", "a@example.com"),
            ("email", "alice", "a@exa\\tmple.com"),
            ("email", "alice", "a@example.com\\r\\nBcc: x@example.com"),
        ] {
            let users = format!("  - {{ id: \"{id}\", email: \"{email}\", password_hash: \"{HASH}\", role: user }}\n");
            let e = parse(&base(&users, true)).unwrap_err();
            assert_eq!(e.field, format!("users[0].{field}"), "{e}");
            assert!(e.reason.contains("control character"), "{e}");
            assert_eq!(e.line, Some(7), "{e}");
        }
    }

    fn with_users_file(inline: &str, file: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.yaml"), file).unwrap();
        let text = base(inline, true).replace("users:\n", "users_file: users.yaml\nusers:\n");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, &text).unwrap();
        let c = Config::load(&path);
        (dir, c)
    }

    /// M-1: accounts in a separate file, merged with the inline ones.
    #[test]
    fn m1_users_file_is_merged_and_watched() {
        let inline = format!("  - {{ id: alice, email: a@example.com, password_hash: \"{HASH}\", role: admin }}\n");
        let file = format!(
            "# accounts\n- id: bob\n  email: b@example.com\n  password_hash: \"{HASH}\"\n  role: user\n  two_factor: false\n"
        );
        let (dir, c) = with_users_file(&inline, &file);
        let c = c.unwrap();
        assert_eq!(c.users_file.as_deref(), Some(dir.path().join("users.yaml").as_path()));
        assert!(c.user("alice").is_some() && c.user("BOB").is_some_and(|b| !b.two_factor));
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join("users.yaml");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(c.users_file_warning().unwrap().contains("chmod 600"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.users_file_warning(), None);
        let (_d, c) = with_users_file("", "");
        assert_eq!(c.unwrap().users().count(), 0, "an empty users file is no accounts");
    }

    /// M-1: an error in the users file names that file, its line and the field;
    /// duplicates across both files are refused.
    #[test]
    fn m1_users_file_errors_name_the_file_and_line() {
        let inline = format!("  - {{ id: alice, email: a@example.com, password_hash: \"{HASH}\", role: admin }}\n");
        let file = format!(
            "- id: bob\n  email: b@example.com\n  password_hash: \"{HASH}\"\n  role: user\n- id: carol\n  email: not-an-address\n  password_hash: \"{HASH}\"\n  role: user\n"
        );
        let (dir, c) = with_users_file(&inline, &file);
        let e = c.unwrap_err();
        assert_eq!(e.file, dir.path().join("users.yaml"));
        assert_eq!((e.field.as_str(), e.line), ("users[1].email", Some(6)), "{e}");

        let dup = format!(
            "- id: bob\n  email: b@example.com\n  password_hash: \"{HASH}\"\n  role: user\n- id: ALICE\n  email: x@example.com\n  password_hash: \"{HASH}\"\n  role: user\n"
        );
        let (_d, c) = with_users_file(&inline, &dup);
        let e = c.unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("users[1].id", Some(5)), "{e}");
        assert!(e.reason.contains("config.yaml"), "says where the other one is: {e}");

        let dup_mail = format!("- {{ id: bob, email: A@Example.com, password_hash: \"{HASH}\", role: user }}\n");
        let (_d, c) = with_users_file(&inline, &dup_mail);
        assert_eq!(c.unwrap_err().field, "users[0].email");

        let (_d, c) = with_users_file(&inline, "- id: bob\n  emial: b@example.com\n");
        let e = c.unwrap_err();
        assert!(
            e.file.ends_with("users.yaml") && e.line == Some(2) && e.reason.contains("emial"),
            "{e}"
        );

        let text = base("", true).replace("users:\n", "users_file: absent.yaml\nusers:\n");
        let e = parse(&text).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("users_file", Some(6)), "{e}");
    }

    #[test]
    fn audit_retention_defaults_to_180_days() {
        assert_eq!(parse(&base("", false)).unwrap().audit.retention_secs, 180 * 86400);
        let c = parse(&format!("{}audit: {{ retention: 30d }}\n", base("", false))).unwrap();
        assert_eq!(c.audit.retention_secs, 30 * 86400);
    }

    /// REQ-74, M-11: what a reload changes in the accounts.
    #[test]
    fn req74_account_changes_between_configs() {
        let user = |id: &str, mail: &str, tf: bool| {
            format!("  - {{ id: {id}, email: {mail}, password_hash: \"{HASH}\", role: user, two_factor: {tf} }}\n")
        };
        let old = parse(&base(
            &(user("a", "a@example.com", true) + &user("b", "b@example.com", true) + &user("c", "c@example.com", true)),
            true,
        ))
        .unwrap();
        let next = parse(&base(
            &(user("a", "a2@example.com", true)
                + &user("b", "b@example.com", false)
                + &user("d", "d@example.com", true)),
            true,
        ))
        .unwrap();
        let c = AccountChanges::between(&old, &next);
        assert_eq!(c.added, ["d"]);
        assert_eq!(c.removed, ["c"]);
        assert_eq!(c.changed, ["a", "b"]);
        assert_eq!(c.ended, ["b", "c"]);
        assert_eq!(c.second_step_off, ["b"]);
        assert_eq!(c.summary(), "added: d; removed: c; changed: a, b; sessions ended: b, c");
        assert!(!c.summary().contains("argon2"));
    }

    #[test]
    fn user_lookup_is_case_insensitive() {
        let users = format!(
            "  - {{ id: Alice, email: a@example.com, password_hash: \"{HASH}\", role: admin, two_factor: false }}\n"
        );
        let c = parse(&base(&users, false)).unwrap();
        assert_eq!(c.user("alice").unwrap().id, "Alice");
        assert!(c.user("bob").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1d"), Some(86400));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5 minutes"), None);
    }

    #[test]
    fn inline_smtp_password_is_refused_with_the_fix() {
        let text = "listen: 127.0.0.1:8443\ntls: { cert: c, key: k }\nupstream: { url: demo }\ndata_dir: d\nsmtp: { host: h, port: 25, security: none, from: a@example.com, password: hunter2 }\n";
        let e = parse(text).unwrap_err();
        assert!(e.reason.contains("password_file"), "{e}");
    }
}
