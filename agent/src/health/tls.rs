//! TLS for `ssl_get`: like keepalived, the real server's certificate is not verified
//! by default (health pages sit behind self-signed or internal certificates); the
//! handshake, the status and the digest are what the check judges. A check with
//! `tls_ca` verifies the chain and the name against that file's CAs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme,
    WantsVerifier,
};
use tokio_rustls::TlsConnector;

/// The connector for a probe: `ca` `None`, one for every unverified probe (its session
/// cache shared); else one per CA file, read again when the file changes (a CA
/// rotated in place needs no reload).
pub fn connector(ca: Option<&Path>) -> Result<TlsConnector, String> {
    match ca {
        None => Ok(unverified()),
        Some(path) => verifying(path),
    }
}

fn unverified() -> TlsConnector {
    static CONNECTOR: OnceLock<TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let config = builder(Arc::clone(&provider))
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            TlsConnector::from(Arc::new(config))
        })
        .clone()
}

fn builder(provider: Arc<CryptoProvider>) -> ConfigBuilder<ClientConfig, WantsVerifier> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}

type Verifying = BTreeMap<PathBuf, (SystemTime, TlsConnector)>;

fn verifying(path: &Path) -> Result<TlsConnector, String> {
    static CONNECTORS: OnceLock<Mutex<Verifying>> = OnceLock::new();
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
    let mut connectors = CONNECTORS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((at, connector)) = connectors.get(path) {
        if *at == modified {
            return Ok(connector.clone());
        }
    }
    let roots = roots(path)?;
    let config = builder(Arc::new(ring::default_provider()))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    connectors.insert(path.to_owned(), (modified, connector.clone()));
    Ok(connector)
}

/// The CA certificates of a PEM file; an error names the file and what is wrong.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let at = |e: &dyn std::fmt::Display| format!("tls_ca {}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| at(&e))? {
        roots.add(cert.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
    }
    if roots.is_empty() {
        return Err(at(&"no certificate in it"));
    }
    Ok(roots)
}

/// Accepts any certificate, still checking the handshake's signatures with it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
