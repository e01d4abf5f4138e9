//! The membership view the election needs, kept from membership events (pure).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::membership::{MemberInfo, MembershipEvent, PeerClaims};
use crate::ownership::Member;

/// One live peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Its process life: claims of another life are not its own.
    pub incarnation: u64,
    /// Addresses its VRRP adverts come from (the gossip IP is one too).
    pub vrrp_sources: Vec<IpAddr>,
    /// When this node saw it come up (its clock, ms).
    pub up_ms: u64,
}

/// A node's newest claims, when this node saw that life become ready, and when it saw
/// it undrained (an undrained node is eligible from then on, like one just up).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claimed {
    claims: PeerClaims,
    ready_since_ms: Option<u64>,
    undrained_ms: u64,
}

/// Live peers by node id, their claims, and the node id behind every address an agent
/// was ever seen sending VRRP from.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    live: BTreeMap<String, Peer>,
    /// Newest claims per node id, kept across liveness changes (they may arrive before
    /// the member is up); matched to a live peer by incarnation.
    claims: BTreeMap<String, Claimed>,
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
            claims: BTreeMap::new(),
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
                    // Back up, that life is ready or holds groups only once it says so
                    // again: what it claimed may have changed unheard (a link cut).
                    if self
                        .claims
                        .get(&m.node_id)
                        .is_some_and(|c| c.claims.incarnation == m.incarnation)
                    {
                        self.claims.remove(&m.node_id);
                    }
                }
                same
            }
            MembershipEvent::MetaChanged { after, .. } => {
                self.learn_sources(after);
                let Some(p) = self.live.get_mut(&after.node_id) else {
                    return false;
                };
                p.vrrp_sources.clone_from(&after.vrrp_sources);
                false
            }
            MembershipEvent::Claims(c) => {
                let old = self
                    .claims
                    .get(&c.node_id)
                    .filter(|old| old.claims.incarnation == c.incarnation);
                let ready_since_ms = match old {
                    Some(old) if c.ready => old.ready_since_ms.or(Some(now_ms)),
                    _ => c.ready.then_some(now_ms),
                };
                let undrained_ms = match old {
                    Some(old) if old.claims.drain && !c.drain => now_ms,
                    Some(old) => old.undrained_ms,
                    None => 0,
                };
                self.claims.insert(
                    c.node_id.clone(),
                    Claimed {
                        claims: c.clone(),
                        ready_since_ms,
                        undrained_ms,
                    },
                );
                true
            }
            MembershipEvent::Resync { members, claims } => {
                // Keep what still holds (so eligibility times survive), take the rest.
                self.live.retain(|id, p| {
                    members.iter().any(|m| {
                        m.node_id == *id && m.addr == p.addr && m.incarnation == p.incarnation
                    })
                });
                for m in members {
                    self.learn_sources(m);
                    if !self.live.contains_key(&m.node_id) {
                        self.live.insert(m.node_id.clone(), peer(m, now_ms));
                    }
                }
                for c in claims {
                    self.apply(&MembershipEvent::Claims(c.clone()), now_ms);
                }
                true
            }
            MembershipEvent::Conflict(_) | MembershipEvent::Handover { .. } => false,
        }
    }

    /// This node sends VRRP from `sources` too (a re-created interface).
    pub fn learn_own(&mut self, own_id: &str, sources: &[IpAddr]) {
        for addr in sources {
            self.agents.insert(*addr, own_id.to_owned());
        }
    }

    fn learn_sources(&mut self, m: &MemberInfo) {
        for addr in std::iter::once(m.addr.ip()).chain(m.vrrp_sources.iter().copied()) {
            self.agents.insert(addr, m.node_id.clone());
        }
    }

    /// The claims of live peer `id`'s present life.
    fn claimed(&self, id: &str) -> Option<&Claimed> {
        let peer = self.live.get(id)?;
        self.claims
            .get(id)
            .filter(|c| c.claims.incarnation == peer.incarnation)
    }

    /// Since when live peer `id` counts as ready: from its claims, or, should none of
    /// its present life have reached us, once it has been up for `assume_after_ms`
    /// (longer than any node settles).
    fn ready_since(&self, id: &str, p: &Peer, now_ms: u64, assume_after_ms: u64) -> Option<u64> {
        let assumed = p.up_ms.saturating_add(assume_after_ms);
        match self.claimed(id) {
            Some(c) => c.ready_since_ms.filter(|_| c.claims.ready),
            None => (now_ms >= assumed).then_some(assumed),
        }
    }

    /// The election's members: this node (`own`: `None` when not ready), and the live
    /// peers that are ready (see `ready_since`).
    pub fn members(
        &self,
        own: Option<Member>,
        now_ms: u64,
        assume_ready_after_ms: u64,
    ) -> Vec<Member> {
        let me = own;
        let peers = self.live.iter().filter_map(|(id, p)| {
            let ready = self.ready_since(id, p, now_ms, assume_ready_after_ms)?;
            let claimed = self.claimed(id);
            Some(Member {
                id: id.clone(),
                drained: claimed.is_some_and(|c| c.claims.drain),
                eligible_since_ms: ready
                    .max(p.up_ms)
                    .max(claimed.map_or(0, |c| c.undrained_ms)),
                pins: claimed.map_or_else(Default::default, |c| c.claims.pins.clone()),
            })
        });
        me.into_iter().chain(peers).collect()
    }

    /// Live peers' present claims, by node id.
    pub fn live_claims(&self) -> impl Iterator<Item = (&String, &PeerClaims)> {
        self.live
            .keys()
            .filter_map(|id| Some((id, &self.claimed(id)?.claims)))
    }

    /// `id` handed `group` over: it no longer holds it (until claims say otherwise).
    pub fn void_claim(&mut self, id: &str, group: &str) {
        if let Some(c) = self.claims.get_mut(id) {
            c.claims.held.retain(|g| g != group);
        }
    }

    /// Whether live peer `id` says it is ready.
    pub fn says_ready(&self, id: &str) -> bool {
        self.claimed(id).is_some_and(|c| c.claims.ready)
    }

    /// Whether live peer `id` says it is drained.
    pub fn says_drained(&self, id: &str) -> bool {
        self.claimed(id).is_some_and(|c| c.claims.drain)
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
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
        incarnation: m.incarnation,
        vrrp_sources: m.vrrp_sources.clone(),
        up_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberState;

    fn info(id: &str, last: u8) -> MemberInfo {
        MemberInfo {
            node_id: id.into(),
            addr: SocketAddr::from(([192, 0, 2, last], 7946)),
            syncid: last,
            version: "0".into(),
            vrrp_sources: vec![link_local(last)],
            incarnation: 1,
            state: MemberState::Alive,
            local: false,
        }
    }

    fn claims(id: &str, incarnation: u64, ready: bool, held: &[&str]) -> MembershipEvent {
        MembershipEvent::Claims(PeerClaims {
            node_id: id.into(),
            incarnation,
            ready,
            config_digest: 1,
            held: held.iter().map(|s| s.to_string()).collect(),
            drain: false,
            health: Default::default(),
            document: Default::default(),
            pins: Default::default(),
            sync: Default::default(),
        })
    }

    fn drained(id: &str, drain: bool) -> MembershipEvent {
        let MembershipEvent::Claims(mut c) = claims(id, 1, true, &[]) else {
            unreachable!()
        };
        c.drain = drain;
        MembershipEvent::Claims(c)
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
        assert!(r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 10));
        r.apply(&claims("lb2", 1, true, &[]), 10);
        assert_eq!(r.agent_at("192.0.2.2".parse().unwrap()), Some("lb2"));
        let me = Member {
            id: "lb1".into(),
            drained: false,
            eligible_since_ms: 5,
            pins: Default::default(),
        };
        assert!(r.apply(&drained("lb2", true), 20));
        let members = r.members(Some(me.clone()), 20, 1000);
        assert_eq!(members.len(), 2);
        assert!(members[1].drained);
        // Undrained: eligible from then on, like a node just up.
        assert!(r.apply(&drained("lb2", false), 25));
        let members = r.members(Some(me), 30, 1000);
        assert_eq!(
            (members[1].drained, members[1].eligible_since_ms),
            (false, 25)
        );

        // Restarted at another address: the old life's down event comes late.
        assert!(r.apply(&MembershipEvent::MemberUp(info("lb2", 3)), 30));
        assert!(!r.apply(&MembershipEvent::MemberDown(info("lb2", 2)), 31));
        assert_eq!(r.live()["lb2"].up_ms, 30);
        assert!(r.apply(&MembershipEvent::MemberDown(info("lb2", 3)), 40));
        assert!(r.live().is_empty());
        // Down agents stay known as agents.
        assert_eq!(r.agent_at("192.0.2.2".parse().unwrap()), Some("lb2"));
    }

    #[test]
    fn only_ready_peers_are_members_eligible_from_their_readiness() {
        let mut r = Roster::new("lb1", []);
        r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 10);
        assert_eq!(r.members(None, 400, 1000), []);
        // Its claims never reached us: assumed ready after 1 s up.
        let assumed = r.members(None, 1010, 1000);
        assert_eq!(assumed[0].eligible_since_ms, 1010);

        r.apply(&claims("lb2", 1, false, &[]), 100);
        assert!(!r.says_ready("lb2"));
        assert_eq!(r.members(None, 5000, 1000), [], "it says it is not ready");
        assert!(r.apply(&claims("lb2", 1, true, &[]), 500));
        let members = r.members(None, 600, 1000);
        assert_eq!((members.len(), members[0].eligible_since_ms), (1, 500));
        // Newer claims of the same life keep the readiness time.
        r.apply(&claims("lb2", 1, true, &["g1"]), 700);
        assert_eq!(r.members(None, 800, 1000)[0].eligible_since_ms, 500);
        let held: Vec<_> = r
            .live_claims()
            .map(|(id, c)| (id.clone(), c.held.clone()))
            .collect();
        assert_eq!(held, [("lb2".to_string(), vec!["g1".to_string()])]);

        r.void_claim("lb2", "g1");
        assert_eq!(r.live_claims().next().map(|(_, c)| c.held.len()), Some(0));

        // Claims of another life are not this one's.
        r.apply(&claims("lb2", 9, true, &["g2"]), 900);
        assert_eq!(r.live_claims().count(), 0);
        assert!(!r.says_ready("lb2"));
    }

    #[test]
    fn a_snapshot_replaces_the_view_after_dropped_events() {
        let mut r = Roster::new("lb1", []);
        r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 10);
        r.apply(&MembershipEvent::MemberUp(info("lb3", 3)), 10);
        // lb3's MemberDown and lb4's MemberUp and claims were dropped.
        let snapshot = MembershipEvent::Resync {
            members: vec![info("lb2", 2), info("lb4", 4)],
            claims: vec![PeerClaims {
                node_id: "lb4".into(),
                incarnation: 1,
                ready: true,
                config_digest: 1,
                held: vec!["g1".into()],
                drain: false,
                health: Default::default(),
                document: Default::default(),
                pins: Default::default(),
                sync: Default::default(),
            }],
        };
        assert!(r.apply(&snapshot, 50));
        let live: Vec<_> = r.live().keys().cloned().collect();
        assert_eq!(live, ["lb2", "lb4"]);
        assert_eq!(r.live()["lb2"].up_ms, 10, "kept as it was");
        assert!(r.says_ready("lb4"));
        assert_eq!(r.agent_at("192.0.2.4".parse().unwrap()), Some("lb4"));
    }

    #[test]
    fn a_life_down_and_back_counts_as_ready_only_once_it_says_so_again() {
        let mut r = Roster::new("lb1", []);
        r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 10);
        r.apply(&claims("lb2", 1, true, &["g1"]), 10);
        assert!(r.says_ready("lb2"));
        r.apply(&MembershipEvent::MemberDown(info("lb2", 2)), 20);
        r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 30);
        assert!(!r.says_ready("lb2"));
        assert_eq!(r.live_claims().count(), 0, "its holdings are unknown too");
        assert_eq!(r.members(None, 40, 1000), []);
        r.apply(&claims("lb2", 1, true, &[]), 50);
        assert_eq!(r.members(None, 60, 1000)[0].eligible_since_ms, 50);
    }

    #[test]
    fn claims_may_come_before_the_member() {
        let mut r = Roster::new("lb1", []);
        r.apply(&claims("lb2", 1, true, &["g1"]), 5);
        r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 10);
        assert!(r.says_ready("lb2"));
        assert_eq!(r.members(None, 10, 1000)[0].eligible_since_ms, 10);
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

        r.apply(&MembershipEvent::MemberUp(info("lb2", 2)), 10);
        assert_eq!(r.agent_at(link_local(2)), Some("lb2"));

        // A new link-local (interface re-created) arrives as a metadata change.
        let mut moved = info("lb2", 2);
        moved.vrrp_sources = vec![link_local(9)];
        assert!(!r.apply(&changed(info("lb2", 2), moved), 20));
        assert_eq!(r.agent_at(link_local(9)), Some("lb2"));
        assert_eq!(r.live()["lb2"].up_ms, 10);
    }
}
