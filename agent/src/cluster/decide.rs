//! What the cluster runtime does on each event, without I/O: which groups to hold,
//! what a received VRRP advert means, and the adverts to send.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::{AuthType, ClusterConfig, VipGroup, VrrpVersion};
use crate::ownership::{elect, GroupSpec, Member};
use crate::vrrp::{
    decide, Advert, Auth, Decision, DecodeErrorKind, Local, Mismatch, Role, Version,
};

/// The election's view of the configured groups.
pub fn group_specs(cluster: &ClusterConfig) -> Vec<GroupSpec> {
    cluster
        .vip_groups
        .iter()
        .map(|g| GroupSpec {
            name: g.name.clone(),
            priorities: g
                .priorities
                .iter()
                .map(|(node, p)| (node.to_string(), p.get()))
                .collect(),
            default_priority: g.default_priority.get(),
            preempt: g.preempt,
            preempt_delay: g.preempt_delay,
        })
        .collect()
}

/// Why this node may not hold a group it was elected for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blockers {
    /// Still learning the membership after start: holding now could take groups from
    /// owners not heard of yet.
    pub settling: bool,
    pub link_down: bool,
    /// A non-agent VRRP router is master.
    pub foreign_master: bool,
}

pub fn should_hold(elected_me: bool, b: Blockers) -> bool {
    elected_me && !b.settling && !b.link_down && !b.foreign_master
}

/// One change to make on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Release(String),
    Acquire(String),
}

/// Turns the held set into the wanted one: releases first, so that a node never holds
/// more than it should even for a moment.
pub fn transitions(held: &BTreeSet<String>, wanted: &BTreeSet<String>) -> Vec<Action> {
    let releases = held.difference(wanted).cloned().map(Action::Release);
    let acquires = wanted.difference(held).cloned().map(Action::Acquire);
    releases.chain(acquires).collect()
}

/// What a valid advert from a non-agent router does to one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignOutcome {
    /// It is master (or, resigning, stays so for the skew time): hold back until then.
    MasterUntil(u64),
    /// It resigned while we hold the group: advertise at once.
    AdvertiseNow,
    /// It loses to us: keep going (it will become backup).
    Ignore,
}

/// Applies the VRRP rules to a foreign advert. `holding` is our role; `local` carries
/// our priority, primary address, preemption and interval.
pub fn on_foreign_advert(
    local: &Local,
    advert: &Advert,
    sender: IpAddr,
    now_ms: u64,
) -> Result<ForeignOutcome, Mismatch> {
    let until =
        |d: Duration| now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(match decide(local, advert, sender)? {
        Decision::Follow { master_down } => ForeignOutcome::MasterUntil(until(master_down)),
        Decision::TakeOverAfter(skew) => ForeignOutcome::MasterUntil(until(skew)),
        Decision::AdvertiseNow => ForeignOutcome::AdvertiseNow,
        Decision::KeepMaster | Decision::IgnoreLowerPriority => ForeignOutcome::Ignore,
    })
}

/// Our side of a group's virtual router for `vrrp::decide`.
pub fn local_router(group: &VipGroup, priority: u8, primary: IpAddr, holding: bool) -> Local {
    Local {
        role: if holding { Role::Master } else { Role::Backup },
        version: version(group.version),
        priority,
        primary,
        preempt: group.preempt,
        advert_interval: group.advert_int,
    }
}

/// Two agents hold one group (a healed partition): the one the election ranks first
/// keeps it, so both sides pick the same one.
pub fn claim_winner<'a>(spec: &GroupSpec, me: &'a str, other: &'a str) -> &'a str {
    let member = |id: &str| Member {
        id: id.to_owned(),
        drained: false,
        eligible_since_ms: 0,
    };
    let mut spec = spec.clone();
    spec.preempt = true;
    spec.preempt_delay = Duration::ZERO;
    let election = elect(
        &[member(me), member(other)],
        &[spec.clone()],
        &BTreeMap::new(),
        0,
    );
    match election.owners.get(&spec.name).cloned().flatten() {
        Some(winner) if winner == other => other,
        _ => me,
    }
}

pub fn version(v: VrrpVersion) -> Version {
    match v {
        VrrpVersion::V2 => Version::V2,
        VrrpVersion::V3 => Version::V3,
    }
}

/// The authentication a group's adverts carry and must carry.
pub fn auth(group: &VipGroup) -> Auth {
    match &group.authentication {
        // Validation caps the password at 8 bytes, so this never falls back.
        Some(a) if a.kind == AuthType::Pass => {
            Auth::simple_password(&a.password).unwrap_or(Auth::None)
        }
        _ => Auth::None,
    }
}

/// The advert for `group` at `priority` (0 = resigning).
pub fn advert(group: &VipGroup, priority: u8) -> Advert {
    let version = version(group.version);
    let interval = match version {
        Version::V2 => group.advert_int.as_secs(),
        Version::V3 => u64::try_from(group.advert_int.as_millis() / 10).unwrap_or(u64::MAX),
    };
    Advert {
        version,
        vrid: group.vrrp_id,
        priority,
        // Validation keeps advert_int in the version's range.
        advert_interval: u16::try_from(interval).unwrap_or(u16::MAX),
        addresses: group.addresses.iter().map(|a| a.addr).collect(),
        auth: auth(group),
    }
}

/// Counter name of a dropped advert's reason.
pub fn drop_reason(kind: &DecodeErrorKind) -> &'static str {
    match kind {
        DecodeErrorKind::HopLimit(_) => "hop_limit",
        DecodeErrorKind::Truncated { .. } | DecodeErrorKind::Length { .. } => "length",
        DecodeErrorKind::Version(_) | DecodeErrorKind::V2OverIpv6 => "version",
        DecodeErrorKind::Type(_) => "type",
        DecodeErrorKind::VridZero => "vrid",
        DecodeErrorKind::Family { .. } => "family",
        DecodeErrorKind::Checksum { .. } => "checksum",
        DecodeErrorKind::AuthType { .. } | DecodeErrorKind::AuthData => "auth",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use proptest::prelude::*;

    const CLUSTER: &str = r#"
        [cluster]
        name = "t"
        [[vip_group]]
        name = "a"
        vrrp_id = 10
        addresses = ["198.51.100.1/24"]
        priorities = { lb1 = 150 }
        authentication = { type = "pass", password = "1111" }
        [[vip_group]]
        name = "b"
        vrrp_id = 11
        version = 3
        advert_int = 0.5
        addresses = ["198.51.100.2/24", "198.51.100.3/24"]
    "#;

    fn cluster() -> ClusterConfig {
        parse(CLUSTER).unwrap().cluster.unwrap()
    }

    #[test]
    fn specs_and_adverts_follow_the_config() {
        let c = cluster();
        let specs = group_specs(&c);
        assert_eq!(specs[0].priorities["lb1"], 150);
        assert_eq!(specs[1].default_priority, 100);
        let a = advert(&c.vip_groups[0], 150);
        assert_eq!(
            (a.version, a.advert_interval, a.priority),
            (Version::V2, 1, 150)
        );
        assert!(matches!(a.auth, Auth::SimplePassword(p) if &p[..4] == b"1111"));
        let b = advert(&c.vip_groups[1], 0);
        assert_eq!(
            (b.version, b.advert_interval, b.addresses.len()),
            (Version::V3, 50, 2)
        );
        assert_eq!(b.auth, Auth::None);
    }

    #[test]
    fn releases_come_before_acquires() {
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            transitions(&set(&["a", "b"]), &set(&["b", "c"])),
            [Action::Release("a".into()), Action::Acquire("c".into())]
        );
        let b = Blockers {
            settling: false,
            link_down: false,
            foreign_master: false,
        };
        assert!(should_hold(true, b));
        assert!(!should_hold(
            true,
            Blockers {
                foreign_master: true,
                ..b
            }
        ));
        assert!(!should_hold(false, b));
    }

    #[test]
    fn foreign_masters_take_over_by_priority_then_address() {
        let c = cluster();
        let g = &c.vip_groups[0];
        let me: IpAddr = "192.0.2.5".parse().unwrap();
        let above: IpAddr = "192.0.2.9".parse().unwrap();
        let master = local_router(g, 100, me, true);
        let mut theirs = advert(g, 100);
        assert_eq!(
            on_foreign_advert(&master, &theirs, above, 1000),
            // 3 s + (256 - 100) / 256 s
            Ok(ForeignOutcome::MasterUntil(1000 + 3000 + 609))
        );
        assert_eq!(
            on_foreign_advert(&master, &theirs, "192.0.2.1".parse().unwrap(), 0),
            Ok(ForeignOutcome::Ignore)
        );
        theirs.priority = 0;
        assert_eq!(
            on_foreign_advert(&master, &theirs, above, 0),
            Ok(ForeignOutcome::AdvertiseNow)
        );
        // As backup, a resigning master is master only for the skew time.
        let backup = local_router(g, 100, me, false);
        assert_eq!(
            on_foreign_advert(&backup, &theirs, above, 0),
            Ok(ForeignOutcome::MasterUntil(609))
        );
        // A lower-priority foreign master is ignored by a preempting backup.
        theirs.priority = 50;
        assert_eq!(
            on_foreign_advert(&backup, &theirs, above, 0),
            Ok(ForeignOutcome::Ignore)
        );
    }

    proptest! {
        #[test]
        fn both_claimants_pick_the_same_winner(a in "[a-z]{1,8}", b in "[a-z]{1,8}", pa in 1u8..255) {
            let mut spec = group_specs(&cluster()).remove(0);
            spec.priorities.insert(a.clone(), pa);
            let w1 = claim_winner(&spec, &a, &b).to_owned();
            let w2 = claim_winner(&spec, &b, &a).to_owned();
            prop_assert_eq!(w1, w2);
        }
    }
}
