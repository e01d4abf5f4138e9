//! The cluster runtime's pure helpers: the election's view of the config, the config
//! digest, which received adverts may act on a group, and the adverts to send.

use std::collections::BTreeSet;
use std::net::IpAddr;

use sha2::{Digest as _, Sha256};

use crate::config::{AuthType, ClusterConfig, VipGroup, VrrpObey, VrrpVersion};
use crate::ownership::GroupSpec;
use crate::vrrp::{Advert, Auth, DecodeErrorKind, Version};

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

/// Digest of what the election and the routers read from the cluster part (the VIP
/// groups and their obey policy, as this version parses them): published in gossip, so
/// nodes with different cluster configs notice each other.
pub fn config_digest(cluster: &ClusterConfig) -> u64 {
    let text = format!("{:?}|{:?}", cluster.vrrp_obey, cluster.vip_groups);
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 0 means "not published" in gossip (an agent that does not send it).
    u64::from_be_bytes(first).max(1)
}

/// Whether the group's VRRP runs over IPv6.
pub fn is_v6(group: &VipGroup) -> bool {
    group.addresses.first().is_some_and(|a| a.addr.is_ipv6())
}

/// Whether a valid advert from `src` may act on `group`: its address list must be the
/// group's (RFC 3768 §7.1 asks to drop and log a mismatch), and `policy` (the group's
/// `vrrp_obey`) must admit the source. The error is the drop counter's name.
pub fn admit(
    group: &VipGroup,
    policy: &VrrpObey,
    advert: &Advert,
    src: IpAddr,
) -> Result<(), &'static str> {
    let ours: BTreeSet<IpAddr> = group.addresses.iter().map(|a| a.addr).collect();
    let theirs: BTreeSet<IpAddr> = advert.addresses.iter().copied().collect();
    // A resigning router's list does not matter: it gives the group up.
    if advert.priority != 0 && ours != theirs {
        return Err("addresses");
    }
    if !policy.obeys(src) {
        return Err("not_obeyed");
    }
    Ok(())
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
    fn adverts_must_carry_the_groups_addresses_and_pass_the_policy() {
        let c = cluster();
        let g = &c.vip_groups[1];
        let src: IpAddr = "192.0.2.9".parse().unwrap();
        let ad = advert(g, 100);
        assert_eq!(admit(g, &VrrpObey::All, &ad, src), Ok(()));
        let mut fewer = ad.clone();
        fewer.addresses.pop();
        assert_eq!(admit(g, &VrrpObey::All, &fewer, src), Err("addresses"));
        fewer.priority = 0;
        assert_eq!(admit(g, &VrrpObey::All, &fewer, src), Ok(()));
        assert_eq!(admit(g, &VrrpObey::None, &ad, src), Err("not_obeyed"));
        let listed = VrrpObey::Sources(vec![src]);
        assert_eq!(admit(g, &listed, &ad, src), Ok(()));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(admit(g, &listed, &ad, other), Err("not_obeyed"));
    }

    #[test]
    fn the_digest_follows_the_groups_and_not_the_services() {
        let a = cluster();
        let mut b = cluster();
        assert_eq!(config_digest(&a), config_digest(&b));
        b.name = "renamed".into();
        assert_eq!(config_digest(&a), config_digest(&b));
        b.vip_groups[0].preempt = false;
        assert_ne!(config_digest(&a), config_digest(&b));
        let mut c = cluster();
        c.vrrp_obey = VrrpObey::None;
        assert_ne!(config_digest(&a), config_digest(&c));
        assert_ne!(config_digest(&a), 0);
    }
}
