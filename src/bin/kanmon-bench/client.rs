//! A browser, as far as the benchmark needs one: HTTP/1.1 over TLS (trusting only the
//! bench's certificate) on one kept-alive connection, the session cookie carried by
//! hand, and the login screens filled in — password, enrollment, code.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{Result, bail};

pub const SESSION_COOKIE: &str = "__Host-kanmon";
pub const STEP_SECS: u64 = 30;

pub fn tls_connector(cert: CertificateDer<'static>) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(cfg)))
}

pub async fn tls_stream(addr: SocketAddr, tls: &TlsConnector) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    Ok(tls.connect(name, tcp).await?)
}

/// What the benchmark reads from an answer.
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    /// The new value of the session cookie, when the answer sets one.
    pub session: Option<String>,
    pub body: Bytes,
}

/// One kept-alive HTTPS connection to a gateway; reconnects when the server closed it.
pub struct Conn {
    addr: SocketAddr,
    tls: TlsConnector,
    send: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr, tls: TlsConnector) -> Conn {
        Conn { addr, tls, send: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tls_stream(self.addr, &self.tls).await?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.send = Some(send);
        }
        let send = self.send.as_mut().expect("just connected");
        send.ready().await?;
        Ok(send)
    }

    pub async fn get(&mut self, path: &str, cookie: Option<&str>) -> Result<Reply> {
        let req = self.request(Method::GET, path, cookie).body(Full::new(Bytes::new()))?;
        self.send(req).await
    }

    /// A same-origin form POST, as the browser sends it from the gateway's own page.
    pub async fn post_form(&mut self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Result<Reply> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = self
            .request(Method::POST, path, cookie)
            .header(header::ORIGIN, format!("https://{}", self.addr))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))?;
        self.send(req).await
    }

    fn request(&self, method: Method, path: &str, cookie: Option<&str>) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::ACCEPT, "text/html");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        b
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply> {
        let resp = match self.sender().await?.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.send = None;
                return Err(e.into());
            }
        };
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let session = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|c| c.split(';').next()?.split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_owned());
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            location,
            session,
            body,
        })
    }
}

/// The form token in a page.
fn csrf_of(html: &str) -> Result<String> {
    let marker = "name=\"csrf\" value=\"";
    let Some(start) = html.find(marker) else {
        bail!("no form token in the page")
    };
    let rest = &html[start + marker.len()..];
    Ok(rest.split('"').next().unwrap_or_default().to_owned())
}

/// The manual key shown under the QR code, without the spaces between groups.
fn key_of(html: &str) -> Result<String> {
    let Some(start) = html.find("id=\"manual-key\"") else {
        bail!("no manual key on the enrollment page")
    };
    let section = &html[start..];
    let end = section.find("</p>").unwrap_or(section.len());
    Ok(section[..end]
        .split("<span>")
        .skip(1)
        .filter_map(|s| s.split("</span>").next())
        .collect())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn step_now() -> u64 {
    unix_now() / STEP_SECS
}

/// RFC 6238 (HMAC-SHA1, 6 digits, 30 s steps), written independently of the gateway.
pub fn totp(base32_key: &str, step: u64) -> Result<String> {
    let key = data_encoding::BASE32_NOPAD.decode(base32_key.as_bytes())?;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key)?;
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[h.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    Ok(format!("{:06}", bin % 1_000_000))
}

/// Opens the login screen (a fresh browser: no cookie) and sends user ID and password.
/// Returns where the gateway sends the browser next, and the session cookie for it.
async fn password_step(conn: &mut Conn, user: &str, password: &str) -> Result<(String, String)> {
    let page = conn.get("/_kanmon/login", None).await?;
    if page.status != 200 {
        bail!("login screen: status {}", page.status);
    }
    let Some(cookie) = page.session else {
        bail!("login screen set no session cookie")
    };
    let csrf = csrf_of(&String::from_utf8_lossy(&page.body))?;
    let r = conn
        .post_form(
            "/_kanmon/login",
            Some(&cookie),
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await?;
    match (r.status, r.location, r.session) {
        (303, Some(location), Some(cookie)) => Ok((location, cookie)),
        (status, location, _) => bail!("password for {user}: status {status}, location {location:?}"),
    }
}

/// Fetches a code screen: its page (for the form token, and the key on the enrollment
/// screen).
async fn code_screen(conn: &mut Conn, screen: &str, cookie: &str) -> Result<String> {
    let page = conn.get(screen, Some(cookie)).await?;
    if page.status != 200 {
        bail!("{screen}: status {}", page.status);
    }
    Ok(String::from_utf8_lossy(&page.body).into_owned())
}

/// Submits the current code on a code screen; returns the logged-in cookie and the step
/// the code belonged to.
async fn submit_code(conn: &mut Conn, screen: &str, cookie: &str, page: &str, key: &str) -> Result<(String, u64)> {
    let csrf = csrf_of(page)?;
    let step = step_now();
    let code = totp(key, step)?;
    let r = conn
        .post_form(screen, Some(cookie), &[("csrf", &csrf), ("code", &code)])
        .await?;
    match (r.status, r.session) {
        (303, Some(full)) => Ok((full, step)),
        (status, _) => bail!("code on {screen}: status {status}"),
    }
}

/// A password-only account's login; returns the logged-in session cookie.
pub async fn login_password_only(conn: &mut Conn, user: &str, password: &str) -> Result<String> {
    let (location, cookie) = password_step(conn, user, password).await?;
    if location != "/" {
        bail!("{user}: after the password the gateway sent the browser to {location}, not /");
    }
    Ok(cookie)
}

/// First login of a two-step account: password, enrollment screen, first code. Returns
/// the authenticator key, the step used and the logged-in cookie.
pub async fn enroll(conn: &mut Conn, user: &str, password: &str) -> Result<(String, u64, String)> {
    let (location, cookie) = password_step(conn, user, password).await?;
    if location != "/_kanmon/enroll" {
        bail!("{user}: expected the enrollment screen, got {location}");
    }
    let page = code_screen(conn, "/_kanmon/enroll", &cookie).await?;
    let key = key_of(&page)?;
    if key.len() < 16 {
        bail!("{user}: the enrollment key looks wrong ({} characters)", key.len());
    }
    let (full, step) = submit_code(conn, "/_kanmon/enroll", &cookie, &page, &key).await?;
    Ok((key, step, full))
}

/// A full login of an enrolled account: password, then code. Returns the logged-in
/// cookie and the step used.
pub async fn login_full(conn: &mut Conn, user: &str, password: &str, key: &str) -> Result<(String, u64)> {
    let (location, cookie) = password_step(conn, user, password).await?;
    if location != "/_kanmon/code" {
        bail!("{user}: expected the code screen, got {location}");
    }
    let page = code_screen(conn, "/_kanmon/code", &cookie).await?;
    submit_code(conn, "/_kanmon/code", &cookie, &page, key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B (SHA-1 secret "12345678901234567890"), last six digits.
    #[test]
    fn totp_matches_rfc_6238() {
        let key = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        assert_eq!(totp(&key, 59 / 30).unwrap(), "287082");
        assert_eq!(totp(&key, 1_111_111_109 / 30).unwrap(), "081804");
    }

    #[test]
    fn reads_token_and_key_from_pages() {
        let html = r#"<input type="hidden" name="csrf" value="abc-_123"><p class="key" id="manual-key"><code><span>ABCD</span> <span>EFGH</span></code></p>"#;
        assert_eq!(csrf_of(html).unwrap(), "abc-_123");
        assert_eq!(key_of(html).unwrap(), "ABCDEFGH");
    }
}
