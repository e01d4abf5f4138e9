//! Model <-> IPVS attributes: request builders and reply decoders. Pure; the
//! attribute layout and order follow ipvsadm/libipvs so that requests are
//! byte-comparable with what ipvsadm sends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::attrs::{CmdAttr, DaemonAttr, DestAttr, InfoAttr, StatsAttr, SvcAttr};
use super::message::{Attrs, Cmd, IpvsMessage};
use super::model::{
    Destination, Family, Forwarding, Info, ObservedDestination, ObservedService, Persistence,
    Protocol, SchedFlags, Scheduler, Service, ServiceKey, Stats, SyncDaemon, SyncState, Timeouts,
    TunnelFlags, TunnelKind, Version,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

const SVC_F_PERSISTENT: u32 = 0x0001;
const SVC_F_ONEPACKET: u32 = 0x0004;
const SVC_F_SCHED1: u32 = 0x0008;
const SVC_F_SCHED2: u32 = 0x0010;
const SVC_F_SCHED3: u32 = 0x0020;

const CONN_F_FWD_MASK: u32 = 0x0007;
const CONN_F_MASQ: u32 = 0;
const CONN_F_LOCALNODE: u32 = 1;
const CONN_F_TUNNEL: u32 = 2;
const CONN_F_DROUTE: u32 = 3;

const TUN_F_CSUM: u16 = 1;
const TUN_F_REMCSUM: u16 = 2;

/// Longest interface or scheduler name the kernel takes (16 with the NUL).
const NAME_MAX: usize = 15;

/// A field that cannot go on the wire; the client adds the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

fn af(family: Family) -> u16 {
    match family {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    }
}

fn family_from_af(n: u16) -> Result<Family, String> {
    match n {
        AF_INET => Ok(Family::V4),
        AF_INET6 => Ok(Family::V6),
        _ => Err(format!("unknown address family {n}")),
    }
}

/// `union nf_inet_addr`: IPv4 in the first 4 bytes, the rest zero.
fn inet_addr(ip: IpAddr) -> [u8; 16] {
    let mut out = [0; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn ip_from(family: Family, raw: [u8; 16]) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(raw)),
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains('\0') {
        return Err(invalid(
            field,
            format!("{name:?} must be 1 to {NAME_MAX} bytes without NUL"),
        ));
    }
    Ok(())
}

fn key_attrs(key: &ServiceKey) -> Vec<SvcAttr> {
    match key {
        ServiceKey::Addr { protocol, addr } => vec![
            SvcAttr::Af(af(Family::of(&addr.ip()))),
            SvcAttr::Protocol(protocol.number()),
            SvcAttr::Addr(inet_addr(addr.ip())),
            SvcAttr::Port(addr.port()),
        ],
        ServiceKey::Fwmark { family, mark } => {
            vec![SvcAttr::Af(af(*family)), SvcAttr::Fwmark(*mark)]
        }
    }
}

fn sched_bits(flags: SchedFlags) -> u32 {
    let mut bits = 0;
    for (set, bit) in [
        (flags.flag1, SVC_F_SCHED1),
        (flags.flag2, SVC_F_SCHED2),
        (flags.flag3, SVC_F_SCHED3),
    ] {
        if set {
            bits |= bit;
        }
    }
    bits
}

/// The netmask attribute: a big-endian mask for IPv4, the prefix length in
/// host order for IPv6. Non-persistent services carry the full mask, as ipvsadm sends.
fn netmask(family: Family, prefix_len: u8) -> [u8; 4] {
    match family {
        Family::V4 => u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0)
            .to_be_bytes(),
        Family::V6 => u32::from(prefix_len).to_ne_bytes(),
    }
}

fn service_attrs(svc: &Service) -> Result<Vec<SvcAttr>, Invalid> {
    let family = svc.key.family();
    check_name("scheduler", svc.scheduler.name())?;
    let mut flags = sched_bits(svc.sched_flags);
    if svc.one_packet {
        flags |= SVC_F_ONEPACKET;
    }
    let (timeout, prefix) = match svc.persistence {
        Some(p) => {
            if p.prefix_len > family.max_prefix() {
                return Err(invalid(
                    "persistence prefix length",
                    format!("/{} is longer than /{}", p.prefix_len, family.max_prefix()),
                ));
            }
            flags |= SVC_F_PERSISTENT;
            (p.timeout_s, p.prefix_len)
        }
        None => (0, family.max_prefix()),
    };
    let mut attrs = key_attrs(&svc.key);
    attrs.extend([
        SvcAttr::SchedName(svc.scheduler.name().to_owned()),
        SvcAttr::Flags {
            flags,
            mask: u32::MAX,
        },
        SvcAttr::Timeout(timeout),
        SvcAttr::Netmask(netmask(family, prefix)),
    ]);
    Ok(attrs)
}

/// `NewService` (add) or `SetService` (edit) with every option.
pub fn service_request(cmd: Cmd, svc: &Service) -> Result<IpvsMessage, Invalid> {
    Ok(IpvsMessage::new(
        cmd,
        vec![CmdAttr::Service(service_attrs(svc)?)],
    ))
}

/// `DelService`, or `GetService` for one service.
pub fn service_key_request(cmd: Cmd, key: &ServiceKey) -> IpvsMessage {
    IpvsMessage::new(cmd, vec![CmdAttr::Service(key_attrs(key))])
}

fn fwd_attrs(fwd: &Forwarding) -> (u32, TunnelKind, u16, TunnelFlags) {
    match *fwd {
        Forwarding::Masq => (CONN_F_MASQ, TunnelKind::Ipip, 0, TunnelFlags::default()),
        Forwarding::Route => (CONN_F_DROUTE, TunnelKind::Ipip, 0, TunnelFlags::default()),
        Forwarding::Local => (
            CONN_F_LOCALNODE,
            TunnelKind::Ipip,
            0,
            TunnelFlags::default(),
        ),
        Forwarding::Tunnel { kind, port, flags } => (CONN_F_TUNNEL, kind, port, flags),
    }
}

fn tunnel_kind_number(kind: TunnelKind) -> u8 {
    match kind {
        TunnelKind::Ipip => 0,
        TunnelKind::Gue => 1,
        TunnelKind::Gre => 2,
    }
}

/// `NewDest` (add) or `SetDest` (edit). The tunnel attributes are always sent,
/// zero when not tunnelling, so an edit away from a tunnel clears them.
pub fn destination_request(
    cmd: Cmd,
    key: &ServiceKey,
    dest: &Destination,
) -> Result<IpvsMessage, Invalid> {
    if dest.weight > i32::MAX as u32 {
        return Err(invalid(
            "weight",
            format!("{} is above {}", dest.weight, i32::MAX),
        ));
    }
    let (method, kind, tun_port, tun_flags) = fwd_attrs(&dest.forwarding);
    let mut flag_bits = 0;
    if tun_flags.csum {
        flag_bits |= TUN_F_CSUM;
    }
    if tun_flags.remcsum {
        flag_bits |= TUN_F_REMCSUM;
    }
    let attrs = vec![
        DestAttr::AddrFamily(af(Family::of(&dest.addr.ip()))),
        DestAttr::Addr(inet_addr(dest.addr.ip())),
        DestAttr::Port(dest.addr.port()),
        DestAttr::FwdMethod(method),
        DestAttr::Weight(dest.weight),
        DestAttr::TunType(tunnel_kind_number(kind)),
        DestAttr::TunPort(tun_port),
        DestAttr::TunFlags(flag_bits),
        DestAttr::UThresh(dest.upper_threshold),
        DestAttr::LThresh(dest.lower_threshold),
    ];
    Ok(IpvsMessage::new(
        cmd,
        vec![CmdAttr::Service(key_attrs(key)), CmdAttr::Dest(attrs)],
    ))
}

/// `DelDest`: the service key and the destination address suffice.
pub fn destination_delete_request(key: &ServiceKey, addr: SocketAddr) -> IpvsMessage {
    IpvsMessage::new(
        Cmd::DelDest,
        vec![
            CmdAttr::Service(key_attrs(key)),
            CmdAttr::Dest(vec![
                DestAttr::AddrFamily(af(Family::of(&addr.ip()))),
                DestAttr::Addr(inet_addr(addr.ip())),
                DestAttr::Port(addr.port()),
            ]),
        ],
    )
}

/// `GetDest` dump of one service.
pub fn destination_dump_request(key: &ServiceKey) -> IpvsMessage {
    service_key_request(Cmd::GetDest, key)
}

fn state_number(state: SyncState) -> u32 {
    match state {
        SyncState::Master => 1,
        SyncState::Backup => 2,
    }
}

/// `NewDaemon`; optional fields follow ipvsadm's order (maxlen, port, ttl, group).
pub fn daemon_start_request(d: &SyncDaemon) -> Result<IpvsMessage, Invalid> {
    check_name("multicast interface", &d.mcast_ifname)?;
    let mut attrs = vec![
        DaemonAttr::State(state_number(d.state)),
        DaemonAttr::McastIfn(d.mcast_ifname.clone()),
        DaemonAttr::SyncId(u32::from(d.syncid)),
    ];
    if let Some(maxlen) = d.maxlen {
        attrs.push(DaemonAttr::SyncMaxlen(maxlen));
    }
    if let Some(port) = d.mcast_port {
        attrs.push(DaemonAttr::McastPort(port));
    }
    if let Some(ttl) = d.mcast_ttl {
        attrs.push(DaemonAttr::McastTtl(ttl));
    }
    match d.mcast_group {
        Some(IpAddr::V4(g)) => attrs.push(DaemonAttr::McastGroup(g.octets())),
        Some(IpAddr::V6(g)) => attrs.push(DaemonAttr::McastGroup6(g.octets())),
        None => {}
    }
    Ok(IpvsMessage::new(
        Cmd::NewDaemon,
        vec![CmdAttr::Daemon(attrs)],
    ))
}

/// `DelDaemon`: the kernel only reads the state.
pub fn daemon_stop_request(state: SyncState) -> IpvsMessage {
    IpvsMessage::new(
        Cmd::DelDaemon,
        vec![CmdAttr::Daemon(vec![DaemonAttr::State(state_number(
            state,
        ))])],
    )
}

/// `SetConfig`; a 0 leaves that timeout unchanged.
pub fn timeouts_request(t: &Timeouts) -> IpvsMessage {
    IpvsMessage::new(
        Cmd::SetConfig,
        vec![
            CmdAttr::TimeoutTcp(t.tcp),
            CmdAttr::TimeoutTcpFin(t.tcp_fin),
            CmdAttr::TimeoutUdp(t.udp),
        ],
    )
}

/// A request with no attributes (`GetInfo`, `GetConfig`, the dumps).
pub fn bare_request(cmd: Cmd) -> IpvsMessage {
    IpvsMessage::new(cmd, Vec::new())
}

// ---------------------------------------------------------------- decoding

fn cmd_attrs(msg: &IpvsMessage, expected: Cmd) -> Result<&[CmdAttr], String> {
    match &msg.attrs {
        Attrs::Cmd(a) if msg.cmd == expected => Ok(a),
        _ => Err(format!("expected {expected:?} reply, got {:?}", msg.cmd)),
    }
}

fn missing(what: &str) -> String {
    format!("missing {what}")
}

fn stats_of(nest: &[StatsAttr]) -> Stats {
    let mut s = Stats::default();
    for a in nest {
        let field = match a.kind {
            1 => &mut s.conns,
            2 => &mut s.inpkts,
            3 => &mut s.outpkts,
            4 => &mut s.inbytes,
            5 => &mut s.outbytes,
            6 => &mut s.cps,
            7 => &mut s.inpps,
            8 => &mut s.outpps,
            9 => &mut s.inbps,
            10 => &mut s.outbps,
            _ => continue,
        };
        *field = a.value;
    }
    s
}

/// Prefix length of a persistence netmask; IPv4 masks must be contiguous.
fn prefix_of(family: Family, raw: [u8; 4]) -> Result<u8, String> {
    match family {
        Family::V4 => {
            let mask = u32::from_be_bytes(raw);
            let len = mask.leading_ones();
            if mask.checked_shl(len).unwrap_or(0) != 0 {
                return Err(format!(
                    "netmask {} is not contiguous",
                    Ipv4Addr::from(mask)
                ));
            }
            Ok(len as u8)
        }
        Family::V6 => {
            let len = u32::from_ne_bytes(raw);
            u8::try_from(len)
                .ok()
                .filter(|l| *l <= 128)
                .ok_or_else(|| format!("IPv6 prefix length {len} out of range"))
        }
    }
}

/// Decodes the service nest of a `GetService` reply (dump or single).
pub fn decode_service(msg: &IpvsMessage) -> Result<ObservedService, String> {
    let nest = cmd_attrs(msg, Cmd::NewService)?
        .iter()
        .find_map(|a| match a {
            CmdAttr::Service(n) => Some(n),
            _ => None,
        })
        .ok_or_else(|| missing("IPVS_CMD_ATTR_SERVICE"))?;
    let (mut afn, mut proto, mut addr, mut port, mut mark) = (None, None, None, None, None);
    let (mut sched, mut flags, mut timeout, mut mask) = (None, None, None, None);
    let (mut stats, mut stats64) = (None, None);
    for a in nest {
        match a {
            SvcAttr::Af(v) => afn = Some(*v),
            SvcAttr::Protocol(v) => proto = Some(*v),
            SvcAttr::Addr(v) => addr = Some(*v),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::Fwmark(v) => mark = Some(*v),
            SvcAttr::SchedName(v) => sched = Some(v.as_str()),
            SvcAttr::Flags { flags: f, .. } => flags = Some(*f),
            SvcAttr::Timeout(v) => timeout = Some(*v),
            SvcAttr::Netmask(v) => mask = Some(*v),
            SvcAttr::Stats(v) => stats = Some(v),
            SvcAttr::Stats64(v) => stats64 = Some(v),
            SvcAttr::PeName(_) | SvcAttr::Other(_) => {}
        }
    }
    let family = family_from_af(afn.ok_or_else(|| missing("IPVS_SVC_ATTR_AF"))?)?;
    let key = match mark.filter(|m| *m != 0) {
        Some(mark) => ServiceKey::Fwmark { family, mark },
        None => {
            let number = proto.ok_or_else(|| missing("IPVS_SVC_ATTR_PROTOCOL"))?;
            let protocol = Protocol::from_number(number)
                .ok_or_else(|| format!("unknown protocol {number}"))?;
            let ip = ip_from(family, addr.ok_or_else(|| missing("IPVS_SVC_ATTR_ADDR"))?);
            let port = port.ok_or_else(|| missing("IPVS_SVC_ATTR_PORT"))?;
            ServiceKey::Addr {
                protocol,
                addr: SocketAddr::new(ip, port),
            }
        }
    };
    let flags = flags.ok_or_else(|| missing("IPVS_SVC_ATTR_FLAGS"))?;
    let persistence = if flags & SVC_F_PERSISTENT != 0 {
        Some(Persistence {
            timeout_s: timeout.ok_or_else(|| missing("IPVS_SVC_ATTR_TIMEOUT"))?,
            prefix_len: prefix_of(
                family,
                mask.ok_or_else(|| missing("IPVS_SVC_ATTR_NETMASK"))?,
            )?,
        })
    } else {
        None
    };
    let service = Service {
        key,
        scheduler: Scheduler::from_name(sched.ok_or_else(|| missing("IPVS_SVC_ATTR_SCHED_NAME"))?),
        sched_flags: SchedFlags {
            flag1: flags & SVC_F_SCHED1 != 0,
            flag2: flags & SVC_F_SCHED2 != 0,
            flag3: flags & SVC_F_SCHED3 != 0,
        },
        persistence,
        one_packet: flags & SVC_F_ONEPACKET != 0,
    };
    let stats = stats64.or(stats).map(|n| stats_of(n)).unwrap_or_default();
    Ok(ObservedService { service, stats })
}

/// Decodes one `GetDest` dump message; `service_family` is used when the
/// kernel omits `IPVS_DEST_ATTR_ADDR_FAMILY` (kernels before 4.9).
pub fn decode_destination(
    msg: &IpvsMessage,
    service_family: Family,
) -> Result<ObservedDestination, String> {
    let nest = cmd_attrs(msg, Cmd::NewDest)?
        .iter()
        .find_map(|a| match a {
            CmdAttr::Dest(n) => Some(n),
            _ => None,
        })
        .ok_or_else(|| missing("IPVS_CMD_ATTR_DEST"))?;
    let mut d = ObservedDestination {
        destination: Destination {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            forwarding: Forwarding::Masq,
            weight: 0,
            upper_threshold: 0,
            lower_threshold: 0,
        },
        active_conns: 0,
        inactive_conns: 0,
        persistent_conns: 0,
        stats: Stats::default(),
    };
    let (mut addr, mut port, mut method, mut afn) = (None, None, None, None);
    let (mut tun_type, mut tun_port, mut tun_flags) = (0, 0, 0);
    let (mut stats, mut stats64) = (None, None);
    for a in nest {
        match a {
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::FwdMethod(v) => method = Some(*v),
            DestAttr::Weight(v) => d.destination.weight = *v,
            DestAttr::UThresh(v) => d.destination.upper_threshold = *v,
            DestAttr::LThresh(v) => d.destination.lower_threshold = *v,
            DestAttr::ActiveConns(v) => d.active_conns = *v,
            DestAttr::InactConns(v) => d.inactive_conns = *v,
            DestAttr::PersistConns(v) => d.persistent_conns = *v,
            DestAttr::Stats(v) => stats = Some(v),
            DestAttr::Stats64(v) => stats64 = Some(v),
            DestAttr::AddrFamily(v) => afn = Some(*v),
            DestAttr::TunType(v) => tun_type = *v,
            DestAttr::TunPort(v) => tun_port = *v,
            DestAttr::TunFlags(v) => tun_flags = *v,
            DestAttr::Other(_) => {}
        }
    }
    let family = match afn {
        Some(n) => family_from_af(n)?,
        None => service_family,
    };
    let ip = ip_from(family, addr.ok_or_else(|| missing("IPVS_DEST_ATTR_ADDR"))?);
    d.destination.addr = SocketAddr::new(ip, port.ok_or_else(|| missing("IPVS_DEST_ATTR_PORT"))?);
    d.destination.forwarding =
        match method.ok_or_else(|| missing("IPVS_DEST_ATTR_FWD_METHOD"))? & CONN_F_FWD_MASK {
            CONN_F_MASQ => Forwarding::Masq,
            CONN_F_LOCALNODE => Forwarding::Local,
            CONN_F_DROUTE => Forwarding::Route,
            CONN_F_TUNNEL => Forwarding::Tunnel {
                kind: match tun_type {
                    0 => TunnelKind::Ipip,
                    1 => TunnelKind::Gue,
                    2 => TunnelKind::Gre,
                    n => return Err(format!("unknown tunnel type {n}")),
                },
                port: tun_port,
                flags: TunnelFlags {
                    csum: tun_flags & TUN_F_CSUM != 0,
                    remcsum: tun_flags & TUN_F_REMCSUM != 0,
                },
            },
            n => return Err(format!("unknown forwarding method {n}")),
        };
    d.stats = stats64.or(stats).map(|n| stats_of(n)).unwrap_or_default();
    Ok(d)
}

/// Decodes one `GetDaemon` dump message.
pub fn decode_daemon(msg: &IpvsMessage) -> Result<SyncDaemon, String> {
    let nest = cmd_attrs(msg, Cmd::NewDaemon)?
        .iter()
        .find_map(|a| match a {
            CmdAttr::Daemon(n) => Some(n),
            _ => None,
        })
        .ok_or_else(|| missing("IPVS_CMD_ATTR_DAEMON"))?;
    let (mut state, mut ifname, mut syncid) = (None, None, None);
    let mut d = SyncDaemon {
        state: SyncState::Master,
        mcast_ifname: String::new(),
        syncid: 0,
        maxlen: None,
        mcast_group: None,
        mcast_port: None,
        mcast_ttl: None,
    };
    for a in nest {
        match a {
            DaemonAttr::State(v) => state = Some(*v),
            DaemonAttr::McastIfn(v) => ifname = Some(v.clone()),
            DaemonAttr::SyncId(v) => syncid = Some(*v),
            DaemonAttr::SyncMaxlen(v) => d.maxlen = Some(*v),
            DaemonAttr::McastGroup(v) => d.mcast_group = Some(IpAddr::from(*v)),
            DaemonAttr::McastGroup6(v) => d.mcast_group = Some(IpAddr::from(*v)),
            DaemonAttr::McastPort(v) => d.mcast_port = Some(*v),
            DaemonAttr::McastTtl(v) => d.mcast_ttl = Some(*v),
            DaemonAttr::Other(_) => {}
        }
    }
    d.state = match state.ok_or_else(|| missing("IPVS_DAEMON_ATTR_STATE"))? {
        1 => SyncState::Master,
        2 => SyncState::Backup,
        n => return Err(format!("unknown sync daemon state {n}")),
    };
    d.mcast_ifname = ifname.ok_or_else(|| missing("IPVS_DAEMON_ATTR_MCAST_IFN"))?;
    let id = syncid.ok_or_else(|| missing("IPVS_DAEMON_ATTR_SYNC_ID"))?;
    d.syncid = u8::try_from(id).map_err(|_| format!("syncid {id} is above 255"))?;
    Ok(d)
}

/// Decodes the `GetConfig` reply.
pub fn decode_timeouts(msg: &IpvsMessage) -> Result<Timeouts, String> {
    let mut t = Timeouts::default();
    for a in cmd_attrs(msg, Cmd::SetConfig)? {
        match a {
            CmdAttr::TimeoutTcp(v) => t.tcp = *v,
            CmdAttr::TimeoutTcpFin(v) => t.tcp_fin = *v,
            CmdAttr::TimeoutUdp(v) => t.udp = *v,
            _ => {}
        }
    }
    Ok(t)
}

/// Decodes the `GetInfo` reply.
pub fn decode_info(msg: &IpvsMessage) -> Result<Info, String> {
    let Attrs::Info(attrs) = &msg.attrs else {
        return Err(format!("expected SetInfo reply, got {:?}", msg.cmd));
    };
    let (mut version, mut size) = (None, None);
    for a in attrs {
        match a {
            InfoAttr::Version(v) => version = Some(*v),
            InfoAttr::ConnTabSize(v) => size = Some(*v),
            InfoAttr::Other(_) => {}
        }
    }
    let v = version.ok_or_else(|| missing("IPVS_INFO_ATTR_VERSION"))?;
    Ok(Info {
        version: Version {
            major: (v >> 16) as u8,
            minor: (v >> 8) as u8,
            patch: v as u8,
        },
        conn_table_size: size.ok_or_else(|| missing("IPVS_INFO_ATTR_CONN_TAB_SIZE"))?,
    })
}
