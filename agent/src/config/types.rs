//! Small value types of the config: names, addresses with prefix, keyword enums.

use super::de::deserialize_from_str;
use serde::de::{Deserialize, Deserializer, Error};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub use crate::ipvs::model::{Family, Protocol, Scheduler};

/// Parses one of `table`'s keywords; the error lists the valid ones.
fn keyword<T: Clone>(what: &str, s: &str, table: &[(T, &str)]) -> Result<T, String> {
    match table.iter().find(|(_, kw)| *kw == s) {
        Some((value, _)) => Ok(value.clone()),
        None => {
            let names: Vec<&str> = table.iter().map(|(_, kw)| *kw).collect();
            Err(format!(
                "unknown {what} {s:?} (valid: {})",
                names.join(", ")
            ))
        }
    }
}

/// Declares a keyword enum: parsing from its lower-case config name, an error that lists
/// the valid names, `as_str` and `Display`.
macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident = $kw:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every accepted config name, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($kw),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $kw),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                keyword($what, s, &[$(($name::$variant, $kw)),+])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        deserialize_from_str!($name);
    };
}

keyword_enum!(
    /// Scheduler flags (ipvsadm `-b`); `flag-N` is the raw IP_VS_SVC_F_SCHEDN bit.
    SchedFlag, "scheduler flag" {
        ShFallback = "sh-fallback", ShPort = "sh-port", MhFallback = "mh-fallback",
        MhPort = "mh-port", Flag1 = "flag-1", Flag2 = "flag-2", Flag3 = "flag-3",
    }
);

keyword_enum!(
    /// Packet forwarding method (keepalived `lb_kind`).
    Forwarding, "forwarding method" { Dr = "dr", Nat = "nat", Tun = "tun" }
);

keyword_enum!(
    /// Encapsulation for `forwarding = "tun"`.
    TunnelType, "tunnel type" { Ipip = "ipip", Gue = "gue", Gre = "gre" }
);

keyword_enum!(
    /// Tunnel checksum mode (keepalived `tun_flags`).
    TunnelChecksum, "tunnel checksum" { NoCsum = "nocsum", Csum = "csum", RemCsum = "remcsum" }
);

keyword_enum!(
    /// Health check kind (keepalived HTTP_GET, SSL_GET, TCP_CHECK, MISC_CHECK, DNS_CHECK).
    CheckKind, "check kind" {
        HttpGet = "http_get", SslGet = "ssl_get", TcpCheck = "tcp_check", MiscCheck = "misc_check",
        DnsCheck = "dns_check",
    }
);

keyword_enum!(
    /// A `dns_check` query's type (keepalived DNS_CHECK `type`).
    DnsType, "DNS query type" {
        A = "A", Ns = "NS", Cname = "CNAME", Soa = "SOA", Mx = "MX", Txt = "TXT", Aaaa = "AAAA",
    }
);

impl DnsType {
    /// The type's number on the wire (RFC 1035 §3.2.2, RFC 3596).
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
        }
    }
}

keyword_enum!(
    /// VRRP authentication type; only the cleartext one of VRRPv2 (keepalived `PASS`).
    AuthType, "authentication type" { Pass = "pass" }
);

// The IPVS model's enums serve the config too, parsed from the kernel's names
// (ipvsadm's, for schedulers and protocols).

impl FromStr for Scheduler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let known = Scheduler::KNOWN;
        let table: Vec<(Scheduler, &str)> = known.iter().map(|k| (k.clone(), k.name())).collect();
        keyword("scheduler", s, &table)
    }
}

deserialize_from_str!(Scheduler);

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let table = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp].map(|p| (p, p.name()));
        keyword("protocol", s, &table)
    }
}

deserialize_from_str!(Protocol);

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let table = [Family::V4, Family::V6].map(|f| (f, family_name(f)));
        keyword("family", s, &table)
    }
}

deserialize_from_str!(Family);

/// The config name of a family (ipvsadm's and iproute2's): `inet` or `inet6`.
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "inet",
        Family::V6 => "inet6",
    }
}

/// Human name of a family used in messages.
pub fn family_label(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// Checks a name made of `a-z`, `0-9`, `_` and `-` (node ids, cluster names).
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if s.is_empty() || s.len() > 63 || !s.chars().all(ok_char) {
        return Err(format!(
            "invalid {what} {s:?}: use 1 to 63 characters from a-z, 0-9, _ and -"
        ));
    }
    Ok(())
}

/// A director's id, unique in the cluster (`[a-z0-9_-]`, at most 63 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_name("node id", s)?;
        Ok(NodeId(s.to_owned()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

deserialize_from_str!(NodeId);

/// A virtual address with its prefix length, e.g. `10.0.0.10/24` (the prefix is required:
/// it decides the subnet route added with the address, as in keepalived's virtual_ipaddress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipAddress {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl VipAddress {
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }
}

impl FromStr for VipAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(format!(
                "{s:?} has no prefix length (write it as address/prefix, e.g. \"{s}/24\")"
            ));
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = Family::of(&addr).max_prefix();
        let prefix_len = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| {
                format!(
                    "prefix length {prefix:?} is out of range 1..={max} for an {} address",
                    family_label(Family::of(&addr))
                )
            })?;
        Ok(VipAddress { addr, prefix_len })
    }
}

impl fmt::Display for VipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

deserialize_from_str!(VipAddress);

/// VRRP priority of a node in a group: 1..=254 (255 is reserved for the address owner,
/// 0 means "releasing the master role").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(u8);

impl Priority {
    pub const DEFAULT: Priority = Priority(100);

    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::int::<1, 254, D, u8>(d).map(Priority)
    }
}

/// VRRP protocol version (keepalived `vrrp_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, whole-second adverts, optional cleartext password.
    #[default]
    V2,
    /// RFC 5798: IPv4 or IPv6, centisecond adverts, no authentication.
    V3,
}

impl<'de> Deserialize<'de> for VrrpVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i64::deserialize(d)? {
            2 => Ok(VrrpVersion::V2),
            3 => Ok(VrrpVersion::V3),
            v => Err(D::Error::custom(format!("VRRP version {v} is not 2 or 3"))),
        }
    }
}

/// Accepted HTTP status codes: one code or an inclusive range written `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    pub first: u16,
    pub last: u16,
}

impl StatusRange {
    /// keepalived's default when a url has no status_code: any 2xx.
    pub const SUCCESS: StatusRange = StatusRange {
        first: 200,
        last: 299,
    };

    pub fn contains(&self, code: u16) -> bool {
        (self.first..=self.last).contains(&code)
    }

    fn new(first: i64, last: i64) -> Result<Self, String> {
        let ok = |c: i64| (100..=599).contains(&c);
        if !ok(first) || !ok(last) {
            return Err(format!(
                "HTTP status code {} is out of range 100..=599",
                if ok(first) { last } else { first }
            ));
        }
        if first > last {
            return Err(format!("status range {first}-{last} is empty"));
        }
        // Both are in 100..=599, so they fit.
        Ok(StatusRange {
            first: first as u16,
            last: last as u16,
        })
    }
}

impl FromStr for StatusRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a status code or a range like \"200-299\"");
        let num = |t: &str| t.trim().parse::<i64>().map_err(|_| bad());
        match s.split_once('-') {
            Some((a, b)) => StatusRange::new(num(a)?, num(b)?),
            None => {
                let c = num(s)?;
                StatusRange::new(c, c)
            }
        }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code or a range like \"200-299\"")
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<StatusRange, E> {
                StatusRange::new(v, v).map_err(E::custom)
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<StatusRange, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<StatusRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vip_address_needs_prefix_in_family_range() {
        assert_eq!(
            "10.0.0.10/24".parse::<VipAddress>().unwrap().to_string(),
            "10.0.0.10/24"
        );
        assert!("10.0.0.10"
            .parse::<VipAddress>()
            .unwrap_err()
            .contains("no prefix"));
        assert!("10.0.0.10/33"
            .parse::<VipAddress>()
            .unwrap_err()
            .contains("1..=32"));
        assert!("10.0.0.10/0".parse::<VipAddress>().is_err());
        assert!("2001:db8::1/128".parse::<VipAddress>().is_ok());
        assert!("2001:db8::1/129"
            .parse::<VipAddress>()
            .unwrap_err()
            .contains("1..=128"));
        assert!("10.0.0/24"
            .parse::<VipAddress>()
            .unwrap_err()
            .contains("not an IP"));
    }

    #[test]
    fn keyword_errors_list_valid_names() {
        assert_eq!(
            "xx".parse::<Forwarding>().unwrap_err(),
            "unknown forwarding method \"xx\" (valid: dr, nat, tun)"
        );
        assert_eq!("wlc".parse::<Scheduler>(), Ok(Scheduler::Wlc));
    }

    #[test]
    fn node_ids_are_lowercase_names() {
        assert!("ha_lb_01".parse::<NodeId>().is_ok());
        assert!("HA".parse::<NodeId>().is_err());
        assert!("".parse::<NodeId>().is_err());
        assert!("a.b".parse::<NodeId>().is_err());
    }

    #[test]
    fn status_ranges() {
        assert_eq!("200-299".parse(), Ok(StatusRange::SUCCESS));
        assert!("300-200".parse::<StatusRange>().is_err());
        assert!("99".parse::<StatusRange>().is_err());
        assert!("2xx".parse::<StatusRange>().is_err());
    }

    proptest! {
        #[test]
        fn vip_address_display_parses_back(v4 in any::<[u8; 4]>(), p in 1u8..=32) {
            let v = VipAddress { addr: IpAddr::from(v4), prefix_len: p };
            prop_assert_eq!(v.to_string().parse::<VipAddress>(), Ok(v));
        }

        #[test]
        fn status_range_display_parses_back(a in 100u16..600, b in 100u16..600) {
            let r = StatusRange { first: a.min(b), last: a.max(b) };
            prop_assert_eq!(r.to_string().parse::<StatusRange>(), Ok(r));
        }
    }
}
