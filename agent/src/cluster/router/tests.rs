//! Scripted event logs (one line per input, with the clock and the expected effects and
//! state, in the manner of holo-vrrp's conformance tests) and properties of pairs of
//! routers exchanging adverts.

use super::*;
use crate::vrrp::Auth;
use proptest::prelude::*;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
const KA: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));

fn settings(primary: IpAddr, priority: u8) -> Settings {
    Settings {
        version: Version::V2,
        priority,
        primary,
        preempt: true,
        advert_int: Duration::from_secs(1),
    }
}

fn advert(priority: u8) -> Advert {
    Advert {
        version: Version::V2,
        vrid: 50,
        priority,
        advert_interval: 1,
        addresses: vec![IpAddr::from([198, 51, 100, 10])],
        auth: Auth::None,
    }
}

fn view(elected_me: bool) -> View {
    View {
        elected_me,
        link_up: true,
        settling: false,
        successor: None,
    }
}

/// Runs a script against one router; each line's effects and resulting state must match.
fn script(settings: &Settings, lines: &[(u64, Input<'_>, &[Effect], State)]) -> Router {
    let mut r = Router::new();
    for (i, (now, input, effects, state)) in lines.iter().enumerate() {
        let got = r.step(input.clone(), settings, *now).expect("no mismatch");
        assert_eq!(got, *effects, "line {i} ({input:?}) effects");
        assert_eq!(r.state(), *state, "line {i} ({input:?}) state");
    }
    r
}

// 3 s + (256 - 100) / 256 s, in ms (rounded down).
const MASTER_DOWN_100: u64 = 3609;

#[test]
fn starts_as_backup_and_claims_only_after_master_down_interval() {
    let s = settings(A, 100);
    assert_eq!(s.master_down().as_millis(), u128::from(MASTER_DOWN_100));
    let r = script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (1000, Input::View(view(true)), &[], State::Backup),
            (
                MASTER_DOWN_100 - 1,
                Input::View(view(true)),
                &[],
                State::Backup,
            ),
            (
                MASTER_DOWN_100,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
    assert_eq!(r.next_wake_ms(MASTER_DOWN_100), None);
}

#[test]
fn a_node_outside_the_cluster_hears_the_master_and_takes_nothing() {
    // No join: it elects itself for everything, but an agent (lb2, equal priority)
    // and a keepalived master (higher priority) advertise during its wait.
    let s = settings(A, 100);
    let (ours, theirs) = (advert(100), advert(150));
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (
                500,
                Input::Advert {
                    src: B,
                    node: None,
                    advert: &ours,
                },
                &[],
                State::Backup,
            ),
            (
                900,
                Input::Advert {
                    src: KA,
                    node: None,
                    advert: &theirs,
                },
                &[],
                State::Backup,
            ),
            (4000, Input::View(view(true)), &[], State::Backup),
            (
                4100,
                Input::Advert {
                    src: KA,
                    node: None,
                    advert: &theirs,
                },
                &[],
                State::Backup,
            ),
            (7000, Input::View(view(true)), &[], State::Backup),
            (
                4100 + MASTER_DOWN_100 - 1,
                Input::View(view(true)),
                &[],
                State::Backup,
            ),
            // The master falls silent: Master_Down_Interval after its last advert.
            (
                4100 + MASTER_DOWN_100,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
}

#[test]
fn a_lower_priority_foreign_master_is_preempted_after_the_wait_but_an_agent_never() {
    let s = settings(A, 150);
    let low = advert(100);
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (
                100,
                Input::Advert {
                    src: KA,
                    node: None,
                    advert: &low,
                },
                &[],
                State::Backup,
            ),
            (
                3100,
                Input::Advert {
                    src: KA,
                    node: None,
                    advert: &low,
                },
                &[],
                State::Backup,
            ),
            // Break before make: advertise, and claim once it no longer answers.
            (
                3600,
                Input::View(view(true)),
                &[Effect::Preempt],
                State::Backup,
            ),
            (3610, Input::View(view(true)), &[], State::Backup),
            (3700, Input::LetGo, &[], State::Backup),
            (
                3700,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (
                100,
                Input::Advert {
                    src: B,
                    node: Some("lb2"),
                    advert: &low,
                },
                &[],
                State::Backup,
            ),
            // Its wait (3.414 s at priority 150) is over, the agent still heard.
            (3500, Input::View(view(true)), &[], State::Backup),
            (
                3510,
                Input::Advert {
                    src: B,
                    node: Some("lb2"),
                    advert: &low,
                },
                &[],
                State::Backup,
            ),
            (6000, Input::View(view(true)), &[], State::Backup),
        ],
    );
}

fn lower_advert(at: u64, low: &Advert) -> (u64, Input<'_>, &'static [Effect], State) {
    let input = Input::Advert {
        src: KA,
        node: None,
        advert: low,
    };
    (at, input, &[], State::Backup)
}

#[test]
fn a_preempted_master_that_keeps_answering_is_claimed_beside_after_one_interval() {
    let s = settings(A, 150);
    let low = advert(100);
    let r = script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            lower_advert(3100, &low),
            (
                3600,
                Input::View(view(true)),
                &[Effect::Preempt],
                State::Backup,
            ),
            // It has not heard us yet: its advert changes nothing, the bound stands.
            lower_advert(3700, &low),
            (4599, Input::View(view(true)), &[], State::Backup),
            (
                4600,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
            // The late report of the probe is nothing to a master.
            (4700, Input::LetGo, &[], State::Master),
        ],
    );
    assert!(r.preempting().is_none());
}

#[test]
fn preemption_stops_for_a_higher_master_an_election_elsewhere_and_a_resignation() {
    let s = settings(A, 150);
    let low = advert(100);
    let high = advert(200);
    let start = |lines: &[(u64, Input<'_>, &[Effect], State)]| {
        let mut all = vec![
            (0, Input::View(view(true)), &[][..], State::Backup),
            lower_advert(3100, &low),
            (
                3600,
                Input::View(view(true)),
                &[Effect::Preempt][..],
                State::Backup,
            ),
        ];
        all.extend_from_slice(lines);
        script(&s, &all)
    };
    // A higher-priority master appears: followed; its let-go report claims nothing.
    let r = start(&[
        (
            3650,
            Input::Advert {
                src: B,
                node: None,
                advert: &high,
            },
            &[],
            State::Backup,
        ),
        (3700, Input::LetGo, &[], State::Backup),
        (3700, Input::View(view(true)), &[], State::Backup),
    ]);
    assert!(r.preempting().is_none());
    // The election names another node: no claim, even when the probe reports.
    let r = start(&[
        (3650, Input::View(view(false)), &[], State::Backup),
        (3700, Input::LetGo, &[], State::Backup),
        (3700, Input::View(view(false)), &[], State::Backup),
    ]);
    assert!(r.preempting().is_none());
    // The lower master resigns (priority 0): nothing left to preempt, claimed at once.
    start(&[
        (
            3650,
            Input::Advert {
                src: KA,
                node: None,
                advert: &advert(0),
            },
            &[],
            State::Backup,
        ),
        (
            3650,
            Input::View(view(true)),
            &[Effect::Acquire],
            State::Master,
        ),
    ]);
}

#[test]
fn a_let_go_report_outside_a_preemption_claims_nothing() {
    let s = settings(A, 150);
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (100, Input::LetGo, &[], State::Backup),
            (200, Input::View(view(true)), &[], State::Backup),
        ],
    );
}

#[test]
fn a_hand_over_ends_the_wait_and_the_heard_master() {
    let s = settings(A, 100);
    let theirs = advert(100);
    script(
        &s,
        &[
            (0, Input::View(view(false)), &[], State::Backup),
            (
                100,
                Input::Advert {
                    src: B,
                    node: Some("lb2"),
                    advert: &theirs,
                },
                &[],
                State::Backup,
            ),
            (200, Input::View(view(true)), &[], State::Backup),
            (210, Input::Handover { from: "lb2" }, &[], State::Backup),
            (
                211,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
}

#[test]
fn a_hand_over_is_claimed_while_another_agent_s_resignation_is_followed() {
    // lb3 resigned the group (priority 0: followed for the skew time), handed it to
    // lb1, which hands it on to us: we claim at once, lb3 holds nothing.
    let s = settings(A, 100);
    let (up, resign) = (advert(100), advert(0));
    let lb3 = IpAddr::from([192, 0, 2, 3]);
    script(
        &s,
        &[
            (0, Input::View(view(false)), &[], State::Backup),
            (
                4000,
                Input::Advert {
                    src: lb3,
                    node: Some("lb3"),
                    advert: &up,
                },
                &[],
                State::Backup,
            ),
            (
                5000,
                Input::Advert {
                    src: lb3,
                    node: Some("lb3"),
                    advert: &resign,
                },
                &[],
                State::Backup,
            ),
            (5005, Input::Handover { from: "lb1" }, &[], State::Backup),
            (
                5005,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
}

#[test]
fn a_hand_over_does_not_override_a_live_master_of_another_node() {
    let s = settings(A, 100);
    let up = advert(120);
    let other = IpAddr::from([192, 0, 2, 3]);
    script(
        &s,
        &[
            (0, Input::View(view(false)), &[], State::Backup),
            (
                4000,
                Input::Advert {
                    src: other,
                    node: None,
                    advert: &up,
                },
                &[],
                State::Backup,
            ),
            (4100, Input::Handover { from: "lb1" }, &[], State::Backup),
            (4100, Input::View(view(true)), &[], State::Backup),
        ],
    );
}

#[test]
fn a_group_handed_over_is_claimed_even_when_the_election_names_another_and_then_passed_on() {
    let s = settings(A, 100);
    let mut r = Router::new();
    r.step(Input::View(view(false)), &s, 0).unwrap();
    r.step(Input::Handover { from: "lb2" }, &s, 10).unwrap();
    assert_eq!(
        r.step(Input::View(view(false)), &s, 11).unwrap(),
        [Effect::Acquire],
        "handed: claimed although lb3 is elected here"
    );
    let on = View {
        successor: Some("lb3".into()),
        ..view(false)
    };
    assert_eq!(
        r.step(Input::View(on), &s, 12).unwrap(),
        [Effect::Release {
            to: Some("lb3".into())
        }]
    );
    // The hand-over is used once.
    assert_eq!(r.step(Input::View(view(false)), &s, 13).unwrap(), []);
}

#[test]
fn a_master_heard_before_it_joined_hands_over_once_identified() {
    let s = settings(A, 100);
    let up = advert(100);
    let mut r = Router::new();
    r.step(Input::View(view(false)), &s, 0).unwrap();
    let foreign = Input::Advert {
        src: B,
        node: None,
        advert: &up,
    };
    r.step(foreign, &s, 100).unwrap();
    r.step(Input::Handover { from: "lb2" }, &s, 200).unwrap();
    assert!(r.heard(200).is_some(), "not known as lb2 yet");
    r.identify(B, "lb2");
    r.step(Input::Handover { from: "lb2" }, &s, 300).unwrap();
    assert_eq!(r.heard(300), None);
    assert_eq!(
        r.step(Input::View(view(true)), &s, 300).unwrap(),
        [Effect::Acquire]
    );
}

#[test]
fn a_priority_zero_advert_waits_the_skew_and_only_the_hand_over_ends_it_at_once() {
    let s = settings(A, 100);
    let (up, resign) = (advert(100), advert(0));
    // lb2 resigns on a planned move: a backup it did not hand the group to waits the
    // skew (another may be claiming it now), the one it handed it to claims at once.
    let mut r = script(
        &s,
        &[
            (0, Input::View(view(false)), &[], State::Backup),
            (
                3000,
                Input::Advert {
                    src: B,
                    node: Some("lb2"),
                    advert: &up,
                },
                &[],
                State::Backup,
            ),
            (
                4000,
                Input::Advert {
                    src: B,
                    node: Some("lb2"),
                    advert: &resign,
                },
                &[],
                State::Backup,
            ),
        ],
    );
    // (256 - 100) / 256 s of skew.
    assert_eq!(r.heard(4000).map(|h| h.until_ms), Some(4000 + 609));
    let mut handed = r.clone();
    assert_eq!(r.step(Input::View(view(true)), &s, 4001).unwrap(), []);
    handed
        .step(Input::Handover { from: "lb2" }, &s, 4001)
        .unwrap();
    assert_eq!(handed.heard(4001), None);
    assert_eq!(
        handed.step(Input::View(view(true)), &s, 4001).unwrap(),
        [Effect::Acquire]
    );
    assert_eq!(
        r.step(Input::View(view(true)), &s, 4000 + 609).unwrap(),
        [Effect::Acquire]
    );

    let mut r = Router::new();
    r.step(Input::View(view(false)), &s, 0).unwrap();
    r.step(
        Input::Advert {
            src: KA,
            node: None,
            advert: &up,
        },
        &s,
        5000,
    )
    .unwrap();
    r.step(
        Input::Advert {
            src: KA,
            node: None,
            advert: &resign,
        },
        &s,
        5100,
    )
    .unwrap();
    assert_eq!(r.heard(5100).map(|h| h.until_ms), Some(5100 + 609));
    assert_eq!(
        r.step(Input::View(view(true)), &s, 5100 + 609).unwrap(),
        [Effect::Acquire]
    );
}

#[test]
fn gossip_cut_between_two_masters_settles_on_vrrp_precedence() {
    // lb1 holds (priority 100); gossip to lb2 is cut, lb2 (priority 90) presumes lb1
    // down on heartbeat silence and claims; lb1's next advert makes lb2 yield, and
    // lb2 stays backup while lb1's adverts keep coming, whatever gossip says.
    let s2 = settings(B, 90);
    let lb1 = advert(100);
    let lb1_advert = Input::Advert {
        src: A,
        node: Some("lb1"),
        advert: &lb1,
    };
    script(
        &s2,
        &[
            (0, Input::View(view(false)), &[], State::Backup),
            (1000, lb1_advert.clone(), &[], State::Backup),
            (5000, Input::View(view(false)), &[], State::Backup),
            (5000, lb1_advert.clone(), &[], State::Backup),
            (5300, Input::PresumedDown("lb1"), &[], State::Backup),
            (
                5300,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
            (
                6000,
                lb1_advert.clone(),
                &[Effect::Release { to: None }],
                State::Backup,
            ),
            (6001, Input::View(view(true)), &[], State::Backup),
            (7000, lb1_advert.clone(), &[], State::Backup),
            (9000, Input::View(view(true)), &[], State::Backup),
        ],
    );
    // lb1 side: lb2's advert loses, so lb1 advertises and re-announces at once.
    let s1 = settings(A, 100);
    let lb2 = advert(90);
    let mut r = Router::new();
    r.step(Input::View(view(true)), &s1, 0).unwrap();
    r.step(Input::View(view(true)), &s1, 4000).unwrap();
    assert!(r.is_master());
    assert_eq!(
        r.step(
            Input::Advert {
                src: B,
                node: Some("lb2"),
                advert: &lb2
            },
            &s1,
            5400
        )
        .unwrap(),
        [Effect::AdvertiseNow, Effect::Announce]
    );
    assert!(r.is_master());
}

#[test]
fn planned_moves_hand_over_to_the_successor_and_link_loss_releases() {
    let s = settings(A, 100);
    let moved = View {
        successor: Some("lb2".into()),
        ..view(false)
    };
    let down = View {
        link_up: false,
        ..view(true)
    };
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (
                4000,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
            (
                5000,
                Input::View(moved),
                &[Effect::Release {
                    to: Some("lb2".into()),
                }],
                State::Backup,
            ),
            // Named again a moment later: it waits rather than claim beside the
            // successor, and gets the group back by a hand-over.
            (6000, Input::View(view(true)), &[], State::Backup),
            (6100, Input::Handover { from: "lb2" }, &[], State::Backup),
            (
                6100,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
            (
                7000,
                Input::View(down),
                &[Effect::Release { to: None }],
                State::Initialize,
            ),
            // Back up: a fresh wait.
            (8000, Input::View(view(true)), &[], State::Backup),
            (
                8000 + MASTER_DOWN_100,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
            (
                20_000,
                Input::Shutdown {
                    heir: Some("lb3".into()),
                },
                &[Effect::Release {
                    to: Some("lb3".into()),
                }],
                State::Initialize,
            ),
        ],
    );
}

#[test]
fn settling_blocks_a_claim_but_not_a_hand_over_and_failures_go_back_to_backup() {
    let s = settings(A, 100);
    let settling = View {
        settling: true,
        ..view(true)
    };
    script(
        &s,
        &[
            (0, Input::View(settling.clone()), &[], State::Backup),
            (5000, Input::View(settling.clone()), &[], State::Backup),
            (5001, Input::Handover { from: "lb2" }, &[], State::Backup),
            (
                5002,
                Input::View(settling),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
    let mut r = script(&s, &[(0, Input::View(view(true)), &[], State::Backup)]);
    r.step(Input::View(view(true)), &s, 4000).unwrap();
    r.acquire_failed();
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        r.step(Input::View(view(true)), &s, 5000).unwrap(),
        [Effect::Acquire]
    );
}

#[test]
fn differently_configured_adverts_are_refused_and_change_nothing() {
    let s = settings(A, 100);
    let mut r = Router::new();
    r.step(Input::View(view(true)), &s, 0).unwrap();
    let mut v3 = advert(200);
    v3.version = Version::V3;
    let before = r.clone();
    assert!(r
        .step(
            Input::Advert {
                src: B,
                node: None,
                advert: &v3
            },
            &s,
            10
        )
        .is_err());
    assert_eq!(r, before);
}

/// One router of a pair: its settings and whether the election names it.
#[derive(Clone, Debug)]
struct Side {
    router: Router,
    settings: Settings,
}

fn pair(p1: u8, p2: u8, agent: bool) -> ([Side; 2], [Option<&'static str>; 2]) {
    let side = |addr, p| Side {
        router: Router::new(),
        settings: settings(addr, p),
    };
    let nodes = if agent {
        [Some("lb1"), Some("lb2")]
    } else {
        [None, None]
    };
    ([side(A, p1), side(B, p2)], nodes)
}

proptest! {
    /// Whatever the two elections say (gossip cut: both may name themselves) and
    /// whatever the heartbeat silences, once every master's advert reaches the other
    /// router there is at most one master, and it stays so while adverts flow.
    #[test]
    fn adverts_that_flow_leave_at_most_one_master(
        p1 in 1u8..=254, p2 in 1u8..=254, agent in any::<bool>(),
        steps in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>(), 0u64..1500), 1..40),
    ) {
        let (mut sides, nodes) = pair(p1, p2, agent);
        let mut now = 0u64;
        let mut flowing_rounds = 0;
        for (e1, e2, cut, gap) in steps {
            now += gap;
            // Elections and presumed-down peers are arbitrary; adverts flow unless cut.
            for (i, elected) in [e1, e2].into_iter().enumerate() {
                let side = &mut sides[i];
                if cut {
                    if let Some(other) = nodes[1 - i] {
                        side.router.step(Input::PresumedDown(other), &side.settings, now).unwrap();
                    }
                }
                side.router.step(Input::View(view(elected)), &side.settings, now).unwrap();
            }
            if cut {
                flowing_rounds = 0;
                continue;
            }
            // The probe of a preempting router: it reports once the other side does
            // not hold the group (what the other's kernel's silence to probes shows).
            for i in 0..2 {
                if sides[i].router.preempting().is_some() && !sides[1 - i].router.is_master() {
                    let side = &mut sides[i];
                    side.router.step(Input::LetGo, &side.settings, now).unwrap();
                }
            }
            for from in 0..2 {
                // A preempting router advertises too (Effect::Preempt).
                if sides[from].router.is_master() || sides[from].router.preempting().is_some() {
                    let ad = advert(sides[from].settings.priority);
                    let src = sides[from].settings.primary;
                    let to = &mut sides[1 - from];
                    to.router.step(Input::Advert { src, node: nodes[from], advert: &ad }, &to.settings, now).unwrap();
                }
            }
            flowing_rounds += 1;
            if flowing_rounds >= 2 {
                prop_assert!(
                    !(sides[0].router.is_master() && sides[1].router.is_master()),
                    "two masters at {} ms: {:?}", now, sides
                );
            }
        }
    }

    /// An elected router with nothing heard always ends up master once its wait is
    /// over: a live eligible node means a holder.
    #[test]
    fn an_elected_router_with_nothing_heard_claims_after_its_wait(
        p in 1u8..=254, start in 0u64..100_000, extra in 0u64..10_000,
    ) {
        let s = settings(A, p);
        let mut r = Router::new();
        r.step(Input::View(view(true)), &s, start).unwrap();
        let at = start + ms(s.master_down()) + extra;
        let effects = r.step(Input::View(view(true)), &s, at).unwrap();
        prop_assert_eq!(effects, vec![Effect::Acquire]);
        prop_assert!(r.is_master());
    }
}

#[test]
fn a_renamed_group_is_claimed_without_the_start_up_wait() {
    let s = settings(A, 100);
    let mut r = Router::new();
    r.hand_over();
    assert_eq!(
        r.step(Input::View(view(true)), &s, 0).unwrap(),
        [Effect::Acquire]
    );
    // Not named by the election: the hand-over lapses.
    let mut r = Router::new();
    r.hand_over();
    r.step(Input::View(view(false)), &s, 0).unwrap();
    assert_eq!(r.step(Input::View(view(true)), &s, 10).unwrap(), []);
}

#[test]
fn a_stall_is_not_silence_the_heard_master_and_the_wait_are_credited() {
    let s = settings(A, 100);
    let theirs = advert(150);
    let from_ka = Input::Advert {
        src: KA,
        node: None,
        advert: &theirs,
    };
    // Heard at 500: followed until 500 + Master_Down_Interval = 4109. The node then
    // runs 2500 ms late at 6109: the stall began at 3609, while the master was heard,
    // so it is followed until 4109 + 2500 + 1000 and its next advert is read in time.
    let heard_until = 500 + MASTER_DOWN_100;
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (500, from_ka.clone(), &[], State::Backup),
            (
                heard_until + 2000,
                Input::Stalled { late_ms: 2500 },
                &[],
                State::Backup,
            ),
            (
                heard_until + 2000,
                Input::View(view(true)),
                &[],
                State::Backup,
            ),
            (
                heard_until + 3499,
                Input::View(view(true)),
                &[],
                State::Backup,
            ),
            (heard_until + 3000, from_ka.clone(), &[], State::Backup),
            (
                heard_until + 3000 + MASTER_DOWN_100,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
    // The start-up wait (until 3609) was running when a 3000 ms stall began at 700:
    // it ends 4000 ms later.
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (3700, Input::Stalled { late_ms: 3000 }, &[], State::Backup),
            (3700, Input::View(view(true)), &[], State::Backup),
            (
                MASTER_DOWN_100 + 3999,
                Input::View(view(true)),
                &[],
                State::Backup,
            ),
            (
                MASTER_DOWN_100 + 4000,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
    // A stall that began after the wait was over changes nothing.
    script(
        &s,
        &[
            (0, Input::View(view(true)), &[], State::Backup),
            (5000, Input::Stalled { late_ms: 500 }, &[], State::Backup),
            (
                5000,
                Input::View(view(true)),
                &[Effect::Acquire],
                State::Master,
            ),
        ],
    );
}
