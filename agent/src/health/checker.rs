//! One health check of one real server over time (pure): keepalived's checker loop.
//!
//! - A check runs every `delay_loop`, the next one counted from the end of the last.
//! - A real server that is up and fails gets `retry` more tries, `delay_before_retry`
//!   apart; only when they all fail is it down (keepalived's `retry` /
//!   `delay_before_retry`): a down server is seen within `delay_loop` + `retry` ×
//!   `delay_before_retry` + the probes' own time (each at most `connect_timeout`).
//! - One success brings a down server back. A down server's failures are not
//!   retried (as in keepalived): it comes back within `delay_loop` of answering again.
//! - `alpha`: start down until the first success; otherwise start up.
//! - The first check runs after `first_delay` (the runner spreads them over `warmup`,
//!   so 10,000 checks do not start in the same instant).
//! - A `misc_check` with `misc_dynamic` passes with a weight (exit code 2..255 = weight
//!   code − 2); a change of that weight is a change of verdict too.
//!
//! The runner performs the probes and feeds each outcome back with the clock.

/// The timing of one check, from its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timing {
    pub delay_loop_ms: u64,
    pub retry: u32,
    pub delay_before_retry_ms: u64,
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; `weight`: the weight a dynamic misc check gave.
    Pass { weight: Option<u32> },
    /// Failed, and why ("connect timeout after 3 s", "status 503").
    Fail(String),
}

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub up: bool,
    /// A dynamic misc check's weight, while up.
    pub weight: Option<u32>,
    /// The last failure seen, kept after the server comes back (for status).
    pub last_failure: Option<String>,
}

/// One check's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checker {
    verdict: Verdict,
    /// Failed tries in the current round (an up server's retries).
    failures: u32,
    next_at_ms: u64,
}

impl Checker {
    /// A new check, first probed at `now + first_delay`.
    pub fn new(alpha: bool, now_ms: u64, first_delay_ms: u64) -> Self {
        Checker {
            verdict: Verdict {
                up: !alpha,
                weight: None,
                last_failure: None,
            },
            failures: 0,
            next_at_ms: now_ms.saturating_add(first_delay_ms),
        }
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// When the next probe is due.
    pub fn next_at_ms(&self) -> u64 {
        self.next_at_ms
    }

    /// Takes the outcome of the probe that finished at `now`; schedules the next one.
    /// True when the verdict changed (up/down, or the dynamic weight).
    pub fn record(&mut self, outcome: Outcome, timing: &Timing, now_ms: u64) -> bool {
        let before = (self.verdict.up, self.verdict.weight);
        let delay = match outcome {
            Outcome::Pass { weight } => {
                self.failures = 0;
                self.verdict.up = true;
                self.verdict.weight = weight;
                timing.delay_loop_ms
            }
            Outcome::Fail(reason) => {
                self.verdict.last_failure = Some(reason);
                if self.verdict.up && self.failures < timing.retry {
                    self.failures += 1;
                    timing.delay_before_retry_ms
                } else {
                    self.failures = 0;
                    self.verdict.up = false;
                    self.verdict.weight = None;
                    timing.delay_loop_ms
                }
            }
        };
        self.next_at_ms = now_ms.saturating_add(delay);
        before != (self.verdict.up, self.verdict.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seed's check: delay_loop 6, retry 2, delay_before_retry 2.
    const SEED: Timing = Timing {
        delay_loop_ms: 6000,
        retry: 2,
        delay_before_retry_ms: 2000,
    };

    fn fail() -> Outcome {
        Outcome::Fail("connection refused".into())
    }

    const PASS: Outcome = Outcome::Pass { weight: None };

    #[test]
    fn an_up_server_is_down_after_its_retries_fail() {
        let mut c = Checker::new(false, 0, 1000);
        assert!(c.verdict().up);
        assert_eq!(c.next_at_ms(), 1000);
        assert!(!c.record(PASS, &SEED, 1000));
        assert_eq!(c.next_at_ms(), 7000);
        // Dies: first failure, then two retries 2 s apart.
        assert!(!c.record(fail(), &SEED, 7000));
        assert_eq!(c.next_at_ms(), 9000);
        assert!(!c.record(fail(), &SEED, 9000));
        assert_eq!(c.next_at_ms(), 11000);
        assert!(c.record(fail(), &SEED, 11000), "down after 1 + retry tries");
        assert!(!c.verdict().up);
        assert_eq!(
            c.verdict().last_failure.as_deref(),
            Some("connection refused")
        );
        // Down: no retries, the next try a delay_loop later; one pass brings it back.
        assert!(!c.record(fail(), &SEED, 17000));
        assert_eq!(c.next_at_ms(), 23000);
        assert!(c.record(PASS, &SEED, 23000));
        assert!(c.verdict().up);
        assert!(c.verdict().last_failure.is_some(), "kept for status");
    }

    #[test]
    fn a_pass_between_failures_resets_the_retries() {
        let mut c = Checker::new(false, 0, 0);
        c.record(fail(), &SEED, 0);
        c.record(fail(), &SEED, 2000);
        c.record(PASS, &SEED, 4000);
        assert!(!c.record(fail(), &SEED, 10000));
        assert!(!c.record(fail(), &SEED, 12000));
        assert!(c.verdict().up);
    }

    #[test]
    fn alpha_starts_down_until_the_first_success() {
        let mut c = Checker::new(true, 0, 500);
        assert!(!c.verdict().up);
        assert!(!c.record(fail(), &SEED, 500));
        assert_eq!(c.next_at_ms(), 6500);
        assert!(c.record(PASS, &SEED, 6500));
    }

    #[test]
    fn a_dynamic_weight_change_is_a_verdict_change() {
        let mut c = Checker::new(false, 0, 0);
        assert!(c.record(Outcome::Pass { weight: Some(5) }, &SEED, 0));
        assert!(!c.record(Outcome::Pass { weight: Some(5) }, &SEED, 6000));
        assert!(c.record(Outcome::Pass { weight: Some(7) }, &SEED, 12000));
        assert_eq!(c.verdict().weight, Some(7));
    }

    proptest! {
        /// Whatever the outcomes: the verdict is down exactly when the last
        /// `retry + 1` outcomes since the last pass all failed (or, with alpha, no
        /// pass yet); the next probe is always in the future; a change is reported
        /// exactly when the verdict changed.
        #[test]
        fn the_verdict_follows_the_outcomes(
            alpha in any::<bool>(),
            retry in 0u32..4,
            outcomes in proptest::collection::vec(any::<bool>(), 0..60),
        ) {
            let timing = Timing { delay_loop_ms: 1000, retry, delay_before_retry_ms: 100 };
            let mut c = Checker::new(alpha, 0, 10);
            let mut now = c.next_at_ms();
            let mut up = !alpha;
            let mut failures = 0;
            for pass in outcomes {
                let before = c.verdict().up;
                let changed = c.record(if pass { PASS } else { fail() }, &timing, now);
                if pass {
                    up = true;
                    failures = 0;
                } else if up {
                    failures += 1;
                    if failures > retry {
                        up = false;
                        failures = 0;
                    }
                }
                prop_assert_eq!(c.verdict().up, up);
                prop_assert_eq!(changed, before != up);
                prop_assert!(c.next_at_ms() > now);
                now = c.next_at_ms();
            }
        }
    }
}
