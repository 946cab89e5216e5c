//! The gateway's TLS: certificate and key from files (a self-signed pair is made when
//! asked and absent), TLS 1.2 and 1.3 only with rustls' defaults (REQ-70), ALPN for
//! HTTP/2 and HTTP/1.1.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Installs aws-lc-rs as the process's one crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The certificate in use; swapped when the files change, without touching open
/// connections (G-9).
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn reload(&self, cfg: &Config) -> Result<(), String> {
        self.current.store(load(&cfg.tls.cert, &cfg.tls.key)?);
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The server's TLS configuration and the handle to swap its certificate.
pub fn server_config(cfg: &Config) -> Result<(Arc<ServerConfig>, Arc<CertStore>), String> {
    let tls = &cfg.tls;
    if tls.self_signed_if_missing && !tls.cert.exists() && !tls.key.exists() {
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        names.extend(cfg.allowed_hosts.iter().map(|h| h.trim_matches(['[', ']']).to_owned()));
        names.sort();
        names.dedup();
        generate_self_signed(&tls.cert, &tls.key, names)?;
        tracing::warn!(cert = %tls.cert.display(), "generated a self-signed certificate; browsers will warn until you install a real one");
    }
    let store = Arc::new(CertStore {
        current: ArcSwap::new(load(&tls.cert, &tls.key)?),
    });
    let mut sc = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(sc), store))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: cannot read the certificate: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: cannot read the private key: {e}", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(certs, key_der, &provider)
        .map_err(|e| format!("{}: the key does not fit the certificate: {e}", key.display()))?;
    Ok(Arc::new(ck))
}

fn generate_self_signed(cert: &Path, key: &Path, names: Vec<String>) -> Result<(), String> {
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("generating a certificate failed: {e}"))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    write_new(key, ck.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, ck.cert.pem().as_bytes(), 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}
