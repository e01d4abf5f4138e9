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
//!   stay in `runtime` and `uplink`. Commands (`lvs-cli`, `lvs-agent join`) arrive
//!   through a [`ClusterHandle`] from `crate::control`.

mod decide;
mod roster;
mod router;
mod runtime;
mod silence;
mod uplink;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use lvs_proto::v1::{ClusterEvent, StatusReply};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::config::{ClusterConfig, NodeConfig};
use crate::document::{Offer, Stamp};
use crate::health::Verdicts;
use crate::membership::{DocumentClaim, KeyRing, SyncRunning};
use crate::metrics::Metrics;
use runtime::{Command, Runtime};

/// A handle to the running cluster task; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    commands: mpsc::Sender<Command>,
    owns_any: watch::Receiver<bool>,
    events: broadcast::Sender<ClusterEvent>,
    offers: watch::Receiver<Option<Offer>>,
    settled: watch::Receiver<bool>,
}

/// Events a watcher may fall behind by before it loses some (and is told so).
const EVENT_BACKLOG: usize = 1024;

/// The cluster task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cluster task has stopped")]
pub struct Stopped;

/// Starts membership, opens the VIP interfaces (removing VIPs left from a previous run)
/// and spawns the cluster task. Must run inside a tokio runtime, as root.
pub async fn start(
    node: NodeConfig,
    cluster: ClusterConfig,
    document: Stamp,
    verdicts: watch::Receiver<Arc<Verdicts>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<ClusterHandle> {
    let (owns_tx, owns_any) = watch::channel(false);
    let (offers_tx, offers) = watch::channel(None);
    let (settled_tx, settled) = watch::channel(false);
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let span = tracing::info_span!("cluster", node = %node.id);
    let document = DocumentClaim {
        stamp: document,
        control_addr: node
            .control_tls
            .as_ref()
            .map(|_| node.control_addr().to_string())
            .unwrap_or_default(),
    };
    let (runtime, members, uplinks) = Runtime::start(
        node,
        cluster,
        document,
        offers_tx,
        settled_tx,
        owns_tx,
        verdicts,
        metrics,
        events.clone(),
    )
    .instrument(span.clone())
    .await
    .context("starting the cluster runtime")?;
    let (commands, commands_rx) = mpsc::channel(16);
    tokio::spawn(runtime.run(members, uplinks, commands_rx).instrument(span));
    Ok(ClusterHandle {
        commands,
        owns_any,
        events,
        offers,
        settled,
    })
}

impl ClusterHandle {
    /// Whether this node holds at least one VIP group now (it then runs the IPVS sync
    /// master); changes are signalled on the receiver.
    pub fn owns_any(&self) -> watch::Receiver<bool> {
        self.owns_any.clone()
    }

    /// Ownership and membership changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
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

    /// The IPVS sync daemons the kernel runs now (published for status).
    pub async fn set_sync(&self, running: SyncRunning) -> Result<(), Stopped> {
        self.commands
            .send(Command::Sync(running))
            .await
            .map_err(|_| Stopped)
    }

    /// Pins `group` to this node (`lvs-cli move`): every election gives it the group
    /// while it is live, ready and undrained.
    pub async fn pin(&self, group: &str) -> Result<Result<(), String>, Stopped> {
        self.call(|reply| Command::Pin(group.to_owned(), reply))
            .await
    }

    /// Drains (true) or undrains this node; the groups it still holds afterwards.
    pub async fn drain(&self, drain: bool) -> Result<Vec<String>, Stopped> {
        self.call(|reply| Command::Drain(drain, reply)).await
    }

    /// True once the start-up settle is over: the gossip view has formed.
    pub fn settled(&self) -> watch::Receiver<bool> {
        self.settled.clone()
    }

    /// The newest cluster document a live peer runs, while newer than this node's.
    pub fn offers(&self) -> watch::Receiver<Option<Offer>> {
        self.offers.clone()
    }

    /// Applies a new cluster config (groups, priorities, timers), from the document
    /// `stamp` (0: the config files), and elects again.
    pub async fn reload(&self, cluster: ClusterConfig, stamp: Stamp) -> Result<(), Stopped> {
        self.commands
            .send(Command::Reload(Box::new(cluster), stamp))
            .await
            .map_err(|_| Stopped)
    }

    /// Seals with, and accepts, this key ring from now on (key rotation).
    pub async fn set_keys(&self, keys: KeyRing) -> Result<(), Stopped> {
        self.commands
            .send(Command::SetKeys(keys))
            .await
            .map_err(|_| Stopped)
    }

    /// The IPVS stage's backup sync daemon listens (its first pass is done): the node
    /// becomes ready for VIP groups `[sync] catch_up` later. With services, a node is
    /// never ready before this.
    pub async fn sync_listening(&self) -> Result<(), Stopped> {
        self.commands
            .send(Command::SyncListening)
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

/// Whether the node runs the cluster stage (gossip, VIP groups): with VIP groups, or
/// with a `cluster_store` (it receives its groups in the cluster document).
pub fn runs_cluster(node: &NodeConfig, cluster: &ClusterConfig) -> bool {
    !cluster.vip_groups.is_empty() || node.cluster_store.is_some()
}

/// Checks a reloaded config against the running one before anything is applied: the
/// node part may change only its key files (rotation) and `reconcile_interval`, and the
/// cluster part may add no VIP interface or address family (sockets are opened at
/// start) nor the first VIP group of a node without `cluster_store` (its cluster stage did not start). Returns the new
/// key ring when the key files changed; the error names every change that needs a
/// restart, or the key file that cannot be used.
pub fn check_reload(
    old: (&NodeConfig, &ClusterConfig),
    new: (&NodeConfig, &ClusterConfig),
) -> Result<Option<KeyRing>, String> {
    let (on, oc) = old;
    let (nn, nc) = new;
    let mut restart = Vec::new();
    let mut field = |name: &str, same: bool| {
        if !same {
            restart.push(format!("node.{name}"));
        }
    };
    field("id", on.id == nn.id);
    field("interface", on.interface == nn.interface);
    field("address", on.address == nn.address);
    field("gossip_listen", on.gossip_listen == nn.gossip_listen);
    field("control_listen", on.control_listen == nn.control_listen);
    field("control_tls", on.control_tls == nn.control_tls);
    field("metrics_listen", on.metrics_listen == nn.metrics_listen);
    field("syncid", on.syncid == nn.syncid);
    field("join", on.join == nn.join);
    field(
        "gossip_probe_period",
        on.gossip_probe_period == nn.gossip_probe_period,
    );
    field(
        "heartbeat_interval",
        on.heartbeat_interval == nn.heartbeat_interval,
    );
    field(
        "heartbeat_timeout",
        on.heartbeat_timeout == nn.heartbeat_timeout,
    );
    field("rt_priority", on.rt_priority == nn.rt_priority);
    field("control_socket", on.control_socket == nn.control_socket);
    field("cluster_store", on.cluster_store == nn.cluster_store);
    if !runs_cluster(on, oc) && runs_cluster(nn, nc) {
        restart.push(
            "the first vip_group (the cluster stage starts at start; with node.cluster_store \
             it runs from the start)"
                .to_owned(),
        );
    }
    let opened = runtime::families(on, oc);
    for (interface, families) in runtime::families(nn, nc) {
        for v6 in families {
            if !opened.get(&interface).is_some_and(|f| f.contains(&v6)) {
                let family = if v6 { "IPv6" } else { "IPv4" };
                restart.push(format!("VIP groups on {interface} over {family}"));
            }
        }
    }
    if !restart.is_empty() {
        return Err(format!(
            "reload refused, nothing applied: {} changed, which needs a restart",
            restart.join(", ")
        ));
    }
    if on.cluster_key_files == nn.cluster_key_files || !runs_cluster(nn, nc) {
        return Ok(None);
    }
    runtime::keyring(nn)
        .map(Some)
        .map_err(|e| format!("reload refused, nothing applied: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn config(
        node_extra: &str,
        groups: &str,
        key: &std::path::Path,
    ) -> (NodeConfig, ClusterConfig) {
        let text = format!(
            "[node]\nid = \"lb1\"\ninterface = \"eth0\"\naddress = \"192.0.2.1\"\nsyncid = 1\n\
             cluster_key_files = [\"{}\"]\n{node_extra}\n[cluster]\nname = \"t\"\n{groups}",
            key.display()
        );
        let c = crate::config::parse(&text).expect("valid config");
        (c.node.expect("node"), c.cluster.expect("cluster"))
    }

    const V4: &str =
        "[[vip_group]]\nname = \"a\"\nvrrp_id = 1\naddresses = [\"198.51.100.1/24\"]\n";
    const V6: &str =
        "[[vip_group]]\nname = \"b\"\nvrrp_id = 2\nversion = 3\naddresses = [\"2001:db8::1/64\"]\n";

    fn key_file(name: &str, byte: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("lvs-reload-{}-{name}", std::process::id()));
        std::fs::write(&path, byte.repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn a_reload_names_every_change_that_needs_a_restart_and_rotates_keys() {
        let k1 = key_file("k1", "2a");
        let k2 = key_file("k2", "3b");
        let (n, c) = config("", V4, &k1);

        // Same config: nothing to do.
        assert_eq!(
            check_reload((&n, &c), (&n, &c)).map(|k| k.is_some()),
            Ok(false)
        );

        // Node fields and a new address family: all named, nothing applied.
        let (n2, c2) = config(
            "gossip_probe_period = 0.5\njoin = [\"192.0.2.2:7946\"]",
            &format!("{V4}{V6}"),
            &k1,
        );
        let err = check_reload((&n, &c), (&n2, &c2)).unwrap_err();
        for part in [
            "node.join",
            "node.gossip_probe_period",
            "on eth0 over IPv6",
            "nothing applied",
        ] {
            assert!(err.contains(part), "{err}");
        }

        // A new key file: a new ring, no restart.
        let (n3, c3) = config("", V4, &k2);
        let ring = check_reload((&n, &c), (&n3, &c3))
            .unwrap()
            .expect("a new ring");
        assert_ne!(
            ring.primary_id(),
            runtime::keyring(&n).unwrap().primary_id()
        );

        // A key file that cannot be used refuses the reload, naming it.
        std::fs::write(&k2, "not a key").unwrap();
        let err = check_reload((&n, &c), (&n3, &c3)).unwrap_err();
        assert!(err.contains(&k2.display().to_string()), "{err}");
        for k in [k1, k2] {
            std::fs::remove_file(k).unwrap();
        }
    }
}
