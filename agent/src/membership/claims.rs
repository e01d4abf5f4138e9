//! This node's claims for the VIP group election (`GossipClaims`: ready, drain, config
//! digest, held groups, health, cluster document, pins) and the newest heard from each peer.
//!
//! State-based replication on the heartbeat channel: a node sends its whole claims to
//! every live member when they change and again every `interval` (the gossip probe
//! period), so a lost datagram costs one period and a new member hears them within one.
//! Receivers keep the newest (incarnation, sequence) per node id and report a peer's
//! claims only when their content changes. Pure: the driver passes the clock in and
//! does the socket I/O.

use std::collections::HashMap;
use std::time::Duration;

use lvs_proto::v1::{GossipClaims, GossipDocument, GossipHealth, GossipPin};
use tokio::time::Instant;

use super::{events::PeerClaims, Claims, DocumentClaim, SyncRunning};
use crate::document::Stamp;
use crate::health::view::HealthView;

#[derive(Debug)]
pub struct ClaimsState {
    own: GossipClaims,
    interval: Duration,
    next_send: Instant,
    /// Newest (incarnation, sequence) and content heard per node id.
    heard: HashMap<String, ((u64, u64), PeerClaims)>,
}

impl ClaimsState {
    pub fn new(node_id: &str, incarnation: u64, interval: Duration, now: Instant) -> Self {
        ClaimsState {
            own: GossipClaims {
                node_id: node_id.to_owned(),
                incarnation,
                ..GossipClaims::default()
            },
            interval,
            next_send: now,
            heard: HashMap::new(),
        }
    }

    /// Replaces this node's claims; when they changed, they are due at once.
    pub fn set(&mut self, claims: &Claims, now: Instant) {
        let own = &mut self.own;
        let health = GossipHealth {
            services_digest: claims.health.services_digest,
            down: claims.health.down.clone(),
        };
        let pins: Vec<GossipPin> = claims
            .pins
            .iter()
            .map(|(group, &stamp)| GossipPin {
                group: group.clone(),
                stamp,
            })
            .collect();
        let document = GossipDocument {
            version: claims.document.stamp.version,
            digest: claims.document.stamp.digest,
            control_addr: claims.document.control_addr.clone(),
        };
        if (
            own.ready,
            own.drain,
            own.config_digest,
            &own.held,
            &own.health,
            &own.document,
            &own.pins,
            (own.sync_master, own.sync_backup),
        ) == (
            claims.ready,
            claims.drain,
            claims.config_digest,
            &claims.held,
            &Some(health.clone()),
            &Some(document.clone()),
            &pins,
            (claims.sync.master, claims.sync.backup),
        ) {
            return;
        }
        own.ready = claims.ready;
        own.drain = claims.drain;
        own.config_digest = claims.config_digest;
        own.held.clone_from(&claims.held);
        own.health = Some(health);
        own.document = Some(document);
        own.pins = pins;
        own.sync_master = claims.sync.master;
        own.sync_backup = claims.sync.backup;
        own.sequence += 1;
        self.next_send = now;
    }

    /// Sends this node's claims at the next wake-up (a member just came up).
    pub fn send_soon(&mut self, now: Instant) {
        self.next_send = self.next_send.min(now);
    }

    /// The claims due at `now`, if any.
    pub fn due(&mut self, now: Instant) -> Option<GossipClaims> {
        if now < self.next_send {
            return None;
        }
        self.next_send = now + self.interval;
        Some(self.own.clone())
    }

    pub fn next_wake(&self) -> Instant {
        self.next_send
    }

    /// The newest claims heard from every node.
    pub fn heard(&self) -> Vec<PeerClaims> {
        self.heard.values().map(|(_, c)| c.clone()).collect()
    }

    /// `node_id`'s life `incarnation` went down: its next message is reported whatever
    /// it says (what it claimed before may have changed unheard).
    pub fn forget(&mut self, node_id: &str, incarnation: u64) {
        if self
            .heard
            .get(node_id)
            .is_some_and(|((inc, _), _)| *inc == incarnation)
        {
            self.heard.remove(node_id);
        }
    }

    /// A received message: the peer's claims when they are newer than any heard from
    /// that node and say something new.
    pub fn receive(&mut self, m: GossipClaims) -> Option<PeerClaims> {
        let stamp = (m.incarnation, m.sequence);
        let claims = PeerClaims {
            node_id: m.node_id,
            incarnation: m.incarnation,
            ready: m.ready,
            config_digest: m.config_digest,
            held: m.held,
            drain: m.drain,
            health: m
                .health
                .map(|h| HealthView {
                    services_digest: h.services_digest,
                    down: h.down,
                })
                .unwrap_or_default(),
            document: m
                .document
                .map(|d| DocumentClaim {
                    stamp: Stamp {
                        version: d.version,
                        digest: d.digest,
                    },
                    control_addr: d.control_addr,
                })
                .unwrap_or_default(),
            pins: m.pins.into_iter().map(|p| (p.group, p.stamp)).collect(),
            sync: SyncRunning {
                master: m.sync_master,
                backup: m.sync_backup,
            },
        };
        match self.heard.get_mut(&claims.node_id) {
            Some((newest, _)) if stamp <= *newest => None,
            Some((newest, known)) => {
                *newest = stamp;
                (*known != claims).then(|| {
                    *known = claims.clone();
                    claims
                })
            }
            None => {
                self.heard
                    .insert(claims.node_id.clone(), (stamp, claims.clone()));
                Some(claims)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn claims(ready: bool, held: &[&str]) -> Claims {
        Claims {
            ready,
            config_digest: 7,
            held: held.iter().map(|s| s.to_string()).collect(),
            drain: false,
            health: HealthView::default(),
            document: DocumentClaim::default(),
            pins: Default::default(),
            sync: SyncRunning::default(),
        }
    }

    #[test]
    fn sent_on_change_and_every_interval() {
        let t0 = Instant::now();
        let mut c = ClaimsState::new("lb1", 5, S, t0);
        let first = c.due(t0).expect("due at start");
        assert_eq!((first.sequence, first.ready), (0, false));
        assert_eq!(c.due(t0 + S / 2), None);
        c.set(&claims(true, &["g1"]), t0 + S / 2);
        let changed = c.due(t0 + S / 2).expect("due on change");
        assert_eq!((changed.sequence, changed.ready), (1, true));
        assert_eq!(changed.held, ["g1"]);
        // The same claims again: no new sequence, nothing due before the interval.
        c.set(&claims(true, &["g1"]), t0 + S);
        assert_eq!(c.due(t0 + S), None);
        assert_eq!(c.due(t0 + S * 3 / 2).map(|m| m.sequence), Some(1));
        c.send_soon(t0 + S * 2);
        assert!(c.due(t0 + S * 2).is_some());
    }

    #[test]
    fn receivers_report_new_content_once_and_ignore_older_messages() {
        let t0 = Instant::now();
        let mut sender = ClaimsState::new("lb2", 5, S, t0);
        let mut receiver = ClaimsState::new("lb1", 9, S, t0);
        let m0 = sender.due(t0).unwrap();
        assert!(receiver.receive(m0.clone()).is_some());
        assert_eq!(receiver.receive(m0.clone()), None, "same again");
        sender.set(&claims(true, &["g2"]), t0);
        let m1 = sender.due(t0).unwrap();
        let got = receiver.receive(m1.clone()).unwrap();
        assert_eq!(
            (got.ready, got.held.as_slice()),
            (true, &["g2".to_string()][..])
        );
        assert_eq!(receiver.receive(m0), None, "older");
        // A periodic resend (same sequence and content) says nothing new.
        assert_eq!(receiver.receive(m1.clone()), None);
        // A new life starts over, whatever its sequence.
        let reborn = GossipClaims {
            incarnation: 6,
            sequence: 0,
            ..m1
        };
        assert_eq!(
            receiver.receive(reborn.clone()).map(|c| c.incarnation),
            Some(6)
        );

        // Down and back: the same message is news again.
        receiver.forget("lb2", 5);
        assert_eq!(receiver.receive(reborn.clone()), None, "another life");
        receiver.forget("lb2", 6);
        assert!(receiver.receive(reborn).is_some());
    }

    proptest! {
        /// Whatever order messages arrive in, the last reported claims of a sender are
        /// those of the newest message received.
        #[test]
        fn the_newest_message_wins(order in Just((0u64..12).collect::<Vec<_>>()).prop_shuffle()) {
            let t0 = Instant::now();
            let mut receiver = ClaimsState::new("lb1", 1, S, t0);
            let message = |seq: u64| GossipClaims {
                node_id: "lb2".into(),
                incarnation: 3,
                sequence: seq,
                ready: true,
                config_digest: seq,
                held: vec![],
                drain: false,
                health: None,
                document: None,
                pins: vec![],
                sync_master: false,
                sync_backup: false,
            };
            let mut last = None;
            for seq in order.iter().copied() {
                if let Some(c) = receiver.receive(message(seq)) {
                    last = Some(c.config_digest);
                }
            }
            // The newest (sequence 11) is reported whenever it arrives, nothing after it.
            prop_assert_eq!(last, Some(11));
        }
    }
}
