//! Who a member is: the foca `Identity` of an lvs-agent director.
//!
//! Metadata (syncid, software version, VRRP sources) lives inside the identity rather
//! than in foca custom broadcasts: a member is then never known as up without
//! its metadata (the ownership election needs the syncid the moment a node
//! appears), late joiners get it from the ordinary membership feed, and foca's
//! rename machinery (`win_addr_conflict`) gives a versioned last-writer-wins
//! update for free. Changing metadata is `Foca::change_identity` with a bumped
//! `revision`; it is rare (an upgrade, a re-created VIP interface), so the extra bytes per message are
//! cheap on a LAN.

use std::net::{IpAddr, SocketAddr};

/// Metadata a director publishes with its membership.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeMeta {
    /// IPVS sync daemon id this node masters (1..=255, 0 = none).
    pub syncid: u8,
    /// lvs-agent software version.
    pub version: String,
    /// Addresses this node sends VRRP adverts from (IPv4 source, IPv6 link-locals), so
    /// peers tell its adverts from a foreign router's. Last, so that in the precedence
    /// tie-break a copy relayed by an agent that drops the field loses (see the proto).
    pub vrrp_sources: Vec<IpAddr>,
}

/// The identity of one life of one director.
///
/// foca keys members by [`NodeIdentity::addr`] (the gossip address), so a node
/// restarting on the same address replaces its previous life at once; the
/// node id is policed separately (see `conflict`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    pub node_id: String,
    pub addr: SocketAddr,
    /// Process start time in ms since the Unix epoch.
    pub incarnation: u64,
    /// Bumped on every metadata change and automatic rejoin.
    pub revision: u32,
    pub meta: NodeMeta,
}

impl NodeIdentity {
    /// The identity a joiner addresses an announce to when it knows only the
    /// peer's address: foca accepts an announce whose destination has the
    /// receiver's `addr()`.
    pub fn placeholder(addr: SocketAddr) -> Self {
        Self {
            node_id: String::new(),
            addr,
            incarnation: 0,
            revision: 0,
            meta: NodeMeta {
                syncid: 0,
                version: String::new(),
                vrrp_sources: Vec::new(),
            },
        }
    }

    /// Total order deciding which of two identities sharing an address is
    /// kept: newer life first, then newer revision, then a deterministic
    /// tie-break so that two nodes never both win.
    fn precedence(&self) -> (u64, u32, &str, &NodeMeta) {
        (self.incarnation, self.revision, &self.node_id, &self.meta)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    /// Declared down while alive (e.g. after a partition): come back at once
    /// with a higher revision, which wins the address conflict.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            revision: self.revision.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.precedence() > adversary.precedence()
    }
}

#[cfg(test)]
pub(crate) fn test_identity(node_id: &str, port: u16, incarnation: u64) -> NodeIdentity {
    NodeIdentity {
        node_id: node_id.to_owned(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        incarnation,
        revision: 0,
        meta: NodeMeta {
            syncid: 1,
            version: "0.1.0".to_owned(),
            vrrp_sources: vec![
                IpAddr::from([127, 0, 0, 1]),
                "fe80::1".parse().expect("an IPv6 literal"),
            ],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn newer_incarnation_wins_then_newer_revision() {
        let old = test_identity("lb1", 7946, 100);
        let restarted = test_identity("lb1", 7946, 200);
        assert!(restarted.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&restarted));

        let renewed = old.renew().expect("renew always yields an identity");
        assert_eq!(renewed.revision, 1);
        assert!(renewed.win_addr_conflict(&old));
        assert!(restarted.win_addr_conflict(&renewed));
    }

    #[test]
    fn exactly_one_side_wins_a_tie() {
        let a = test_identity("lb1", 7946, 100);
        let mut b = a.clone();
        b.meta.syncid = 9;
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
    }

    #[test]
    fn a_copy_relayed_without_vrrp_sources_loses() {
        let full = test_identity("lb1", 7946, 100);
        let mut stripped = full.clone();
        stripped.meta.vrrp_sources.clear();
        assert!(full.win_addr_conflict(&stripped));
        assert!(!stripped.win_addr_conflict(&full));
    }
}
