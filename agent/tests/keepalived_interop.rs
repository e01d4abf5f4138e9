//! lvs-agent and Debian's keepalived on one VRRP group (vrid 50, VRRPv2, 1 s,
//! auth PASS, 192.0.2.100/32), in network namespaces on one bridge. keepalived's
//! state is read from the VIP on its interface and its `-D` log ("Entering
//! MASTER STATE"). Generous deadlines, no timing assertions. Needs root and keepalived.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::keepalived_lab::{keepalived_global, Instance, Lab, Pid, VIP};
use support::netns::wait_for;

const LIMIT: Duration = Duration::from_secs(60);
const AGENTS: [&str; 2] = ["a1", "a2"];

fn keepalived_config(priority: u8) -> String {
    keepalived_global("k1")
        + &Instance {
            name: "VI_1",
            vrid: 50,
            version: 2,
            priority,
            advert_int: "1",
            password: Some("1111"),
            addresses: &["192.0.2.100/32"],
            nopreempt: false,
        }
        .config()
}

fn start_agent(lab: &mut Lab, node: &str) -> Pid {
    let join: Vec<String> = AGENTS
        .iter()
        .map(|a| format!("\"{}:7946\"", lab.addr(a)))
        .collect();
    let syncid = if node == "a1" { 1 } else { 2 };
    let node_toml = format!(
        "[node]\nid = \"{node}\"\ninterface = \"eth0\"\naddress = \"{}\"\nsyncid = {syncid}\n\
         join = [{}]\ncluster_key_files = [\"{}\"]\n",
        lab.addr(node),
        join.join(", "),
        lab.cluster_key()
    );
    let cluster = "[cluster]\nname = \"interop\"\n\n[[vip_group]]\nname = \"g\"\nvrrp_id = 50\n\
        addresses = [\"192.0.2.100/32\"]\ndefault_priority = 100\nadvert_int = 1\n\
        authentication = { type = \"pass\", password = \"1111\" }\n";
    lab.agent(node, &node_toml, cluster)
}

fn agent_holder(lab: &Lab) -> Option<&'static str> {
    AGENTS.into_iter().find(|a| lab.has_addr(a, VIP))
}

fn keepalived_was_master(lab: &Lab) -> bool {
    lab.log("keepalived").contains("Entering MASTER STATE")
}

/// A killed agent's kernel keeps the VIP: take it off, as a reboot would.
fn kill_agent(lab: &mut Lab, node: &str, pid: Pid) {
    lab.kill(pid);
    let ns = lab.ns(node);
    let _ = std::process::Command::new("ip")
        .args(["-n", &ns, "addr", "del", "192.0.2.100/32", "dev", "eth0"])
        .stderr(std::process::Stdio::null())
        .status();
}

#[test]
fn lower_priority_keepalived_stays_backup_until_every_agent_dies() {
    let mut lab = Lab::new("lo", &["a1", "a2", "k1"]);
    let pids: Vec<Pid> = AGENTS.iter().map(|a| start_agent(&mut lab, a)).collect();
    wait_for(LIMIT, "an agent holding the VIP", || {
        agent_holder(&lab).is_some()
    });
    lab.keepalived("k1", "keepalived", &keepalived_config(50));
    wait_for(LIMIT, "keepalived in BACKUP", || {
        lab.log("keepalived").contains("Entering BACKUP STATE")
    });
    // Several master-down intervals (3 s + skew): keepalived must keep hearing the agent.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert!(
            !lab.has_addr("k1", VIP),
            "keepalived took the VIP from a live agent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!keepalived_was_master(&lab), "{}", lab.log("keepalived"));
    assert!(agent_holder(&lab).is_some());

    for (node, pid) in AGENTS.into_iter().zip(pids) {
        kill_agent(&mut lab, node, pid);
    }
    wait_for(LIMIT, "keepalived to take the VIP", || {
        lab.has_addr("k1", VIP) && keepalived_was_master(&lab)
    });
}

#[test]
fn higher_priority_keepalived_takes_the_group_and_gives_it_back() {
    let mut lab = Lab::new("hi", &["a1", "a2", "k1"]);
    for agent in AGENTS {
        start_agent(&mut lab, agent);
    }
    wait_for(LIMIT, "an agent holding the VIP", || {
        agent_holder(&lab).is_some()
    });
    let keepalived = lab.keepalived("k1", "keepalived", &keepalived_config(200));
    wait_for(LIMIT, "keepalived alone holding the VIP", || {
        lab.has_addr("k1", VIP) && agent_holder(&lab).is_none()
    });
    // A clean stop: keepalived drops the VIP and sends a priority-0 advert.
    lab.stop(keepalived);
    wait_for(LIMIT, "an agent holding the VIP again", || {
        agent_holder(&lab).is_some() && !lab.has_addr("k1", VIP)
    });
}

/// Samples which live nodes hold the VIP every 50 ms, in a thread.
struct Sampler {
    live: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(Instant, usize)>>>,
}

impl Sampler {
    fn start(lab: &Lab, nodes: &[&str]) -> Sampler {
        let live = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let namespaces: Vec<(String, String)> =
            nodes.iter().map(|n| (n.to_string(), lab.ns(n))).collect();
        let (l, s) = (Arc::clone(&live), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let live_now = l.lock().expect("live set").clone();
                let holders = namespaces
                    .iter()
                    .filter(|(node, _)| live_now.contains(node))
                    .filter(|(_, ns)| {
                        let out = std::process::Command::new("ip")
                            .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
                            .output()
                            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                            .unwrap_or_default();
                        out.contains(&format!(" {VIP}/"))
                    })
                    .count();
                samples.push((Instant::now(), holders));
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        Sampler {
            live,
            stop,
            thread: Some(thread),
        }
    }

    fn set_live(&self, node: &str, live: bool) {
        let mut set = self.live.lock().expect("live set");
        if live {
            set.insert(node.to_owned());
        } else {
            set.remove(node);
        }
    }

    /// The samples that found the VIP on two or more live nodes.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.take().expect("once").join().expect("sampler");
        samples.iter().filter(|(_, holders)| *holders >= 2).count()
    }
}

/// Two agents and a keepalived (priority 50): through agent crashes, restarts and
/// keepalived taking over, the VIP is never seen on two live nodes (sampled every
/// 50 ms). Agents move it among themselves by hand-over, and an agent taking it back
/// from keepalived adds it only once keepalived's kernel stopped answering ARP for it
/// (`vip::probe`). Crashed nodes leave the sample the instant they are killed (their
/// kernel keeps the address, which nobody answers for any more once the test removes
/// it).
#[test]
fn one_address_one_holder_outside_transitions() {
    let mut lab = Lab::new("one", &["a1", "a2", "k1"]);
    let sampler = Sampler::start(&lab, &["a1", "a2", "k1"]);
    let mut pids = Vec::new();
    for agent in AGENTS {
        sampler.set_live(agent, true);
        pids.push(start_agent(&mut lab, agent));
    }
    wait_for(LIMIT, "an agent holding the VIP", || {
        agent_holder(&lab).is_some()
    });
    sampler.set_live("k1", true);
    lab.keepalived("k1", "keepalived", &keepalived_config(50));
    std::thread::sleep(Duration::from_secs(5));

    for _round in 0..2 {
        let owner = agent_holder(&lab).expect("an agent holds the VIP");
        let index = AGENTS.iter().position(|a| *a == owner).expect("agent");
        sampler.set_live(owner, false);
        kill_agent(&mut lab, owner, pids[index]);
        wait_for(LIMIT, "another node holding the VIP", || {
            agent_holder(&lab).is_some() || lab.has_addr("k1", VIP)
        });
        sampler.set_live(owner, true);
        pids[index] = start_agent(&mut lab, owner);
        std::thread::sleep(Duration::from_secs(8));
    }

    for (node, pid) in AGENTS.into_iter().zip(pids.clone()) {
        sampler.set_live(node, false);
        kill_agent(&mut lab, node, pid);
    }
    wait_for(LIMIT, "keepalived holding the VIP", || {
        lab.has_addr("k1", VIP)
    });
    for (i, agent) in AGENTS.into_iter().enumerate() {
        sampler.set_live(agent, true);
        pids[i] = start_agent(&mut lab, agent);
    }
    std::thread::sleep(Duration::from_secs(10));

    let dual = sampler.finish();
    assert_eq!(dual, 0, "samples with the VIP on two live nodes");
}
