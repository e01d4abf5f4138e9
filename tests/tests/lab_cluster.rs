//! N directors on a real IPVS kernel, in the lab VM, in one boot:
//! - `demo`: the README's main job (lb1/lb2 from the seed example files, lb3 added
//!   with `lvs-agent join` and handed VI_1, kill -9 of VI_2's owner and its return):
//!   no connection lost, two holders at most one advert interval;
//! - `three_ha`: four directors, the owner of each group crashed and restarted in
//!   turn, a rolling restart, a fourth director joining and leaving: no connection
//!   lost, two holders at most one advert interval, each group's sync master on its
//!   owner.
use lvs_tests::vm::Lab;

#[test]
fn directors_join_crash_and_return_in_the_vm() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).expect("lab cannot start");
    lab.run(&["demo", "three_ha"])
        .expect("VM did not run")
        .print_and_assert();
}
