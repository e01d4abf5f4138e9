//! The fault matrix (issue 7): real `lvs-agent run` processes in network namespaces
//! on one bridge (192.0.2.0/24, VIPs 198.51.100.x, no route out), one fault per test.
//! Each test waits for the cluster to settle, starts a [`Recorder`] (every director's
//! address changes from one `ip monitor all-nsid`, gratuitous ARPs on the bridge),
//! applies the fault, observes for a bounded time and asserts the issue's bounds on
//! what was recorded: the longest time with two holders of a VIP, the longest time
//! with none, holder changes, GARP senders. Every test prints one parseable line first:
//!
//! `faults: agent SCENARIO two_holders_ms=N no_holder_ms=N changes=N [more=..]`
//!
//! (the worst VIP's figures, milliseconds rounded up to a tenth; changes summed over
//! the VIPs). "Never two holders" is asserted exactly: the recorder reads every
//! director's changes from one kernel queue, in the order they were made.
//! `deploy/bench/faults` collects these lines and the keepalived ones into one table.
//!
//! The `keepalived_*` tests run Debian's keepalived through the same scenarios where
//! they apply and assert nothing about its figures (they are the baseline: keepalived
//! has no gossip, so e.g. blocked VRRP gives two masters). They are `#[ignore]`d to
//! keep `cargo test` short; the bench script runs them with `--include-ignored`.
//!
//! Groups: `s*` are VRRPv2 at advert_int 1 s, `f*` VRRPv3 at 0.2 s; a bound of
//! "3 × advert_int" is VRRP's master-down interval, what a keepalived backup waits
//! before taking over. Agents use `gossip_probe_period = 0.2` (SWIM declares a silent
//! node down after about 1 s). Needs root, nft, tcpdump (and keepalived for the
//! keepalived tests); fails without them.
//!
//! Run: `cargo test -p lvs-agent --test faults -- --nocapture` (as root).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lvs_agent::vrrp::{encode, Advert, Auth, Version, MCAST_V4};
use lvs_tests::holders::{
    analyse, fmt_ms, parse_addr_line, parse_garp_line, parse_link_line, parse_link_names,
    split_nsid, split_stamp, AddrEvent, Garp, Recorder,
};
use nix::sched::CloneFlags;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use support::bridge_lab::Lab;
use support::keepalived_lab as ka;
use support::netns::{poll, require_program};

/// Far above the few seconds settling takes, for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// A layout counts as settled once it has not changed for this long: above the 1 s
/// advert interval, so a pending VRRP takeover would have shown.
const STABLE: Duration = Duration::from_secs(3);
/// A planned move (SIGTERM, join): the old holder removes the address, sends a
/// priority-0 advert, the next holder adds it. The issue's bound on the gap.
const MOVE_GAP: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Cluster configuration

#[derive(Clone)]
struct Group {
    name: &'static str,
    vrid: u8,
    /// Last octet of the VIP in 198.51.100.0/24.
    host: u8,
    /// VRRPv3 at 0.2 s, or VRRPv2 at 1 s.
    fast: bool,
    /// TOML inline table of priorities, or "" for the default (100 everywhere).
    priorities: &'static str,
}

impl Group {
    fn vip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, self.host))
    }

    fn advert_int(&self) -> Duration {
        if self.fast {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        }
    }

    fn toml(&self) -> String {
        let timers = if self.fast {
            "version = 3\nadvert_int = 0.2\n"
        } else {
            "advert_int = 1\n"
        };
        let priorities = if self.priorities.is_empty() {
            String::new()
        } else {
            format!("priorities = {}\n", self.priorities)
        };
        format!(
            "\n[[vip_group]]\nname = \"{}\"\nvrrp_id = {}\naddresses = [\"{}/24\"]\n\
             garp_master_delay = 0\n{timers}{priorities}",
            self.name,
            self.vrid,
            self.vip()
        )
    }
}

const fn group(name: &'static str, vrid: u8, host: u8, fast: bool) -> Group {
    Group {
        name,
        vrid,
        host,
        fast,
        priorities: "",
    }
}

/// Two groups of each speed, equal priorities: rendezvous hashing spreads them.
fn groups() -> Vec<Group> {
    vec![
        group("s1", 11, 11, false),
        group("s2", 12, 12, false),
        group("f1", 13, 13, true),
        group("f2", 14, 14, true),
    ]
}

fn cluster_toml(extra: &str, groups: &[Group]) -> String {
    let mut text = format!("[cluster]\nname = \"faults\"\n{extra}");
    for g in groups {
        text += &g.toml();
    }
    text
}

fn mac(i: usize) -> String {
    format!("02:00:00:00:00:{i:02x}")
}

fn label(i: usize) -> String {
    format!("lb{i}")
}

/// A node part: node id `id` in namespace `i` (192.0.2.i), joining `join`.
fn node_toml(lab: &Lab, i: usize, id: &str, join: &[usize], key: &str) -> String {
    let join: Vec<String> = join
        .iter()
        .map(|j| format!("\"192.0.2.{j}:7946\""))
        .collect();
    format!(
        "[node]\nid = \"{id}\"\ninterface = \"eth0\"\naddress = \"192.0.2.{i}\"\nsyncid = {i}\n\
         join = [{}]\ncluster_key_files = [\"{}\"]\ngossip_probe_period = 0.2\n\
         control_socket = \"{}\"\nreconcile_interval = 1\n",
        join.join(", "),
        lab.dir.join(key).display(),
        lab.socket(i).display()
    )
}

/// A lab of `n` agents (lb1..lbn, each joining all the others) on one cluster file,
/// with the others' keys written; agents not started.
struct Cluster {
    lab: Lab,
    cluster: PathBuf,
    nodes: BTreeMap<usize, PathBuf>,
    groups: Vec<Group>,
}

impl Cluster {
    fn new(tag: &str, n: usize, extra: &str, groups: Vec<Group>) -> Cluster {
        require_program("nft");
        require_program("tcpdump");
        let lab = Lab::new(tag, n);
        lab.write_key("cluster.key", &"2a".repeat(32));
        lab.write_key("wrong.key", &"5c".repeat(32));
        let cluster = lab.write("cluster.toml", &cluster_toml(extra, &groups));
        let nodes = (1..=n)
            .map(|i| {
                let peers: Vec<usize> = (1..=n).filter(|&j| j != i).collect();
                let text = node_toml(&lab, i, &label(i), &peers, "cluster.key");
                (i, lab.write(&format!("lb{i}.toml"), &text))
            })
            .collect();
        Cluster {
            lab,
            cluster,
            nodes,
            groups,
        }
    }

    fn start(&mut self, i: usize) {
        let node = self.nodes[&i].clone();
        self.lab.start(i, &node, &self.cluster);
    }

    fn start_all(&mut self) {
        for i in 1..=self.lab.nodes() {
            self.start(i);
        }
    }

    fn vips(&self) -> Vec<IpAddr> {
        self.groups.iter().map(Group::vip).collect()
    }

    /// Records every node of the lab (including nodes added later only if they exist
    /// now: add them first).
    fn recorder(&self) -> Recorder {
        let directors: Vec<(String, String)> = (1..=self.lab.nodes())
            .map(|i| (label(i), self.lab.ns(i)))
            .collect();
        Recorder::start(&directors, "eth0", &self.lab.bridge_ns())
    }

    /// VIP → the nodes among `nodes` holding it.
    fn layout(&self, nodes: &[usize]) -> BTreeMap<IpAddr, Vec<usize>> {
        let on: BTreeMap<usize, BTreeSet<IpAddr>> = nodes
            .iter()
            .map(|&i| (i, self.lab.addrs_in(i, "198.51.100.")))
            .collect();
        self.vips()
            .into_iter()
            .map(|v| {
                let holders = nodes.iter().copied().filter(|i| on[i].contains(&v));
                (v, holders.collect())
            })
            .collect()
    }

    /// Waits until every VIP has exactly one holder among `nodes`, each of `nodes`
    /// sees `members` live members (when given), and the layout has not changed for
    /// [`STABLE`]. Returns VIP → holder.
    fn settle(
        &self,
        nodes: &[usize],
        members: Option<usize>,
        what: &str,
    ) -> BTreeMap<IpAddr, usize> {
        let deadline = Instant::now() + DEADLINE;
        let mut last: Option<(BTreeMap<IpAddr, Vec<usize>>, Instant)> = None;
        loop {
            let now = self.layout(nodes);
            let one_each = now.values().all(|h| h.len() == 1);
            let agreed = members.is_none_or(|m| {
                nodes.iter().all(|&i| {
                    let status = self.lab.status(i);
                    status
                        .lines()
                        .filter(|l| l.starts_with("member ") && l.contains(" live"))
                        .count()
                        == m
                })
            });
            match &last {
                Some((prev, since)) if *prev == now && one_each && agreed => {
                    if since.elapsed() >= STABLE {
                        return now.into_iter().map(|(v, h)| (v, h[0])).collect();
                    }
                }
                _ => last = Some((now.clone(), Instant::now())),
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no settled layout (one holder per VIP, {members:?} live members) \
                 within {DEADLINE:?}: {now:?}\n{}",
                self.lab.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn advert_int(&self, vip: IpAddr) -> Duration {
        self.groups
            .iter()
            .find(|g| g.vip() == vip)
            .expect("a VIP of the cluster")
            .advert_int()
    }
}

// ---------------------------------------------------------------------------
// Figures

/// Per-VIP summaries of one scenario.
type Figures = Vec<(IpAddr, lvs_tests::holders::Summary)>;

fn measure(
    rec: &Recorder,
    vips: &[IpAddr],
    nodes: Option<&[&str]>,
    from: Duration,
    to: Duration,
) -> Figures {
    vips.iter()
        .map(|&v| (v, rec.analyse(v, nodes, from, to)))
        .collect()
}

/// Prints the scenario's line (worst VIP, changes summed) and returns it.
fn report(daemon: &str, scenario: &str, figures: &Figures, extra: &str) -> String {
    let two = figures
        .iter()
        .map(|(_, s)| s.two_holders)
        .max()
        .unwrap_or_default();
    let none = figures
        .iter()
        .map(|(_, s)| s.no_holder)
        .max()
        .unwrap_or_default();
    let changes: usize = figures.iter().map(|(_, s)| s.changes).sum();
    let line = format!(
        "faults: {daemon} {scenario} two_holders_ms={} no_holder_ms={} changes={changes}{extra}",
        fmt_ms(two),
        fmt_ms(none)
    );
    eprintln!("{line}");
    for (vip, s) in figures {
        let steps: Vec<String> = s
            .timeline
            .iter()
            .map(|(at, h)| format!("{}ms:{h:?}", at.as_millis()))
            .collect();
        eprintln!(
            "faults-detail: {daemon} {scenario} {vip} {} garps={:?} timeline={}",
            s.figures(),
            s.garps,
            steps.join(" ")
        );
    }
    line
}

/// Everything a failed assertion should show.
fn context(figures: &Figures, lab_logs: &str) -> String {
    format!("{figures:#?}\n{lab_logs}")
}

// ---------------------------------------------------------------------------
// Faults

/// Drops gossip (UDP 7946) between node `i` and 192.0.2.`peer`, both directions.
fn block_gossip(lab: &Lab, i: usize, peer: usize) {
    lab.nft(
        i,
        &format!(
            "add table inet gossip; \
             add chain inet gossip in {{ type filter hook input priority 0; }}; \
             add chain inet gossip out {{ type filter hook output priority 0; }}; \
             add rule inet gossip in ip saddr 192.0.2.{peer} udp dport 7946 drop; \
             add rule inet gossip out ip daddr 192.0.2.{peer} udp dport 7946 drop"
        ),
    );
}

/// Drops VRRP (IP protocol 112) in and out.
const BLOCK_VRRP: &str = "add table inet vrrp; \
     add chain inet vrrp in { type filter hook input priority 0; }; \
     add chain inet vrrp out { type filter hook output priority 0; }; \
     add rule inet vrrp in meta l4proto 112 drop; \
     add rule inet vrrp out meta l4proto 112 drop";

/// Drops everything in and out: the node is cut off.
const CUT: &str = "add table inet cut; \
     add chain inet cut in { type filter hook input priority 0; policy drop; }; \
     add chain inet cut out { type filter hook output priority 0; policy drop; }";

const HEAL: &str = "delete table inet cut";

// ---------------------------------------------------------------------------
// Gossip blocked: VRRP still flows, so the two holders a membership split causes
// must end within VRRP's master-down interval.

fn gossip_blocked(tag: &str, n: usize) {
    let mut c = Cluster::new(tag, n, "", groups());
    c.start_all();
    let all: Vec<usize> = (1..=n).collect();
    c.settle(&all, Some(n), "before blocking gossip");
    let rec = c.recorder();
    let from = rec.now();
    block_gossip(&c.lab, 1, 2);
    // Detection (about 1 s at a 0.2 s probe period) + 3 s of two holders at most +
    // the 10 s of one holder the issue asks for, with 2 s to spare.
    let observe = Duration::from_secs(16);
    std::thread::sleep(observe);
    let to = rec.now();
    let figures = measure(&rec, &c.vips(), None, from, to);
    report("agent", &format!("gossip-blocked-{n}"), &figures, "");
    let why = context(&figures, &c.lab.logs());
    for (vip, s) in &figures {
        let bound = 3 * c.advert_int(*vip);
        assert!(
            s.two_holders <= bound,
            "{vip}: two holders for {:?} > {bound:?}\n{why}",
            s.two_holders
        );
        let since = s.one_holder_since.unwrap_or(to);
        assert!(
            to.saturating_sub(since) >= Duration::from_secs(10),
            "{vip}: exactly one holder only for the last {:?} of the window\n{why}",
            to.saturating_sub(since)
        );
    }
}

#[test]
fn gossip_blocked_between_two_agents() {
    gossip_blocked("gb2", 2);
}

#[test]
fn gossip_blocked_between_two_of_three_agents() {
    gossip_blocked("gb3", 3);
}

// ---------------------------------------------------------------------------
// VRRP blocked: gossip alone keeps one holder.

#[test]
fn vrrp_blocked_keeps_one_holder() {
    let mut c = Cluster::new("vb", 2, "", groups());
    c.start_all();
    c.settle(&[1, 2], Some(2), "before blocking VRRP");
    let rec = c.recorder();
    let from = rec.now();
    for i in 1..=2 {
        c.lab.nft(i, BLOCK_VRRP);
    }
    // 3 × the slowest advert_int (what a VRRP backup waits) + 5 s.
    std::thread::sleep(Duration::from_secs(8));
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", "vrrp-blocked", &figures, "");
    let why = context(&figures, &c.lab.logs());
    for (vip, s) in &figures {
        assert!(
            s.min_holders() == 1 && s.max_holders() == 1 && s.changes == 0,
            "{vip}: exactly one holder and no change with VRRP blocked\n{why}"
        );
    }
}

// ---------------------------------------------------------------------------
// A VIP interface deleted and created again (a driver reload, a VM NIC hot-plug):
// the agent opens the new one and takes its groups back cleanly.

#[test]
fn a_recreated_interface_is_followed() {
    let mut c = Cluster::new("rc", 2, "", groups());
    c.start_all();
    let before = c.settle(&[1, 2], Some(2), "before removing lb1's eth0");
    assert!(
        before.values().any(|&h| h == 1),
        "lb1 holds a share to give up: {before:?}"
    );
    let rec = c.recorder();
    c.lab.remove_link(1);
    c.settle(&[2], Some(1), "lb1's eth0 removed");
    // A new MAC, so a new IPv6 link-local: the agent publishes its new VRRP sources.
    let back = rec.now();
    c.lab.recreate_link(1, "02:00:00:00:01:01");
    let after = c.settle(&[1, 2], Some(2), "lb1's eth0 created again");
    let figures = measure(&rec, &c.vips(), None, back, rec.now());
    report("agent", "interface-recreated", &figures, "");
    let why = context(&figures, &c.lab.logs());
    assert_eq!(after, before, "lb1 took its groups back\n{why}");
    assert_clean_moves(&figures, &why);
}

// ---------------------------------------------------------------------------
// Full partition, then heal.

#[test]
fn partition_then_heal() {
    let mut c = Cluster::new("ph", 3, "", groups());
    c.start_all();
    c.settle(&[1, 2, 3], Some(3), "before the partition");
    let rec = c.recorder();
    c.lab.nft(3, CUT);
    let vips = c.vips();
    // Each side serves every group.
    let split = poll(DEADLINE, || {
        let majority = c.layout(&[1, 2]).values().all(|h| h.len() == 1);
        let minority = c.layout(&[3]).values().all(|h| h.len() == 1);
        (majority && minority).then(|| rec.now())
    });
    let Some(split) = split else {
        panic!(
            "partitioned: one holder per side: {:?}\n{}",
            c.layout(&[1, 2, 3]),
            c.lab.logs()
        );
    };
    std::thread::sleep(Duration::from_secs(4));
    let heal = rec.now();
    c.lab.nft(3, HEAL);
    std::thread::sleep(Duration::from_secs(8));
    let to = rec.now();
    let sides: [&[&str]; 2] = [&["lb1", "lb2"], &["lb3"]];
    let during: Vec<Figures> = sides
        .iter()
        .map(|side| measure(&rec, &vips, Some(side), split, heal))
        .collect();
    let after = measure(&rec, &vips, None, heal, to);
    let settled = after
        .iter()
        .map(|(_, s)| {
            s.one_holder_since
                .map_or(to - heal, |at| at.saturating_sub(heal))
        })
        .max()
        .unwrap_or_default();
    report(
        "agent",
        "partition-heal",
        &after,
        &format!(" one_holder_after_heal_ms={}", settled.as_millis()),
    );
    let why = format!("{during:#?}\n{}", context(&after, &c.lab.logs()));
    for side in &during {
        for (vip, s) in side {
            assert!(
                s.min_holders() == 1 && s.max_holders() == 1,
                "{vip}: one holder per side while partitioned\n{why}"
            );
        }
    }
    for (vip, s) in &after {
        let since = s.one_holder_since.map(|at| at.saturating_sub(heal));
        assert!(
            since.is_some_and(|d| d <= Duration::from_secs(3)),
            "{vip}: exactly one holder within 3 s of the heal, to the end: {since:?}\n{why}"
        );
    }
}

// ---------------------------------------------------------------------------
// Cluster part differs: lb1 reloads a changed priority, lb2 keeps the old file.

#[test]
fn cluster_part_differs_is_reported_and_never_gives_two_holders() {
    let mut c = Cluster::new("cd", 2, "", groups());
    // Each node reads its own copy of the cluster part.
    let text = cluster_toml("", &c.groups);
    let a = c.lab.write("cluster-lb1.toml", &text);
    c.cluster = a.clone();
    c.start(1);
    c.cluster = c.lab.write("cluster-lb2.toml", &text);
    c.start(2);
    let layout = c.settle(&[1, 2], Some(2), "before the reload");
    let rec = c.recorder();
    let from = rec.now();
    // lb1 now prefers itself for a group lb2 holds (or any group when lb1 holds all).
    let target = c
        .groups
        .iter()
        .position(|g| layout[&g.vip()] == 2)
        .unwrap_or(0);
    let mut changed = c.groups.clone();
    changed[target].priorities = "{ lb1 = 150 }";
    std::fs::write(&a, cluster_toml("", &changed)).expect("write lb1's cluster part");
    c.lab.signal(1, "HUP");
    let hup = Instant::now();
    let mut seen: BTreeMap<usize, Duration> = BTreeMap::new();
    let deadline = hup + Duration::from_secs(20);
    while seen.len() < 2 && Instant::now() < deadline {
        for (i, other) in [(1, "lb2"), (2, "lb1")] {
            if !seen.contains_key(&i)
                && c.lab
                    .status(i)
                    .lines()
                    .any(|l| l.starts_with("config differs:") && l.contains(other))
            {
                seen.insert(i, hup.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // At least 3 × the slowest advert_int after the reload, for a takeover to show.
    let rest = Duration::from_secs(5).saturating_sub(hup.elapsed());
    std::thread::sleep(rest);
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    let ms = |i| {
        seen.get(&i)
            .map_or("none".to_owned(), |d: &Duration| d.as_millis().to_string())
    };
    report(
        "agent",
        "config-differs",
        &figures,
        &format!(" differs_seen_ms=lb1:{},lb2:{}", ms(1), ms(2)),
    );
    let why = format!(
        "{}\n--- status lb1\n{}--- status lb2\n{}",
        context(&figures, &c.lab.logs()),
        c.lab.status(1),
        c.lab.status(2)
    );
    for (vip, s) in &figures {
        assert!(
            s.two_holders.is_zero(),
            "{vip}: two holders for {:?}\n{why}",
            s.two_holders
        );
    }
    assert_eq!(
        seen.len(),
        2,
        "both statuses name the other node in a `config differs:` line within 20 s \
         (the bound is 2 gossip probe periods, 0.4 s): seen {seen:?}\n{why}"
    );
}

// ---------------------------------------------------------------------------
// A newcomer that cannot take part in gossip takes nothing held.

/// Asserts `newcomers` (labels, MACs) never held a VIP nor sent a GARP for one.
fn assert_took_nothing(figures: &Figures, newcomers: &[(String, String)], why: &str) {
    for (vip, s) in figures {
        for (node, mac) in newcomers {
            assert!(
                s.timeline.iter().all(|(_, h)| !h.contains(node)),
                "{vip}: newcomer {node} held it\n{why}"
            );
            assert!(
                !s.garps.contains_key(mac),
                "{vip}: newcomer {node} ({mac}) sent gratuitous ARP\n{why}"
            );
        }
    }
}

/// Starts lb3 next to a settled 2-agent cluster, with `key` and joining `join`, and
/// asserts it takes nothing held for 3 × the slowest advert_int + 5 s.
fn newcomer_next_to_agents(tag: &str, scenario: &str, join: &[usize], key: &str) {
    let mut c = Cluster::new(tag, 2, "", groups());
    c.start_all();
    c.settle(&[1, 2], Some(2), "the running cluster");
    let newcomer = c.lab.add_node();
    let text = node_toml(&c.lab, newcomer, "lb3", join, key);
    let toml = c.lab.write("lb3.toml", &text);
    let rec = c.recorder();
    let from = rec.now();
    let cluster = c.cluster.clone();
    c.lab.start(newcomer, &toml, &cluster);
    // 3 × 1 s + 5 s, and 1 s for the agent to start.
    std::thread::sleep(Duration::from_secs(9));
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", scenario, &figures, "");
    let why = context(&figures, &c.lab.logs());
    assert_took_nothing(&figures, &[(label(newcomer), mac(newcomer))], &why);
}

#[test]
fn a_newcomer_without_peers_takes_nothing_from_agents() {
    newcomer_next_to_agents("nce", "newcomer-join-empty", &[], "cluster.key");
}

#[test]
fn a_newcomer_with_a_wrong_key_takes_nothing_from_agents() {
    newcomer_next_to_agents("nck", "newcomer-wrong-key", &[1, 2], "wrong.key");
}

/// keepalived instances of the keepalived-side labs: VRRPv2 at 1 s (vrid 50,
/// 192.0.2.100) and VRRPv3 at 0.2 s (vrid 51, 192.0.2.101), no authentication.
fn ka_config(router: &str, priority: u8) -> String {
    let v2 = ka::Instance {
        name: "VI_1",
        vrid: 50,
        version: 2,
        priority,
        advert_int: "1",
        password: None,
        addresses: &["192.0.2.100/32"],
        nopreempt: false,
    };
    let v3 = ka::Instance {
        name: "VI_2",
        vrid: 51,
        version: 3,
        priority,
        advert_int: "0.2",
        addresses: &["192.0.2.101/32"],
        ..v2
    };
    ka::keepalived_global(router) + &v2.config() + &v3.config()
}

const KA_VIPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 101)),
];

fn ka_recorder(lab: &ka::Lab, nodes: &[&str]) -> Recorder {
    let directors: Vec<(String, String)> =
        nodes.iter().map(|n| (n.to_string(), lab.ns(n))).collect();
    Recorder::start(&directors, "eth0", &lab.ns("br"))
}

/// Waits until each keepalived-side VIP is on exactly one of `nodes`, unchanged for
/// [`STABLE`].
fn ka_settle(lab: &ka::Lab, nodes: &[&str], what: &str) -> BTreeMap<IpAddr, String> {
    let layout = || -> BTreeMap<IpAddr, Vec<String>> {
        KA_VIPS
            .iter()
            .map(|v| {
                let on = nodes.iter().filter(|n| lab.has_addr(n, &v.to_string()));
                (*v, on.map(|n| n.to_string()).collect())
            })
            .collect()
    };
    let deadline = Instant::now() + DEADLINE;
    let mut last: Option<(BTreeMap<IpAddr, Vec<String>>, Instant)> = None;
    loop {
        let now = layout();
        let one_each = now.values().all(|h| h.len() == 1);
        match &last {
            Some((prev, since)) if *prev == now && one_each => {
                if since.elapsed() >= STABLE {
                    return now.into_iter().map(|(v, h)| (v, h[0].clone())).collect();
                }
            }
            _ => last = Some((now.clone(), Instant::now())),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no settled layout within {DEADLINE:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to [`DEADLINE`] for `node` to hold every keepalived-side VIP; false if it
/// never did.
fn ka_took_all(lab: &ka::Lab, node: &str) -> bool {
    poll(DEADLINE, || {
        KA_VIPS
            .iter()
            .all(|v| lab.has_addr(node, &v.to_string()))
            .then_some(())
    })
    .is_some()
}

fn ka_logs(lab: &ka::Lab, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            let text = lab.log(n);
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {n} (last 30 lines)\n{}\n", tail.join("\n"))
        })
        .collect()
}

/// Agent parts for the keepalived-side labs: the group matches `ka_config`'s.
fn ka_agent_cluster() -> String {
    "[cluster]\nname = \"faults\"\n\n[[vip_group]]\nname = \"v2\"\nvrrp_id = 50\n\
     addresses = [\"192.0.2.100/32\"]\nadvert_int = 1\ngarp_master_delay = 0\n\n\
     [[vip_group]]\nname = \"v3\"\nvrrp_id = 51\nversion = 3\naddresses = [\"192.0.2.101/32\"]\n\
     advert_int = 0.2\ngarp_master_delay = 0\n"
        .to_owned()
}

#[test]
fn newcomers_take_nothing_from_a_keepalived_master() {
    require_program("tcpdump");
    let mut lab = ka::Lab::new("ncm", &["k1", "a1", "a2"]);
    lab.keepalived("k1", "keepalived", &ka_config("k1", 100));
    ka_settle(&lab, &["k1"], "keepalived MASTER");
    let rec = ka_recorder(&lab, &["k1", "a1", "a2"]);
    let from = rec.now();
    let key = lab.cluster_key();
    // a1: no peers; a2: a peer that is no agent, and another key.
    let wrong = lab.write_key("wrong.key", &"5c".repeat(32));
    for (node, join, key) in [
        ("a1", String::new(), key.clone()),
        (
            "a2",
            "\"192.0.2.1:7946\"".to_owned(),
            wrong.display().to_string(),
        ),
    ] {
        let syncid = &node[1..];
        let node_toml = format!(
            "[node]\nid = \"{node}\"\ninterface = \"eth0\"\naddress = \"{}\"\nsyncid = {syncid}\n\
             join = [{join}]\ncluster_key_files = [\"{key}\"]\ngossip_probe_period = 0.2\n",
            lab.addr(node)
        );
        lab.agent(node, &node_toml, &ka_agent_cluster());
    }
    std::thread::sleep(Duration::from_secs(9));
    let figures = measure(&rec, &KA_VIPS, None, from, rec.now());
    report("agent", "newcomer-next-to-master", &figures, "");
    let why = context(
        &figures,
        &ka_logs(&lab, &["keepalived", "agent-a1", "agent-a2"]),
    );
    let newcomers: Vec<(String, String)> = ["a1", "a2"]
        .iter()
        .map(|n| (n.to_string(), lab.mac(n)))
        .collect();
    assert_took_nothing(&figures, &newcomers, &why);
}

/// VRRP preemption of a keepalived master by an agent of higher priority (100 > 50),
/// the agent listing keepalived in `join` as a migrating pair's node file does. The
/// agent advertises, waits until keepalived's kernel stops answering ARP for the
/// VIPs, and only then adds them: never two holders.
#[test]
fn an_agent_preempts_a_lower_keepalived_master_with_one_holder() {
    require_program("tcpdump");
    let mut lab = ka::Lab::new("pre", &["k1", "a1"]);
    lab.keepalived("k1", "keepalived", &ka_config("k1", 50));
    ka_settle(&lab, &["k1"], "keepalived MASTER");
    let rec = ka_recorder(&lab, &["k1", "a1"]);
    let from = rec.now();
    let node_toml = format!(
        "[node]\nid = \"a1\"\ninterface = \"eth0\"\naddress = \"{}\"\nsyncid = 1\n\
         join = [\"{}:7946\"]\ncluster_key_files = [\"{}\"]\ngossip_probe_period = 0.2\n",
        lab.addr("a1"),
        lab.addr("k1"),
        lab.cluster_key()
    );
    let agent = lab.agent("a1", &node_toml, &ka_agent_cluster());
    let on_agent = ka_took_all(&lab, "a1");
    let layout = ka_settle(&lab, &["k1", "a1"], "agent MASTER");
    assert!(on_agent, "the agent never took both VIPs: {layout:?}");
    let figures = measure(&rec, &KA_VIPS, None, from, rec.now());
    report("agent", "preempt-lower", &figures, "");
    let why = context(&figures, &ka_logs(&lab, &["keepalived", "agent-a1"]));
    assert!(layout.values().all(|h| h == "a1"), "{layout:?}\n{why}");
    for (vip, s) in &figures {
        assert_eq!(s.two_holders, Duration::ZERO, "{vip} on both\n{why}");
    }
    let log = lab.log("agent-a1");
    assert!(
        log.contains("non-agent VRRP master") && log.contains("preempting"),
        "the agent says what it preempts\n{why}"
    );
    // `[node] rt_priority` by default: the threads running at start at SCHED_RR 5, the
    // health probes' thread, started later, at normal priority.
    let threads = scheduling(agent.0);
    let rr5 = |name: &str| threads.iter().any(|t| t.0 == name && (t.1, t.2) == (2, 5));
    assert!(rr5("lvs-agent") && rr5("tokio-rt-worker"), "{threads:?}");
    assert!(
        threads
            .iter()
            .any(|t| t.0 == "health" && (t.1, t.2) == (0, 0)),
        "{threads:?}"
    );
}

/// (name, policy, real-time priority) of each thread of `pid`, from
/// /proc/PID/task/TID/stat (fields 41 and 40; 0 SCHED_OTHER, 2 SCHED_RR).
fn scheduling(pid: u32) -> Vec<(String, u32, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the agent's threads");
    tasks
        .map(|task| {
            let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
            let (name, rest) = stat.split_once(" (").unwrap().1.rsplit_once(") ").unwrap();
            // rest starts at field 3 (state).
            let fields: Vec<&str> = rest.split(' ').collect();
            let field = |n: usize| fields[n - 3].parse::<u32>().unwrap();
            (name.to_owned(), field(41), field(40))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Planned moves: rolling restart, a node joining, a drain, SIGTERM of an owner.

fn assert_clean_moves(figures: &Figures, why: &str) {
    for (vip, s) in figures {
        assert!(
            s.two_holders.is_zero(),
            "{vip}: two holders for {:?}\n{why}",
            s.two_holders
        );
        assert!(
            s.no_holder <= MOVE_GAP,
            "{vip}: no holder for {:?} > {MOVE_GAP:?}\n{why}",
            s.no_holder
        );
    }
}

/// SIGTERM node `i` and wait for it to exit.
fn stop(c: &mut Cluster, i: usize) {
    c.lab.signal(i, "TERM");
    let gone = poll(Duration::from_secs(20), || {
        (!c.lab.running(i)).then_some(())
    });
    assert!(gone.is_some(), "lb{i} exits on SIGTERM\n{}", c.lab.logs());
}

#[test]
fn rolling_restart_moves_cleanly() {
    let mut c = Cluster::new("rr", 3, "", groups());
    c.start_all();
    let all = [1, 2, 3];
    c.settle(&all, Some(3), "before the restarts");
    let rec = c.recorder();
    let from = rec.now();
    for i in all {
        stop(&mut c, i);
        let others: Vec<usize> = all.into_iter().filter(|&j| j != i).collect();
        c.settle(&others, None, &format!("lb{i} stopped"));
        c.start(i);
        c.settle(&all, Some(3), &format!("lb{i} restarted"));
    }
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", "rolling-restart", &figures, "");
    assert_clean_moves(&figures, &context(&figures, &c.lab.logs()));
}

#[test]
fn a_joined_node_takes_its_share_cleanly() {
    let six: Vec<Group> = (1..=6)
        .map(|k| Group {
            name: ["j1", "j2", "j3", "j4", "j5", "j6"][k - 1],
            vrid: 20 + k as u8,
            host: 20 + k as u8,
            fast: k % 2 == 0,
            priorities: "",
        })
        .collect();
    let mut c = Cluster::new("jn", 2, "", six);
    c.start_all();
    c.settle(&[1, 2], Some(2), "the running cluster");
    let three = c.lab.add_node();
    let text = node_toml(&c.lab, three, "lb3", &[], "cluster.key");
    let toml = c.lab.write("lb3.toml", &text);
    let cluster = c.cluster.clone();
    let rec = c.recorder();
    c.lab.start(three, &toml, &cluster);
    // A peerless node waits out VRRP's master-down interval (3 × 1 s + skew) first.
    std::thread::sleep(Duration::from_secs(5));
    let from = rec.now();
    let socket = c.lab.socket(three);
    let joined = c.lab.agent_cli(&[
        "join",
        "--socket",
        socket.to_str().expect("utf-8"),
        "192.0.2.1:7946",
    ]);
    assert!(
        joined.status.success(),
        "lvs-agent join: {joined:?}\n{}",
        c.lab.logs()
    );
    c.settle(&[1, 2, 3], Some(3), "lb3 joined");
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    let took = figures
        .iter()
        .filter(|(_, s)| s.final_holders().contains("lb3"))
        .count();
    report("agent", "join", &figures, &format!(" joined_took={took}"));
    let why = context(&figures, &c.lab.logs());
    assert_clean_moves(&figures, &why);
    assert!(took > 0, "lb3 took a share of the 6 groups\n{why}");
}

/// `lvs-agent drain` (true) or `undrain` on node `i`; its answer.
fn drain(c: &Cluster, i: usize, drain: bool) -> String {
    let socket = c.lab.socket(i);
    let verb = if drain { "drain" } else { "undrain" };
    let out = c
        .lab
        .agent_cli(&[verb, "--socket", socket.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "lvs-agent {verb} on lb{i}: {out:?}\n{}",
        c.lab.logs()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn drain_and_undrain_move_cleanly_and_the_last_nodes_keep_serving() {
    let mut c = Cluster::new("dr", 3, "", groups());
    c.start_all();
    let all = [1, 2, 3];
    let layout = c.settle(&all, Some(3), "before the drain");
    let owner = layout[&c.groups[0].vip()];
    let rec = c.recorder();
    let from = rec.now();

    let answer = drain(&c, owner, true);
    assert_eq!(answer.trim(), "holds no VIP group", "lb{owner} drained");
    let after = c.settle(&all, Some(3), "after the drain");
    assert!(
        after.values().all(|&h| h != owner),
        "the drained lb{owner} holds nothing: {after:?}"
    );
    let status = c.lab.status(owner);
    assert!(
        status.contains(&format!("member {} ", label(owner))) && status.contains(" drain"),
        "status shows the drain:\n{status}"
    );

    // Every node drained: the VIPs stay where they are rather than leave the network.
    let others: Vec<usize> = all.into_iter().filter(|&j| j != owner).collect();
    drain(&c, others[0], true);
    let on_last = c.settle(&all, Some(3), "one undrained node left");
    assert!(on_last.values().all(|&h| h == others[1]), "{on_last:?}");
    let answer = drain(&c, others[1], true);
    assert!(
        answer.starts_with("holds "),
        "the last node keeps its groups: {answer}"
    );
    let kept = c.settle(&all, Some(3), "every node drained");
    assert_eq!(
        kept, on_last,
        "nothing moves when no undrained node is left"
    );

    for i in all {
        drain(&c, i, false);
    }
    c.settle(&all, Some(3), "after the undrain");
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", "drain", &figures, "");
    assert_clean_moves(&figures, &context(&figures, &c.lab.logs()));
}

/// `lvs-cli ARGS` on node `i`'s control socket, inside its namespace.
fn lvs_cli(c: &Cluster, i: usize, args: &[&str]) -> std::process::Output {
    let cli = std::path::Path::new(env!("CARGO_BIN_EXE_lvs-agent")).with_file_name("lvs-cli");
    assert!(
        cli.exists(),
        "{} is missing: build the workspace's binaries (`cargo build --workspace --bins`)",
        cli.display()
    );
    let socket = c.lab.socket(i);
    std::process::Command::new("ip")
        .args(["netns", "exec", &c.lab.ns(i)])
        .arg(cli)
        .args(["--socket", socket.to_str().expect("utf-8")])
        .args(args)
        .output()
        .expect("run lvs-cli")
}

#[test]
fn move_hands_one_group_over_cleanly_and_it_stays() {
    let mut c = Cluster::new("mv", 3, "", groups());
    c.start_all();
    let all = [1, 2, 3];
    let layout = c.settle(&all, Some(3), "before the move");
    let (name, vip) = (c.groups[2].name, c.groups[2].vip());
    let owner = layout[&vip];
    let target = all.into_iter().find(|&j| j != owner).expect("another node");
    let rec = c.recorder();
    let from = rec.now();
    let out = lvs_cli(&c, target, &["move", name, &label(target)]);
    assert!(
        out.status.success(),
        "lvs-cli move {name} lb{target}: {out:?}\n{}",
        c.lab.logs()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{name} held by lb{target}\n")
    );
    let after = c.settle(&all, Some(3), "after the move");
    assert_eq!(after[&vip], target, "{name} on lb{target}: {after:?}");
    for (other, holder) in &layout {
        if *other != vip {
            assert_eq!(after[other], *holder, "only {name} moved: {after:?}");
        }
    }
    // It stays there: four advert intervals later nothing moved back.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.settle(&all, Some(3), "a while after the move"), after);
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", "move", &figures, "");
    assert_clean_moves(&figures, &context(&figures, &c.lab.logs()));

    let out = lvs_cli(&c, target, &["move", "nope", &label(target)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no VIP group \"nope\" (groups: s1, s2, f1, f2)"),
        "an unknown group: {err}"
    );
}

#[test]
fn sigterm_of_an_owner_moves_cleanly() {
    let mut c = Cluster::new("st", 3, "", groups());
    c.start_all();
    let layout = c.settle(&[1, 2, 3], Some(3), "before SIGTERM");
    let owner = layout[&c.groups[0].vip()];
    let rec = c.recorder();
    let from = rec.now();
    stop(&mut c, owner);
    let others: Vec<usize> = (1..=3).filter(|&j| j != owner).collect();
    c.settle(&others, None, "after SIGTERM");
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", "sigterm-owner", &figures, "");
    assert_clean_moves(&figures, &context(&figures, &c.lab.logs()));
}

// ---------------------------------------------------------------------------
// Reload: rename, remove, readdress.

#[test]
fn reload_renames_removes_and_readdresses_groups() {
    let mut c = Cluster::new("rl", 2, "", groups());
    c.start_all();
    c.settle(&[1, 2], Some(2), "before the reload");
    let rec = c.recorder();
    let from = rec.now();
    // s1 → "s1b" (same vrid and address), s2 removed, f1 moved to .21, f2 unchanged.
    let mut next = groups();
    next[0].name = "s1b";
    next[2].host = 21;
    next.remove(1);
    std::fs::write(&c.cluster, cluster_toml("", &next)).expect("write the cluster part");
    for i in 1..=2 {
        c.lab.signal(i, "HUP");
    }
    let want: BTreeSet<IpAddr> = next.iter().map(Group::vip).collect();
    c.groups = next;
    let matches = |c: &Cluster| {
        let on: Vec<BTreeSet<IpAddr>> = (1..=2).map(|i| c.lab.addrs_in(i, "198.51.100.")).collect();
        let all: Vec<IpAddr> = on.iter().flatten().copied().collect();
        let distinct: BTreeSet<IpAddr> = all.iter().copied().collect();
        distinct == want && all.len() == want.len()
    };
    let reached = poll(DEADLINE, || matches(&c).then_some(()));
    std::thread::sleep(STABLE);
    let to = rec.now();
    let kept: Vec<IpAddr> = [11, 14]
        .map(|h| IpAddr::V4(Ipv4Addr::new(198, 51, 100, h)))
        .to_vec();
    let figures = measure(&rec, &kept, None, from, to);
    report("agent", "reload", &figures, "");
    let everything = measure(
        &rec,
        &rec.recording()
            .addresses()
            .into_iter()
            .filter(|a| a.to_string().starts_with("198.51.100."))
            .collect::<Vec<_>>(),
        None,
        from,
        to,
    );
    let why = context(&everything, &c.lab.logs());
    assert!(
        reached.is_some() && matches(&c),
        "addresses match the reloaded config {want:?}\n{why}"
    );
    for (vip, s) in &everything {
        let holders = s.final_holders().len();
        if want.contains(vip) {
            assert_eq!(holders, 1, "{vip}: one holder after the reload\n{why}");
        } else {
            assert_eq!(holders, 0, "{vip}: left over after the reload\n{why}");
        }
    }
}

// ---------------------------------------------------------------------------
// Forged adverts.

/// Sends `adverts` every 200 ms from namespace `ns` (source `src`) to 224.0.0.18
/// with TTL 255, until dropped.
struct Forger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Forger {
    fn start(ns: &str, src: Ipv4Addr, adverts: Vec<Advert>) -> Forger {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/run/netns/{ns}");
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // setns affects this thread only; the socket belongs to the namespace.
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
                .expect("raw VRRP socket");
            socket.set_multicast_ttl_v4(255).expect("TTL 255");
            socket
                .set_multicast_if_v4(&src)
                .expect("multicast interface");
            socket
                .bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(src), 0)))
                .expect("bind the source");
            let dst = SockAddr::from(SocketAddr::new(IpAddr::V4(MCAST_V4), 0));
            let packets: Vec<Vec<u8>> = adverts
                .iter()
                .map(|a| encode(a, IpAddr::V4(src), IpAddr::V4(MCAST_V4)).expect("encode"))
                .collect();
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                for p in &packets {
                    socket.send_to(p, &dst).expect("send a forged advert");
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            sent
        });
        Forger {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("once")
            .join()
            .expect("forger thread")
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Priority-254 adverts for `groups` (v2 at 1 s, v3 at 0.2 s), as a higher-priority
/// router would send.
fn forged(groups: &[(u8, IpAddr, bool)]) -> Vec<Advert> {
    groups
        .iter()
        .map(|&(vrid, vip, fast)| Advert {
            version: if fast { Version::V3 } else { Version::V2 },
            vrid,
            priority: 254,
            advert_interval: if fast { 20 } else { 1 },
            addresses: vec![vip],
            auth: Auth::None,
        })
        .collect()
}

/// The `not_obeyed` drop counter in `lvs-agent status` (0 when absent).
fn not_obeyed(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.contains("not_obeyed"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn forged_advert(tag: &str, scenario: &str, obey: &str) {
    let mut c = Cluster::new(tag, 2, &format!("vrrp_obey = {obey}\n"), groups());
    c.start_all();
    let layout = c.settle(&[1, 2], Some(2), "before the forgery");
    let forger = c.lab.add_node();
    let before: BTreeMap<usize, u64> = (1..=2).map(|i| (i, not_obeyed(&c.lab.status(i)))).collect();
    let rec = c.recorder();
    let from = rec.now();
    let targets: Vec<(u8, IpAddr, bool)> =
        c.groups.iter().map(|g| (g.vrid, g.vip(), g.fast)).collect();
    let sender = Forger::start(
        &c.lab.ns(forger),
        Ipv4Addr::new(192, 0, 2, forger as u8),
        forged(&targets),
    );
    // 3 × the slowest advert_int (a VRRP master yields at once; a backup waits this)
    // + 3 s.
    std::thread::sleep(Duration::from_secs(6));
    let sent = sender.finish();
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    let after: BTreeMap<usize, u64> = (1..=2).map(|i| (i, not_obeyed(&c.lab.status(i)))).collect();
    report(
        "agent",
        scenario,
        &figures,
        &format!(" forged_sent={sent} not_obeyed_before={before:?} not_obeyed_after={after:?}"),
    );
    let why = format!(
        "{}\n{}{}",
        context(&figures, &c.lab.logs()),
        c.lab.status(1),
        c.lab.status(2)
    );
    for (vip, s) in &figures {
        assert!(
            s.min_holders() == 1 && s.max_holders() == 1 && s.changes == 0,
            "{vip}: the holder keeps the group against forged adverts\n{why}"
        );
    }
    for holder in layout.values().collect::<BTreeSet<_>>() {
        assert!(
            after[holder] > before[holder],
            "lb{holder}'s `not_obeyed` drop counter grew: {before:?} → {after:?}\n{why}"
        );
    }
}

#[test]
fn forged_adverts_are_not_obeyed_with_vrrp_obey_none() {
    forged_advert("fn", "forged-advert-obey-none", "\"none\"");
}

#[test]
fn forged_adverts_are_not_obeyed_from_outside_the_vrrp_obey_list() {
    forged_advert(
        "fl",
        "forged-advert-obey-list",
        "[\"192.0.2.1\", \"192.0.2.2\"]",
    );
}

// ---------------------------------------------------------------------------
// Two processes, one node id.

#[test]
fn one_node_id_in_two_processes_gives_one_holder_and_a_conflict() {
    let mut c = Cluster::new("dup", 2, "", groups());
    for i in 1..=2 {
        let other = 3 - i;
        let text = node_toml(&c.lab, i, "lb1", &[other], "cluster.key");
        c.nodes
            .insert(i, c.lab.write(&format!("lb{i}.toml"), &text));
    }
    c.start_all();
    // No settled layout to wait for: two holders is the failure to measure. Wait for
    // every VIP to be held somewhere, then out VRRP's master-down interval (3 × 1 s +
    // skew, under 4 s).
    let held = poll(DEADLINE, || {
        c.layout(&[1, 2])
            .values()
            .all(|h| !h.is_empty())
            .then_some(())
    });
    assert!(
        held.is_some(),
        "every VIP held by one of the two lb1\n{}",
        c.lab.logs()
    );
    std::thread::sleep(Duration::from_secs(4));
    let rec = c.recorder();
    let from = rec.now();
    let mut seen: BTreeMap<usize, Duration> = BTreeMap::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        for i in 1..=2 {
            if !seen.contains_key(&i)
                && c.lab
                    .status(i)
                    .lines()
                    .any(|l| l.starts_with("conflict:") && l.contains("lb1"))
            {
                seen.insert(i, start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report(
        "agent",
        "duplicate-node-id",
        &figures,
        &format!(" conflict_seen={}", seen.len()),
    );
    let why = format!(
        "{}\n{}{}",
        context(&figures, &c.lab.logs()),
        c.lab.status(1),
        c.lab.status(2)
    );
    for (vip, s) in &figures {
        assert!(
            s.min_holders() == 1 && s.max_holders() == 1,
            "{vip}: exactly one holder\n{why}"
        );
    }
    assert_eq!(
        seen.len(),
        2,
        "both statuses show a `conflict:` line naming lb1\n{why}"
    );
}

// ---------------------------------------------------------------------------
// Heartbeats lost from the owner to its heir only.

#[test]
fn heartbeat_loss_owner_to_heir_bounds_two_holders() {
    let preferred = "{ lb1 = 150, lb2 = 100, lb3 = 50 }";
    let hb: Vec<Group> = [group("s1", 11, 11, false), group("f1", 13, 13, true)]
        .into_iter()
        .map(|g| Group {
            priorities: preferred,
            ..g
        })
        .collect();
    let mut c = Cluster::new("hb", 3, "", hb);
    c.start_all();
    let layout = c.settle(&[1, 2, 3], Some(3), "lb1 owns both groups");
    assert!(
        layout.values().all(|&o| o == 1),
        "lb1 owns both: {layout:?}\n{}",
        c.lab.logs()
    );
    let rec = c.recorder();
    let from = rec.now();
    // lb1 → lb2 gossip (heartbeats included) lost one way; everything else flows.
    c.lab.nft(
        1,
        "add table inet hb; \
         add chain inet hb out { type filter hook output priority 0; }; \
         add rule inet hb out ip daddr 192.0.2.2 udp dport 7946 drop",
    );
    std::thread::sleep(Duration::from_secs(10));
    let figures = measure(&rec, &c.vips(), None, from, rec.now());
    report("agent", "heartbeat-loss", &figures, "");
    let why = context(&figures, &c.lab.logs());
    for (vip, s) in &figures {
        let bound = 3 * c.advert_int(*vip);
        assert!(
            s.two_holders <= bound,
            "{vip}: two holders for {:?} > {bound:?}\n{why}",
            s.two_holders
        );
    }
}

// ---------------------------------------------------------------------------
// keepalived, the baseline: the scenarios that apply to it, figures only.

fn ka_lab(tag: &str, nodes: &[&str], priorities: &[u8]) -> ka::Lab {
    require_program("tcpdump");
    require_program("nft");
    let mut lab = ka::Lab::new(tag, nodes);
    for (node, priority) in nodes.iter().zip(priorities) {
        lab.keepalived(node, &format!("ka-{node}"), &ka_config(node, *priority));
    }
    lab
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_vrrp_blocked() {
    let lab = ka_lab("kvb", &["k1", "k2"], &[150, 100]);
    ka_settle(&lab, &["k1", "k2"], "keepalived before blocking VRRP");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    let from = rec.now();
    for node in ["k1", "k2"] {
        lab.nft(node, BLOCK_VRRP);
    }
    std::thread::sleep(Duration::from_secs(8));
    report(
        "keepalived",
        "vrrp-blocked",
        &measure(&rec, &KA_VIPS, None, from, rec.now()),
        "",
    );
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_partition_then_heal() {
    let lab = ka_lab("kph", &["k1", "k2"], &[150, 100]);
    ka_settle(&lab, &["k1", "k2"], "keepalived before the partition");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    lab.nft("k2", CUT);
    std::thread::sleep(Duration::from_secs(8));
    let heal = rec.now();
    lab.nft("k2", HEAL);
    std::thread::sleep(Duration::from_secs(8));
    let to = rec.now();
    let after = measure(&rec, &KA_VIPS, None, heal, to);
    let settled = after
        .iter()
        .map(|(_, s)| {
            s.one_holder_since
                .map_or(to - heal, |at| at.saturating_sub(heal))
        })
        .max()
        .unwrap_or_default();
    report(
        "keepalived",
        "partition-heal",
        &after,
        &format!(" one_holder_after_heal_ms={}", settled.as_millis()),
    );
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_newcomer_next_to_a_master() {
    let mut lab = ka_lab("knc", &["k1", "k2"], &[100]);
    ka_settle(&lab, &["k1"], "keepalived MASTER");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    let from = rec.now();
    lab.keepalived("k2", "ka-k2", &ka_config("k2", 100));
    std::thread::sleep(Duration::from_secs(9));
    report(
        "keepalived",
        "newcomer-next-to-master",
        &measure(&rec, &KA_VIPS, None, from, rec.now()),
        "",
    );
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_preempts_a_lower_master() {
    let mut lab = ka_lab("kpr", &["k1", "k2"], &[50]);
    ka_settle(&lab, &["k1"], "keepalived MASTER");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    let from = rec.now();
    lab.keepalived("k2", "ka-k2", &ka_config("k2", 100));
    ka_took_all(&lab, "k2");
    ka_settle(&lab, &["k1", "k2"], "the higher keepalived MASTER");
    report(
        "keepalived",
        "preempt-lower",
        &measure(&rec, &KA_VIPS, None, from, rec.now()),
        "",
    );
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_rolling_restart() {
    let mut lab = ka_lab("krr", &["k1", "k2"], &[]);
    let mut pids: BTreeMap<&str, ka::Pid> = BTreeMap::new();
    for (node, priority) in [("k1", 150), ("k2", 100)] {
        pids.insert(
            node,
            lab.keepalived(node, &format!("ka-{node}"), &ka_config(node, priority)),
        );
    }
    ka_settle(&lab, &["k1", "k2"], "keepalived before the restarts");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    let from = rec.now();
    for (node, priority) in [("k1", 150), ("k2", 100)] {
        lab.stop(pids[node]);
        let other = if node == "k1" { "k2" } else { "k1" };
        ka_settle(&lab, &[other], &format!("{node} stopped"));
        pids.insert(
            node,
            lab.keepalived(node, &format!("ka-{node}"), &ka_config(node, priority)),
        );
        ka_settle(&lab, &["k1", "k2"], &format!("{node} restarted"));
    }
    report(
        "keepalived",
        "rolling-restart",
        &measure(&rec, &KA_VIPS, None, from, rec.now()),
        "",
    );
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_sigterm_of_the_master() {
    let mut lab = ka_lab("kst", &["k1", "k2"], &[]);
    let master = lab.keepalived("k1", "ka-k1", &ka_config("k1", 150));
    lab.keepalived("k2", "ka-k2", &ka_config("k2", 100));
    ka_settle(&lab, &["k1", "k2"], "keepalived before SIGTERM");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    let from = rec.now();
    lab.stop(master);
    ka_settle(&lab, &["k2"], "after SIGTERM");
    report(
        "keepalived",
        "sigterm-owner",
        &measure(&rec, &KA_VIPS, None, from, rec.now()),
        "",
    );
}

#[test]
#[ignore = "keepalived baseline, run by deploy/bench/faults"]
fn keepalived_forged_advert() {
    let lab = ka_lab("kfa", &["k1", "k2", "x"], &[150, 100]);
    ka_settle(&lab, &["k1", "k2"], "keepalived before the forgery");
    let rec = ka_recorder(&lab, &["k1", "k2"]);
    let from = rec.now();
    let targets = [(50, KA_VIPS[0], false), (51, KA_VIPS[1], true)];
    let sender = Forger::start(&lab.ns("x"), Ipv4Addr::new(192, 0, 2, 3), forged(&targets));
    std::thread::sleep(Duration::from_secs(6));
    let sent = sender.finish();
    report(
        "keepalived",
        "forged-advert",
        &measure(&rec, &KA_VIPS, None, from, rec.now()),
        &format!(" forged_sent={sent}"),
    );
}

// ---------------------------------------------------------------------------
// The analysis, on scripted events.

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn v(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, host))
}

fn ev(at: u64, node: &str, host: u8, added: bool) -> AddrEvent {
    AddrEvent {
        at: ms(at),
        node: node.to_owned(),
        addr: v(host),
        added,
    }
}

fn set(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

#[test]
fn analysis_measures_overlap_gap_and_changes() {
    let events = [
        ev(100, "b", 10, true),  // {a,b} for 50 ms
        ev(150, "a", 10, false), // {b}
        ev(400, "b", 10, false), // {} for 20 ms
        ev(420, "a", 10, true),  // {a}
        ev(500, "c", 11, true),  // another VIP: ignored
    ];
    let s = analyse(&set(&["a"]), &events, &[], v(10), None, ms(0), ms(1000));
    assert_eq!(s.two_holders, ms(50));
    assert_eq!(s.no_holder, ms(20));
    assert_eq!(s.changes, 4);
    assert_eq!(s.one_holder_since, Some(ms(420)));
    assert_eq!(s.final_holders(), &set(&["a"]));
    assert_eq!((s.min_holders(), s.max_holders()), (0, 2));
}

#[test]
fn analysis_clips_to_the_window_and_replays_earlier_events() {
    let events = [
        ev(100, "b", 10, true),
        ev(300, "a", 10, false),
        ev(900, "a", 10, true),
    ];
    // From 200: {a,b} since 100 counts from 200 only; the change at 900 is outside.
    let s = analyse(&set(&["a"]), &events, &[], v(10), None, ms(200), ms(800));
    assert_eq!(s.timeline[0], (ms(200), set(&["a", "b"])));
    assert_eq!(s.two_holders, ms(100));
    assert_eq!(s.changes, 1);
    assert_eq!(s.no_holder, Duration::ZERO);
    assert_eq!(s.one_holder_since, Some(ms(300)));
}

#[test]
fn analysis_runs_span_holder_swaps_and_open_ends() {
    // {a,b} → {a,c} is one 300 ms two-holder stretch; a gap open at the end counts
    // to the window's end.
    let events = [
        ev(100, "b", 10, true),
        ev(200, "c", 10, true),
        ev(200, "b", 10, false),
        ev(400, "c", 10, false),
        ev(600, "a", 10, false),
    ];
    let s = analyse(&set(&["a"]), &events, &[], v(10), None, ms(0), ms(1000));
    assert_eq!(s.two_holders, ms(300));
    assert_eq!(s.no_holder, ms(400));
    assert_eq!(s.one_holder_since, None);
    // Same-instant steps merge in the timeline.
    assert_eq!(s.timeline.len(), 5);
}

#[test]
fn analysis_counts_only_the_given_nodes_and_garps_in_the_window() {
    let events = [ev(100, "b", 10, true), ev(200, "a", 10, false)];
    let garps = [
        Garp {
            at: ms(50),
            mac: "m1".into(),
            vip: v(10),
        },
        Garp {
            at: ms(150),
            mac: "m2".into(),
            vip: v(10),
        },
        Garp {
            at: ms(160),
            mac: "m2".into(),
            vip: v(10),
        },
        Garp {
            at: ms(170),
            mac: "m2".into(),
            vip: v(11),
        },
    ];
    let side: &[&str] = &["a"];
    let s = analyse(
        &set(&["a"]),
        &events,
        &garps,
        v(10),
        Some(side),
        ms(100),
        ms(300),
    );
    assert_eq!(s.two_holders, Duration::ZERO);
    assert_eq!(s.no_holder, ms(100));
    assert_eq!(s.garps, BTreeMap::from([("m2".to_owned(), 2)]));
}

#[test]
fn figures_round_up_to_a_tenth_so_zero_means_none() {
    assert_eq!(fmt_ms(Duration::from_micros(40)), "0.1");
    assert_eq!(fmt_ms(Duration::from_micros(400)), "0.4");
    assert_eq!(fmt_ms(Duration::ZERO), "0");
    assert_eq!(fmt_ms(ms(3)), "3");
    assert_eq!(fmt_ms(Duration::from_micros(12_050)), "12.1");
}

#[test]
fn parses_monitor_and_tcpdump_lines() {
    let add = "2: eth0    inet 198.51.100.11/24 scope global secondary eth0\\       valid_lft forever preferred_lft forever";
    let del = "Deleted 2: eth0    inet6 2001:db8:100::10/64 scope global nodad \\       valid_lft forever";
    assert_eq!(parse_addr_line(add), Some((true, 2, v(11))));
    assert_eq!(
        parse_addr_line(del),
        Some((false, 2, "2001:db8:100::10".parse().unwrap()))
    );
    // `ip monitor all-nsid`: the namespace id first (the name is the monitor's own
    // namespace's for that index, so the index is what counts).
    let from_ns = format!("[nsid 3]{add}");
    assert_eq!(split_nsid(&from_ns), (Some(3), add));
    assert_eq!(split_nsid(add), (None, add));
    let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\\    link/loopback\n\
                 2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\\    link/ether";
    assert_eq!(
        parse_link_names(links),
        BTreeMap::from([(1, "lo".to_owned()), (2, "eth0".to_owned())])
    );
    assert_eq!(
        parse_addr_line("3: eth0    link/ether 02:00:00:00:00:01"),
        None
    );
    // `ip -o monitor link`, captured: a veth brought up, downed, deleted. The name is
    // the message's own (the address line names the monitor's interface "ifb1").
    let up = "3: lb1@ifb0: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 qdisc noqueue \
              state LOWERLAYERDOWN group default \\    link/ether 86:40:d6:80:21:c8";
    let down = "3: lb1@ifb0: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noqueue state DOWN \
                group default \\    link/ether 86:40:d6:80:21:c8 brd ff:ff:ff:ff:ff:ff";
    let gone = "Deleted 3: lb1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN \
                group default \\    link/ether 86:40:d6:80:21:c8 brd ff:ff:ff:ff:ff:ff";
    let addr = "3: ifb1    inet 192.0.2.5/32 scope global lb1\\       valid_lft forever";
    assert_eq!(parse_link_line(up), Some(("lb1".to_owned(), true)));
    assert_eq!(parse_link_line(down), Some(("lb1".to_owned(), false)));
    assert_eq!(parse_link_line(gone), Some(("lb1".to_owned(), false)));
    assert_eq!(parse_link_line(addr), None);
    assert_eq!(parse_link_line(add), None);
    assert_eq!(parse_addr_line(down), None);
    // `ip -ts` stamps: 2026-12-01T08:46:56.544517 UTC is 1796114816.544517 s.
    let stamped = format!("[2026-12-01T08:46:56.544517] {add}");
    assert_eq!(split_stamp(&stamped), (Some(1_796_114_816_544_517), add));
    assert_eq!(split_stamp("[1970-01-01T00:00:01.5] x").0, Some(1_500_000));
    assert_eq!(split_stamp(add), (None, add));
    let garp = "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                Request who-has 198.51.100.11 tell 198.51.100.11, length 28";
    let garp_target = "02:00:00:00:00:02 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                Request who-has 198.51.100.12 (ff:ff:ff:ff:ff:ff) tell 198.51.100.12, length 28";
    let query = "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                 Request who-has 192.0.2.2 tell 192.0.2.1, length 28";
    let reply = "02:00:00:00:00:03 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: \
                 Reply 198.51.100.13 is-at 02:00:00:00:00:03, length 28";
    assert_eq!(
        parse_garp_line(garp),
        Some(("02:00:00:00:00:01".into(), v(11)))
    );
    assert_eq!(
        parse_garp_line(garp_target),
        Some(("02:00:00:00:00:02".into(), v(12)))
    );
    assert_eq!(parse_garp_line(query), None);
    assert_eq!(
        parse_garp_line(reply),
        Some(("02:00:00:00:00:03".into(), v(13)))
    );
}
