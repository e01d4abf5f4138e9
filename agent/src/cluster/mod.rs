//! The cluster runtime: gossip membership, per-VIP-group ownership, VIP addresses and
//! VRRP on the wire, tied together by one event loop (`runtime`).
//!
//! - Membership (SWIM gossip) says who is alive, and carries each node's claims: ready,
//!   cluster config digest, held groups. `ownership::elect` picks one owner per group
//!   among the ready members, keeping present holders (learnt from the claims) as
//!   stickiness requires; nodes whose config digests differ do not preempt each other.
//! - Each group runs a VRRP-shaped state machine (`router`): it starts as Backup and
//!   listens for Master_Down_Interval before claiming, obeys any valid advert of a
//!   master it hears (per the group's `vrrp_obey`), settles two masters by VRRP
//!   precedence, and hands a group over on every planned move (preemption, join,
//!   SIGTERM) with a sealed message to the successor beside a priority-0 advert.
//! - The holder adds the group's addresses (all or none), announces them (gratuitous
//!   ARP / unsolicited NA), advertises every `advert_int` and re-adds an address removed
//!   by hand.
//! - Heartbeats (`membership::heartbeat`) beside SWIM: each group's heir takes it as soon
//!   as the owner's heartbeats stop (`silence`), like keepalived's master-down timer.
//! - Decisions are pure (`router`, `decide`, `roster`, `silence`); sockets and netlink
//!   stay in `runtime` and `uplink`. Local commands (`lvs-agent join`, `status`) arrive
//!   over `control`.

pub mod control;
mod decide;
mod roster;
mod router;
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

    /// Planned stop: hands every group to its heir and leaves the gossip.
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
