//! What the membership layer reports: member snapshots and change events,
//! derived by diffing foca's live member set before and after each step.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
};

use foca::{Member, State};

use super::{conflict::Conflict, identity::NodeIdentity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    /// Someone failed to probe it; still counted as live until declared down.
    Suspect,
    Down,
}

impl From<State> for MemberState {
    fn from(state: State) -> Self {
        match state {
            State::Alive => Self::Alive,
            State::Suspect => Self::Suspect,
            State::Down => Self::Down,
        }
    }
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub node_id: String,
    pub addr: SocketAddr,
    pub syncid: u8,
    pub version: String,
    /// Addresses its VRRP adverts come from.
    pub vrrp_sources: Vec<IpAddr>,
    pub incarnation: u64,
    pub state: MemberState,
    /// This is the local node.
    pub local: bool,
}

impl MemberInfo {
    pub(super) fn new(id: &NodeIdentity, state: MemberState, local: bool) -> Self {
        Self {
            node_id: id.node_id.clone(),
            addr: id.addr,
            syncid: id.meta.syncid,
            version: id.meta.version.clone(),
            vrrp_sources: id.meta.vrrp_sources.clone(),
            incarnation: id.incarnation,
            state,
            local,
        }
    }

    pub fn is_live(&self) -> bool {
        self.state != MemberState::Down
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member became live (joined, restarted, or came back).
    MemberUp(MemberInfo),
    /// A member left, was declared down, or was replaced by its next life.
    MemberDown(MemberInfo),
    /// A live member changed its syncid, version or VRRP sources.
    MetaChanged {
        before: MemberInfo,
        after: MemberInfo,
    },
    /// Two live nodes claim one node id or one syncid: misconfiguration.
    Conflict(Conflict),
    /// Node `from` handed VIP group `group` to this node (a planned move).
    Handover { from: String, group: String },
    /// A peer's newest claims (readiness, config digest, held groups).
    Claims(PeerClaims),
    /// Events were dropped (the receiver was full): the live members (this node not
    /// included) and the newest claims heard, to replace the receiver's view.
    Resync {
        members: Vec<MemberInfo>,
        claims: Vec<PeerClaims>,
    },
}

impl fmt::Display for MemberInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} (syncid {}, version {}, incarnation {})",
            self.node_id, self.addr, self.syncid, self.version, self.incarnation
        )
    }
}

/// One line per event, for the log.
impl fmt::Display for MembershipEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipEvent::MemberUp(m) => write!(f, "member up: {m}"),
            MembershipEvent::MemberDown(m) => write!(f, "member down: {m}"),
            MembershipEvent::MetaChanged { after, .. } => write!(f, "member changed: {after}"),
            MembershipEvent::Conflict(c) => write!(f, "conflict: {c}"),
            MembershipEvent::Handover { from, group } => {
                write!(f, "{from} handed {group} to this node")
            }
            MembershipEvent::Claims(c) => write!(
                f,
                "claims of {}: holds [{}]{}{}",
                c.node_id,
                c.held.join(" "),
                if c.ready { "" } else { ", not ready" },
                if c.drain { ", drained" } else { "" }
            ),
            MembershipEvent::Resync { members, claims } => write!(
                f,
                "resync: {} members, {} claims",
                members.len(),
                claims.len()
            ),
        }
    }
}

/// What one node life claims for the VIP group election (`GossipClaims`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerClaims {
    pub node_id: String,
    /// The sender's process life (`GossipIdentity.incarnation`).
    pub incarnation: u64,
    /// Settled, VIP links up: may be handed VIP groups.
    pub ready: bool,
    /// Digest of its cluster config part.
    pub config_digest: u64,
    /// The VIP groups it holds, sorted.
    pub held: Vec<String>,
    /// Drained by the operator.
    pub drain: bool,
    /// Its health verdicts.
    pub health: crate::health::view::HealthView,
    /// The cluster document it runs.
    pub document: super::DocumentClaim,
    /// Groups moved to it by the operator, with each pin's stamp.
    pub pins: BTreeMap<String, u64>,
    /// Its sync daemons.
    pub sync: super::SyncRunning,
}

/// foca's live (alive or suspect) members, keyed like foca keys them.
pub type LiveSet = BTreeMap<SocketAddr, Member<NodeIdentity>>;

/// The events that turn `before` into `after`.
pub fn diff(before: &LiveSet, after: &LiveSet) -> Vec<MembershipEvent> {
    let info = |m: &Member<NodeIdentity>| MemberInfo::new(m.id(), m.state().into(), false);
    let down = |m: &Member<NodeIdentity>| MemberInfo::new(m.id(), MemberState::Down, false);
    let mut events = Vec::new();
    for (addr, old) in before {
        match after.get(addr) {
            None => events.push(MembershipEvent::MemberDown(down(old))),
            Some(new) => {
                let (o, n) = (old.id(), new.id());
                if o.node_id != n.node_id || o.incarnation != n.incarnation {
                    events.push(MembershipEvent::MemberDown(down(old)));
                    events.push(MembershipEvent::MemberUp(info(new)));
                } else if o.meta != n.meta {
                    events.push(MembershipEvent::MetaChanged {
                        before: info(old),
                        after: info(new),
                    });
                }
            }
        }
    }
    for (addr, new) in after {
        if !before.contains_key(addr) {
            events.push(MembershipEvent::MemberUp(info(new)));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::identity::test_identity;

    fn set(ids: &[&NodeIdentity]) -> LiveSet {
        ids.iter()
            .map(|id| (id.addr, Member::alive((*id).clone())))
            .collect()
    }

    fn kinds(events: &[MembershipEvent]) -> Vec<(&'static str, &str)> {
        events
            .iter()
            .map(|e| match e {
                MembershipEvent::MemberUp(m) => ("up", m.node_id.as_str()),
                MembershipEvent::MemberDown(m) => ("down", m.node_id.as_str()),
                MembershipEvent::MetaChanged { after, .. } => ("meta", after.node_id.as_str()),
                MembershipEvent::Conflict(_) => ("conflict", ""),
                MembershipEvent::Handover { .. } => ("handover", ""),
                MembershipEvent::Claims(_) => ("claims", ""),
                MembershipEvent::Resync { .. } => ("resync", ""),
            })
            .collect()
    }

    #[test]
    fn join_leave_restart_and_metadata() {
        let a = test_identity("lb1", 1, 1);
        let b = test_identity("lb2", 2, 1);
        assert_eq!(kinds(&diff(&set(&[]), &set(&[&a]))), [("up", "lb1")]);
        assert_eq!(
            kinds(&diff(&set(&[&a, &b]), &set(&[&b]))),
            [("down", "lb1")]
        );

        let restarted = test_identity("lb2", 2, 2);
        assert_eq!(
            kinds(&diff(&set(&[&b]), &set(&[&restarted]))),
            [("down", "lb2"), ("up", "lb2")]
        );

        let mut moved = b.clone();
        moved.revision += 1;
        moved.meta.vrrp_sources = vec!["fe80::9".parse().unwrap()];
        assert_eq!(
            kinds(&diff(&set(&[&b]), &set(&[&moved]))),
            [("meta", "lb2")]
        );

        let mut renewed = b.clone();
        renewed.revision += 1;
        assert!(diff(&set(&[&b]), &set(&[&renewed])).is_empty());
    }
}
