//! Quiet looks into a namespace for polling loops: the output is returned, not
//! written to the transcript (a poll every 200 ms would bury it).
use anyhow::{Context, Result};
use std::process::Command;

/// `argv`'s standard output in namespace `ns`.
pub fn quiet(ns: &str, argv: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .with_context(|| format!("run {} in {ns}", argv.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `vip` is on `ns`'s eth0.
pub fn holds(ns: &str, vip: &str) -> Result<bool> {
    Ok(quiet(ns, &["ip", "-o", "addr", "show", "dev", "eth0"])?.contains(&format!(" {vip}/")))
}

/// The IPVS sync master of `syncid` runs in `ns` (on eth0).
pub fn sync_master(ns: &str, syncid: usize) -> Result<bool> {
    let want = format!("master sync daemon (mcast=eth0, syncid={syncid},");
    Ok(quiet(ns, &["ipvsadm", "-l", "--daemon"])?.contains(&want))
}

/// Any IPVS sync master runs in `ns`.
pub fn any_sync_master(ns: &str) -> Result<bool> {
    Ok(quiet(ns, &["ipvsadm", "-l", "--daemon"])?
        .lines()
        .any(|l| l.starts_with("master sync daemon")))
}
