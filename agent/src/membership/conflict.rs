//! Detects two live directors claiming the same node id or the same syncid.
//!
//! foca keys members by gossip address, so two processes with one node id on
//! different addresses are both members as far as SWIM is concerned. A node
//! restarted on a new address looks the same for a while (its previous life
//! stays a member until declared down), so a node-id conflict is only
//! reported once an *older or equal* life is heard sending after a newer one:
//! a dead process sends nothing.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::SocketAddr,
};

use super::identity::NodeIdentity;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// Two live processes claim one node id.
    NodeId {
        node_id: String,
        addrs: [SocketAddr; 2],
        /// The process started later (higher incarnation; on a tie, the higher
        /// address): it is the one that must stand back.
        newer: SocketAddr,
    },
    /// Two live nodes master the same IPVS syncid.
    Syncid { syncid: u8, node_ids: Vec<String> },
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::NodeId {
                node_id,
                addrs,
                newer,
            } => write!(
                f,
                "node id {node_id} used at {} and {}; the newer, {newer}, holds nothing",
                addrs[0], addrs[1]
            ),
            Conflict::Syncid { syncid, node_ids } => {
                write!(f, "syncid {syncid} used by {}", node_ids.join(", "))
            }
        }
    }
}

pub struct ConflictDetector {
    local_node_id: String,
    local_addr: SocketAddr,
    local_incarnation: u64,
    /// Newest life heard sending, per node id.
    newest: HashMap<String, NodeIdentity>,
    reported_node_ids: HashSet<(String, SocketAddr, SocketAddr)>,
    reported_syncids: HashSet<(u8, Vec<String>)>,
}

impl ConflictDetector {
    pub fn new(local_node_id: &str, local_addr: SocketAddr, local_incarnation: u64) -> Self {
        Self {
            local_node_id: local_node_id.to_owned(),
            local_addr,
            local_incarnation,
            newest: HashMap::new(),
            reported_node_ids: HashSet::new(),
            reported_syncids: HashSet::new(),
        }
    }

    /// Called with the sender of every authenticated packet. Returns a
    /// conflict the first time a given pair of addresses is caught.
    pub fn observe_sender(&mut self, src: &NodeIdentity) -> Option<Conflict> {
        if src.node_id.is_empty() {
            return None;
        }
        let rival = if src.node_id == self.local_node_id {
            // Any other address using our id is alive: it just sent this.
            (src.addr != self.local_addr).then_some((self.local_addr, self.local_incarnation))
        } else {
            match self.newest.get(&src.node_id) {
                Some(prev) if prev.addr != src.addr && src.incarnation <= prev.incarnation => {
                    Some((prev.addr, prev.incarnation))
                }
                Some(prev) if src.incarnation < prev.incarnation => None,
                _ => {
                    self.newest.insert(src.node_id.clone(), src.clone());
                    None
                }
            }
        }?;
        let (rival, rival_incarnation) = rival;
        let newer = if (src.incarnation, src.addr) > (rival_incarnation, rival) {
            src.addr
        } else {
            rival
        };
        let pair = (rival.min(src.addr), rival.max(src.addr));
        self.reported_node_ids
            .insert((src.node_id.clone(), pair.0, pair.1))
            .then(|| Conflict::NodeId {
                node_id: src.node_id.clone(),
                addrs: [pair.0, pair.1],
                newer,
            })
    }

    /// Checks the live set (the local identity included) for syncids claimed
    /// by several node ids. Each conflict is returned once while it lasts.
    pub fn check_syncids<'a>(
        &mut self,
        live: impl IntoIterator<Item = &'a NodeIdentity>,
    ) -> Vec<Conflict> {
        let mut by_syncid: BTreeMap<u8, BTreeSet<&str>> = BTreeMap::new();
        for id in live {
            if id.meta.syncid != 0 {
                by_syncid
                    .entry(id.meta.syncid)
                    .or_default()
                    .insert(&id.node_id);
            }
        }
        let current: HashSet<(u8, Vec<String>)> = by_syncid
            .into_iter()
            .filter(|(_, nodes)| nodes.len() > 1)
            .map(|(syncid, nodes)| (syncid, nodes.into_iter().map(str::to_owned).collect()))
            .collect();
        let mut fresh: Vec<_> = current
            .difference(&self.reported_syncids)
            .cloned()
            .collect();
        fresh.sort();
        // Forget resolved conflicts so a recurrence is reported again.
        self.reported_syncids = current;
        fresh
            .into_iter()
            .map(|(syncid, node_ids)| Conflict::Syncid { syncid, node_ids })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::identity::test_identity;

    #[test]
    fn restart_on_same_or_new_address_is_not_a_conflict() {
        let mut d = ConflictDetector::new("lb1", test_identity("lb1", 1, 1).addr, 1);
        assert_eq!(d.observe_sender(&test_identity("lb2", 2, 100)), None);
        assert_eq!(d.observe_sender(&test_identity("lb2", 2, 200)), None);
        assert_eq!(d.observe_sender(&test_identity("lb2", 3, 300)), None);
        assert_eq!(d.observe_sender(&test_identity("lb2", 3, 300)), None);
    }

    #[test]
    fn an_older_life_still_sending_is_a_conflict_reported_once() {
        let mut d = ConflictDetector::new("lb1", test_identity("lb1", 1, 1).addr, 1);
        let older = test_identity("lb2", 2, 100);
        let newer = test_identity("lb2", 3, 200);
        assert_eq!(d.observe_sender(&older), None);
        assert_eq!(d.observe_sender(&newer), None);
        let conflict = Conflict::NodeId {
            node_id: "lb2".into(),
            addrs: [older.addr, newer.addr],
            newer: newer.addr,
        };
        assert_eq!(d.observe_sender(&older), Some(conflict));
        assert_eq!(d.observe_sender(&older), None);
        assert_eq!(d.observe_sender(&newer), None);
    }

    #[test]
    fn another_process_with_our_id_is_a_conflict() {
        let local = test_identity("lb1", 1, 1);
        let mut d = ConflictDetector::new("lb1", local.addr, 5);
        // Started before us (incarnation 0 < 5): we are the newer one.
        assert!(matches!(
            d.observe_sender(&test_identity("lb1", 9, 0)),
            Some(Conflict::NodeId { newer, .. }) if newer == local.addr
        ));
        assert!(matches!(
            d.observe_sender(&test_identity("lb1", 10, 6)),
            Some(Conflict::NodeId { newer, .. }) if newer.port() == 10
        ));
    }

    #[test]
    fn duplicate_syncids_are_reported_while_they_last() {
        let mut d = ConflictDetector::new("lb1", test_identity("lb1", 1, 1).addr, 1);
        let a = test_identity("lb1", 1, 1);
        let b = test_identity("lb2", 2, 1);
        let mut c = test_identity("lb3", 3, 1);
        c.meta.syncid = 2;
        let expected = vec![Conflict::Syncid {
            syncid: 1,
            node_ids: vec!["lb1".into(), "lb2".into()],
        }];
        assert_eq!(d.check_syncids([&a, &b, &c]), expected);
        assert_eq!(d.check_syncids([&a, &b, &c]), vec![]);
        assert_eq!(d.check_syncids([&a, &c]), vec![]);
        assert_eq!(d.check_syncids([&a, &b]), expected);
    }

    #[test]
    fn syncid_zero_and_one_node_on_two_addresses_are_fine() {
        let mut d = ConflictDetector::new("lb1", test_identity("lb1", 1, 1).addr, 1);
        let mut a = test_identity("lb2", 2, 1);
        let mut b = test_identity("lb3", 3, 1);
        a.meta.syncid = 0;
        b.meta.syncid = 0;
        let old_life = test_identity("lb4", 4, 1);
        let new_life = test_identity("lb4", 5, 2);
        assert_eq!(d.check_syncids([&a, &b, &old_life, &new_life]), vec![]);
    }
}
