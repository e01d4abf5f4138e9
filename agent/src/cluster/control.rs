//! The local command socket (`[node] control_socket`): one length-delimited
//! `lvs.v1.ControlRequest` in, one `ControlReply` out, per connection
//! (proto/lvs/v1/control.proto). Root-only: the socket file is mode 0600.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use lvs_proto::v1::{
    control_reply::Reply, control_request::Request, ControlReply, ControlRequest, DrainReply,
    DrainRequest, JoinReply, StatusReply,
};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ClusterHandle;

/// Far above any request; a client sending more is cut off.
const MAX_MESSAGE: u64 = 64 * 1024;

/// The listening socket; dropping it stops serving and removes the file.
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (replacing a socket file left by a previous run) and serves `cluster`.
pub fn serve(path: &Path, cluster: ClusterHandle) -> anyhow::Result<ControlServer> {
    let context = || format!("control socket {}", path.display());
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(context),
    }
    let listener = UnixListener::bind(path).with_context(context)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(context)?;
    info!(path = %path.display(), "control socket listening");
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let cluster = cluster.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &cluster).await {
                            warn!(error = %e, "control request");
                        }
                    });
                }
                Err(e) => warn!(error = %e, "control socket accept"),
            }
        }
    });
    Ok(ControlServer {
        path: path.to_owned(),
        task,
    })
}

async fn read_message(stream: &mut UnixStream) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    stream.take(MAX_MESSAGE).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

async fn answer(mut stream: UnixStream, cluster: &ClusterHandle) -> anyhow::Result<()> {
    let bytes = read_message(&mut stream).await?;
    let reply = match ControlRequest::decode_length_delimited(bytes.as_slice()) {
        Err(e) => Reply::Error(format!("not a ControlRequest: {e}")),
        Ok(ControlRequest { request: None }) => Reply::Error("empty ControlRequest".into()),
        Ok(ControlRequest {
            request: Some(Request::Join(join)),
        }) => match cluster.join(&join.peers).await {
            Ok(addrs) => {
                info!(peers = ?join.peers, "join requested");
                Reply::Join(JoinReply {
                    contacted: addrs.iter().map(ToString::to_string).collect(),
                })
            }
            Err(e) => Reply::Error(format!("join: {e:#}")),
        },
        Ok(ControlRequest {
            request: Some(Request::Drain(DrainRequest { drain })),
        }) => match cluster.drain(drain).await {
            Ok(held) => Reply::Drain(DrainReply { held }),
            Err(e) => Reply::Error(e.to_string()),
        },
        Ok(ControlRequest {
            request: Some(Request::Status(_)),
        }) => match cluster.status().await {
            Ok(status) => Reply::Status(Box::new(status)),
            Err(e) => Reply::Error(e.to_string()),
        },
    };
    let reply = ControlReply { reply: Some(reply) };
    stream
        .write_all(&reply.encode_length_delimited_to_vec())
        .await?;
    stream.shutdown().await?;
    Ok(())
}

/// Sends one request to the agent at `path` and returns its reply; an error reply
/// becomes an `Err`.
pub async fn request(path: &Path, request: Request) -> anyhow::Result<Reply> {
    let context = || format!("control socket {} (is lvs-agent running?)", path.display());
    let mut stream = UnixStream::connect(path).await.with_context(context)?;
    let message = ControlRequest {
        request: Some(request),
    };
    stream
        .write_all(&message.encode_length_delimited_to_vec())
        .await
        .with_context(context)?;
    stream.shutdown().await.with_context(context)?;
    let bytes = read_message(&mut stream).await.with_context(context)?;
    let reply = ControlReply::decode_length_delimited(bytes.as_slice())
        .context("the agent's answer is not a ControlReply")?;
    match reply.reply {
        Some(Reply::Error(reason)) => bail!("lvs-agent: {reason}"),
        Some(reply) => Ok(reply),
        None => bail!("lvs-agent sent an empty ControlReply"),
    }
}

/// `lvs-agent status` output: one line per member, group and drop counter, e.g.
/// `group web owner lb1 held foreign -`.
pub fn format_status(status: &StatusReply) -> String {
    let mut out = format!("node {}\n", status.node_id);
    for m in &status.members {
        let state = if m.live { "live" } else { "down" };
        let drain = if m.drain { " drain" } else { "" };
        let local = if m.local { " local" } else { "" };
        let ready = if m.live && !m.ready { " not-ready" } else { "" };
        out += &format!(
            "member {} {} {state}{drain}{ready}{local} config {:016x}\n",
            m.node_id, m.addr, m.config_digest
        );
    }
    for peer in &status.config_differs {
        out += &format!(
            "config differs: {peer} (ours {:016x}): no preemption until it matches\n",
            status.config_digest
        );
    }
    for conflict in &status.conflicts {
        out += &format!("conflict: {conflict}\n");
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for g in &status.groups {
        let held = if g.held { "held" } else { "not-held" };
        out += &format!(
            "group {} owner {} {held} foreign {}\n",
            g.name,
            dash(&g.owner),
            dash(&g.foreign_master)
        );
    }
    for svc in &status.services {
        out += &format!(
            "service {} healthy {}/{}\n",
            svc.service, svc.healthy, svc.total
        );
        for rs in &svc.troubled {
            let here = if rs.up { "up" } else { "down" };
            let disagree = if (rs.up && !rs.down_on.is_empty()) || (!rs.up && !rs.up_on.is_empty())
            {
                " DISAGREE"
            } else {
                ""
            };
            let reason = if rs.last_failure.is_empty() {
                String::new()
            } else {
                format!(" ({})", rs.last_failure)
            };
            out += &format!(
                "  real-server {} {here}{reason} down-on [{}] up-on [{}]{disagree}\n",
                rs.real_server,
                rs.down_on.join(" "),
                rs.up_on.join(" ")
            );
        }
    }
    for (reason, count) in &status.vrrp_dropped {
        out += &format!("vrrp-dropped {reason} {count}\n");
    }
    for (name, count) in status.gossip.iter().filter(|(_, n)| **n > 0) {
        out += &format!("gossip {name} {count}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_proto::v1::{RealServerStatus, ServiceStatus};

    #[test]
    fn status_lists_services_and_flags_disagreement() {
        let status = StatusReply {
            node_id: "lb1".into(),
            services: vec![ServiceStatus {
                service: "tcp 10.0.0.10:80".into(),
                healthy: 1,
                total: 2,
                troubled: vec![RealServerStatus {
                    real_server: "172.16.0.100:80".into(),
                    up: false,
                    last_failure: "GET /: status 503".into(),
                    down_on: vec![],
                    up_on: vec!["lb2".into()],
                }],
            }],
            ..StatusReply::default()
        };
        assert_eq!(
            format_status(&status),
            "node lb1\nservice tcp 10.0.0.10:80 healthy 1/2\n  real-server 172.16.0.100:80 down \
             (GET /: status 503) down-on [] up-on [lb2] DISAGREE\n"
        );
    }
}
