//! The reconciler's pure core: from the services the agent wants and the kernel's
//! services, the shortest list of changes that makes the kernel match, touching
//! nothing outside the agent's [`Scope`].
//!
//! What changes in place and what cannot:
//! - a service's scheduler, scheduler flags, persistence (timeout, netmask) and
//!   one-packet flag are edited (`IPVS_CMD_SET_SERVICE`); the key (protocol,
//!   address, port / fwmark, family) is the service's identity, so a new key is
//!   another service (delete + add);
//! - a destination's weight, thresholds and forwarding method, tunnel type, port
//!   and flags included, are edited (`IPVS_CMD_SET_DEST` rehashes the real server
//!   when the method changes); its address and port are its identity.
//!
//! Deletes drop connections, so an edit is always preferred; a deleted service
//! takes its destinations with it, so none are deleted before it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::model::{
    Destination, Family, Forwarding, ObservedDestination, ObservedService, Op, Service, ServiceKey,
    TunnelFlags, TunnelKind,
};

#[cfg(test)]
pub(crate) mod tests;

/// A service with its destinations: what the agent wants, or what the kernel has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualService {
    pub service: Service,
    pub destinations: Vec<Destination>,
}

impl VirtualService {
    /// Drops the kernel's counters.
    pub fn observed(service: ObservedService, destinations: Vec<ObservedDestination>) -> Self {
        VirtualService {
            service: service.service,
            destinations: destinations.into_iter().map(|d| d.destination).collect(),
        }
    }
}

/// The kernel services the agent manages: those on a cluster address (any protocol
/// and port, the address being the cluster's) and those with a configured firewall
/// mark and family. Anything else, such as an operator's own ipvsadm entries, is
/// never changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub addrs: BTreeSet<IpAddr>,
    pub fwmarks: BTreeSet<(Family, u32)>,
}

impl Scope {
    pub fn contains(&self, key: &ServiceKey) -> bool {
        match key {
            ServiceKey::Addr { addr, .. } => self.addrs.contains(&addr.ip()),
            ServiceKey::Fwmark { family, mark } => self.fwmarks.contains(&(*family, *mark)),
        }
    }

    pub fn union(&self, other: &Scope) -> Scope {
        Scope {
            addrs: self.addrs.union(&other.addrs).copied().collect(),
            fwmarks: self.fwmarks.union(&other.fwmarks).copied().collect(),
        }
    }

    /// What `self` covers and `other` does not.
    pub fn difference(&self, other: &Scope) -> Scope {
        Scope {
            addrs: self.addrs.difference(&other.addrs).copied().collect(),
            fwmarks: self.fwmarks.difference(&other.fwmarks).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty() && self.fwmarks.is_empty()
    }
}

/// The changes that turn `actual` into `desired` within `scope`, in an order the
/// kernel accepts: stale services deleted first, then per desired service (by key)
/// the service added or edited, its stale destinations deleted, changed ones
/// edited, new ones added. Desired services are managed whatever the scope (the
/// config's scope covers them); a duplicate key or address keeps the last one.
pub fn plan(desired: &[VirtualService], actual: &[VirtualService], scope: &Scope) -> Vec<Op> {
    let want: BTreeMap<ServiceKey, &VirtualService> =
        desired.iter().map(|v| (v.service.key, v)).collect();
    let have: BTreeMap<ServiceKey, &VirtualService> = actual
        .iter()
        .filter(|v| scope.contains(&v.service.key) || want.contains_key(&v.service.key))
        .map(|v| (v.service.key, v))
        .collect();
    let mut ops: Vec<Op> = have
        .keys()
        .filter(|k| !want.contains_key(k))
        .map(|k| Op::DeleteService(*k))
        .collect();
    for (key, w) in &want {
        let empty = Vec::new();
        let have_dests = match have.get(key) {
            None => {
                ops.push(Op::AddService(w.service.clone()));
                &empty
            }
            Some(h) => {
                if !same_service(&w.service, &h.service) {
                    ops.push(Op::EditService(w.service.clone()));
                }
                &h.destinations
            }
        };
        plan_destinations(&mut ops, *key, &w.destinations, have_dests);
    }
    ops
}

fn plan_destinations(
    ops: &mut Vec<Op>,
    key: ServiceKey,
    want: &[Destination],
    have: &[Destination],
) {
    let want: BTreeMap<SocketAddr, &Destination> = want.iter().map(|d| (d.addr, d)).collect();
    let have: BTreeMap<SocketAddr, &Destination> = have.iter().map(|d| (d.addr, d)).collect();
    ops.extend(
        have.keys()
            .filter(|a| !want.contains_key(a))
            .map(|a| Op::DeleteDestination(key, *a)),
    );
    for (addr, w) in &want {
        match have.get(addr) {
            None => ops.push(Op::AddDestination(key, **w)),
            Some(h) if !same_destination(w, h) => ops.push(Op::EditDestination(key, **w)),
            Some(_) => {}
        }
    }
}

/// Equal as far as the kernel keeps them: it reports persistence netmasks and
/// tunnel details only where they apply (see the codec), so a plain comparison
/// of the model suffices.
fn same_service(want: &Service, have: &Service) -> bool {
    want == have
}

/// Equal as far as the kernel keeps them. A destination on a local address is
/// reported as [`Forwarding::Local`] whatever was asked, so that matches any
/// method (re-asking would never converge); tunnel fields that an encapsulation
/// does not use are ignored.
fn same_destination(want: &Destination, have: &Destination) -> bool {
    let forwarding_matches = have.forwarding == Forwarding::Local
        || used_fields(want.forwarding) == used_fields(have.forwarding);
    forwarding_matches
        && want.weight == have.weight
        && want.upper_threshold == have.upper_threshold
        && want.lower_threshold == have.lower_threshold
}

/// The forwarding with the tunnel fields its encapsulation ignores zeroed: IP-in-IP
/// has no port and no checksum options, GRE no port.
fn used_fields(fwd: Forwarding) -> Forwarding {
    match fwd {
        Forwarding::Tunnel {
            kind: TunnelKind::Ipip,
            ..
        } => Forwarding::Tunnel {
            kind: TunnelKind::Ipip,
            port: 0,
            flags: TunnelFlags::default(),
        },
        Forwarding::Tunnel {
            kind: TunnelKind::Gre,
            flags,
            ..
        } => Forwarding::Tunnel {
            kind: TunnelKind::Gre,
            port: 0,
            flags,
        },
        other => other,
    }
}

/// The key an op is about.
pub fn op_key(op: &Op) -> ServiceKey {
    match op {
        Op::AddService(s) | Op::EditService(s) => s.key,
        Op::DeleteService(k)
        | Op::AddDestination(k, _)
        | Op::EditDestination(k, _)
        | Op::DeleteDestination(k, _) => *k,
    }
}

/// How an op reads in the log, e.g.
/// `add destination 172.16.0.100:80 to tcp 10.0.0.10:80 (weight 1, route)`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddService(s) => write!(f, "add service {} ({})", s.key, ServiceSettings(s)),
            Op::EditService(s) => write!(f, "edit service {} ({})", s.key, ServiceSettings(s)),
            Op::DeleteService(k) => write!(f, "delete service {k}"),
            Op::AddDestination(k, d) => {
                write!(f, "add destination {} to {k} ({})", d.addr, DestSettings(d))
            }
            Op::EditDestination(k, d) => {
                write!(
                    f,
                    "edit destination {} of {k} ({})",
                    d.addr,
                    DestSettings(d)
                )
            }
            Op::DeleteDestination(k, a) => write!(f, "delete destination {a} from {k}"),
        }
    }
}

struct ServiceSettings<'a>(&'a Service);

impl fmt::Display for ServiceSettings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(f, "{}", s.scheduler)?;
        for (set, n) in [
            (s.sched_flags.flag1, 1),
            (s.sched_flags.flag2, 2),
            (s.sched_flags.flag3, 3),
        ] {
            if set {
                write!(f, ", flag-{n}")?;
            }
        }
        if let Some(p) = s.persistence {
            write!(f, ", persistent {} s /{}", p.timeout_s, p.prefix_len)?;
        }
        if s.one_packet {
            write!(f, ", one-packet")?;
        }
        Ok(())
    }
}

struct DestSettings<'a>(&'a Destination);

impl fmt::Display for DestSettings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "weight {}, ", d.weight)?;
        match d.forwarding {
            Forwarding::Masq => write!(f, "masq")?,
            Forwarding::Route => write!(f, "route")?,
            Forwarding::Local => write!(f, "local")?,
            Forwarding::Tunnel { kind, port, flags } => {
                let kind = match kind {
                    TunnelKind::Ipip => "ipip",
                    TunnelKind::Gue => "gue",
                    TunnelKind::Gre => "gre",
                };
                write!(f, "tunnel {kind}")?;
                if port != 0 {
                    write!(f, " port {port}")?;
                }
                if flags.csum {
                    write!(f, " csum")?;
                }
                if flags.remcsum {
                    write!(f, " remcsum")?;
                }
            }
        }
        if d.upper_threshold != 0 || d.lower_threshold != 0 {
            write!(
                f,
                ", thresholds {}..{}",
                d.lower_threshold, d.upper_threshold
            )?;
        }
        Ok(())
    }
}
