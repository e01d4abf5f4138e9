use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const DELAY: Duration = Duration::from_secs(30);
/// Late enough that every member's preempt delay has passed.
const SETTLED: u64 = 1_000_000;

fn member(id: &str, since: u64) -> Member {
    Member {
        id: id.to_owned(),
        drained: false,
        eligible_since_ms: since,
        pins: BTreeMap::new(),
    }
}

fn group(name: &str, priorities: &[(&str, u8)], preempt: bool) -> GroupSpec {
    GroupSpec {
        name: name.to_owned(),
        priorities: priorities
            .iter()
            .map(|(node, p)| ((*node).to_owned(), *p))
            .collect(),
        default_priority: 100,
        preempt,
        preempt_delay: DELAY,
    }
}

fn plain_groups(count: usize) -> Vec<GroupSpec> {
    (0..count)
        .map(|i| group(&format!("vip-{i}"), &[], true))
        .collect()
}

/// The owners as `current` for the next election (groups without owner left out).
fn as_current(election: &Election) -> BTreeMap<String, String> {
    election
        .owners
        .iter()
        .filter_map(|(g, owner)| Some((g.clone(), owner.clone()?)))
        .collect()
}

fn owner_of<'a>(election: &'a Election, group: &str) -> Option<&'a str> {
    election.owners[group].as_deref()
}

#[test]
fn rendezvous_weights_are_pinned() {
    // Every node of a cluster, in every build, must agree on these (cross-checked with
    // an independent Python implementation of FNV-1a + fmix64).
    assert_eq!(rendezvous_weight("vip-0", "lb1"), 0x664e_0042_6f87_76f9);
    assert_eq!(rendezvous_weight("vip-0", "lb2"), 0xf34f_e452_f43c_9c7f);
    assert_eq!(rendezvous_weight("", ""), 0x7bd3_144f_29c0_cc9e);
    // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
    assert_ne!(rendezvous_weight("ab", "c"), rendezvous_weight("a", "bc"));
}

#[test]
fn keepalived_master_priority_wins_while_alive() {
    let groups = [
        group("VI_1", &[("lb1", 100), ("lb2", 90)], true),
        group("VI_2", &[("lb1", 90), ("lb2", 100)], true),
    ];
    let both = [member("lb1", 0), member("lb2", 0)];
    let election = elect(&both, &groups, &BTreeMap::new(), SETTLED);
    assert_eq!(owner_of(&election, "VI_1"), Some("lb1"));
    assert_eq!(owner_of(&election, "VI_2"), Some("lb2"));
    // lb2 dies: lb1 takes VI_2 at once, no delay for a group without a live owner.
    let failover = elect(&both[..1], &groups, &as_current(&election), SETTLED);
    assert_eq!(owner_of(&failover, "VI_2"), Some("lb1"));
    assert_eq!(failover.recheck_at_ms, None);
}

#[test]
fn returning_master_preempts_only_after_its_delay() {
    let groups = [group("VI_2", &[("lb1", 90), ("lb2", 100)], true)];
    let current = BTreeMap::from([("VI_2".to_owned(), "lb1".to_owned())]);
    let back_at = 500_000;
    let members = [member("lb1", 0), member("lb2", back_at)];
    let matures = back_at + 30_000;
    let before = elect(&members, &groups, &current, matures - 1);
    assert_eq!(owner_of(&before, "VI_2"), Some("lb1"));
    assert_eq!(before.recheck_at_ms, Some(matures));
    let after = elect(&members, &groups, &current, matures);
    assert_eq!(owner_of(&after, "VI_2"), Some("lb2"));
    assert_eq!(after.recheck_at_ms, None);
}

#[test]
fn nopreempt_keeps_the_live_owner_and_drained_owners_lose_their_groups_to_undrained_ones() {
    let groups = [group("VI_2", &[("lb1", 90), ("lb2", 100)], false)];
    let current = BTreeMap::from([("VI_2".to_owned(), "lb1".to_owned())]);
    let mut members = vec![member("lb1", 0), member("lb2", 0)];
    let kept = elect(&members, &groups, &current, SETTLED);
    assert_eq!(owner_of(&kept, "VI_2"), Some("lb1"));
    members[0].drained = true;
    let moved = elect(&members, &groups, &current, SETTLED);
    assert_eq!(owner_of(&moved, "VI_2"), Some("lb2"));
    members[1].drained = true;
    let last_resort = elect(&members, &groups, &current, SETTLED);
    assert_eq!(
        owner_of(&last_resort, "VI_2"),
        Some("lb1"),
        "every node drained: all are eligible, and the owner keeps it"
    );
    let preemptive = [group("VI_2", &[("lb1", 90), ("lb2", 100)], true)];
    assert_eq!(
        owner_of(&elect(&members, &preemptive, &current, SETTLED), "VI_2"),
        Some("lb1"),
        "and nobody preempts"
    );
    assert_eq!(
        owner_of(&elect(&[], &groups, &current, SETTLED), "VI_2"),
        None
    );
}

/// Whether `m` is eligible: undrained, or every member is drained (ids are unique here).
fn eligible(members: &[Member], m: &Member) -> bool {
    !m.drained || members.iter().all(|m| m.drained)
}

#[test]
fn a_duplicated_member_counts_as_drained_if_either_entry_is() {
    let groups = [group("g", &[("lb1", 200)], true)];
    let mut drained = member("lb1", 0);
    drained.drained = true;
    let members = [member("lb1", 0), drained, member("lb2", 0)];
    let election = elect(&members, &groups, &BTreeMap::new(), SETTLED);
    assert_eq!(owner_of(&election, "g"), Some("lb2"));
}

fn node_ids(count: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z][a-z0-9-]{0,7}", count)
        .prop_map(|ids| ids.into_iter().collect())
}

/// Members (some drained, joined at various times), groups with random priorities over
/// those members and a few strangers, current owners (some gone) and a clock.
fn arb_view() -> impl Strategy<Value = (Vec<Member>, Vec<GroupSpec>, BTreeMap<String, String>, u64)>
{
    node_ids(1..=6).prop_flat_map(|ids| {
        let known: Vec<String> = ids.iter().cloned().chain(["gone".to_owned()]).collect();
        let members = ids
            .iter()
            .map(|id| {
                (any::<bool>(), 0..100_000u64).prop_map({
                    let id = id.clone();
                    move |(drained, since)| Member {
                        id: id.clone(),
                        drained,
                        eligible_since_ms: since,
                        pins: BTreeMap::new(),
                    }
                })
            })
            .collect::<Vec<_>>();
        let group = (
            prop::collection::btree_map(prop::sample::select(known.clone()), any::<u8>(), 0..4),
            any::<u8>(),
            any::<bool>(),
            0..50_000u64,
            prop::option::of(prop::sample::select(known)),
        );
        (members, prop::collection::vec(group, 1..12), 0..150_000u64).prop_map(
            |(members, groups, now)| {
                let mut current = BTreeMap::new();
                let specs = groups
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (priorities, default_priority, preempt, delay, owner))| {
                            let name = format!("g{i}");
                            if let Some(owner) = owner {
                                current.insert(name.clone(), owner);
                            }
                            GroupSpec {
                                name,
                                priorities,
                                default_priority,
                                preempt,
                                preempt_delay: Duration::from_millis(delay),
                            }
                        },
                    )
                    .collect();
                (members, specs, current, now)
            },
        )
    })
}

#[test]
fn a_moved_group_goes_to_its_node_and_stays_until_the_node_goes() {
    let groups = [group("g", &[("lb1", 200)], true)];
    let mut lb2 = member("lb2", 0);
    lb2.pins.insert("g".into(), 5);
    let current: BTreeMap<String, String> = [("g".to_owned(), "lb1".to_owned())].into();
    let members = [member("lb1", 0), lb2.clone(), member("lb3", 0)];
    let election = elect(&members, &groups, &current, SETTLED);
    assert_eq!(owner_of(&election, "g"), Some("lb2"), "over priority 200");
    assert_eq!(election.recheck_at_ms, None);
    // A later move to lb3 wins; lb2's older pin counts no more.
    let mut lb3 = member("lb3", 0);
    lb3.pins.insert("g".into(), 6);
    let members = [member("lb1", 0), lb2.clone(), lb3];
    assert_eq!(
        owner_of(&elect(&members, &groups, &current, SETTLED), "g"),
        Some("lb3")
    );
    // Drained, lb2's pin counts for nothing: the group goes by rank again.
    lb2.drained = true;
    let members = [member("lb1", 0), lb2];
    assert_eq!(
        owner_of(&elect(&members, &groups, &current, SETTLED), "g"),
        Some("lb1")
    );
}

proptest! {
    /// An eligible member's pin gives it the group whatever the ranks, stickiness and
    /// clock (the highest stamp, then id, among pins of one group); a group nobody
    /// eligible pins is elected as if there were no pins at all.
    #[test]
    fn the_newest_pin_of_an_eligible_member_wins(
        (mut members, groups, current, now) in arb_view(),
        pins in prop::collection::vec((0..6usize, 0..12usize, 0..4u64), 0..8),
    ) {
        for (m, g, stamp) in pins {
            let i = m % members.len();
            members[i].pins.insert(format!("g{g}"), stamp);
        }
        let unpinned: Vec<Member> = members
            .iter()
            .cloned()
            .map(|mut m| {
                m.pins.clear();
                m
            })
            .collect();
        let election = elect(&members, &groups, &current, now);
        let without = elect(&unpinned, &groups, &current, now);
        for g in &groups {
            let winner = members
                .iter()
                .filter(|m| eligible(&members, m))
                .filter_map(|m| m.pins.get(&g.name).map(|&s| (s, m.id.as_str())))
                .max();
            match winner {
                Some((_, id)) => prop_assert_eq!(owner_of(&election, &g.name), Some(id)),
                None => prop_assert_eq!(&election.owners[&g.name], &without.owners[&g.name]),
            }
        }
    }

    #[test]
    fn one_eligible_owner_per_group_whenever_a_member_is_eligible(
        (members, groups, current, now) in arb_view()
    ) {
        let election = elect(&members, &groups, &current, now);
        let eligible: BTreeSet<&str> = members
            .iter()
            .filter(|m| eligible(&members, m))
            .map(|m| m.id.as_str())
            .collect();
        prop_assert_eq!(election.owners.len(), groups.len());
        for group in &groups {
            match owner_of(&election, &group.name) {
                Some(owner) => prop_assert!(eligible.contains(owner), "{} owns {}", owner, group.name),
                None => prop_assert!(eligible.is_empty()),
            }
        }
    }

    #[test]
    fn member_order_does_not_matter(
        (members, groups, current, now) in arb_view(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = members.clone();
        shuffled.sort_by_key(|m| rendezvous_weight(&seed.to_string(), &m.id));
        prop_assert_eq!(
            elect(&members, &groups, &current, now),
            elect(&shuffled, &groups, &current, now)
        );
    }

    #[test]
    fn nopreempt_keeps_every_live_owner((members, mut groups, current, now) in arb_view()) {
        for group in &mut groups {
            group.preempt = false;
        }
        let election = elect(&members, &groups, &current, now);
        for member in members.iter().filter(|m| eligible(&members, m)) {
            for (group, owner) in &current {
                if *owner == member.id {
                    prop_assert_eq!(owner_of(&election, group), Some(owner.as_str()));
                }
            }
        }
        prop_assert_eq!(election.recheck_at_ms, None);
    }

    #[test]
    fn the_best_ranked_node_preempts_exactly_when_its_delay_has_passed(
        (members, groups, current, now) in arb_view()
    ) {
        let election = elect(&members, &groups, &current, now);
        let live: BTreeMap<&str, &Member> = members
            .iter()
            .filter(|m| eligible(&members, m))
            .map(|m| (m.id.as_str(), m))
            .collect();
        let all_drained = members.iter().all(|m| m.drained);
        for group in &groups {
            let Some(owner) = current.get(&group.name).filter(|o| live.contains_key(o.as_str())) else {
                continue;
            };
            if !group.preempt || all_drained {
                // No preemption: the owner keeps it.
                prop_assert_eq!(owner_of(&election, &group.name), Some(owner.as_str()));
                continue;
            }
            let best = live
                .keys()
                .max_by_key(|n| (group.priority(n), rendezvous_weight(&group.name, n), std::cmp::Reverse(**n)))
                .unwrap();
            let matures = live[best].eligible_since_ms + group.preempt_delay.as_millis() as u64;
            let expected = if now >= matures { *best } else { owner.as_str() };
            prop_assert_eq!(owner_of(&election, &group.name), Some(expected));
            if *best != owner.as_str() && now < matures {
                prop_assert!(election.recheck_at_ms.is_some_and(|t| t <= matures));
            }
        }
    }

    #[test]
    fn the_heir_is_who_gets_the_group_when_its_owner_goes_down(
        (members, groups, current, now) in arb_view(),
    ) {
        // A settled cluster: every node agrees on the owners.
        let settled = as_current(&elect(&members, &groups, &current, now));
        let heirs = heirs(&members, &groups, &settled);
        for owner in settled.values().collect::<BTreeSet<_>>() {
            let rest: Vec<Member> = members.iter().filter(|m| m.id != *owner).cloned().collect();
            let after = elect(&rest, &groups, &settled, now);
            for (group, was) in &settled {
                if was == owner {
                    prop_assert_eq!(heirs.get(group).map(String::as_str), owner_of(&after, group));
                    prop_assert_ne!(heirs.get(group), Some(owner));
                }
            }
        }
        prop_assert!(heirs.keys().all(|g| settled.contains_key(g)));
    }

    #[test]
    fn removing_a_node_moves_only_its_groups(
        ids in node_ids(1..=8),
        victim in any::<prop::sample::Index>(),
        group_count in 1..200usize,
    ) {
        let members: Vec<Member> = ids.iter().map(|id| member(id, 0)).collect();
        let groups = plain_groups(group_count);
        let before = elect(&members, &groups, &BTreeMap::new(), SETTLED);
        let victim = &ids[victim.index(ids.len())];
        let rest: Vec<Member> = members.iter().filter(|m| m.id != *victim).cloned().collect();
        let after = elect(&rest, &groups, &as_current(&before), SETTLED);
        for group in &groups {
            let was = owner_of(&before, &group.name);
            if was != Some(victim.as_str()) {
                prop_assert_eq!(owner_of(&after, &group.name), was);
            }
        }
    }

    #[test]
    fn adding_a_node_moves_about_one_nth_of_the_groups_all_to_it(
        ids in node_ids(2..=9),
    ) {
        const GROUPS: usize = 1000;
        let (newcomer, old) = ids.split_last().unwrap();
        let groups = plain_groups(GROUPS);
        let old_members: Vec<Member> = old.iter().map(|id| member(id, 0)).collect();
        let before = elect(&old_members, &groups, &BTreeMap::new(), SETTLED);
        let joined_at = SETTLED;
        let mut members = old_members.clone();
        members.push(member(newcomer, joined_at));
        let matures = joined_at + DELAY.as_millis() as u64;

        // Until its preempt delay has passed, the newcomer takes nothing.
        let waiting = elect(&members, &groups, &as_current(&before), matures - 1);
        prop_assert_eq!(&waiting.owners, &before.owners);
        prop_assert_eq!(waiting.recheck_at_ms, Some(matures));

        let after = elect(&members, &groups, &as_current(&before), matures);
        let moved: Vec<&String> = groups
            .iter()
            .map(|g| &g.name)
            .filter(|g| after.owners[*g] != before.owners[*g])
            .collect();
        for group in &moved {
            prop_assert_eq!(owner_of(&after, group), Some(newcomer.as_str()));
        }
        // Binomial(1000, 1/n): the bounds are over five standard deviations away.
        let expected = GROUPS / ids.len();
        prop_assert!(
            moved.len() > expected / 2 && moved.len() < expected * 3 / 2,
            "{} of {} groups moved to node number {}", moved.len(), GROUPS, ids.len()
        );
        // And the settled result spreads evenly over all nodes.
        for id in &ids {
            let owned = after.owners.values().filter(|o| o.as_deref() == Some(id.as_str())).count();
            prop_assert!(owned > expected / 2 && owned < expected * 3 / 2, "{} owns {}", id, owned);
        }
    }
}
