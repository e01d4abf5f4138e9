//! Owner-to-heir heartbeats: a BFD-like fast failure signal beside SWIM.
//!
//! The owner of VIP groups beacons every `interval` to the heirs of its groups (the
//! nodes that take them if it goes down); a heir that heard a peer and then hears
//! nothing for `timeout` reports it silent. SWIM stays the authority on membership:
//! silence only lets the cluster runtime act before SWIM has finished its suspicion.
//!
//! Two rules keep differing views from looking like failures:
//! - a watched peer is reported silent only after it was heard at least once while
//!   watched, so a peer that does not (yet) beacon to us, or an older agent without
//!   heartbeats, is never reported;
//! - a target dropped by the sender keeps receiving beacons for `linger`, covering the
//!   time the former heir needs to learn (through gossip) that it is no longer one.
//!
//! The same channel carries hand-overs of VIP groups (`GossipHandover`), sent to one
//! successor on a planned move, and each node's election claims (`GossipClaims`, see
//! `claims`).
//!
//! Pure: the driver passes the clock in and does the socket I/O. Wire format: see
//! `GossipHeartbeat` and `GossipHandover` in `proto/lvs/v1/gossip.proto`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    time::Duration,
};

use lvs_proto::v1::{GossipClaims, GossipHandover, GossipHeartbeat};
use prost::Message as _;
use tokio::time::Instant;

/// First plaintext byte of a beacon, a hand-over, claims; never the first byte of a
/// foca packet.
const BEACON: u8 = 0;
const HANDOVER: u8 = 1;
const CLAIMS: u8 = 2;

/// What travels on the heartbeat channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Beacon(GossipHeartbeat),
    Handover(GossipHandover),
    Claims(GossipClaims),
}

/// The sealed plaintext of one message.
pub fn encode(message: &Message) -> Vec<u8> {
    let (marker, body) = match message {
        Message::Beacon(b) => (BEACON, b.encode_to_vec()),
        Message::Handover(h) => (HANDOVER, h.encode_to_vec()),
        Message::Claims(c) => (CLAIMS, c.encode_to_vec()),
    };
    [&[marker][..], &body].concat()
}

/// `None` for a foca packet; otherwise the message or why it is malformed.
pub fn decode(plaintext: &[u8]) -> Option<Result<Message, prost::DecodeError>> {
    match plaintext.split_first() {
        Some((&BEACON, body)) => Some(GossipHeartbeat::decode(body).map(Message::Beacon)),
        Some((&HANDOVER, body)) => Some(GossipHandover::decode(body).map(Message::Handover)),
        Some((&CLAIMS, body)) => Some(GossipClaims::decode(body).map(Message::Claims)),
        _ => None,
    }
}

/// What a received beacon did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Newer than anything heard from that sender.
    Fresh,
    /// A replayed or reordered beacon (not newer than the last one): ignored.
    Stale,
}

#[derive(Clone, Copy, Debug)]
struct Watched {
    /// Last beacon heard since watching started; `None`: not armed yet.
    heard: Option<Instant>,
}

/// Heartbeat state of one node: what to send where, and whom it is listening to.
#[derive(Debug)]
pub struct Heartbeats {
    node_id: String,
    incarnation: u64,
    sequence: u64,
    interval: Duration,
    timeout: Duration,
    linger: Duration,
    /// Beacon targets; `Some(t)`: no longer wanted, beaconed until `t`.
    targets: BTreeMap<SocketAddr, Option<Instant>>,
    next_send: Instant,
    watched: BTreeMap<String, Watched>,
    /// Newest (incarnation, sequence) heard per sender, against replays.
    newest: HashMap<String, (u64, u64)>,
}

/// Beacons to send now (see [`Heartbeats::due`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub beacon: GossipHeartbeat,
    /// The present heirs.
    pub heirs: Vec<SocketAddr>,
    /// Former heirs, still beaconed for the linger time: sent `beacon` marked released.
    pub released: Vec<SocketAddr>,
}

impl Heartbeats {
    pub fn new(
        node_id: &str,
        incarnation: u64,
        interval: Duration,
        timeout: Duration,
        linger: Duration,
        now: Instant,
    ) -> Self {
        Self {
            node_id: node_id.to_owned(),
            incarnation,
            sequence: 0,
            interval,
            timeout,
            linger,
            targets: BTreeMap::new(),
            next_send: now,
            watched: BTreeMap::new(),
            newest: HashMap::new(),
        }
    }

    /// The heirs to beacon to from now on; dropped ones linger.
    pub fn set_targets(&mut self, targets: &BTreeSet<SocketAddr>, now: Instant) {
        let linger_until = now + self.linger;
        for (addr, until) in &mut self.targets {
            if !targets.contains(addr) && until.is_none() {
                *until = Some(linger_until);
            }
        }
        let was_idle = self.targets.is_empty();
        for &addr in targets {
            self.targets.insert(addr, None);
        }
        if was_idle && !self.targets.is_empty() {
            // A new owner beacons at once: its heir arms sooner.
            self.next_send = now;
        }
    }

    /// The peers to listen to; a newly watched peer starts unarmed, one no longer
    /// watched is forgotten (and so no longer silent).
    pub fn watch(&mut self, peers: &BTreeSet<String>) {
        self.watched.retain(|id, _| peers.contains(id));
        for id in peers {
            self.watched
                .entry(id.clone())
                .or_insert(Watched { heard: None });
        }
    }

    /// The beacons due at `now`, if any: one for the heirs, one marked `released` for
    /// the former heirs that linger.
    pub fn due(&mut self, now: Instant) -> Option<Due> {
        self.targets
            .retain(|_, until| until.is_none_or(|t| t > now));
        if self.targets.is_empty() || now < self.next_send {
            return None;
        }
        self.next_send = now + self.interval;
        let beacon = GossipHeartbeat {
            node_id: self.node_id.clone(),
            incarnation: self.incarnation,
            sequence: self.sequence,
            released: false,
        };
        self.sequence += 1;
        let (heirs, released): (Vec<_>, Vec<_>) =
            self.targets.iter().partition(|(_, until)| until.is_none());
        Some(Due {
            beacon,
            heirs: heirs.into_iter().map(|(a, _)| *a).collect(),
            released: released.into_iter().map(|(a, _)| *a).collect(),
        })
    }

    pub fn receive(&mut self, beacon: &GossipHeartbeat, now: Instant) -> Heard {
        let stamp = (beacon.incarnation, beacon.sequence);
        if self
            .newest
            .get(&beacon.node_id)
            .is_some_and(|&newest| stamp <= newest)
        {
            return Heard::Stale;
        }
        self.newest.insert(beacon.node_id.clone(), stamp);
        if let Some(w) = self.watched.get_mut(&beacon.node_id) {
            // Released: unarmed until the owner names this node its heir again.
            w.heard = (!beacon.released).then_some(now);
        }
        Heard::Fresh
    }

    /// This node ran at `now`, `late` after a wake it was due (its own stall: a loaded
    /// host, a paused VM). The beacons that arrived meanwhile wait unread in the
    /// socket, and a silence deadline that fell in the stall says nothing about the
    /// peer: such a peer is credited the stall plus one interval, the time to read what
    /// waits and, when the whole host stalled, for the peer to beacon again. A peer
    /// already silent when the stall began stays silent (crediting it would bring a
    /// dead owner back into the election). Stalls up to `interval / 2` are ordinary
    /// timer lateness and are not credited (crediting the 1 ms every wake carries
    /// would postpone silence for ever). Returns whether the stall outlasted the
    /// timeout: this node's own beacons stopped that long too, so its heirs may have
    /// presumed it down and taken its groups until they hear its next advert.
    pub fn stalled(&mut self, now: Instant, late: Duration) -> bool {
        if late <= self.interval / 2 {
            return false;
        }
        let began = now - late;
        for w in self.watched.values_mut() {
            if let Some(t) = &mut w.heard {
                if *t + self.timeout >= began {
                    *t += late + self.interval;
                }
            }
        }
        late > self.timeout
    }

    /// Watched peers heard once and not for `timeout` since.
    pub fn silent(&self, now: Instant) -> BTreeSet<String> {
        self.watched
            .iter()
            .filter(|(_, w)| w.heard.is_some_and(|t| now >= t + self.timeout))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// When something is next due: a beacon, or an armed peer turning silent.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let send = (!self.targets.is_empty()).then_some(self.next_send);
        let silence = self
            .watched
            .values()
            .filter_map(|w| w.heard.map(|t| t + self.timeout))
            .filter(|&at| at > now);
        send.into_iter().chain(silence).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn node(now: Instant) -> Heartbeats {
        Heartbeats::new("lb1", 7, 100 * MS, 300 * MS, 2000 * MS, now)
    }

    fn beacon(node_id: &str, incarnation: u64, sequence: u64) -> GossipHeartbeat {
        GossipHeartbeat {
            node_id: node_id.into(),
            incarnation,
            sequence,
            released: false,
        }
    }

    fn ids(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn beacons_go_every_interval_to_targets_and_lingering_former_targets() {
        let t0 = Instant::now();
        let mut hb = node(t0);
        assert_eq!(hb.due(t0), None, "no target, no beacon");
        let a: SocketAddr = "192.0.2.2:7946".parse().unwrap();
        let b: SocketAddr = "192.0.2.3:7946".parse().unwrap();
        hb.set_targets(&[a].into(), t0);
        let first = hb.due(t0).unwrap();
        assert_eq!(
            (first.beacon.sequence, first.beacon.incarnation, first.heirs),
            (0, 7, vec![a])
        );
        assert_eq!(hb.due(t0 + 50 * MS), None);
        assert_eq!(hb.next_wake(t0 + 50 * MS), Some(t0 + 100 * MS));

        hb.set_targets(&[b].into(), t0 + 100 * MS);
        let second = hb.due(t0 + 100 * MS).unwrap();
        assert_eq!(
            (second.beacon.sequence, second.heirs, second.released),
            (1, vec![b], vec![a]),
            "a lingers, told it is released"
        );
        // a lingers 2 s after it stopped being a target.
        let later = hb.due(t0 + 2200 * MS).unwrap();
        assert_eq!((later.heirs, later.released), (vec![b], vec![]));
        // Taken back before its linger ended, it is a target for good again.
        hb.set_targets(&[a, b].into(), t0 + 2300 * MS);
        let again = hb.due(t0 + 9000 * MS).unwrap();
        assert_eq!((again.heirs, again.released), (vec![a, b], vec![]));
    }

    #[test]
    fn a_watched_peer_is_silent_only_after_being_heard() {
        let t0 = Instant::now();
        let mut hb = node(t0);
        hb.watch(&ids(&["lb2"]));
        assert!(
            hb.silent(t0 + 10_000 * MS).is_empty(),
            "never heard: not armed"
        );
        assert_eq!(hb.next_wake(t0), None);

        assert_eq!(hb.receive(&beacon("lb2", 1, 0), t0), Heard::Fresh);
        assert_eq!(hb.next_wake(t0), Some(t0 + 300 * MS));
        assert!(hb.silent(t0 + 299 * MS).is_empty());
        assert_eq!(hb.silent(t0 + 300 * MS), ids(&["lb2"]));

        // Heard again: no longer silent.
        assert_eq!(
            hb.receive(&beacon("lb2", 1, 1), t0 + 400 * MS),
            Heard::Fresh
        );
        assert!(hb.silent(t0 + 500 * MS).is_empty());

        // No longer watched: forgotten; watched again: unarmed until heard.
        hb.watch(&ids(&[]));
        hb.watch(&ids(&["lb2"]));
        assert!(hb.silent(t0 + 10_000 * MS).is_empty());
    }

    #[test]
    fn a_stall_of_this_node_is_not_the_peers_silence() {
        let t0 = Instant::now();
        let mut hb = node(t0);
        hb.watch(&ids(&["lb2"]));
        hb.receive(&beacon("lb2", 1, 0), t0);
        // Due at 300 ms to judge lb2, this node ran only at 1300 ms.
        assert!(
            hb.stalled(t0 + 1300 * MS, 1000 * MS),
            "longer than the timeout"
        );
        assert!(hb.silent(t0 + 1300 * MS).is_empty(), "credited the stall");
        assert_eq!(hb.next_wake(t0 + 1300 * MS), Some(t0 + 1400 * MS));
        assert_eq!(hb.silent(t0 + 1400 * MS), ids(&["lb2"]));
        // Silent since 1400 ms, then a stall from 1500 to 2000 ms: still silent.
        assert!(hb.stalled(t0 + 2000 * MS, 500 * MS));
        assert_eq!(hb.silent(t0 + 2000 * MS), ids(&["lb2"]));
        // Ordinary lateness (up to half the interval) credits nothing.
        let mut hb = node(t0);
        hb.watch(&ids(&["lb2"]));
        hb.receive(&beacon("lb2", 1, 0), t0);
        assert!(!hb.stalled(t0 + 300 * MS, 50 * MS));
        assert_eq!(hb.silent(t0 + 300 * MS), ids(&["lb2"]));
    }

    #[test]
    fn a_released_heir_is_disarmed_until_named_again() {
        let t0 = Instant::now();
        let mut hb = node(t0);
        hb.watch(&ids(&["lb2"]));
        assert_eq!(hb.receive(&beacon("lb2", 1, 0), t0), Heard::Fresh);
        let released = GossipHeartbeat {
            released: true,
            ..beacon("lb2", 1, 1)
        };
        assert_eq!(hb.receive(&released, t0 + 100 * MS), Heard::Fresh);
        assert!(
            hb.silent(t0 + 10_000 * MS).is_empty(),
            "the owner moved its heir elsewhere: its silence means nothing here"
        );
        assert_eq!(hb.next_wake(t0 + 200 * MS), None);
        assert_eq!(
            hb.receive(&beacon("lb2", 1, 2), t0 + 11_000 * MS),
            Heard::Fresh
        );
        assert_eq!(
            hb.silent(t0 + 11_300 * MS),
            ids(&["lb2"]),
            "named again: armed"
        );
    }

    #[test]
    fn replays_are_stale_and_a_new_life_starts_over() {
        let t0 = Instant::now();
        let mut hb = node(t0);
        hb.watch(&ids(&["lb2"]));
        assert_eq!(hb.receive(&beacon("lb2", 1, 5), t0), Heard::Fresh);
        assert_eq!(
            hb.receive(&beacon("lb2", 1, 5), t0 + 500 * MS),
            Heard::Stale
        );
        assert_eq!(
            hb.receive(&beacon("lb2", 1, 4), t0 + 500 * MS),
            Heard::Stale
        );
        assert_eq!(
            hb.silent(t0 + 500 * MS),
            ids(&["lb2"]),
            "a replay does not count as hearing the peer"
        );
        assert_eq!(
            hb.receive(&beacon("lb2", 2, 0), t0 + 500 * MS),
            Heard::Fresh
        );
        assert!(hb.silent(t0 + 500 * MS).is_empty());
    }

    #[test]
    fn heartbeat_and_foca_plaintexts_are_told_apart() {
        let b = Message::Beacon(beacon("lb1", 1_700_000_000_000, 42));
        assert_eq!(decode(&encode(&b)), Some(Ok(b)));
        let h = Message::Handover(GossipHandover {
            node_id: "lb1".into(),
            incarnation: 1_700_000_000_000,
            group: "VI_1".into(),
            to: "lb2".into(),
        });
        assert_eq!(encode(&h)[0], HANDOVER);
        assert_eq!(decode(&encode(&h)), Some(Ok(h)));
        let c = Message::Claims(GossipClaims {
            node_id: "lb1".into(),
            held: vec!["VI_1".into()],
            ..GossipClaims::default()
        });
        assert_eq!(encode(&c)[0], CLAIMS);
        assert_eq!(decode(&encode(&c)), Some(Ok(c)));
        // A foca packet starts with its header's (non-zero) length prefix.
        assert_eq!(decode(&[0x2a, 0x0a]), None);
        assert_eq!(decode(&[]), None);
        assert!(matches!(decode(&[0, 0xff]), Some(Err(_))));
    }

    proptest! {
        #[test]
        fn silence_means_nothing_fresh_within_the_timeout(
            gaps in proptest::collection::vec(0u64..700, 1..20),
            probe in 0u64..800,
        ) {
            let t0 = Instant::now();
            let mut hb = node(t0);
            hb.watch(&ids(&["lb2"]));
            let mut at = t0;
            for (seq, gap) in gaps.iter().enumerate() {
                at += Duration::from_millis(*gap);
                hb.receive(&beacon("lb2", 1, seq as u64), at);
            }
            let now = at + Duration::from_millis(probe);
            prop_assert_eq!(hb.silent(now).contains("lb2"), probe >= 300);
        }
    }
}
