//! The membership view the election needs, kept from membership events (pure).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crate::membership::{MemberInfo, MembershipEvent};
use crate::ownership::Member;

/// One live peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub drain: bool,
    /// When this node saw it come up (its clock, ms): the election's `eligible_since_ms`.
    pub since_ms: u64,
}

/// Live peers by node id, and every address an agent was ever seen at.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    live: BTreeMap<String, Peer>,
    /// VRRP from these addresses comes from agents (live or not), never from a foreign
    /// router: keeping the down ones stops a healing partition looking like keepalived.
    agents: BTreeSet<IpAddr>,
}

impl Roster {
    pub fn new(own: IpAddr, seeds: impl IntoIterator<Item = IpAddr>) -> Self {
        Roster {
            live: BTreeMap::new(),
            agents: std::iter::once(own).chain(seeds).collect(),
        }
    }

    /// Applies one event; true when the election may change.
    pub fn apply(&mut self, event: &MembershipEvent, now_ms: u64) -> bool {
        match event {
            MembershipEvent::MemberUp(m) => {
                self.agents.insert(m.addr.ip());
                self.live.insert(m.node_id.clone(), peer(m, now_ms));
                true
            }
            MembershipEvent::MemberDown(m) => {
                // A restart reports the old life down after or before the new one up:
                // only drop the entry if it still is that address's.
                let same = self.live.get(&m.node_id).is_some_and(|p| p.addr == m.addr);
                if same {
                    self.live.remove(&m.node_id);
                }
                same
            }
            MembershipEvent::MetaChanged { after, .. } => match self.live.get_mut(&after.node_id) {
                Some(p) if p.drain != after.drain => {
                    p.drain = after.drain;
                    // Undrained now: eligible from now on, like a node that just came up.
                    p.since_ms = now_ms;
                    true
                }
                _ => false,
            },
            MembershipEvent::Conflict(_) => false,
        }
    }

    /// The election's members: the live peers plus this node.
    pub fn members(&self, own_id: &str, own_since_ms: u64) -> Vec<Member> {
        let me = Member {
            id: own_id.to_owned(),
            drained: false,
            eligible_since_ms: own_since_ms,
        };
        let peers = self.live.iter().map(|(id, p)| Member {
            id: id.clone(),
            drained: p.drain,
            eligible_since_ms: p.since_ms,
        });
        std::iter::once(me).chain(peers).collect()
    }

    pub fn is_agent(&self, addr: IpAddr) -> bool {
        self.agents.contains(&addr)
    }

    /// The node id of the live peer at `addr`.
    pub fn live_at(&self, addr: IpAddr) -> Option<&str> {
        self.live
            .iter()
            .find(|(_, p)| p.addr.ip() == addr)
            .map(|(id, _)| id.as_str())
    }

    #[cfg(test)]
    pub fn live(&self) -> &BTreeMap<String, Peer> {
        &self.live
    }
}

fn peer(m: &MemberInfo, now_ms: u64) -> Peer {
    Peer {
        addr: m.addr,
        drain: m.drain,
        since_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberState;

    fn info(id: &str, last: u8, drain: bool) -> MemberInfo {
        MemberInfo {
            node_id: id.into(),
            addr: SocketAddr::from(([192, 0, 2, last], 7946)),
            syncid: last,
            drain,
            version: "0".into(),
            incarnation: 1,
            state: MemberState::Alive,
            local: false,
        }
    }

    #[test]
    fn up_down_drain_and_restart() {
        let mut r = Roster::new("192.0.2.1".parse().unwrap(), []);
        assert!(r.apply(&MembershipEvent::MemberUp(info("lb2", 2, false)), 10));
        assert_eq!(r.live_at("192.0.2.2".parse().unwrap()), Some("lb2"));
        let drained = MembershipEvent::MetaChanged {
            before: info("lb2", 2, false),
            after: info("lb2", 2, true),
        };
        assert!(r.apply(&drained, 20));
        let members = r.members("lb1", 5);
        assert_eq!(members.len(), 2);
        assert!(members[1].drained);

        // Restarted at another address: the old life's down event comes late.
        assert!(r.apply(&MembershipEvent::MemberUp(info("lb2", 3, false)), 30));
        assert!(!r.apply(&MembershipEvent::MemberDown(info("lb2", 2, false)), 31));
        assert_eq!(r.live()["lb2"].since_ms, 30);
        assert!(r.apply(&MembershipEvent::MemberDown(info("lb2", 3, false)), 40));
        assert!(r.live().is_empty());
        // Down agents stay known as agents.
        assert!(r.is_agent("192.0.2.2".parse().unwrap()));
        assert_eq!(r.live_at("192.0.2.2".parse().unwrap()), None);
    }
}
