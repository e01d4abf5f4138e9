//! Every scenario the lab can run, by name. To add one: a `run(&mut Ctx)` function
//! in a module here and one line in [`ALL`].
use crate::scenario::Scenario;

mod seed_dr;
mod selftest;

pub const ALL: &[Scenario] = &[
    Scenario {
        name: "seed_dr",
        about:
            "seed services on lb1 (DR, rs1 w1 / rs2 w2): wrr 1:2, lc, replies bypass the director",
        timeout_secs: 300,
        run: seed_dr::run,
    },
    Scenario {
        name: "demo",
        about: "the README demo (same as seed_dr)",
        timeout_secs: 300,
        run: seed_dr::run,
    },
    Scenario {
        name: "selftest_ok",
        about: "harness self-test: passes",
        timeout_secs: 30,
        run: selftest::ok,
    },
    Scenario {
        name: "selftest_panic",
        about: "harness self-test: panics (must be reported failed, later scenarios still run)",
        timeout_secs: 30,
        run: selftest::panics,
    },
    Scenario {
        name: "selftest_hang",
        about: "harness self-test: never returns (the host must kill the VM at its deadline)",
        timeout_secs: 5,
        run: selftest::hangs,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// Names of all scenarios, for error messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(find("seed_dr").unwrap().name, "seed_dr");
        assert!(find("nope").is_none());
    }
}
