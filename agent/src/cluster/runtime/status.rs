//! `lvs-agent status`: this node's view of the cluster.

use lvs_proto::v1::{GroupStatus, MemberStatus, RealServerStatus, ServiceStatus, StatusReply};

use crate::health::{self, view::HealthView};

use super::Runtime;
use crate::cluster::router::{Router, State};

impl Runtime {
    pub(super) async fn status(&self) -> StatusReply {
        let members = match self.membership.members().await {
            Ok(members) => members
                .into_iter()
                .map(|m| {
                    // `holds`: what the node itself claims (its gossip), so two
                    // holders show.
                    let (ready, drain, config_digest, holds, document, control_addr, sync) = if m
                        .local
                    {
                        let holds = self.held.keys().cloned().collect();
                        (
                            self.ready_since_ms.is_some(),
                            self.drained,
                            self.digest,
                            holds,
                            self.document.stamp,
                            self.document.control_addr.clone(),
                            self.sync,
                        )
                    } else {
                        let claims = self
                            .roster
                            .live_claims()
                            .find(|(id, _)| **id == m.node_id)
                            .map(|(_, c)| c);
                        (
                            self.roster.says_ready(&m.node_id),
                            self.roster.says_drained(&m.node_id),
                            claims.map_or(0, |c| c.config_digest),
                            claims.map_or_else(Vec::new, |c| c.held.clone()),
                            claims.map_or_else(Default::default, |c| c.document.stamp),
                            claims.map_or_else(String::new, |c| c.document.control_addr.clone()),
                            claims.map_or_else(Default::default, |c| c.sync),
                        )
                    };
                    MemberStatus {
                        live: m.is_live(),
                        syncid: u32::from(m.syncid),
                        holds,
                        node_id: m.node_id,
                        addr: m.addr.to_string(),
                        drain,
                        local: m.local,
                        ready,
                        config_digest,
                        config_version: document.version,
                        document_digest: document.digest,
                        control_addr,
                        sync_master: sync.master,
                        sync_backup: sync.backup,
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
                    addresses: g.addresses.iter().map(ToString::to_string).collect(),
                    state: match self.routers.get(&g.name).map(Router::state) {
                        Some(State::Master) => "MASTER",
                        Some(State::Backup) => "BACKUP",
                        Some(State::Initialize) | None => "INIT",
                    }
                    .to_owned(),
                    priority: u32::from(g.priority_of(&self.node.id).get()),
                    since_unix_ms: self.since.get(&g.name).copied().unwrap_or(0),
                    vrrp_id: u32::from(g.vrrp_id),
                }
            })
            .collect();
        let services = self.services_status();
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
            services,
        }
    }

    /// Each service's real servers as this node sees them, and the ones that are down
    /// here or on a peer (peers with other services are not compared).
    fn services_status(&self) -> Vec<ServiceStatus> {
        let ours = &self.health_view;
        let peers: Vec<(&String, &HealthView)> = self
            .roster
            .live_claims()
            .map(|(id, c)| (id, &c.health))
            .filter(|(_, v)| v.services_digest == ours.services_digest)
            .collect();
        let mut index = 0;
        let mut out = Vec::new();
        for s in &self.cluster.services {
            let mut status = ServiceStatus {
                service: s.key().map_or_else(String::new, |k| k.to_string()),
                total: s.real_servers.len() as u32,
                ..ServiceStatus::default()
            };
            for rs in &s.real_servers {
                let up = self.health.member(s, rs).up;
                status.healthy += u32::from(up);
                let (down_on, up_on): (Vec<&String>, Vec<&String>) = peers
                    .iter()
                    .map(|(id, v)| (*id, v.is_down(index)))
                    .fold((Vec::new(), Vec::new()), |(mut d, mut u), (id, down)| {
                        if down {
                            d.push(id)
                        } else {
                            u.push(id)
                        }
                        (d, u)
                    });
                if !up || !down_on.is_empty() {
                    let last_failure = health::spec::checks(s, rs)
                        .iter()
                        .filter_map(|k| self.health.verdicts.get(k))
                        .find(|v| !v.up)
                        .and_then(|v| v.last_failure.clone())
                        .unwrap_or_default();
                    status.troubled.push(RealServerStatus {
                        real_server: format!("{}:{}", rs.address, rs.port.unwrap_or(0)),
                        up,
                        last_failure,
                        down_on: down_on.into_iter().cloned().collect(),
                        up_on: up_on.into_iter().cloned().collect(),
                    });
                }
                index += 1;
            }
            out.push(status);
        }
        out
    }
}
