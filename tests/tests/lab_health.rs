//! Health checks on a real IPVS kernel, in the lab VM, in one boot:
//! - `health_seed`: the seed's HTTP_GET run by lvs-agent on lb1/lb2: rs1's web server
//!   stops (rs1 leaves both directors' tables within the check's bound, no new
//!   connection fails, `lvs-agent status` shows it down on both with the reason) and
//!   starts again (rs1 back with its weight);
//! - `health_kinds`: tcp_check with inhibit_on_failure, ssl_get against a self-signed
//!   certificate, misc_check with misc_dynamic, dns_check, quorum with a sorry server:
//!   rs1 fails and recovers, every table follows within the checks' bounds.
use lvs_tests::vm::Lab;

#[test]
fn real_servers_leave_and_return_with_their_checks_in_the_vm() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).expect("lab cannot start");
    lab.run(&["health_seed", "health_kinds"])
        .expect("VM did not run")
        .print_and_assert();
}
