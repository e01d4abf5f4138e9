use super::*;

const TICK: Duration = Duration::from_millis(10);
/// Generous: convergence is asserted, never its speed.
const LIMIT: Duration = Duration::from_secs(300);

/// Starts nodes 0..n, each announcing to node 0, and waits for agreement.
fn formed(sim: &mut Sim, n: usize) {
    for i in 0..n {
        sim.start(i, &[0]);
        sim.run_for(Duration::from_millis(1));
    }
    let formed = sim.run_until(LIMIT, TICK, |s| {
        s.membership_converged() && s.ownership_agreed()
    });
    assert!(formed.is_some(), "{n} nodes never converged");
}

#[test]
fn twenty_nodes_agree_after_a_join_and_after_a_crash() {
    let mut sim = Sim::new(SimConfig::lan(21, 7));
    formed(&mut sim, 20);
    let before = sim.expected_owners();

    sim.start(20, &[3]);
    assert!(sim.run_until(LIMIT, TICK, Sim::ownership_agreed).is_some());
    let joined = sim.expected_owners();
    assert!(
        joined.values().any(|o| o.as_deref() == Some("lb0020")),
        "the joiner owns its rendezvous share of 64 groups"
    );
    assert_ne!(before, joined);

    let victim = (0..20)
        .find(|&i| joined.values().any(|o| *o == Some(format!("lb{i:04}"))))
        .expect("some node owns a group");
    sim.kill(victim);
    assert!(sim.run_until(LIMIT, TICK, Sim::ownership_agreed).is_some());
    assert!(sim
        .run_until(LIMIT, TICK, |s| s.membership_converged())
        .is_some());
    let victim_id = format!("lb{victim:04}");
    assert!(sim
        .expected_owners()
        .values()
        .all(|o| o.as_deref() != Some(victim_id.as_str())));
    assert_eq!(sim.live_count(), 20);
}

#[test]
fn every_datagram_is_counted_with_its_envelope() {
    let mut sim = Sim::new(SimConfig::lan(3, 1));
    formed(&mut sim, 3);
    let t = sim.traffic();
    assert!(t.datagrams > 0);
    // key id, nonce, Poly1305 tag and protobuf framing: a constant-ish overhead.
    let overhead = (t.wire_bytes - t.payload_bytes) / t.datagrams;
    assert!((12 + 16..64).contains(&overhead), "overhead {overhead}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut sim = Sim::new(SimConfig::lan(5, 42));
        formed(&mut sim, 5);
        (sim.now(), sim.traffic())
    };
    assert_eq!(run(), run());
}

#[test]
fn a_joiner_learns_every_member_from_one_feed() {
    // 60 identities are ~3.6 KB: more than one 1400-byte packet holds.
    let mut sim = Sim::new(SimConfig::lan(61, 3));
    formed(&mut sim, 60);
    sim.start(60, &[3]);
    // The announce and its feed: one round trip.
    sim.run_for(sim.latency * 2);
    assert_eq!(sim.nodes[60].live_peers().count(), 60);
}
