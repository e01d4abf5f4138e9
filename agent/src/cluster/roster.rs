//! The membership view the election needs, kept from membership events (pure).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::membership::{MemberInfo, MembershipEvent};
use crate::ownership::Member;

/// One live peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub drain: bool,
    /// May be handed VIP groups (settled, links up).
    pub ready: bool,
    pub config_digest: u64,
    /// The groups it claims to hold.
    pub held: Vec<String>,
    /// Addresses its VRRP adverts come from (the gossip IP is one too).
    pub vrrp_sources: Vec<IpAddr>,
    /// When this node saw it become ready (its clock, ms): the election's
    /// `eligible_since_ms`, so `preempt_delay` counts from its readiness.
    pub since_ms: u64,
}

/// Live peers by node id, and the node id behind every address an agent was ever seen
/// sending VRRP from.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    live: BTreeMap<String, Peer>,
    /// VRRP from these addresses comes from agents (live or not), never from a foreign
    /// router: gossip IPs and every published VRRP source (IPv6 adverts come from
    /// link-locals). Learnt from gossip only: a `join` address that never answers gossip
    /// is a VRRP router like any other (a keepalived peer).
    agents: BTreeMap<IpAddr, String>,
}

impl Roster {
    /// `own`: this node's id, gossip IP and VRRP sources.
    pub fn new(own_id: &str, own: impl IntoIterator<Item = IpAddr>) -> Self {
        Roster {
            live: BTreeMap::new(),
            agents: own.into_iter().map(|a| (a, own_id.to_owned())).collect(),
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
                let became_eligible = (p.drain && !after.drain) || (!p.ready && after.ready);
                let changed = p.drain != after.drain
                    || p.ready != after.ready
                    || p.config_digest != after.config_digest
                    || p.held != after.held;
                if became_eligible {
                    // Undrained or ready now: eligible from now on, like a node that
                    // just came up.
                    p.since_ms = now_ms;
                }
                p.drain = after.drain;
                p.ready = after.ready;
                p.config_digest = after.config_digest;
                p.held.clone_from(&after.held);
                changed
            }
            MembershipEvent::Conflict(_) | MembershipEvent::Handover { .. } => false,
        }
    }

    fn learn_sources(&mut self, m: &MemberInfo) {
        for addr in std::iter::once(m.addr.ip()).chain(m.vrrp_sources.iter().copied()) {
            self.agents.insert(addr, m.node_id.clone());
        }
    }

    /// The election's members: this node, eligible since `own_since_ms` (`None`: not
    /// ready), and the live peers that are ready.
    pub fn members(&self, own_id: &str, own_since_ms: Option<u64>) -> Vec<Member> {
        let me = own_since_ms.map(|since| Member {
            id: own_id.to_owned(),
            drained: false,
            eligible_since_ms: since,
        });
        let peers = self
            .live
            .iter()
            .filter(|(_, p)| p.ready)
            .map(|(id, p)| Member {
                id: id.clone(),
                drained: p.drain,
                eligible_since_ms: p.since_ms,
            });
        me.into_iter().chain(peers).collect()
    }

    /// Live peers, by node id.
    pub fn peers(&self) -> impl Iterator<Item = (&String, &Peer)> {
        self.live.iter()
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

    /// The node id of the agent (live or not) that sends VRRP from `addr`.
    pub fn agent_at(&self, addr: IpAddr) -> Option<&str> {
        self.agents.get(&addr).map(String::as_str)
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
        ready: m.ready,
        config_digest: m.config_digest,
        held: m.held.clone(),
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
            ready: true,
            config_digest: 1,
            held: Vec::new(),
            vrrp_sources: vec![link_local(last)],
            incarnation: 1,
            state: MemberState::Alive,
            local: false,
        }
    }

    fn link_local(last: u8) -> IpAddr {
        format!("fe80::{last}").parse().unwrap()
    }

    fn changed(before: MemberInfo, after: MemberInfo) -> MembershipEvent {
        MembershipEvent::MetaChanged { before, after }
    }

    #[test]
    fn up_down_drain_and_restart() {
        let mut r = Roster::new("lb1", ["192.0.2.1".parse().unwrap()]);
        assert!(r.apply(&MembershipEvent::MemberUp(info("lb2", 2, false)), 10));
        assert_eq!(r.agent_at("192.0.2.2".parse().unwrap()), Some("lb2"));
        assert!(r.apply(&changed(info("lb2", 2, false), info("lb2", 2, true)), 20));
        let members = r.members("lb1", Some(5));
        assert_eq!(members.len(), 2);
        assert!(members[1].drained);

        // Restarted at another address: the old life's down event comes late.
        assert!(r.apply(&MembershipEvent::MemberUp(info("lb2", 3, false)), 30));
        assert!(!r.apply(&MembershipEvent::MemberDown(info("lb2", 2, false)), 31));
        assert_eq!(r.live()["lb2"].since_ms, 30);
        assert!(r.apply(&MembershipEvent::MemberDown(info("lb2", 3, false)), 40));
        assert!(r.live().is_empty());
        // Down agents stay known as agents.
        assert_eq!(r.agent_at("192.0.2.2".parse().unwrap()), Some("lb2"));
    }

    #[test]
    fn only_ready_peers_are_members_eligible_from_their_readiness() {
        let mut r = Roster::new("lb1", []);
        let mut starting = info("lb2", 2, false);
        starting.ready = false;
        r.apply(&MembershipEvent::MemberUp(starting.clone()), 10);
        assert_eq!(r.members("lb1", None), []);
        assert!(r.apply(&changed(starting, info("lb2", 2, false)), 500));
        let members = r.members("lb1", None);
        assert_eq!((members.len(), members[0].eligible_since_ms), (1, 500));

        // Claims and digests change the election's inputs too.
        let mut holding = info("lb2", 2, false);
        holding.held = vec!["g1".into()];
        assert!(r.apply(&changed(info("lb2", 2, false), holding.clone()), 600));
        assert_eq!(r.live()["lb2"].held, ["g1"]);
        assert_eq!(r.live()["lb2"].since_ms, 500);
        let mut other = holding.clone();
        other.config_digest = 9;
        assert!(r.apply(&changed(holding, other), 700));
        assert_eq!(r.live()["lb2"].config_digest, 9);
    }

    #[test]
    fn agents_are_recognised_by_any_published_vrrp_source_and_seeds_are_not() {
        let own = link_local(1);
        let mut r = Roster::new("lb1", ["192.0.2.1".parse().unwrap(), own]);
        assert_eq!(r.agent_at(own), Some("lb1"));
        assert_eq!(
            r.agent_at(link_local(2)),
            None,
            "unknown before gossip says so"
        );

        r.apply(&MembershipEvent::MemberUp(info("lb2", 2, false)), 10);
        assert_eq!(r.agent_at(link_local(2)), Some("lb2"));

        // A new link-local (interface re-created) arrives as a metadata change.
        let mut moved = info("lb2", 2, false);
        moved.vrrp_sources = vec![link_local(9)];
        assert!(!r.apply(&changed(info("lb2", 2, false), moved), 20));
        assert_eq!(r.agent_at(link_local(9)), Some("lb2"));
        assert_eq!(r.live()["lb2"].since_ms, 10);
    }
}
