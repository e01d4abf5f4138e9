//! `lvs-agent realserver up|down|status` on a real server in a network namespace
//! (192.0.2.100 on a veth pair inside it, no route out, `lo` down): `up` sets `lo` up,
//! puts the DR VIP on it and sets the ARP sysctls, again changes nothing, `status`
//! agrees, and `down` leaves the namespace exactly as it was (addresses, `lo`'s state
//! and every sysctl `up` touched). Needs root.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::netns::{add_ns, del_ns, ip, require_root};

const CLUSTER: &str = r#"
[cluster]
name = "rs"

[[service]]
vip = "198.51.100.10"
port = 80
forwarding = "dr"
real_server = [{ address = "192.0.2.100", port = 80 }, { address = "192.0.2.101", port = 80 }]

[[service]]
vip = "198.51.100.11"
port = 80
forwarding = "dr"
real_server = [{ address = "192.0.2.101", port = 80 }]

[[service]]
vip = "198.51.100.12"
port = 80
forwarding = "nat"
real_server = [{ address = "192.0.2.100", port = 80 }]
"#;

const SYSCTLS: &[&str] = &[
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.lo.arp_ignore",
    "net.ipv4.conf.lo.arp_announce",
];

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        del_ns(&self.0);
    }
}

fn agent(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_lvs-agent"),
            "realserver",
        ])
        .args(args)
        .output()
        .expect("run lvs-agent realserver")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every address, the state of `lo`, and the sysctls `up` may touch.
fn snapshot(ns: &str) -> String {
    let mut out = ip(&["-n", ns, "-o", "addr", "show"]);
    out += &ip(&["-n", ns, "-o", "link", "show", "dev", "lo"]);
    for key in SYSCTLS {
        let value = Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-n", key])
            .output()
            .expect("sysctl");
        out += &format!("{key} = {}", String::from_utf8_lossy(&value.stdout));
    }
    out
}

#[test]
fn up_then_down_leaves_the_host_as_it_was() {
    require_root();
    let ns = Ns(format!("lvsrs-{}", std::process::id()));
    add_ns(&ns.0);
    ip(&[
        "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ip(&["-n", &ns.0, "addr", "add", "192.0.2.100/24", "dev", "eth0"]);
    ip(&["-n", &ns.0, "link", "set", "eth0", "up"]);
    // `lo` down, as in a namespace nobody set up: `up` raises it, `down` lowers it.
    ip(&["-n", &ns.0, "link", "set", "lo", "down"]);
    // One of the sysctls has a value of its own before: `down` must bring it back.
    ip(&[
        "netns",
        "exec",
        &ns.0,
        "sysctl",
        "-qw",
        "net.ipv4.conf.lo.arp_announce=1",
    ]);
    let dir = std::env::temp_dir().join(&ns.0);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cluster.toml");
    std::fs::write(&config, CLUSTER).unwrap();
    let state: PathBuf = dir.join("run").join("realserver.state");
    let (c, s) = (config.to_str().unwrap(), state.to_str().unwrap());
    let before = snapshot(&ns.0);

    let out = agent(&ns.0, &["status", "-c", c, "--state", s]);
    assert!(!out.status.success(), "status before up: exit 1");
    let up = ok(&agent(&ns.0, &["up", "-c", c, "--state", s]), "up");
    assert!(
        up.contains("198.51.100.10/32 on lo (tcp 198.51.100.10:80)"),
        "{up}"
    );
    assert!(up.contains("lo set up"), "{up}");
    let lo = ip(&["-n", &ns.0, "-o", "addr", "show", "dev", "lo"]);
    assert!(lo.contains("198.51.100.10/32"), "the DR VIP on lo: {lo}");
    let link = ip(&["-n", &ns.0, "-o", "link", "show", "dev", "lo"]);
    assert!(link.contains(",UP"), "lo up: {link}");
    assert!(
        !lo.contains("198.51.100.11") && !lo.contains("198.51.100.12"),
        "not another host's VIP, not a NAT VIP: {lo}"
    );
    let during = snapshot(&ns.0);
    for key in SYSCTLS {
        let want = if key.ends_with("arp_ignore") { 1 } else { 2 };
        assert!(during.contains(&format!("{key} = {want}")), "{during}");
    }
    let again = ok(&agent(&ns.0, &["up", "-c", c, "--state", s]), "up again");
    assert_eq!(again, "already up: nothing changed\n");
    assert_eq!(snapshot(&ns.0), during, "up twice is up once");
    let status = ok(&agent(&ns.0, &["status", "-c", c, "--state", s]), "status");
    assert!(
        status.contains("vip 198.51.100.10 on lo: present") && status.contains("undo record"),
        "{status}"
    );

    let down = ok(&agent(&ns.0, &["down", "--state", s]), "down");
    assert!(down.contains("198.51.100.10 removed from lo"), "{down}");
    assert!(down.contains("lo set down (as before)"), "{down}");
    assert_eq!(snapshot(&ns.0), before, "down leaves the host as it was");
    assert!(!Path::new(&state).exists(), "the undo record is gone");
    let twice = ok(&agent(&ns.0, &["down", "--state", s]), "down again");
    assert!(twice.starts_with("nothing to undo"), "{twice}");
    std::fs::remove_dir_all(&dir).unwrap();
}
