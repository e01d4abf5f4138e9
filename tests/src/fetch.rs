//! The client side of the lab's HTTP check: fresh TCP connections, one `GET /` each,
//! tallied by the real server that answered. Runs as `lvs-lab-guest fetch ADDR N`
//! inside the client's namespace (busybox-static wget segfaults in the VM).
//!
//! Every lab web page starts with the line `served-by <name>`.
//!
//! Connection `i` binds source port `first_port + i`: a reused source port would
//! meet IPVS's still-open entry for the previous connection (in DR, IPVS only
//! reschedules reused TCP entries in TIME_WAIT), skipping the scheduler and
//! spoiling exact distributions. Callers give each run its own port range.
use anyhow::{bail, Context, Result};
use socket2::{Domain, Socket, Type};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::Duration;

/// First line of every page the lab's web servers serve.
pub const SERVED_BY: &str = "served-by ";

/// What N fetches got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSummary {
    /// Answers per server name.
    pub by_server: BTreeMap<String, u64>,
    /// Bytes received over all answers (headers and bodies).
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl FetchSummary {
    /// Answers from `server` (0 if none).
    pub fn from(&self, server: &str) -> u64 {
        self.by_server.get(server).copied().unwrap_or(0)
    }

    pub fn answers(&self) -> u64 {
        self.by_server.values().sum()
    }
}

/// Fetches `http://addr/` `count` times, each over a new connection from source
/// port `first_port + i`.
pub fn fetch_many(
    addr: SocketAddr,
    count: u16,
    first_port: u16,
    timeout: Duration,
) -> Result<FetchSummary> {
    if first_port.checked_add(count).is_none() || first_port < 1024 {
        bail!("source ports {first_port}+{count} outside 1024..=65535");
    }
    let mut summary = FetchSummary::default();
    for port in (first_port..).take(count.into()) {
        match fetch_once(addr, port, timeout) {
            Ok((server, bytes)) => {
                *summary.by_server.entry(server).or_default() += 1;
                summary.bytes += bytes;
            }
            Err(e) => {
                summary.errors += 1;
                summary.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Ok(summary)
}

fn fetch_once(addr: SocketAddr, source_port: u16, timeout: Duration) -> Result<(String, u64)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    let source: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, source_port).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, source_port).into(),
    };
    socket
        .bind(&source.into())
        .with_context(|| format!("bind source port {source_port}"))?;
    socket
        .connect_timeout(&addr.into(), timeout)
        .with_context(|| format!("connect {addr} from port {source_port}"))?;
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("read from {addr}"))?;
    let server = served_by(&response).with_context(|| format!("answer from {addr}"))?;
    Ok((server, response.len() as u64))
}

/// The server name in an HTTP response whose body starts with `served-by <name>`.
pub fn served_by(response: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of HTTP headers")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("HTTP status line {status:?}, expected 200");
    }
    let first = body.lines().next().unwrap_or_default();
    match first.strip_prefix(SERVED_BY) {
        Some(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        _ => bail!("body does not start with {SERVED_BY:?}<name>: {first:?}"),
    }
}

/// One `key value` line per field; [`FromStr`] reads it back.
impl fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (server, n) in &self.by_server {
            writeln!(f, "server {server} {n}")?;
        }
        writeln!(f, "bytes {}", self.bytes)?;
        writeln!(f, "errors {}", self.errors)?;
        if let Some(e) = &self.first_error {
            writeln!(f, "first_error {}", e.replace('\n', " "))?;
        }
        Ok(())
    }
}

impl FromStr for FetchSummary {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut summary = FetchSummary::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let number = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .with_context(|| format!("fetch summary line {line:?}: bad number"))
            };
            match key {
                "server" => {
                    let (name, n) = rest
                        .rsplit_once(' ')
                        .with_context(|| format!("fetch summary line {line:?}: no count"))?;
                    summary.by_server.insert(name.to_string(), number(n)?);
                }
                "bytes" => summary.bytes = number(rest)?,
                "errors" => summary.errors = number(rest)?,
                "first_error" => summary.first_error = Some(rest.to_string()),
                _ => bail!("fetch summary line {line:?}: unknown key {key:?}"),
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn served_by_reads_the_page_and_rejects_others() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\nserved-by rs2\nxxxx\n";
        assert_eq!(served_by(ok).unwrap(), "rs2");
        let e = served_by(b"HTTP/1.0 404 Not Found\r\n\r\nserved-by rs1\n").unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let e = served_by(b"HTTP/1.0 200 OK\r\n\r\nhello\n").unwrap_err();
        assert!(e.to_string().contains("served-by"), "{e}");
        assert!(served_by(b"HTTP/1.0 200 OK\r\n").is_err());
    }

    #[test]
    fn summary_rejects_unknown_lines() {
        let e = "bogus 1".parse::<FetchSummary>().unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!("bytes x".parse::<FetchSummary>().is_err());
    }

    proptest! {
        #[test]
        fn summary_round_trips(
            by_server in proptest::collection::btree_map("[a-z0-9-]{1,8}", 0u64..1000, 0..4),
            bytes: u64, errors: u64, first_error in proptest::option::of("[ -~]{0,40}"),
        ) {
            let s = FetchSummary { by_server, bytes, errors, first_error };
            prop_assert_eq!(s.to_string().parse::<FetchSummary>().unwrap(), s);
        }
    }
}
