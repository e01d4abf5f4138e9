//! What becomes of each keepalived keyword (keepalived.conf(5), 2.2) on import: the
//! table the importer's comments quote and `import-keepalived --keywords` prints.

/// The block a keyword belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Top,
    GlobalDefs,
    VrrpInstance,
    VirtualServer,
    RealServer,
    /// Inside HTTP_GET, SSL_GET, TCP_CHECK, MISC_CHECK, DNS_CHECK (and their `url`).
    Checker,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Top => "(top level)",
            Section::GlobalDefs => "global_defs",
            Section::VrrpInstance => "vrrp_instance",
            Section::VirtualServer => "virtual_server",
            Section::RealServer => "real_server",
            Section::Checker => "checker",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Imported as the given key(s).
    Imported(&'static str),
    /// Imported approximately: how.
    Approximated(&'static str),
    /// Not imported: why (written as a comment in the output).
    NotImported(&'static str),
}

use Outcome::{Approximated as A, Imported as I, NotImported as N};
use Section::*;

const NO_SCRIPTS: &str =
    "lvs-mesh runs no notify scripts: it starts the IPVS sync daemons itself and logs every ownership change";
const NO_TRACKING: &str =
    "no tracking: ownership follows each node's liveness over gossip and its readiness";
const NO_MAIL: &str = "no mail: lvs-mesh logs and exports metrics";
const NO_EQUIVALENT: &str = "no equivalent in lvs-mesh";

/// Every keyword of the sections above that keepalived 2.2 documents.
pub const KEYWORDS: &[(Section, &str, Outcome)] = &[
    (Top, "global_defs", I("see its keywords")),
    (Top, "vrrp_instance", I("[[vip_group]]")),
    (Top, "virtual_server", I("[[service]]")),
    (Top, "virtual_server_group", A("each member becomes a [[service]] of its own, with the group's settings and real servers")),
    (Top, "include", I("read in place (and includer, includem, includew, includeb, includea)")),
    (Top, "vrrp_sync_group", N("VIP groups move on their own: the instances of a sync group may be held by different nodes")),
    (Top, "vrrp_script", N(NO_TRACKING)),
    (Top, "vrrp_track_process", N(NO_TRACKING)),
    (Top, "vrrp_track_file", N(NO_TRACKING)),
    (Top, "track_file", N(NO_TRACKING)),
    (Top, "static_ipaddress", N("lvs-mesh adds only the VIPs it holds")),
    (Top, "static_routes", N(NO_EQUIVALENT)),
    (Top, "static_rules", N(NO_EQUIVALENT)),
    (Top, "linkbeat_interfaces", N("lvs-mesh follows its interfaces by netlink")),
    (Top, "garp_group", N("announcements are set per VIP group")),
    (Top, "bfd_instance", N(NO_EQUIVALENT)),
    (Top, "SSL", N("ssl_get checks present no client certificate")),
    (GlobalDefs, "router_id", N("the node id is the ID of ID=FILE on the command line, else the file's name")),
    (GlobalDefs, "lvs_sync_daemon", A("[node] syncid (id) and [sync] mcast_group, mcast_port, mcast_ttl, maxlen; the node's interface is the sync interface; the instance is not: every node runs its own master and a backup for the others")),
    (GlobalDefs, "vrrp_version", I("version of every group")),
    (GlobalDefs, "vrrp_rt_priority", I("[node] rt_priority: the agent's threads at SCHED_RR (without it the agent's default, 5)")),
    (GlobalDefs, "vrrp_garp_master_delay", I("garp_master_delay of every group")),
    (GlobalDefs, "vrrp_garp_master_repeat", I("garp_master_repeat of every group")),
    (GlobalDefs, "vrrp_garp_master_refresh", I("garp_master_refresh of every group")),
    (GlobalDefs, "vrrp_garp_master_refresh_repeat", I("garp_master_refresh_repeat of every group")),
    (GlobalDefs, "vrrp_garp_interval", I("garp_interval of every group")),
    (GlobalDefs, "vrrp_gna_interval", I("gna_interval of every group")),
    (GlobalDefs, "lvs_timeouts", N("lvs-mesh leaves the IPVS timeouts as they are (ipvsadm --set)")),
    (GlobalDefs, "lvs_flush", N("lvs-mesh reconciles the services it configures and leaves the others")),
    (GlobalDefs, "lvs_flush_onstop", N("lvs-mesh leaves IPVS in place when it stops")),
    (GlobalDefs, "enable_script_security", N(NO_SCRIPTS)),
    (GlobalDefs, "script_user", N(NO_SCRIPTS)),
    (GlobalDefs, "notification_email", N(NO_MAIL)),
    (GlobalDefs, "notification_email_from", N(NO_MAIL)),
    (GlobalDefs, "smtp_server", N(NO_MAIL)),
    (GlobalDefs, "smtp_connect_timeout", N(NO_MAIL)),
    (GlobalDefs, "vrrp_strict", N(NO_EQUIVALENT)),
    (GlobalDefs, "vrrp_mcast_group4", N("adverts go to 224.0.0.18 (RFC 3768/5798)")),
    (GlobalDefs, "vrrp_mcast_group6", N("adverts go to ff02::12 (RFC 5798)")),
    (VrrpInstance, "state", A("the initial state only: lvs-mesh elects the holder by priority (a MASTER normally has the highest)")),
    (VrrpInstance, "interface", I("[node] interface, or the group's interface where it differs")),
    (VrrpInstance, "virtual_router_id", I("vrrp_id")),
    (VrrpInstance, "priority", I("priorities, one per director")),
    (VrrpInstance, "advert_int", I("advert_int")),
    (VrrpInstance, "version", I("version")),
    (VrrpInstance, "authentication", I("authentication (auth_type PASS; AH is not imported)")),
    (VrrpInstance, "virtual_ipaddress", I("addresses (without a prefix: /32 or /128, as keepalived; brd, scope, label and the like are not imported)")),
    (VrrpInstance, "virtual_ipaddress_excluded", A("addresses: lvs-mesh's adverts list them too")),
    (VrrpInstance, "nopreempt", I("preempt = false")),
    (VrrpInstance, "preempt", I("preempt = true (the default)")),
    (VrrpInstance, "preempt_delay", I("preempt_delay")),
    (VrrpInstance, "garp_master_delay", I("garp_master_delay")),
    (VrrpInstance, "garp_master_repeat", I("garp_master_repeat")),
    (VrrpInstance, "garp_master_refresh", I("garp_master_refresh")),
    (VrrpInstance, "garp_master_refresh_repeat", I("garp_master_refresh_repeat")),
    (VrrpInstance, "unicast_src_ip", A("the node's address")),
    (VrrpInstance, "unicast_peer", A("vrrp_obey: adverts are obeyed from these sources only; lvs-mesh still sends its adverts by multicast")),
    (VrrpInstance, "mcast_src_ip", A("the node's address")),
    (VrrpInstance, "notify", N(NO_SCRIPTS)),
    (VrrpInstance, "notify_master", N(NO_SCRIPTS)),
    (VrrpInstance, "notify_backup", N(NO_SCRIPTS)),
    (VrrpInstance, "notify_fault", N(NO_SCRIPTS)),
    (VrrpInstance, "notify_stop", N(NO_SCRIPTS)),
    (VrrpInstance, "notify_master_rx_lower_pri", N(NO_SCRIPTS)),
    (VrrpInstance, "notify_priority_changes", N(NO_SCRIPTS)),
    (VrrpInstance, "smtp_alert", N(NO_MAIL)),
    (VrrpInstance, "track_interface", N(NO_TRACKING)),
    (VrrpInstance, "track_script", N(NO_TRACKING)),
    (VrrpInstance, "track_process", N(NO_TRACKING)),
    (VrrpInstance, "track_file", N(NO_TRACKING)),
    (VrrpInstance, "track_bfd", N(NO_TRACKING)),
    (VrrpInstance, "track_src_ip", N(NO_TRACKING)),
    (VrrpInstance, "dont_track_primary", N(NO_TRACKING)),
    (VrrpInstance, "garp_lower_prio_delay", N(NO_EQUIVALENT)),
    (VrrpInstance, "garp_lower_prio_repeat", N(NO_EQUIVALENT)),
    (VrrpInstance, "garp_extra_if", N(NO_EQUIVALENT)),
    (VrrpInstance, "use_vmac", N("the VIPs go on the interface itself, no VRRP MAC")),
    (VrrpInstance, "vmac_xmit_base", N("the VIPs go on the interface itself, no VRRP MAC")),
    (VrrpInstance, "use_vmac_addr", N("the VIPs go on the interface itself, no VRRP MAC")),
    (VrrpInstance, "use_ipvlan", N("the VIPs go on the interface itself")),
    (VrrpInstance, "native_ipv6", N(NO_EQUIVALENT)),
    (VrrpInstance, "accept", N("the holder always accepts traffic to its VIPs")),
    (VrrpInstance, "no_accept", N("the holder always accepts traffic to its VIPs")),
    (VrrpInstance, "skip_check_adv_addr", N(NO_EQUIVALENT)),
    (VrrpInstance, "strict_mode", N(NO_EQUIVALENT)),
    (VrrpInstance, "check_unicast_src", N(NO_EQUIVALENT)),
    (VrrpInstance, "unicast_ttl", N(NO_EQUIVALENT)),
    (VrrpInstance, "unicast_fault_no_peer", N(NO_EQUIVALENT)),
    (VrrpInstance, "old_unicast_checksum", N(NO_EQUIVALENT)),
    (VrrpInstance, "mcast_dst_ip", N("adverts go to the RFC's group")),
    (VrrpInstance, "virtual_routes", N(NO_EQUIVALENT)),
    (VrrpInstance, "virtual_rules", N(NO_EQUIVALENT)),
    (VrrpInstance, "promote_secondaries", N(NO_EQUIVALENT)),
    (VrrpInstance, "lower_prio_no_advert", N(NO_EQUIVALENT)),
    (VrrpInstance, "higher_prio_send_advert", N(NO_EQUIVALENT)),
    (VrrpInstance, "kernel_rx_buf_size", N(NO_EQUIVALENT)),
    (VrrpInstance, "down_timer_adverts", N(NO_EQUIVALENT)),
    (VrrpInstance, "linkbeat_use_polling", N("lvs-mesh follows its interfaces by netlink")),
    (VrrpInstance, "vrf", N(NO_EQUIVALENT)),
    (VrrpInstance, "debug", N("RUST_LOG sets the agent's log level")),
    (VirtualServer, "delay_loop", I("delay_loop")),
    (VirtualServer, "lvs_sched", I("scheduler (and lb_algo, its old name)")),
    (VirtualServer, "lvs_method", I("forwarding, tunnel_type, tunnel_port, tunnel_checksum (and lb_kind, its old name)")),
    (VirtualServer, "protocol", I("protocol")),
    (VirtualServer, "ip_family", I("family")),
    (VirtualServer, "persistence_timeout", I("persistence_timeout (without a value: 360, as keepalived)")),
    (VirtualServer, "persistence_granularity", I("persistence_prefix")),
    (VirtualServer, "ops", I("ops")),
    (VirtualServer, "alpha", I("alpha")),
    (VirtualServer, "omega", I("omega")),
    (VirtualServer, "quorum", I("quorum")),
    (VirtualServer, "hysteresis", I("hysteresis")),
    (VirtualServer, "sorry_server", I("sorry_server")),
    (VirtualServer, "inhibit_on_failure", I("inhibit_on_failure")),
    (VirtualServer, "flag-1", I("sched_flags")),
    (VirtualServer, "flag-2", I("sched_flags")),
    (VirtualServer, "flag-3", I("sched_flags")),
    (VirtualServer, "sh-port", I("sched_flags")),
    (VirtualServer, "sh-fallback", I("sched_flags")),
    (VirtualServer, "mh-port", I("sched_flags")),
    (VirtualServer, "mh-fallback", I("sched_flags")),
    (VirtualServer, "virtualhost", I("virtualhost of its http_get/ssl_get checks")),
    (VirtualServer, "connect_timeout", I("connect_timeout of its checks")),
    (VirtualServer, "retry", I("retry of its checks")),
    (VirtualServer, "delay_before_retry", I("delay_before_retry of its checks")),
    (VirtualServer, "warmup", I("warmup of its checks")),
    (VirtualServer, "real_server", I("[[service.real_server]]")),
    (VirtualServer, "persistence_engine", N(NO_EQUIVALENT)),
    (VirtualServer, "ha_suspend", N("a service is in the kernel on every node whether or not it holds the VIP")),
    (VirtualServer, "smtp_alert", N(NO_MAIL)),
    (VirtualServer, "snmp_name", N("no SNMP: lvs-mesh exports Prometheus metrics")),
    (VirtualServer, "quorum_up", N(NO_SCRIPTS)),
    (VirtualServer, "quorum_down", N(NO_SCRIPTS)),
    (VirtualServer, "sorry_server_inhibit", N(NO_EQUIVALENT)),
    (VirtualServer, "sorry_server_lvs_method", N("the sorry server is reached with the service's forwarding")),
    (RealServer, "weight", I("weight")),
    (RealServer, "lvs_method", I("forwarding (a tunnel's type and flags come from the service)")),
    (RealServer, "uthreshold", I("upper_threshold")),
    (RealServer, "lthreshold", I("lower_threshold")),
    (RealServer, "inhibit_on_failure", I("inhibit_on_failure")),
    (RealServer, "virtualhost", I("virtualhost of its http_get/ssl_get checks")),
    (RealServer, "connect_timeout", I("connect_timeout of its checks")),
    (RealServer, "retry", I("retry of its checks")),
    (RealServer, "delay_before_retry", I("delay_before_retry of its checks")),
    (RealServer, "warmup", I("warmup of its checks")),
    (RealServer, "delay_loop", I("delay_loop of its checks")),
    (RealServer, "HTTP_GET", I("check, kind http_get")),
    (RealServer, "SSL_GET", I("check, kind ssl_get")),
    (RealServer, "TCP_CHECK", I("check, kind tcp_check")),
    (RealServer, "MISC_CHECK", I("check, kind misc_check")),
    (RealServer, "DNS_CHECK", I("check, kind dns_check")),
    (RealServer, "SMTP_CHECK", N("lvs-mesh has no SMTP check: the real server is not checked by it")),
    (RealServer, "UDP_CHECK", N("lvs-mesh has no UDP check: the real server is not checked by it")),
    (RealServer, "PING_CHECK", N("lvs-mesh has no ICMP check: the real server is not checked by it")),
    (RealServer, "FILE_CHECK", N("lvs-mesh has no file check: the real server is not checked by it")),
    (RealServer, "BFD_CHECK", N("lvs-mesh has no BFD check: the real server is not checked by it")),
    (RealServer, "alpha", N("alpha is set per service in lvs-mesh")),
    (RealServer, "notify_up", N(NO_SCRIPTS)),
    (RealServer, "notify_down", N(NO_SCRIPTS)),
    (RealServer, "smtp_alert", N(NO_MAIL)),
    (RealServer, "snmp_name", N("no SNMP: lvs-mesh exports Prometheus metrics")),
    (Checker, "connect_ip", I("connect_ip")),
    (Checker, "connect_port", I("connect_port")),
    (Checker, "connect_timeout", I("connect_timeout")),
    (Checker, "retry", I("retry (and nb_get_retry, its old name)")),
    (Checker, "delay_before_retry", I("delay_before_retry")),
    (Checker, "warmup", I("warmup")),
    (Checker, "delay_loop", I("delay_loop")),
    (Checker, "url", I("url")),
    (Checker, "path", I("url path")),
    (Checker, "status_code", I("url status_code")),
    (Checker, "digest", I("url digest")),
    (Checker, "virtualhost", I("virtualhost (one per check: a url's own applies to the whole check)")),
    (Checker, "misc_path", I("misc_path")),
    (Checker, "misc_timeout", I("misc_timeout")),
    (Checker, "misc_dynamic", I("misc_dynamic")),
    (Checker, "type", I("dns_type")),
    (Checker, "name", I("dns_name")),
    (Checker, "bindto", N("checks leave from the node's own address")),
    (Checker, "bind_if", N("checks leave from the node's own address")),
    (Checker, "bind_port", N("checks leave from an ephemeral port")),
    (Checker, "fwmark", N(NO_EQUIVALENT)),
    (Checker, "alpha", N("alpha is set per service in lvs-mesh")),
    (Checker, "log_all_failures", N("every failure is logged")),
    (Checker, "http_protocol", N("checks speak HTTP/1.0")),
    (Checker, "fast_recovery", N(NO_EQUIVALENT)),
    (Checker, "enable_sni", N("ssl_get sends the virtualhost, if any, as SNI")),
    (Checker, "regex", N("no body regex: use digest")),
    (Checker, "regex_no_match", N("no body regex: use digest")),
    (Checker, "regex_options", N("no body regex: use digest")),
    (Checker, "regex_stack", N("no body regex: use digest")),
    (Checker, "regex_min_offset", N("no body regex: use digest")),
    (Checker, "regex_max_offset", N("no body regex: use digest")),
    (Checker, "user", N("misc_check runs as the agent's user")),
];

/// keepalived's older names for keywords of the table.
pub const ALIASES: &[(&str, &str)] = &[
    ("lb_algo", "lvs_sched"),
    ("lb_kind", "lvs_method"),
    ("nb_get_retry", "retry"),
    ("vrrp_sync_daemon", "lvs_sync_daemon"),
    ("lvs_sync_daemon_interface", "lvs_sync_daemon"),
];

/// The outcome of `keyword` in `section` (after aliases); `None`: a keyword keepalived
/// 2.2 does not document there.
pub fn outcome(section: Section, keyword: &str) -> Option<Outcome> {
    let keyword = ALIASES
        .iter()
        .find(|(old, _)| *old == keyword)
        .map_or(keyword, |(_, new)| new);
    KEYWORDS
        .iter()
        .find(|(s, k, _)| *s == section && *k == keyword)
        .map(|(_, _, o)| *o)
}

/// The table as Markdown, for `import-keepalived --keywords`.
pub fn markdown() -> String {
    let mut out = String::from("| section | keyword | on import |\n|---|---|---|\n");
    for (section, keyword, outcome) in KEYWORDS {
        let what = match outcome {
            Outcome::Imported(how) => format!("imported: {how}"),
            Outcome::Approximated(how) => format!("approximated: {how}"),
            Outcome::NotImported(why) => format!("not imported: {why}"),
        };
        out.push_str(&format!("| {} | `{keyword}` | {what} |\n", section.name()));
    }
    out
}
