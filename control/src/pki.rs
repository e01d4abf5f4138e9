//! The cluster CA. `lvs-cli cert init` makes it; `lvs-cli cert issue` signs a node's or
//! an operator's certificate with it. Every control connection is mutual TLS: the
//! agent admits only clients with a certificate from this CA, and a client admits only
//! an agent whose certificate is a node certificate from it. No external PKI is needed.
//!
//! Keys are ECDSA P-256 (every TLS 1.3 stack verifies it; 64-byte signatures). Files
//! are PEM; a key file is created with mode 0600, and no file is ever overwritten.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The DNS name in every node certificate. A client reaches a node by address and
/// checks this name: the peer is a node of the cluster (an operator certificate,
/// which lacks it, cannot pose as one).
pub const NODE_NAME: &str = "node.lvs-mesh.invalid";

/// The CA certificate and key file names in the CA directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// A CA lives 20 years: replacing it means re-issuing every certificate.
const CA_DAYS: u64 = 20 * 365;
/// Issued certificates start an hour early, so a node whose clock is slightly behind
/// the issuer's accepts them at once.
const BACKDATE: Duration = Duration::from_secs(3600);

/// What a certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An agent: serves the control API (server auth, with [`NODE_NAME`]) and calls
    /// peers (client auth).
    Node,
    /// A person or tool calling the API (client auth only).
    Operator,
}

/// A certificate and its key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: u64) {
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + Duration::from_secs(days * 86_400)).into();
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "lvs-mesh");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new CA for the cluster `cluster`.
pub fn new_ca(cluster: &str) -> anyhow::Result<Issued> {
    let key = KeyPair::generate().context("generate the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("lvs-mesh cluster CA {cluster}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_DAYS);
    let cert = params
        .self_signed(&key)
        .context("sign the CA certificate")?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `common_name` in `role`, valid for `days`, signed by the CA.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    common_name: &str,
    role: Role,
    days: u64,
) -> anyhow::Result<Issued> {
    anyhow::ensure!(
        !common_name.is_empty() && common_name.len() <= 64,
        "name: 1 to 64 characters, got {}",
        common_name.len()
    );
    anyhow::ensure!(days > 0, "days: must be above 0");
    let ca_key = KeyPair::from_pem(ca_key_pem).context("CA key: not a PEM private key")?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key)
        .context("CA certificate: not a PEM certificate")?;
    let key = KeyPair::generate().context("generate the key")?;
    let mut params = match role {
        Role::Node => CertificateParams::new(vec![NODE_NAME.to_owned()])?,
        Role::Operator => CertificateParams::default(),
    };
    params.distinguished_name = name(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        Role::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Operator => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign the certificate")?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Creates `path` with `text`; fails if it exists. Keys get mode 0600.
fn create(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// Writes `issued` as `dir/stem.pem` and `dir/stem.key`; returns both paths. Nothing
/// is written when either file exists.
pub fn write(dir: &Path, stem: &str, issued: &Issued) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    for path in [&cert, &key] {
        anyhow::ensure!(
            !path.exists(),
            "{} exists: never overwritten (remove it first)",
            path.display()
        );
    }
    create(&key, &issued.key_pem, 0o600)?;
    create(&cert, &issued.cert_pem, 0o644)?;
    Ok((cert, key))
}

/// Reads the CA certificate and key from `dir`.
pub fn read_ca(dir: &Path) -> anyhow::Result<(String, String)> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    };
    Ok((read(CA_CERT)?, read(CA_KEY)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Whether a client trusting `ca` accepts `cert` as a node of the cluster.
    fn is_node(ca: &Issued, cert: &Issued) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        verifier
            .verify_server_cert(
                &der(&cert.cert_pem),
                &[],
                &ServerName::try_from(NODE_NAME).unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn node_certificates_serve_and_operator_certificates_cannot_pose_as_nodes() {
        let ca = new_ca("t").unwrap();
        let node = issue(&ca.cert_pem, &ca.key_pem, "lb1", Role::Node, 1).unwrap();
        let operator = issue(&ca.cert_pem, &ca.key_pem, "ops", Role::Operator, 1).unwrap();
        assert!(is_node(&ca, &node));
        assert!(!is_node(&ca, &operator), "no server role, no node name");
        let other = new_ca("other").unwrap();
        assert!(!is_node(&other, &node), "another CA's client refuses it");
    }

    #[test]
    fn bad_input_is_named_and_nothing_is_overwritten() {
        let ca = new_ca("t").unwrap();
        let err = issue(&ca.cert_pem, "not a key", "lb1", Role::Node, 1)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "CA key: not a PEM private key");
        let err = issue(&ca.cert_pem, &ca.key_pem, "", Role::Node, 1)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "name: 1 to 64 characters, got 0");
        let dir = std::env::temp_dir().join(format!("lvs-pki-{}", std::process::id()));
        let (_, key) = write(&dir, "ca", &ca).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write(&dir, "ca", &ca).err().unwrap();
        assert!(
            err.to_string().contains("exists: never overwritten"),
            "{err}"
        );
        let (cert, key) = read_ca(&dir).unwrap();
        assert_eq!((cert, key), (ca.cert_pem, ca.key_pem));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
