//! Plain data describing IPVS objects, free of any netlink detail, so that the
//! reconciler and proptest can build and compare them freely.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Transport protocol of an address:port service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    pub fn from_number(n: u16) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Address family of a firewall-mark service (an address:port service takes
/// it from its address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Longest persistence prefix for this family.
    pub fn max_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// What identifies a virtual service in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    Addr {
        protocol: Protocol,
        addr: SocketAddr,
    },
    Fwmark {
        family: Family,
        mark: u32,
    },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(&addr.ip()),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr } => write!(f, "{} {addr}", protocol.name()),
            ServiceKey::Fwmark { family, mark } => {
                let fam = match family {
                    Family::V4 => "ipv4",
                    Family::V6 => "ipv6",
                };
                write!(f, "fwmark {mark} {fam}")
            }
        }
    }
}

/// Every scheduler the kernel ships; `Other` keeps services created by someone
/// else with an out-of-tree scheduler decodable (the agent only needs to leave
/// them alone).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Mh,
    Fo,
    Ovf,
    Twos,
    Other(String),
}

impl Scheduler {
    pub const KNOWN: [Scheduler; 14] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Lblc,
        Scheduler::Lblcr,
        Scheduler::Dh,
        Scheduler::Sh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Mh,
        Scheduler::Fo,
        Scheduler::Ovf,
        Scheduler::Twos,
    ];

    pub fn name(&self) -> &str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Lblc => "lblc",
            Scheduler::Lblcr => "lblcr",
            Scheduler::Dh => "dh",
            Scheduler::Sh => "sh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Mh => "mh",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Twos => "twos",
            Scheduler::Other(name) => name,
        }
    }

    /// Maps a kernel scheduler name to its variant (`Other` when unknown).
    pub fn from_name(name: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|s| s.name() == name)
            .cloned()
            .unwrap_or_else(|| Scheduler::Other(name.to_owned()))
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three scheduler-specific flags (`IP_VS_SVC_F_SCHED1..3`). `sh` and `mh`
/// read flag 1 as "fallback" and flag 2 as "port"; other schedulers ignore them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchedFlags {
    pub flag1: bool,
    pub flag2: bool,
    pub flag3: bool,
}

impl SchedFlags {
    /// `sh-fallback` / `mh-fallback`: skip overloaded or weight-0 servers.
    pub const FALLBACK: SchedFlags = SchedFlags {
        flag1: true,
        flag2: false,
        flag3: false,
    };
    /// `sh-port` / `mh-port`: hash the source port too.
    pub const PORT: SchedFlags = SchedFlags {
        flag1: false,
        flag2: true,
        flag3: false,
    };

    pub fn union(self, other: SchedFlags) -> SchedFlags {
        SchedFlags {
            flag1: self.flag1 || other.flag1,
            flag2: self.flag2 || other.flag2,
            flag3: self.flag3 || other.flag3,
        }
    }
}

/// Client affinity: connections from the same masked client address go to the
/// same real server for `timeout_s` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Persistence {
    pub timeout_s: u32,
    /// Prefix length of the client mask (IPv4 up to 32, IPv6 up to 128).
    pub prefix_len: u8,
}

/// A virtual service as the agent wants it (no counters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    pub sched_flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (`-o`, UDP only in practice).
    pub one_packet: bool,
}

impl Service {
    /// A service with no persistence, no flags.
    pub fn new(key: ServiceKey, scheduler: Scheduler) -> Self {
        Service {
            key,
            scheduler,
            sched_flags: SchedFlags::default(),
            persistence: None,
            one_packet: false,
        }
    }
}

/// Encapsulation of a tunnelled destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunnelKind {
    #[default]
    Ipip,
    Gue,
    Gre,
}

/// Checksum options of GUE/GRE encapsulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelFlags {
    pub csum: bool,
    /// Remote checksum offload (GUE only).
    pub remcsum: bool,
}

/// How packets reach a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forwarding {
    /// NAT (`-m`).
    Masq,
    /// Direct routing (`-g`, "gatewaying").
    Route,
    /// IP-in-IP, GUE or GRE (`-i`); `port` is the GUE UDP port.
    Tunnel {
        kind: TunnelKind,
        port: u16,
        flags: TunnelFlags,
    },
    /// Reported by the kernel when the real server address is local; not
    /// something to ask for.
    Local,
}

/// A real server of a service, as the agent wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub addr: SocketAddr,
    pub forwarding: Forwarding,
    /// 0 quiesces the server (no new connections). The kernel rejects values
    /// above `i32::MAX`.
    pub weight: u32,
    /// Active-connection cap; 0 means none.
    pub upper_threshold: u32,
    /// Connection count below which an overloaded server is used again.
    pub lower_threshold: u32,
}

/// Traffic counters of a service or destination (the 64-bit kernel set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// A service read back from the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObservedService {
    pub service: Service,
    pub stats: Stats,
}

/// A destination read back from the kernel, with its connection counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObservedDestination {
    pub destination: Destination,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub persistent_conns: u32,
    pub stats: Stats,
}

/// Role of a connection-sync daemon; a network namespace runs at most one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncState {
    Master,
    Backup,
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncState::Master => "master",
            SyncState::Backup => "backup",
        })
    }
}

/// A connection-sync daemon. `None` fields are left to the kernel default
/// (group 224.0.0.81, port 8848, ttl 1, maxlen from the interface MTU); a dump
/// reports every field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncDaemon {
    pub state: SyncState,
    /// Multicast interface name (at most 15 bytes).
    pub mcast_ifname: String,
    /// 0 on a backup accepts every syncid.
    pub syncid: u8,
    pub maxlen: Option<u16>,
    pub mcast_group: Option<IpAddr>,
    pub mcast_port: Option<u16>,
    pub mcast_ttl: Option<u8>,
}

impl SyncDaemon {
    /// Kernel default multicast group.
    pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
    /// Kernel default multicast port.
    pub const DEFAULT_PORT: u16 = 8848;
}

/// Connection timeouts in seconds. On set, 0 leaves that timeout unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

/// IPVS version and connection hash table size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Info {
    pub version: Version,
    pub conn_table_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One change to the kernel's services, as the reconciler plans them and the
/// client applies them one at a time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    AddService(Service),
    EditService(Service),
    DeleteService(ServiceKey),
    AddDestination(ServiceKey, Destination),
    EditDestination(ServiceKey, Destination),
    DeleteDestination(ServiceKey, SocketAddr),
}
