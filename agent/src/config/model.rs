//! The typed config model. Field docs give each key's meaning and default; the
//! reference for operators is deploy/examples/REFERENCE.md.

use super::de;
use super::types::*;
use crate::ipvs::model::ServiceKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One loaded and validated config file: this director's `[node]` part, the cluster
/// part, or both. A node with `cluster_store` may start with its node part alone and
/// receive the cluster part from its peers (`crate::document`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: Option<NodeConfig>,
    pub cluster: Option<ClusterConfig>,
}

/// The file as written: the cluster part is spread over top-level tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    pub node: Option<NodeConfig>,
    pub cluster: Option<ClusterTable>,
    pub sync: Option<SyncConfig>,
    #[serde(default)]
    pub vip_group: Vec<VipGroup>,
    #[serde(default)]
    pub service: Vec<Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterTable {
    pub name: String,
    #[serde(default)]
    pub vrrp_obey: VrrpObey,
}

/// `[node]`: this director.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Interface carrying the VIPs, VRRP and the sync multicast (the seed's `ens18`).
    pub interface: String,
    /// This director's own address on `interface`.
    pub address: IpAddr,
    /// Membership gossip socket; default `address:7946`.
    pub gossip_listen: Option<SocketAddr>,
    /// The QUIC control API's address; default `address:7947`. Served when
    /// `control_tls` is set.
    pub control_listen: Option<SocketAddr>,
    /// This node's identity for the QUIC control API (mutual TLS): the cluster CA and
    /// a node certificate it issued (`lvs-cli cert init`, `lvs-cli cert issue --node`).
    pub control_tls: Option<ControlTls>,
    /// Where to serve Prometheus metrics (GET /metrics, plain HTTP); unset: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// IPVS sync id this node uses as sync master (1..=255, unique in the cluster).
    #[serde(deserialize_with = "de::int::<1, 255, _, _>")]
    pub syncid: u8,
    /// Peers to contact at start, `host:port` (IPv6 as `[addr]:port`).
    #[serde(default)]
    pub join: Vec<String>,
    /// Cluster key files; the first one is the primary key, the others are still accepted
    /// (key rotation).
    #[serde(default)]
    pub cluster_key_files: Vec<PathBuf>,
    /// How often the agent re-reads the kernel's IPVS state and repairs drift.
    #[serde(default = "de::secs::<5>", deserialize_with = "de::seconds")]
    pub reconcile_interval: Duration,
    /// SWIM probe period; every gossip timer (probe timeout, suspicion, re-announce)
    /// scales with it, so a lab can run at a fraction of the LAN preset's 1 s.
    #[serde(default = "de::secs::<1>", deserialize_with = "de::seconds")]
    pub gossip_probe_period: Duration,
    /// How often the owner of VIP groups sends a heartbeat to each of their heirs.
    #[serde(
        default = "default_heartbeat_interval",
        deserialize_with = "de::seconds"
    )]
    pub heartbeat_interval: Duration,
    /// Heartbeat silence after which a heir takes its owner's groups without waiting
    /// for SWIM; unset = 3 x `heartbeat_interval`.
    #[serde(default, deserialize_with = "de::opt_seconds")]
    pub heartbeat_timeout: Option<Duration>,
    /// SCHED_RR priority of the agent's threads (keepalived's `vrrp_rt_priority`); 0:
    /// normal scheduling.
    #[serde(
        default = "default_rt_priority",
        deserialize_with = "de::int::<0, 99, _, _>"
    )]
    pub rt_priority: u8,
    /// Root-only Unix socket for local commands (`lvs-agent join`, `lvs-agent status`).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// Where this node keeps the cluster document applied with `lvs-cli apply` (or
    /// fetched from a peer that runs a newer one). Once it exists it is the node's
    /// cluster part, whatever the config files say; unset: `apply` is refused and the
    /// cluster part comes from the config files only.
    pub cluster_store: Option<PathBuf>,
}

/// `[node] control_tls`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTls {
    /// The cluster CA certificate: callers must hold a certificate it issued.
    pub ca: PathBuf,
    /// This node's certificate, issued by the CA as a node certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl ControlTls {
    /// The same files, as the control crate's client and server load them.
    pub fn files(&self) -> lvs_control::quic::TlsFiles {
        lvs_control::quic::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_millis(100)
}

/// Above every normal process, below interrupt threads (50) and the kernel's own.
fn default_rt_priority() -> u8 {
    5
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/lvs-agent.sock")
}

pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
pub const DEFAULT_CONTROL_PORT: u16 = 7947;

impl NodeConfig {
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_listen
            .unwrap_or(SocketAddr::new(self.address, DEFAULT_GOSSIP_PORT))
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
            .unwrap_or(self.heartbeat_interval * 3)
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control_listen
            .unwrap_or(SocketAddr::new(self.address, DEFAULT_CONTROL_PORT))
    }
}

/// The cluster-wide part: `[cluster]`, `[sync]`, `[[vip_group]]`, `[[service]]`. The
/// default (no groups, no services) is what a node runs while it waits for the cluster
/// document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    /// Whose VRRP adverts the groups obey, unless a group says otherwise.
    pub vrrp_obey: VrrpObey,
    pub sync: SyncConfig,
    pub vip_groups: Vec<VipGroup>,
    pub services: Vec<Service>,
}

impl ClusterConfig {
    /// Whose adverts `group` obeys: its own `vrrp_obey`, else the cluster's.
    pub fn obey_of<'a>(&'a self, group: &'a VipGroup) -> &'a VrrpObey {
        group.vrrp_obey.as_ref().unwrap_or(&self.vrrp_obey)
    }

    /// The group that holds `addr`, if any.
    pub fn group_of(&self, addr: IpAddr) -> Option<&VipGroup> {
        self.vip_groups
            .iter()
            .find(|g| g.addresses.iter().any(|a| a.addr == addr))
    }
}

/// `[sync]`: IPVS connection synchronisation and the conn-table sysctls that matter for
/// fail-over. Defaults are the kernel's except `sync_threshold` and
/// `sync_refresh_period`, which make the holder re-send every active connection every
/// 2 s, so a node that comes back learns the connections opened while it was away.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default = "default_mcast_group")]
    pub mcast_group: IpAddr,
    #[serde(
        default = "default_mcast_port",
        deserialize_with = "de::int::<1, 65535, _, _>"
    )]
    pub mcast_port: u16,
    #[serde(
        default = "de::n::<_, 1>",
        deserialize_with = "de::int::<1, 255, _, _>"
    )]
    pub mcast_ttl: u8,
    /// Largest sync message; unset = derived from the interface MTU by the kernel.
    #[serde(default, deserialize_with = "de::opt_int::<1, 65535, _, _>")]
    pub maxlen: Option<u16>,
    /// `net.ipv4.vs.sync_version`.
    #[serde(default = "de::n::<_, 1>", deserialize_with = "de::int::<0, 1, _, _>")]
    pub sync_version: u8,
    /// `net.ipv4.vs.sync_threshold`: [threshold, period].
    #[serde(default = "default_sync_threshold")]
    pub sync_threshold: [u32; 2],
    /// `net.ipv4.vs.sync_refresh_period`; 0 = off.
    #[serde(default = "de::secs::<2>", deserialize_with = "de::seconds")]
    pub sync_refresh_period: Duration,
    /// How long a node (re)joining waits, its backup daemon running, before it takes
    /// VIP groups; unset = [`SyncConfig::catch_up`]'s derivation.
    #[serde(default, deserialize_with = "de::opt_seconds")]
    pub catch_up: Option<Duration>,
    #[serde(default)]
    pub sync_persist_mode: bool,
    #[serde(default)]
    pub expire_nodest_conn: bool,
    #[serde(default)]
    pub expire_quiescent_template: bool,
    #[serde(default)]
    pub conntrack: bool,
}

fn default_mcast_group() -> IpAddr {
    IpAddr::from([224, 0, 0, 81])
}

fn default_mcast_port() -> u16 {
    8848
}

/// Period 0: re-sent by time (`sync_refresh_period`), not every 50th packet.
fn default_sync_threshold() -> [u32; 2] {
    [3, 0]
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            mcast_group: default_mcast_group(),
            mcast_port: default_mcast_port(),
            mcast_ttl: 1,
            maxlen: None,
            sync_version: 1,
            sync_threshold: default_sync_threshold(),
            sync_refresh_period: Duration::from_secs(2),
            catch_up: None,
            sync_persist_mode: false,
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            conntrack: false,
        }
    }
}

impl SyncConfig {
    /// Slack over `sync_refresh_period` in the derived catch-up: 1 s until the next
    /// packet of a connection that sends at least once a second (the kernel re-sends
    /// on a packet), and 3 s for the master to send a part-filled message
    /// (IPVS_SYNC_FLUSH_TIME, 2 s, checked every IPVS_SYNC_CHECK_PERIOD, 1 s).
    const CATCH_UP_SLACK: Duration = Duration::from_secs(4);

    /// How long a node whose backup daemon (re)starts listening waits before it is
    /// ready to take VIP groups: `catch_up` if set; else, when the kernel re-sends by
    /// time (period 0, refresh on), the refresh period plus 4 s; else zero (a
    /// re-send every Nth packet has no time bound to wait for).
    pub fn catch_up(&self) -> Duration {
        let [_, period] = self.sync_threshold;
        self.catch_up
            .unwrap_or(if period == 0 && !self.sync_refresh_period.is_zero() {
                self.sync_refresh_period + Self::CATCH_UP_SLACK
            } else {
                Duration::ZERO
            })
    }
}

/// `[[vip_group]]`: addresses that move together, one VRRP instance of the seed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipGroup {
    pub name: String,
    #[serde(deserialize_with = "de::int::<1, 255, _, _>")]
    pub vrrp_id: u8,
    #[serde(default)]
    pub version: VrrpVersion,
    /// Default: the node's interface.
    pub interface: Option<String>,
    pub addresses: Vec<VipAddress>,
    /// Node id → priority; nodes not listed get `default_priority`.
    #[serde(default)]
    pub priorities: BTreeMap<NodeId, Priority>,
    #[serde(default = "default_priority")]
    pub default_priority: Priority,
    #[serde(default = "de::secs::<1>", deserialize_with = "de::seconds")]
    pub advert_int: Duration,
    #[serde(default = "de::yes")]
    pub preempt: bool,
    #[serde(default = "de::secs::<0>", deserialize_with = "de::seconds")]
    pub preempt_delay: Duration,
    pub authentication: Option<Authentication>,
    #[serde(default = "de::secs::<5>", deserialize_with = "de::seconds")]
    pub garp_master_delay: Duration,
    #[serde(default = "de::n::<_, 5>")]
    pub garp_master_repeat: u32,
    /// 0 = no periodic refresh.
    #[serde(default = "de::secs::<0>", deserialize_with = "de::seconds")]
    pub garp_master_refresh: Duration,
    #[serde(default = "de::n::<_, 1>")]
    pub garp_master_refresh_repeat: u32,
    #[serde(default = "de::secs::<0>", deserialize_with = "de::seconds")]
    pub garp_interval: Duration,
    #[serde(default = "de::secs::<0>", deserialize_with = "de::seconds")]
    pub gna_interval: Duration,
    /// Overrides `[cluster] vrrp_obey` for this group.
    pub vrrp_obey: Option<VrrpObey>,
}

/// Whose VRRP adverts a group obeys (`vrrp_obey`). keepalived obeys every router with
/// the group's vrid and authentication, and so does `"all"` (the default): the safety
/// net that keeps one holder while gossip is cut. `"none"`: adverts never move a group,
/// the gossip election alone decides (a host on the link cannot take groups away with
/// a forged advert). A list of addresses obeys those sources only (the directors and
/// any keepalived peers), in the spirit of keepalived's `unicast_peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VrrpObey {
    #[default]
    All,
    None,
    Sources(Vec<IpAddr>),
}

impl VrrpObey {
    pub fn obeys(&self, src: IpAddr) -> bool {
        match self {
            VrrpObey::All => true,
            VrrpObey::None => false,
            VrrpObey::Sources(list) => list.contains(&src),
        }
    }
}

impl<'de> Deserialize<'de> for VrrpObey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = VrrpObey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"all\", \"none\" or a list of IP addresses")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VrrpObey, E> {
                match v {
                    "all" => Ok(VrrpObey::All),
                    "none" => Ok(VrrpObey::None),
                    _ => Err(E::custom(format!(
                        "{v:?}: expected \"all\", \"none\" or a list of IP addresses"
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<VrrpObey, A::Error> {
                let mut list = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    let addr = text.parse().map_err(|_| {
                        serde::de::Error::custom(format!("{text:?} is not an IP address"))
                    })?;
                    list.push(addr);
                }
                Ok(VrrpObey::Sources(list))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn default_priority() -> Priority {
    Priority::DEFAULT
}

impl VipGroup {
    /// The family of the group's addresses (validation makes them all the same).
    pub fn family(&self) -> Option<Family> {
        self.addresses.first().map(VipAddress::family)
    }

    pub fn priority_of(&self, node: &NodeId) -> Priority {
        self.priorities
            .get(node)
            .copied()
            .unwrap_or(self.default_priority)
    }

    /// The interface the group runs on for a node whose interface is `node_interface`.
    pub fn interface_or<'a>(&'a self, node_interface: &'a str) -> &'a str {
        self.interface.as_deref().unwrap_or(node_interface)
    }
}

/// VRRPv2 authentication (keepalived `authentication { auth_type PASS; auth_pass ... }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    #[serde(rename = "type")]
    pub kind: AuthType,
    pub password: String,
}

/// `[[service]]`: an IPVS virtual service (keepalived `virtual_server`), given either as
/// `vip` + `port` (+ `protocol`) or as `fwmark` (+ `family`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub vip: Option<IpAddr>,
    #[serde(default, deserialize_with = "de::opt_int::<1, 65535, _, _>")]
    pub port: Option<u16>,
    /// Default `tcp` (address form only).
    pub protocol: Option<Protocol>,
    #[serde(default, deserialize_with = "de::opt_int::<1, 4294967295, _, _>")]
    pub fwmark: Option<u32>,
    /// Default `inet` (fwmark form only).
    pub family: Option<Family>,
    #[serde(default = "default_scheduler")]
    pub scheduler: Scheduler,
    #[serde(default)]
    pub sched_flags: Vec<SchedFlag>,
    #[serde(default = "default_forwarding")]
    pub forwarding: Forwarding,
    /// Default `ipip` when tunnelling.
    pub tunnel_type: Option<TunnelType>,
    #[serde(default, deserialize_with = "de::opt_int::<1, 65535, _, _>")]
    pub tunnel_port: Option<u16>,
    pub tunnel_checksum: Option<TunnelChecksum>,
    /// Whole seconds; unset = no persistence.
    #[serde(default, deserialize_with = "de::opt_seconds")]
    pub persistence_timeout: Option<Duration>,
    /// Client addresses sharing this prefix stick to one real server (IPv4 1..=32,
    /// IPv6 1..=128); default: the whole address.
    #[serde(default, deserialize_with = "de::opt_int::<1, 128, _, _>")]
    pub persistence_prefix: Option<u8>,
    #[serde(default)]
    pub ops: bool,
    #[serde(default = "de::secs::<60>", deserialize_with = "de::seconds")]
    pub delay_loop: Duration,
    #[serde(
        default = "de::n::<_, 1>",
        deserialize_with = "de::int::<1, 4294967295, _, _>"
    )]
    pub quorum: u32,
    #[serde(default)]
    pub hysteresis: u32,
    pub sorry_server: Option<SorryServer>,
    #[serde(default)]
    pub alpha: bool,
    #[serde(default)]
    pub omega: bool,
    #[serde(default)]
    pub inhibit_on_failure: bool,
    #[serde(default, rename = "real_server")]
    pub real_servers: Vec<RealServer>,
}

fn default_scheduler() -> Scheduler {
    Scheduler::Wlc
}

fn default_forwarding() -> Forwarding {
    Forwarding::Dr
}

impl Service {
    /// The IPVS identity; `None` only when neither or both forms are given, which
    /// validation rejects.
    pub fn key(&self) -> Option<ServiceKey> {
        match (self.vip, self.port, self.fwmark) {
            (Some(vip), Some(port), None) => Some(ServiceKey::Addr {
                protocol: self.protocol.unwrap_or(Protocol::Tcp),
                addr: SocketAddr::new(vip, port),
            }),
            (None, None, Some(mark)) => Some(ServiceKey::Fwmark {
                family: self.family.unwrap_or(Family::V4),
                mark,
            }),
            _ => None,
        }
    }

    pub fn family(&self) -> Family {
        match self.vip {
            Some(vip) => Family::of(&vip),
            None => self.family.unwrap_or(Family::V4),
        }
    }

    pub fn forwarding_of(&self, rs: &RealServer) -> Forwarding {
        rs.forwarding.unwrap_or(self.forwarding)
    }

    pub fn inhibit_on_failure_of(&self, rs: &RealServer) -> bool {
        rs.inhibit_on_failure.unwrap_or(self.inhibit_on_failure)
    }

    /// Whether any real server of the service is reached through a tunnel.
    pub fn uses_tunnel(&self) -> bool {
        self.forwarding == Forwarding::Tun
            || self
                .real_servers
                .iter()
                .any(|rs| rs.forwarding == Some(Forwarding::Tun))
    }
}

/// Where traffic goes when fewer than `quorum` real servers are up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    pub address: IpAddr,
    #[serde(default, deserialize_with = "de::opt_int::<1, 65535, _, _>")]
    pub port: Option<u16>,
}

/// `[[service.real_server]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    pub address: IpAddr,
    /// Required for address services, forbidden for fwmark services.
    #[serde(default, deserialize_with = "de::opt_int::<1, 65535, _, _>")]
    pub port: Option<u16>,
    #[serde(
        default = "de::n::<_, 1>",
        deserialize_with = "de::int::<0, 65535, _, _>"
    )]
    pub weight: u32,
    /// 0 = no limit.
    #[serde(default)]
    pub upper_threshold: u32,
    #[serde(default)]
    pub lower_threshold: u32,
    /// Default: the service's.
    pub forwarding: Option<Forwarding>,
    /// Default: the service's.
    pub inhibit_on_failure: Option<bool>,
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
}

/// `[[service.real_server.check]]`: one health check (all must pass).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub kind: CheckKind,
    /// Default: the service's `delay_loop`.
    #[serde(default, deserialize_with = "de::opt_seconds")]
    pub delay_loop: Option<Duration>,
    #[serde(default = "de::secs::<5>", deserialize_with = "de::seconds")]
    pub connect_timeout: Duration,
    #[serde(default = "de::n::<_, 1>")]
    pub retry: u32,
    #[serde(default = "de::secs::<1>", deserialize_with = "de::seconds")]
    pub delay_before_retry: Duration,
    /// Random delay before the first check, up to this; default: the delay loop.
    #[serde(default, deserialize_with = "de::opt_seconds")]
    pub warmup: Option<Duration>,
    /// http_get / ssl_get.
    #[serde(default)]
    pub url: Vec<UrlCheck>,
    pub virtualhost: Option<String>,
    /// ssl_get: verify the real server's certificate (its chain, and its name:
    /// `virtualhost`, else the connect address) against the CA certificates in this PEM
    /// file. Without it the certificate is not verified, as keepalived does not.
    pub tls_ca: Option<PathBuf>,
    /// Default: the real server's port.
    #[serde(default, deserialize_with = "de::opt_int::<1, 65535, _, _>")]
    pub connect_port: Option<u16>,
    /// Default: the real server's address.
    pub connect_ip: Option<IpAddr>,
    /// misc_check: the command line to run.
    pub misc_path: Option<String>,
    /// Default: the check's delay loop.
    #[serde(default, deserialize_with = "de::opt_seconds")]
    pub misc_timeout: Option<Duration>,
    #[serde(default)]
    pub misc_dynamic: bool,
    /// dns_check: the query's type; default `SOA` (keepalived's).
    pub dns_type: Option<DnsType>,
    /// dns_check: the name queried; default `.` (keepalived's).
    pub dns_name: Option<String>,
}

impl Check {
    pub fn delay_loop_in(&self, service: &Service) -> Duration {
        self.delay_loop.unwrap_or(service.delay_loop)
    }
}

/// One url of an http_get / ssl_get check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlCheck {
    pub path: String,
    #[serde(default = "default_status")]
    pub status_code: Vec<StatusRange>,
    /// MD5 of the body, 32 hex digits (keepalived `digest`).
    pub digest: Option<String>,
}

fn default_status() -> Vec<StatusRange> {
    vec![StatusRange::SUCCESS]
}

impl Config {
    /// One line for `check-config`, e.g. `node ha_lb_01 (syncid 1) on ens18 172.16.0.10`.
    pub fn summary(&self) -> String {
        let node = self.node.as_ref().map(|n| {
            format!(
                "node {} (syncid {}) on {} {}",
                n.id, n.syncid, n.interface, n.address
            )
        });
        let cluster = self.cluster.as_ref().map(|c| {
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            let addrs: usize = c.vip_groups.iter().map(|g| g.addresses.len()).sum();
            let rs: usize = c.services.iter().map(|s| s.real_servers.len()).sum();
            format!(
                "cluster {:?}: {} ({}), {}, {}",
                c.name,
                plural(c.vip_groups.len(), "vip group", "vip groups"),
                plural(addrs, "address", "addresses"),
                plural(c.services.len(), "service", "services"),
                plural(rs, "real server", "real servers"),
            )
        });
        [node, cluster]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")
    }
}
