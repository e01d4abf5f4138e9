//! VRRP advertisement codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798, IPv4 and IPv6).
//!
//! Only the VRRP payload is handled here; senders use a raw socket with protocol 112
//! and hop limit 255, so the kernel builds the IP header.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP.
pub const IP_PROTO_VRRP: u8 = 112;
/// Multicast group for IPv4 advertisements.
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Multicast group for IPv6 advertisements.
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every advertisement is sent with and must arrive with (it never crossed a router).
pub const HOP_LIMIT: u8 = 255;
/// Length of the VRRPv2 authentication data field (present for every auth type).
pub const AUTH_DATA_LEN: usize = 8;
/// Largest VRRPv3 Max Adver Int (12 bits, centiseconds).
pub const MAX_V3_INTERVAL_CS: u16 = 0x0fff;

const HEADER_LEN: usize = 8;
const TYPE_ADVERTISEMENT: u8 = 1;
const AUTH_TYPE_NONE: u8 = 0;
const AUTH_TYPE_SIMPLE: u8 = 1;

/// Virtual router MAC address: 00-00-5E-00-01-{vrid} for IPv4, 00-00-5E-00-02-{vrid} for IPv6.
pub fn virtual_mac(ipv6: bool, vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

/// Protocol version carried in the advertisement's first nibble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// VRRPv2 authentication. VRRPv3 has none, so a v3 advert always carries `Auth::None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    None,
    /// keepalived's `auth_type PASS`: the password, zero-padded to 8 bytes. RFC 3768
    /// deprecates it but keepalived still sends it, so peers must speak it.
    SimplePassword([u8; AUTH_DATA_LEN]),
}

impl Auth {
    /// The simple password as keepalived puts it on the wire (at most 8 bytes, zero padded).
    pub fn simple_password(password: &str) -> Result<Self, PasswordTooLong> {
        let bytes = password.as_bytes();
        if bytes.len() > AUTH_DATA_LEN {
            return Err(PasswordTooLong(bytes.len()));
        }
        let mut data = [0; AUTH_DATA_LEN];
        data[..bytes.len()].copy_from_slice(bytes);
        Ok(Auth::SimplePassword(data))
    }

    fn type_code(&self) -> u8 {
        match self {
            Auth::None => AUTH_TYPE_NONE,
            Auth::SimplePassword(_) => AUTH_TYPE_SIMPLE,
        }
    }
}

/// A VRRP password longer than the 8 bytes the packet can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("VRRP auth_pass is {0} bytes long; the packet carries at most 8")]
pub struct PasswordTooLong(pub usize);

/// One VRRP advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// 255: address owner; 0: the master is resigning.
    pub priority: u8,
    /// v2: seconds (at most 255); v3: centiseconds (at most 4095).
    pub advert_interval: u16,
    /// The virtual addresses, all of the family of the IP header carrying the advert.
    pub addresses: Vec<IpAddr>,
    /// Always `Auth::None` for v3.
    pub auth: Auth,
}

impl Advert {
    /// The advertisement interval as a duration, whatever the version's unit.
    pub fn interval(&self) -> Duration {
        match self.version {
            Version::V2 => Duration::from_secs(u64::from(self.advert_interval)),
            Version::V3 => Duration::from_millis(u64::from(self.advert_interval) * 10),
        }
    }
}

/// Why an advert cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("VRRP vrid 0: virtual router ids are 1..=255")]
    VridZero,
    #[error("VRRP vrid {vrid}: {version} advert_interval {value} exceeds {max}")]
    Interval {
        vrid: u8,
        version: Version,
        value: u16,
        max: u16,
    },
    #[error("VRRP vrid {vrid}: {count} addresses, at most 255 fit in one advert")]
    TooManyAddresses { vrid: u8, count: usize },
    #[error("VRRP vrid {vrid}: address {address} is not of the family of source {src} and destination {dst}")]
    Family {
        vrid: u8,
        address: IpAddr,
        src: IpAddr,
        dst: IpAddr,
    },
    #[error(
        "VRRP vrid {vrid}: source {src} and destination {dst} are of different address families"
    )]
    EndpointFamily { vrid: u8, src: IpAddr, dst: IpAddr },
    #[error("VRRP vrid {vrid}: VRRPv2 runs over IPv4 only")]
    V2OverIpv6 { vrid: u8 },
    #[error("VRRP vrid {vrid}: VRRPv3 has no authentication; use Auth::None")]
    AuthOnV3 { vrid: u8 },
}

/// Encodes `advert` as the VRRP payload of an IP packet from `src` to `dst`, checksum included.
///
/// v2 checksums the VRRP message alone; v3 adds the IPv4/IPv6 pseudo-header
/// (RFC 5798 §5.2.8), as keepalived does for v3 over IPv4 too.
pub fn encode(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
    let vrid = advert.vrid;
    if vrid == 0 {
        return Err(EncodeError::VridZero);
    }
    let endpoints =
        Endpoints::new(src, dst).ok_or(EncodeError::EndpointFamily { vrid, src, dst })?;
    let ipv6 = src.is_ipv6();
    if let Some(&address) = advert.addresses.iter().find(|a| a.is_ipv6() != ipv6) {
        return Err(EncodeError::Family {
            vrid,
            address,
            src,
            dst,
        });
    }
    let count =
        u8::try_from(advert.addresses.len()).map_err(|_| EncodeError::TooManyAddresses {
            vrid,
            count: advert.addresses.len(),
        })?;
    let interval_error = |max| EncodeError::Interval {
        vrid,
        version: advert.version,
        value: advert.advert_interval,
        max,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + advert.addresses.len() * 16 + AUTH_DATA_LEN);
    out.extend([
        advert.version.number() << 4 | TYPE_ADVERTISEMENT,
        vrid,
        advert.priority,
        count,
    ]);
    match advert.version {
        Version::V2 => {
            if ipv6 {
                return Err(EncodeError::V2OverIpv6 { vrid });
            }
            let interval = u8::try_from(advert.advert_interval)
                .map_err(|_| interval_error(u16::from(u8::MAX)))?;
            out.extend([advert.auth.type_code(), interval, 0, 0]);
        }
        Version::V3 => {
            if advert.auth != Auth::None {
                return Err(EncodeError::AuthOnV3 { vrid });
            }
            if advert.advert_interval > MAX_V3_INTERVAL_CS {
                return Err(interval_error(MAX_V3_INTERVAL_CS));
            }
            out.extend(advert.advert_interval.to_be_bytes());
            out.extend([0, 0]);
        }
    }
    for address in &advert.addresses {
        match address {
            IpAddr::V4(a) => out.extend(a.octets()),
            IpAddr::V6(a) => out.extend(a.octets()),
        }
    }
    if advert.version == Version::V2 {
        out.extend(match advert.auth {
            Auth::None => [0; AUTH_DATA_LEN],
            Auth::SimplePassword(data) => data,
        });
    }
    let checksum = compute_checksum(advert.version, &out, endpoints);
    out[6..8].copy_from_slice(&checksum.to_be_bytes());
    Ok(out)
}

/// What is wrong with a received advert; Display names the sender and the vrid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    pub src: IpAddr,
    /// None when the packet is too short to carry one.
    pub vrid: Option<u8>,
    pub kind: DecodeErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRP from {}", self.src)?;
        if let Some(vrid) = self.vrid {
            write!(f, " vrid {vrid}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The field of a received advert that failed validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("TTL/hop limit {0} (must be 255: the packet crossed a router)")]
    HopLimit(u8),
    #[error("{len} bytes, shorter than the 8-byte header")]
    Truncated { len: usize },
    #[error("version {0} (only 2 and 3 are known)")]
    Version(u8),
    #[error("type {0} (only 1, advertisement, is known)")]
    Type(u8),
    #[error("vrid must be 1..=255")]
    VridZero,
    #[error("source {src} and destination {dst} are of different address families")]
    Family { src: IpAddr, dst: IpAddr },
    #[error("VRRPv2 over IPv6")]
    V2OverIpv6,
    #[error("length {len} bytes does not match {count} addresses ({expected} bytes expected)")]
    Length {
        len: usize,
        count: u8,
        expected: usize,
    },
    #[error("bad checksum {got:#06x} (expected {expected:#06x})")]
    Checksum { got: u16, expected: u16 },
    #[error("auth type {got} (expected {expected})")]
    AuthType { got: u8, expected: u8 },
    /// The password itself stays out of logs.
    #[error("wrong authentication password")]
    AuthData,
}

/// Decodes and validates the VRRP payload of an IP packet from `src` to `dst` that arrived
/// with TTL / hop limit `hop_limit`. A v2 advert must carry exactly `expected_auth`; a v3
/// advert carries none, so it is refused when `expected_auth` is not `Auth::None`.
pub fn decode(
    bytes: &[u8],
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    expected_auth: &Auth,
) -> Result<Advert, DecodeError> {
    let fail = |kind| DecodeError {
        src,
        vrid: bytes.get(1).copied(),
        kind,
    };
    if hop_limit != HOP_LIMIT {
        return Err(fail(DecodeErrorKind::HopLimit(hop_limit)));
    }
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(fail(DecodeErrorKind::Truncated { len: bytes.len() }));
    };
    let version = match header[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        other => return Err(fail(DecodeErrorKind::Version(other))),
    };
    let packet_type = header[0] & 0x0f;
    if packet_type != TYPE_ADVERTISEMENT {
        return Err(fail(DecodeErrorKind::Type(packet_type)));
    }
    let [_, vrid, priority, count, b4, b5, c0, c1] = *header;
    if vrid == 0 {
        return Err(fail(DecodeErrorKind::VridZero));
    }
    let Some(endpoints) = Endpoints::new(src, dst) else {
        return Err(fail(DecodeErrorKind::Family { src, dst }));
    };
    let ipv6 = matches!(endpoints, Endpoints::V6(..));
    if version == Version::V2 && ipv6 {
        return Err(fail(DecodeErrorKind::V2OverIpv6));
    }
    let address_len = if ipv6 { 16 } else { 4 };
    let auth_len = if version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    let addresses_end = HEADER_LEN + usize::from(count) * address_len;
    let expected = addresses_end + auth_len;
    if bytes.len() != expected {
        return Err(fail(DecodeErrorKind::Length {
            len: bytes.len(),
            count,
            expected,
        }));
    }
    let got = u16::from_be_bytes([c0, c1]);
    let mut zeroed = bytes.to_vec();
    zeroed[6..8].fill(0);
    let computed = compute_checksum(version, &zeroed, endpoints);
    if got != computed {
        return Err(fail(DecodeErrorKind::Checksum {
            got,
            expected: computed,
        }));
    }
    let (advert_interval, auth_type) = match version {
        Version::V2 => (u16::from(b5), b4),
        // The 4 reserved bits are ignored on receipt (RFC 5798 §5.2.5); v3 has no auth.
        Version::V3 => (u16::from_be_bytes([b4 & 0x0f, b5]), AUTH_TYPE_NONE),
    };
    if auth_type != expected_auth.type_code() {
        return Err(fail(DecodeErrorKind::AuthType {
            got: auth_type,
            expected: expected_auth.type_code(),
        }));
    }
    if let Auth::SimplePassword(password) = expected_auth {
        if bytes[addresses_end..] != password[..] {
            return Err(fail(DecodeErrorKind::AuthData));
        }
    }
    let addresses = bytes[HEADER_LEN..addresses_end]
        .chunks_exact(address_len)
        .map(|chunk| match chunk {
            &[a, b, c, d] => IpAddr::from([a, b, c, d]),
            _ => {
                let mut octets = [0; 16];
                octets.copy_from_slice(chunk);
                IpAddr::from(octets)
            }
        })
        .collect();
    Ok(Advert {
        version,
        vrid,
        priority,
        advert_interval,
        addresses,
        auth: *expected_auth,
    })
}

/// Source and destination of the carrying IP packet, of one family.
#[derive(Clone, Copy)]
enum Endpoints {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Endpoints {
    fn new(src: IpAddr, dst: IpAddr) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(Endpoints::V4(s, d)),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(Endpoints::V6(s, d)),
            _ => None,
        }
    }
}

/// The checksum field value for `message` (whose checksum field is zero).
fn compute_checksum(version: Version, message: &[u8], endpoints: Endpoints) -> u16 {
    let mut sum = Checksum::default();
    if version == Version::V3 {
        // At most 8 + 255 * 16 bytes: the length always fits.
        let len = message.len() as u16;
        match endpoints {
            Endpoints::V4(s, d) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&[0, IP_PROTO_VRRP]);
                sum.add(&len.to_be_bytes());
            }
            Endpoints::V6(s, d) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&u32::from(len).to_be_bytes());
                sum.add(&[0, 0, 0, IP_PROTO_VRRP]);
            }
        }
    }
    sum.add(message);
    sum.finish()
}

/// RFC 1071 ones'-complement sum. Every part added but the last has an even length.
#[derive(Default)]
struct Checksum(u32);

impl Checksum {
    fn add(&mut self, bytes: &[u8]) {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            self.0 += u32::from(word);
            self.0 = (self.0 & 0xffff) + (self.0 >> 16);
        }
    }

    fn finish(self) -> u16 {
        !(self.0 as u16)
    }
}
