//! The control API, served on the root-only Unix socket (`[node] control_socket`) and,
//! with `[node] control_tls`, over QUIC with mutual TLS (`[node] control_listen`):
//! one `lvs.v1.ControlRequest` in, one `ControlReply` out (or a stream of events for a
//! watch), per stream (proto/lvs/v1/control.proto, `lvs_control::frame`). A director
//! without VIP groups serves it too: its IPVS tables and its node id, and a clear
//! error for the cluster calls. Cluster document calls (`config get`, `apply`) are
//! answered by the node loop, which runs the config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lvs_control::client::{self, Target};
use lvs_control::quic::{Identity, TlsFiles};
use lvs_control::{frame, unix};
use lvs_proto::v1::{
    control_reply::Reply, control_request::Request, ClusterDocument, ClusterEvent,
    ConfigApplyReply, ControlReply, ControlRequest, DrainReply, DrainRequest, JoinReply, MoveReply,
    MoveRequest, StatusReply,
};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cluster::ClusterHandle;
use crate::config::{ControlTls, NodeConfig};
use crate::document::{Document, Stamp};
use crate::ipvs::listing;
use crate::metrics::{Metrics, Transport};

/// The serving tasks; dropping it stops serving and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The control API's sockets, bound before anything else starts: a second agent on
/// the same socket, or a bad `control_tls`, stops the start with nothing changed.
pub struct Listeners {
    path: PathBuf,
    unix: UnixListener,
    quic: Option<quinn::Endpoint>,
}

/// Binds the node's control socket and, when `control_tls` is set, its QUIC address.
pub async fn bind(node: &NodeConfig) -> anyhow::Result<Listeners> {
    let quic = match &node.control_tls {
        Some(tls) => {
            let files = tls.files();
            let config = Identity::load(&files)
                .and_then(|id| id.server_config())
                .context("node.control_tls")?;
            let addr = node.control_addr();
            let endpoint = quinn::Endpoint::server(config, addr)
                .with_context(|| format!("node.control_listen {addr}"))?;
            info!(%addr, "control API listening (QUIC, mutual TLS)");
            Some(endpoint)
        }
        None => None,
    };
    let path = node.control_socket.clone();
    let unix = unix::bind(&path).await?;
    info!(path = %path.display(), "control socket listening");
    Ok(Listeners { path, unix, quic })
}

/// A cluster document call, answered by the node loop (which runs the config).
pub enum DocumentCall {
    /// The document this node runs.
    Get(oneshot::Sender<Document>),
    /// Validate, apply, store and publish this text.
    Apply(String, oneshot::Sender<Result<Stamp, String>>),
}

/// What the API answers from: the cluster task, when the director runs one, and the
/// node loop for the cluster document.
#[derive(Clone)]
pub struct Api {
    node_id: String,
    cluster: Option<ClusterHandle>,
    documents: mpsc::Sender<DocumentCall>,
    /// This node's certificate, to call peers (a forwarded move or drain).
    tls: Option<TlsFiles>,
}

impl Api {
    pub fn new(
        node: &NodeConfig,
        cluster: Option<ClusterHandle>,
        documents: mpsc::Sender<DocumentCall>,
    ) -> Api {
        Api {
            node_id: node.id.to_string(),
            cluster,
            documents,
            tls: node.control_tls.as_ref().map(ControlTls::files),
        }
    }

    /// Whether `node` names this node (empty: the called node).
    fn is_me(&self, node: &str) -> bool {
        node.is_empty() || node == self.node_id
    }

    /// Sends `request` to member `node`'s QUIC control API with this node's certificate
    /// and returns its reply; an error reply says why it could not.
    async fn forward(&self, node: &str, request: Request) -> Reply {
        let cluster = match self.cluster() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let Some(tls) = &self.tls else {
            return Reply::Error(format!(
                "{} has no node.control_tls, so it cannot call {node}: run the command on {node}, or call {node} with --node",
                self.node_id
            ));
        };
        let members = match cluster.status().await {
            Ok(status) => status.members,
            Err(e) => return Reply::Error(e.to_string()),
        };
        let Some(member) = members.iter().find(|m| m.node_id == node && m.live) else {
            return Reply::Error(format!("{node} is not a live member of the cluster"));
        };
        let Ok(addr) = member.control_addr.parse::<SocketAddr>() else {
            return Reply::Error(format!(
                "{node} serves no QUIC control API (no control_tls): run the command on {node}"
            ));
        };
        let target = Target::Quic {
            addr,
            tls: tls.clone(),
        };
        client::call(&target, request, FORWARD_WAIT)
            .await
            .unwrap_or_else(|e| Reply::Error(format!("{e:#}")))
    }

    /// Asks the node loop; its answer, or an error reply once it has stopped.
    async fn ask<T>(
        &self,
        call: impl FnOnce(oneshot::Sender<T>) -> DocumentCall,
    ) -> Result<T, Reply> {
        let stopping = || Reply::Error("the agent is stopping".into());
        let (tx, rx) = oneshot::channel();
        self.documents
            .send(call(tx))
            .await
            .map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())
    }

    fn cluster(&self) -> Result<&ClusterHandle, Reply> {
        self.cluster.as_ref().ok_or_else(|| {
            Reply::Error(format!(
                "{} has no VIP groups: it runs IPVS only, in no cluster",
                self.node_id
            ))
        })
    }
}

/// Serves `cluster` on the bound sockets.
pub fn serve(listeners: Listeners, cluster: Api, metrics: Arc<Metrics>) -> ControlServer {
    let Listeners { path, unix, quic } = listeners;
    let mut tasks = vec![tokio::spawn(serve_unix(
        unix,
        cluster.clone(),
        Arc::clone(&metrics),
    ))];
    if let Some(endpoint) = quic {
        tasks.push(tokio::spawn(serve_quic(endpoint, cluster, metrics)));
    }
    ControlServer { path, tasks }
}

async fn serve_unix(listener: UnixListener, cluster: Api, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let cluster = cluster.clone();
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let answer = match unix::refusal(&stream) {
                        Some(reason) => {
                            warn!(%reason, "control socket: caller refused");
                            metrics
                                .control_refused
                                .get_or_create(&Transport { transport: "unix" })
                                .inc();
                            // Read (never decoded) so the caller's write completes and
                            // it gets the reason rather than a broken pipe.
                            let mut sink = tokio::io::sink();
                            let _ = tokio::io::copy(
                                &mut (&mut stream).take(frame::MAX_REQUEST),
                                &mut sink,
                            )
                            .await;
                            Answer::Once(ControlReply {
                                reply: Some(Reply::Error(reason)),
                            })
                        }
                        None => {
                            let (mut read, _) = stream.split();
                            request(&mut read, &cluster).await
                        }
                    };
                    let sent = async {
                        respond(answer, &mut stream).await?;
                        stream.shutdown().await?;
                        anyhow::Ok(())
                    };
                    if let Err(e) = sent.await {
                        debug!(error = %e, "control socket: reply not delivered");
                    }
                });
            }
            Err(e) => warn!(error = %e, "control socket accept"),
        }
    }
}

async fn serve_quic(endpoint: quinn::Endpoint, cluster: Api, metrics: Arc<Metrics>) {
    while let Some(incoming) = endpoint.accept().await {
        let cluster = cluster.clone();
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            // The handshake checks the client's certificate against the cluster CA: a
            // refused client never opens a stream.
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    warn!(%remote, error = %e, "control API: connection refused");
                    metrics
                        .control_refused
                        .get_or_create(&Transport { transport: "quic" })
                        .inc();
                    return;
                }
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let answer = request(&mut recv, &cluster).await;
                    if let Err(e) = respond(answer, &mut send).await {
                        debug!(%remote, error = %e, "control API: reply not delivered");
                    }
                    let _ = send.finish();
                });
            }
        });
    }
}

/// What a request gets: one reply, or (a watch) a stream of events.
enum Answer {
    Once(ControlReply),
    Watch(broadcast::Receiver<ClusterEvent>),
}

/// Writes the answer: the reply, or every event until the watcher goes away.
async fn respond(answer: Answer, out: &mut (impl AsyncWrite + Unpin)) -> anyhow::Result<()> {
    match answer {
        Answer::Once(reply) => {
            out.write_all(&reply.encode_length_delimited_to_vec())
                .await?
        }
        Answer::Watch(mut events) => loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(count)) => ClusterEvent {
                    kind: "lagged".into(),
                    count,
                    ..ClusterEvent::default()
                },
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let reply = ControlReply {
                reply: Some(Reply::Event(event)),
            };
            out.write_all(&reply.encode_length_delimited_to_vec())
                .await?;
        },
    }
    Ok(())
}

/// Reads one request and answers it; a malformed request is answered with the
/// reason and changes nothing.
async fn request(stream: &mut (impl AsyncRead + Unpin), api: &Api) -> Answer {
    let reply = match frame::read::<ControlRequest>(stream, frame::MAX_REQUEST).await {
        Err(e) => Reply::Error(format!("{e:#}")),
        Ok(ControlRequest { request: None }) => Reply::Error("empty ControlRequest".into()),
        Ok(ControlRequest {
            request: Some(Request::Watch(_)),
        }) => match api.cluster() {
            Ok(cluster) => return Answer::Watch(cluster.subscribe()),
            Err(reply) => reply,
        },
        Ok(ControlRequest {
            request: Some(request),
        }) => answer(request, api).await,
    };
    Answer::Once(ControlReply { reply: Some(reply) })
}

/// How long a join waits for the peers to answer: SWIM's join round trip is one
/// datagram each way, and a peer that is up answers within a probe period (1 s by
/// default); 5 s leaves room for a loaded peer.
const JOIN_WAIT: Duration = Duration::from_secs(5);
const JOIN_POLL: Duration = Duration::from_millis(100);

/// How long a forwarded call, and a move, may take: a hand-over is a few netlink calls
/// and two datagrams; 5 s leaves room for a loaded node.
const FORWARD_WAIT: Duration = Duration::from_secs(5);

/// Waits until this node holds the moved `group` (its holder hands it over at its next
/// election), at most `FORWARD_WAIT`.
async fn moved(cluster: &ClusterHandle, me: &str, group: String) -> Reply {
    let deadline = Instant::now() + FORWARD_WAIT;
    loop {
        let held = cluster.status().await.ok().and_then(|s| {
            s.groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| (g.held, g.owner.clone()))
        });
        match held {
            Some((true, _)) => {
                return Reply::Moved(MoveReply {
                    group,
                    holder: me.to_owned(),
                })
            }
            Some((false, owner)) if Instant::now() >= deadline => {
                return Reply::Error(format!(
                    "{group} is pinned to {me} but not held there after {} s (elected owner: {}); see {me}'s log",
                    FORWARD_WAIT.as_secs(),
                    if owner.is_empty() { "-" } else { &owner }
                ))
            }
            None => return Reply::Error(format!("no VIP group {group:?}")),
            _ => tokio::time::sleep(JOIN_POLL).await,
        }
    }
}

/// Waits until every contacted peer is a live member, or `JOIN_WAIT`; says which are.
async fn joined(cluster: &ClusterHandle, addrs: &[SocketAddr]) -> JoinReply {
    let deadline = Instant::now() + JOIN_WAIT;
    let mut answered = BTreeMap::new();
    loop {
        if let Ok(status) = cluster.status().await {
            for m in status.members.iter().filter(|m| m.live && !m.local) {
                if let Some(addr) = addrs.iter().find(|a| a.to_string() == m.addr) {
                    answered.insert(*addr, m.node_id.clone());
                }
            }
        }
        if answered.len() == addrs.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(JOIN_POLL).await;
    }
    JoinReply {
        contacted: addrs.iter().map(ToString::to_string).collect(),
        answered: answered
            .iter()
            .map(|(addr, id)| format!("{id} {addr}"))
            .collect(),
        silent: addrs
            .iter()
            .filter(|a| !answered.contains_key(a))
            .map(ToString::to_string)
            .collect(),
    }
}

async fn answer(request: Request, api: &Api) -> Reply {
    match request {
        Request::Join(join) => match api.cluster() {
            Err(reply) => reply,
            Ok(cluster) => match cluster.join(&join.peers).await {
                Ok(addrs) => {
                    info!(peers = ?join.peers, "join requested");
                    Reply::Join(joined(cluster, &addrs).await)
                }
                Err(e) => Reply::Error(format!("join: {e:#}")),
            },
        },
        Request::Drain(DrainRequest { drain, node }) if !api.is_me(&node) => {
            info!(%node, drain, "drain forwarded");
            api.forward(
                &node,
                Request::Drain(DrainRequest {
                    drain,
                    node: node.clone(),
                }),
            )
            .await
        }
        Request::Drain(DrainRequest { drain, .. }) => match api.cluster() {
            Err(reply) => reply,
            Ok(cluster) => match cluster.drain(drain).await {
                Ok(held) => Reply::Drain(DrainReply { held }),
                Err(e) => Reply::Error(e.to_string()),
            },
        },
        Request::MoveGroup(MoveRequest { group, node }) if !api.is_me(&node) => {
            info!(%group, %node, "move forwarded");
            api.forward(
                &node,
                Request::MoveGroup(MoveRequest {
                    group,
                    node: node.clone(),
                }),
            )
            .await
        }
        Request::MoveGroup(MoveRequest { group, .. }) => match api.cluster() {
            Err(reply) => reply,
            Ok(cluster) => match cluster.pin(&group).await {
                Err(e) => Reply::Error(e.to_string()),
                Ok(Err(e)) => Reply::Error(e),
                Ok(Ok(())) => moved(cluster, &api.node_id, group).await,
            },
        },
        Request::Status(_) => match &api.cluster {
            // A director in no cluster: itself, and nothing else to show.
            None => Reply::Status(Box::new(StatusReply {
                node_id: api.node_id.clone(),
                ..StatusReply::default()
            })),
            Some(cluster) => match cluster.status().await {
                Ok(status) => Reply::Status(Box::new(status)),
                Err(e) => Reply::Error(e.to_string()),
            },
        },
        // The kernel's tables, read on a socket of their own.
        Request::Services(_) => listing::services().await.map_or_else(
            |e| Reply::Error(format!("IPVS services: {e:#}")),
            Reply::Services,
        ),
        Request::Connections(_) => listing::connections().await.map_or_else(
            |e| Reply::Error(format!("IPVS connections: {e:#}")),
            Reply::Connections,
        ),
        Request::Daemons(_) => listing::daemons().await.map_or_else(
            |e| Reply::Error(format!("IPVS sync daemons: {e:#}")),
            Reply::Daemons,
        ),
        Request::Watch(_) => Reply::Error("a watch is answered by a stream".into()),
        Request::ConfigGet(_) => match api.ask(DocumentCall::Get).await {
            Err(reply) => reply,
            Ok(doc) if doc.version == 0 => Reply::Error(format!(
                "{} runs the cluster part of its config files: no cluster document was \
                 applied (lvs-cli apply -f FILE)",
                api.node_id
            )),
            Ok(doc) => {
                let stamp = doc.stamp();
                Reply::Config(ClusterDocument {
                    version: stamp.version,
                    digest: stamp.digest,
                    text: doc.text,
                })
            }
        },
        Request::ConfigApply(apply) => {
            match api.ask(|tx| DocumentCall::Apply(apply.text, tx)).await {
                Err(reply) => reply,
                Ok(Err(e)) => Reply::Error(e),
                Ok(Ok(stamp)) => Reply::Applied(ConfigApplyReply {
                    version: stamp.version,
                    digest: stamp.digest,
                }),
            }
        }
    }
}
