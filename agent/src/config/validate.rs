//! Semantic checks that need more than one key. Every error is reported (not just the
//! first), in file order, each with the key path it is about.

use super::error::ConfigError;
use super::model::*;
use super::types::*;
use crate::ipvs::model::ServiceKey;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

/// A fail-back waiting longer than an hour is a typo, not a choice.
const MAX_CATCH_UP: Duration = Duration::from_secs(3600);

/// All semantic errors of a parsed config; empty when it is valid.
pub(super) fn validate(config: &Config) -> Vec<ConfigError> {
    let mut r = Report::default();
    if let Some(node) = &config.node {
        check_node(&mut r, node);
    }
    if let Some(cluster) = &config.cluster {
        let node_interface = config.node.as_ref().map(|n| n.interface.as_str());
        check_cluster(&mut r, cluster, node_interface);
    }
    if let (Some(node), Some(cluster)) = (&config.node, &config.cluster) {
        if !cluster.vip_groups.is_empty() && node.cluster_key_files.is_empty() {
            r.err(
                "node.cluster_key_files",
                "at least one cluster key is needed: the cluster has VIP groups, and gossip \
                 between directors is authenticated (`lvs-agent keygen` makes a key)",
            );
        }
    }
    r.0
}

#[derive(Default)]
struct Report(Vec<ConfigError>);

impl Report {
    fn err(&mut self, path: impl Display, reason: impl Into<String>) {
        self.0.push(ConfigError::at(path.to_string(), reason));
    }

    fn check(&mut self, path: impl Display, result: Result<(), String>) {
        if let Err(reason) = result {
            self.err(path, reason);
        }
    }
}

/// Linux's rule for interface names (dev_valid_name).
fn check_interface(name: &str) -> Result<(), String> {
    let bad_char = |c: char| c == '/' || c == ':' || c.is_whitespace();
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || name.contains(bad_char)
    {
        return Err(format!(
            "{name:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// An address traffic can be sent to and from: not unspecified, not multicast.
fn check_unicast(addr: IpAddr) -> Result<(), String> {
    if addr.is_unspecified() || addr.is_multicast() {
        return Err(format!("{addr} is not a unicast address"));
    }
    Ok(())
}

/// `host:port`, with an IPv6 literal host in brackets.
fn check_host_port(s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{s:?} is not host:port ({why})"));
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((h, p)) if h.parse::<std::net::Ipv6Addr>().is_ok() => (h, p),
            _ => return bad("write IPv6 as [addr]:port"),
        },
        None => match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return bad("write IPv6 as [addr]:port"),
            Some(hp) => hp,
            None => return bad("the port is missing"),
        },
    };
    if host.is_empty() {
        return bad("the host is empty");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be 1..=65535"),
    }
}

fn whole_seconds(d: Duration) -> bool {
    d.subsec_nanos() == 0
}

fn check_node(r: &mut Report, node: &NodeConfig) {
    r.check("node.interface", check_interface(&node.interface));
    r.check("node.address", check_unicast(node.address));
    if node.gossip_addr() == node.control_addr() {
        r.err(
            "node.control_listen",
            format!("{} is also gossip_listen", node.control_addr()),
        );
    }
    if node.reconcile_interval.is_zero() {
        r.err("node.reconcile_interval", "must be above 0");
    }
    if node.gossip_probe_period < Duration::from_millis(10) {
        r.err("node.gossip_probe_period", "must be at least 0.01 seconds");
    }
    if node.heartbeat_interval < Duration::from_millis(10) {
        r.err("node.heartbeat_interval", "must be at least 0.01 seconds");
    }
    if node.heartbeat_timeout() <= node.heartbeat_interval {
        r.err(
            "node.heartbeat_timeout",
            format!(
                "{:?} must be above heartbeat_interval ({:?})",
                node.heartbeat_timeout(),
                node.heartbeat_interval
            ),
        );
    }
    if node.control_socket.as_os_str().is_empty() {
        r.err("node.control_socket", "empty path");
    }
    if node
        .cluster_store
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        r.err("node.cluster_store", "empty path");
    }
    if node.cluster_store.is_some() && node.cluster_key_files.is_empty() {
        r.err(
            "node.cluster_key_files",
            "at least one cluster key is needed: node.cluster_store is set, so the node \
             joins the cluster's gossip to receive the cluster document",
        );
    }
    if let Some(tls) = &node.control_tls {
        for (key, path) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if path.as_os_str().is_empty() {
                r.err(format_args!("node.control_tls.{key}"), "empty path");
            }
        }
    }
    for (i, peer) in node.join.iter().enumerate() {
        r.check(format_args!("node.join[{i}]"), check_host_port(peer));
    }
    for (i, key) in node.cluster_key_files.iter().enumerate() {
        if key.as_os_str().is_empty() {
            r.err(format_args!("node.cluster_key_files[{i}]"), "empty path");
        } else if node.cluster_key_files[..i].contains(key) {
            r.err(
                format_args!("node.cluster_key_files[{i}]"),
                format!("{} is listed twice", key.display()),
            );
        }
    }
}

fn check_cluster(r: &mut Report, cluster: &ClusterConfig, node_interface: Option<&str>) {
    r.check("cluster.name", check_name("cluster name", &cluster.name));
    check_sync(r, &cluster.sync);
    for (i, group) in cluster.vip_groups.iter().enumerate() {
        check_vip_group(r, i, group);
    }
    check_vip_groups_together(r, &cluster.vip_groups, node_interface);
    for (i, service) in cluster.services.iter().enumerate() {
        check_service(r, i, service, cluster);
    }
    check_services_together(r, &cluster.services);
}

fn check_sync(r: &mut Report, sync: &SyncConfig) {
    if !sync.mcast_group.is_multicast() {
        r.err(
            "sync.mcast_group",
            format!("{} is not a multicast address", sync.mcast_group),
        );
    }
    let [threshold, period] = sync.sync_threshold;
    if period != 0 && threshold >= period {
        r.err(
            "sync.sync_threshold",
            format!("threshold {threshold} must be below period {period} (or period 0)"),
        );
    }
    if !whole_seconds(sync.sync_refresh_period) {
        r.err("sync.sync_refresh_period", "must be whole seconds");
    }
    if sync.catch_up.is_some_and(|c| c > MAX_CATCH_UP) {
        r.err(
            "sync.catch_up",
            format!("at most {} seconds", MAX_CATCH_UP.as_secs()),
        );
    }
}

fn check_vip_group(r: &mut Report, i: usize, g: &VipGroup) {
    let at = |key: &str| format!("vip_group[{i}].{key}");
    if g.name.is_empty() || g.name.len() > 63 || g.name.contains(char::is_whitespace) {
        r.err(
            at("name"),
            format!("{:?}: use 1 to 63 characters, no spaces", g.name),
        );
    }
    if let Some(interface) = &g.interface {
        r.check(at("interface"), check_interface(interface));
    }
    if g.addresses.is_empty() {
        r.err(at("addresses"), "empty: a group needs at least one address");
    }
    let family = g.family();
    for (j, a) in g.addresses.iter().enumerate() {
        let path = format!("vip_group[{i}].addresses[{j}]");
        if let Err(e) = check_unicast(a.addr) {
            r.err(&path, e);
        } else if Some(a.family()) != family {
            r.err(
                &path,
                format!(
                    "{} address in a group of {} addresses (a group is one address family)",
                    family_label(a.family()),
                    family.map_or("", family_label)
                ),
            );
        } else if g.version == VrrpVersion::V2 && a.family() == Family::V6 {
            r.err(
                &path,
                "IPv6 needs version = 3 (VRRP version 2 is IPv4-only)",
            );
        }
        if g.addresses[..j].iter().any(|b| b.addr == a.addr) {
            r.err(&path, format!("{} is listed twice", a.addr));
        }
    }
    r.check(at("advert_int"), check_advert_int(g.version, g.advert_int));
    if g.preempt_delay > Duration::from_secs(1000) {
        r.err(at("preempt_delay"), "must be at most 1000 seconds");
    }
    if let Some(auth) = &g.authentication {
        if g.version == VrrpVersion::V3 {
            r.err(
                at("authentication"),
                "VRRP version 3 has no authentication (RFC 5798); remove it or use version = 2",
            );
        } else if auth.password.is_empty() || auth.password.len() > 8 {
            r.err(
                at("authentication.password"),
                format!(
                    "is {} bytes; a VRRPv2 password is 1 to 8 bytes",
                    auth.password.len()
                ),
            );
        }
    }
}

/// VRRPv2 adverts count whole seconds in 8 bits, VRRPv3 centiseconds in 12 bits.
fn check_advert_int(version: VrrpVersion, d: Duration) -> Result<(), String> {
    let secs = d.as_secs_f64();
    const CENTI: u128 = 10_000_000;
    let centis = d.as_nanos() / CENTI;
    match version {
        VrrpVersion::V2 if !whole_seconds(d) || !(1..=255).contains(&d.as_secs()) => Err(format!(
            "{secs} s: VRRP version 2 needs whole seconds 1..=255"
        )),
        VrrpVersion::V3 if centis * CENTI != d.as_nanos() || !(1..=4095).contains(&centis) => Err(
            format!("{secs} s: VRRP version 3 needs 0.01..=40.95 s in steps of 0.01"),
        ),
        _ => Ok(()),
    }
}

fn check_vip_groups_together(r: &mut Report, groups: &[VipGroup], node_interface: Option<&str>) {
    let mut names = HashMap::new();
    let mut addrs = HashMap::new();
    // VRRP ids share one virtual MAC space per interface and family (00:00:5e:00:01:ID
    // for IPv4, 00:00:5e:00:02:ID for IPv6). `None` = "the node's interface".
    let mut vrids = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        if let Some(first) = names.insert(g.name.as_str(), i) {
            names.insert(g.name.as_str(), first);
            r.err(
                format_args!("vip_group[{i}].name"),
                format!("{:?} is already the name of vip_group[{first}]", g.name),
            );
        }
        for (j, a) in g.addresses.iter().enumerate() {
            match addrs.get(&a.addr) {
                Some(&first) if first != i => r.err(
                    format_args!("vip_group[{i}].addresses[{j}]"),
                    format!("{} is already in vip_group[{first}]", a.addr),
                ),
                Some(_) => {}
                None => {
                    addrs.insert(a.addr, i);
                }
            }
        }
        let interface = g.interface.as_deref().or(node_interface);
        let key = (interface, g.family(), g.vrrp_id);
        if let Some(&first) = vrids.get(&key) {
            r.err(
                format_args!("vip_group[{i}].vrrp_id"),
                format!(
                    "{} is already used by vip_group[{first}] on the same interface and address family",
                    g.vrrp_id
                ),
            );
        } else {
            vrids.insert(key, i);
        }
    }
}

fn check_service(r: &mut Report, i: usize, s: &Service, cluster: &ClusterConfig) {
    let at = |key: &str| format!("service[{i}].{key}");
    match (s.vip, s.port, s.fwmark) {
        (Some(_), _, Some(_)) => r.err(
            format_args!("service[{i}]"),
            "give either vip + port or fwmark, not both",
        ),
        (None, _, None) => r.err(format_args!("service[{i}]"), "needs vip + port, or fwmark"),
        (Some(_), None, None) => r.err(at("port"), "missing: a vip service needs a port"),
        (None, Some(_), Some(_)) => r.err(at("port"), "a fwmark service has no port"),
        _ => {}
    }
    if s.fwmark.is_some() && s.protocol.is_some() {
        r.err(
            at("protocol"),
            "only for vip services (a fwmark service takes any protocol)",
        );
    }
    if s.vip.is_some() && s.family.is_some() {
        r.err(
            at("family"),
            "only for fwmark services (the vip gives the family)",
        );
    }
    if let Some(vip) = s.vip {
        if let Err(e) = check_unicast(vip) {
            r.err(at("vip"), e);
        } else if !cluster.vip_groups.is_empty() && cluster.group_of(vip).is_none() {
            r.err(
                at("vip"),
                format!(
                    "{vip} is in no vip_group (a service must be on an address the cluster owns)"
                ),
            );
        }
    }
    for (j, flag) in s.sched_flags.iter().enumerate() {
        let needs = match flag {
            SchedFlag::ShFallback | SchedFlag::ShPort => Some(Scheduler::Sh),
            SchedFlag::MhFallback | SchedFlag::MhPort => Some(Scheduler::Mh),
            _ => None,
        };
        if let Some(needs) = needs.filter(|n| *n != s.scheduler) {
            r.err(
                format_args!("service[{i}].sched_flags[{j}]"),
                format!("{:?} needs scheduler {:?}", flag.as_str(), needs.name()),
            );
        }
    }
    check_tunnel(r, i, s);
    if let Some(t) = s.persistence_timeout {
        if t.is_zero() || !whole_seconds(t) || t.as_secs() > u64::from(u32::MAX) {
            r.err(
                at("persistence_timeout"),
                "must be whole seconds, at least 1",
            );
        }
    }
    if let Some(p) = s.persistence_prefix {
        let max = s.family().max_prefix();
        if s.persistence_timeout.is_none() {
            r.err(at("persistence_prefix"), "only with persistence_timeout");
        } else if p > max {
            r.err(
                at("persistence_prefix"),
                format!(
                    "{p} is out of range 1..={max} for an {} service",
                    family_label(s.family())
                ),
            );
        }
    }
    if s.ops && s.fwmark.is_none() && s.protocol != Some(Protocol::Udp) {
        r.err(at("ops"), "one-packet scheduling needs protocol = \"udp\"");
    }
    if s.delay_loop.is_zero() {
        r.err(at("delay_loop"), "must be above 0");
    }
    if s.hysteresis >= s.quorum {
        r.err(
            at("hysteresis"),
            format!("{} must be below quorum {}", s.hysteresis, s.quorum),
        );
    }
    if let Some(sorry) = &s.sorry_server {
        if let Err(e) = check_unicast(sorry.address) {
            r.err(at("sorry_server.address"), e);
        } else if Family::of(&sorry.address) != s.family() {
            r.err(at("sorry_server.address"), mixed_family(sorry.address, s));
        }
        if s.fwmark.is_some() && sorry.port.is_some() {
            r.err(at("sorry_server.port"), "a fwmark service has no port");
        }
    }
    let mut seen = BTreeMap::new();
    for (j, rs) in s.real_servers.iter().enumerate() {
        check_real_server(r, i, j, rs, s);
        if let Some(first) = seen.insert((rs.address, rs.port), j) {
            seen.insert((rs.address, rs.port), first);
            let target = match rs.port {
                Some(p) => std::net::SocketAddr::new(rs.address, p).to_string(),
                None => rs.address.to_string(),
            };
            r.err(
                format_args!("service[{i}].real_server[{j}]"),
                format!("{target} is already real_server[{first}]"),
            );
        }
    }
}

/// IPVS forwards to another family only through a tunnel, and refuses it while a sync
/// daemon runs (ip_vs_ctl.c); lvs-mesh always runs the sync daemons.
fn mixed_family(addr: IpAddr, s: &Service) -> String {
    format!(
        "{} {addr} behind an {} service: IPVS mixes families only with forwarding = \"tun\" \
         and never while connection sync runs, which lvs-mesh always does",
        family_label(Family::of(&addr)),
        family_label(s.family())
    )
}

fn check_tunnel(r: &mut Report, i: usize, s: &Service) {
    let at = |key: &str| format!("service[{i}].{key}");
    if !s.uses_tunnel() {
        for (key, set) in [
            ("tunnel_type", s.tunnel_type.is_some()),
            ("tunnel_port", s.tunnel_port.is_some()),
            ("tunnel_checksum", s.tunnel_checksum.is_some()),
        ] {
            if set {
                r.err(at(key), "only used with forwarding = \"tun\"");
            }
        }
        return;
    }
    let kind = s.tunnel_type.unwrap_or(TunnelType::Ipip);
    match (kind, s.tunnel_port) {
        (TunnelType::Gue, None) => r.err(at("tunnel_port"), "missing: a gue tunnel needs a port"),
        (TunnelType::Ipip | TunnelType::Gre, Some(_)) => {
            r.err(at("tunnel_port"), "only for tunnel_type = \"gue\"")
        }
        _ => {}
    }
    match (kind, s.tunnel_checksum) {
        (TunnelType::Ipip, Some(_)) => r.err(at("tunnel_checksum"), "only for gue or gre tunnels"),
        (TunnelType::Gre, Some(TunnelChecksum::RemCsum)) => {
            r.err(at("tunnel_checksum"), "\"remcsum\" is only for gue tunnels")
        }
        _ => {}
    }
}

fn check_real_server(r: &mut Report, i: usize, j: usize, rs: &RealServer, s: &Service) {
    let at = |key: &str| format!("service[{i}].real_server[{j}].{key}");
    if let Err(e) = check_unicast(rs.address) {
        r.err(at("address"), e);
    } else if Family::of(&rs.address) != s.family() {
        r.err(at("address"), mixed_family(rs.address, s));
    }
    match (s.fwmark, rs.port) {
        (Some(_), Some(_)) => r.err(at("port"), "a fwmark service has no real server port"),
        (None, None) if s.vip.is_some() => {
            r.err(at("port"), "missing: a vip service needs real server ports")
        }
        _ => {}
    }
    if rs.lower_threshold > rs.upper_threshold {
        r.err(
            at("lower_threshold"),
            format!(
                "{} is above upper_threshold {}",
                rs.lower_threshold, rs.upper_threshold
            ),
        );
    }
    for (k, check) in rs.checks.iter().enumerate() {
        check_health_check(
            r,
            &format!("service[{i}].real_server[{j}].check[{k}]"),
            check,
        );
    }
}

fn check_health_check(r: &mut Report, path: &str, c: &Check) {
    let at = |key: &str| format!("{path}.{key}");
    let http = matches!(c.kind, CheckKind::HttpGet | CheckKind::SslGet);
    let misc = c.kind == CheckKind::MiscCheck;
    let dns = c.kind == CheckKind::DnsCheck;
    if c.delay_loop.is_some_and(|d| d.is_zero()) {
        r.err(at("delay_loop"), "must be above 0");
    }
    if c.connect_timeout.is_zero() {
        r.err(at("connect_timeout"), "must be above 0");
    }
    let only = |r: &mut Report, key: &str, set: bool, kinds: &str| {
        if set {
            r.err(
                at(key),
                format!("only for kind {kinds}, not {:?}", c.kind.as_str()),
            );
        }
    };
    only(r, "url", !http && !c.url.is_empty(), "http_get or ssl_get");
    only(
        r,
        "virtualhost",
        !http && c.virtualhost.is_some(),
        "http_get or ssl_get",
    );
    only(
        r,
        "tls_ca",
        c.kind != CheckKind::SslGet && c.tls_ca.is_some(),
        "ssl_get",
    );
    if c.tls_ca.as_ref().is_some_and(|p| !p.is_absolute()) {
        // Read by every director, whatever its working directory.
        r.err(at("tls_ca"), "must be an absolute path");
    }
    only(
        r,
        "connect_port",
        misc && c.connect_port.is_some(),
        "http_get, ssl_get, tcp_check or dns_check",
    );
    only(
        r,
        "connect_ip",
        misc && c.connect_ip.is_some(),
        "http_get, ssl_get, tcp_check or dns_check",
    );
    only(r, "dns_type", !dns && c.dns_type.is_some(), "dns_check");
    only(r, "dns_name", !dns && c.dns_name.is_some(), "dns_check");
    if let Some(name) = &c.dns_name {
        if let Err(e) = dns_name_ok(name) {
            r.err(at("dns_name"), e);
        }
    }
    only(
        r,
        "misc_timeout",
        !misc && c.misc_timeout.is_some(),
        "misc_check",
    );
    only(r, "misc_dynamic", !misc && c.misc_dynamic, "misc_check");
    if misc {
        if c.misc_path.as_deref().is_none_or(|p| p.trim().is_empty()) {
            r.err(
                at("misc_path"),
                "missing: a misc_check needs the command to run",
            );
        }
    } else {
        only(r, "misc_path", c.misc_path.is_some(), "misc_check");
    }
    if http && c.url.is_empty() {
        r.err(at("url"), "missing: an http check needs at least one url");
    }
    for (m, url) in c.url.iter().enumerate() {
        if !url.path.starts_with('/') {
            r.err(
                format!("{path}.url[{m}].path"),
                format!("{:?} must start with /", url.path),
            );
        }
        if url.status_code.is_empty() {
            r.err(
                format!("{path}.url[{m}].status_code"),
                "empty (leave it out to accept any 2xx)",
            );
        }
        if let Some(d) = &url.digest {
            if d.len() != 32 || !d.chars().all(|ch| ch.is_ascii_hexdigit()) {
                r.err(
                    format!("{path}.url[{m}].digest"),
                    "must be an MD5 digest: 32 hex digits",
                );
            }
        }
    }
}

/// A name a DNS query can carry: labels of 1..=63 bytes, at most 253 in all
/// (RFC 1035 §2.3.4); `.` is the root.
pub fn dns_name_ok(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Ok(());
    }
    if trimmed.len() > 253 {
        return Err(format!("{name:?} is longer than 253 bytes"));
    }
    if let Some(label) = trimmed.split('.').find(|l| l.is_empty() || l.len() > 63) {
        return Err(format!(
            "{name:?} has a label of {} bytes (1..=63)",
            label.len()
        ));
    }
    Ok(())
}

/// A service key in config words: `tcp 10.0.0.10:80`, `fwmark 7 inet`.
fn describe(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr } => format!("{} {addr}", protocol.name()),
        ServiceKey::Fwmark { family, mark } => format!("fwmark {mark} {}", family_name(*family)),
    }
}

fn check_services_together(r: &mut Report, services: &[Service]) {
    let mut keys = HashMap::new();
    for (i, s) in services.iter().enumerate() {
        if let Some(key) = s.key() {
            if let Some(first) = keys.insert(key, i) {
                keys.insert(key, first);
                r.err(
                    format_args!("service[{i}]"),
                    format!("{} is already service[{first}]", describe(&key)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const GROUP: &str = "[cluster]\nname = \"t\"\n[[vip_group]]\nname = \"a\"\nvrrp_id = 1\naddresses = [\"10.0.0.10/24\"]\n";

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn catch_up_follows_the_refresh_period_unless_set() {
        let sync = |extra: &str| match parse(&format!("[cluster]\nname = \"t\"\n[sync]\n{extra}")) {
            Ok(c) => c.cluster.expect("cluster").sync.catch_up(),
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(sync(""), Duration::from_secs(6), "2 s refresh + 4 s");
        assert_eq!(sync("sync_refresh_period = 10"), Duration::from_secs(14));
        assert_eq!(sync("catch_up = 0.5"), Duration::from_millis(500));
        assert_eq!(
            sync("sync_threshold = [3, 50]"),
            Duration::ZERO,
            "re-sent every 50th packet: no time bound"
        );
        assert_eq!(sync("sync_refresh_period = 0"), Duration::ZERO);
        assert_eq!(
            errors("[cluster]\nname = \"t\"\n[sync]\ncatch_up = 7200\n"),
            ["sync.catch_up: at most 3600 seconds"]
        );
    }

    #[test]
    fn vip_groups_need_a_cluster_key() {
        let node =
            "[node]\nid = \"lb1\"\ninterface = \"eth0\"\naddress = \"192.0.2.1\"\nsyncid = 1\n";
        assert_eq!(
            errors(&format!("{node}{GROUP}")),
            ["node.cluster_key_files: at least one cluster key is needed: the cluster has VIP groups, and gossip between directors is authenticated (`lvs-agent keygen` makes a key)"]
        );
        let keyed = format!("{node}cluster_key_files = [\"/etc/lvs-mesh/cluster.key\"]\n{GROUP}");
        assert_eq!(errors(&keyed), Vec::<String>::new());
    }

    #[test]
    fn host_port() {
        assert!(check_host_port("lb2:7946").is_ok());
        assert!(check_host_port("[2001:db8::1]:7946").is_ok());
        assert!(check_host_port("2001:db8::1:7946").is_err());
        assert!(check_host_port("lb2").is_err());
        assert!(check_host_port(":7946").is_err());
        assert!(check_host_port("lb2:0").is_err());
    }

    #[test]
    fn interface_names() {
        assert!(check_interface("ens18").is_ok());
        assert!(check_interface("").is_err());
        assert!(check_interface("a-very-long-name0").is_err());
        assert!(check_interface("eth0:1").is_err());
    }

    #[test]
    fn advert_int_by_version() {
        let ms = Duration::from_millis;
        assert!(check_advert_int(VrrpVersion::V2, ms(1000)).is_ok());
        assert!(check_advert_int(VrrpVersion::V2, ms(1500)).is_err());
        assert!(check_advert_int(VrrpVersion::V2, ms(256_000)).is_err());
        assert!(check_advert_int(VrrpVersion::V3, ms(10)).is_ok());
        assert!(check_advert_int(VrrpVersion::V3, ms(40_950)).is_ok());
        assert!(check_advert_int(VrrpVersion::V3, ms(40_960)).is_err());
        assert!(check_advert_int(VrrpVersion::V3, ms(15)).is_err());
        assert!(check_advert_int(VrrpVersion::V3, ms(0)).is_err());
    }

    #[test]
    fn vrrp_ids_clash_only_on_same_interface_and_family() {
        let second =
            |extra: &str| format!("{GROUP}[[vip_group]]\nname = \"b\"\nvrrp_id = 1\n{extra}");
        let clash = errors(&second("addresses = [\"10.0.0.11/24\"]\n"));
        assert_eq!(clash.len(), 1, "{clash:?}");
        assert!(clash[0].starts_with("vip_group[1].vrrp_id"));
        assert_eq!(
            errors(&second("version = 3\naddresses = [\"2001:db8::1/64\"]\n")),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&second(
                "interface = \"eth1\"\naddresses = [\"10.0.0.11/24\"]\n"
            )),
            Vec::<String>::new()
        );
        // A group without interface runs on the node's: with a node on eth1 it clashes.
        let node =
            "[node]\nid = \"n\"\ninterface = \"eth1\"\naddress = \"192.0.2.1\"\nsyncid = 1\n\
                    cluster_key_files = [\"/k\"]\n";
        let with_node = format!(
            "{node}{}",
            second("interface = \"eth1\"\naddresses = [\"10.0.0.11/24\"]\n")
        );
        assert_eq!(errors(&with_node).len(), 1);
    }

    #[test]
    fn services_need_exactly_one_form() {
        let svc = |body: &str| errors(&format!("{GROUP}[[service]]\n{body}"));
        assert_eq!(
            svc("vip = \"10.0.0.10\"\nport = 80\n"),
            Vec::<String>::new()
        );
        assert_eq!(svc("fwmark = 3\n"), Vec::<String>::new());
        assert_eq!(
            svc("vip = \"10.0.0.10\"\n"),
            ["service[0].port: missing: a vip service needs a port"]
        );
        assert_eq!(
            svc("fwmark = 3\nport = 80\nprotocol = \"udp\"\n"),
            [
                "service[0].port: a fwmark service has no port",
                "service[0].protocol: only for vip services (a fwmark service takes any protocol)"
            ]
        );
    }

    #[test]
    fn tunnel_allows_its_options() {
        let svc = |body: &str| {
            errors(&format!(
                "{GROUP}[[service]]\nvip = \"10.0.0.10\"\nport = 80\nforwarding = \"tun\"\n{body}"
            ))
        };
        assert_eq!(
            svc("tunnel_type = \"gue\"\ntunnel_port = 6080\ntunnel_checksum = \"remcsum\"\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            svc("tunnel_type = \"gre\"\ntunnel_checksum = \"remcsum\"\n"),
            ["service[0].tunnel_checksum: \"remcsum\" is only for gue tunnels"]
        );
        assert_eq!(
            svc("tunnel_port = 6080\n"),
            ["service[0].tunnel_port: only for tunnel_type = \"gue\""]
        );
    }

    #[test]
    fn persistence_prefix_follows_the_family() {
        let svc = |vip: &str, p: u8| {
            errors(&format!(
                "[cluster]\nname = \"t\"\n[[service]]\nvip = \"{vip}\"\nport = 443\npersistence_timeout = 300\npersistence_prefix = {p}\n"
            ))
        };
        assert_eq!(svc("2001:db8::1", 64), Vec::<String>::new());
        assert_eq!(
            svc("10.0.0.10", 64),
            ["service[0].persistence_prefix: 64 is out of range 1..=32 for an IPv4 service"]
        );
    }

    #[test]
    fn services_without_vip_groups_may_use_any_address() {
        let text = "[cluster]\nname = \"t\"\n[[service]]\nvip = \"192.0.2.7\"\nport = 80\n";
        assert_eq!(errors(text), Vec::<String>::new());
    }

    #[test]
    fn defaults_follow_keepalived() {
        let cfg = parse(&format!(
            "{GROUP}[[service]]\nvip = \"10.0.0.10\"\nport = 80\n[[service.real_server]]\naddress = \"192.0.2.1\"\nport = 80\n[[service.real_server.check]]\nkind = \"http_get\"\nurl = [{{ path = \"/\" }}]\n"
        ))
        .expect("valid");
        let cluster = cfg.cluster.expect("cluster");
        let g = &cluster.vip_groups[0];
        assert_eq!(g.version, VrrpVersion::V2);
        assert_eq!(g.advert_int, Duration::from_secs(1));
        assert!(g.preempt);
        assert_eq!(g.garp_master_delay, Duration::from_secs(5));
        let s = &cluster.services[0];
        assert_eq!(s.scheduler, Scheduler::Wlc);
        assert_eq!(s.forwarding, Forwarding::Dr);
        assert_eq!(s.delay_loop, Duration::from_secs(60));
        assert_eq!(
            s.key(),
            Some(ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "10.0.0.10:80".parse().unwrap(),
            })
        );
        let rs = &s.real_servers[0];
        assert_eq!(rs.weight, 1);
        let c = &rs.checks[0];
        assert_eq!((c.connect_timeout, c.retry), (Duration::from_secs(5), 1));
        assert_eq!(c.delay_loop_in(s), Duration::from_secs(60));
        assert_eq!(c.url[0].status_code, [StatusRange::SUCCESS]);
        assert_eq!(cluster.sync, SyncConfig::default());
    }
}
