//! One call to an agent, over its local socket or over QUIC, with a deadline: an
//! agent that accepts but never answers is an error after `timeout`, not a hang.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use lvs_proto::v1::{
    control_reply::Reply, control_request::Request, ClusterEvent, ControlReply, ControlRequest,
    WatchRequest,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;

use crate::frame;
use crate::quic::{self, Identity, TlsFiles};

/// Which agent to call, and how.
#[derive(Clone, Debug)]
pub enum Target {
    /// The local agent's Unix socket (root only).
    Socket(PathBuf),
    /// Any agent's QUIC control address, with this caller's certificate.
    Quic { addr: SocketAddr, tls: TlsFiles },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket(path) => write!(f, "{}", path.display()),
            Target::Quic { addr, .. } => write!(f, "{addr}"),
        }
    }
}

/// Sends `request` to `target` and returns the reply; an error reply, a transport
/// failure and a missed deadline are errors naming the target.
pub async fn call(target: &Target, request: Request, timeout: Duration) -> anyhow::Result<Reply> {
    let message = ControlRequest {
        request: Some(request),
    };
    let exchange = async {
        match target {
            Target::Socket(path) => over_socket(path, &message).await,
            Target::Quic { addr, tls } => over_quic(*addr, tls, &message).await,
        }
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{target}: no answer within {} s (the agent is stuck or the address is wrong)",
                timeout.as_secs_f64()
            )
        })??;
    frame::into_result(reply).map_err(|e| anyhow::anyhow!("{target}: {e}"))
}

async fn connect_socket(path: &std::path::Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(path).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "permission denied: run as root, or call over QUIC with a certificate (--node)"
                    .to_owned()
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "no lvs-agent listens there (not running, or another node.control_socket)"
                    .to_owned()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("{}: {why}", path.display())
    })
}

async fn over_socket(
    path: &std::path::Path,
    message: &ControlRequest,
) -> anyhow::Result<ControlReply> {
    let mut stream = connect_socket(path).await?;
    let context = || path.display().to_string();
    stream
        .write_all(&frame::encode(message))
        .await
        .with_context(context)?;
    stream.shutdown().await.with_context(context)?;
    frame::read(&mut stream, frame::MAX_REPLY)
        .await
        .with_context(context)
}

async fn over_quic(
    addr: SocketAddr,
    tls: &TlsFiles,
    message: &ControlRequest,
) -> anyhow::Result<ControlReply> {
    let session = Session::open(addr, tls).await?;
    let reply = session.exchange(message).await;
    session.close().await;
    reply
}

/// Follows the agent's cluster events (`lvs-cli watch`) until the agent ends the
/// stream or `on_event` returns false.
pub async fn watch(
    target: &Target,
    mut on_event: impl FnMut(ClusterEvent) -> bool,
) -> anyhow::Result<()> {
    let message = frame::encode(&ControlRequest {
        request: Some(Request::Watch(WatchRequest {})),
    });
    let followed = match target {
        Target::Socket(path) => {
            let mut stream = connect_socket(path).await?;
            stream.write_all(&message).await?;
            stream.shutdown().await?;
            follow(&mut stream, &mut on_event).await
        }
        Target::Quic { addr, tls } => {
            let session = Session::open(*addr, tls).await?;
            let followed = async {
                let (mut send, mut recv) = session.connection.open_bi().await?;
                send.write_all(&message).await?;
                send.finish()?;
                follow(&mut recv, &mut on_event).await
            }
            .await;
            session.close().await;
            followed
        }
    };
    followed.map_err(|e| anyhow::anyhow!("{target}: {e:#}"))
}

async fn follow(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    on_event: &mut impl FnMut(ClusterEvent) -> bool,
) -> anyhow::Result<()> {
    while let Some(reply) = frame::read_next::<ControlReply>(stream, frame::MAX_REPLY).await? {
        match frame::into_result(reply)? {
            Reply::Event(event) => {
                if !on_event(event) {
                    break;
                }
            }
            other => anyhow::bail!("the agent answered another request: {other:?}"),
        }
    }
    Ok(())
}

/// One QUIC connection to an agent, for many calls (one stream each).
pub struct Session {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
}

impl Session {
    pub async fn open(addr: SocketAddr, tls: &TlsFiles) -> anyhow::Result<Session> {
        let identity = Identity::load(tls)?;
        let endpoint = quic::client_endpoint(&identity, addr)?;
        let connection = endpoint
            .connect(addr, crate::pki::NODE_NAME)
            .with_context(|| format!("{addr}"))?
            .await
            .map_err(|e| anyhow::anyhow!("{addr}: {}", quic::explain(&e)))?;
        Ok(Session {
            addr,
            endpoint,
            connection,
        })
    }

    /// One call; an error reply is an error.
    pub async fn call(&self, request: Request) -> anyhow::Result<Reply> {
        let message = ControlRequest {
            request: Some(request),
        };
        let reply = self.exchange(&message).await?;
        frame::into_result(reply).map_err(|e| anyhow::anyhow!("{}: {e}", self.addr))
    }

    async fn exchange(&self, message: &ControlRequest) -> anyhow::Result<ControlReply> {
        let exchange = async {
            let (mut send, mut recv) = self.connection.open_bi().await?;
            send.write_all(&frame::encode(message)).await?;
            send.finish()?;
            frame::read::<ControlReply>(&mut recv, frame::MAX_REPLY).await
        };
        // A refused client certificate shows only here, as the connection's close
        // reason: TLS 1.3 lets the client finish its handshake before the agent has
        // judged it.
        exchange
            .await
            .map_err(|e| match self.connection.close_reason() {
                Some(reason) => anyhow::anyhow!("{}: {}", self.addr, quic::explain(&reason)),
                None => anyhow::anyhow!("{}: {e:#}", self.addr),
            })
    }

    /// Closes the connection and waits for the agent to be told.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
