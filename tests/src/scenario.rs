//! What a scenario is, the context it runs with, and running one into a report.
//!
//! Adding a scenario: write `pub fn run(ctx: &mut Ctx) -> anyhow::Result<()>` in a
//! module under `scenarios/` and add one [`Scenario`] line to
//! [`crate::scenarios::ALL`]. It then runs in the VM with
//! `Lab::run(&["name"])` (tests) or `deploy/lab/run name` (people).
use crate::shell::Shell;
use crate::topology::{Topology, TopologySpec};
use anyhow::{bail, Result};
use lvs_proto::v1::ScenarioReport;
use std::fmt::Display;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A named check run inside the lab VM.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// How long the host waits for its report before killing the VM.
    pub timeout_secs: u64,
    pub run: fn(&mut Ctx) -> Result<()>,
}

impl Scenario {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// What a scenario works with: a [`Shell`] whose transcript becomes the report's
/// output, and the path of the `lvs-lab-guest` binary (the HTTP client, see
/// [`crate::topology::Topology::build`]).
#[derive(Debug)]
pub struct Ctx {
    pub sh: Shell,
    guest_tool: PathBuf,
}

impl Ctx {
    pub fn new(guest_tool: PathBuf, echo: bool) -> Self {
        Ctx {
            sh: Shell::new(echo),
            guest_tool,
        }
    }

    /// The `lvs-lab-guest` binary (its directory also holds lvs-agent and lvs-cli).
    pub fn guest_tool(&self) -> &Path {
        &self.guest_tool
    }

    /// Builds `spec` (see [`Topology::build`]), recording into this transcript.
    pub fn topology(&mut self, spec: TopologySpec) -> Result<Topology> {
        Topology::build(spec, &self.guest_tool, &mut self.sh)
    }

    /// Records `CHECK ok|FAILED: what` and fails the scenario when `ok` is false.
    pub fn check(&mut self, ok: bool, what: impl Display) -> Result<()> {
        self.sh.note(format!(
            "CHECK {}: {what}",
            if ok { "ok" } else { "FAILED" }
        ));
        if !ok {
            bail!("check failed: {what}");
        }
        Ok(())
    }
}

/// The message and location of the last panic on this process (set by the hook
/// [`capture_panics`] installs), so a panicking scenario's report says where.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs a panic hook that remembers each panic's message and location (and
/// still prints it). Call once at program start.
pub fn capture_panics() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
        default(info);
    }));
}

/// Runs `scenario`; an error or a panic becomes a failed report that keeps the
/// transcript up to that point.
pub fn run(scenario: &Scenario, guest_tool: &Path, echo: bool) -> ScenarioReport {
    let mut ctx = Ctx::new(guest_tool.to_path_buf(), echo);
    ctx.sh.note(format!(
        "=== scenario {}: {}",
        scenario.name, scenario.about
    ));
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (scenario.run)(&mut ctx)));
    let duration_ms = started.elapsed().as_millis() as u64;
    let failure = match outcome {
        Ok(Ok(())) => String::new(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(payload) => {
            let hooked = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            format!("panicked: {}", hooked.unwrap_or(message))
        }
    };
    let passed = failure.is_empty();
    ctx.sh.note(format!(
        "=== scenario {}: {} in {:.1} s",
        scenario.name,
        if passed { "PASSED" } else { "FAILED" },
        duration_ms as f64 / 1000.0
    ));
    ScenarioReport {
        name: scenario.name.to_string(),
        passed,
        failure,
        duration_ms,
        output: ctx.sh.into_transcript(),
        boot_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(ctx: &mut Ctx) -> Result<()> {
        ctx.sh.note("before");
        ctx.check(1 + 1 == 3, "arithmetic")
    }

    fn panics(ctx: &mut Ctx) -> Result<()> {
        ctx.sh.note("before the panic");
        panic!("on purpose");
    }

    fn scenario(run: fn(&mut Ctx) -> Result<()>) -> Scenario {
        Scenario {
            name: "t",
            about: "test",
            timeout_secs: 1,
            run,
        }
    }

    #[test]
    fn error_and_panic_become_failed_reports_with_transcript() {
        let r = run(&scenario(fails), Path::new("/nonexistent"), false);
        assert!(!r.passed);
        assert_eq!(r.failure, "check failed: arithmetic");
        assert!(
            r.output.contains("before\nCHECK FAILED: arithmetic"),
            "{}",
            r.output
        );

        let r = run(&scenario(panics), Path::new("/nonexistent"), false);
        assert!(!r.passed);
        assert!(r.failure.starts_with("panicked: "), "{}", r.failure);
        assert!(r.failure.contains("on purpose"), "{}", r.failure);
        assert!(r.output.contains("before the panic"));

        let r = run(&scenario(|_| Ok(())), Path::new("/nonexistent"), false);
        assert!(r.passed && r.failure.is_empty());
    }
}
