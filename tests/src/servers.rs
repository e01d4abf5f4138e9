//! Small servers the lab's health scenarios run on the real servers: a TLS web server
//! with a self-signed certificate made at start or the test's own (for `ssl_get`), and a DNS responder
//! for one name (for `dns_check`). Each serves until killed.
use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// What the TLS server answers every request.
const PAGE: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

/// A test CA, a certificate it signed for `www.lab.invalid` and 127.0.0.1 with its key,
/// and another CA that signed nothing: PEM files written by [`Pki::make`].
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// Makes the certificates and writes them in `dir` (created if needed).
    pub fn make(dir: &Path) -> Result<Pki> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca = |name: &str| -> Result<_> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            // Distinct names: a verifier looks the issuer up by name.
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key)?;
            Ok((cert, Issuer::new(params, key)))
        };
        let (ca_cert, issuer) = ca("lvs-mesh test CA")?;
        let (other_cert, _) = ca("lvs-mesh other test CA")?;
        let key = KeyPair::generate()?;
        let names = vec!["www.lab.invalid".to_owned(), "127.0.0.1".to_owned()];
        let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
        std::fs::create_dir_all(dir)?;
        let pki = Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            cert: dir.join("www.pem"),
            key: dir.join("www.key"),
        };
        std::fs::write(&pki.ca, ca_cert.pem())?;
        std::fs::write(&pki.other_ca, other_cert.pem())?;
        std::fs::write(&pki.cert, cert.pem())?;
        std::fs::write(&pki.key, key.serialize_pem())?;
        Ok(pki)
    }
}

/// A TLS server config with the certificate and key of `pem` (PEM files), else with a
/// fresh self-signed certificate.
pub fn tls_config(pem: Option<(&Path, &Path)>) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (chain, key) = match pem {
        Some((cert, key)) => (
            CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?,
            PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?,
        ),
        None => {
            let cert = rcgen::generate_simple_self_signed(vec!["lab.invalid".to_owned()])
                .context("make a self-signed certificate")?;
            let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())
                .map_err(|e| anyhow::anyhow!("certificate key: {e}"))?;
            (vec![cert.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("TLS server config")
}

/// Serves [`PAGE`] over TLS on `listen` (certificate: see [`tls_config`]).
pub fn tls_server(listen: SocketAddr, pem: Option<(&Path, &Path)>) -> Result<()> {
    let config = tls_config(pem)?;
    let config = Arc::new(config);
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let config = Arc::clone(&config);
        thread::spawn(move || {
            let Ok(tls) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut stream = rustls::StreamOwned::new(tls, tcp);
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(PAGE);
            stream.conn.send_close_notify();
            let _ = stream.flush();
        });
    }
    Ok(())
}

/// Answers A queries for `name` with `addr`; other types of `name` get no answer
/// (NODATA), other names NXDOMAIN.
pub fn dns_server(listen: SocketAddr, name: &str, addr: Ipv4Addr) -> Result<()> {
    let socket = UdpSocket::bind(listen).with_context(|| format!("bind {listen}"))?;
    let want = name.trim_end_matches('.').to_ascii_lowercase();
    let mut buf = [0; 512];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if let Some(reply) = dns_reply(&buf[..n], &want, addr) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

/// The reply to `query` (one question), `None` when it is not a query.
pub fn dns_reply(query: &[u8], name: &str, addr: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let known = labels.join(".") == name;
    let answer = known && qtype == 1;
    let mut reply = Vec::new();
    reply.extend_from_slice(&query[..2]);
    // QR, RD copied, RA; RCODE 3 (NXDOMAIN) for unknown names.
    reply.push(0x80 | (query[2] & 0x01));
    reply.push(if known { 0x80 } else { 0x83 });
    reply.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if answer {
        // The name by pointer to the question, A, IN, TTL 60, 4 bytes.
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&addr.octets());
    }
    Some(reply)
}

/// Accepts on `count` ports from `first_port` of `addr` (closing each connection at
/// once: what a `tcp_check` needs) until `stop`, writing the number accepted so far to
/// `tally` every 100 ms; returns the total. Raises its open-file limit to fit the
/// listeners.
pub fn listen_many(
    addr: std::net::IpAddr,
    first_port: u16,
    count: u16,
    tally: &std::path::Path,
    stop: &AtomicBool,
) -> Result<u64> {
    let want = u64::from(count) + 1024;
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    if soft < want {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            want,
            hard.max(want),
        )
        .context("raise the open-file limit")?;
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for port in first_port..first_port.saturating_add(count) {
            let listener = tokio::net::TcpListener::bind((addr, port))
                .await
                .with_context(|| format!("bind {addr}:{port}"))?;
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    drop(conn);
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while !stop.load(Ordering::Relaxed) {
            std::fs::write(tally, accepted.load(Ordering::Relaxed).to_string())?;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })?;
    Ok(accepted.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_agent::health::dns;

    #[test]
    fn the_responder_answers_what_the_agents_check_judges() {
        let addr = Ipv4Addr::new(192, 0, 2, 53);
        let q = dns::query(9, "www.lab.invalid", 1);
        let r = dns_reply(&q, "www.lab.invalid", addr).unwrap();
        assert_eq!(dns::judge(9, &r), Ok(()));
        assert_eq!(&r[r.len() - 4..], &addr.octets());
        let other = dns_reply(&dns::query(9, "x.invalid", 1), "www.lab.invalid", addr).unwrap();
        assert_eq!(dns::judge(9, &other), Err("DNS rcode 3 (NXDOMAIN)".into()));
        let soa = dns_reply(
            &dns::query(9, "www.lab.invalid", 6),
            "www.lab.invalid",
            addr,
        )
        .unwrap();
        assert_eq!(dns::judge(9, &soa), Err("DNS reply has no answer".into()));
        assert!(
            dns_reply(&r, "www.lab.invalid", addr).is_none(),
            "a reply is no query"
        );
    }
}
