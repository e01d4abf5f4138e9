//! The IPVS dataplane on a real kernel, in one VM boot: parity with ipvsadm, a TUN
//! service's real servers set up by `lvs-agent realserver`, drift repair, agent
//! restart under load, connection sync between three directors, and a reduced-size
//! benchmark run (figures reported, not asserted; the full one is
//! `deploy/lab/bench-ipvs`).
use lvs_tests::vm::Lab;

#[test]
fn ipvs_dataplane_in_the_vm() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).expect("lab cannot start");
    lab.run(&[
        "ipvs_parity",
        "realserver_tun",
        "ipvs_drift",
        "agent_restart",
        "ipvs_sync",
        "ipvs_bench_smoke",
    ])
    .expect("VM did not run")
    .print_and_assert();
}
