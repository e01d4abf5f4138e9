//! Gossip membership over real UDP sockets on loopback, several nodes in one
//! process. Timers are shortened (still LAN-shaped) to keep the suite quick;
//! every wait polls under a generous overall timeout and asserts no timing.

use std::{collections::BTreeSet, future::Future, net::SocketAddr, time::Duration};

use lvs_agent::membership::{
    failure_detection_bound, start, ClusterKey, Conflict, KeyRing, MemberInfo, MembershipConfig,
    MembershipEvent, MembershipHandle, Origin,
};
use tokio::{
    net::UdpSocket,
    sync::mpsc::{self, error::TryRecvError},
    time::timeout,
};

const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn key(byte: u8) -> ClusterKey {
    ClusterKey::from_bytes([byte; 32])
}

/// Every test uses its own keys: tests run in parallel, and a port one test
/// frees may be reused by another while the first test's nodes still target it.
fn ring(byte: u8) -> KeyRing {
    KeyRing::new(key(byte))
}

fn config(
    node_id: &str,
    listen: SocketAddr,
    keys: KeyRing,
    join: &[SocketAddr],
) -> MembershipConfig {
    let mut cfg = MembershipConfig::new(node_id, listen, keys);
    cfg.join = join.to_vec();
    cfg.join_retry = Duration::from_millis(500);
    cfg.swim.probe_period = Duration::from_millis(300);
    cfg.swim.probe_rtt = Duration::from_millis(100);
    cfg.swim.suspect_to_down_after = Duration::from_secs(1);
    if let Some(gossip) = cfg.swim.periodic_gossip.as_mut() {
        gossip.frequency = Duration::from_millis(100);
    }
    cfg
}

struct Node {
    handle: MembershipHandle,
    events: mpsc::Receiver<MembershipEvent>,
}

async fn spawn(cfg: MembershipConfig) -> Node {
    let (handle, events) = start(cfg).await.expect("membership starts");
    Node { handle, events }
}

async fn node(node_id: &str, keys: KeyRing, join: &[SocketAddr]) -> Node {
    spawn(config(node_id, LOOPBACK, keys, join)).await
}

/// Polls `check` every 100 ms until it holds; fails after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let polled = timeout(limit, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    polled
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Receives events until one matches.
async fn wait_event(
    events: &mut mpsc::Receiver<MembershipEvent>,
    what: &str,
    mut wanted: impl FnMut(&MembershipEvent) -> bool,
) -> MembershipEvent {
    let found = timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.expect("event channel open");
            if wanted(&event) {
                return event;
            }
        }
    });
    found
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

type LiveView = BTreeSet<(String, SocketAddr, u64)>;

async fn live_view(handle: &MembershipHandle) -> LiveView {
    let members: Vec<MemberInfo> = handle.members().await.expect("task running");
    members
        .into_iter()
        .filter(MemberInfo::is_live)
        .map(|m| (m.node_id, m.addr, m.incarnation))
        .collect()
}

async fn converged(nodes: &[&MembershipHandle], size: usize) -> bool {
    let first = live_view(nodes[0]).await;
    if first.len() != size {
        return false;
    }
    for node in &nodes[1..] {
        if live_view(node).await != first {
            return false;
        }
    }
    true
}

async fn cluster(size: usize, keys: impl Fn(usize) -> KeyRing) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..size {
        // Each node joins its predecessor: the rest must come from gossip.
        let join: Vec<_> = nodes.last().map(|n| n.handle.addr()).into_iter().collect();
        nodes.push(node(&format!("lb{}", i + 1), keys(i), &join).await);
    }
    let handles: Vec<_> = nodes.iter().map(|n| &n.handle).collect();
    let settled = timeout(Duration::from_secs(30), async {
        while !converged(&handles, size).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    if settled.await.is_err() {
        let mut views = String::new();
        for handle in &handles {
            let members = handle.members().await.unwrap_or_default();
            views += &format!("\n{members:?}\n{:?}", handle.counters());
        }
        panic!("{size} members did not converge:{views}");
    }
    nodes
}

#[tokio::test]
async fn three_members_converge() {
    cluster(3, |_| ring(11)).await;
}

#[tokio::test]
async fn five_members_converge() {
    cluster(5, |_| ring(21)).await;
}

#[tokio::test]
async fn a_stopped_member_is_declared_down_by_all_others() {
    let mut nodes = cluster(3, |_| ring(31)).await;
    let dead = nodes.pop().unwrap();
    let dead_addr = dead.handle.addr();
    dead.handle.stop().await.unwrap();

    let bound = failure_detection_bound(&config("x", LOOPBACK, ring(31), &[]).swim, 3);
    let survivors: Vec<_> = nodes.iter().map(|n| &n.handle).collect();
    eventually("the stopped member declared down", bound * 3, || async {
        for node in &survivors {
            if live_view(node)
                .await
                .iter()
                .any(|(_, addr, _)| *addr == dead_addr)
            {
                return false;
            }
        }
        true
    })
    .await;
    for node in &mut nodes {
        wait_event(
            &mut node.events,
            "MemberDown lb3",
            |e| matches!(e, MembershipEvent::MemberDown(m) if m.node_id == "lb3"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_graceful_leave_is_seen_as_down() {
    let mut nodes = cluster(2, |_| ring(41)).await;
    let leaving = nodes.pop().unwrap();
    leaving.handle.leave().await.unwrap();
    wait_event(
        &mut nodes[0].events,
        "MemberDown lb2",
        |e| matches!(e, MembershipEvent::MemberDown(m) if m.node_id == "lb2"),
    )
    .await;
    assert_eq!(
        leaving.handle.members().await,
        Err(lvs_agent::membership::Stopped)
    );
}

#[tokio::test]
async fn a_restarted_member_replaces_its_previous_life() {
    let mut nodes = cluster(3, |_| ring(51)).await;
    let old = nodes.pop().unwrap();
    let old_view = live_view(&old.handle).await;
    let (_, addr, old_incarnation) = old_view
        .iter()
        .find(|(id, ..)| id == "lb3")
        .unwrap()
        .clone();
    old.handle.stop().await.unwrap();

    let mut cfg = config("lb3", addr, ring(51), &[nodes[0].handle.addr()]);
    cfg.incarnation = old_incarnation + 1;
    let new = spawn(cfg).await;

    let all = [&nodes[0].handle, &nodes[1].handle, &new.handle];
    eventually(
        "convergence on the new life",
        Duration::from_secs(30),
        || async {
            converged(&all, 3).await
                && live_view(all[0])
                    .await
                    .contains(&("lb3".into(), addr, old_incarnation + 1))
        },
    )
    .await;
    for node in &all {
        let members = node.members().await.unwrap();
        assert!(
            !members
                .iter()
                .any(|m| m.incarnation == old_incarnation && m.node_id == "lb3"),
            "previous life still listed: {members:?}"
        );
    }
    wait_event(
        &mut nodes[0].events,
        "MemberUp of the new life",
        |e| matches!(e, MembershipEvent::MemberUp(m) if m.incarnation == old_incarnation + 1),
    )
    .await;
}

#[tokio::test]
async fn a_wrong_key_cannot_join_and_is_counted() {
    let a = node("lb1", ring(61), &[]).await;
    let b = node("lb2", ring(62), &[a.handle.addr()]).await;
    eventually("dropped datagrams", Duration::from_secs(10), || async {
        a.handle.counters().dropped_unknown_key >= 2
    })
    .await;
    assert_eq!(live_view(&a.handle).await.len(), 1);
    assert_eq!(live_view(&b.handle).await.len(), 1);
}

#[tokio::test]
async fn rotation_works_while_primaries_differ() {
    // Mid-rotation: lb1 already seals with key 2, lb2 still with key 1; both
    // accept both.
    cluster(2, |i| {
        let (primary, other) = if i == 0 { (72, 71) } else { (71, 72) };
        ring(primary).with_accepted(key(other)).unwrap()
    })
    .await;
}

#[tokio::test]
async fn garbage_datagrams_are_counted_and_ignored() {
    let mut nodes = cluster(2, |_| ring(81)).await;
    let target = nodes[0].handle.addr();
    let attacker = UdpSocket::bind(LOOPBACK).await.unwrap();

    let origin = |counter| Origin {
        sender: "attacker".into(),
        epoch: 1,
        counter,
    };
    let mut tampered = ring(81).seal(&origin(0), b"some packet");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let datagrams = [
        b"\xde\xad\xbe\xef".to_vec(),
        vec![0; 1500],
        ring(89).seal(&origin(1), b"wrong key"),
        tampered,
        ring(81).seal(&origin(2), b"authentic but not a foca packet"),
    ];
    for datagram in &datagrams {
        attacker.send_to(datagram, target).await.unwrap();
    }
    let handle = &nodes[0].handle;
    eventually("every drop counted", Duration::from_secs(10), || async {
        let c = handle.counters();
        c.dropped_bad_envelope >= 2
            && c.dropped_unknown_key >= 1
            && c.dropped_auth_failed >= 1
            && c.dropped_bad_payload >= 1
    })
    .await;

    // The node still gossips: a metadata change reaches it.
    let moved: std::net::IpAddr = "fe80::9".parse().unwrap();
    nodes[1].handle.set_vrrp_sources(vec![moved]).await.unwrap();
    let event = wait_event(&mut nodes[0].events, "MetaChanged", |e| {
        matches!(e, MembershipEvent::MetaChanged { .. })
    })
    .await;
    let MembershipEvent::MetaChanged { before, after } = event else {
        unreachable!()
    };
    assert_eq!(
        (before.node_id.as_str(), after.vrrp_sources.as_slice()),
        ("lb2", &[moved][..])
    );
}

#[tokio::test]
async fn a_duplicate_node_id_is_reported() {
    let mut a = node("lb1", ring(91), &[]).await;
    let _b = node("lb2", ring(91), &[a.handle.addr()]).await;
    let twin = node("lb1", ring(91), &[a.handle.addr()]).await;
    let event = wait_event(&mut a.events, "node id conflict", |e| {
        matches!(e, MembershipEvent::Conflict(Conflict::NodeId { .. }))
    })
    .await;
    let MembershipEvent::Conflict(Conflict::NodeId { node_id, addrs, .. }) = event else {
        unreachable!()
    };
    assert_eq!(node_id, "lb1");
    assert!(addrs.contains(&a.handle.addr()) && addrs.contains(&twin.handle.addr()));
    assert!(a.handle.counters().conflicts >= 1);
}

#[tokio::test]
async fn a_duplicate_syncid_is_reported() {
    let mut cfg_a = config("lb1", LOOPBACK, ring(101), &[]);
    cfg_a.syncid = 7;
    let mut a = spawn(cfg_a).await;
    let mut cfg_b = config("lb2", LOOPBACK, ring(101), &[a.handle.addr()]);
    cfg_b.syncid = 7;
    let mut b = spawn(cfg_b).await;
    let expected = Conflict::Syncid {
        syncid: 7,
        node_ids: vec!["lb1".into(), "lb2".into()],
    };
    for node in [&mut a, &mut b] {
        wait_event(&mut node.events, "syncid conflict", |e| {
            *e == MembershipEvent::Conflict(expected.clone())
        })
        .await;
        assert!(node.handle.counters().conflicts >= 1);
    }
}

#[tokio::test]
async fn a_heir_reports_its_owner_silent_once_heartbeats_stop() {
    let nodes = cluster(2, |_| ring(97)).await;
    let (owner, heir) = (&nodes[0].handle, &nodes[1].handle);
    heir.set_heartbeats(BTreeSet::new(), ["lb1".to_owned()].into())
        .await
        .unwrap();
    owner
        .set_heartbeats([heir.addr()].into(), BTreeSet::new())
        .await
        .unwrap();
    eventually("heartbeats heard", Duration::from_secs(10), || async {
        heir.counters().heartbeats_received >= 3
    })
    .await;
    assert!(heir.silent_peers().borrow().is_empty());
    assert!(owner.counters().heartbeats_sent >= 3);
    assert_eq!(heir.counters().dropped_bad_payload, 0);

    owner.stop().await.unwrap();
    let mut silent = heir.silent_peers();
    timeout(
        Duration::from_secs(10),
        silent.wait_for(|s| s.contains("lb1")),
    )
    .await
    .expect("the owner reported silent")
    .unwrap();

    // No longer expected: no longer silent.
    heir.set_heartbeats(BTreeSet::new(), BTreeSet::new())
        .await
        .unwrap();
    timeout(Duration::from_secs(10), silent.wait_for(BTreeSet::is_empty))
        .await
        .expect("an unwatched peer is not silent")
        .unwrap();
}

/// Forwards every datagram `relay` receives to `to`, and sends a copy to `captured`,
/// until the receiver of `captured` is gone.
async fn relay(relay: UdpSocket, to: SocketAddr, captured: mpsc::UnboundedSender<Vec<u8>>) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let Ok((len, _)) = relay.recv_from(&mut buf).await else {
            return;
        };
        let _ = relay.send_to(&buf[..len], to).await;
        if captured.send(buf[..len].to_vec()).is_err() {
            return;
        }
    }
}

/// Sends every datagram in `datagrams` to `to` from a socket of its own (any address
/// can replay: only the envelope counts).
async fn replay(datagrams: &[Vec<u8>], to: SocketAddr) {
    let attacker = UdpSocket::bind(LOOPBACK).await.unwrap();
    for datagram in datagrams {
        attacker.send_to(datagram, to).await.unwrap();
    }
}

fn no_event(events: &mut mpsc::Receiver<MembershipEvent>) {
    match events.try_recv() {
        Err(TryRecvError::Empty) => {}
        other => panic!("expected no membership event, got {other:?}"),
    }
}

#[tokio::test]
async fn replayed_datagrams_are_dropped_counted_and_change_nothing() {
    let a = node("lb1", ring(111), &[]).await;
    // lb2 listens on a port of its own and advertises the relay's, so every datagram
    // lb1 sends it (foca packets and heartbeats) passes the relay.
    let listen = std::net::UdpSocket::bind(LOOPBACK)
        .and_then(|s| s.local_addr())
        .unwrap();
    let relay_socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    let relay_addr = relay_socket.local_addr().unwrap();
    let mut cfg = config("lb2", listen, ring(111), &[a.handle.addr()]);
    cfg.advertise = Some(relay_addr);
    let mut b = spawn(cfg).await;
    let (captured_tx, mut captured) = mpsc::unbounded_channel();
    tokio::spawn(relay(relay_socket, listen, captured_tx));
    let both = [&a.handle, &b.handle];
    eventually("two members", Duration::from_secs(30), || {
        converged(&both, 2)
    })
    .await;
    // lb1 beacons to lb2 (its heir) too.
    b.handle
        .set_heartbeats(BTreeSet::new(), ["lb1".to_owned()].into())
        .await
        .unwrap();
    a.handle
        .set_heartbeats([relay_addr].into(), BTreeSet::new())
        .await
        .unwrap();
    eventually("heartbeats heard", Duration::from_secs(10), || async {
        b.handle.counters().heartbeats_received >= 3
    })
    .await;
    // Everything captured so far was delivered to lb2 once; the membership events it
    // caused have been emitted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut recorded = Vec::new();
    while let Ok(datagram) = captured.try_recv() {
        recorded.push(datagram);
    }
    assert!(recorded.len() >= 5, "{} datagrams captured", recorded.len());
    while b.events.try_recv().is_ok() {}
    let view = live_view(&b.handle).await;
    let before = b.handle.counters();

    replay(&recorded, listen).await;
    let n = recorded.len() as u64;
    eventually("replays counted", Duration::from_secs(10), || async {
        b.handle.counters().dropped_replayed >= before.dropped_replayed + n
    })
    .await;
    let after = b.handle.counters();
    assert_eq!(after.dropped_replayed, before.dropped_replayed + n);
    assert_eq!(
        (
            after.dropped_auth_failed,
            after.dropped_bad_envelope,
            after.dropped_unknown_key,
            after.dropped_bad_payload,
            after.heartbeats_stale,
        ),
        (
            before.dropped_auth_failed,
            before.dropped_bad_envelope,
            before.dropped_unknown_key,
            before.dropped_bad_payload,
            before.heartbeats_stale,
        ),
        "replays must be refused by the envelope, before anything reads them"
    );
    assert_eq!(live_view(&b.handle).await, view);
    no_event(&mut b.events);

    // lb1 leaves: its recorded datagrams, replayed, must not bring it back.
    a.handle.leave().await.unwrap();
    wait_event(
        &mut b.events,
        "MemberDown lb1",
        |e| matches!(e, MembershipEvent::MemberDown(m) if m.node_id == "lb1"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(datagram) = captured.try_recv() {
        recorded.push(datagram);
    }
    while b.events.try_recv().is_ok() {}
    let before = b.handle.counters();
    replay(&recorded, listen).await;
    let n = recorded.len() as u64;
    eventually("replays counted", Duration::from_secs(10), || async {
        b.handle.counters().dropped_replayed >= before.dropped_replayed + n
    })
    .await;
    // Two probe periods for anything a replay set off to show.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = b.handle.counters();
    assert_eq!(after.dropped_replayed, before.dropped_replayed + n);
    assert_eq!(
        (after.heartbeats_received, after.heartbeats_stale),
        (before.heartbeats_received, before.heartbeats_stale)
    );
    assert_eq!(live_view(&b.handle).await.len(), 1, "lb1 came back");
    no_event(&mut b.events);
}
