use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::*;
use crate::ipvs::model::{Persistence, Protocol, Scheduler};
use crate::ipvs::tests::{arb_destination, arb_service};

/// An in-memory kernel: what each op does to the table, refusing what IPVS refuses
/// (a duplicate add, a change to something missing).
pub(crate) type Table = BTreeMap<ServiceKey, (Service, BTreeMap<SocketAddr, Destination>)>;

fn dests_of<'t>(
    table: &'t mut Table,
    k: &ServiceKey,
) -> Result<&'t mut BTreeMap<SocketAddr, Destination>, String> {
    table
        .get_mut(k)
        .map(|(_, d)| d)
        .ok_or_else(|| format!("no service {k}"))
}

pub(crate) fn apply(table: &mut Table, op: &Op) -> Result<(), String> {
    let service = dests_of;
    match op {
        Op::AddService(s) => {
            if table.contains_key(&s.key) {
                return Err(format!("{op}: exists"));
            }
            table.insert(s.key, (s.clone(), BTreeMap::new()));
        }
        Op::EditService(s) => match table.get_mut(&s.key) {
            Some((old, _)) => *old = s.clone(),
            None => return Err(format!("{op}: missing")),
        },
        Op::DeleteService(k) => {
            table.remove(k).ok_or_else(|| format!("{op}: missing"))?;
        }
        Op::AddDestination(k, d) => {
            if service(table, k)?.insert(d.addr, *d).is_some() {
                return Err(format!("{op}: exists"));
            }
        }
        Op::EditDestination(k, d) => {
            *service(table, k)?
                .get_mut(&d.addr)
                .ok_or_else(|| format!("{op}: missing"))? = *d;
        }
        Op::DeleteDestination(k, a) => {
            service(table, k)?
                .remove(a)
                .ok_or_else(|| format!("{op}: missing"))?;
        }
    }
    Ok(())
}

pub(crate) fn table_of(state: &[VirtualService]) -> Table {
    state
        .iter()
        .map(|v| {
            let dests = v.destinations.iter().map(|d| (d.addr, *d)).collect();
            (v.service.key, (v.service.clone(), dests))
        })
        .collect()
}

pub(crate) fn state_of(table: &Table) -> Vec<VirtualService> {
    table
        .values()
        .map(|(s, d)| VirtualService {
            service: s.clone(),
            destinations: d.values().copied().collect(),
        })
        .collect()
}

// ------------------------------------------------------------ generators

/// Few keys and addresses, so that desired and actual overlap often.
fn arb_key() -> impl Strategy<Value = ServiceKey> {
    let addr = select(vec![
        "10.0.0.1:80",
        "10.0.0.1:443",
        "10.0.0.2:80",
        "[2001:db8::1]:80",
    ]);
    let proto = select(vec![Protocol::Tcp, Protocol::Udp]);
    prop_oneof![
        (proto, addr).prop_map(|(protocol, a)| ServiceKey::Addr {
            protocol,
            addr: a.parse().unwrap()
        }),
        select(vec![(Family::V4, 1), (Family::V6, 1), (Family::V4, 2)])
            .prop_map(|(family, mark)| ServiceKey::Fwmark { family, mark }),
    ]
}

fn arb_vs(local: bool) -> impl Strategy<Value = VirtualService> {
    let addrs = select(vec![
        "172.16.0.1:80",
        "172.16.0.2:80",
        "172.16.0.2:8080",
        "172.16.0.3:80",
        "[2001:db8::a]:80",
    ]);
    let dest = (addrs, arb_destination(), any::<bool>()).prop_map(move |(a, mut d, l)| {
        d.addr = a.parse().unwrap();
        if local && l {
            d.forwarding = Forwarding::Local;
        }
        d
    });
    (
        arb_key(),
        arb_service(),
        proptest::collection::vec(dest, 0..4).prop_map(|v| {
            let by_addr: BTreeMap<_, _> = v.into_iter().map(|d| (d.addr, d)).collect();
            by_addr.into_values().collect::<Vec<_>>()
        }),
    )
        .prop_map(|(key, mut service, destinations)| {
            service.key = key;
            if let Some(p) = &mut service.persistence {
                p.prefix_len = p.prefix_len.min(key.family().max_prefix());
            }
            VirtualService {
                service,
                destinations,
            }
        })
}

/// Unique keys, as in the kernel and in a validated config.
pub(crate) fn arb_state(local: bool) -> impl Strategy<Value = Vec<VirtualService>> {
    proptest::collection::vec(arb_vs(local), 0..6).prop_map(|v| {
        let by_key: BTreeMap<_, _> = v.into_iter().map(|s| (s.service.key, s)).collect();
        by_key.into_values().collect()
    })
}

pub(crate) fn arb_scope() -> impl Strategy<Value = Scope> {
    (
        subsequence(
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            0..=3,
        ),
        subsequence(
            vec![(Family::V4, 1), (Family::V6, 1), (Family::V4, 2)],
            0..=3,
        ),
    )
        .prop_map(|(a, f)| Scope {
            addrs: a.into_iter().collect(),
            fwmarks: f.into_iter().collect(),
        })
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_the_plan_gives_the_desired_state(
        desired in arb_state(false), actual in arb_state(true), scope in arb_scope(),
    ) {
        let ops = plan(&desired, &actual, &scope);
        let mut table = table_of(&actual);
        for op in &ops {
            apply(&mut table, op).map_err(TestCaseError::fail)?;
        }
        let wanted = table_of(&desired);
        for (key, (svc, dests)) in &table {
            match wanted.get(key) {
                Some((want_svc, want_dests)) => {
                    prop_assert_eq!(svc, want_svc);
                    prop_assert_eq!(dests.keys().collect::<Vec<_>>(), want_dests.keys().collect::<Vec<_>>());
                    for (d, w) in dests.values().zip(want_dests.values()) {
                        prop_assert!(same_destination(w, d), "{:?} vs {:?}", w, d);
                    }
                }
                None => prop_assert!(!scope.contains(key), "{} left in scope", key),
            }
        }
        prop_assert!(wanted.keys().all(|k| table.contains_key(k)));
        // Planning again finds nothing to do.
        prop_assert_eq!(plan(&desired, &state_of(&table), &scope), vec![]);
    }

    #[test]
    fn services_outside_the_scope_are_never_touched(
        desired in arb_state(false), actual in arb_state(true), scope in arb_scope(),
    ) {
        let managed = |k: &ServiceKey| scope.contains(k) || desired.iter().any(|v| v.service.key == *k);
        for op in plan(&desired, &actual, &scope) {
            prop_assert!(managed(&op_key(&op)), "{} is outside the scope", op);
        }
    }

    #[test]
    fn kept_keys_are_edited_never_replaced(
        desired in arb_state(false), actual in arb_state(true), scope in arb_scope(),
    ) {
        let ops = plan(&desired, &actual, &scope);
        for op in &ops {
            match op {
                Op::AddService(s) => prop_assert!(!ops.contains(&Op::DeleteService(s.key))),
                Op::AddDestination(k, d) => {
                    prop_assert!(!ops.contains(&Op::DeleteDestination(*k, d.addr)))
                }
                _ => {}
            }
        }
    }
}

// ------------------------------------------------------------ examples

fn tcp(addr: &str) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: addr.parse().unwrap(),
    }
}

fn dest(addr: &str, weight: u32) -> Destination {
    Destination {
        addr: addr.parse().unwrap(),
        forwarding: Forwarding::Route,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

fn vs(key: ServiceKey, dests: &[Destination]) -> VirtualService {
    VirtualService {
        service: Service::new(key, Scheduler::Lc),
        destinations: dests.to_vec(),
    }
}

fn scope_of(addrs: &[&str]) -> Scope {
    Scope {
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        fwmarks: Default::default(),
    }
}

#[test]
fn an_empty_table_gets_services_then_their_destinations() {
    let k = tcp("10.0.0.10:80");
    let d = [dest("172.16.0.100:80", 1), dest("172.16.0.101:80", 2)];
    let ops = plan(&[vs(k, &d)], &[], &scope_of(&["10.0.0.10"]));
    assert_eq!(
        ops,
        [
            Op::AddService(Service::new(k, Scheduler::Lc)),
            Op::AddDestination(k, d[0]),
            Op::AddDestination(k, d[1]),
        ]
    );
    assert_eq!(
        ops[1].to_string(),
        "add destination 172.16.0.100:80 to tcp 10.0.0.10:80 (weight 1, route)"
    );
}

#[test]
fn changes_in_place_are_edits() {
    let k = tcp("10.0.0.10:80");
    let mut want = vs(k, &[dest("172.16.0.100:80", 5)]);
    want.service.scheduler = Scheduler::Rr;
    want.service.persistence = Some(Persistence {
        timeout_s: 300,
        prefix_len: 24,
    });
    want.destinations[0].forwarding = Forwarding::Masq;
    let have = vs(k, &[dest("172.16.0.100:80", 1)]);
    let ops = plan(&[want.clone()], &[have], &scope_of(&["10.0.0.10"]));
    assert_eq!(
        ops,
        [
            Op::EditService(want.service.clone()),
            Op::EditDestination(k, want.destinations[0]),
        ]
    );
    assert_eq!(
        ops[0].to_string(),
        "edit service tcp 10.0.0.10:80 (rr, persistent 300 s /24)"
    );
}

#[test]
fn stale_entries_go_and_others_stay() {
    let ours = tcp("10.0.0.10:80");
    let stale = tcp("10.0.0.10:443");
    let operators = tcp("192.0.2.1:80");
    let actual = [
        vs(
            ours,
            &[dest("172.16.0.100:80", 1), dest("172.16.0.9:80", 1)],
        ),
        vs(stale, &[]),
        vs(operators, &[]),
    ];
    let ops = plan(
        &[vs(ours, &[dest("172.16.0.100:80", 1)])],
        &actual,
        &scope_of(&["10.0.0.10"]),
    );
    assert_eq!(
        ops,
        [
            Op::DeleteService(stale),
            Op::DeleteDestination(ours, "172.16.0.9:80".parse().unwrap()),
        ]
    );
}

#[test]
fn kernel_reports_that_need_no_write() {
    let k = tcp("10.0.0.10:80");
    let mut want = dest("172.16.0.100:80", 1);
    let mut have = want;
    have.forwarding = Forwarding::Local;
    assert!(same_destination(&want, &have));
    want.forwarding = Forwarding::Tunnel {
        kind: TunnelKind::Ipip,
        port: 0,
        flags: TunnelFlags::default(),
    };
    have.forwarding = Forwarding::Tunnel {
        kind: TunnelKind::Ipip,
        port: 6080,
        flags: TunnelFlags {
            csum: true,
            remcsum: false,
        },
    };
    assert_eq!(
        plan(&[vs(k, &[want])], &[vs(k, &[have])], &Scope::default()),
        []
    );
}
