//! `lvs-agent status`: this node's view of the cluster.

use lvs_proto::v1::{GroupStatus, MemberStatus, StatusReply};

use super::Runtime;

impl Runtime {
    pub(super) async fn status(&self) -> StatusReply {
        let members = match self.membership.members().await {
            Ok(members) => members
                .into_iter()
                .map(|m| {
                    let (ready, drain, config_digest) = if m.local {
                        (self.ready_since_ms.is_some(), self.drained, self.digest)
                    } else {
                        let digest = self
                            .roster
                            .live_claims()
                            .find(|(id, _)| **id == m.node_id)
                            .map_or(0, |(_, c)| c.config_digest);
                        (
                            self.roster.says_ready(&m.node_id),
                            self.roster.says_drained(&m.node_id),
                            digest,
                        )
                    };
                    MemberStatus {
                        live: m.is_live(),
                        node_id: m.node_id,
                        addr: m.addr.to_string(),
                        drain,
                        local: m.local,
                        ready,
                        config_digest,
                    }
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let now = self.now_ms();
        let groups = self
            .cluster
            .vip_groups
            .iter()
            .map(|g| {
                let heard = self.routers.get(&g.name).and_then(|r| r.heard(now));
                GroupStatus {
                    name: g.name.clone(),
                    owner: self
                        .owners
                        .get(&g.name)
                        .cloned()
                        .flatten()
                        .unwrap_or_default(),
                    held: self.held.contains_key(&g.name),
                    foreign_master: heard
                        .filter(|h| h.node.is_none())
                        .map(|h| h.src.to_string())
                        .unwrap_or_default(),
                }
            })
            .collect();
        StatusReply {
            node_id: self.node.id.to_string(),
            members,
            groups,
            vrrp_dropped: self
                .dropped
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            config_digest: self.digest,
            config_differs: self.differing.iter().cloned().collect(),
            conflicts: self.conflicts.clone(),
            gossip: self
                .membership
                .counters()
                .named()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}
