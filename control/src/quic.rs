//! The control API over QUIC (quinn) with mutual TLS 1.3 (rustls): one bidirectional
//! stream per exchange ([`crate::frame`]). The agent admits a client only with a
//! certificate from the cluster CA, checked in the handshake, so a refused client never
//! gets to send a request; the client admits the agent only with a node certificate
//! from the same CA ([`crate::pki::NODE_NAME`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// The ALPN protocol of this API's version: a client of another version, or another
/// protocol on the port, fails the handshake with a clear error instead of a garbled
/// exchange.
pub const ALPN: &[u8] = b"lvs-mesh-control/1";

/// Where the PEM files of one end's identity are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This end's certificate (chain), issued by the CA.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// One end's loaded identity: the CA it trusts, its certificate chain and key.
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no PEM certificate in it",
        path.display()
    );
    Ok(certs)
}

impl Identity {
    pub fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(&files.ca)? {
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("{}: {e}", files.ca.display()))?;
        }
        let chain = certificates(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.key.display()))?;
        Ok(Identity {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The agent's side: this node's certificate, clients certified by the CA only.
    pub fn server_config(&self) -> anyhow::Result<quinn::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        )
        .build()
        .context("client verifier")?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("this node's certificate and key do not match")?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls).context("QUIC TLS config")?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// The caller's side: agents with a node certificate from the CA only.
    pub fn client_config(&self) -> anyhow::Result<quinn::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .context("the certificate and key do not match")?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).context("QUIC TLS config")?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

/// A client endpoint on an ephemeral port of `peer`'s family.
pub fn client_endpoint(identity: &Identity, peer: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    let bind: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).context("QUIC client socket")?;
    endpoint.set_default_client_config(identity.client_config()?);
    Ok(endpoint)
}

/// TLS alerts travel as QUIC's CRYPTO_ERROR codes 0x100 + alert.
fn is_tls_alert(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// A failed connection in the operator's words.
pub fn explain(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ConnectionClosed(close) if is_tls_alert(close.error_code) => {
            format!(
                "the agent refused this client's certificate ({close}): use one issued by \
                 the cluster CA (lvs-cli cert issue)"
            )
        }
        quinn::ConnectionError::TransportError(t) if is_tls_alert(t.code) => {
            format!("the agent is not a node of this cluster CA ({t}): check --ca and the address")
        }
        other => other.to_string(),
    }
}
