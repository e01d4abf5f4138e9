//! The lab harness itself: in one boot, a panicking scenario is reported failed,
//! the next one still runs, and a hanging one gets the VM killed at its deadline
//! with the console tail in its report.
use lvs_tests::vm::Lab;

#[test]
fn panics_and_hangs_are_reported_not_lost() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).expect("lab cannot start");
    let run = lab
        .run(&["selftest_panic", "selftest_ok", "selftest_hang"])
        .expect("VM did not run");
    run.print(true);
    let names: Vec<&str> = run.reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["selftest_panic", "selftest_ok", "selftest_hang"]);

    let panicked = &run.reports[0];
    assert!(!panicked.passed);
    assert!(
        panicked.failure.contains("panicked") && panicked.failure.contains("on purpose"),
        "{}",
        panicked.failure
    );
    assert!(
        panicked.output.contains("about to panic"),
        "{}",
        panicked.output
    );

    assert!(run.reports[1].passed, "{}", run.reports[1].failure);

    let hung = &run.reports[2];
    assert!(!hung.passed);
    assert!(
        hung.failure
            .contains("VM killed at deadline: selftest_hang did not report"),
        "{}",
        hung.failure
    );
    assert!(
        hung.failure.contains("about to hang on purpose"),
        "console tail missing: {}",
        hung.failure
    );
    assert!(run.boot_time.is_some() && hung.boot_ms > 0);
    // The failures were expected: drop the kept console log and image.
    if let Some(dir) = &run.kept {
        std::fs::remove_dir_all(dir).expect("remove kept work dir");
    }
}
