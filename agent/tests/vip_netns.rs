//! The VIP edges against a real kernel: two network namespaces created by each test,
//! joined by a veth pair (`eth0` on both sides), with 192.0.2.0/24 and 2001:db8::/64
//! and no route out. Needs root; fails without it.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use lvs_agent::vip::addr::{AddrControl, Change, Link, LinkEvent, LinkState, LinkWatch, Vip};
use lvs_agent::vip::announce::{AnnounceSettings, Announcer};
use lvs_agent::vip::probe::{self, Outcome, Probe};
use lvs_agent::vip::vrrp_socket::{Received, VrrpSocket, VRRP_GROUP_V4, VRRP_GROUP_V6};
use lvs_agent::vip::VipError;
use socket2::{Domain, Protocol, Socket, Type};

use netns::Pair;

/// Namespaces for one test and a way to run async code inside one of them.
mod netns {
    use std::fs::File;
    use std::future::Future;
    use std::thread::JoinHandle;

    use nix::sched::CloneFlags;

    use crate::support::netns::{add_ns, del_ns, ip, require_root};

    /// Two namespaces `a` and `b`, deleted on drop even when the test panics.
    pub struct Pair {
        pub a: String,
        pub b: String,
    }

    impl Pair {
        /// Panics when not root: creating namespaces needs CAP_SYS_ADMIN.
        pub fn new(tag: &str) -> Pair {
            require_root();
            let id = std::process::id();
            let pair = Pair {
                a: format!("lvsvip-{id}-{tag}-a"),
                b: format!("lvsvip-{id}-{tag}-b"),
            };
            for ns in [&pair.a, &pair.b] {
                add_ns(ns);
                // Link-local addresses usable at once: no DAD wait on any link either.
                pair.exec(ns, &["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
            }
            ip(&[
                "-n", &pair.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", &pair.b,
            ]);
            for (ns, v4, v6) in [
                (&pair.a, "192.0.2.1/24", "2001:db8::1/64"),
                (&pair.b, "192.0.2.2/24", "2001:db8::2/64"),
            ] {
                ip(&["-n", ns, "addr", "add", v4, "dev", "eth0"]);
                ip(&["-n", ns, "addr", "add", v6, "dev", "eth0", "nodad"]);
                ip(&["-n", ns, "link", "set", "eth0", "up"]);
            }
            for ns in [&pair.a, &pair.b] {
                pair.wait_for_ipv6(ns);
            }
            pair
        }

        /// IPv6 starts on a link only once the kernel's link watch reports carrier, up
        /// to a second after `link set up`: until then multicast (ff02::1, ff02::12)
        /// has no route in. A link-local address shows it has started.
        fn wait_for_ipv6(&self, ns: &str) {
            for _ in 0..100 {
                if !self
                    .ip(ns, &["-6", "addr", "show", "dev", "eth0", "scope", "link"])
                    .is_empty()
                {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            panic!("no IPv6 link-local address on eth0 in {ns} after 5 s");
        }

        /// `ip -n NS ARGS...`, panicking on failure; returns stdout.
        pub fn ip(&self, ns: &str, args: &[&str]) -> String {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            ip(&all)
        }

        /// `ip netns exec NS COMMAND...`, panicking on failure; returns stdout.
        pub fn exec(&self, ns: &str, command: &[&str]) -> String {
            let mut all = vec!["netns", "exec", ns];
            all.extend_from_slice(command);
            ip(&all)
        }
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            for ns in [&self.a, &self.b] {
                del_ns(ns);
            }
        }
    }

    /// Runs `task` on a new thread that has entered namespace `ns` (setns affects only
    /// the calling thread, and sockets belong to the namespace they are created in),
    /// with its own single-threaded tokio runtime.
    pub fn spawn_in<T, F, Fut>(ns: &str, task: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(task())
        })
    }

    /// `spawn_in` and wait for the result.
    pub fn run_in<T, F, Fut>(ns: &str, task: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        spawn_in(ns, task)
            .join()
            .expect("task in namespace panicked")
    }
}

const WAIT: Duration = Duration::from_secs(5);
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const STALE_MAC: &str = "02:00:00:00:00:99";

async fn eth0() -> (AddrControl, Link) {
    let control = AddrControl::connect().unwrap();
    let link = control.link("eth0").await.unwrap();
    (control, link)
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[test]
fn vip_add_and_remove_are_idempotent_and_visible() {
    let pair = Pair::new("addr");
    let labelled = Vip {
        addr: "192.0.2.101".parse().unwrap(),
        prefix_len: 32,
        label: Some("eth0:vip".into()),
    };
    let labelled_in_task = labelled.clone();
    let found = netns::run_in(&pair.a, || async move {
        let (control, link) = eth0().await;
        let (v4, v6) = (Vip::host(VIP4.into()), Vip::host(VIP6.into()));
        assert_eq!(control.add(&link, &v4).await.unwrap(), Change::Done);
        assert_eq!(control.add(&link, &v4).await.unwrap(), Change::AlreadySo);
        assert_eq!(control.add(&link, &v6).await.unwrap(), Change::Done);
        assert_eq!(control.add(&link, &v6).await.unwrap(), Change::AlreadySo);
        assert_eq!(
            control.add(&link, &labelled_in_task).await.unwrap(),
            Change::Done
        );
        let set: BTreeSet<IpAddr> = [VIP4.into(), VIP6.into(), "192.0.2.200".parse().unwrap()]
            .into_iter()
            .collect();
        control.list_in(&link, &set).await.unwrap()
    });
    let mut found_addrs: Vec<IpAddr> = found.iter().map(|a| a.addr).collect();
    found_addrs.sort();
    assert_eq!(found_addrs, vec![IpAddr::from(VIP4), IpAddr::from(VIP6)]);
    assert!(found.iter().all(|a| !a.tentative), "{found:?}");

    let shown = pair.ip(&pair.a, &["addr", "show", "dev", "eth0"]);
    assert!(shown.contains("inet 192.0.2.100/32"), "{shown}");
    assert!(
        shown.contains("192.0.2.101/32 scope global eth0:vip"),
        "{shown}"
    );
    let v6_line = shown
        .lines()
        .find(|l| l.contains("2001:db8::100/128"))
        .unwrap_or_else(|| panic!("no IPv6 VIP in {shown}"));
    assert!(
        v6_line.contains("nodad") && !v6_line.contains("tentative"),
        "{v6_line}"
    );

    netns::run_in(&pair.a, move || async move {
        let (control, link) = eth0().await;
        for vip in [IpAddr::from(VIP4), IpAddr::from(VIP6), labelled.addr] {
            assert_eq!(control.remove(&link, vip).await.unwrap(), Change::Done);
            assert_eq!(control.remove(&link, vip).await.unwrap(), Change::AlreadySo);
        }
        assert!(matches!(
            control.link("nosuch0").await,
            Err(VipError::NoSuchInterface(name)) if name == "nosuch0"
        ));
    });
    let shown = pair.ip(&pair.a, &["addr", "show", "dev", "eth0"]);
    assert!(
        !shown.contains("192.0.2.10") && !shown.contains("2001:db8::100"),
        "{shown}"
    );
    assert!(
        shown.contains("192.0.2.1/24"),
        "the node's own address stays: {shown}"
    );
}

/// Reads frames on a packet socket until `wanted` accepts one, or the timeout.
fn receive_until(socket: &Socket, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 2048];
    loop {
        let n = (&*socket).read(&mut buf).expect("frame before the timeout");
        if wanted(&buf[..n]) {
            return buf[..n].to_vec();
        }
    }
}

#[test]
fn gratuitous_arp_reaches_the_peer_and_moves_its_neighbour_entry() {
    let pair = Pair::new("garp");
    let vip = VIP4.to_string();
    pair.ip(
        &pair.b,
        &[
            "neigh", "replace", &vip, "lladdr", STALE_MAC, "dev", "eth0", "nud", "stale",
        ],
    );

    let (ready, is_ready) = mpsc::channel();
    let capture = netns::spawn_in(&pair.b, move || async move {
        let arp = i32::from(0x0806u16.to_be());
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(arp))).unwrap();
        ready.send(()).unwrap();
        receive_until(&socket, |f| f.len() >= 42 && f[28..32] == VIP4.octets())
    });
    is_ready.recv_timeout(WAIT).unwrap();

    let mac = netns::run_in(&pair.a, || async move {
        let (control, link) = eth0().await;
        control.add(&link, &Vip::host(VIP4.into())).await.unwrap();
        let announcer = Announcer::open(&link).unwrap();
        let settings = AnnounceSettings {
            repeat: 2,
            garp_interval: Duration::from_millis(10),
            ..AnnounceSettings::default()
        };
        announcer.burst(&[VIP4.into()], 2, &settings).await.unwrap();
        link.mac.unwrap()
    });

    let frame = capture.join().unwrap();
    assert_eq!(&frame[0..6], &[0xff; 6], "broadcast");
    assert_eq!(&frame[6..12], &mac, "from our MAC");
    assert_eq!(&frame[12..14], &[0x08, 0x06], "ARP");
    assert_eq!(
        &frame[14..22],
        &[0, 1, 8, 0, 6, 4, 0, 1],
        "Ethernet/IPv4 request"
    );
    assert_eq!(&frame[22..28], &mac, "sender MAC");
    assert_eq!(&frame[28..32], &VIP4.octets(), "sender IP is the VIP");
    assert_eq!(&frame[32..38], &[0xff; 6], "target MAC");
    assert_eq!(&frame[38..42], &VIP4.octets(), "target IP is the VIP");

    let neigh = pair.ip(&pair.b, &["neigh", "show", &vip, "dev", "eth0"]);
    assert!(
        neigh.contains(&mac_string(mac)),
        "peer neighbour entry: {neigh}"
    );
}

#[test]
fn unsolicited_na_reaches_the_peer_and_moves_its_neighbour_entry() {
    let pair = Pair::new("una");
    let vip = VIP6.to_string();
    pair.ip(
        &pair.b,
        &[
            "-6", "neigh", "replace", &vip, "lladdr", STALE_MAC, "dev", "eth0", "nud", "stale",
        ],
    );

    let (ready, is_ready) = mpsc::channel();
    let capture = netns::spawn_in(&pair.b, move || async move {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        ready.send(()).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrIn6>(
                socket.as_raw_fd(),
                &mut buf,
            )
            .expect("advertisement before the timeout");
            if n >= 32 && buf[0] == 136 && buf[8..24] == VIP6.octets() {
                return (buf[..n].to_vec(), from.unwrap().ip());
            }
        }
    });
    is_ready.recv_timeout(WAIT).unwrap();

    let mac = netns::run_in(&pair.a, || async move {
        let (control, link) = eth0().await;
        control.add(&link, &Vip::host(VIP6.into())).await.unwrap();
        let announcer = Announcer::open(&link).unwrap();
        announcer.send(VIP6.into()).await.unwrap();
        link.mac.unwrap()
    });

    let (message, from) = capture.join().unwrap();
    assert_eq!(from, VIP6, "sent from the VIP");
    assert_eq!(message[4], 0x20, "override set, solicited and router clear");
    assert_eq!(
        &message[24..26],
        &[2, 1],
        "target link-layer address option"
    );
    assert_eq!(&message[26..32], &mac);
    // The peer's kernel accepts neighbour discovery only with hop limit 255.
    let neigh = pair.ip(&pair.b, &["-6", "neigh", "show", &vip, "dev", "eth0"]);
    assert!(
        neigh.contains(&mac_string(mac)),
        "peer neighbour entry: {neigh}"
    );
}

/// Probes both VIPs from `ns` until they are let go or `bound` runs out.
fn probe_from(ns: &str, bound: Duration) -> Outcome {
    let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
    netns::run_in(ns, move || async move {
        let (_control, link) = eth0().await;
        let probe = Probe::start(&link, &vips).await.unwrap();
        probe.until_let_go(bound).await.unwrap()
    })
}

#[test]
fn probes_see_a_holder_until_it_removes_the_vips_and_never_count_our_own() {
    let pair = Pair::new("probe");
    // Nobody holds them: free after the never-answered quiet, not before.
    match probe_from(&pair.b, WAIT) {
        Outcome::LetGo {
            answered: false,
            after,
        } => assert!(after >= probe::QUIET_NEVER_ANSWERED, "{after:?}"),
        other => panic!("free VIPs: {other:?}"),
    }

    // b's own addresses answer nothing it counts: it is asking about the others.
    pair.ip(&pair.b, &["addr", "add", "192.0.2.100/32", "dev", "eth0"]);
    pair.ip(
        &pair.b,
        &["addr", "add", "2001:db8::100/128", "dev", "eth0", "nodad"],
    );
    assert!(matches!(
        probe_from(&pair.b, WAIT),
        Outcome::LetGo {
            answered: false,
            ..
        }
    ));
    pair.ip(&pair.b, &["addr", "del", "192.0.2.100/32", "dev", "eth0"]);
    pair.ip(
        &pair.b,
        &["addr", "del", "2001:db8::100/128", "dev", "eth0"],
    );

    // a holds both: answered for as long as the bound lasts.
    for prefix in ["192.0.2.100/32", "2001:db8::100/128"] {
        pair.ip(&pair.a, &["addr", "add", prefix, "dev", "eth0", "nodad"]);
    }
    assert_eq!(
        probe_from(&pair.b, Duration::from_millis(300)),
        Outcome::StillAnswered
    );

    // a lets go of the IPv4 VIP at 200 ms, of the IPv6 one at 800 ms: free only once
    // neither answers (the probe starts a little after the clock, hence 500 ms).
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        crate::support::netns::ip(&["-n", &a, "addr", "del", "192.0.2.100/32", "dev", "eth0"]);
        std::thread::sleep(Duration::from_millis(600));
        crate::support::netns::ip(&["-n", &a, "addr", "del", "2001:db8::100/128", "dev", "eth0"]);
    });
    let outcome = probe_from(&b, WAIT);
    release.join().unwrap();
    match outcome {
        Outcome::LetGo {
            answered: true,
            after,
        } => {
            println!("free {after:?} after probing began (IPv6 VIP removed at 800 ms)");
            assert!(after >= Duration::from_millis(500), "{after:?}");
        }
        other => panic!("released VIPs: {other:?}"),
    }
}

/// Sends `payload` from namespace a to `dst` and returns what b's socket received.
fn vrrp_exchange(pair: &Pair, v6: bool, payload: &'static [u8], dst: Option<IpAddr>) -> Received {
    async fn source(v6: bool) -> (Link, IpAddr) {
        let (control, link) = eth0().await;
        let addrs = control.list(&link).await.unwrap();
        let source = addrs
            .iter()
            .map(|a| a.addr)
            .find(|a| match a {
                IpAddr::V4(_) => !v6,
                IpAddr::V6(v6addr) => v6 && v6addr.is_unicast_link_local(),
            })
            .expect("a source address");
        (link, source)
    }

    let (ready, is_ready) = mpsc::channel();
    let receiver = netns::spawn_in(&pair.b, move || async move {
        let (link, source) = source(v6).await;
        let socket = VrrpSocket::open(&link, source).unwrap();
        ready.send(()).unwrap();
        tokio::time::timeout(WAIT, socket.recv())
            .await
            .expect("VRRP packet before the timeout")
            .unwrap()
    });
    is_ready.recv_timeout(WAIT).unwrap();
    let sent_from = netns::run_in(&pair.a, move || async move {
        let (link, source) = source(v6).await;
        let socket = VrrpSocket::open(&link, source).unwrap();
        socket
            .send(payload, dst.unwrap_or(socket.group()))
            .await
            .unwrap();
        socket.source()
    });
    let received = receiver.join().unwrap();
    assert_eq!(received.src, sent_from);
    received
}

#[test]
fn vrrp_v4_multicast_and_unicast_arrive_with_ttl_255() {
    let pair = Pair::new("vrrp4");
    let payload: &[u8] = &[0x31, 7, 100, 1, 0, 100, 0xab, 0xcd, 192, 0, 2, 100];
    let got = vrrp_exchange(&pair, false, payload, None);
    assert_eq!(got.payload, payload);
    assert_eq!(got.src, IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(got.dst, IpAddr::from(VRRP_GROUP_V4));
    assert_eq!(got.ttl, 255);

    let peer: IpAddr = "192.0.2.2".parse().unwrap();
    let got = vrrp_exchange(&pair, false, payload, Some(peer));
    assert_eq!(
        (got.dst, got.ttl, got.payload.as_slice()),
        (peer, 255, payload)
    );
}

#[test]
fn vrrp_v6_multicast_arrives_with_hop_limit_255_from_link_local() {
    let pair = Pair::new("vrrp6");
    let payload: &[u8] = &[0x31, 7, 100, 1, 0, 100, 0xab, 0xcd];
    let got = vrrp_exchange(&pair, true, payload, None);
    assert_eq!(got.payload, payload);
    assert!(
        matches!(got.src, IpAddr::V6(a) if a.is_unicast_link_local()),
        "{got:?}"
    );
    assert_eq!(got.dst, IpAddr::from(VRRP_GROUP_V6));
    assert_eq!(got.ttl, 255);
}

#[test]
fn vrrp_socket_rejects_a_global_ipv6_source() {
    let pair = Pair::new("vrrpsrc");
    netns::run_in(&pair.a, || async move {
        let (_control, link) = eth0().await;
        let err = VrrpSocket::open(&link, "2001:db8::1".parse().unwrap())
            .err()
            .expect("a global source is refused");
        assert!(err.to_string().contains("link-local"), "{err}");
    });
}

#[test]
fn link_watch_sees_carrier_loss_admin_down_and_removal() {
    let pair = Pair::new("link");
    let (events, event) = mpsc::channel();
    let watcher = netns::spawn_in(&pair.a, move || async move {
        let mut watch = LinkWatch::start("eth0").await.unwrap();
        while let Ok(Some(next)) = tokio::time::timeout(WAIT, watch.next()).await {
            let removed = next == LinkEvent::Removed;
            events.send(next).unwrap();
            if removed {
                break;
            }
        }
    });
    let state = |admin_up, running| LinkEvent::State(LinkState { admin_up, running });
    let next = || {
        event
            .recv_timeout(WAIT)
            .expect("link event before the timeout")
    };
    // The watch starts with the current state and skips repeats; each change is made
    // once the previous one has been seen, so the sequence is exact.
    assert_eq!(next(), state(true, true));
    pair.ip(&pair.b, &["link", "set", "eth0", "down"]);
    assert_eq!(next(), state(true, false), "carrier lost with the peer");
    pair.ip(&pair.a, &["link", "set", "eth0", "down"]);
    assert_eq!(next(), state(false, false), "set down here");
    pair.ip(&pair.a, &["link", "del", "eth0"]);
    assert_eq!(next(), LinkEvent::Removed);
    watcher.join().unwrap();
}

/// Sends one bare TCP segment (`flags`) from 192.0.2.1:40000 to `dst`:`dport` on a
/// raw socket in the calling thread's namespace, and says whether a reset came back
/// within half a second.
fn reset_for(dst: Ipv4Addr, dport: u16, flags: u8) -> bool {
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let sport = 40000u16;
    let mut seg = [0u8; 20];
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    seg[4..8].copy_from_slice(&1u32.to_be_bytes());
    seg[8..12].copy_from_slice(&1u32.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&1024u16.to_be_bytes());
    // The checksum covers the pseudo-header (addresses, protocol, length) and the
    // segment, in 16-bit ones' complement.
    let mut sum: u32 = 6 + seg.len() as u32;
    for pair in src
        .octets()
        .chunks(2)
        .chain(dst.octets().chunks(2))
        .chain(seg.chunks(2))
    {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    seg[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket
        .send_to(&seg, &std::net::SocketAddr::new(dst.into(), 0).into())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        let Ok(n) = (&socket).read(&mut buf) else {
            continue;
        };
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let tcp = &buf[ihl..n];
        if buf[12..16] == dst.octets()
            && tcp.len() >= 14
            && u16::from_be_bytes([tcp[0], tcp[1]]) == dport
            && u16::from_be_bytes([tcp[2], tcp[3]]) == sport
            && tcp[13] & 0x04 != 0
        {
            return true;
        }
    }
    false
}

const ACK: u8 = 0x10;
const SYN: u8 = 0x02;

/// The hand-over guard against the kernel's nftables: a TCP segment without SYN to a
/// guarded target (a local VIP and port) with no socket behind it is dropped instead of
/// reset; a SYN, or a segment to another port, is still refused; a guard for a window
/// ends by itself; teardown removes the table.
#[test]
fn the_hand_over_guard_drops_unknown_segments_for_its_window() {
    use lvs_agent::vip::guard::{Guard, Op, Target, TABLE};
    support::netns::require_program("nft");
    let pair = Pair::new("guard");
    let vip = Ipv4Addr::new(192, 0, 2, 100);
    pair.ip(&pair.b, &["addr", "add", "192.0.2.100/32", "dev", "eth0"]);
    let probe =
        |flags, port| netns::run_in(&pair.a, move || async move { reset_for(vip, port, flags) });
    assert!(
        probe(ACK, 9),
        "unguarded: the kernel resets a segment it has no socket for"
    );

    let target = Target {
        addr: vip.into(),
        port: 9,
    };
    let guard = |ops: Vec<Op>| {
        netns::run_in(&pair.b, move || async move {
            let guard = Guard::start(&BTreeSet::from([target]));
            guard.apply_now(ops).await;
        })
    };
    guard(Vec::new());
    assert!(!probe(ACK, 9), "guarded: dropped, no reset");
    let listed = pair.exec(&pair.b, &["nft", "list", "table", "inet", TABLE]);
    assert!(
        listed.contains("counter packets 1 "),
        "one segment counted:\n{listed}"
    );
    assert!(probe(SYN, 9), "a SYN is refused as before");

    assert!(probe(ACK, 10), "another port of the VIP is not guarded");

    guard(vec![Op::For(target, Duration::from_millis(1500))]);
    assert!(!probe(ACK, 9), "within the window: dropped");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(probe(ACK, 9), "after the window: reset again");

    guard(vec![Op::Forget(target)]);
    assert!(probe(ACK, 9), "forgotten: reset");

    netns::run_in(&pair.b, move || async move {
        Guard::start(&BTreeSet::new()).teardown().await;
    });
    let tables = pair.exec(&pair.b, &["nft", "list", "tables"]);
    assert!(
        !tables.contains(TABLE),
        "teardown leaves no table: {tables}"
    );
}
