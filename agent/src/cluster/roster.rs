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
    /// Addresses its VRRP adverts come from (the gossip IP is one too).
    pub vrrp_sources: Vec<IpAddr>,
    /// When this node saw it come up (its clock, ms): the election's `eligible_since_ms`.
    pub since_ms: u64,
}

impl Peer {
    fn sends_vrrp_from(&self, addr: IpAddr) -> bool {
        self.addr.ip() == addr || self.vrrp_sources.contains(&addr)
    }
}

/// Live peers by node id, and every address an agent was ever seen at.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    live: BTreeMap<String, Peer>,
    /// VRRP from these addresses comes from agents (live or not), never from a foreign
    /// router: keeping the down ones stops a healing partition looking like keepalived.
    /// Gossip IPs and every published VRRP source (IPv6 adverts come from link-locals).
    agents: BTreeSet<IpAddr>,
}

impl Roster {
    /// `own`: this node's gossip IP and VRRP sources; `seeds`: its join peers' IPs.
    pub fn new(
        own: impl IntoIterator<Item = IpAddr>,
        seeds: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        Roster {
            live: BTreeMap::new(),
            agents: own.into_iter().chain(seeds).collect(),
        }
    }

    /// Applies one event; true when the election may change.
    pub fn apply(&mut self, event: &MembershipEvent, now_ms: u64) -> bool {
        match event {
            MembershipEvent::MemberUp(m) => {
                self.learn_sources(m);
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
            MembershipEvent::MetaChanged { after, .. } => {
                self.learn_sources(after);
                let Some(p) = self.live.get_mut(&after.node_id) else {
                    return false;
                };
                p.vrrp_sources.clone_from(&after.vrrp_sources);
                if p.drain == after.drain {
                    return false;
                }
                p.drain = after.drain;
                // Undrained now: eligible from now on, like a node that just came up.
                p.since_ms = now_ms;
                true
            }
            MembershipEvent::Conflict(_) => false,
        }
    }

    fn learn_sources(&mut self, m: &MemberInfo) {
        self.agents.insert(m.addr.ip());
        self.agents.extend(m.vrrp_sources.iter().copied());
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

    pub fn has_live_peers(&self) -> bool {
        !self.live.is_empty()
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    pub fn gossip_addr(&self, id: &str) -> Option<SocketAddr> {
        self.live.get(id).map(|p| p.addr)
    }

    pub fn is_agent(&self, addr: IpAddr) -> bool {
        self.agents.contains(&addr)
    }

    /// The node id of the live peer sending VRRP from `addr`.
    pub fn live_at(&self, addr: IpAddr) -> Option<&str> {
        self.live
            .iter()
            .find(|(_, p)| p.sends_vrrp_from(addr))
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
        vrrp_sources: m.vrrp_sources.clone(),
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
            vrrp_sources: vec![link_local(last)],
            incarnation: 1,
            state: MemberState::Alive,
            local: false,
        }
    }

    fn link_local(last: u8) -> IpAddr {
        format!("fe80::{last}").parse().unwrap()
    }

    #[test]
    fn up_down_drain_and_restart() {
        let mut r = Roster::new(["192.0.2.1".parse().unwrap()], []);
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

    #[test]
    fn agents_are_recognised_by_any_published_vrrp_source() {
        let own = link_local(1);
        let mut r = Roster::new(["192.0.2.1".parse().unwrap(), own], []);
        assert!(r.is_agent(own));
        assert!(!r.is_agent(link_local(2)), "unknown before gossip says so");

        r.apply(&MembershipEvent::MemberUp(info("lb2", 2, false)), 10);
        assert!(r.is_agent(link_local(2)));
        assert_eq!(r.live_at(link_local(2)), Some("lb2"));
        assert_eq!(r.live_at(link_local(3)), None);

        // A new link-local (interface re-created) arrives as a metadata change.
        let mut moved = info("lb2", 2, false);
        moved.vrrp_sources = vec![link_local(9)];
        let changed = MembershipEvent::MetaChanged {
            before: info("lb2", 2, false),
            after: moved,
        };
        assert!(!r.apply(&changed, 20), "sources do not change the election");
        assert_eq!(r.live_at(link_local(9)), Some("lb2"));
        assert_eq!(r.live_at(link_local(2)), None);
        assert_eq!(r.live()["lb2"].since_ms, 10);

        // Down, it stays an agent by every address it published.
        r.apply(&MembershipEvent::MemberDown(info("lb2", 2, false)), 30);
        assert_eq!(r.live_at(link_local(9)), None);
        assert!(r.is_agent(link_local(2)) && r.is_agent(link_local(9)));
    }
}
