//! One simulated director: a real foca instance, the view it reports, and the
//! ownership election it would run on that view.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification};
use rand::{rngs::StdRng, SeedableRng};

use super::Traffic;
use crate::{
    membership::{self, NodeIdentity, ProtoCodec},
    ownership::{self, GroupSpec},
};

/// Group name → owner, as [`ownership::Election::owners`].
pub(super) type Owners = BTreeMap<String, Option<String>>;

pub(super) struct SimNode {
    pub(super) foca: Foca<NodeIdentity, ProtoCodec, StdRng, NoCustomBroadcast>,
    pub(super) runtime: AccumulatingRuntime<NodeIdentity>,
    /// The config `foca` runs with, re-sized as the view grows, as the
    /// membership driver does.
    swim: foca::Config,
    pub(super) alive: bool,
    pub(super) traffic: Traffic,
    /// When this node saw each live peer come up (virtual ms): the election's
    /// `eligible_since`, which only matters to a delayed preemption.
    up_since: HashMap<SocketAddr, u64>,
    started_ms: u64,
    owners: Owners,
    /// The view changed (or a preemption matured) since `owners` was computed;
    /// elections are lazy because a 1,000-node view changes a million times
    /// while the cluster forms.
    stale: bool,
    recheck_at_ms: Option<u64>,
}

impl SimNode {
    pub(super) fn new(identity: NodeIdentity, swim: foca::Config, seed: u64) -> Self {
        Self {
            foca: Foca::new(
                identity,
                swim.clone(),
                StdRng::seed_from_u64(seed),
                ProtoCodec,
            ),
            runtime: AccumulatingRuntime::new(),
            swim,
            alive: false,
            traffic: Traffic::default(),
            up_since: HashMap::new(),
            started_ms: 0,
            owners: Owners::new(),
            stale: true,
            recheck_at_ms: None,
        }
    }

    pub(super) fn start(&mut self, now_ms: u64) {
        self.alive = true;
        self.started_ms = now_ms;
        self.stale = true;
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.foca.identity().addr
    }

    /// Applies foca's pending notifications to the view.
    pub(super) fn absorb_notifications(&mut self, now_ms: u64) {
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    self.up_since.insert(id.addr, now_ms);
                    self.stale = true;
                    self.fit_dissemination();
                }
                OwnedNotification::MemberDown(id) => {
                    self.up_since.remove(&id.addr);
                    self.stale = true;
                }
                OwnedNotification::Rename(..) => self.stale = true,
                _ => {}
            }
        }
    }

    fn fit_dissemination(&mut self) {
        if let Some(swim) = membership::dissemination_for(&self.swim, self.foca.num_members() + 1) {
            self.foca
                .set_config(swim.clone())
                .expect("foca accepts a new max_transmissions");
            self.swim = swim;
        }
    }

    /// Gossip addresses of the peers this node counts as live (alive or suspect).
    pub(super) fn live_peers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.foca.iter_members().map(|m| m.id().addr)
    }

    /// This node's election on its own view, recomputed only when stale.
    pub(super) fn election(&mut self, groups: &[GroupSpec], now_ms: u64) -> &Owners {
        if self.recheck_at_ms.is_some_and(|at| at <= now_ms) {
            self.stale = true;
        }
        if self.stale {
            let local = self.foca.identity();
            let mut members = vec![member(local, self.started_ms)];
            members.extend(self.foca.iter_members().map(|m| {
                let since = self.up_since.get(&m.id().addr).copied().unwrap_or(now_ms);
                member(m.id(), since)
            }));
            let current: BTreeMap<String, String> = self
                .owners
                .iter()
                .filter_map(|(group, owner)| Some((group.clone(), owner.clone()?)))
                .collect();
            let election = ownership::elect(&members, groups, &current, now_ms);
            self.owners = election.owners;
            self.recheck_at_ms = election.recheck_at_ms;
            self.stale = false;
        }
        &self.owners
    }
}

pub(super) fn member(id: &NodeIdentity, since_ms: u64) -> ownership::Member {
    ownership::Member {
        id: id.node_id.clone(),
        drained: false,
        eligible_since_ms: since_ms,
        pins: Default::default(),
    }
}
