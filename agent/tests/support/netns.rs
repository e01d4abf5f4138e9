//! Primitives the namespace labs share: `ip` commands, the root check, namespace
//! and bridge wiring, and polling.

use std::process::Command;
use std::time::{Duration, Instant};

/// `ip ARGS...`, panicking on failure; returns stdout.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics unless this process may create namespaces (CAP_SYS_ADMIN): a test that needs
/// root fails without it rather than passing without having run.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces and needs root: run it as root \
         (e.g. `sudo -E cargo test`)"
    );
}

/// Panics unless `program` runs (`program --version`): a test that needs it fails
/// with the reason rather than timing out on a process that never started.
pub fn require_program(program: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "this test needs `{program}` installed (Debian: apt-get install {program})"
    );
}

/// Creates namespace `ns` with `lo` up. Duplicate address detection is off for the
/// links created later, so link-local IPv6 is usable at once.
pub fn add_ns(ns: &str) {
    ip(&["netns", "add", ns]);
    ip(&[
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.default.accept_dad=0",
    ]);
    ip(&["-n", ns, "link", "set", "lo", "up"]);
}

/// Creates namespace `ns` holding bridge `br0`. Multicast snooping is off, so VRRP
/// reaches every port.
pub fn add_bridge_ns(ns: &str) {
    ip(&["netns", "add", ns]);
    ip(&[
        "-n",
        ns,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
    ip(&["-n", ns, "link", "set", "br0", "up"]);
}

/// Adds `eth0` (MAC `mac`) in `ns`, its veth peer `port` enslaved to `br0` in `bridge_ns`.
pub fn plug(ns: &str, mac: &str, bridge_ns: &str, port: &str) {
    ip(&[
        "-n", ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", port,
        "netns", bridge_ns,
    ]);
    ip(&["-n", bridge_ns, "link", "set", port, "master", "br0", "up"]);
}

/// Deletes namespace `ns`, ignoring failure (cleanup on drop).
pub fn del_ns(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// Polls `check` every 50 ms until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it holds; panics with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    if poll(limit, || check().then_some(())).is_none() {
        panic!("timed out after {limit:?} waiting for {what}");
    }
}

/// Moves the calling thread into namespace `ns` (a client thread of a test).
pub fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}
