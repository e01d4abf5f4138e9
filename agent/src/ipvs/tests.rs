//! Byte vectors captured from a real kernel (Debian 6.1.0-48-cloud-amd64,
//! ipvsadm 1.31) with `strace -xx -e write=all -e read=all ipvsadm ...` inside
//! a qemu VM. Each constant is the generic-netlink payload (genl header +
//! attributes, the 16-byte nlmsghdr stripped), unless it says "whole netlink
//! message". The comment above it is the command that produced it.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkMessage, NetlinkPayload, ParseableParametrized,
};
use netlink_packet_generic::{GenlHeader, GenlMessage};
use proptest::prelude::*;

use super::attrs::{CmdAttr, SvcAttr};
use super::codec::{self, Invalid};
use super::error::{Errno, Error, Object};
use super::message::{Cmd, IpvsMessage};
use super::model::*;

include!("tests_vectors.rs");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// genl header (cmd, version 1, reserved) followed by the attributes.
fn genl_bytes(msg: &IpvsMessage) -> Vec<u8> {
    let mut out = vec![0; 4 + msg.buffer_len()];
    out[0] = msg.cmd as u8;
    out[1] = 1;
    msg.emit(&mut out[4..]);
    out
}

/// Parses genl header + attributes, as the kernel's bytes arrive.
fn parse_genl(b: &[u8]) -> Result<IpvsMessage, DecodeError> {
    let header = GenlHeader {
        cmd: b[0],
        version: b[1],
    };
    IpvsMessage::parse_with_param(&b[4..], header)
}

fn parse(vector: &str) -> IpvsMessage {
    parse_genl(&hex(vector)).expect("captured vector parses")
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn tcp(s: &str) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: sock(s),
    }
}

/// The UDP service of the captured vectors: `[2001:db8::10]:53`.
fn udp6() -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: sock("[2001:db8::10]:53"),
    }
}

/// `ipvsadm -A -u [2001:db8::10]:53 -s rr -p 300 -M 64`, as the model holds it.
fn udp6_persistent() -> Service {
    let mut svc = Service::new(udp6(), Scheduler::Rr);
    svc.persistence = Some(Persistence {
        timeout_s: 300,
        prefix_len: 64,
    });
    svc
}

fn assert_encodes(ours: Result<IpvsMessage, Invalid>, vector: &str) {
    let ours = ours.expect("valid request");
    assert_eq!(hex_of(&genl_bytes(&ours)), vector);
    // and the captured request parses back to the same message
    assert_eq!(parse(vector), ours);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// ipvsadm sends the whole service (with an empty scheduler) in destination
/// requests; the kernel reads only its key, which is all this client sends.
fn service_key_only(msg: IpvsMessage) -> IpvsMessage {
    let super::message::Attrs::Cmd(attrs) = msg.attrs else {
        panic!("not a command message")
    };
    let attrs = attrs
        .into_iter()
        .map(|a| match a {
            CmdAttr::Service(n) => CmdAttr::Service(
                n.into_iter()
                    .filter(|s| {
                        matches!(
                            s,
                            SvcAttr::Af(_)
                                | SvcAttr::Protocol(_)
                                | SvcAttr::Addr(_)
                                | SvcAttr::Port(_)
                                | SvcAttr::Fwmark(_)
                        )
                    })
                    .collect(),
            ),
            other => other,
        })
        .collect();
    IpvsMessage::new(msg.cmd, attrs)
}

#[test]
fn add_service_v4_tcp_wrr() {
    let svc = Service::new(tcp("10.0.0.10:80"), Scheduler::Wrr);
    assert_encodes(
        codec::service_request(Cmd::NewService, &svc),
        ADD_SVC_TCP_WRR,
    );
}

#[test]
fn add_service_v6_udp_with_persistence() {
    let svc = udp6_persistent();
    assert_encodes(
        codec::service_request(Cmd::NewService, &svc),
        ADD_SVC_UDP6_PERSIST,
    );
}

#[test]
fn add_service_v4_persistence_netmask() {
    let mut svc = Service::new(tcp("10.0.0.20:8080"), Scheduler::Wlc);
    svc.persistence = Some(Persistence {
        timeout_s: 600,
        prefix_len: 24,
    });
    assert_encodes(
        codec::service_request(Cmd::NewService, &svc),
        ADD_SVC_TCP_WLC_PERSIST24,
    );
}

#[test]
fn add_fwmark_services() {
    let v4 = Service::new(
        ServiceKey::Fwmark {
            family: Family::V4,
            mark: 42,
        },
        Scheduler::Lc,
    );
    assert_encodes(
        codec::service_request(Cmd::NewService, &v4),
        ADD_SVC_FWMARK4,
    );
    let v6 = Service::new(
        ServiceKey::Fwmark {
            family: Family::V6,
            mark: 43,
        },
        Scheduler::Sed,
    );
    assert_encodes(
        codec::service_request(Cmd::NewService, &v6),
        ADD_SVC_FWMARK6,
    );
}

#[test]
fn add_services_with_sched_flags() {
    let flags = SchedFlags::FALLBACK.union(SchedFlags::PORT);
    let mut sh = Service::new(tcp("10.0.0.11:443"), Scheduler::Sh);
    sh.sched_flags = flags;
    assert_encodes(
        codec::service_request(Cmd::NewService, &sh),
        ADD_SVC_SH_FLAGS,
    );
    let mut mh = Service::new(
        ServiceKey::Addr {
            protocol: Protocol::Sctp,
            addr: sock("10.0.0.12:9"),
        },
        Scheduler::Mh,
    );
    mh.sched_flags = flags;
    assert_encodes(
        codec::service_request(Cmd::NewService, &mh),
        ADD_SVC_SCTP_MH_FLAGS,
    );
}

#[test]
fn edit_service_scheduler() {
    let svc = Service::new(tcp("10.0.0.10:80"), Scheduler::Rr);
    assert_encodes(codec::service_request(Cmd::SetService, &svc), EDIT_SVC_RR);
}

#[test]
fn delete_service_sends_the_key() {
    let ours = codec::service_key_request(Cmd::DelService, &tcp("10.0.0.11:443"));
    assert_eq!(service_key_only(parse(DEL_SVC)), ours);
}

fn dest(addr: &str, forwarding: Forwarding, weight: u32) -> Destination {
    Destination {
        addr: sock(addr),
        forwarding,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

fn assert_dest_request(key: ServiceKey, cmd: Cmd, d: Destination, vector: &str) {
    let ours = codec::destination_request(cmd, &key, &d).expect("valid");
    assert_eq!(service_key_only(parse(vector)), ours);
}

#[test]
fn add_destinations() {
    let key = tcp("10.0.0.10:80");
    let mut dr = dest("172.16.0.100:80", Forwarding::Route, 5);
    dr.upper_threshold = 100;
    dr.lower_threshold = 10;
    assert_dest_request(key, Cmd::NewDest, dr, ADD_DEST_DR_THRESH);
    let nat = dest("172.16.0.101:8080", Forwarding::Masq, 2);
    assert_dest_request(key, Cmd::NewDest, nat, ADD_DEST_NAT);
    let gue = Forwarding::Tunnel {
        kind: TunnelKind::Gue,
        port: 6080,
        flags: TunnelFlags {
            csum: true,
            remcsum: false,
        },
    };
    assert_dest_request(
        key,
        Cmd::NewDest,
        dest("172.16.0.102:80", gue, 1),
        ADD_DEST_GUE,
    );
    let gre = Forwarding::Tunnel {
        kind: TunnelKind::Gre,
        port: 0,
        flags: TunnelFlags::default(),
    };
    assert_dest_request(
        key,
        Cmd::NewDest,
        dest("172.16.0.103:80", gre, 1),
        ADD_DEST_GRE,
    );
    let d6 = dest("[2001:db8::100]:53", Forwarding::Route, 0);
    assert_dest_request(udp6(), Cmd::NewDest, d6, ADD_DEST6_DR_W0);
}

#[test]
fn edit_destination_weight() {
    let d = dest("172.16.0.100:80", Forwarding::Route, 9);
    assert_dest_request(tcp("10.0.0.10:80"), Cmd::SetDest, d, EDIT_DEST_W9);
}

#[test]
fn delete_destination_sends_both_keys() {
    let ours = codec::destination_delete_request(&tcp("10.0.0.10:80"), sock("172.16.0.199:80"));
    let theirs = service_key_only(parse(DEL_DEST_MISSING));
    // ipvsadm also sends forwarding, weight and tunnel fields; the kernel
    // reads only the address family, address and port.
    let keep = |m: IpvsMessage| -> Vec<CmdAttr> {
        let super::message::Attrs::Cmd(a) = m.attrs else {
            panic!()
        };
        a.into_iter()
            .map(|c| match c {
                CmdAttr::Dest(n) => CmdAttr::Dest(n.into_iter().take(3).collect()),
                other => other,
            })
            .collect()
    };
    assert_eq!(ours.cmd, theirs.cmd);
    assert_eq!(keep(theirs), keep(ours));
}

#[test]
fn start_sync_daemon_master_with_group_port_ttl() {
    let d = SyncDaemon {
        state: SyncState::Master,
        mcast_ifname: "v0".into(),
        syncid: 7,
        maxlen: Some(1400),
        mcast_group: Some("239.1.2.3".parse().unwrap()),
        mcast_port: Some(9000),
        mcast_ttl: Some(2),
    };
    assert_encodes(codec::daemon_start_request(&d), START_MASTER_GROUP);
}

#[test]
fn start_sync_daemon_backup_with_v6_group() {
    let d = SyncDaemon {
        state: SyncState::Backup,
        mcast_ifname: "v0".into(),
        syncid: 0,
        maxlen: None,
        mcast_group: Some("ff15::81".parse().unwrap()),
        mcast_port: None,
        mcast_ttl: None,
    };
    assert_encodes(codec::daemon_start_request(&d), START_BACKUP_GROUP6);
}

#[test]
fn stop_sync_daemon_sends_the_state() {
    // ipvsadm adds an empty interface name and syncid 0, which the kernel ignores.
    let theirs = parse(STOP_BACKUP);
    let ours = codec::daemon_stop_request(SyncState::Backup);
    assert_eq!(theirs.cmd, ours.cmd);
    let first = |m: &IpvsMessage| match &m.attrs {
        super::message::Attrs::Cmd(a) => match &a[0] {
            CmdAttr::Daemon(n) => n[0].clone(),
            _ => panic!("no daemon nest"),
        },
        _ => panic!(),
    };
    assert_eq!(first(&theirs), first(&ours));
}

#[test]
fn set_and_get_timeouts() {
    let t = Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    assert_encodes(Ok(codec::timeouts_request(&t)), SET_TIMEOUTS);
    assert_eq!(codec::decode_timeouts(&parse(GET_TIMEOUTS_REPLY)), Ok(t));
}

#[test]
fn decode_info_reply() {
    let info = codec::decode_info(&parse(INFO_REPLY)).unwrap();
    assert_eq!(info.version.to_string(), "1.2.1");
    assert_eq!(info.conn_table_size, 4096);
}

#[test]
fn decode_sync_daemon_dump() {
    let master = codec::decode_daemon(&parse(DAEMON_DUMP_MASTER)).unwrap();
    assert_eq!(
        master,
        SyncDaemon {
            state: SyncState::Master,
            mcast_ifname: "v0".into(),
            syncid: 7,
            maxlen: Some(1400),
            mcast_group: Some("239.1.2.3".parse().unwrap()),
            mcast_port: Some(9000),
            mcast_ttl: Some(2),
        }
    );
    let backup = codec::decode_daemon(&parse(DAEMON_DUMP_BACKUP)).unwrap();
    assert_eq!(
        backup,
        SyncDaemon {
            state: SyncState::Backup,
            mcast_ifname: "v0".into(),
            syncid: 0,
            maxlen: Some(1452),
            mcast_group: Some("ff15::81".parse().unwrap()),
            mcast_port: Some(SyncDaemon::DEFAULT_PORT),
            mcast_ttl: Some(1),
        }
    );
}

#[test]
fn decode_service_dump() {
    let svc = |v| codec::decode_service(&parse(v)).unwrap().service;
    assert_eq!(
        svc(SVC_DUMP_TCP80),
        Service::new(tcp("10.0.0.10:80"), Scheduler::Rr)
    );
    let mut wlc = Service::new(tcp("10.0.0.20:8080"), Scheduler::Wlc);
    wlc.persistence = Some(Persistence {
        timeout_s: 600,
        prefix_len: 24,
    });
    assert_eq!(svc(SVC_DUMP_WLC), wlc);
    assert_eq!(svc(SVC_DUMP_UDP6), udp6_persistent());
    // the kernel adds IP_VS_SVC_F_HASHED (0x2): not part of the model
    let mut sh = Service::new(tcp("10.0.0.11:443"), Scheduler::Sh);
    sh.sched_flags = SchedFlags::FALLBACK.union(SchedFlags::PORT);
    assert_eq!(svc(SVC_DUMP_SH), sh);
    let mut sctp = Service::new(
        ServiceKey::Addr {
            protocol: Protocol::Sctp,
            addr: sock("10.0.0.12:9"),
        },
        Scheduler::Mh,
    );
    sctp.sched_flags = sh.sched_flags;
    assert_eq!(svc(SVC_DUMP_SCTP), sctp);
    let fw = |family, mark| ServiceKey::Fwmark { family, mark };
    assert_eq!(
        svc(SVC_DUMP_FWM4),
        Service::new(fw(Family::V4, 42), Scheduler::Lc)
    );
    assert_eq!(
        svc(SVC_DUMP_FWM6),
        Service::new(fw(Family::V6, 43), Scheduler::Sed)
    );
    assert_eq!(
        svc(SVC_DUMP_TCP6),
        Service::new(tcp("[2001:db8::1]:80"), Scheduler::Rr)
    );
    assert_eq!(
        codec::decode_service(&parse(SVC_DUMP_TCP80)).unwrap().stats,
        Stats::default()
    );
}

#[test]
fn decode_destination_dump() {
    let d = |v| {
        codec::decode_destination(&parse(v), Family::V4)
            .unwrap()
            .destination
    };
    // `ipvsadm -e ... -w 9` sent thresholds 0: an edit replaces every field
    assert_eq!(
        d(DEST_DUMP_DR),
        dest("172.16.0.100:80", Forwarding::Route, 9)
    );
    assert_eq!(
        d(DEST_DUMP_NAT),
        dest("172.16.0.101:8080", Forwarding::Masq, 2)
    );
    let gue = Forwarding::Tunnel {
        kind: TunnelKind::Gue,
        port: 6080,
        flags: TunnelFlags {
            csum: true,
            remcsum: false,
        },
    };
    assert_eq!(d(DEST_DUMP_GUE), dest("172.16.0.102:80", gue, 1));
    let gre = Forwarding::Tunnel {
        kind: TunnelKind::Gre,
        port: 0,
        flags: TunnelFlags::default(),
    };
    assert_eq!(d(DEST_DUMP_GRE), dest("172.16.0.103:80", gre, 1));
    // the address family attribute wins over the service family passed in
    assert_eq!(
        d(DEST_DUMP_V6),
        dest("[2001:db8::100]:53", Forwarding::Route, 0)
    );
    let full = codec::decode_destination(&parse(DEST_DUMP_DR), Family::V4).unwrap();
    assert_eq!((full.active_conns, full.inactive_conns), (0, 0));
}

fn kernel_error(whole: &str, object: Object) -> Error {
    let msg = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(&hex(whole)).expect("parses");
    let NetlinkPayload::Error(e) = msg.payload else {
        panic!("not an error message")
    };
    Error::Kernel {
        object,
        errno: Errno(-e.code.expect("non-zero").get()),
    }
}

#[test]
fn kernel_errors_name_their_object() {
    let svc = tcp("10.0.0.10:80");
    let e = kernel_error(ERR_EEXIST_SERVICE, Object::Service(svc));
    assert!(e.is_already_exists());
    assert_eq!(
        e.to_string(),
        "service tcp 10.0.0.10:80: File exists (EEXIST)"
    );
    let e = kernel_error(
        ERR_ENOENT_DEST,
        Object::Destination(svc, sock("172.16.0.199:80")),
    );
    assert!(e.is_not_found());
    assert_eq!(
        e.to_string(),
        "destination 172.16.0.199:80 of service tcp 10.0.0.10:80: No such file or directory (ENOENT)"
    );
    let e = kernel_error(ERR_ESRCH_SERVICE, Object::Service(tcp("10.0.0.11:443")));
    assert!(e.is_not_found());
    assert_eq!(
        e.to_string(),
        "service tcp 10.0.0.11:443: No such process (ESRCH)"
    );
}

#[test]
fn bad_input_names_the_field() {
    let mut svc = Service::new(tcp("10.0.0.10:80"), Scheduler::Rr);
    svc.persistence = Some(Persistence {
        timeout_s: 1,
        prefix_len: 33,
    });
    let e = codec::service_request(Cmd::NewService, &svc).unwrap_err();
    assert_eq!(e.field, "persistence prefix length");
    let d = SyncDaemon {
        state: SyncState::Master,
        mcast_ifname: "a-very-long-interface".into(),
        syncid: 1,
        maxlen: None,
        mcast_group: None,
        mcast_port: None,
        mcast_ttl: None,
    };
    assert_eq!(
        codec::daemon_start_request(&d).unwrap_err().field,
        "multicast interface"
    );
    let mut heavy = dest("172.16.0.1:80", Forwarding::Route, u32::MAX);
    heavy.weight = u32::MAX;
    let e = codec::destination_request(Cmd::NewDest, &tcp("10.0.0.10:80"), &heavy).unwrap_err();
    assert_eq!(e.field, "weight");
}

// ------------------------------------------------------------ properties

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

pub(crate) fn arb_key() -> impl Strategy<Value = ServiceKey> {
    let proto = prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ];
    let fam = prop_oneof![Just(Family::V4), Just(Family::V6)];
    prop_oneof![
        (proto, arb_ip(), any::<u16>()).prop_map(|(protocol, ip, port)| ServiceKey::Addr {
            protocol,
            addr: SocketAddr::new(ip, port)
        }),
        (fam, 1..=u32::MAX).prop_map(|(family, mark)| ServiceKey::Fwmark { family, mark }),
    ]
}

pub(crate) fn arb_service() -> impl Strategy<Value = Service> {
    (
        arb_key(),
        proptest::sample::select(Scheduler::KNOWN.to_vec()),
        any::<(bool, bool, bool)>(),
        proptest::option::of((any::<u32>(), 0u8..=128)),
        any::<bool>(),
    )
        .prop_map(|(key, scheduler, (f1, f2, f3), persist, one_packet)| {
            let max = key.family().max_prefix();
            Service {
                key,
                scheduler,
                sched_flags: SchedFlags {
                    flag1: f1,
                    flag2: f2,
                    flag3: f3,
                },
                persistence: persist.map(|(timeout_s, p)| Persistence {
                    timeout_s,
                    prefix_len: p.min(max),
                }),
                one_packet,
            }
        })
}

pub(crate) fn arb_destination() -> impl Strategy<Value = Destination> {
    let kind = prop_oneof![
        Just(TunnelKind::Ipip),
        Just(TunnelKind::Gue),
        Just(TunnelKind::Gre)
    ];
    let fwd = prop_oneof![
        Just(Forwarding::Masq),
        Just(Forwarding::Route),
        (kind, any::<u16>(), any::<(bool, bool)>()).prop_map(|(kind, port, (csum, remcsum))| {
            Forwarding::Tunnel {
                kind,
                port,
                flags: TunnelFlags { csum, remcsum },
            }
        }),
    ];
    (
        arb_ip(),
        any::<u16>(),
        fwd,
        0..=i32::MAX as u32,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ip, port, forwarding, weight, upper_threshold, lower_threshold)| Destination {
                addr: SocketAddr::new(ip, port),
                forwarding,
                weight,
                upper_threshold,
                lower_threshold,
            },
        )
}

/// Re-reads an emitted request as the kernel would send it back.
fn reparse(msg: &IpvsMessage) -> IpvsMessage {
    parse_genl(&genl_bytes(msg)).expect("own output parses")
}

proptest! {
    #[test]
    fn service_round_trips(svc in arb_service()) {
        let msg = codec::service_request(Cmd::NewService, &svc).unwrap();
        prop_assert_eq!(codec::decode_service(&reparse(&msg)).unwrap().service, svc);
    }

    #[test]
    fn destination_round_trips(key in arb_key(), d in arb_destination()) {
        let msg = codec::destination_request(Cmd::NewDest, &key, &d).unwrap();
        prop_assert_eq!(codec::decode_destination(&reparse(&msg), key.family()).unwrap().destination, d);
    }

    #[test]
    fn sync_daemon_round_trips(
        master in any::<bool>(), ifname in "[a-z][a-z0-9.]{0,14}", syncid in any::<u8>(),
        maxlen in any::<u16>(), group in arb_ip(), port in any::<u16>(), ttl in any::<u8>(),
    ) {
        let d = SyncDaemon {
            state: if master { SyncState::Master } else { SyncState::Backup },
            mcast_ifname: ifname, syncid, maxlen: Some(maxlen), mcast_group: Some(group),
            mcast_port: Some(port), mcast_ttl: Some(ttl),
        };
        let msg = codec::daemon_start_request(&d).unwrap();
        prop_assert_eq!(codec::decode_daemon(&reparse(&msg)).unwrap(), d);
    }

    #[test]
    fn attribute_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), cmd in 1u8..16) {
        let _ = IpvsMessage::parse_with_param(&bytes, GenlHeader { cmd, version: 1 });
    }
}
