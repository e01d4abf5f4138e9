//! Gossip membership: which directors are alive, with their metadata.
//!
//! SWIM (the `foca` crate) over UDP. One tokio task owns the foca instance
//! (`driver`); handles talk to it over a channel. Every datagram is a
//! protobuf `lvs.v1.GossipDatagram` sealed with ChaCha20-Poly1305 under the
//! cluster key (`keyring`); its plaintext is foca's packet made of the
//! protobuf messages of `proto/lvs/v1/gossip.proto` (`codec`).
//!
//! Failure detection: with the LAN preset ([`lan_swim_config`]) a member
//! probes one peer per `probe_period` (1 s), waits `probe_rtt` (500 ms) for an
//! ack before asking 3 others to probe indirectly, suspects it at the end of
//! the period and declares it down `suspect_to_down_after` later (4 s for up to
//! 10 members). A crashed member is typically declared down after about
//! `probe_period + suspect_to_down_after` (5 s); [`failure_detection_bound`]
//! gives the worst case (10 s with 3 members, 14 s with 5).
//!
//! Fast path (`heartbeat`): beside SWIM, the owner of VIP groups beacons to their heirs
//! every `heartbeat_interval` (100 ms); a heir reports an owner it stops hearing for
//! `heartbeat_timeout` (300 ms) as silent ([`MembershipHandle::silent_peers`]), so the
//! cluster can move groups long before SWIM declares the owner down. Time the heir
//! itself did not run (a wake due at T taken at T + 1 s) does not count as silence.

mod claims;
mod codec;
mod conflict;
mod counters;
mod driver;
mod events;
mod heartbeat;
mod identity;
mod keyring;
mod replay;

use std::{
    collections::{BTreeSet, BinaryHeap},
    net::{IpAddr, SocketAddr},
    num::{NonZeroU32, NonZeroUsize},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use foca::{AccumulatingRuntime, Foca};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
};
use tracing::Instrument as _;

pub use conflict::Conflict;
pub use counters::MembershipCounters;
pub use events::{MemberInfo, MemberState, MembershipEvent, PeerClaims};
pub use keyring::{
    new_key_text, write_new_key_file, ClusterKey, KeyError, KeyRing, OpenError, Opened, Origin,
};

use crate::health::view::HealthView;
pub(crate) use codec::ProtoCodec;
use conflict::ConflictDetector;
use counters::Counters;
use driver::{Command, Driver};
use heartbeat::Heartbeats;
pub(crate) use identity::{NodeIdentity, NodeMeta};
use keyring::Sealer;
use replay::ReplayGuard;

/// foca's LAN preset (memberlist's DefaultLANConfig) for an expected
/// cluster size, with packets of up to ~64 KB: see the module doc for the
/// resulting detection time.
///
/// foca has no full-state sync: a joiner learns the members that fit in the
/// `Feed` answering its announce, and any other one only when that member
/// probes or gossips to it, which takes up to `N` probe periods. Within 1400
/// bytes a feed holds ~20 identities, so a 100-node cluster took ~100 s to
/// agree after a join and 1,000 nodes never formed (the `cluster_sim`
/// bench). One 65,000-byte feed holds ~1,000 identities of ~60 bytes (~650
/// with two VRRP sources each). Packets only grow with what they carry (a
/// feed, or a backlog of updates while a cluster forms): pings at rest stay
/// ~150 bytes, and a cluster of a few directors stays within one Ethernet
/// frame. Larger datagrams are IP-fragmented, which a LAN delivers.
pub fn lan_swim_config(expected_cluster_size: u32) -> foca::Config {
    // The sealed GossipDatagram adds at most 127 bytes (see gossip.proto) and
    // must stay within the 65,507-byte UDP payload of IPv4 (IPv6: 65,527).
    const MAX_PACKET: NonZeroUsize = NonZeroUsize::new(65_000).expect("non-zero");
    foca::Config {
        max_packet_size: MAX_PACKET,
        ..foca::Config::new_lan(NonZeroU32::new(expected_cluster_size).unwrap_or(NonZeroU32::MIN))
    }
}

/// `swim` with `max_transmissions` raised to what [`lan_swim_config`] gives
/// `cluster_size` members, or `None` when it is that high already.
///
/// Each member relays an update ~`4 log10(N + 1)` times so that it reaches
/// all N members (memberlist's rule, which memberlist re-evaluates as the
/// cluster changes but foca's preset applies once, to the size it is given).
/// Sized for 8, a 1,000-node cluster left some members unaware of a crash
/// for minutes (`cluster_sim --swim-size 8`), so the driver raises it as the
/// cluster grows, and never lowers it: timers are left alone.
pub fn dissemination_for(swim: &foca::Config, cluster_size: usize) -> Option<foca::Config> {
    let size = u32::try_from(cluster_size).unwrap_or(u32::MAX);
    let needed = lan_swim_config(size).max_transmissions;
    (needed > swim.max_transmissions).then(|| foca::Config {
        max_transmissions: needed,
        ..swim.clone()
    })
}

/// Worst-case time for every live member to declare a crashed one down.
///
/// Each live member walks its peers in a shuffled round-robin, one probe per
/// `probe_period`, so it reaches the dead member within `2 (n - 1)` periods;
/// the failed probe raises suspicion at the end of its period; suspicion
/// turns into down after `suspect_to_down_after`; the down update then
/// spreads with the next probe or periodic gossip, within one more period.
pub fn failure_detection_bound(swim: &foca::Config, cluster_size: usize) -> Duration {
    let periods = 2 * cluster_size.saturating_sub(1) + 2;
    swim.probe_period * u32::try_from(periods).unwrap_or(u32::MAX) + swim.suspect_to_down_after
}

/// What a node claims in its gossip metadata for the VIP group election.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    pub ready: bool,
    pub config_digest: u64,
    /// Held group names, sorted.
    pub held: Vec<String>,
    /// Drained by the operator: given a group only when no undrained node can take it.
    pub drain: bool,
    /// Its health verdicts, for status.
    pub health: HealthView,
    /// The cluster document it runs, and where peers fetch it.
    pub document: DocumentClaim,
    /// Groups the operator moved to it (`lvs-cli move`), with each pin's stamp.
    pub pins: std::collections::BTreeMap<String, u64>,
    /// Its sync daemons.
    pub sync: SyncRunning,
}

/// The IPVS sync daemons a node runs (`GossipClaims.sync_master` / `sync_backup`), as
/// its kernel lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncRunning {
    pub master: bool,
    pub backup: bool,
}

/// A node's cluster document in its claims (`GossipDocument`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentClaim {
    pub stamp: crate::document::Stamp,
    /// Its QUIC control API, `ip:port`; empty without `control_tls`.
    pub control_addr: String,
}

/// Everything one membership instance needs.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Unique in the cluster; two live nodes with one id raise a conflict.
    pub node_id: String,
    /// UDP address to bind; port 0 picks a free port.
    pub gossip_listen: SocketAddr,
    /// Address peers reach us at; defaults to the bound address, which must
    /// then not be a wildcard.
    pub advertise: Option<SocketAddr>,
    /// This process life; a restart must use a higher value. Defaults to the
    /// start time in ms since the Unix epoch (so a clock stepped back across a
    /// restart delays the rejoin until peers forget the previous life).
    pub incarnation: u64,
    /// IPVS syncid this node masters (0 = none); duplicates raise a conflict.
    pub syncid: u8,
    pub version: String,
    /// Addresses this node sends VRRP adverts from, published so peers recognise them.
    pub vrrp_sources: Vec<IpAddr>,
    pub keys: KeyRing,
    /// Peers to announce to at start and whenever no peer is live.
    pub join: Vec<SocketAddr>,
    /// SWIM timers and limits; every datagram is at most
    /// `max_packet_size` + at most 127 bytes of envelope.
    pub swim: foca::Config,
    /// How often to re-announce to `join` while no peer is live.
    pub join_retry: Duration,
    /// Capacity of the event channel; events beyond it are dropped and counted.
    pub event_capacity: usize,
    /// How often an owner beacons to its heirs.
    pub heartbeat_interval: Duration,
    /// Silence after which a heir reports a heard owner silent; above the interval.
    pub heartbeat_timeout: Duration,
}

impl MembershipConfig {
    /// LAN defaults for a cluster of up to ~10 directors.
    pub fn new(node_id: impl Into<String>, gossip_listen: SocketAddr, keys: KeyRing) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            node_id: node_id.into(),
            gossip_listen,
            advertise: None,
            incarnation: now_ms,
            syncid: 0,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            vrrp_sources: Vec::new(),
            keys,
            join: Vec::new(),
            swim: lan_swim_config(8),
            join_retry: Duration::from_secs(5),
            event_capacity: 1024,
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_millis(300),
        }
    }

    fn check(&self) -> Result<(), MembershipError> {
        let bad = |field, reason: &str| {
            Err(MembershipError::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        let swim = &self.swim;
        if self.node_id.is_empty() || self.node_id.len() > 64 {
            return bad("node_id", "must be 1 to 64 bytes");
        }
        if swim.probe_rtt.is_zero() || swim.probe_rtt >= swim.probe_period {
            return bad("swim.probe_rtt", "must be non-zero and below probe_period");
        }
        if swim.suspect_to_down_after.is_zero() {
            return bad("swim.suspect_to_down_after", "must be non-zero");
        }
        if self.join_retry.is_zero() {
            return bad("join_retry", "must be non-zero");
        }
        if self.event_capacity == 0 {
            return bad("event_capacity", "must be non-zero");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval", "must be non-zero");
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return bad("heartbeat_timeout", "must be above heartbeat_interval");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("membership config {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("gossip socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The membership task has stopped (left, stopped, or every handle dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gossip membership task has stopped")]
pub struct Stopped;

/// A cheap, cloneable handle to the running membership task. Dropping every
/// handle stops the task without leaving, as a crash would.
#[derive(Clone, Debug)]
pub struct MembershipHandle {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    addr: SocketAddr,
    silent: watch::Receiver<BTreeSet<String>>,
}

/// Binds the gossip socket and spawns the membership task; must be called
/// inside a tokio runtime. Events arrive on the returned receiver.
pub async fn start(
    cfg: MembershipConfig,
) -> Result<(MembershipHandle, mpsc::Receiver<MembershipEvent>), MembershipError> {
    cfg.check()?;
    let socket_err = |addr| move |source| MembershipError::Socket { addr, source };
    let socket = UdpSocket::bind(cfg.gossip_listen)
        .await
        .map_err(socket_err(cfg.gossip_listen))?;
    let bound = socket.local_addr().map_err(socket_err(cfg.gossip_listen))?;
    let mut addr = cfg.advertise.unwrap_or(bound);
    if addr.port() == 0 {
        addr.set_port(bound.port());
    }
    if addr.ip().is_unspecified() {
        return Err(MembershipError::Config {
            field: "advertise",
            reason: format!("required when listening on the wildcard address {bound}"),
        });
    }
    let identity = NodeIdentity {
        node_id: cfg.node_id.clone(),
        addr,
        incarnation: cfg.incarnation,
        revision: 0,
        meta: NodeMeta {
            syncid: cfg.syncid,
            version: cfg.version,
            vrrp_sources: cfg.vrrp_sources,
        },
    };
    let counters = Arc::new(Counters::default());
    let (events_tx, events_rx) = mpsc::channel(cfg.event_capacity);
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let (silent_tx, silent) = watch::channel(BTreeSet::new());
    // A former heir learns it is no longer one within a few probe periods.
    let linger = (cfg.swim.probe_period * 10).max(cfg.heartbeat_timeout * 3);
    let heartbeats = Heartbeats::new(
        &cfg.node_id,
        cfg.incarnation,
        cfg.heartbeat_interval,
        cfg.heartbeat_timeout,
        linger,
        tokio::time::Instant::now(),
    );
    let claims = claims::ClaimsState::new(
        &cfg.node_id,
        cfg.incarnation,
        cfg.swim.probe_period,
        tokio::time::Instant::now(),
    );
    let replay = ReplayGuard::new(replay::MAX_SENDERS, cfg.swim.remove_down_after);
    let driver = Driver {
        conflicts: ConflictDetector::new(&cfg.node_id, addr, cfg.incarnation),
        foca: Foca::new(identity, cfg.swim.clone(), rand::make_rng(), ProtoCodec),
        swim: cfg.swim,
        runtime: AccumulatingRuntime::new(),
        timers: BinaryHeap::new(),
        socket,
        keys: Sealer::new(cfg.keys, &cfg.node_id, cfg.incarnation),
        replay,
        seeds: cfg.join,
        join_retry: cfg.join_retry,
        counters: Arc::clone(&counters),
        events: events_tx,
        live: Default::default(),
        heartbeats,
        silent: silent_tx,
        claims,
        resync_pending: false,
    };
    let span = tracing::info_span!("membership", node = %cfg.node_id, %addr);
    tokio::spawn(driver.run(commands_rx).instrument(span));
    let handle = MembershipHandle {
        commands: commands_tx,
        counters,
        addr,
        silent,
    };
    Ok((handle, events_rx))
}

impl MembershipHandle {
    /// The gossip address this node advertises.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Announce to more peers (kept as seeds for later re-joins).
    pub async fn join(&self, peers: Vec<SocketAddr>) -> Result<(), Stopped> {
        self.commands
            .send(Command::Join(peers))
            .await
            .map_err(|_| Stopped)
    }

    /// Publish new VRRP source addresses (a VIP interface was re-created with a new
    /// link-local): a new identity revision; peers see `MetaChanged`.
    pub async fn set_vrrp_sources(&self, sources: Vec<IpAddr>) -> Result<(), Stopped> {
        self.call(|reply| Command::SetVrrpSources(sources, reply))
            .await
    }

    /// Seal with, and accept, `keys` from now on (key rotation without restart).
    pub async fn set_keys(&self, keys: KeyRing) -> Result<(), Stopped> {
        self.commands
            .send(Command::SetKeys(keys))
            .await
            .map_err(|_| Stopped)
    }

    /// Publish what this node claims: readiness, cluster config digest, held groups
    /// (`GossipClaims`, to every live member now and every probe period).
    pub async fn set_claims(&self, claims: Claims) -> Result<(), Stopped> {
        self.commands
            .send(Command::SetClaims(claims))
            .await
            .map_err(|_| Stopped)
    }

    /// Hand VIP group `group` to node `to_id` listening at `to` (sealed, on the
    /// heartbeat channel).
    pub async fn handover(
        &self,
        to: SocketAddr,
        to_id: String,
        group: String,
    ) -> Result<(), Stopped> {
        self.commands
            .send(Command::Handover { to, to_id, group })
            .await
            .map_err(|_| Stopped)
    }

    /// Beacon to `send_to` (the heirs of the groups held here) and listen to
    /// `expect_from` (node ids of the owners whose heir this node is); replaces the
    /// previous sets.
    pub async fn set_heartbeats(
        &self,
        send_to: BTreeSet<SocketAddr>,
        expect_from: BTreeSet<String>,
    ) -> Result<(), Stopped> {
        self.commands
            .send(Command::SetHeartbeats {
                send_to,
                expect_from,
            })
            .await
            .map_err(|_| Stopped)
    }

    /// The expected peers heard at least once and silent for the heartbeat timeout;
    /// a peer leaves the set when heard again or no longer expected.
    pub fn silent_peers(&self) -> watch::Receiver<BTreeSet<String>> {
        self.silent.clone()
    }

    /// The local node first, then every member foca knows, down ones included.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, Stopped> {
        self.call(Command::Members).await
    }

    /// Gracefully leave the cluster (on SIGTERM) and stop the task.
    pub async fn leave(&self) -> Result<(), Stopped> {
        self.call(Command::Leave).await
    }

    /// Stop without telling anyone, as a crash would; the socket is closed
    /// when this returns.
    pub async fn stop(&self) -> Result<(), Stopped> {
        self.call(Command::Stop).await
    }

    pub fn counters(&self) -> MembershipCounters {
        self.counters.snapshot()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_detection_bound_matches_the_module_doc() {
        let swim = lan_swim_config(8);
        assert_eq!(failure_detection_bound(&swim, 3), Duration::from_secs(10));
        assert_eq!(failure_detection_bound(&swim, 5), Duration::from_secs(14));
    }

    #[test]
    fn dissemination_grows_with_the_cluster_and_never_shrinks() {
        let small = lan_swim_config(8);
        assert_eq!(small.max_transmissions.get(), 3);
        assert!(dissemination_for(&small, 3).is_none());
        let large = dissemination_for(&small, 1000).expect("1,000 members need more");
        assert_eq!(large.max_transmissions.get(), 12);
        assert_eq!(large.suspect_to_down_after, small.suspect_to_down_after);
        assert!(dissemination_for(&large, 100).is_none());
    }

    #[test]
    fn a_full_lan_packet_sealed_fits_one_udp_datagram() {
        let max = lan_swim_config(1000).max_packet_size.get();
        // The longest node id, and epoch and counter at their longest encoding.
        let origin = Origin {
            sender: "n".repeat(64),
            epoch: u64::MAX,
            counter: u64::MAX,
        };
        let sealed = KeyRing::new(ClusterKey::from_bytes([1; 32])).seal(&origin, &vec![0xa5; max]);
        assert_eq!(
            sealed.len(),
            max + 127,
            "the envelope size gossip.proto states"
        );
        assert!(sealed.len() <= 65_507, "{} bytes", sealed.len());
    }

    #[test]
    fn config_errors_name_the_field() {
        let mut cfg = MembershipConfig::new(
            "",
            "127.0.0.1:0".parse().unwrap(),
            KeyRing::new(ClusterKey::from_bytes([1; 32])),
        );
        assert!(cfg.check().unwrap_err().to_string().contains("node_id"));
        cfg.node_id = "lb1".into();
        cfg.swim.probe_rtt = cfg.swim.probe_period;
        assert!(cfg
            .check()
            .unwrap_err()
            .to_string()
            .contains("swim.probe_rtt"));
    }

    #[tokio::test]
    async fn a_wildcard_listen_address_needs_an_advertise_address() {
        let cfg = MembershipConfig::new(
            "lb1",
            "0.0.0.0:0".parse().unwrap(),
            KeyRing::new(ClusterKey::from_bytes([1; 32])),
        );
        let err = start(cfg).await.unwrap_err().to_string();
        assert!(err.contains("advertise"), "{err}");
    }
}
