//! Booting the lab VM: `qemu-system-x86_64 -accel tcg` (no KVM here), 2 vCPUs,
//! 1 GiB, no network device. The console (ttyS0) goes to a log file, the report
//! port (ttyS1, see [`crate::wire`]) to qemu's stdout, read line by line with a
//! deadline per phase: boot, then each scenario in turn.
use super::kernel::Kernel;
use crate::scenario::Scenario;
use crate::wire::GuestLine;
use anyhow::{Context, Result};
use lvs_proto::v1::{GuestReady, ScenarioReport};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";
/// Console lines quoted in the failure of a scenario that never reported.
const CONSOLE_TAIL_LINES: usize = 40;

/// What one boot produced.
#[derive(Debug, Clone)]
pub struct Boot {
    /// qemu start to the guest's ready line; `None` if it never came.
    pub boot_time: Option<Duration>,
    pub ready: Option<GuestReady>,
    /// One per requested scenario, in order; those that never reported are
    /// failed reports saying why, with the console tail.
    pub reports: Vec<ScenarioReport>,
    pub total: Duration,
}

fn base_args(kernel: &Kernel, initrd: &Path, append: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-accel",
        "tcg",
        "-m",
        "1024",
        "-smp",
        "2",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-nic",
        "none",
        "-kernel",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(kernel.vmlinuz.clone().into());
    args.push("-initrd".into());
    args.push(initrd.into());
    args.push("-append".into());
    args.push(format!("console=ttyS0 panic=-1 quiet {append}").into());
    args
}

/// Boots with the console on this terminal (ttyS0 = stdio, Ctrl-A X quits qemu).
pub fn interactive(kernel: &Kernel, initrd: &Path, append: &str) -> Result<ExitStatus> {
    Command::new(QEMU)
        .args(base_args(kernel, initrd, append))
        .args(["-serial", "mon:stdio", "-serial", "null"])
        .status()
        .with_context(|| format!("cannot start {QEMU}"))
}

/// Boots, runs `scenarios` (named on the kernel command line) and collects their
/// reports. A scenario that does not report within its timeout gets the VM killed.
pub fn run_scenarios(
    kernel: &Kernel,
    initrd: &Path,
    console_log: &Path,
    scenarios: &[&Scenario],
    boot_timeout: Duration,
) -> Result<Boot> {
    let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
    let append = format!("lvs.mode=run lvs.scenarios={}", names.join(","));
    let started = Instant::now();
    let mut child = Command::new(QEMU)
        .args(base_args(kernel, initrd, &append))
        .arg("-serial")
        .arg(format!("file:{}", console_log.display()))
        .args(["-serial", "stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}: run deploy/lab/install-deps"))?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut boot = Boot {
        boot_time: None,
        ready: None,
        reports: Vec::new(),
        total: Duration::ZERO,
    };
    let mut protocol_errors = Vec::new();
    let mut deadline = started + boot_timeout;
    let why_stopped = loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => match GuestLine::parse(&line) {
                Ok(Some(GuestLine::Ready(ready))) => {
                    boot.boot_time = Some(started.elapsed());
                    boot.ready = Some(ready);
                    deadline = next_deadline(scenarios, 0);
                }
                Ok(Some(GuestLine::Report(mut report))) => {
                    report.boot_ms = boot.boot_time.unwrap_or_default().as_millis() as u64;
                    boot.reports.push(report);
                    deadline = next_deadline(scenarios, boot.reports.len());
                }
                Ok(Some(GuestLine::Done)) => break None,
                Ok(None) => {}
                Err(e) => protocol_errors.push(format!("{e:#}")),
            },
            Err(RecvTimeoutError::Timeout) => {
                let phase = match (&boot.ready, scenarios.get(boot.reports.len())) {
                    (None, _) => format!(
                        "the guest was not ready within {} s",
                        boot_timeout.as_secs()
                    ),
                    (Some(_), Some(s)) => {
                        format!("{} did not report within {} s", s.name, s.timeout_secs)
                    }
                    (Some(_), None) => "the guest did not finish".to_string(),
                };
                break Some(format!("VM killed at deadline: {phase}"));
            }
            Err(RecvTimeoutError::Disconnected) => break Some(String::new()),
        }
    };
    let status = finish(
        &mut child,
        why_stopped.as_ref().is_some_and(|w| !w.is_empty()),
    )?;
    boot.total = started.elapsed();
    if boot.reports.len() < scenarios.len() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let reason = match why_stopped {
            Some(w) if !w.is_empty() => w,
            _ => format!("VM exited ({status}) before reporting {}", stderr.trim()),
        };
        let tail = console_tail(console_log);
        let errors = protocol_errors.join("; ");
        for s in &scenarios[boot.reports.len()..] {
            boot.reports.push(ScenarioReport {
                name: s.name.to_string(),
                failure: format!(
                    "{reason}{}\n--- console tail ---\n{tail}",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" (bad report lines: {errors})")
                    }
                ),
                boot_ms: boot.boot_time.unwrap_or_default().as_millis() as u64,
                ..Default::default()
            });
        }
    }
    Ok(boot)
}

/// Deadline for the report of scenario `index`, counted from now.
fn next_deadline(scenarios: &[&Scenario], index: usize) -> Instant {
    // After the last report the guest only has to say it is done and power off.
    let timeout = scenarios
        .get(index)
        .map_or(Duration::from_secs(30), |s| s.timeout());
    Instant::now() + timeout
}

/// Waits for qemu to exit (killing it at once if `kill`, else after a grace period).
fn finish(child: &mut Child, kill: bool) -> Result<ExitStatus> {
    let grace = Instant::now() + Duration::from_secs(if kill { 0 } else { 30 });
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= grace {
            let _ = child.kill();
            return Ok(child.wait()?);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of the console log.
pub fn console_tail(console_log: &Path) -> String {
    let text = std::fs::read(console_log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")
}
