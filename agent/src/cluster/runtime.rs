//! The cluster event loop: one task owning this node's cluster state. Each wake-up
//! (membership event, VRRP packet, link change, command, timer) updates the state, then
//! `reconcile` elects, works out the groups to hold with `decide`, and makes the
//! interface match.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lvs_proto::v1::{GroupStatus, MemberStatus, StatusReply};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::decide::{self, Action, Blockers, ForeignOutcome};
use super::roster::Roster;
use super::silence::Silences;
use super::uplink::{Uplink, UplinkEvent};
use crate::config::{ClusterConfig, NodeConfig, VipGroup};
use crate::membership::{
    self, ClusterKey, KeyRing, MembershipConfig, MembershipEvent, MembershipHandle,
};
use crate::ownership::{elect, heirs, GroupSpec};
use crate::vip::addr::{AddrControl, LinkEvent, Vip};
use crate::vip::announce::AnnounceSettings;
use crate::vip::vrrp_socket::Received;
use crate::vrrp;

pub(super) enum Command {
    Join(Vec<SocketAddr>, oneshot::Sender<()>),
    Status(oneshot::Sender<StatusReply>),
    Reload(Box<ClusterConfig>),
    /// Release every group (addresses off, priority-0 adverts), leave the gossip.
    Shutdown(oneshot::Sender<()>),
}

/// A non-agent VRRP master of one group.
#[derive(Clone, Debug)]
struct Foreign {
    addr: IpAddr,
    until_ms: u64,
}

pub(super) struct Runtime {
    node: NodeConfig,
    cluster: ClusterConfig,
    specs: Vec<GroupSpec>,
    membership: MembershipHandle,
    addrs: AddrControl,
    uplinks: BTreeMap<String, Uplink>,
    roster: Roster,
    start: Instant,
    /// Until then (ms since start) nothing is acquired; see `Blockers::settling`.
    settle_at_ms: u64,
    /// How long to settle with no peer heard (0 without join peers): at start, and
    /// when the uplink comes back with every peer lost behind it.
    settle_ms: u64,
    owners: BTreeMap<String, Option<String>>,
    recheck_at_ms: Option<u64>,
    foreign: BTreeMap<String, Foreign>,
    held: BTreeSet<String>,
    announcing: BTreeMap<String, JoinHandle<()>>,
    next_advert: BTreeMap<String, Instant>,
    dropped: BTreeMap<&'static str, u64>,
    owns_any: watch::Sender<bool>,
    /// Owners presumed down on heartbeat silence.
    silences: Silences,
    /// Heartbeat targets and sources last given to the membership.
    heartbeats: (BTreeSet<SocketAddr>, BTreeSet<String>),
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

fn keyring(node: &NodeConfig) -> anyhow::Result<KeyRing> {
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

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The address families (true = IPv6) of the groups on each VIP interface.
fn families(node: &NodeConfig, cluster: &ClusterConfig) -> BTreeMap<String, BTreeSet<bool>> {
    let mut families: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    for g in &cluster.vip_groups {
        let v6 = g.addresses.first().is_some_and(|a| a.addr.is_ipv6());
        families
            .entry(g.interface_or(&node.interface).to_owned())
            .or_default()
            .insert(v6);
    }
    families
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
    pub(super) async fn start(
        node: NodeConfig,
        cluster: ClusterConfig,
        owns_any: watch::Sender<bool>,
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
        let vrrp_sources: Vec<IpAddr> = uplinks
            .values()
            .flat_map(|u| [&u.v4, &u.v6])
            .flatten()
            .map(|socket| socket.source())
            .collect();
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
        let mut runtime = Runtime {
            roster: Roster::new(own, seeds.iter().map(SocketAddr::ip)),
            specs: decide::group_specs(&cluster),
            settle_at_ms: settle_ms,
            settle_ms,
            node,
            cluster,
            membership,
            addrs,
            uplinks,
            start: Instant::now(),
            owners: BTreeMap::new(),
            recheck_at_ms: None,
            foreign: BTreeMap::new(),
            held: BTreeSet::new(),
            announcing: BTreeMap::new(),
            next_advert: BTreeMap::new(),
            dropped: BTreeMap::new(),
            owns_any,
            silences: Silences::default(),
            heartbeats: Default::default(),
        };
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
        self.reconcile().await;
        loop {
            let wake = self.next_wake();
            tokio::select! {
                Some(event) = members.recv() => self.on_membership(event),
                Ok(()) = silent.changed() => {
                    let now_silent = silent.borrow_and_update().clone();
                    self.on_silence(&now_silent);
                }
                Some(event) = uplink_events.recv() => match event {
                    UplinkEvent::Link(name, event) => self.on_link(&name, event).await,
                    UplinkEvent::Vrrp(name, packet) => self.on_vrrp(&name, packet).await,
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
                    Some(Command::Reload(cluster)) => self.reload(*cluster),
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
            self.reconcile().await;
            self.send_due_adverts().await;
        }
    }

    fn next_wake(&self) -> Instant {
        let now_ms = self.now_ms();
        let timers_ms = [
            self.recheck_at_ms,
            (self.settle_at_ms > now_ms).then_some(self.settle_at_ms),
        ]
        .into_iter()
        .flatten()
        .chain(self.foreign.values().map(|f| f.until_ms))
        .map(|t| self.at(t));
        timers_ms
            .chain(self.next_advert.values().copied())
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn on_membership(&mut self, event: MembershipEvent) {
        let now = self.now_ms();
        if matches!(event, MembershipEvent::MemberUp(_)) {
            // Peers answered: the rest of the view follows within a couple of probes.
            let soon = now + ms(self.node.gossip_probe_period * 2);
            self.settle_at_ms = self.settle_at_ms.min(soon);
        }
        if let MembershipEvent::MemberUp(m) | MembershipEvent::MemberDown(m) = &event {
            if self.silences.refute(&m.node_id) {
                info!(peer = %m.node_id, "SWIM settled a peer presumed down on heartbeat silence");
            }
        }
        self.roster.apply(&event, now);
        // Adverts heard before gossip named their sender (an IPv6 link-local) were
        // taken for a foreign router's: an agent's never hold a group back.
        let roster = &self.roster;
        self.foreign.retain(|name, f| {
            let foreign = !roster.is_agent(f.addr);
            if !foreign {
                debug!(group = %name, master = %f.addr, "the VRRP master is an agent");
            }
            foreign
        });
    }

    fn on_silence(&mut self, silent: &BTreeSet<String>) {
        let roster = &self.roster;
        for peer in self
            .silences
            .update(silent, &self.heartbeats.1, |p| roster.is_live(p))
        {
            warn!(%peer, "heartbeat silence: presuming the owner down, taking the groups this node is heir of");
        }
    }

    fn reload(&mut self, cluster: ClusterConfig) {
        // Sockets are opened, and their sources published, at start only.
        let unopened = families(&self.node, &cluster)
            .into_iter()
            .find(|(name, f)| {
                !self
                    .uplinks
                    .get(name)
                    .is_some_and(|u| f.is_subset(&u.families))
            });
        if let Some((name, _)) = unopened {
            warn!(
                interface = name,
                "config reload: a new VIP interface or address family needs a restart; reload ignored"
            );
            return;
        }
        info!("cluster config reloaded");
        self.specs = decide::group_specs(&cluster);
        self.cluster = cluster;
    }

    async fn on_link(&mut self, name: &str, event: LinkEvent) {
        let up = matches!(event, LinkEvent::State(s) if s.is_up());
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
        }
    }

    fn group(&self, name: &str) -> Option<&VipGroup> {
        self.cluster.vip_groups.iter().find(|g| g.name == name)
    }

    fn priority(&self, group: &VipGroup) -> u8 {
        group.priority_of(&self.node.id).get()
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
                    && g.addresses
                        .first()
                        .is_some_and(|a| a.addr.is_ipv6() == packet.src.is_ipv6())
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
        if self.roster.is_agent(packet.src) {
            self.on_agent_advert(&group, &advert, packet.src);
            return;
        }
        let holding = self.held.contains(&group.name);
        let Some(primary) = self
            .uplinks
            .get(interface)
            .and_then(|u| u.socket(packet.src.is_ipv6()))
            .map(|s| s.source())
        else {
            return;
        };
        let local = decide::local_router(&group, self.priority(&group), primary, holding);
        match decide::on_foreign_advert(&local, &advert, packet.src, self.now_ms()) {
            Ok(ForeignOutcome::MasterUntil(until_ms)) => {
                if !self.foreign.contains_key(&group.name) {
                    info!(group = %group.name, master = %packet.src, priority = advert.priority, "a non-agent VRRP router is master");
                }
                self.foreign.insert(
                    group.name.clone(),
                    Foreign {
                        addr: packet.src,
                        until_ms,
                    },
                );
            }
            Ok(ForeignOutcome::AdvertiseNow) => {
                self.next_advert.insert(group.name.clone(), Instant::now());
            }
            Ok(ForeignOutcome::Ignore) => {}
            Err(mismatch) => {
                *self.dropped.entry("mismatch").or_default() += 1;
                warn!(%mismatch, "VRRP advert of a differently configured router");
            }
        }
    }

    /// Agents' adverts never override the election, but they tell who holds a group:
    /// after a partition heals, two holders settle on the one the election ranks first,
    /// and everyone else learns the holder so that stickiness agrees across the cluster.
    fn on_agent_advert(&mut self, group: &VipGroup, advert: &vrrp::Advert, src: IpAddr) {
        let Some(sender) = self.roster.live_at(src).map(str::to_owned) else {
            return; // not (yet) a live member here: gossip decides once it is
        };
        if advert.priority == 0 {
            return;
        }
        if self.silences.refute(&sender) {
            info!(peer = %sender, group = %group.name, "a peer presumed down on heartbeat silence still advertises: back in the election");
        }
        let Some(spec) = self.specs.iter().find(|s| s.name == group.name) else {
            return;
        };
        let me = self.node.id.as_str();
        let claimant = if self.held.contains(&group.name) {
            decide::claim_winner(spec, me, &sender).to_owned()
        } else {
            sender
        };
        let owner = self.owners.entry(group.name.clone()).or_default();
        if owner.as_deref() != Some(claimant.as_str()) {
            debug!(group = %group.name, holder = %claimant, "learnt the holder from its adverts");
            *owner = Some(claimant);
        }
    }

    async fn reconcile(&mut self) {
        let now = self.now_ms();
        self.foreign.retain(|name, f| {
            let active = f.until_ms > now;
            if !active {
                info!(group = %name, master = %f.addr, "the non-agent VRRP master is gone");
            }
            active
        });
        let own_since = self.settle_at_ms;
        let mut members = self.roster.members(self.node.id.as_str(), own_since);
        members.retain(|m| !self.silences.is_presumed_down(&m.id));
        let current: BTreeMap<String, String> = self
            .owners
            .iter()
            .filter_map(|(g, o)| o.clone().map(|o| (g.clone(), o)))
            .collect();
        let election = elect(&members, &self.specs, &current, now);
        let settled: BTreeMap<String, String> = election
            .owners
            .iter()
            .filter_map(|(g, o)| o.clone().map(|o| (g.clone(), o)))
            .collect();
        let heirs = heirs(&members, &self.specs, &settled);
        for (group, owner) in &election.owners {
            if self.owners.get(group) != Some(owner) {
                info!(group = %group, owner = owner.as_deref().unwrap_or("-"), "elected");
            }
        }
        self.owners = election.owners;
        self.recheck_at_ms = election.recheck_at_ms;

        let me = self.node.id.as_str();
        let wanted: BTreeSet<String> = self
            .cluster
            .vip_groups
            .iter()
            .filter(|g| {
                let elected_me = self.owners.get(&g.name).cloned().flatten().as_deref() == Some(me);
                let link_up = self
                    .uplinks
                    .get(g.interface_or(&self.node.interface))
                    .is_some_and(|u| u.up);
                let blockers = Blockers {
                    settling: now < self.settle_at_ms,
                    link_down: !link_up,
                    foreign_master: self.foreign.contains_key(&g.name),
                };
                decide::should_hold(elected_me, blockers)
            })
            .map(|g| g.name.clone())
            .collect();
        for action in decide::transitions(&self.held, &wanted) {
            match action {
                Action::Release(name) => self.release(&name).await,
                Action::Acquire(name) => self.acquire(&name).await,
            }
        }
        self.update_heartbeats(&settled, &heirs).await;
        self.owns_any.send_if_modified(|owns| {
            let now_owns = !self.held.is_empty();
            std::mem::replace(owns, now_owns) != now_owns
        });
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
            .iter()
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

    async fn acquire(&mut self, name: &str) {
        let Some(group) = self.group(name).cloned() else {
            return;
        };
        let Some(uplink) = self.uplinks.get(group.interface_or(&self.node.interface)) else {
            return;
        };
        for a in &group.addresses {
            let vip = Vip {
                addr: a.addr,
                prefix_len: a.prefix_len,
                label: None,
            };
            if let Err(e) = self.addrs.add(&uplink.link, &vip).await {
                warn!(group = name, error = %e, "adding a VIP");
            }
        }
        let announcer = Arc::clone(&uplink.announcer);
        let vips: Vec<IpAddr> = group.addresses.iter().map(|a| a.addr).collect();
        let settings = announce_settings(&group);
        let task = tokio::spawn(async move {
            if let Err(e) = announcer.run(&vips, &settings).await {
                warn!(error = %e, "announcing VIPs");
            }
        });
        info!(group = name, "acquired: VIPs added, announcing");
        self.announcing.insert(name.to_owned(), task);
        self.next_advert.insert(name.to_owned(), Instant::now());
        self.held.insert(name.to_owned());
    }

    /// Addresses first, so traffic stops here before anyone else is told to take it.
    async fn release(&mut self, name: &str) {
        self.held.remove(name);
        self.next_advert.remove(name);
        if let Some(task) = self.announcing.remove(name) {
            task.abort();
        }
        let Some(group) = self.group(name).cloned() else {
            return;
        };
        let Some(uplink) = self.uplinks.get(group.interface_or(&self.node.interface)) else {
            return;
        };
        for a in &group.addresses {
            if let Err(e) = self.addrs.remove(&uplink.link, a.addr).await {
                warn!(group = name, error = %e, "removing a VIP");
            }
        }
        if uplink.up {
            self.send_advert(&group, 0).await;
        }
        info!(group = name, "released: VIPs removed");
    }

    async fn send_due_adverts(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .next_advert
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(g, _)| g.clone())
            .collect();
        for name in due {
            let Some(group) = self.group(&name).cloned() else {
                continue;
            };
            self.send_advert(&group, self.priority(&group)).await;
            self.next_advert.insert(name, now + group.advert_int);
        }
    }

    async fn send_advert(&self, group: &VipGroup, priority: u8) {
        let v6 = group.addresses.first().is_some_and(|a| a.addr.is_ipv6());
        let Some(socket) = self
            .uplinks
            .get(group.interface_or(&self.node.interface))
            .and_then(|u| u.socket(v6))
        else {
            return;
        };
        let advert = decide::advert(group, priority);
        let sent = vrrp::encode(&advert, socket.source(), socket.group())
            .map_err(anyhow::Error::from)
            .map(|bytes| async move { socket.send(&bytes, socket.group()).await });
        let result = match sent {
            Ok(send) => send.await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(group = %group.name, error = %e, "sending a VRRP advert");
        }
    }

    async fn shutdown(&mut self) {
        let held: Vec<String> = self.held.iter().cloned().collect();
        for name in held {
            self.release(&name).await;
        }
        self.owns_any.send_replace(false);
        if self.membership.leave().await.is_err() {
            debug!("membership already stopped");
        }
    }

    async fn status(&self) -> StatusReply {
        let members = match self.membership.members().await {
            Ok(members) => members
                .into_iter()
                .map(|m| MemberStatus {
                    live: m.is_live(),
                    node_id: m.node_id,
                    addr: m.addr.to_string(),
                    drain: m.drain,
                    local: m.local,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let groups = self
            .cluster
            .vip_groups
            .iter()
            .map(|g| GroupStatus {
                name: g.name.clone(),
                owner: self
                    .owners
                    .get(&g.name)
                    .cloned()
                    .flatten()
                    .unwrap_or_default(),
                held: self.held.contains(&g.name),
                foreign_master: self
                    .foreign
                    .get(&g.name)
                    .map(|f| f.addr.to_string())
                    .unwrap_or_default(),
            })
            .collect();
        StatusReply {
            node_id: self.node.id.to_string(),
            members,
            groups,
            vrrp_dropped: self
                .dropped
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
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
