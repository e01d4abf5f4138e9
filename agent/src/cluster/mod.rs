//! The cluster runtime: gossip membership, per-VIP-group ownership, VIP addresses and
//! VRRP on the wire, tied together by one event loop (`runtime`).
//!
//! - Membership (SWIM gossip) says who is alive; `ownership::elect` picks one owner per
//!   group from that view; the owner adds the group's addresses, announces them
//!   (gratuitous ARP / unsolicited NA) and sends VRRP adverts every `advert_int`.
//! - Losing a group: addresses off first, announcements stopped, one priority-0 advert.
//! - VRRP from agents never overrides the election; VRRP from other routers (keepalived)
//!   is obeyed by the VRRP rules: a better foreign master holds the group until it
//!   resigns or falls silent for the master-down interval.
//! - Heartbeats (`membership::heartbeat`) beside SWIM: each group's heir takes it as soon
//!   as the owner's heartbeats stop (`silence`), like keepalived's master-down timer.
//! - Decisions are pure (`decide`, `roster`, `silence`); sockets and netlink stay in
//!   `runtime` and `uplink`. Local commands (`lvs-agent join`, `status`) arrive over
//!   `control`.

pub mod control;
mod decide;
mod roster;
mod runtime;
mod silence;
mod uplink;

use std::net::SocketAddr;

use anyhow::Context as _;
use lvs_proto::v1::StatusReply;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::config::{ClusterConfig, NodeConfig};
use runtime::{Command, Runtime};

/// A handle to the running cluster task; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    commands: mpsc::Sender<Command>,
    owns_any: watch::Receiver<bool>,
}

/// The cluster task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cluster task has stopped")]
pub struct Stopped;

/// Starts membership, opens the VIP interfaces (removing VIPs left from a previous run)
/// and spawns the cluster task. Must run inside a tokio runtime, as root.
pub async fn start(node: NodeConfig, cluster: ClusterConfig) -> anyhow::Result<ClusterHandle> {
    let (owns_tx, owns_any) = watch::channel(false);
    let span = tracing::info_span!("cluster", node = %node.id);
    let (runtime, members, uplinks) = Runtime::start(node, cluster, owns_tx)
        .instrument(span.clone())
        .await
        .context("starting the cluster runtime")?;
    let (commands, commands_rx) = mpsc::channel(16);
    tokio::spawn(runtime.run(members, uplinks, commands_rx).instrument(span));
    Ok(ClusterHandle { commands, owns_any })
}

impl ClusterHandle {
    /// Whether this node holds at least one VIP group now (it then runs the IPVS sync
    /// master); changes are signalled on the receiver.
    pub fn owns_any(&self) -> watch::Receiver<bool> {
        self.owns_any.clone()
    }

    /// Contact more gossip peers (`host:port`).
    pub async fn join(&self, peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs = runtime::resolve(peers).await?;
        self.call(|reply| Command::Join(addrs.clone(), reply))
            .await?;
        Ok(addrs)
    }

    pub async fn status(&self) -> Result<StatusReply, Stopped> {
        self.call(Command::Status).await
    }

    /// Applies a new cluster config (groups, priorities, timers) and elects again.
    pub async fn reload(&self, cluster: ClusterConfig) -> Result<(), Stopped> {
        self.commands
            .send(Command::Reload(Box::new(cluster)))
            .await
            .map_err(|_| Stopped)
    }

    /// Planned stop: releases every group (priority-0 adverts) and leaves the gossip.
    pub async fn shutdown(&self) -> Result<(), Stopped> {
        self.call(Command::Shutdown).await
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

/// The cluster part of `lvs-agent run`: the runtime and its control socket.
pub struct Stage {
    pub handle: ClusterHandle,
    _control: control::ControlServer,
}

impl Stage {
    /// `None` when the cluster has no VIP group: such a director only runs IPVS, and
    /// needs no cluster key.
    pub async fn start(
        node: &NodeConfig,
        cluster: &ClusterConfig,
    ) -> anyhow::Result<Option<Stage>> {
        if cluster.vip_groups.is_empty() {
            return Ok(None);
        }
        let handle = start(node.clone(), cluster.clone()).await?;
        let control = control::serve(&node.control_socket, handle.clone())?;
        Ok(Some(Stage {
            handle,
            _control: control,
        }))
    }
}
