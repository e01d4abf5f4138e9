//! The probes themselves (the I/O edge of the health checks): one attempt of one
//! check, bounded by its timeout, giving an [`Outcome`] with the reason of a failure.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use md5::{Digest as _, Md5};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::Command;
use tokio::time::timeout;

use super::checker::Outcome;
use super::spec::{Probe, Url};
use super::{dns, tls};

/// The most of a reply body read (and hashed for `digest`): keepalived reads the
/// whole page; a health page larger than this is a misconfiguration.
const MAX_BODY: usize = 1 << 20;

/// Runs `probe` once; `limit` bounds the whole attempt (keepalived's
/// `connect_timeout` for the network checks, `misc_timeout` for a command). The
/// HTTP/TLS, command and DNS attempts are boxed: the TLS handshake alone would make
/// every probe's future 4.6 KB, copied at each launch, where a TCP check needs a few
/// hundred bytes.
pub async fn run(probe: &Probe, limit: Duration) -> Outcome {
    match probe {
        Probe::Tcp { target } => match connect(*target, limit).await {
            Ok(stream) => {
                // Closed by a reset, as keepalived's checks close: no FIN exchange and
                // no TIME_WAIT socket left here per probe (10,000 a second at scale).
                let _ = stream.set_zero_linger();
                Outcome::Pass { weight: None }
            }
            Err(reason) => Outcome::Fail(reason),
        },
        Probe::Http {
            target,
            tls,
            ca,
            host,
            urls,
        } => {
            let tls = tls.then_some(ca.as_deref());
            match Box::pin(timeout(limit, http(*target, tls, host.as_deref(), urls))).await {
                Ok(Ok(())) => Outcome::Pass { weight: None },
                Ok(Err(reason)) => Outcome::Fail(reason),
                Err(_) => Outcome::Fail(format!("no complete reply after {}", secs(limit))),
            }
        }
        Probe::Misc { command, dynamic } => Box::pin(misc(command, *dynamic, limit)).await,
        Probe::Dns {
            target,
            name,
            qtype,
        } => match Box::pin(timeout(limit, dns_query(*target, name, *qtype))).await {
            Ok(Ok(())) => Outcome::Pass { weight: None },
            Ok(Err(reason)) => Outcome::Fail(reason),
            Err(_) => Outcome::Fail(format!("no DNS reply after {}", secs(limit))),
        },
    }
}

/// One query from a fresh socket; the first datagram back is the reply.
async fn dns_query(target: SocketAddr, name: &str, qtype: u16) -> Result<(), String> {
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("DNS socket: {e}"))?;
    let id: u16 = rand::random();
    socket
        .send_to(&dns::query(id, name, qtype), target)
        .await
        .map_err(|e| format!("DNS query to {target}: {e}"))?;
    let mut buf = [0; 4096];
    let (n, _) = socket
        .recv_from(&mut buf)
        .await
        .map_err(|e| format!("DNS reply from {target}: {e}"))?;
    dns::judge(id, &buf[..n])
}

async fn connect(target: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    match timeout(limit, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect to {target}: {e}")),
        Err(_) => Err(format!("connect timeout after {}", secs(limit))),
    }
}

/// Every url in turn on its own connection (keepalived's HTTP_GET / SSL_GET): all
/// must pass. `tls`: over TLS, verified against the CA file if one is given.
async fn http(
    target: SocketAddr,
    tls: Option<Option<&Path>>,
    host: Option<&str>,
    urls: &[Url],
) -> Result<(), String> {
    let connector = tls.map(tls::connector).transpose()?;
    for url in urls {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect to {target}: {e}"))?;
        let host_header = host.map_or_else(|| target.to_string(), str::to_owned);
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: lvs-agent\r\nConnection: close\r\n\r\n",
            url.path
        );
        let reply = if let Some(connector) = &connector {
            let name = match host {
                Some(h) => ServerName::try_from(h.to_owned())
                    .map_err(|e| format!("virtualhost {h:?} as a TLS name: {e}"))?,
                None => ServerName::IpAddress(target.ip().into()),
            };
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS handshake with {target}: {e}"))?;
            exchange(stream, &request, &url.path).await?
        } else {
            exchange(stream, &request, &url.path).await?
        };
        judge(url, &reply)?;
    }
    Ok(())
}

/// Sends `request`, reads the reply to its end (at most [`MAX_BODY`] and a header).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    path: &str,
) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending GET {path}: {e}"))?;
    let mut reply = Vec::new();
    let read = (&mut stream)
        .take((MAX_BODY + 64 * 1024) as u64)
        .read_to_end(&mut reply)
        .await;
    match read {
        Ok(_) => Ok(reply),
        // Servers that close a TLS connection without close_notify: what came counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => Ok(reply),
        Err(e) => Err(format!("reading the reply to GET {path}: {e}")),
    }
}

/// A reply against the url's expectations: status in range, body's MD5 if given.
pub fn judge(url: &Url, reply: &[u8]) -> Result<(), String> {
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {}: no complete HTTP header", url.path))?;
    let status_line = reply[..head_end]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(&[]);
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {}: no HTTP status line", url.path))?;
    if !url
        .status
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&status))
    {
        return Err(format!("GET {}: status {status}", url.path));
    }
    if let Some(want) = &url.digest {
        let body = &reply[head_end + 4..];
        let got: String = Md5::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!("GET {}: digest mismatch ({got})", url.path));
        }
    }
    Ok(())
}

/// `sh -c COMMAND`, killed after `limit`. Exit 0 passes; with `dynamic`, 2..255 pass
/// with weight code − 2 (keepalived's misc_dynamic); anything else fails.
async fn misc(command: &str, dynamic: bool, limit: Duration) -> Outcome {
    // Its own process group, so that a timeout kills what the command started too.
    let child = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Outcome::Fail(format!("cannot run {command:?}: {e}")),
    };
    let status = match timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Outcome::Fail(format!("waiting for {command:?}: {e}")),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            return Outcome::Fail(format!("killed after misc_timeout {}", secs(limit)));
        }
    };
    match status.code() {
        Some(0) => Outcome::Pass { weight: None },
        Some(code @ 2..=255) if dynamic => Outcome::Pass {
            weight: Some(code as u32 - 2),
        },
        Some(code) => Outcome::Fail(format!("exit code {code}")),
        None => Outcome::Fail("killed by a signal".to_owned()),
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn url(digest: Option<&str>) -> Url {
        Url {
            path: "/".into(),
            status: vec![(200, 200), (301, 302)],
            digest: digest.map(str::to_owned),
        }
    }

    #[test]
    fn replies_are_judged_on_status_and_digest() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        assert_eq!(judge(&url(None), ok), Ok(()));
        assert_eq!(
            judge(&url(None), b"HTTP/1.1 302 Found\r\n\r\n"),
            Ok(()),
            "a range"
        );
        assert_eq!(
            judge(&url(None), b"HTTP/1.1 503 Unavailable\r\n\r\n"),
            Err("GET /: status 503".into())
        );
        let wrong = "f28b4f2ff9e1ebd2d7d9a2b5a0c7f2d4";
        let real: String = Md5::digest(b"ok\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(judge(&url(Some(&real.to_uppercase())), ok), Ok(()));
        assert!(judge(&url(Some(wrong)), ok)
            .unwrap_err()
            .starts_with("GET /: digest mismatch"));
        assert_eq!(
            judge(&url(None), b"garbage"),
            Err("GET /: no complete HTTP header".into())
        );
    }

    #[tokio::test]
    async fn tcp_and_http_probes_against_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n").await;
            }
        });
        let limit = Duration::from_secs(3);
        assert_eq!(
            run(&Probe::Tcp { target }, limit).await,
            Outcome::Pass { weight: None }
        );
        let http = Probe::Http {
            target,
            tls: false,
            ca: None,
            host: Some("www.example".into()),
            urls: vec![url(None)],
        };
        assert_eq!(run(&http, limit).await, Outcome::Pass { weight: None });
        // A closed port: refused, named.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let Outcome::Fail(reason) = run(&Probe::Tcp { target: gone }, limit).await else {
            panic!("a closed port passed");
        };
        assert!(
            reason.starts_with(&format!("connect to {gone}: ")),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn ssl_get_verifies_the_certificate_only_with_a_ca() {
        let dir = std::env::temp_dir().join(format!("lvs-probe-tls-{}", std::process::id()));
        let pki = lvs_tests::servers::Pki::make(&dir).unwrap();
        let (ca, other) = (pki.ca.clone(), pki.other_ca.clone());
        let server = lvs_tests::servers::tls_config(Some((&pki.cert, &pki.key))).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n").await;
                    let _ = s.shutdown().await;
                });
            }
        });
        let probe = |ca: Option<&PathBuf>, host: Option<&str>| Probe::Http {
            target,
            tls: true,
            ca: ca.cloned(),
            host: host.map(str::to_owned),
            urls: vec![url(None)],
        };
        let limit = Duration::from_secs(5);
        let pass = Outcome::Pass { weight: None };
        let fail = |outcome: Outcome| match outcome {
            Outcome::Fail(reason) => reason,
            Outcome::Pass { .. } => panic!("passed"),
        };
        // keepalived's way: any certificate.
        assert_eq!(run(&probe(None, Some("any.invalid")), limit).await, pass);
        // Verified: the chain to the CA and the name, virtualhost or the address.
        assert_eq!(
            run(&probe(Some(&ca), Some("www.lab.invalid")), limit).await,
            pass
        );
        assert_eq!(run(&probe(Some(&ca), None), limit).await, pass);
        let wrong_name = fail(run(&probe(Some(&ca), Some("other.invalid")), limit).await);
        assert!(
            wrong_name.starts_with(&format!(
                "TLS handshake with {target}: invalid peer certificate"
            )),
            "{wrong_name}"
        );
        let wrong_ca = fail(run(&probe(Some(&other), Some("www.lab.invalid")), limit).await);
        assert!(wrong_ca.contains("UnknownIssuer"), "{wrong_ca}");
        // The CA file is read again once it changes.
        let rotated = dir.join("rotated.pem");
        std::fs::copy(&ca, &rotated).unwrap();
        assert_eq!(run(&probe(Some(&rotated), None), limit).await, pass);
        std::fs::copy(&other, &rotated).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&rotated)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(fail(run(&probe(Some(&rotated), None), limit).await).contains("UnknownIssuer"));
        // A CA file that cannot serve: named, with the reason.
        let missing = dir.join("missing.pem");
        let reason = fail(run(&probe(Some(&missing), None), limit).await);
        assert!(
            reason.starts_with(&format!("tls_ca {}: ", missing.display())),
            "{reason}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(
            fail(run(&probe(Some(&empty), None), limit).await),
            format!("tls_ca {}: no certificate in it", empty.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn misc_checks_map_exit_codes() {
        let limit = Duration::from_secs(5);
        let misc = |command: &str, dynamic| Probe::Misc {
            command: command.into(),
            dynamic,
        };
        assert_eq!(
            run(&misc("exit 0", false), limit).await,
            Outcome::Pass { weight: None }
        );
        assert_eq!(
            run(&misc("exit 1", true), limit).await,
            Outcome::Fail("exit code 1".into())
        );
        assert_eq!(
            run(&misc("exit 7", true), limit).await,
            Outcome::Pass { weight: Some(5) }
        );
        assert_eq!(
            run(&misc("exit 7", false), limit).await,
            Outcome::Fail("exit code 7".into())
        );
        let started = std::time::Instant::now();
        assert_eq!(
            run(&misc("sleep 30", false), Duration::from_millis(200)).await,
            Outcome::Fail("killed after misc_timeout 0.2 s".into())
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
