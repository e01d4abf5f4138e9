//! The cluster event loop: the thin shell around the per-group state machines
//! (`router`). One task owns this node's cluster state. Each wake-up (membership event,
//! VRRP packet, link change, heartbeat silence, command, timer) becomes inputs to the
//! routers; `reconcile` runs the election and gives every router its `View`; the
//! effects the routers return are performed here (addresses, announcements, adverts,
//! hand-overs), and what this node claims (readiness, config digest, held groups,
//! health, cluster document) is published on the heartbeat channel. A peer's newer
//! cluster document is offered to the node loop, which fetches and applies it.

use crate::ms;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use lvs_proto::v1::{ClusterEvent, StatusReply};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

mod status;
mod vips;

use super::decide;
use super::roster::Roster;
use super::router::{Effect, Input, Router, Settings, View};
use super::silence::Silences;
use super::uplink::{Uplink, UplinkEvent};
use crate::config::{ClusterConfig, NodeConfig, Protocol, VipGroup};
use crate::document::{self, Offer, Stamp};
use crate::health::{view::HealthView, Health, Verdicts};
use crate::membership::{
    self, Claims, ClusterKey, Conflict, DocumentClaim, KeyRing, MembershipConfig, MembershipEvent,
    MembershipHandle, SyncRunning,
};
use crate::metrics::Metrics;
use crate::ownership::{elect, heirs, GroupSpec, Member};
use crate::vip::addr::{AddrControl, LinkEvent};
use crate::vip::announce::AnnounceSettings;
use crate::vip::guard::{self, Guard, Target};
use crate::vip::vrrp_socket::Received;
use crate::vrrp;

pub(super) enum Command {
    Join(Vec<SocketAddr>, oneshot::Sender<()>),
    Status(oneshot::Sender<StatusReply>),
    /// A new cluster part, and the stamp of the document it comes from.
    Reload(Box<ClusterConfig>, Stamp),
    /// A new cluster key ring (key rotation).
    SetKeys(KeyRing),
    /// Drain (true) or undrain this node; answers with the groups it still holds
    /// after the moves (drained, it keeps those no undrained ready node can take).
    Drain(bool, oneshot::Sender<Vec<String>>),
    /// The IPVS sync daemons the kernel runs now.
    Sync(SyncRunning),
    /// Pin a group to this node (`lvs-cli move`); the error names what is wrong.
    Pin(String, oneshot::Sender<Result<(), String>>),
    /// Hand every group over to its heir (priority-0 adverts, hand-overs), leave the
    /// gossip.
    Shutdown(oneshot::Sender<()>),
    /// The IPVS stage's backup sync daemon listens: the catch-up starts.
    SyncListening,
}

/// A group this node holds: the definition its addresses were added from, so that
/// releasing removes exactly those whatever the config says by then.
struct Held {
    group: VipGroup,
    announcing: JoinHandle<()>,
    next_advert: Instant,
}

/// After a failed acquire, the election is retried this much later.
const ACQUIRE_RETRY: Duration = Duration::from_secs(1);

/// A turn that ends this much later than its wake was due is a stall of this node
/// (timer lateness is a few ms; a loaded host or a paused VM is hundreds; a turn's own
/// long await counts too): adverts waited unread meanwhile, so the routers are
/// credited it (`Input::Stalled`).
const STALL: Duration = Duration::from_millis(250);

/// A removed VIP interface is looked for this often until it is back.
const REOPEN_RETRY: Duration = Duration::from_millis(500);

/// A re-created interface is opened once every family it carries has a VRRP source,
/// or after this many tries with what it has (an IPv6 link-local appears only after
/// duplicate address detection, about 1 s; a family without one is logged).
const REOPEN_TRIES_FOR_SOURCES: u32 = 10;
pub(super) struct Runtime {
    node: NodeConfig,
    cluster: ClusterConfig,
    specs: Vec<GroupSpec>,
    /// `decide::config_digest` of `cluster`, published in gossip.
    digest: u64,
    membership: MembershipHandle,
    addrs: AddrControl,
    uplinks: BTreeMap<String, Uplink>,
    /// Uplink events go here; re-opened uplinks send to it too.
    uplink_tx: mpsc::Sender<UplinkEvent>,
    /// Removed VIP interfaces: when to look for each again (ms), and the tries so far.
    reopen: BTreeMap<String, (u64, u32)>,
    roster: Roster,
    start: Instant,
    /// Until then (ms since start) nothing is claimed; see `View::settling`.
    settle_at_ms: u64,
    /// How long to settle with no peer heard (0 without join peers): at start, and
    /// when the uplink comes back with every peer lost behind it.
    settle_ms: u64,
    /// Not ready before then (ms): the backup sync daemon listens for the holders'
    /// re-sent connections (`[sync] catch_up` after the IPVS stage started it, and
    /// after the link returns). `None` until the IPVS stage says its daemon listens.
    catch_up_at_ms: Option<u64>,
    /// Since when this node is ready (ms), `None` while not.
    ready_since_ms: Option<u64>,
    /// Drained by the operator (`lvs-agent drain`), for this process life.
    drained: bool,
    /// When last undrained (ms): eligible from then on, like a node just up.
    undrained_ms: u64,
    /// Figures counted as they happen (`lvs_*` on /metrics).
    metrics: Arc<Metrics>,
    /// Ownership and membership changes for `lvs-cli watch`; sending never waits (a
    /// slow watcher loses events and is told how many).
    events: broadcast::Sender<ClusterEvent>,
    /// When this node last saw each group's holder or elected owner change (ms since
    /// the Unix epoch), for status.
    since: BTreeMap<String, u64>,
    owners: BTreeMap<String, Option<String>>,
    recheck_at_ms: Option<u64>,
    routers: BTreeMap<String, Router>,
    held: BTreeMap<String, Held>,
    dropped: BTreeMap<&'static str, u64>,
    owns_any: watch::Sender<bool>,
    /// Owners presumed down on heartbeat silence.
    silences: Silences,
    /// Heartbeat targets and sources last given to the membership.
    heartbeats: (BTreeSet<SocketAddr>, BTreeSet<String>),
    /// What this node last published in gossip.
    claims: Claims,
    /// Live peers whose cluster config digest differs from ours, as last logged.
    differing: BTreeSet<String>,
    /// Membership conflicts (node id, syncid) reported so far, for status.
    conflicts: Vec<String>,
    /// An older live process uses this node's id (at that gossip address): this one,
    /// the newer, holds nothing until it is gone.
    stand_back: Option<SocketAddr>,
    /// This node's health verdicts (shown by status), and as published in its claims
    /// (computed at each change: one bit per real server).
    health: Health,
    health_view: HealthView,
    verdicts: watch::Receiver<Arc<Verdicts>>,
    /// The cluster document this node runs, published in its claims.
    document: DocumentClaim,
    /// The newest document a live peer runs, when newer than ours: the node loop
    /// fetches and applies it.
    offers: watch::Sender<Option<Offer>>,
    /// Groups the operator moved here, with each pin's stamp (published in the claims;
    /// see `ownership`). Dropped once a peer pins the group later, or the group leaves
    /// the config.
    pins: BTreeMap<String, u64>,
    /// The sync daemons the node loop last read running, published for status.
    sync: SyncRunning,
    /// Set once the start-up settle is over (the gossip view formed): the agent then
    /// tells systemd it is ready.
    settled: watch::Sender<bool>,
    /// Keeps a VIP this node takes from resetting the connections whose sync messages
    /// are still on their way (`vip::guard`).
    guard: Guard,
    /// The probes of groups being preempted (`Effect::Preempt`): a new preemption of the
    /// group aborts the last one's, so no stale report ends it.
    probes: BTreeMap<String, JoinHandle<()>>,
    /// After this node released its last group, its sync master runs up to this time (ms):
    /// the kernel discards a stopping master's unsent buffer, which holds the
    /// connections of its last 2 to 3 s, the ones the successor's guard waits for.
    master_until_ms: Option<u64>,
}

/// The SWIM LAN preset with every timer scaled by `probe_period` / 1 s.
fn swim_config(probe_period: Duration) -> foca::Config {
    let mut swim = membership::lan_swim_config(8);
    let k = probe_period.as_secs_f64();
    swim.probe_period = swim.probe_period.mul_f64(k);
    swim.probe_rtt = swim.probe_rtt.mul_f64(k);
    swim.suspect_to_down_after = swim.suspect_to_down_after.mul_f64(k);
    for periodic in [
        &mut swim.periodic_announce,
        &mut swim.periodic_announce_to_down_members,
        &mut swim.periodic_gossip,
    ]
    .into_iter()
    .flatten()
    {
        periodic.frequency = periodic.frequency.mul_f64(k);
    }
    swim
}

pub(super) fn keyring(node: &NodeConfig) -> anyhow::Result<KeyRing> {
    let mut files = node.cluster_key_files.iter();
    let Some(primary) = files.next() else {
        bail!("node.cluster_key_files: at least one cluster key is needed to join a cluster");
    };
    let mut ring = KeyRing::new(ClusterKey::load(primary)?);
    for file in files {
        ring = ring.with_accepted(ClusterKey::load(file)?)?;
    }
    Ok(ring)
}

/// Resolves `host:port` peers.
pub(super) async fn resolve(peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for peer in peers {
        let found = tokio::net::lookup_host(peer.as_str())
            .await
            .with_context(|| format!("peer {peer:?}"))?;
        out.extend(found.take(1));
    }
    Ok(out)
}

/// The sync catch-up in ms: none without services (no connections to learn).
fn catch_up_ms(cluster: &ClusterConfig) -> u64 {
    if cluster.services.is_empty() {
        0
    } else {
        ms(cluster.sync.catch_up())
    }
}

/// How long a taken VIP is guarded, and a released node's sync master lingers: the
/// sync catch-up, the time within which the previous holder's sync master has sent
/// every connection it has.
fn guard_window(cluster: &ClusterConfig) -> Duration {
    Duration::from_millis(catch_up_ms(cluster))
}

/// What the guard covers: the VIP and port of every TCP service (a fwmark service's
/// addresses are the directors' marking rules, not the config's: not guarded), except
/// a service with a real server on this node (IPVS local node hands its segments to
/// the local stack, through the guard's chain: they would be dropped too).
fn guard_targets(cluster: &ClusterConfig, node: &NodeConfig) -> BTreeSet<Target> {
    cluster
        .services
        .iter()
        .filter(|s| s.protocol.unwrap_or(Protocol::Tcp) == Protocol::Tcp)
        .filter(|s| {
            !s.real_servers
                .iter()
                .any(|rs| rs.address.is_loopback() || rs.address == node.address)
        })
        .filter_map(|s| {
            Some(Target {
                addr: s.vip?,
                port: s.port?,
            })
        })
        .collect()
}

/// Now, in ms since the Unix epoch (0 on a clock before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, ms)
}

/// The address families (true = IPv6) of the groups on each VIP interface. With a
/// `cluster_store`, the node's own interface and family too: groups there can arrive in
/// a cluster document without a restart.
pub(super) fn families(
    node: &NodeConfig,
    cluster: &ClusterConfig,
) -> BTreeMap<String, BTreeSet<bool>> {
    let mut families: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    if node.cluster_store.is_some() {
        families
            .entry(node.interface.clone())
            .or_default()
            .insert(node.address.is_ipv6());
    }
    for g in &cluster.vip_groups {
        let v6 = g.addresses.first().is_some_and(|a| a.addr.is_ipv6());
        families
            .entry(g.interface_or(&node.interface).to_owned())
            .or_default()
            .insert(v6);
    }
    families
}

/// The addresses this node sends VRRP from: every uplink's sockets' sources.
fn vrrp_sources(uplinks: &BTreeMap<String, Uplink>) -> Vec<IpAddr> {
    uplinks
        .values()
        .flat_map(|u| [&u.v4, &u.v6])
        .flatten()
        .map(|socket| socket.source())
        .collect()
}

async fn open_uplinks(
    addrs: &AddrControl,
    node: &NodeConfig,
    cluster: &ClusterConfig,
    events: &mpsc::Sender<UplinkEvent>,
) -> anyhow::Result<BTreeMap<String, Uplink>> {
    let mut uplinks = BTreeMap::new();
    for (name, families) in families(node, cluster) {
        let v4_source = (name == node.interface).then_some(node.address);
        let uplink = Uplink::open(addrs, &name, v4_source, &families, events.clone())
            .await
            .with_context(|| format!("interface {name}"))?;
        uplinks.insert(name, uplink);
    }
    Ok(uplinks)
}

impl Runtime {
    #[allow(clippy::too_many_arguments)] // each is one channel or part of the state
    pub(super) async fn start(
        node: NodeConfig,
        cluster: ClusterConfig,
        document: DocumentClaim,
        offers: watch::Sender<Option<Offer>>,
        settled: watch::Sender<bool>,
        owns_any: watch::Sender<bool>,
        verdicts: watch::Receiver<Arc<Verdicts>>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<ClusterEvent>,
    ) -> anyhow::Result<(
        Self,
        mpsc::Receiver<MembershipEvent>,
        mpsc::Receiver<UplinkEvent>,
    )> {
        let seeds = resolve(&node.join).await?;
        let addrs = AddrControl::connect()?;
        let (uplink_tx, uplink_events) = mpsc::channel(256);
        // Before membership: the VRRP sources are published with it.
        let uplinks = open_uplinks(&addrs, &node, &cluster, &uplink_tx).await?;
        let vrrp_sources = vrrp_sources(&uplinks);
        let mut mc = MembershipConfig::new(node.id.as_str(), node.gossip_addr(), keyring(&node)?);
        mc.syncid = node.syncid;
        mc.vrrp_sources = vrrp_sources.clone();
        mc.join = seeds.clone();
        mc.swim = swim_config(node.gossip_probe_period);
        mc.join_retry = node.gossip_probe_period * 5;
        mc.heartbeat_interval = node.heartbeat_interval;
        mc.heartbeat_timeout = node.heartbeat_timeout();
        let (membership, member_events) = membership::start(mc).await?;

        let settle_ms = if seeds.is_empty() {
            0
        } else {
            ms(node.gossip_probe_period * 10)
        };
        let own = std::iter::once(node.address).chain(vrrp_sources);
        let initial_verdicts = Arc::clone(&verdicts.borrow());
        // Before any VIP is held: every target is guarded until taken.
        let guard = Guard::start(&guard_targets(&cluster, &node));
        let mut runtime = Runtime {
            roster: Roster::new(node.id.as_str(), own),
            specs: decide::group_specs(&cluster),
            digest: decide::config_digest(&cluster),
            settle_at_ms: settle_ms,
            settle_ms,
            // Without services there is nothing to catch up on, nor a daemon to wait for.
            catch_up_at_ms: cluster.services.is_empty().then_some(0),
            ready_since_ms: None,
            drained: false,
            undrained_ms: 0,
            routers: cluster
                .vip_groups
                .iter()
                .map(|g| (g.name.clone(), Router::new()))
                .collect(),
            node,
            cluster,
            membership,
            addrs,
            uplinks,
            uplink_tx,
            reopen: BTreeMap::new(),
            start: Instant::now(),
            owners: BTreeMap::new(),
            recheck_at_ms: None,
            held: BTreeMap::new(),
            dropped: BTreeMap::new(),
            metrics,
            events,
            since: BTreeMap::new(),
            owns_any,
            silences: Silences::default(),
            heartbeats: Default::default(),
            claims: Claims::default(),
            differing: BTreeSet::new(),
            conflicts: Vec::new(),
            stand_back: None,
            health: Health::new(initial_verdicts),
            health_view: HealthView::default(),
            verdicts,
            document,
            offers,
            pins: BTreeMap::new(),
            sync: SyncRunning::default(),
            settled,
            guard,
            probes: BTreeMap::new(),
            master_until_ms: None,
        };
        runtime.health_view = HealthView::of(&runtime.cluster, &runtime.health);
        runtime.remove_stale_vips().await;
        Ok((runtime, member_events, uplink_events))
    }

    /// Crash recovery: nothing is held at start, so every configured VIP found on an
    /// interface is left over from a previous life.
    async fn remove_stale_vips(&mut self) {
        for (name, uplink) in &self.uplinks {
            let vips: BTreeSet<IpAddr> = self
                .cluster
                .vip_groups
                .iter()
                .filter(|g| g.interface_or(&self.node.interface) == name)
                .flat_map(|g| g.addresses.iter().map(|a| a.addr))
                .collect();
            match self.addrs.list_in(&uplink.link, &vips).await {
                Ok(stale) => {
                    for a in stale {
                        info!(interface = %name, addr = %a.addr, "removing a VIP left from a previous run");
                        if let Err(e) = self.addrs.remove(&uplink.link, a.addr).await {
                            warn!(error = %e, "removing a stale VIP");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "listing VIPs at start"),
            }
        }
    }

    /// Tells the watchers which real servers went down or came back on this node.
    fn emit_health_changes(&self, before: &HealthView) {
        if before.services_digest != self.health_view.services_digest {
            return; // other services: nothing to compare
        }
        let mut index = 0;
        for service in &self.cluster.services {
            let name = service.key().map_or_else(String::new, |k| k.to_string());
            for rs in &service.real_servers {
                let down = self.health_view.is_down(index);
                if before.is_down(index) != down {
                    let kind = if down {
                        "real_server_down"
                    } else {
                        "real_server_up"
                    };
                    let addr = SocketAddr::new(rs.address, rs.port.unwrap_or(0));
                    self.emit(kind, &name, &addr.to_string());
                }
                index += 1;
            }
        }
    }

    /// A change of who holds or should hold `group`: noted for status ("since"),
    /// counted when this node acquired or released it, and told to the watchers.
    pub(super) fn ownership_event(&mut self, kind: &'static str, group: &str, node: &str) {
        self.since.insert(group.to_owned(), unix_ms());
        if matches!(kind, "acquired" | "released") {
            self.metrics
                .ownership
                .get_or_create(&crate::metrics::Change {
                    group: group.to_owned(),
                    change: kind,
                })
                .inc();
        }
        self.emit(kind, group, node);
    }

    /// Tells the watchers, if any.
    pub(super) fn emit(&self, kind: &str, group: &str, node: &str) {
        let unix_ms = unix_ms();
        // No watcher is not an error.
        let _ = self.events.send(ClusterEvent {
            unix_ms,
            kind: kind.to_owned(),
            group: group.to_owned(),
            node: node.to_owned(),
            count: 0,
        });
    }

    fn now_ms(&self) -> u64 {
        ms(self.start.elapsed())
    }

    fn at(&self, ms_since_start: u64) -> Instant {
        self.start + Duration::from_millis(ms_since_start)
    }

    pub(super) async fn run(
        mut self,
        mut members: mpsc::Receiver<MembershipEvent>,
        mut uplink_events: mpsc::Receiver<UplinkEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut silent = self.membership.silent_peers();
        let mut verdicts = self.verdicts.clone();
        self.reconcile().await;
        loop {
            // A timer already due fires at once: lateness counts from now.
            let wake = self.next_wake().max(Instant::now());
            tokio::select! {
                Some(event) = members.recv() => self.on_membership(event).await,
                // Published at the end of the turn, with the claims.
                Ok(()) = verdicts.changed() => {
                    self.health.verdicts = verdicts.borrow_and_update().clone();
                    let now = self.health_view.with_verdicts(&self.cluster, &self.health);
                    let before = std::mem::replace(&mut self.health_view, now);
                    self.emit_health_changes(&before);
                }
                Ok(()) = silent.changed() => {
                    let now_silent = silent.borrow_and_update().clone();
                    self.on_silence(&now_silent).await;
                }
                Some(event) = uplink_events.recv() => match event {
                    UplinkEvent::Link(name, event) => self.on_link(&name, event),
                    UplinkEvent::Vrrp(name, packet) => self.on_vrrp(&name, packet).await,
                    // The reconcile below claims, if this node should still.
                    UplinkEvent::LetGo(group) => self.step(&group, Input::LetGo).await,
                },
                command = commands.recv() => match command {
                    Some(Command::Join(peers, reply)) => {
                        if self.membership.join(peers).await.is_err() {
                            warn!("join: the membership task has stopped");
                        }
                        let _ = reply.send(());
                    }
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.status().await);
                    }
                    Some(Command::Reload(cluster, stamp)) => {
                        if stamp != self.document.stamp {
                            self.emit("document", &stamp.to_string(), self.node.id.as_str());
                        }
                        self.document.stamp = stamp;
                        self.reload(*cluster).await;
                    }
                    Some(Command::SetKeys(keys)) => {
                        if self.membership.set_keys(keys).await.is_err() {
                            warn!("keys: the membership task has stopped");
                        }
                    }
                    Some(Command::SyncListening) => {
                        if self.catch_up_at_ms.is_none() {
                            let catch_up = catch_up_ms(&self.cluster);
                            info!(catch_up_ms = catch_up, "sync backup listening: ready to take groups after the catch-up");
                            self.catch_up_at_ms = Some(self.now_ms() + catch_up);
                        }
                    }
                    Some(Command::Sync(running)) => {
                        self.sync = running;
                        self.publish_claims().await;
                    }
                    Some(Command::Pin(group, reply)) => {
                        let _ = reply.send(self.pin(group));
                        self.reconcile().await;
                    }
                    Some(Command::Drain(drain, reply)) => {
                        self.set_drain(drain);
                        self.reconcile().await;
                        let _ = reply.send(self.held.keys().cloned().collect());
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                () = sleep_until(wake) => {}
            }
            let late = Instant::now().saturating_duration_since(wake);
            if late > STALL {
                debug!(
                    late_ms = ms(late),
                    "woke late: the routers are credited the stall"
                );
                let names: Vec<String> = self.routers.keys().cloned().collect();
                for name in names {
                    self.step(&name, Input::Stalled { late_ms: ms(late) }).await;
                }
            }
            self.reopen_uplinks().await;
            self.reconcile().await;
            self.send_due_adverts().await;
            self.offer_newer_document();
        }
    }

    /// Pins `group` to this node, stamped above every pin of it this node knows of.
    fn pin(&mut self, group: String) -> Result<(), String> {
        if self.group(&group).is_none() {
            let names: Vec<&str> = self
                .cluster
                .vip_groups
                .iter()
                .map(|g| g.name.as_str())
                .collect();
            return Err(format!(
                "no VIP group {group:?} (groups: {})",
                names.join(", ")
            ));
        }
        if self.drained {
            return Err(format!("{} is drained: undrain it first", self.node.id));
        }
        if self.ready_since_ms.is_none() {
            return Err(format!(
                "{} is not ready for VIP groups yet (settling, links down or sync catch-up)",
                self.node.id
            ));
        }
        let known = self
            .roster
            .live_claims()
            .filter_map(|(_, c)| c.pins.get(&group).copied())
            .chain(self.pins.get(&group).copied())
            .max()
            .unwrap_or(0);
        let stamp = unix_ms().max(known + 1);
        info!(group = %group, stamp, "moved here by the operator: pinned");
        self.pins.insert(group, stamp);
        Ok(())
    }

    /// Drops this node's pins that a peer's later pin or the config superseded.
    fn prune_pins(&mut self) {
        let later: BTreeSet<String> = self
            .pins
            .iter()
            .filter(|(group, &stamp)| {
                self.group(group).is_none()
                    || self
                        .roster
                        .live_claims()
                        .any(|(_, c)| c.pins.get(*group).is_some_and(|&s| s > stamp))
            })
            .map(|(group, _)| group.clone())
            .collect();
        for group in later {
            info!(group = %group, "pin dropped: moved elsewhere since, or no longer configured");
            self.pins.remove(&group);
        }
    }

    /// Tells the node loop of the newest document a live peer runs, when it is newer
    /// than this node's.
    fn offer_newer_document(&self) {
        let offer = document::newest(
            self.document.stamp,
            self.roster.live_claims().map(|(id, c)| {
                (
                    id.as_str(),
                    c.document.stamp,
                    c.document.control_addr.as_str(),
                )
            }),
        );
        self.offers.send_if_modified(|now| {
            let changed = *now != offer;
            if changed {
                now.clone_from(&offer);
            }
            changed
        });
    }

    fn next_wake(&self) -> Instant {
        let now_ms = self.now_ms();
        let timers_ms = [
            self.recheck_at_ms,
            (self.settle_at_ms > now_ms).then_some(self.settle_at_ms),
            self.catch_up_at_ms.filter(|&t| t > now_ms),
            self.silences.next_expiry(self.presumption_cap_ms()),
            self.master_until_ms.filter(|&t| t > now_ms),
        ]
        .into_iter()
        .flatten()
        .chain(self.reopen.values().map(|(at, _)| *at))
        .chain(self.routers.values().filter_map(|r| r.next_wake_ms(now_ms)))
        .map(|t| self.at(t));
        timers_ms
            .chain(self.held.values().map(|h| h.next_advert))
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    async fn on_membership(&mut self, event: MembershipEvent) {
        let now = self.now_ms();
        if matches!(event, MembershipEvent::MemberUp(_)) {
            // Peers answered: the rest of the view follows within a couple of probes.
            let soon = now + ms(self.node.gossip_probe_period * 2);
            self.settle_at_ms = self.settle_at_ms.min(soon);
        }
        match &event {
            MembershipEvent::MemberUp(m) if !m.local => self.emit("member_up", "", &m.node_id),
            MembershipEvent::MemberDown(m) if !m.local => {
                self.emit("member_down", "", &m.node_id);
            }
            _ => {}
        }
        if let MembershipEvent::MemberUp(m) | MembershipEvent::MemberDown(m) = &event {
            if self.silences.refute(&m.node_id) {
                info!(peer = %m.node_id, "SWIM settled a peer presumed down on heartbeat silence");
            }
        }
        match &event {
            MembershipEvent::Handover { from, group } => {
                if self.routers.contains_key(group) {
                    self.owners
                        .insert(group.clone(), Some(self.node.id.to_string()));
                    // Its claim on the group is over, whatever its next claims say.
                    self.roster.void_claim(from, group);
                    self.step(group, Input::Handover { from }).await;
                    // Claimed at once: the group has no holder meanwhile. The
                    // election that follows hands it on should it name another node.
                    let settling = now < self.settle_at_ms;
                    if let Some(view) = self.view(group, settling) {
                        self.step(group, Input::View(view)).await;
                    }
                } else {
                    warn!(%from, %group, "handed a group this node does not know (config differs?)");
                }
            }
            MembershipEvent::Conflict(conflict) => {
                let own = self.membership.addr();
                if let Conflict::NodeId {
                    node_id,
                    addrs,
                    newer,
                } = conflict
                {
                    if node_id.as_str() == self.node.id.as_str() && *newer == own {
                        let older = addrs.iter().copied().find(|a| *a != own);
                        error!(
                            node_id = %node_id, older = ?older,
                            "an older live process uses this node id: holding nothing until it stops"
                        );
                        self.stand_back = older;
                    }
                }
                let text = conflict.to_string();
                if !self.conflicts.contains(&text) {
                    self.conflicts.push(text);
                }
            }
            _ => {}
        }
        if let MembershipEvent::MemberUp(m) | MembershipEvent::MemberDown(m) = &event {
            if m.node_id == self.node.id.as_str() {
                // Another process with our id: never a peer of ours.
                if matches!(event, MembershipEvent::MemberDown(_))
                    && self.stand_back == Some(m.addr)
                {
                    info!(older = %m.addr, "the older process with this node id is gone");
                    self.stand_back = None;
                }
                return;
            }
        }
        if self.roster.apply(&event, now) || matches!(event, MembershipEvent::MetaChanged { .. }) {
            // A master heard before its node joined the gossip is an agent after all.
            for router in self.routers.values_mut() {
                let Some(src) = router
                    .heard(now)
                    .filter(|h| h.node.is_none())
                    .map(|h| h.src)
                else {
                    continue;
                };
                if let Some(node) = self.roster.agent_at(src) {
                    router.identify(src, node);
                }
            }
        }
    }

    async fn on_silence(&mut self, silent: &BTreeSet<String>) {
        let roster = &self.roster;
        let presumed = self.silences.update(
            silent,
            &self.heartbeats.1,
            |p| roster.is_live(p),
            self.now_ms(),
        );
        for peer in presumed {
            warn!(%peer, "heartbeat silence: presuming the owner down, taking the groups this node is heir of");
            let names: Vec<String> = self.routers.keys().cloned().collect();
            for name in names {
                self.step(&name, Input::PresumedDown(&peer)).await;
            }
        }
    }

    /// Applies a cluster config `check_reload` accepted: groups gone from it (removed or renamed) are
    /// released from the addresses they were acquired with, held groups whose
    /// addresses changed get exactly the new ones, new groups start as routers of
    /// their own.
    async fn reload(&mut self, cluster: ClusterConfig) {
        info!("cluster config reloaded");
        if self.catch_up_at_ms.is_none() && cluster.services.is_empty() {
            self.catch_up_at_ms = Some(0);
        }
        let gone: Vec<String> = self
            .routers
            .keys()
            .filter(|name| !cluster.vip_groups.iter().any(|g| &g.name == *name))
            .cloned()
            .collect();
        let mut released: BTreeSet<IpAddr> = BTreeSet::new();
        for name in gone {
            if let Some(h) = self.held.get(&name) {
                released.extend(h.group.addresses.iter().map(|a| a.addr));
                info!(group = %name, "group removed from the config: releasing it");
                self.release(&name, None).await;
            }
            self.routers.remove(&name);
            self.owners.remove(&name);
        }
        let me = self.node.id.to_string();
        for g in &cluster.vip_groups {
            if self.routers.contains_key(&g.name) {
                continue;
            }
            let mut router = Router::new();
            if g.addresses.iter().any(|a| released.contains(&a.addr)) {
                // A renamed group (or one taking over a removed group's addresses): this
                // node held them a moment ago, so it keeps them without a start-up wait.
                info!(group = %g.name, "new group with addresses this node held: claiming it at once");
                router.hand_over();
                self.owners.insert(g.name.clone(), Some(me.clone()));
            }
            self.routers.insert(g.name.clone(), router);
        }
        let changed: Vec<VipGroup> = cluster
            .vip_groups
            .iter()
            .filter(|g| {
                self.held.get(&g.name).is_some_and(|h| {
                    h.group.addresses != g.addresses || h.group.interface != g.interface
                })
            })
            .cloned()
            .collect();
        let held_addrs: BTreeSet<IpAddr> = self
            .held
            .values()
            .flat_map(|h| h.group.addresses.iter().map(|a| a.addr))
            .collect();
        // New targets on a held VIP stay unguarded: no previous holder served them.
        let (before, after) = (
            guard_targets(&self.cluster, &self.node),
            guard_targets(&cluster, &self.node),
        );
        let guard_ops = before
            .difference(&after)
            .map(|&t| guard::Op::Forget(t))
            .chain(
                after
                    .difference(&before)
                    .filter(|t| !held_addrs.contains(&t.addr))
                    .map(|&t| guard::Op::Always(t)),
            )
            .collect();
        self.guard.apply(guard_ops);
        self.specs = decide::group_specs(&cluster);
        self.digest = decide::config_digest(&cluster);
        self.cluster = cluster;
        self.health_view = HealthView::of(&self.cluster, &self.health);
        for group in changed {
            self.readdress(group).await;
        }
    }

    fn on_link(&mut self, name: &str, event: LinkEvent) {
        let up = matches!(event, LinkEvent::State(s) if s.is_up());
        if event == LinkEvent::Removed && !self.reopen.contains_key(name) {
            warn!(
                interface = name,
                "interface removed: its groups are released until it is back"
            );
            let at = self.now_ms() + ms(REOPEN_RETRY);
            self.reopen.insert(name.to_owned(), (at, 0));
        }
        let Some(uplink) = self.uplinks.get_mut(name) else {
            return;
        };
        if uplink.up == up {
            return;
        }
        info!(interface = name, up, "uplink state");
        uplink.up = up;
        if up {
            // While cut off, this node's view went stale (peers it lost gave it their
            // groups; they took its own): let gossip correct it before holding anything.
            // With no live peer left, wait as at start.
            let settle = if self.roster.has_live_peers() {
                ms(self.node.gossip_probe_period * 2)
            } else {
                self.settle_ms
            };
            let now = self.now_ms();
            self.settle_at_ms = self.settle_at_ms.max(now + settle);
            // Sync messages sent while the link was down never arrived.
            let caught_up = now + catch_up_ms(&self.cluster);
            if let Some(at) = &mut self.catch_up_at_ms {
                *at = (*at).max(caught_up);
            }
        }
    }

    /// Opens again the removed interfaces that are back (same name), and publishes the
    /// VRRP sources they come with (a new link-local on a new MAC).
    async fn reopen_uplinks(&mut self) {
        let now = self.now_ms();
        let due: Vec<String> = self
            .reopen
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let wanted = families(&self.node, &self.cluster);
        for name in due {
            let tries = self.reopen.get(&name).map_or(0, |(_, n)| n + 1);
            self.reopen
                .insert(name.clone(), (now + ms(REOPEN_RETRY), tries));
            let Some(fams) = wanted.get(&name) else {
                // No group uses it any more (reloaded meanwhile).
                self.reopen.remove(&name);
                continue;
            };
            let v4_source = (name == self.node.interface).then_some(self.node.address);
            let Ok(mut uplink) =
                Uplink::open(&self.addrs, &name, v4_source, fams, self.uplink_tx.clone()).await
            else {
                continue; // not back yet
            };
            let complete = fams.iter().all(|&v6| uplink.socket(v6).is_some());
            if !complete && tries < REOPEN_TRIES_FOR_SOURCES {
                continue; // its link-local is not there yet
            }
            info!(interface = %name, up = uplink.up, "interface back: opened again");
            self.reopen.remove(&name);
            // Down until its state is applied as a link event (settling as any link
            // coming back).
            uplink.up = false;
            let state = uplink.link.state;
            self.uplinks.insert(name.clone(), uplink);
            self.on_link(&name, LinkEvent::State(state));
            let sources = vrrp_sources(&self.uplinks);
            self.roster.learn_own(self.node.id.as_str(), &sources);
            if self.membership.set_vrrp_sources(sources).await.is_err() {
                debug!("vrrp sources: the membership task has stopped");
            }
        }
    }

    fn group(&self, name: &str) -> Option<&VipGroup> {
        self.cluster.vip_groups.iter().find(|g| g.name == name)
    }

    /// The router settings of `group` on this node; `None` when its link has no VRRP
    /// socket of the group's family.
    fn settings(&self, group: &VipGroup) -> Option<Settings> {
        let primary = self
            .uplinks
            .get(group.interface_or(&self.node.interface))?
            .socket(decide::is_v6(group))?
            .source();
        Some(Settings {
            version: decide::version(group.version),
            priority: group.priority_of(&self.node.id).get(),
            primary,
            preempt: group.preempt,
            advert_int: group.advert_int,
        })
    }

    async fn on_vrrp(&mut self, interface: &str, packet: Received) {
        let Some(&vrid) = packet.payload.get(1) else {
            *self.dropped.entry("length").or_default() += 1;
            return;
        };
        let node_interface = self.node.interface.clone();
        let Some(group) = self
            .cluster
            .vip_groups
            .iter()
            .find(|g| {
                g.vrrp_id == vrid
                    && g.interface_or(&node_interface) == interface
                    && decide::is_v6(g) == packet.src.is_ipv6()
            })
            .cloned()
        else {
            return; // another virtual router on the segment
        };
        let advert = match vrrp::decode(
            &packet.payload,
            packet.src,
            packet.dst,
            packet.ttl,
            &decide::auth(&group),
        ) {
            Ok(advert) => advert,
            Err(e) => {
                *self
                    .dropped
                    .entry(decide::drop_reason(&e.kind))
                    .or_default() += 1;
                debug!(error = %e, "dropped VRRP advert");
                return;
            }
        };
        let me = self.node.id.as_str();
        let agent = self.roster.agent_at(packet.src).map(str::to_owned);
        if agent.as_deref() == Some(me) {
            return; // our own, looped back
        }
        if let Err(reason) =
            decide::admit(&group, self.cluster.obey_of(&group), &advert, packet.src)
        {
            *self.dropped.entry(reason).or_default() += 1;
            debug!(group = %group.name, src = %packet.src, reason, "VRRP advert not obeyed");
            return;
        }
        self.metrics.adverts_received.inc();
        if let Some(node) = &agent {
            // Received by the kernel before the presumption (it waited in the socket
            // while this task was busy): it says nothing of the peer since, and a
            // crashed owner's last advert must neither bring it back into the
            // election nor make this node release the group to follow it.
            let age = SystemTime::now()
                .duration_since(packet.at)
                .unwrap_or_default();
            let received_ms = self.now_ms().saturating_sub(ms(age));
            if self
                .silences
                .presumed_since(node)
                .is_some_and(|since| received_ms <= since)
            {
                *self.dropped.entry("before_presumption").or_default() += 1;
                debug!(peer = %node, group = %group.name, "an advert received before its sender was presumed down: ignored");
                return;
            }
            if advert.priority > 0 && self.silences.refute(node) {
                info!(peer = %node, group = %group.name, "a peer presumed down on heartbeat silence still advertises");
            }
        }
        let now = self.now_ms();
        let before = self
            .routers
            .get(&group.name)
            .and_then(|r| r.heard(now).map(|h| h.src));
        self.step(
            &group.name,
            Input::Advert {
                src: packet.src,
                node: agent.as_deref(),
                advert: &advert,
            },
        )
        .await;
        let after = self
            .routers
            .get(&group.name)
            .and_then(|r| r.heard(now).map(|h| h.src));
        if after == Some(packet.src) && before != after {
            match &agent {
                Some(node) => {
                    debug!(group = %group.name, holder = %node, "following the agent's adverts");
                }
                None => info!(
                    group = %group.name, master = %packet.src, priority = advert.priority,
                    "non-agent VRRP master {} for {}, priority {}", packet.src, group.name, advert.priority
                ),
            }
        }
        if let (Some(node), Some(_)) = (&agent, after) {
            // The holder, learnt from its adverts: stickiness agrees across the cluster.
            self.owners.insert(group.name.clone(), Some(node.clone()));
        }
    }

    /// One input to one group's router, then its effects.
    async fn step(&mut self, name: &str, input: Input<'_>) {
        let now = self.now_ms();
        let Some(group) = self.group(name).cloned() else {
            return;
        };
        let Some(settings) = self.settings(&group) else {
            return;
        };
        let Some(router) = self.routers.get_mut(name) else {
            return;
        };
        match router.step(input, &settings, now) {
            Ok(effects) => self.perform(name, effects).await,
            Err(mismatch) => {
                *self.dropped.entry("mismatch").or_default() += 1;
                warn!(%mismatch, "VRRP advert of a differently configured router");
            }
        }
    }

    async fn perform(&mut self, name: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Acquire => {
                    if !self.acquire(name).await {
                        if let Some(router) = self.routers.get_mut(name) {
                            router.acquire_failed();
                        }
                        self.recheck_at_ms = Some(self.now_ms() + ms(ACQUIRE_RETRY));
                    }
                }
                Effect::Release { to } => self.release(name, to).await,
                Effect::Preempt => self.preempt(name).await,
                Effect::AdvertiseNow => {
                    if let Some(h) = self.held.get_mut(name) {
                        h.next_advert = Instant::now();
                    }
                }
                Effect::Announce => {
                    // Another master held the group a moment ago: neighbours may have
                    // opened connections through it that its sync has not brought here.
                    if let Some(h) = self.held.get(name) {
                        let ops = self.guard_taken(h.group.addresses.iter().map(|a| a.addr));
                        self.guard.apply_now(ops).await;
                    }
                    self.announce(name);
                }
            }
        }
    }

    /// The guard's `op` for every target on `addrs`.
    fn guard_ops(
        &self,
        addrs: impl IntoIterator<Item = IpAddr>,
        op: impl Fn(Target) -> guard::Op,
    ) -> Vec<guard::Op> {
        let addrs: BTreeSet<IpAddr> = addrs.into_iter().collect();
        guard_targets(&self.cluster, &self.node)
            .into_iter()
            .filter(|t| addrs.contains(&t.addr))
            .map(op)
            .collect()
    }

    /// The guard's ops for addresses just taken (or re-announced): their targets are
    /// guarded for the window from now.
    fn guard_taken(&self, addrs: impl IntoIterator<Item = IpAddr>) -> Vec<guard::Op> {
        let window = guard_window(&self.cluster);
        self.guard_ops(addrs, |t| guard::Op::For(t, window))
    }

    fn set_drain(&mut self, drain: bool) {
        if self.drained == drain {
            return;
        }
        self.drained = drain;
        if drain {
            info!("drained: handing every group to a ready undrained node");
        } else {
            info!("undrained: eligible for groups again");
            self.undrained_ms = self.now_ms();
        }
    }

    /// The longest a heartbeat-silence presumption lasts: SWIM's worst-case detection
    /// time for this cluster (10 s for 3 nodes at the default 1 s probe period).
    fn presumption_cap_ms(&self) -> u64 {
        let swim = swim_config(self.node.gossip_probe_period);
        let size = self.roster.live_count() + 1;
        ms(membership::failure_detection_bound(&swim, size))
    }

    /// Runs the election and gives every router its view.
    async fn reconcile(&mut self) {
        let now = self.now_ms();
        for peer in self.silences.expire(now, self.presumption_cap_ms()) {
            warn!(%peer, "heartbeat silence outlasted SWIM's detection bound with the peer still live: back in the election");
        }
        let settling = now < self.settle_at_ms;
        if !settling {
            self.settled
                .send_if_modified(|s| !std::mem::replace(s, true));
        }
        let links_up = self.uplinks.values().all(|u| u.up);
        // A node without groups (waiting for the cluster document) is never handed one.
        let ready = !settling
            && !self.cluster.vip_groups.is_empty()
            && self.catch_up_at_ms.is_some_and(|at| now >= at)
            && links_up
            && self.stand_back.is_none();
        match (ready, self.ready_since_ms) {
            (true, None) => self.ready_since_ms = Some(now),
            (false, Some(_)) => self.ready_since_ms = None,
            _ => {}
        }
        self.note_differing();
        self.prune_pins();
        let own = self.ready_since_ms.map(|since| Member {
            id: self.node.id.to_string(),
            drained: self.drained,
            eligible_since_ms: since.max(self.undrained_ms),
            pins: self.pins.clone(),
        });
        let mut members = self.roster.members(own, now, self.assume_ready_ms());
        members.retain(|m| !self.silences.is_presumed_down(&m.id));
        let current = self.current_owners();
        // With a peer configured differently, nobody preempts: each side keeps what it
        // holds, and only groups without an eligible owner move.
        let specs: Vec<GroupSpec> = if self.differing.is_empty() {
            self.specs.clone()
        } else {
            self.specs
                .iter()
                .cloned()
                .map(|mut s| {
                    s.preempt = false;
                    s
                })
                .collect()
        };
        let election = elect(&members, &specs, &current, now);
        let settled: BTreeMap<String, String> = election
            .owners
            .iter()
            .filter_map(|(g, o)| o.clone().map(|o| (g.clone(), o)))
            .collect();
        let heirs = heirs(&members, &specs, &settled);
        for (group, owner) in &election.owners {
            if self.owners.get(group) != Some(owner) {
                info!(group = %group, owner = owner.as_deref().unwrap_or("-"), "elected");
                self.ownership_event("owner", group, owner.as_deref().unwrap_or_default());
            }
        }
        self.owners = election.owners;
        self.recheck_at_ms = election.recheck_at_ms;

        // Readiness and drain reach the peers before any hand-over this election
        // causes (same channel, in order): a successor must not elect the node it is
        // handed a group by.
        self.publish_claims().await;
        let names: Vec<String> = self.routers.keys().cloned().collect();
        for name in names {
            if let Some(view) = self.view(&name, settling) {
                self.step(&name, Input::View(view)).await;
            }
        }
        self.update_heartbeats(&settled, &heirs).await;
        self.publish_claims().await;
        let lingering = self.master_until_ms.is_some_and(|t| now < t);
        self.owns_any.send_if_modified(|owns| {
            let now_owns = !self.held.is_empty() || lingering;
            std::mem::replace(owns, now_owns) != now_owns
        });
    }

    /// Group `name`'s view from the last election and the links.
    fn view(&self, name: &str, settling: bool) -> Option<View> {
        let group = self.group(name)?;
        let me = self.node.id.as_str();
        let owner = self.owners.get(name).cloned().flatten();
        let link_up = self
            .uplinks
            .get(group.interface_or(&self.node.interface))
            .is_some_and(|u| u.up);
        let successor = owner
            .clone()
            .filter(|o| *o != me && self.roster.gossip_addr(o).is_some());
        Some(View {
            elected_me: owner.as_deref() == Some(me) && self.stand_back.is_none(),
            link_up,
            settling,
            successor,
        })
    }

    /// A peer up this long counts as ready even if its published flag has not reached
    /// us: longer than the longest settle (10 probe periods with join peers).
    fn assume_ready_ms(&self) -> u64 {
        ms(self.node.gossip_probe_period * 12)
    }

    /// The election's present owners: the last election's, then the holders learnt
    /// from gossip claims, then this node's own holdings.
    fn current_owners(&self) -> BTreeMap<String, String> {
        let mut current: BTreeMap<String, String> = self
            .owners
            .iter()
            .filter_map(|(g, o)| o.clone().map(|o| (g.clone(), o)))
            .collect();
        for (id, claims) in self.roster.live_claims() {
            for g in &claims.held {
                current.insert(g.clone(), id.clone());
            }
        }
        for g in self.held.keys() {
            current.insert(g.clone(), self.node.id.to_string());
        }
        current
    }

    /// Logs live peers whose cluster config differs, once per change. A peer that is not
    /// ready and holds nothing (one waiting for the cluster document) is in no election
    /// and contends for nothing: it counts once it is ready, in the same reconcile that
    /// first elects it.
    fn note_differing(&mut self) {
        let differing: BTreeSet<String> = self
            .roster
            .live_claims()
            .filter(|(_, c)| c.config_digest != 0 && c.config_digest != self.digest)
            .filter(|(_, c)| c.ready || !c.held.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for peer in differing.difference(&self.differing) {
            warn!(%peer, "cluster config differs from this node's: no preemption until it matches");
        }
        for peer in self.differing.difference(&differing) {
            info!(%peer, "cluster config matches again");
        }
        self.differing = differing;
    }

    async fn publish_claims(&mut self) {
        let claims = Claims {
            ready: self.ready_since_ms.is_some(),
            drain: self.drained,
            config_digest: self.digest,
            held: self.held.keys().cloned().collect(),
            health: self.health_view.clone(),
            document: self.document.clone(),
            pins: self.pins.clone(),
            sync: self.sync,
        };
        if claims != self.claims {
            if self.membership.set_claims(claims.clone()).await.is_err() {
                debug!("claims: the membership task has stopped");
            }
            self.claims = claims;
        }
    }

    /// Beacon to the heirs of the groups held here; listen to the owners of the groups
    /// this node is heir of, and to peers presumed down (to hear them come back).
    async fn update_heartbeats(
        &mut self,
        owners: &BTreeMap<String, String>,
        heirs: &BTreeMap<String, String>,
    ) {
        let me = self.node.id.as_str();
        let send_to = self
            .held
            .keys()
            .filter_map(|g| heirs.get(g))
            .filter_map(|heir| self.roster.gossip_addr(heir))
            .collect();
        let expect_from = heirs
            .iter()
            .filter(|(_, heir)| *heir == me)
            .filter_map(|(g, _)| owners.get(g).cloned())
            .filter(|owner| owner != me)
            .chain(self.silences.presumed_down().cloned())
            .collect();
        let wanted = (send_to, expect_from);
        if wanted != self.heartbeats {
            if self
                .membership
                .set_heartbeats(wanted.0.clone(), wanted.1.clone())
                .await
                .is_err()
            {
                debug!("heartbeats: the membership task has stopped");
            }
            self.heartbeats = wanted;
        }
    }

    /// Planned stop: every held group goes to its heir (the election without this
    /// node) with a hand-over, then the gossip is left.
    async fn shutdown(&mut self) {
        // Not ready from now on, said before any hand-over (same channel, in order): the
        // heirs' elections no longer count this node.
        self.ready_since_ms = None;
        self.publish_claims().await;
        let others: Vec<_> = self
            .roster
            .members(None, self.now_ms(), self.assume_ready_ms())
            .into_iter()
            .filter(|m| !self.silences.is_presumed_down(&m.id))
            .collect();
        let election = elect(&others, &self.specs, &self.current_owners(), self.now_ms());
        let names: Vec<String> = self.routers.keys().cloned().collect();
        for name in names {
            let heir = election.owners.get(&name).cloned().flatten();
            self.step(&name, Input::Shutdown { heir }).await;
        }
        self.owns_any.send_replace(false);
        self.guard.teardown().await;
        if self.membership.leave().await.is_err() {
            debug!("membership already stopped");
        }
    }
}

fn announce_settings(g: &VipGroup) -> AnnounceSettings {
    AnnounceSettings {
        repeat: g.garp_master_repeat,
        delay: g.garp_master_delay,
        garp_interval: g.garp_interval,
        gna_interval: g.gna_interval,
        refresh: (!g.garp_master_refresh.is_zero()).then_some(g.garp_master_refresh),
        refresh_repeat: g.garp_master_refresh_repeat,
    }
}
