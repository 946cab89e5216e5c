//! The gateway's health as administrators see it (the status page and
//! `healthz?verbose`): upstream and SMTP reachable, clock synchronised, certificate
//! expiry, when the configuration was loaded.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;

use crate::app::App;
use crate::clock::{UnixTime, unix_from_civil};

/// A reachability check gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// A TCP connection to the upstream succeeded.
    pub upstream_reachable: bool,
    /// `None` when no SMTP server is configured.
    pub smtp_reachable: Option<bool>,
    pub smtp_server: Option<String>,
    /// The kernel's word (M-4); `None` when it cannot tell.
    pub clock_synchronised: Option<bool>,
    /// The certificate's notAfter; `None` when it cannot be read.
    pub certificate_expires: Option<UnixTime>,
    pub config_loaded_at: UnixTime,
}

pub async fn health(app: &Arc<App>) -> Health {
    let cfg = app.config();
    let upstream = app.proxy.upstream_authority(&cfg);
    let smtp_server = cfg.smtp.as_ref().map(|s| format!("{}:{}", s.host, s.port));
    let (upstream_reachable, smtp_reachable) = tokio::join!(
        async {
            match &upstream {
                Some(a) => reachable(a).await,
                None => false,
            }
        },
        async {
            match &smtp_server {
                Some(a) => Some(reachable(a).await),
                None => None,
            }
        }
    );
    Health {
        upstream_reachable,
        smtp_reachable,
        smtp_server,
        clock_synchronised: app.clock_synchronised(),
        certificate_expires: certificate_expiry(&cfg.tls.cert),
        config_loaded_at: app.loaded_at.load(Ordering::Relaxed),
    }
}

async fn reachable(authority: &str) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority)).await,
        Ok(Ok(_))
    )
}

/// The notAfter of the first certificate in a PEM file.
pub fn certificate_expiry(path: &std::path::Path) -> Option<UnixTime> {
    let der = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    not_after(der.as_ref())
}

/// One DER element: tag, contents, and what follows it.
fn der_item(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, b| l << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// An X.509 certificate's notAfter, read by walking its DER far enough: Certificate →
/// tbsCertificate → [version], serial, signature, issuer → validity. Only shown to
/// administrators; nothing is decided by it.
pub fn not_after(cert: &[u8]) -> Option<UnixTime> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let (SEQUENCE, cert, _) = der_item(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_item(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der_item(tbs)?;
    if tag == VERSION {
        rest = der_item(rest)?.2; // the serial number
    }
    rest = der_item(rest)?.2; // signature algorithm
    rest = der_item(rest)?.2; // issuer
    let (SEQUENCE, validity, _) = der_item(rest)? else {
        return None;
    };
    let (_, _, after_not_before) = der_item(validity)?;
    let (tag, time, _) = der_item(after_not_before)?;
    asn1_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(tag: u8, s: &str) -> Option<UnixTime> {
    let digits = s.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let n = |i: usize| rest[i..i + 2].parse::<u32>().ok();
    Some(unix_from_civil(year, n(0)?, n(2)?, n(4)?, n(6)?, n(8)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_until(year: i32) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.not_after = rcgen::date_time_ymd(year, 5, 18);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_in_both_time_forms() {
        assert_eq!(
            not_after(&cert_until(2033)),
            Some(unix_from_civil(2033, 5, 18, 0, 0, 0))
        );
        assert_eq!(
            not_after(&cert_until(2051)),
            Some(unix_from_civil(2051, 5, 18, 0, 0, 0)),
            "GeneralizedTime from 2050 on"
        );
    }

    #[test]
    fn garbage_is_no_date() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        let good = cert_until(2033);
        assert_eq!(not_after(&good[..good.len() / 3]), None);
    }
}
