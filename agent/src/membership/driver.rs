//! The one task that owns the foca instance, following foca's runtime rules:
//! every foca call happens here, the effects it accumulates are drained right
//! after each call, and timers come back in deadline order.

use std::{
    cmp::Reverse,
    collections::{binary_heap::PeekMut, BTreeSet, BinaryHeap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, Timer};
use lvs_proto::v1::{GossipHandover, GossipHeartbeat};
use rand::rngs::StdRng;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, error, info, warn};

use super::{
    claims::ClaimsState,
    codec::{peek_sender, ProtoCodec},
    conflict::{Conflict, ConflictDetector},
    counters::Counters,
    events::{diff, LiveSet, MemberInfo, MemberState, MembershipEvent},
    heartbeat::{self, Heard, Heartbeats, Message},
    identity::NodeIdentity,
    keyring::{KeyRing, OpenError, Sealer},
    replay::ReplayGuard,
    Claims,
};

/// Larger than any datagram we accept, so an oversized one is seen whole and
/// rejected rather than silently truncated.
const RECV_BUF: usize = 64 * 1024;

pub(super) enum Command {
    Join(Vec<SocketAddr>),
    SetVrrpSources(Vec<IpAddr>, oneshot::Sender<()>),
    /// Seal with, and accept, this ring from now on.
    SetKeys(KeyRing),
    /// Publish readiness, the cluster config digest and the held groups (`claims`).
    SetClaims(Claims),
    /// Hand `group` to node `to_id` at `to`.
    Handover {
        to: SocketAddr,
        to_id: String,
        group: String,
    },
    Members(oneshot::Sender<Vec<MemberInfo>>),
    /// Beacon to these heirs; listen to these owners.
    SetHeartbeats {
        send_to: BTreeSet<SocketAddr>,
        expect_from: BTreeSet<String>,
    },
    Leave(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

type Swim = Foca<NodeIdentity, ProtoCodec, StdRng, NoCustomBroadcast>;

pub(super) struct Driver {
    pub(super) foca: Swim,
    /// The config `foca` runs with (foca has no getter), re-sized as the
    /// cluster grows: see `dissemination_for`.
    pub(super) swim: foca::Config,
    pub(super) runtime: AccumulatingRuntime<NodeIdentity>,
    /// foca's timers by deadline; equal deadlines in foca's own `Timer` order.
    pub(super) timers: BinaryHeap<Reverse<(Instant, Timer<NodeIdentity>)>>,
    pub(super) socket: UdpSocket,
    /// Seals every datagram sent (numbering them for the peers' replay windows)
    /// and opens every datagram received.
    pub(super) keys: Sealer,
    /// Per-sender anti-replay windows, checked after authentication.
    pub(super) replay: ReplayGuard,
    /// Addresses announced to at start, by `join`, and again while we have
    /// no live peer (a node may start before its seeds).
    pub(super) seeds: Vec<SocketAddr>,
    pub(super) join_retry: Duration,
    pub(super) counters: Arc<Counters>,
    pub(super) events: mpsc::Sender<MembershipEvent>,
    pub(super) live: LiveSet,
    pub(super) conflicts: ConflictDetector,
    pub(super) heartbeats: Heartbeats,
    /// Watched peers gone silent, as last published to handles.
    pub(super) silent: watch::Sender<BTreeSet<String>>,
    /// This node's election claims and the newest heard from each peer.
    pub(super) claims: ClaimsState,
    /// Events were dropped: a snapshot is owed to the receiver.
    pub(super) resync_pending: bool,
}

/// One wake-up of the task.
enum Step {
    Command(Option<Command>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Timers,
    RetryJoin,
    Heartbeat,
    Claims,
}

impl Driver {
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0; RECV_BUF];
        let mut retry = tokio::time::interval(self.join_retry);
        retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Lateness counts from the later of a wake's due time and the last check, so a
        // stall is credited once, not again at every turn that drains the backlog it
        // left: in the TCG lab one 1.2 s stall was credited six times in a row, which
        // put off this node's own presumption of a silent owner by about 8 s.
        let mut checked = Instant::now();
        let finished = loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let next_heartbeat = self.heartbeats.next_wake(Instant::now());
            let due = [next_timer, next_heartbeat, Some(self.claims.next_wake())]
                .into_iter()
                .flatten()
                .min();
            let step = tokio::select! {
                command = commands.recv() => Step::Command(command),
                received = self.socket.recv_from(&mut buf) => Step::Datagram(received),
                () = sleep_until(next_timer) => Step::Timers,
                _ = retry.tick() => Step::RetryJoin,
                () = sleep_until(next_heartbeat) => Step::Heartbeat,
                () = tokio::time::sleep_until(self.claims.next_wake()) => Step::Claims,
            };
            let now = Instant::now();
            if let Some(due) = due {
                let late = now.saturating_duration_since(due.max(checked));
                if self.heartbeats.stalled(now, late) {
                    warn!(
                        stalled_ms = late.as_millis(),
                        "this node stalled longer than heartbeat_timeout: its heirs may hold its groups beside it until they hear its next advert"
                    );
                }
            }
            checked = now;
            match step {
                Step::Command(None) => break None,
                Step::Command(Some(Command::Stop(reply))) => break Some(reply),
                Step::Command(Some(Command::Leave(reply))) => {
                    if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
                        warn!(error = %e, "leaving the gossip cluster");
                    }
                    self.flush().await;
                    info!("left the gossip cluster");
                    break Some(reply);
                }
                Step::Command(Some(Command::Join(peers))) => self.join(peers),
                Step::Command(Some(Command::SetVrrpSources(sources, reply))) => {
                    self.set_vrrp_sources(sources);
                    let _ = reply.send(());
                }
                Step::Command(Some(Command::SetKeys(keys))) => {
                    info!(
                        primary = format!("{:08x}", keys.primary_id()),
                        "cluster key ring replaced"
                    );
                    self.keys.set_ring(keys);
                }
                Step::Command(Some(Command::SetClaims(claims))) => {
                    self.claims.set(&claims, Instant::now());
                    self.send_claims().await;
                }
                Step::Command(Some(Command::Handover { to, to_id, group })) => {
                    self.send_handover(to, to_id, group).await;
                }
                Step::Command(Some(Command::Members(reply))) => {
                    let _ = reply.send(self.members());
                }
                Step::Command(Some(Command::SetHeartbeats {
                    send_to,
                    expect_from,
                })) => {
                    self.heartbeats.set_targets(&send_to, Instant::now());
                    self.heartbeats.watch(&expect_from);
                    self.send_heartbeats().await;
                }
                Step::Datagram(Ok((len, from))) => self.receive(&buf[..len], from),
                Step::Datagram(Err(e)) => warn!(error = %e, "gossip socket receive"),
                Step::Timers => self.fire_due_timers(),
                Step::RetryJoin => {
                    if self.foca.num_members() == 0 {
                        self.announce_to_seeds();
                    }
                }
                Step::Heartbeat => self.send_heartbeats().await,
                Step::Claims => self.send_claims().await,
            }
            self.flush().await;
            self.publish_silence();
            self.resync();
        };
        // Close the socket before confirming, so a caller may rebind the port.
        drop(self);
        if let Some(reply) = finished {
            let _ = reply.send(());
        }
    }

    fn join(&mut self, peers: Vec<SocketAddr>) {
        for peer in peers {
            if !self.seeds.contains(&peer) {
                self.seeds.push(peer);
            }
        }
        self.announce_to_seeds();
    }

    fn members(&self) -> Vec<MemberInfo> {
        let local = MemberInfo::new(self.foca.identity(), MemberState::Alive, true);
        let others = self
            .foca
            .iter_membership_state()
            .map(|m| MemberInfo::new(m.id(), m.state().into(), false));
        std::iter::once(local).chain(others).collect()
    }

    fn set_vrrp_sources(&mut self, sources: Vec<IpAddr>) {
        let current = self.foca.identity();
        if current.meta.vrrp_sources == sources {
            return;
        }
        let mut next = current.clone();
        next.meta.vrrp_sources = sources;
        next.revision = next.revision.wrapping_add(1);
        info!(vrrp_sources = ?next.meta.vrrp_sources, revision = next.revision, "publishing new metadata");
        if let Err(e) = self.foca.change_identity(next, &mut self.runtime) {
            warn!(error = %e, "changing gossip identity");
        }
    }

    /// One heartbeat-channel message to `to`, sealed.
    async fn send_message(&mut self, message: &Message, to: SocketAddr) -> bool {
        // Sealed per datagram: every one needs a fresh nonce and counter.
        match self
            .socket
            .send_to(&self.keys.seal(&heartbeat::encode(message)), to)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                self.counters.send_error();
                debug!(%to, error = %e, "heartbeat channel send");
                false
            }
        }
    }

    /// This node's claims, when due, to every live member.
    async fn send_claims(&mut self) {
        let Some(claims) = self.claims.due(Instant::now()) else {
            return;
        };
        let message = Message::Claims(claims);
        let targets: Vec<SocketAddr> = self.live.keys().copied().collect();
        for to in targets {
            self.send_message(&message, to).await;
        }
    }

    async fn send_handover(&mut self, to: SocketAddr, to_id: String, group: String) {
        let id = self.foca.identity();
        let message = Message::Handover(GossipHandover {
            node_id: id.node_id.clone(),
            incarnation: id.incarnation,
            group,
            to: to_id,
        });
        if !self.send_message(&message, to).await {
            warn!(%to, "sending a hand-over failed");
        }
    }

    fn announce_to_seeds(&mut self) {
        let local = self.foca.identity().addr;
        for &seed in self.seeds.iter().filter(|&&s| s != local) {
            if let Err(e) = self
                .foca
                .announce(NodeIdentity::placeholder(seed), &mut self.runtime)
            {
                warn!(%seed, error = %e, "announcing to gossip seed");
            }
        }
    }

    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        self.counters.received();
        let plaintext = match self.keys.open(datagram) {
            Ok(opened) => {
                let o = &opened.origin;
                if let Err(replay) =
                    self.replay
                        .check(&o.sender, o.epoch, o.counter, Instant::now())
                {
                    self.counters.dropped(OpenError::Replayed);
                    debug!(%from, sender = %o.sender, epoch = o.epoch, counter = o.counter,
                        ?replay, "dropped replayed gossip datagram");
                    return;
                }
                opened.plaintext
            }
            Err(reason) => {
                self.counters.dropped(reason);
                debug!(%from, %reason, "dropped gossip datagram");
                return;
            }
        };
        match heartbeat::decode(&plaintext) {
            None => {}
            Some(Ok(Message::Beacon(beacon))) => {
                let heard = self.heartbeats.receive(&beacon, Instant::now());
                self.counters.heartbeat_received(heard == Heard::Fresh);
                return;
            }
            Some(Ok(Message::Claims(c))) => {
                if let Some(claims) = self.claims.receive(c) {
                    debug!(?claims, "claims");
                    self.emit(MembershipEvent::Claims(claims));
                }
                return;
            }
            Some(Ok(Message::Handover(h))) => {
                if h.to == self.foca.identity().node_id {
                    info!(from = %h.node_id, group = %h.group, "handed a VIP group");
                    self.emit(MembershipEvent::Handover {
                        from: h.node_id,
                        group: h.group,
                    });
                }
                return;
            }
            Some(Err(e)) => {
                self.counters.bad_payload();
                debug!(%from, error = %e, "dropped heartbeat");
                return;
            }
        }
        if let Some(conflict) =
            peek_sender(&plaintext).and_then(|src| self.conflicts.observe_sender(&src))
        {
            self.report(conflict);
        }
        if let Err(e) = self.foca.handle_data(&plaintext, &mut self.runtime) {
            self.counters.bad_payload();
            debug!(%from, error = %e, "dropped gossip packet");
        }
    }

    async fn send_heartbeats(&mut self) {
        let Some(due) = self.heartbeats.due(Instant::now()) else {
            return;
        };
        let released = Message::Beacon(GossipHeartbeat {
            released: true,
            ..due.beacon.clone()
        });
        let heir = Message::Beacon(due.beacon);
        let sends = (due.heirs.into_iter().map(|to| (to, &heir)))
            .chain(due.released.into_iter().map(|to| (to, &released)));
        for (to, message) in sends {
            if self.send_message(message, to).await {
                self.counters.heartbeat_sent();
            }
        }
    }

    fn publish_silence(&mut self) {
        let silent = self.heartbeats.silent(Instant::now());
        self.silent.send_if_modified(|published| {
            if *published == silent {
                return false;
            }
            for peer in silent.difference(published) {
                warn!(%peer, "heartbeats: peer silent");
            }
            for peer in published.difference(&silent) {
                info!(%peer, "heartbeats: peer heard again or no longer watched");
            }
            *published = silent;
            true
        });
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(top) = self.timers.peek_mut() {
            if top.0 .0 > now {
                break;
            }
            let Reverse((_, timer)) = PeekMut::pop(top);
            if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                warn!(error = %e, "gossip timer");
            }
        }
    }

    /// Drains what the last foca calls produced: notifications, timers, packets.
    async fn flush(&mut self) {
        let mut membership_changed = false;
        while let Some(notification) = self.runtime.to_notify() {
            membership_changed |= log_notification(notification);
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push(Reverse((now + after, timer)));
        }
        while let Some((to, packet)) = self.runtime.to_send() {
            let datagram = self.keys.seal(&packet);
            match self.socket.send_to(&datagram, to.addr).await {
                Ok(_) => self.counters.sent(),
                Err(e) => {
                    self.counters.send_error();
                    debug!(to = %to.addr, error = %e, "gossip send");
                }
            }
        }
        if membership_changed {
            self.publish_changes();
        }
    }

    fn publish_changes(&mut self) {
        let live: LiveSet = self
            .foca
            .iter_members()
            .map(|m| (m.id().addr, m.clone()))
            .collect();
        for event in diff(&self.live, &live) {
            info!(%event, "membership");
            match &event {
                // A new member hears this node's claims at once.
                MembershipEvent::MemberUp(_) => self.claims.send_soon(Instant::now()),
                // Should it come back, its claims count only once heard again.
                MembershipEvent::MemberDown(m) => self.claims.forget(&m.node_id, m.incarnation),
                _ => {}
            }
            self.emit(event);
        }
        self.live = live;
        if let Some(swim) = super::dissemination_for(&self.swim, self.live.len() + 1) {
            info!(
                max_transmissions = swim.max_transmissions.get(),
                "gossip: more relays for a larger cluster"
            );
            match self.foca.set_config(swim.clone()) {
                Ok(()) => self.swim = swim,
                Err(e) => warn!(error = %e, "re-sizing gossip dissemination"),
            }
        }
        let local = self.foca.identity();
        let ids = self.live.values().map(|m| m.id()).chain([local]);
        for conflict in self.conflicts.check_syncids(ids) {
            self.report(conflict);
        }
    }

    fn report(&mut self, conflict: Conflict) {
        error!(?conflict, "membership conflict: fix the node configuration");
        self.counters.conflict();
        self.emit(MembershipEvent::Conflict(conflict));
    }

    fn emit(&mut self, event: MembershipEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            // Never stall gossip on a slow consumer: it gets a snapshot once there is
            // room (`resync`).
            self.counters.event_dropped();
            self.resync_pending = true;
            warn!(
                ?event,
                "membership event receiver full, event dropped; a snapshot follows"
            );
        }
    }

    /// After dropped events: the whole view (live members, newest claims) as one event,
    /// as soon as the receiver has room.
    fn resync(&mut self) {
        if !self.resync_pending {
            return;
        }
        let members = self
            .live
            .values()
            .map(|m| MemberInfo::new(m.id(), m.state().into(), false))
            .collect();
        let snapshot = MembershipEvent::Resync {
            members,
            claims: self.claims.heard(),
        };
        if self.events.try_send(snapshot).is_ok() {
            info!("membership snapshot sent after dropped events");
            self.resync_pending = false;
        }
    }
}

/// Logs foca's own state changes; true when the member set may have changed.
fn log_notification(notification: OwnedNotification<NodeIdentity>) -> bool {
    match notification {
        OwnedNotification::MemberUp(_)
        | OwnedNotification::MemberDown(_)
        | OwnedNotification::Rename(..) => true,
        OwnedNotification::Active => {
            info!("gossip: known to the cluster");
            false
        }
        OwnedNotification::Idle => {
            warn!("gossip: no live peer");
            false
        }
        OwnedNotification::Rejoin(id) => {
            warn!(revision = id.revision, "gossip: declared down, rejoined");
            false
        }
        OwnedNotification::Defunct => {
            error!("gossip: declared down and cannot rejoin");
            false
        }
        #[allow(unreachable_patterns)] // foca's optional notifications
        _ => false,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
