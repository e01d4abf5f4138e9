//! The topology builder on the host (no IPVS needed): namespaces with a name
//! prefix, documentation addresses, each real server answering the client with
//! its own page, and nothing left behind.
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
