//! The runner inside the VM (`lvs-lab-guest run`, started by `/init` once the
//! modules are loaded): reads the scenario names from the kernel command line,
//! announces itself, runs each scenario and sends its report over the [`wire`].
//!
//! [`wire`]: crate::wire
use crate::scenario;
use crate::scenarios;
use crate::wire::GuestLine;
use anyhow::{Context, Result};
use lvs_proto::v1::{GuestReady, ScenarioReport};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Kernel command-line parameter: comma-separated scenario names.
pub const SCENARIOS_PARAM: &str = "lvs.scenarios";
/// Kernel command-line parameter: `run` (default) or `shell`.
pub const MODE_PARAM: &str = "lvs.mode";
/// The report port: the VM's second serial port.
pub const REPORT_PORT: &str = "/dev/ttyS1";
/// Written by the initramfs builder: one module file name per line, in load order.
pub const MODULE_ORDER: &str = "/mods/order";

/// The value of `key=value` on a kernel command line.
pub fn cmdline_param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Scenario names from a kernel command line (empty if none).
pub fn scenario_names(cmdline: &str) -> Vec<String> {
    cmdline_param(cmdline, SCENARIOS_PARAM)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Module names (as /proc/modules spells them) of the files in `order`.
pub fn module_names(order: &str) -> Vec<String> {
    order
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|f| f.trim().split(".ko").next().unwrap_or(f).replace('-', "_"))
        .collect()
}

/// Runs the scenarios named on the kernel command line; reports go to the report port.
pub fn run(tool: &Path) -> Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("read /proc/cmdline")?;
    let mut port = OpenOptions::new()
        .write(true)
        .open(REPORT_PORT)
        .with_context(|| format!("open report port {REPORT_PORT}"))?;
    let mut send = |line: GuestLine| -> Result<()> {
        writeln!(port, "{}", line.encode())?;
        port.flush().context("write report port")
    };
    send(GuestLine::Ready(ready()?))?;
    for name in scenario_names(&cmdline) {
        let report = match scenarios::find(&name) {
            Some(s) => scenario::run(s, tool, true),
            None => ScenarioReport {
                name: name.clone(),
                failure: format!(
                    "no scenario {name:?}; known: {}",
                    scenarios::names().join(" ")
                ),
                ..Default::default()
            },
        };
        eprintln!(
            "lvs-lab: {name}: {}",
            if report.passed { "PASSED" } else { "FAILED" }
        );
        send(GuestLine::Report(report))?;
    }
    send(GuestLine::Done)
}

fn ready() -> Result<GuestReady> {
    let uptime = std::fs::read_to_string("/proc/uptime").context("read /proc/uptime")?;
    let uptime_s: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("/proc/uptime: {uptime:?}"))?;
    let loaded = std::fs::read_to_string("/proc/modules").context("read /proc/modules")?;
    let loaded: Vec<&str> = loaded
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let order = std::fs::read_to_string(MODULE_ORDER).unwrap_or_default();
    let (loaded_modules, failed_modules) = module_names(&order)
        .into_iter()
        .partition(|m| loaded.contains(&m.as_str()));
    Ok(GuestReady {
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("read kernel release")?
            .trim()
            .to_string(),
        uptime_ms: (uptime_s * 1000.0) as u64,
        loaded_modules,
        failed_modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cmdline_and_module_order() {
        let cmdline =
            "console=ttyS0 quiet lvs.mode=run lvs.scenarios=seed_dr,selftest_ok, panic=-1";
        assert_eq!(scenario_names(cmdline), ["seed_dr", "selftest_ok"]);
        assert_eq!(cmdline_param(cmdline, MODE_PARAM), Some("run"));
        assert!(scenario_names("console=ttyS0").is_empty());
        assert_eq!(
            module_names("nf_defrag_ipv4.ko\nip_vs_rr.ko\nsome-mod.ko\n\n"),
            ["nf_defrag_ipv4", "ip_vs_rr", "some_mod"]
        );
    }
}
