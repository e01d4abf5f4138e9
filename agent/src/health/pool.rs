//! A virtual service's pool from its real servers' health (pure): keepalived's
//! quorum, hysteresis, sorry server and `inhibit_on_failure`.
//!
//! - The pool's weight is the sum of the weights of the real servers that are up.
//! - Quorum is lost when that sum is 0 or below `quorum − hysteresis`, and gained back
//!   when it is at least `quorum + hysteresis` (so a pool at the edge does not flap);
//!   it starts gained.
//! - While quorum is lost and a sorry server is configured, the sorry server (weight
//!   1) takes the traffic and the real servers leave the pool, as keepalived does.
//! - A real server out of the pool is removed from IPVS, or kept with weight 0 under
//!   `inhibit_on_failure` (its established connections go on; no new ones).

/// One real server's health and weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub up: bool,
    /// Its weight when up (the configured one, or a dynamic check's).
    pub weight: u32,
    pub inhibit_on_failure: bool,
}

/// A service's quorum settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuorumSpec {
    pub quorum: u32,
    pub hysteresis: u32,
    pub has_sorry_server: bool,
}

/// The pool: each member's weight in IPVS (`None`: not in IPVS), and whether the
/// sorry server is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub weights: Vec<Option<u32>>,
    pub sorry: bool,
}

/// Updates `quorum_up` (the service's quorum state, `true` at start) from the
/// members and returns the pool.
pub fn pool(spec: &QuorumSpec, members: &[Member], quorum_up: &mut bool) -> Pool {
    let sum: u64 = members
        .iter()
        .filter(|m| m.up)
        .map(|m| u64::from(m.weight))
        .sum();
    let low = u64::from(spec.quorum.saturating_sub(spec.hysteresis));
    let high = u64::from(spec.quorum) + u64::from(spec.hysteresis);
    if *quorum_up && (sum == 0 || sum < low) {
        *quorum_up = false;
    } else if !*quorum_up && sum > 0 && sum >= high {
        *quorum_up = true;
    }
    let sorry = !*quorum_up && spec.has_sorry_server;
    let weights = members
        .iter()
        .map(|m| {
            if m.up && !sorry {
                Some(m.weight)
            } else if m.inhibit_on_failure {
                Some(0)
            } else {
                None
            }
        })
        .collect();
    Pool { weights, sorry }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(up: bool, weight: u32) -> Member {
        Member {
            up,
            weight,
            inhibit_on_failure: false,
        }
    }

    const SEED: QuorumSpec = QuorumSpec {
        quorum: 1,
        hysteresis: 0,
        has_sorry_server: false,
    };

    #[test]
    fn down_servers_leave_or_get_weight_zero() {
        let mut q = true;
        let mut inhibited = member(false, 2);
        inhibited.inhibit_on_failure = true;
        let p = pool(
            &SEED,
            &[member(true, 1), member(false, 2), inhibited],
            &mut q,
        );
        assert_eq!(p.weights, [Some(1), None, Some(0)]);
        assert!(!p.sorry && q);
    }

    #[test]
    fn all_down_brings_the_sorry_server_in_and_one_up_takes_it_out() {
        let spec = QuorumSpec {
            has_sorry_server: true,
            ..SEED
        };
        let mut q = true;
        let p = pool(&spec, &[member(false, 1), member(false, 2)], &mut q);
        assert_eq!((p.weights, p.sorry, q), (vec![None, None], true, false));
        let p = pool(&spec, &[member(false, 1), member(true, 2)], &mut q);
        assert_eq!((p.weights, p.sorry, q), (vec![None, Some(2)], false, true));
    }

    #[test]
    fn hysteresis_keeps_a_pool_at_the_edge_from_flapping() {
        // Quorum 4 ± 1: lost below 3, gained at 5.
        let spec = QuorumSpec {
            quorum: 4,
            hysteresis: 1,
            has_sorry_server: true,
        };
        let mut q = true;
        let ws =
            |up: [bool; 3]| -> Vec<Member> { up.iter().map(|&u| member(u, 2)).collect::<Vec<_>>() };
        // 6 → 4 → 2: lost only at 2.
        assert!(!pool(&spec, &ws([true, true, true]), &mut q).sorry);
        assert!(!pool(&spec, &ws([true, true, false]), &mut q).sorry);
        let p = pool(&spec, &ws([true, false, false]), &mut q);
        assert!(p.sorry && !q);
        assert_eq!(
            p.weights,
            [None, None, None],
            "real servers leave for the sorry server"
        );
        // 4 is not enough to gain it back; 6 is.
        assert!(pool(&spec, &ws([true, true, false]), &mut q).sorry);
        assert!(!pool(&spec, &ws([true, true, true]), &mut q).sorry);
    }

    proptest! {
        #[test]
        fn quorum_moves_only_at_its_thresholds(
            quorum in 1u32..10,
            hysteresis in 0u32..5,
            sorry in any::<bool>(),
            steps in proptest::collection::vec(
                proptest::collection::vec((any::<bool>(), 0u32..4, any::<bool>()), 1..5), 1..30),
        ) {
            let spec = QuorumSpec { quorum, hysteresis, has_sorry_server: sorry };
            let mut q = true;
            for step in steps {
                let members: Vec<Member> = step
                    .iter()
                    .map(|&(up, weight, inhibit)| Member { up, weight, inhibit_on_failure: inhibit })
                    .collect();
                let before = q;
                let p = pool(&spec, &members, &mut q);
                let sum: u32 = members.iter().filter(|m| m.up).map(|m| m.weight).sum();
                if before && !q {
                    prop_assert!(sum == 0 || sum < quorum.saturating_sub(hysteresis));
                }
                if !before && q {
                    prop_assert!(sum > 0 && sum >= quorum + hysteresis);
                }
                prop_assert_eq!(p.sorry, sorry && !q);
                for (m, w) in members.iter().zip(&p.weights) {
                    let serves = m.up && !p.sorry;
                    prop_assert_eq!(*w, if serves { Some(m.weight) } else if m.inhibit_on_failure { Some(0) } else { None });
                }
            }
        }
    }
}
