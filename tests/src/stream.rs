//! Long-lived TCP connections for disruption tests: an echo server (run on the
//! real servers) and a client that keeps N connections open and exchanges a
//! message on every one of them each round (RATE rounds a second), counting every
//! failure and the longest exchange (a stall: retransmissions while a VIP moves).
use anyhow::{bail, Context, Result};
use socket2::{Domain, Socket, Type};
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes per message (each round, each connection).
const MESSAGE: usize = 64;
/// A reply slower than this counts as a failure. After a 3-4 s failover (a keepalived
/// master's Master_Down_Interval) TCP's doubling retransmission timer sends again up
/// to about 6 s after the loss began: a reply that slow is a stall (`max_stall_ms`),
/// not a lost connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// What the echo server answers a connection that starts with `GET `: a health
/// check (keepalived's HTTP_GET, the agent's), not a stream client.
const HEALTH_REPLY: &[u8] =
    b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

/// Echoes every connection to `listen` until killed; a connection whose first bytes
/// are `GET ` gets [`HEALTH_REPLY`] and is closed.
pub fn echo_server(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        thread::spawn(move || {
            let mut buf = [0; 4096];
            let mut first = true;
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if std::mem::take(&mut first) && buf[..n].starts_with(b"GET ") {
                    let _ = conn.write_all(HEALTH_REPLY);
                    break;
                }
                if conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// What the client saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    pub conns: u32,
    /// Round trips that came back intact.
    pub exchanges: u64,
    pub resets: u64,
    /// Timeouts, short reads, wrong bytes, other errors.
    pub errors: u64,
    /// The longest exchange, message out to echo back, in ms.
    pub max_stall_ms: u64,
    pub first_error: Option<String>,
}

impl fmt::Display for StreamSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conns={} exchanges={} resets={} errors={} max_stall_ms={}",
            self.conns, self.exchanges, self.resets, self.errors, self.max_stall_ms
        )?;
        if let Some(e) = &self.first_error {
            write!(f, " first_error={e}")?;
        }
        Ok(())
    }
}

impl FromStr for StreamSummary {
    type Err = anyhow::Error;

    /// Reads the [`fmt::Display`] form back (the last line of the client's output).
    fn from_str(s: &str) -> Result<Self> {
        let line = s.lines().last().context("empty stream-client output")?;
        let (fields, first_error) = match line.split_once(" first_error=") {
            Some((f, e)) => (f, Some(e.to_string())),
            None => (line, None),
        };
        let mut out = StreamSummary {
            first_error,
            ..Default::default()
        };
        for field in fields.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .with_context(|| format!("stream summary field {field:?}"))?;
            let n: u64 = value
                .parse()
                .with_context(|| format!("stream summary {key}={value:?}"))?;
            match key {
                "conns" => out.conns = n as u32,
                "exchanges" => out.exchanges = n,
                "resets" => out.resets = n,
                "errors" => out.errors = n,
                "max_stall_ms" => out.max_stall_ms = n,
                _ => bail!("stream summary: unknown field {key}"),
            }
        }
        Ok(out)
    }
}

/// Opens `conns` connections to `target` from source ports `first_port..` (any
/// ports when `first_port` is 0), then exchanges one message per connection per
/// round, `rate` rounds a second, for `duration` or until `stop` is set. A failed
/// connection is counted once and not used again.
pub fn stream_client(
    target: SocketAddr,
    conns: u16,
    duration: Duration,
    first_port: u16,
    rate: u32,
    stop: &AtomicBool,
) -> Result<StreamSummary> {
    if rate == 0 {
        bail!("stream-client: RATE must be at least 1 round a second");
    }
    let pause = Duration::from_secs(1) / rate;
    let mut summary = StreamSummary {
        conns: u32::from(conns),
        ..Default::default()
    };
    let mut streams = Vec::new();
    for i in 0..conns {
        let port = if first_port == 0 { 0 } else { first_port + i };
        // A connection that cannot be opened is a lost one, with its reason.
        match open(target, port) {
            Ok(stream) => streams.push(Some(stream)),
            Err(e) => {
                summary.errors += 1;
                summary.first_error.get_or_insert_with(|| format!("{e:#}"));
                streams.push(None);
            }
        }
    }
    let end = Instant::now() + duration;
    let mut round = 0u64;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        for (i, slot) in streams.iter_mut().enumerate() {
            let Some(stream) = slot else { continue };
            let sent = Instant::now();
            let done = exchange(stream, round, i);
            let took = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
            summary.max_stall_ms = summary.max_stall_ms.max(took);
            match done {
                Ok(()) => summary.exchanges += 1,
                Err(e) => {
                    if e.kind() == ErrorKind::ConnectionReset {
                        summary.resets += 1;
                    } else {
                        summary.errors += 1;
                    }
                    summary
                        .first_error
                        .get_or_insert_with(|| format!("conn {i} round {round}: {e}"));
                    *slot = None;
                }
            }
        }
        round += 1;
        // One round per 1/rate s (a slow round is followed at once by the next).
        thread::sleep(pause.saturating_sub(started.elapsed()));
    }
    Ok(summary)
}

/// One connection to `target` from source `port` (0: any).
fn open(target: SocketAddr, port: u16) -> Result<TcpStream> {
    let source: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, port).into();
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&source.into())
        .with_context(|| format!("bind source port {port}"))?;
    socket
        .connect_timeout(&target.into(), REPLY_TIMEOUT)
        .with_context(|| format!("connect {target} from port {port}"))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A flag set when standard input ends: the lab closes a client's stdin to stop it.
pub fn stop_on_stdin_eof() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

fn exchange(stream: &mut TcpStream, round: u64, conn: usize) -> std::io::Result<()> {
    let mut message = format!("round {round} conn {conn} ").into_bytes();
    message.resize(MESSAGE, b'.');
    stream.write_all(&message)?;
    let mut reply = [0; MESSAGE];
    stream.read_exact(&mut reply)?;
    if reply[..] != message[..] {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "echo differs from the message",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_round_trips_through_text() {
        let s = StreamSummary {
            conns: 50,
            exchanges: 1234,
            resets: 1,
            errors: 2,
            max_stall_ms: 480,
            first_error: Some("conn 3 round 7: Connection reset by peer".into()),
        };
        assert_eq!(format!("noise\n{s}").parse::<StreamSummary>().unwrap(), s);
        let clean = StreamSummary {
            conns: 2,
            exchanges: 9,
            ..Default::default()
        };
        assert_eq!(clean.to_string().parse::<StreamSummary>().unwrap(), clean);
        assert!("conns=x".parse::<StreamSummary>().is_err());
    }

    #[test]
    fn client_and_server_on_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        drop(listener);
        thread::spawn(move || echo_server(target));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(target).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let stop = AtomicBool::new(false);
        let s = stream_client(target, 3, Duration::from_millis(300), 0, 10, &stop)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((s.conns, s.resets, s.errors), (3, 0, 0), "{s}");
        assert!(s.exchanges >= 3, "{s}");

        let mut check = TcpStream::connect(target).unwrap();
        check.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = Vec::new();
        check.read_to_end(&mut reply).unwrap();
        assert_eq!(
            reply, HEALTH_REPLY,
            "a health check gets a page, not its echo"
        );
    }
}
