//! Netlink attributes of the IPVS generic-netlink family
//! (`include/uapi/linux/ip_vs.h`), one enum per nesting level. Values keep the
//! kernel's units; turning them into model types is `codec`'s job.
//!
//! Service and destination ports are big-endian on the wire; every other
//! integer, the sync daemon's multicast port included, is host order. Replies
//! nest without `NLA_F_NESTED` (the kernel uses `nla_nest_start_noflag`), so the
//! parsers look at the attribute kind only.

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, emit_u64, parse_string, parse_u16, parse_u16_be, parse_u32,
    parse_u64, parse_u8, DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator,
    Parseable,
};

/// Parses every attribute of a nest with `P`, naming the nest on error.
pub(crate) fn parse_nest<P>(value: &[u8], nest: &str) -> Result<Vec<P>, DecodeError>
where
    P: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    NlasIterator::new(value)
        .map(|nla| {
            nla.and_then(|b| P::parse(&b))
                .map_err(|e| DecodeError::from(format!("in {nest}: {e}")))
        })
        .collect()
}

fn emit_nest<T: Nla>(nlas: &[T], buffer: &mut [u8]) {
    nlas.emit(buffer)
}

fn nest_len<T: Nla>(nlas: &[T]) -> usize {
    nlas.buffer_len()
}

fn emit_cstr(s: &str, buffer: &mut [u8]) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

fn fixed<const N: usize>(value: &[u8], what: &str) -> Result<[u8; N], DecodeError> {
    value
        .try_into()
        .map_err(|_| DecodeError::from(format!("{what}: expected {N} bytes, got {}", value.len())))
}

/// Top-level attributes (`IPVS_CMD_ATTR_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdAttr {
    Service(Vec<SvcAttr>),
    Dest(Vec<DestAttr>),
    Daemon(Vec<DaemonAttr>),
    TimeoutTcp(u32),
    TimeoutTcpFin(u32),
    TimeoutUdp(u32),
    Other(DefaultNla),
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(n) => nest_len(n),
            CmdAttr::Dest(n) => nest_len(n),
            CmdAttr::Daemon(n) => nest_len(n),
            CmdAttr::TimeoutTcp(_) | CmdAttr::TimeoutTcpFin(_) | CmdAttr::TimeoutUdp(_) => 4,
            CmdAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            CmdAttr::Service(_) => 1,
            CmdAttr::Dest(_) => 2,
            CmdAttr::Daemon(_) => 3,
            CmdAttr::TimeoutTcp(_) => 4,
            CmdAttr::TimeoutTcpFin(_) => 5,
            CmdAttr::TimeoutUdp(_) => 6,
            CmdAttr::Other(n) => n.kind(),
        }
    }

    fn is_nested(&self) -> bool {
        matches!(
            self,
            CmdAttr::Service(_) | CmdAttr::Dest(_) | CmdAttr::Daemon(_)
        )
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            CmdAttr::Service(n) => emit_nest(n, buffer),
            CmdAttr::Dest(n) => emit_nest(n, buffer),
            CmdAttr::Daemon(n) => emit_nest(n, buffer),
            CmdAttr::TimeoutTcp(v) | CmdAttr::TimeoutTcpFin(v) | CmdAttr::TimeoutUdp(v) => {
                emit_u32(buffer, *v).expect("sized by value_len")
            }
            CmdAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CmdAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            1 => CmdAttr::Service(parse_nest(v, "service")?),
            2 => CmdAttr::Dest(parse_nest(v, "destination")?),
            3 => CmdAttr::Daemon(parse_nest(v, "sync daemon")?),
            4 => CmdAttr::TimeoutTcp(parse_u32(v)?),
            5 => CmdAttr::TimeoutTcpFin(parse_u32(v)?),
            6 => CmdAttr::TimeoutUdp(parse_u32(v)?),
            _ => CmdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Service attributes (`IPVS_SVC_ATTR_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvcAttr {
    Af(u16),
    Protocol(u16),
    /// `union nf_inet_addr`: an IPv4 address fills the first 4 bytes.
    Addr([u8; 16]),
    Port(u16),
    Fwmark(u32),
    SchedName(String),
    /// `struct ip_vs_flags`: only bits set in `mask` are changed.
    Flags {
        flags: u32,
        mask: u32,
    },
    Timeout(u32),
    /// Raw 4 bytes: a big-endian mask for IPv4, a host-order prefix length for IPv6.
    Netmask([u8; 4]),
    Stats(Vec<StatsAttr>),
    PeName(String),
    Stats64(Vec<StatsAttr>),
    Other(DefaultNla),
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Addr(_) => 16,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => s.len() + 1,
            SvcAttr::Flags { .. } => 8,
            SvcAttr::Stats(n) | SvcAttr::Stats64(n) => nest_len(n),
            SvcAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => 1,
            SvcAttr::Protocol(_) => 2,
            SvcAttr::Addr(_) => 3,
            SvcAttr::Port(_) => 4,
            SvcAttr::Fwmark(_) => 5,
            SvcAttr::SchedName(_) => 6,
            SvcAttr::Flags { .. } => 7,
            SvcAttr::Timeout(_) => 8,
            SvcAttr::Netmask(_) => 9,
            SvcAttr::Stats(_) => 10,
            SvcAttr::PeName(_) => 11,
            SvcAttr::Stats64(_) => 12,
            SvcAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        let ok = "sized by value_len";
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => emit_u16(buffer, *v).expect(ok),
            SvcAttr::Port(v) => emit_u16_be(buffer, *v).expect(ok),
            SvcAttr::Addr(a) => buffer[..16].copy_from_slice(a),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) => emit_u32(buffer, *v).expect(ok),
            SvcAttr::Netmask(m) => buffer[..4].copy_from_slice(m),
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => emit_cstr(s, buffer),
            SvcAttr::Flags { flags, mask } => {
                emit_u32(&mut buffer[..4], *flags).expect(ok);
                emit_u32(&mut buffer[4..8], *mask).expect(ok);
            }
            SvcAttr::Stats(n) | SvcAttr::Stats64(n) => emit_nest(n, buffer),
            SvcAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for SvcAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            1 => SvcAttr::Af(parse_u16(v)?),
            2 => SvcAttr::Protocol(parse_u16(v)?),
            3 => SvcAttr::Addr(fixed(v, "IPVS_SVC_ATTR_ADDR")?),
            4 => SvcAttr::Port(parse_u16_be(v)?),
            5 => SvcAttr::Fwmark(parse_u32(v)?),
            6 => SvcAttr::SchedName(parse_string(v)?),
            7 => {
                let raw: [u8; 8] = fixed(v, "IPVS_SVC_ATTR_FLAGS")?;
                SvcAttr::Flags {
                    flags: parse_u32(&raw[..4])?,
                    mask: parse_u32(&raw[4..])?,
                }
            }
            8 => SvcAttr::Timeout(parse_u32(v)?),
            9 => SvcAttr::Netmask(fixed(v, "IPVS_SVC_ATTR_NETMASK")?),
            10 => SvcAttr::Stats(parse_nest(v, "service stats")?),
            11 => SvcAttr::PeName(parse_string(v)?),
            12 => SvcAttr::Stats64(parse_nest(v, "service stats64")?),
            _ => SvcAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Destination attributes (`IPVS_DEST_ATTR_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    Addr([u8; 16]),
    Port(u16),
    /// `IP_VS_CONN_F_*` forwarding bits.
    FwdMethod(u32),
    Weight(u32),
    UThresh(u32),
    LThresh(u32),
    ActiveConns(u32),
    InactConns(u32),
    PersistConns(u32),
    Stats(Vec<StatsAttr>),
    /// Needed when the destination's family differs from the service's.
    AddrFamily(u16),
    Stats64(Vec<StatsAttr>),
    TunType(u8),
    TunPort(u16),
    TunFlags(u16),
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_) | DestAttr::AddrFamily(_) | DestAttr::TunPort(_) => 2,
            DestAttr::TunFlags(_) => 2,
            DestAttr::TunType(_) => 1,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Stats(n) | DestAttr::Stats64(n) => nest_len(n),
            DestAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => 1,
            DestAttr::Port(_) => 2,
            DestAttr::FwdMethod(_) => 3,
            DestAttr::Weight(_) => 4,
            DestAttr::UThresh(_) => 5,
            DestAttr::LThresh(_) => 6,
            DestAttr::ActiveConns(_) => 7,
            DestAttr::InactConns(_) => 8,
            DestAttr::PersistConns(_) => 9,
            DestAttr::Stats(_) => 10,
            DestAttr::AddrFamily(_) => 11,
            DestAttr::Stats64(_) => 12,
            DestAttr::TunType(_) => 13,
            DestAttr::TunPort(_) => 14,
            DestAttr::TunFlags(_) => 15,
            DestAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        let ok = "sized by value_len";
        match self {
            DestAttr::Addr(a) => buffer[..16].copy_from_slice(a),
            DestAttr::Port(v) | DestAttr::TunPort(v) => emit_u16_be(buffer, *v).expect(ok),
            DestAttr::AddrFamily(v) | DestAttr::TunFlags(v) => emit_u16(buffer, *v).expect(ok),
            DestAttr::TunType(v) => buffer[0] = *v,
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v)
            | DestAttr::PersistConns(v) => emit_u32(buffer, *v).expect(ok),
            DestAttr::Stats(n) | DestAttr::Stats64(n) => emit_nest(n, buffer),
            DestAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            1 => DestAttr::Addr(fixed(v, "IPVS_DEST_ATTR_ADDR")?),
            2 => DestAttr::Port(parse_u16_be(v)?),
            3 => DestAttr::FwdMethod(parse_u32(v)?),
            4 => DestAttr::Weight(parse_u32(v)?),
            5 => DestAttr::UThresh(parse_u32(v)?),
            6 => DestAttr::LThresh(parse_u32(v)?),
            7 => DestAttr::ActiveConns(parse_u32(v)?),
            8 => DestAttr::InactConns(parse_u32(v)?),
            9 => DestAttr::PersistConns(parse_u32(v)?),
            10 => DestAttr::Stats(parse_nest(v, "destination stats")?),
            11 => DestAttr::AddrFamily(parse_u16(v)?),
            12 => DestAttr::Stats64(parse_nest(v, "destination stats64")?),
            13 => DestAttr::TunType(parse_u8(v)?),
            14 => DestAttr::TunPort(parse_u16_be(v)?),
            15 => DestAttr::TunFlags(parse_u16(v)?),
            _ => DestAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Sync daemon attributes (`IPVS_DAEMON_ATTR_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonAttr {
    State(u32),
    McastIfn(String),
    SyncId(u32),
    SyncMaxlen(u16),
    McastGroup([u8; 4]),
    McastGroup6([u8; 16]),
    /// Host order, unlike service ports (the kernel reads it with `nla_get_u16`).
    McastPort(u16),
    McastTtl(u8),
    Other(DefaultNla),
}

impl Nla for DaemonAttr {
    fn value_len(&self) -> usize {
        match self {
            DaemonAttr::State(_) | DaemonAttr::SyncId(_) | DaemonAttr::McastGroup(_) => 4,
            DaemonAttr::McastIfn(s) => s.len() + 1,
            DaemonAttr::SyncMaxlen(_) | DaemonAttr::McastPort(_) => 2,
            DaemonAttr::McastGroup6(_) => 16,
            DaemonAttr::McastTtl(_) => 1,
            DaemonAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DaemonAttr::State(_) => 1,
            DaemonAttr::McastIfn(_) => 2,
            DaemonAttr::SyncId(_) => 3,
            DaemonAttr::SyncMaxlen(_) => 4,
            DaemonAttr::McastGroup(_) => 5,
            DaemonAttr::McastGroup6(_) => 6,
            DaemonAttr::McastPort(_) => 7,
            DaemonAttr::McastTtl(_) => 8,
            DaemonAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        let ok = "sized by value_len";
        match self {
            DaemonAttr::State(v) | DaemonAttr::SyncId(v) => emit_u32(buffer, *v).expect(ok),
            DaemonAttr::McastIfn(s) => emit_cstr(s, buffer),
            DaemonAttr::SyncMaxlen(v) => emit_u16(buffer, *v).expect(ok),
            DaemonAttr::McastPort(v) => emit_u16(buffer, *v).expect(ok),
            DaemonAttr::McastGroup(a) => buffer[..4].copy_from_slice(a),
            DaemonAttr::McastGroup6(a) => buffer[..16].copy_from_slice(a),
            DaemonAttr::McastTtl(v) => buffer[0] = *v,
            DaemonAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DaemonAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            1 => DaemonAttr::State(parse_u32(v)?),
            2 => DaemonAttr::McastIfn(parse_string(v)?),
            3 => DaemonAttr::SyncId(parse_u32(v)?),
            4 => DaemonAttr::SyncMaxlen(parse_u16(v)?),
            5 => DaemonAttr::McastGroup(fixed(v, "IPVS_DAEMON_ATTR_MCAST_GROUP")?),
            6 => DaemonAttr::McastGroup6(fixed(v, "IPVS_DAEMON_ATTR_MCAST_GROUP6")?),
            7 => DaemonAttr::McastPort(parse_u16(v)?),
            8 => DaemonAttr::McastTtl(parse_u8(v)?),
            _ => DaemonAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One counter of a stats nest (`IPVS_STATS_ATTR_*`). The legacy nest mixes
/// 32- and 64-bit values, the `STATS64` nest is all 64-bit: `wide` keeps the
/// width so that a re-emitted nest is byte-identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsAttr {
    pub kind: u16,
    pub value: u64,
    pub wide: bool,
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        if self.wide {
            8
        } else {
            4
        }
    }

    fn kind(&self) -> u16 {
        self.kind
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        let ok = "sized by value_len";
        if self.wide {
            emit_u64(buffer, self.value).expect(ok)
        } else {
            emit_u32(buffer, self.value as u32).expect(ok)
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for StatsAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        let (value, wide) = match v.len() {
            4 => (u64::from(parse_u32(v)?), false),
            8 => (parse_u64(v)?, true),
            // IPVS_STATS_ATTR_PAD (alignment filler) carries no counter.
            0 => (0, false),
            n => {
                return Err(DecodeError::from(format!(
                    "stats attribute {}: expected 4 or 8 bytes, got {n}",
                    buf.kind()
                )))
            }
        };
        Ok(StatsAttr {
            kind: buf.kind(),
            value,
            wide,
        })
    }
}

/// `IPVS_CMD_GET_INFO` reply attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfoAttr {
    Version(u32),
    ConnTabSize(u32),
    Other(DefaultNla),
}

impl Nla for InfoAttr {
    fn value_len(&self) -> usize {
        match self {
            InfoAttr::Version(_) | InfoAttr::ConnTabSize(_) => 4,
            InfoAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            InfoAttr::Version(_) => 1,
            InfoAttr::ConnTabSize(_) => 2,
            InfoAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            InfoAttr::Version(v) | InfoAttr::ConnTabSize(v) => {
                emit_u32(buffer, *v).expect("sized by value_len")
            }
            InfoAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for InfoAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            1 => InfoAttr::Version(parse_u32(v)?),
            2 => InfoAttr::ConnTabSize(parse_u32(v)?),
            _ => InfoAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}
