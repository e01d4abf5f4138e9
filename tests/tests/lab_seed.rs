//! The seed's job on a real IPVS kernel, in the lab VM, in one boot:
//! - `seed_dr`: the seed's DR services (wrr exactly 1:2, lc over both, replies
//!   bypass lb1);
//! - `seed_ha`: lvs-agent on lb1/lb2 from the seed example files, 100 long-lived
//!   connections per VIP at 10 and 1 lines/s through a crash of lb1, a batch opened
//!   during the outage and the fail-back: none lost, never two holders;
//! - `seed_ha_mixed`: lb1 lvs-agent next to lb2 running the seed's keepalived.conf
//!   and notify script: crash and fail-back of each side, none lost.
use lvs_tests::vm::Lab;

#[test]
fn seed_services_and_failover_in_the_vm() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).expect("lab cannot start");
    lab.run(&["seed_dr", "seed_ha", "seed_ha_mixed"])
        .expect("VM did not run")
        .print_and_assert();
}
