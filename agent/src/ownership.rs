//! VIP group ownership: which live director owns each VIP group.
//!
//! Pure: the caller gives the membership view, the group specs, the current owners and
//! the clock; every node that sees the same view computes the same owners.
//!
//! Rules, per group:
//! - only live, undrained members are eligible, or, when every member is drained, all
//!   of them with no preemption (draining the last node must neither take the VIPs off
//!   the network nor move them around); no member, no owner;
//! - candidates rank by priority (keepalived's MASTER gets the highest), then by
//!   rendezvous weight of (group, node), so equal-priority groups spread evenly and a
//!   joining or leaving node moves only about 1/N of them;
//! - a group whose owner is no longer eligible goes at once to the best-ranked candidate;
//! - stickiness: an eligible owner keeps its group, except that with `preempt` the
//!   best-ranked candidate takes it once it has been eligible for `preempt_delay`
//!   (it waits for the best one rather than moving twice); without `preempt` never;
//! - a group an eligible member pins (the operator moved it there, `lvs-cli move`) is
//!   that member's at once, over ranks and stickiness; among several pins of one group
//!   the highest stamp wins, then the higher id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A live member of the cluster as the membership layer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// A drained node keeps running but owns nothing while an undrained member exists.
    pub drained: bool,
    /// Since when (caller's clock, milliseconds) this member has been alive and undrained.
    pub eligible_since_ms: u64,
    /// Groups pinned to this member, with the pin's stamp.
    pub pins: BTreeMap<String, u64>,
}

/// One VIP group's election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// Unique group name; also the rendezvous hash key.
    pub name: String,
    /// Per-node priorities; nodes not listed get `default_priority`.
    pub priorities: BTreeMap<String, u8>,
    pub default_priority: u8,
    /// Whether a better-ranked node takes the group from a live owner.
    pub preempt: bool,
    /// How long a better-ranked node must have been eligible before it preempts.
    pub preempt_delay: Duration,
}

impl GroupSpec {
    fn priority(&self, node: &str) -> u8 {
        self.priorities
            .get(node)
            .copied()
            .unwrap_or(self.default_priority)
    }
}

/// The result of one election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Election {
    /// Every group's owner, `None` when no member is eligible.
    pub owners: BTreeMap<String, Option<String>>,
    /// When a pending preemption matures: elect again then, even if nothing else changes.
    pub recheck_at_ms: Option<u64>,
}

/// Elects one owner per group. `current` maps group names to their present owners (as
/// last elected); owners that are gone or drained are ignored. Members may come in any
/// order; should an id appear twice, it counts as drained if either entry is and as
/// eligible since the later time.
pub fn elect(
    members: &[Member],
    groups: &[GroupSpec],
    current: &BTreeMap<String, String>,
    now_ms: u64,
) -> Election {
    let mut seen: BTreeMap<&str, (bool, u64)> = BTreeMap::new();
    for member in members {
        let entry = seen
            .entry(&member.id)
            .or_insert((member.drained, member.eligible_since_ms));
        entry.0 |= member.drained;
        entry.1 = entry.1.max(member.eligible_since_ms);
    }
    // Each group's winning pin: (stamp, id), highest first.
    let mut pinned: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    let all_drained = seen.values().all(|(drained, _)| *drained);
    let eligible: BTreeMap<&str, u64> = seen
        .into_iter()
        .filter(|(_, (drained, _))| all_drained || !drained)
        .map(|(id, (_, since))| (id, since))
        .collect();
    for member in members
        .iter()
        .filter(|m| eligible.contains_key(m.id.as_str()))
    {
        for (group, &stamp) in &member.pins {
            let pin = (stamp, member.id.as_str());
            let best = pinned.entry(group.as_str()).or_insert(pin);
            *best = (*best).max(pin);
        }
    }

    let mut recheck_at_ms: Option<u64> = None;
    let owners = groups
        .iter()
        .map(|group| {
            let owner = current
                .get(&group.name)
                .map(String::as_str)
                .filter(|owner| eligible.contains_key(owner));
            let (elected, recheck) = match pinned.get(group.name.as_str()) {
                Some(&(_, id)) => (Some(id), None),
                None => elect_one(group, &eligible, owner, !all_drained, now_ms),
            };
            if let Some(at) = recheck {
                recheck_at_ms = Some(recheck_at_ms.map_or(at, |t| t.min(at)));
            }
            (group.name.clone(), elected.map(str::to_owned))
        })
        .collect();
    Election {
        owners,
        recheck_at_ms,
    }
}

/// Each owned group's heir: who gets it when its owner goes down, that is the
/// election's winner over `members` without the owner (given the same `current`).
/// Groups without owner, or whose heir would be nobody, are left out.
///
/// The heir of a group whose owner is gone takes it at once, whatever the preemption
/// settings, so the result does not depend on the clock.
pub fn heirs(
    members: &[Member],
    groups: &[GroupSpec],
    current: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let owners: BTreeSet<&String> = current.values().collect();
    let mut heirs = BTreeMap::new();
    for owner in owners {
        let rest: Vec<Member> = members.iter().filter(|m| m.id != *owner).cloned().collect();
        let without = elect(&rest, groups, current, 0);
        for (group, heir) in without.owners {
            if current.get(&group) == Some(owner) {
                if let Some(heir) = heir {
                    heirs.insert(group, heir);
                }
            }
        }
    }
    heirs
}

/// One group's owner among `eligible` (id → eligible since), given its eligible present
/// owner, and when to elect again if a preemption is pending.
fn elect_one<'a>(
    group: &GroupSpec,
    eligible: &BTreeMap<&'a str, u64>,
    owner: Option<&'a str>,
    may_preempt: bool,
    now_ms: u64,
) -> (Option<&'a str>, Option<u64>) {
    // Equal weights for different ids are astronomically unlikely, but even then the
    // result must not depend on the order members came in: the smaller id wins.
    let best = eligible.iter().max_by_key(|(node, _)| {
        (
            group.priority(node),
            rendezvous_weight(&group.name, node),
            std::cmp::Reverse(**node),
        )
    });
    match (owner, best) {
        (_, None) => (None, None),
        (None, Some((best, _))) => (Some(best), None),
        (Some(owner), Some((best, since))) if owner != *best && group.preempt && may_preempt => {
            let matures_at = since.saturating_add(millis(group.preempt_delay));
            if now_ms >= matures_at {
                (Some(best), None)
            } else {
                (Some(owner), Some(matures_at))
            }
        }
        (Some(owner), Some(_)) => (Some(owner), None),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Rendezvous (highest-random-weight) weight of `node` for `group`.
///
/// Every node must compute the same value in every build, so this is a fixed hash
/// (64-bit FNV-1a over the length-prefixed group name and the node id, then the
/// MurmurHash3 finaliser for avalanche), never std's randomly keyed hasher.
/// Changing it moves groups in a running cluster: the tests pin its values.
pub fn rendezvous_weight(group: &str, node: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let group_len = (group.len() as u64).to_le_bytes();
    let bytes = group_len
        .iter()
        .chain(group.as_bytes())
        .chain(node.as_bytes());
    let hash = bytes.fold(FNV_OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    fmix64(hash)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests;
