//! Config → the IPVS state the agent wants: one [`VirtualService`] per `[[service]]`
//! and the [`Scope`] of kernel services the agent manages. Pure.

use std::net::SocketAddr;

use super::model::{
    Destination, Forwarding, Persistence, SchedFlags, Service, ServiceKey, TunnelFlags, TunnelKind,
};
use super::plan::{Scope, VirtualService};
use crate::config::{
    self, ClusterConfig, RealServer, SchedFlag, SorryServer, TunnelChecksum, TunnelType,
};
use crate::health::Health;

/// Every configured service with the real servers its pool holds now (`health`: the
/// checks' verdicts, quorum and sorry server; see [`crate::health::pool`]), in config
/// order.
pub fn services(cluster: &ClusterConfig, health: &mut Health) -> Vec<VirtualService> {
    cluster
        .services
        .iter()
        .map(|s| {
            let pool = health.pool(s);
            let mut destinations: Vec<Destination> = s
                .real_servers
                .iter()
                .zip(&pool.weights)
                .filter_map(|(rs, weight)| {
                    let mut d = destination(s, rs);
                    d.weight = (*weight)?;
                    Some(d)
                })
                .collect();
            if let (true, Some(sorry)) = (pool.sorry, &s.sorry_server) {
                destinations.push(sorry_destination(s, sorry));
            }
            VirtualService {
                service: service(s),
                destinations,
            }
        })
        .collect()
}

/// The sorry server, weight 1, forwarded as the service's real servers are.
fn sorry_destination(s: &config::Service, sorry: &SorryServer) -> Destination {
    let port = sorry.port.or(s.port).unwrap_or(0);
    let stand_in = RealServer {
        address: sorry.address,
        port: Some(port),
        weight: 1,
        upper_threshold: 0,
        lower_threshold: 0,
        forwarding: None,
        inhibit_on_failure: None,
        checks: Vec::new(),
    };
    destination(s, &stand_in)
}

/// The cluster's addresses (every vip group address and service vip) and the
/// configured firewall marks.
pub fn scope(cluster: &ClusterConfig) -> Scope {
    let mut scope = Scope::default();
    for g in &cluster.vip_groups {
        scope.addrs.extend(g.addresses.iter().map(|a| a.addr));
    }
    for s in &cluster.services {
        match key(s) {
            ServiceKey::Addr { addr, .. } => scope.addrs.insert(addr.ip()),
            ServiceKey::Fwmark { family, mark } => scope.fwmarks.insert((family, mark)),
        };
    }
    scope
}

/// A validated service always has exactly one of vip + port and fwmark.
fn key(s: &config::Service) -> ServiceKey {
    s.key().expect("a validated service has a key")
}

fn service(s: &config::Service) -> Service {
    let sched_flags = s
        .sched_flags
        .iter()
        .map(|f| match f {
            SchedFlag::ShFallback | SchedFlag::MhFallback | SchedFlag::Flag1 => {
                SchedFlags::FALLBACK
            }
            SchedFlag::ShPort | SchedFlag::MhPort | SchedFlag::Flag2 => SchedFlags::PORT,
            SchedFlag::Flag3 => SchedFlags {
                flag3: true,
                ..SchedFlags::default()
            },
        })
        .fold(SchedFlags::default(), SchedFlags::union);
    let key = key(s);
    Service {
        key,
        scheduler: s.scheduler.clone(),
        sched_flags,
        persistence: s.persistence_timeout.map(|t| Persistence {
            // Validation keeps timeouts within u32 seconds.
            timeout_s: t.as_secs() as u32,
            prefix_len: s.persistence_prefix.unwrap_or(key.family().max_prefix()),
        }),
        one_packet: s.ops,
    }
}

/// One real server as a destination, at its configured weight.
fn destination(s: &config::Service, rs: &RealServer) -> Destination {
    let forwarding = match s.forwarding_of(rs) {
        config::Forwarding::Dr => Forwarding::Route,
        config::Forwarding::Nat => Forwarding::Masq,
        config::Forwarding::Tun => Forwarding::Tunnel {
            kind: match s.tunnel_type.unwrap_or(TunnelType::Ipip) {
                TunnelType::Ipip => TunnelKind::Ipip,
                TunnelType::Gue => TunnelKind::Gue,
                TunnelType::Gre => TunnelKind::Gre,
            },
            port: s.tunnel_port.unwrap_or(0),
            flags: match s.tunnel_checksum {
                None | Some(TunnelChecksum::NoCsum) => TunnelFlags::default(),
                Some(TunnelChecksum::Csum) => TunnelFlags {
                    csum: true,
                    remcsum: false,
                },
                Some(TunnelChecksum::RemCsum) => TunnelFlags {
                    csum: false,
                    remcsum: true,
                },
            },
        },
    };
    Destination {
        // A fwmark service's real servers have no port: the packet's is kept.
        addr: SocketAddr::new(rs.address, rs.port.unwrap_or(0)),
        forwarding,
        weight: rs.weight,
        upper_threshold: rs.upper_threshold,
        lower_threshold: rs.lower_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::model::{Family, Protocol, Scheduler};

    fn cluster(text: &str) -> ClusterConfig {
        crate::config::parse(text)
            .expect("valid config")
            .cluster
            .expect("cluster part")
    }

    #[test]
    fn the_seed_cluster_maps_to_its_ipvsadm_rules() {
        let c = cluster(include_str!("../../../deploy/examples/seed-cluster.toml"));
        let got = services(&c, &mut Health::default());
        assert_eq!(got.len(), 2);
        let k = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "10.0.0.10:80".parse().unwrap(),
        };
        assert_eq!(got[0].service, Service::new(k, Scheduler::Lc));
        let d = &got[0].destinations;
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[1].addr, d[1].forwarding, d[1].weight),
            ("172.16.0.101:80".parse().unwrap(), Forwarding::Route, 2)
        );
        assert_eq!(
            scope(&c).addrs.into_iter().collect::<Vec<_>>(),
            [
                "10.0.0.10".parse::<std::net::IpAddr>().unwrap(),
                "10.0.0.11".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_scope_covers_every_desired_service() {
        for text in [
            include_str!("../../../deploy/examples/seed-cluster.toml"),
            include_str!("../../../deploy/examples/three-cluster.toml"),
        ] {
            let c = cluster(text);
            let scope = scope(&c);
            for v in services(&c, &mut Health::default()) {
                assert!(scope.contains(&v.service.key), "{}", v.service.key);
            }
        }
    }

    #[test]
    fn options_map_to_the_kernel_model() {
        let c = cluster(
            r#"
[cluster]
name = "t"
[[service]]
fwmark = 7
family = "inet6"
scheduler = "mh"
sched_flags = ["mh-fallback", "mh-port"]
persistence_timeout = 300
forwarding = "tun"
tunnel_type = "gue"
tunnel_port = 6080
tunnel_checksum = "remcsum"
[[service.real_server]]
address = "2001:db8::a"
weight = 3
upper_threshold = 100
lower_threshold = 50
[[service.real_server]]
address = "2001:db8::b"
forwarding = "dr"
"#,
        );
        let v = &services(&c, &mut Health::default())[0];
        let key = ServiceKey::Fwmark {
            family: Family::V6,
            mark: 7,
        };
        assert_eq!(v.service.key, key);
        assert_eq!(v.service.scheduler, Scheduler::Mh);
        assert_eq!(
            v.service.sched_flags,
            SchedFlags::FALLBACK.union(SchedFlags::PORT)
        );
        assert_eq!(
            v.service.persistence,
            Some(Persistence {
                timeout_s: 300,
                prefix_len: 128
            })
        );
        assert_eq!(
            v.destinations[0],
            Destination {
                addr: "[2001:db8::a]:0".parse().unwrap(),
                forwarding: Forwarding::Tunnel {
                    kind: TunnelKind::Gue,
                    port: 6080,
                    flags: TunnelFlags {
                        csum: false,
                        remcsum: true
                    },
                },
                weight: 3,
                upper_threshold: 100,
                lower_threshold: 50,
            }
        );
        assert_eq!(v.destinations[1].forwarding, Forwarding::Route);
        assert!(scope(&c).contains(&key));
        assert!(scope(&c).addrs.is_empty());
    }

    /// A service with `weights.len()` real servers (each with a tcp_check, some under
    /// inhibit_on_failure), a quorum, a hysteresis and maybe a sorry server.
    fn health_cluster(
        weights: &[(u32, bool)],
        quorum: u32,
        hysteresis: u32,
        sorry: bool,
    ) -> ClusterConfig {
        let mut text = format!(
            "[cluster]\nname = \"t\"\n[[service]]\nvip = \"198.51.100.1\"\nport = 80\n\
             quorum = {quorum}\nhysteresis = {hysteresis}\n"
        );
        if sorry {
            text += "sorry_server = { address = \"192.0.2.99\", port = 80 }\n";
        }
        for (i, (weight, inhibit)) in weights.iter().enumerate() {
            text += &format!(
                "[[service.real_server]]\naddress = \"192.0.2.{}\"\nport = 80\nweight = {weight}\n\
                 inhibit_on_failure = {inhibit}\n[[service.real_server.check]]\nkind = \"tcp_check\"\n",
                i + 1
            );
        }
        cluster(&text)
    }

    /// Destinations of the one service, by address.
    fn dests(state: &[VirtualService]) -> std::collections::BTreeMap<SocketAddr, Destination> {
        state[0].destinations.iter().map(|d| (d.addr, *d)).collect()
    }

    proptest::proptest! {
        /// For any sequence of verdicts, the writes the plan makes from one desired
        /// state to the next are exactly the destinations that differ: no spurious
        /// write, none missing.
        #[test]
        fn verdict_changes_write_only_what_changed(
            servers in proptest::collection::vec((0u32..4, proptest::bool::ANY), 1..5),
            quorum in 1u32..4,
            hysteresis in 0u32..3,
            sorry in proptest::bool::ANY,
            steps in proptest::collection::vec(proptest::collection::vec(proptest::bool::ANY, 5), 1..20),
        ) {
            let hysteresis = hysteresis.min(quorum - 1);
            let c = health_cluster(&servers, quorum, hysteresis, sorry);
            let svc = &c.services[0];
            let mut health = Health::default();
            let scope = scope(&c);
            let mut table = crate::ipvs::plan::tests::table_of(&[]);
            let mut before = std::collections::BTreeMap::new();
            for up in steps {
                let verdicts = svc
                    .real_servers
                    .iter()
                    .zip(&up)
                    .flat_map(|(rs, &up)| {
                        crate::health::spec::checks(svc, rs).into_iter().map(move |k| {
                            (k, crate::health::Verdict { up, weight: None, last_failure: None })
                        })
                    })
                    .collect();
                health.verdicts = std::sync::Arc::new(verdicts);
                let desired = services(&c, &mut health);
                let actual = crate::ipvs::plan::tests::state_of(&table);
                let ops = crate::ipvs::plan::plan(&desired, &actual, &scope);
                let after = dests(&desired);
                let differ = before
                    .keys()
                    .chain(after.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|a| before.get(*a) != after.get(*a))
                    .count();
                let destination_ops = ops
                    .iter()
                    .filter(|op| !matches!(op, crate::ipvs::model::Op::AddService(_)))
                    .count();
                proptest::prop_assert_eq!(destination_ops, differ, "{:?}", ops);
                for op in &ops {
                    crate::ipvs::plan::tests::apply(&mut table, op).map_err(proptest::test_runner::TestCaseError::fail)?;
                }
                before = after;
            }
        }
    }
}
