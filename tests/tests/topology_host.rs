//! The topology builder on the host (no IPVS needed): namespaces with a name
//! prefix, documentation addresses, real servers set up by `lvs-agent realserver`
//! (VIPs on `lo`, the ARP sysctls), each answering the client with its own page, and
//! nothing left behind. Needs the workspace's binaries built (`lvs-agent`).
use lvs_tests::shell::Shell;
use lvs_tests::topology::{Topology, TopologySpec};
use std::process::Command;

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn builds_on_the_host_and_cleans_up() {
    let prefix = format!("lvt{}-", std::process::id());
    let spec = TopologySpec::documentation(&prefix, 2, 2);
    let mut sh = Shell::new(false);
    let topo = Topology::build(
        spec.clone(),
        env!("CARGO_BIN_EXE_lvs-lab-guest").as_ref(),
        &mut sh,
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", sh.transcript()));
    assert!(namespaces().contains(&format!("{prefix}client")));
    for (i, addr) in spec.real_servers.iter().enumerate() {
        let got = topo.fetch(&mut sh, "client", *addr, 3).unwrap();
        let name = format!("rs{}", i + 1);
        assert_eq!((got.from(&name), got.errors), (3, 0), "{got}");
        assert!(got.bytes >= 3 * spec.page_bytes as u64);
    }
    // `lvs-agent realserver up` set each real server up as the seed does.
    for i in 1..=spec.real_servers.len() {
        let ns = format!("{prefix}rs{i}");
        let lo = Command::new("ip")
            .args(["-n", &ns, "-o", "addr", "show", "dev", "lo"])
            .output()
            .expect("ip addr");
        let lo = String::from_utf8_lossy(&lo.stdout);
        for vip in &spec.vips {
            assert!(lo.contains(&format!("{vip}/32")), "{ns} lo: {lo}");
        }
        for (key, want) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.lo.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.lo.arp_announce", "2"),
        ] {
            let got = Command::new("ip")
                .args(["netns", "exec", &ns, "sysctl", "-n", key])
                .output()
                .expect("sysctl");
            assert_eq!(
                String::from_utf8_lossy(&got.stdout).trim(),
                want,
                "{ns} {key}"
            );
        }
    }
    // A director reaches the real servers too, and counts what it sent.
    let before = topo.tx_bytes(&mut sh, "lb2").unwrap();
    assert_eq!(
        topo.fetch(&mut sh, "lb2", spec.real_servers[0], 1)
            .unwrap()
            .from("rs1"),
        1
    );
    assert!(topo.tx_bytes(&mut sh, "lb2").unwrap() > before);
    drop(topo);
    assert!(
        !namespaces().contains(&prefix),
        "namespaces left behind:\n{}",
        namespaces()
    );
}
