//! The cluster runtime end to end: real `lvs-agent run` processes, one per network
//! namespace, on one bridge (192.0.2.0/24, VIPs 198.51.100.x, no route out). State is
//! read with `ip addr` in each namespace: every VIP must end up on exactly one node,
//! the one the election picks. Polls with generous deadlines; asserts no timing.
//! Needs root; skipped (with a message) otherwise.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lvs_agent::ownership::{elect, GroupSpec, Member};
use support::bridge_lab::{wait_for, Lab};

const GROUPS: usize = 12;
const NET: &str = "198.51.100.";
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
fn files(lab: &Lab, n: usize) -> Files {
    lab.write("cluster.key", &"2a".repeat(32));
    let cluster = lab.write("cluster.toml", &cluster_toml());
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

/// Waits until the nodes in `nodes` hold exactly the election's layout.
fn converge(lab: &Lab, nodes: &[usize], what: &str) {
    let want = pad(expected(nodes), lab.nodes());
    let reached = wait_for(DEADLINE, || (layout(lab, nodes) == want).then_some(()));
    assert!(
        reached.is_some(),
        "{what}: wanted {want:?}, have {:?}\n{}",
        layout(lab, nodes),
        lab.logs()
    );
}

#[test]
fn three_agents_converge_fail_over_and_take_back() {
    let Some(mut lab) = Lab::new("three", 3) else {
        return;
    };
    let f = files(&lab, 3);
    for i in 1..=3 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    converge(&lab, &[1, 2, 3], "3 agents at start");

    let status = lab.agent_cli(&["status", "--socket", lab.socket(2).to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "status: {status:?}");
    assert!(text.contains("group g1 owner lb1 not-held"), "{text}");
    assert_eq!(text.matches(" live").count(), 3, "{text}");

    // A crash leaves lb1's VIPs on its interface; the survivors take its groups.
    lab.kill(1);
    let moved = wait_for(DEADLINE, || {
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
    let Some(mut lab) = Lab::new("join", 5) else {
        return;
    };
    let f = files(&lab, 5);
    for i in 1..=5 {
        lab.start(i, &f.nodes[&i], &f.cluster);
    }
    converge(&lab, &[1, 2, 3, 4, 5], "5 agents");

    // lb6 knows no peer: alone it holds everything until told to join.
    let six = lab.add_node();
    let node6 = lab.write("lb6.toml", &node_toml(&lab, six, &[]));
    lab.start(six, &node6, &f.cluster);
    let alone = wait_for(DEADLINE, || {
        (lab.addrs_in(six, NET).len() == GROUPS).then_some(())
    });
    assert!(
        alone.is_some(),
        "lb6 alone: {:?}\n{}",
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
    converge(&lab, &[1, 2, 3, 4, 5, 6], "lb6 joined");
    assert!(
        !expected(&[1, 2, 3, 4, 5, 6])[5].is_empty(),
        "lb6 should own some group"
    );
}

#[test]
fn a_partition_heals_to_one_owner_per_group() {
    let Some(mut lab) = Lab::new("split", 3) else {
        return;
    };
    let f = files(&lab, 3);
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
    let split = wait_for(DEADLINE, || {
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
