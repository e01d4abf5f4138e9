//! The cluster runtime end to end: real `lvs-agent run` processes, one per network
//! namespace, on one bridge (192.0.2.0/24 and 2001:db8::/64, VIPs 198.51.100.x and
//! 2001:db8:100::10, no route out). State is read with `ip addr` in each namespace:
//! every VIP must end up on exactly one node, the one the election picks. Polls with
//! generous deadlines; asserts no timing. Needs root; fails without it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lvs_agent::ownership::{elect, GroupSpec, Member};
use support::bridge_lab::Lab;
use support::netns::poll;

const GROUPS: usize = 12;
const NET: &str = "198.51.100.";
const NET6: &str = "2001:db8:100:";
/// Far above the few seconds convergence takes, for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// g1 prefers lb1 and waits this long before taking it back.
const PREEMPT_DELAY_S: u32 = 2;

fn vip(group: usize) -> IpAddr {
    format!("{NET}{}", 10 + group).parse().unwrap()
}

/// g1: VRRPv2 with a password, preferred by lb1; the others VRRPv3, equal priorities.
fn cluster_toml() -> String {
    let mut text = String::from("[cluster]\nname = \"lab\"\n");
    for g in 1..=GROUPS {
        text += &format!(
            "\n[[vip_group]]\nname = \"g{g}\"\nvrrp_id = {}\naddresses = [\"{}/24\"]\ngarp_master_delay = 0\n",
            10 + g,
            vip(g)
        );
        if g == 1 {
            text += &format!(
                "priorities = {{ lb1 = 150 }}\npreempt_delay = {PREEMPT_DELAY_S}\n\
                 authentication = {{ type = \"pass\", password = \"secret\" }}\n"
            );
        } else {
            text += "version = 3\nadvert_int = 0.2\n";
        }
    }
    text
}

fn node_toml(lab: &Lab, i: usize, peers: &[usize]) -> String {
    let join: Vec<String> = peers
        .iter()
        .map(|j| format!("\"192.0.2.{j}:7946\""))
        .collect();
    format!(
        "[node]\nid = \"lb{i}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\nsyncid = {i}\n\
         join = [{}]\ncluster_key_files = [\"{}\"]\ngossip_probe_period = 0.2\n\
         control_socket = \"{}\"\nreconcile_interval = 1\n",
        join.join(", "),
        lab.dir.join("cluster.key").display(),
        lab.socket(i).display()
    )
}

struct Files {
    cluster: PathBuf,
    nodes: BTreeMap<usize, PathBuf>,
}

/// Writes the key, the cluster part and node parts for nodes `1..=n`, each joining all
/// the others.
fn files(lab: &Lab, n: usize, cluster: &str) -> Files {
    lab.write_key("cluster.key", &"2a".repeat(32));
    let cluster = lab.write("cluster.toml", cluster);
    let nodes = (1..=n)
        .map(|i| {
            let peers: Vec<usize> = (1..=n).filter(|&j| j != i).collect();
            (
                i,
                lab.write(&format!("lb{i}.toml"), &node_toml(lab, i, &peers)),
            )
        })
        .collect();
    Files { cluster, nodes }
}

/// Which node (1-based) the election gives each group when `nodes` are all up.
fn expected(nodes: &[usize]) -> Vec<BTreeSet<IpAddr>> {
    let members: Vec<Member> = nodes
        .iter()
        .map(|i| Member {
            id: format!("lb{i}"),
            drained: false,
            eligible_since_ms: 0,
            pins: Default::default(),
        })
        .collect();
    let specs: Vec<GroupSpec> = (1..=GROUPS)
        .map(|g| GroupSpec {
            name: format!("g{g}"),
            priorities: if g == 1 {
                BTreeMap::from([("lb1".to_owned(), 150)])
            } else {
                BTreeMap::new()
            },
            default_priority: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
        })
        .collect();
    let election = elect(&members, &specs, &BTreeMap::new(), u64::MAX / 2);
    let max = nodes.iter().copied().max().unwrap_or(0);
    let mut layout = vec![BTreeSet::new(); max];
    for g in 1..=GROUPS {
        let owner = election.owners[&format!("g{g}")].clone().unwrap();
        let i: usize = owner.trim_start_matches("lb").parse().unwrap();
        layout[i - 1].insert(vip(g));
    }
    layout
}

/// The VIPs on each node's eth0, in node order (only `nodes` are read; others empty).
fn layout(lab: &Lab, nodes: &[usize]) -> Vec<BTreeSet<IpAddr>> {
    (1..=lab.nodes())
        .map(|i| {
            if nodes.contains(&i) {
                lab.addrs_in(i, NET)
            } else {
                BTreeSet::new()
            }
        })
        .collect()
}

fn every_vip_exactly_once(layout: &[BTreeSet<IpAddr>]) -> bool {
    let mut count: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for vip in layout.iter().flatten() {
        *count.entry(*vip).or_default() += 1;
    }
    count.len() == GROUPS && count.values().all(|&c| c == 1)
}

fn pad(mut layout: Vec<BTreeSet<IpAddr>>, len: usize) -> Vec<BTreeSet<IpAddr>> {
    layout.resize(len, BTreeSet::new());
    layout
}

/// A VRRPv3 group of one address (IPv6 adverts go out from the link-local address).
fn group_toml(name: &str, vrid: u8, address: &str) -> String {
    format!(
        "\n[[vip_group]]\nname = \"{name}\"\nvrrp_id = {vrid}\nversion = 3\nadvert_int = 0.2\n\
         addresses = [\"{address}\"]\ngarp_master_delay = 0\n"
    )
}

/// `group NAME owner ID held|not-held foreign ADDR|-` from `lvs-agent status`.
fn group_line(status: &str, group: &str) -> Option<String> {
    let prefix = format!("group {group} ");
    status
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_owned)
}

/// The nodes among `nodes` with an address of `net`.
fn holders(lab: &Lab, nodes: &[usize], net: &str) -> Vec<usize> {
    nodes
        .iter()
        .copied()
        .filter(|&i| !lab.addrs_in(i, net).is_empty())
        .collect()
}

/// The one node holding `group`'s addresses (of `net`) when every node in `nodes` names
/// it as owner and none sees a foreign VRRP master.
fn sole_owner(lab: &Lab, nodes: &[usize], group: &str, net: &str) -> Option<usize> {
    let [holder] = holders(lab, nodes, net)[..] else {
        return None;
    };
    let owner = format!("owner lb{holder} ");
    nodes
        .iter()
        .all(|&i| {
            group_line(&lab.status(i), group)
                .is_some_and(|l| l.contains(&owner) && l.ends_with(" foreign -"))
        })
        .then_some(holder)
}

fn statuses(lab: &Lab, nodes: &[usize]) -> String {
    nodes.iter().map(|&i| lab.status(i)).collect()
}

/// Waits until the nodes in `nodes` hold exactly the election's layout.
fn converge(lab: &Lab, nodes: &[usize], what: &str) {
    let want = pad(expected(nodes), lab.nodes());
    let reached = poll(DEADLINE, || (layout(lab, nodes) == want).then_some(()));
    assert!(
        reached.is_some(),
        "{what}: wanted {want:?}, have {:?}\n{}",
        layout(lab, nodes),
        lab.logs()
    );
}

#[test]
fn three_agents_converge_fail_over_and_take_back() {
    let mut lab = Lab::new("three", 3);
    let f = files(&lab, 3, &cluster_toml());
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    converge(&lab, &[1, 2, 3], "3 agents at start");

    // lb2 learns g1's holder from its adverts or once the preempt delay has passed.
    let status = poll(DEADLINE, || {
        let text = lab.status(2);
        text.contains("group g1 owner lb1 not-held").then_some(text)
    });
    let Some(text) = status else {
        panic!("lb2 names lb1 as g1's owner: {}", lab.status(2));
    };
    assert_eq!(text.matches(" live").count(), 3, "{text}");

    // A crash leaves lb1's VIPs on its interface; the survivors take its groups.
    lab.kill(1);
    let moved = poll(DEADLINE, || {
        let l = layout(&lab, &[2, 3]);
        every_vip_exactly_once(&l).then_some(l)
    });
    assert!(
        moved.is_some(),
        "after killing lb1: {:?}\n{}",
        layout(&lab, &[2, 3]),
        lab.logs()
    );
    assert_eq!(moved.unwrap(), pad(expected(&[2, 3]), 3));

    // Restarted, it first removes the stale VIPs, then g1 comes back after the delay.
    lab.start(1, &f.nodes[&1], &f.cluster);
    converge(&lab, &[1, 2, 3], "lb1 restarted");
}

#[test]
fn five_agents_converge_and_a_joined_sixth_takes_its_share() {
    let mut lab = Lab::new("join", 5);
    let f = files(&lab, 5, &cluster_toml());
    for i in 1..=5 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    converge(&lab, &[1, 2, 3, 4, 5], "5 agents");

    // lb6 knows no peer: it starts as a VRRP backup, hears the running cluster's
    // adverts during its Master_Down_Interval (3.6 s for g1) and takes nothing.
    let six = lab.add_node();
    let node6 = lab.write("lb6.toml", &node_toml(&lab, six, &[]));
    lab.start(six, &node6, &f.cluster);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        lab.addrs_in(six, NET).is_empty(),
        "lb6 without join took {:?}\n{}",
        lab.addrs_in(six, NET),
        lab.logs()
    );
    let socket = lab.socket(six);
    let joined = lab.agent_cli(&[
        "join",
        "--socket",
        socket.to_str().unwrap(),
        "192.0.2.1:7946",
    ]);
    assert!(joined.status.success(), "lvs-agent join: {joined:?}");
    let said = String::from_utf8_lossy(&joined.stdout);
    assert_eq!(
        said, "answered lb1 192.0.2.1:7946\n",
        "join names who answered"
    );
    converge(&lab, &[1, 2, 3, 4, 5, 6], "lb6 joined");
    // Nobody at that address: the join says so and fails.
    let silent = lab.agent_cli(&[
        "join",
        "--socket",
        socket.to_str().unwrap(),
        "192.0.2.99:7946",
    ]);
    let err = String::from_utf8_lossy(&silent.stderr);
    assert!(
        !silent.status.success() && err.contains("no peer answered: 192.0.2.99:7946"),
        "a join nobody answers: {silent:?}"
    );
    assert!(
        !expected(&[1, 2, 3, 4, 5, 6])[5].is_empty(),
        "lb6 should own some group"
    );
}

#[test]
fn a_partition_heals_to_one_owner_per_group() {
    let mut lab = Lab::new("split", 3);
    let f = files(&lab, 3, &cluster_toml());
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    converge(&lab, &[1, 2, 3], "3 agents at start");

    // lb3 hears nothing and is heard by no one: each side serves every group.
    lab.nft(
        3,
        "add table inet cut; \
         add chain inet cut in { type filter hook input priority 0; policy drop; }; \
         add chain inet cut out { type filter hook output priority 0; policy drop; }",
    );
    let split = poll(DEADLINE, || {
        let majority = layout(&lab, &[1, 2]);
        (every_vip_exactly_once(&majority) && lab.addrs_in(3, NET).len() == GROUPS).then_some(())
    });
    assert!(
        split.is_some(),
        "partitioned: {:?}\n{}",
        layout(&lab, &[1, 2, 3]),
        lab.logs()
    );

    lab.nft(3, "delete table inet cut");
    converge(&lab, &[1, 2, 3], "healed");
    // No flapping afterwards.
    let want = expected(&[1, 2, 3]);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            layout(&lab, &[1, 2, 3]),
            want,
            "after the heal\n{}",
            lab.logs()
        );
    }
}

#[test]
fn an_ipv6_group_has_one_holder_and_agents_are_no_foreign_masters() {
    let mut lab = Lab::new("six", 3);
    let cluster = format!(
        "[cluster]\nname = \"lab6\"\n{}",
        group_toml("v6", 60, "2001:db8:100::10/64")
    );
    let f = files(&lab, 3, &cluster);
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    // The backups hear the owner's adverts from its link-local address: known from
    // gossip, they are an agent's, never a foreign master's.
    let all = [1, 2, 3];
    let owner = poll(DEADLINE, || sole_owner(&lab, &all, "v6", NET6));
    let Some(owner) = owner else {
        panic!(
            "one IPv6 owner: holders {:?}\n{}\n{}",
            holders(&lab, &all, NET6),
            statuses(&lab, &all),
            lab.logs()
        );
    };
    let status = lab.status(owner);
    assert!(
        group_line(&status, "v6").is_some_and(|l| l.contains(" held ")),
        "{status}"
    );

    // The crashed owner keeps its VIP on its interface; one survivor takes the group.
    lab.kill(owner);
    let survivors: Vec<usize> = all.into_iter().filter(|&i| i != owner).collect();
    let next = poll(DEADLINE, || sole_owner(&lab, &survivors, "v6", NET6));
    assert!(
        next.is_some(),
        "after killing lb{owner}: holders {:?}\n{}\n{}",
        holders(&lab, &survivors, NET6),
        statuses(&lab, &survivors),
        lab.logs()
    );
    // And it stays so.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            sole_owner(&lab, &survivors, "v6", NET6),
            next,
            "{}\n{}",
            statuses(&lab, &survivors),
            lab.logs()
        );
    }
}

#[test]
fn an_owner_losing_its_uplink_releases_and_rejoins() {
    let mut lab = Lab::new("uplink", 3);
    let f = files(&lab, 3, &cluster_toml());
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    converge(&lab, &[1, 2, 3], "3 agents at start");
    assert!(!expected(&[1, 2, 3])[0].is_empty(), "lb1 owns g1 at least");

    // Cut off, lb1 gives its groups up; the others see it unreachable and take them.
    lab.set_link(1, false);
    let moved = poll(DEADLINE, || {
        let gone = [2, 3]
            .iter()
            .all(|&i| lab.status(i).contains("member lb1 192.0.2.1:7946 down"));
        (gone && lab.addrs_in(1, NET).is_empty() && every_vip_exactly_once(&layout(&lab, &[2, 3])))
            .then_some(())
    });
    assert!(
        moved.is_some(),
        "lb1's uplink down: {:?}\n{}\n{}",
        layout(&lab, &[1, 2, 3]),
        statuses(&lab, &[2, 3]),
        lab.logs()
    );
    assert!(
        lab.log_text(1).contains("released: VIPs removed"),
        "{}",
        lab.logs()
    );

    lab.set_link(1, true);
    converge(&lab, &[1, 2, 3], "lb1's uplink back");
    let want = expected(&[1, 2, 3]);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            layout(&lab, &[1, 2, 3]),
            want,
            "after the uplink came back\n{}",
            lab.logs()
        );
    }
}

#[test]
fn sighup_adds_a_group_and_a_broken_file_is_rejected() {
    let mut lab = Lab::new("hup", 3);
    let f = files(&lab, 3, &cluster_toml());
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    let all = [1, 2, 3];
    converge(&lab, &all, "3 agents at start");

    let extra = vip(GROUPS + 1);
    let with_extra = format!(
        "{}{}",
        cluster_toml(),
        group_toml("extra", 60, &format!("{extra}/24"))
    );
    lab.write("cluster.toml", &with_extra);
    all.iter().for_each(|&i| lab.signal(i, "HUP"));
    let want = expected(&all);
    let added = poll(DEADLINE, || {
        let mut now = layout(&lab, &all);
        let holders: Vec<usize> = all
            .into_iter()
            .filter(|&i| now[i - 1].contains(&extra))
            .collect();
        let [holder] = holders[..] else {
            return None;
        };
        now[holder - 1].remove(&extra);
        let owner = format!("owner lb{holder} ");
        let agreed = all
            .iter()
            .all(|&i| group_line(&lab.status(i), "extra").is_some_and(|l| l.contains(&owner)));
        (agreed && now == want).then_some(())
    });
    assert!(
        added.is_some(),
        "reloaded with a new group: {:?}\n{}\n{}",
        layout(&lab, &all),
        statuses(&lab, &all),
        lab.logs()
    );

    // vrrp_id 0 is invalid: every agent keeps the running config and its VIPs.
    let before = layout(&lab, &all);
    lab.write(
        "cluster.toml",
        &format!(
            "{with_extra}{}",
            group_toml("broken", 0, "198.51.100.99/24")
        ),
    );
    all.iter().for_each(|&i| lab.signal(i, "HUP"));
    let rejected = poll(DEADLINE, || {
        all.iter()
            .all(|&i| lab.log_text(i).contains("reload rejected"))
            .then_some(())
    });
    assert!(rejected.is_some(), "broken reload\n{}", lab.logs());
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(all.iter().all(|&i| lab.running(i)), "{}", lab.logs());
        assert_eq!(
            layout(&lab, &all),
            before,
            "after the broken reload\n{}",
            lab.logs()
        );
    }
    assert!(statuses(&lab, &all).contains("group extra owner"));
}

/// One group at default gossip timers (1 s probe period): lb1 owns it, lb2 is its heir.
fn heir_files(lab: &Lab) -> Files {
    let mut f = files(
        lab,
        3,
        "[cluster]\nname = \"lab\"\n\n[[vip_group]]\nname = \"hb\"\nvrrp_id = 60\n\
         addresses = [\"198.51.100.60/24\"]\ngarp_master_delay = 0\n\
         priorities = { lb1 = 150, lb2 = 100, lb3 = 50 }\n",
    );
    for (i, path) in &mut f.nodes {
        let peers: Vec<usize> = (1..=3).filter(|j| j != i).collect();
        let text = node_toml(lab, *i, &peers).replace("gossip_probe_period = 0.2\n", "");
        *path = lab.write(&format!("lb{i}.toml"), &text);
    }
    f
}

fn start_heir_lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag, 3);
    let f = heir_files(&lab);
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    let owner = poll(DEADLINE, || {
        sole_owner(&lab, &[1, 2, 3], "hb", NET).filter(|&o| o == 1)
    });
    assert!(owner.is_some(), "lb1 owns hb: {}", lab.logs());
    // lb2 hears lb1's heartbeats well before this.
    std::thread::sleep(Duration::from_secs(1));
    lab
}

/// Index of the first line of `log` containing every one of `words`.
fn line_of(log: &str, words: &[&str]) -> Option<usize> {
    log.lines()
        .position(|l| words.iter().all(|w| l.contains(w)))
}

#[test]
fn the_heir_takes_over_on_heartbeat_silence_before_swim_declares_the_owner_down() {
    let mut lab = start_heir_lab("heir");
    lab.kill(1);
    let down = poll(DEADLINE, || {
        let log = lab.log_text(2);
        line_of(&log, &["member down: lb1 at"]).map(|at| (log, at))
    });
    let Some((log, swim_down)) = down else {
        panic!("SWIM declares lb1 down on lb2\n{}", lab.logs());
    };
    let silence = line_of(&log, &["heartbeat silence", "lb1"]);
    let acquired = line_of(&log, &["acquired", "hb"]);
    assert!(
        silence.is_some_and(|s| acquired.is_some_and(|a| s < a && a < swim_down)),
        "lb2 takes hb on heartbeat silence, before SWIM's verdict\n{log}"
    );
    let held = poll(DEADLINE, || sole_owner(&lab, &[2, 3], "hb", NET));
    assert_eq!(held, Some(2), "{}", lab.logs());
}

#[test]
fn lost_heartbeats_from_a_live_owner_settle_on_one_holder_without_flapping() {
    let lab = start_heir_lab("hblost");
    // lb1's gossip to lb2 (heartbeats included) is lost; its VRRP adverts are not.
    lab.nft(
        1,
        "add table inet hb; \
         add chain inet hb out { type filter hook output priority 0; }; \
         add rule inet hb out ip daddr 192.0.2.2 udp dport 7946 drop",
    );
    let presumed = poll(DEADLINE, || {
        let log = lab.log_text(2);
        let silence = line_of(&log, &["heartbeat silence", "lb1"])?;
        let refuted = line_of(&log, &["still advertises", "lb1"])?;
        (silence < refuted).then_some(())
    });
    assert!(
        presumed.is_some(),
        "lb2 presumes lb1 down, then sees its adverts\n{}",
        lab.logs()
    );
    let settled = poll(DEADLINE, || {
        (holders(&lab, &[1, 2, 3], NET) == [1]).then_some(())
    });
    assert!(settled.is_some(), "lb1 alone holds hb\n{}", lab.logs());

    std::thread::sleep(Duration::from_secs(3));
    lab.nft(1, "delete table inet hb");
    let healed = poll(DEADLINE, || sole_owner(&lab, &[1, 2, 3], "hb", NET));
    assert_eq!(healed, Some(1), "{}", lab.logs());
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            holders(&lab, &[1, 2, 3], NET),
            [1],
            "after the heal\n{}",
            lab.logs()
        );
    }
}
