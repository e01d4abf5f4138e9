//! The seed's DR services on a real IPVS kernel, in the lab VM
//! (scenario `seed_dr`: wrr exactly 1:2, lc over both, replies bypass lb1).
use lvs_tests::vm::Lab;

#[test]
fn seed_dr_services_in_the_vm() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).expect("lab cannot start");
    lab.run(&["seed_dr"])
        .expect("VM did not run")
        .print_and_assert();
}
