//! The hand-over guard: for a while after this node takes a VIP, TCP segments of
//! connections its IPVS table does not know are dropped instead of answered with a
//! reset.
//!
//! Why: the previous holder's sync master sends a new connection 2 to 3 s after it
//! was established (the kernel flushes a partly filled sync buffer after 2 s, checked
//! every second), and re-sends every connection each `sync_refresh_period`. A
//! connection opened through it in those last seconds is unknown here when the VIP
//! moves; IPVS lets the segment through to the local stack, which holds the VIP and no
//! socket, and answers with a reset: the connection is lost although the sync message
//! carrying it is on its way. Dropped instead, the client retransmits; once the sync
//! message arrives IPVS forwards the retransmission to the real server the previous
//! holder chose, and the connection goes on.
//!
//! How: one nftables table, `inet lvs_mesh`, with a chain on the input hook at
//! priority 200, after IPVS's own input hooks (99 and 98): a segment reaches it only
//! when IPVS did not forward it. The chain drops TCP segments without SYN addressed to
//! a guarded target: a VIP and the port of a TCP service on it (other ports of the
//! VIP, a local service on it, are never touched). A target this node does not hold is
//! guarded with no end (its VIP is not local then, so nothing reaches the chain for
//! it), so taking it needs no write before traffic comes; taking it turns that into a
//! guard for the window (`sync.catch_up`), which the kernel then ends on its own. A VIP
//! re-announced after two masters met is guarded again for the window before the
//! announcement. After the window, an unknown segment gets its reset as before: a
//! connection the previous holder never synced (it crashed first) is told so instead
//! of hanging.
//!
//! The rules are written by `nft` (the nftables package), each change one atomic
//! transaction. Without `nft` or nf_tables the agent runs unguarded and says so once.
//! Ownership never waits on it: requests are queued without waiting (a full queue
//! drops the request, logged), a re-announcement waits at most `WAIT_AT_MOST`, and an
//! `nft` run is killed after `NFT_TIMEOUT`. The script is pure (`script`); the task is
//! the thin shell.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// The nftables table the agent owns (family `inet`); replaced at start.
pub const TABLE: &str = "lvs_mesh";

/// An `nft` run taking longer is killed (one transaction takes milliseconds; a TCG
/// VM's slowest seen was well under a second).
const NFT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a re-announcement waits for its guard: past it, the announcement goes
/// out and the guard follows when `nft` is done.
const WAIT_AT_MOST: Duration = Duration::from_secs(1);

/// Requests waiting for the task; a change of ownership makes one.
const QUEUE: usize = 256;

/// What is guarded: a VIP and the port of a TCP service on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Target {
    /// As an nftables concatenated element.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} . {}", self.addr, self.port)
    }
}

/// One change to a target's guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Guarded until told otherwise: a target this node does not hold.
    Always(Target),
    /// Guarded for this long from now, then not; zero: not guarded.
    For(Target, Duration),
    /// No longer configured: not guarded.
    Forget(Target),
}

fn set_of(target: &Target) -> &'static str {
    if target.addr.is_ipv6() {
        "guard6"
    } else {
        "guard4"
    }
}

/// The table with its sets and chain, replacing any left by an earlier run.
pub fn setup() -> String {
    format!(
        "add table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tset guard4 {{ type ipv4_addr . inet_service; flags timeout; }}\n\
         \tset guard6 {{ type ipv6_addr . inet_service; flags timeout; }}\n\
         \tchain guard {{\n\
         \t\ttype filter hook input priority 200; policy accept;\n\
         \t\tip daddr . tcp dport @guard4 tcp flags & syn == 0 counter drop\n\
         \t\tip6 daddr . tcp dport @guard6 tcp flags & syn == 0 counter drop\n\
         \t}}\n\
         }}\n"
    )
}

/// The transaction for `ops`. Each element is first added (a no-op when present) and
/// deleted, then added as wanted: valid whatever the kernel holds, including an
/// element whose timeout just ran out.
pub fn script(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        let (target, then) = match op {
            Op::Always(a) => (a, Some(String::new())),
            Op::For(a, d) if !d.is_zero() => (a, Some(format!(" timeout {}ms", d.as_millis()))),
            Op::For(a, _) | Op::Forget(a) => (a, None),
        };
        let set = set_of(target);
        out += &format!("add element inet {TABLE} {set} {{ {target} }}\n");
        out += &format!("delete element inet {TABLE} {set} {{ {target} }}\n");
        if let Some(timeout) = then {
            out += &format!("add element inet {TABLE} {set} {{ {target}{timeout} }}\n");
        }
    }
    out
}

/// Ends the guard: the table goes.
pub fn teardown() -> String {
    format!("delete table inet {TABLE}\n")
}

enum Request {
    Apply(Vec<Op>, Option<oneshot::Sender<()>>),
    Teardown(oneshot::Sender<()>),
}

/// The guard task's handle. Requests are applied in order; when the guard could not be
/// set up they do nothing.
#[derive(Clone)]
pub struct Guard {
    tx: mpsc::Sender<Request>,
}

impl Guard {
    /// Sets the table up with `targets` guarded (none held yet) and starts the task.
    pub fn start(targets: &BTreeSet<Target>) -> Guard {
        let (tx, rx) = mpsc::channel(QUEUE);
        let first: Vec<Op> = targets.iter().copied().map(Op::Always).collect();
        tokio::spawn(run(setup() + &script(&first), rx));
        Guard { tx }
    }

    /// Queues `ops`, not waiting for the kernel.
    pub fn apply(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            self.queue(Request::Apply(ops, None));
        }
    }

    /// Applies `ops` and waits until the kernel has them (or the guard is off), at
    /// most `WAIT_AT_MOST`.
    pub async fn apply_now(&self, ops: Vec<Op>) {
        let (done, wait) = oneshot::channel();
        if self.queue(Request::Apply(ops, Some(done))) {
            let _ = tokio::time::timeout(WAIT_AT_MOST, wait).await;
        }
    }

    /// Removes the table, waiting for it at most `NFT_TIMEOUT`.
    pub async fn teardown(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue(Request::Teardown(done)) {
            let _ = tokio::time::timeout(NFT_TIMEOUT, wait).await;
        }
    }

    fn queue(&self, request: Request) -> bool {
        match self.tx.try_send(request) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("hand-over guard: {QUEUE} changes already waiting for nft: one dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

async fn run(setup: String, mut rx: mpsc::Receiver<Request>) {
    let on = match nft(&setup).await {
        Ok(()) => {
            info!(table = TABLE, "hand-over guard set up (nftables)");
            true
        }
        Err(e) => {
            warn!(
                "hand-over guard off: {e}; connections a previous holder accepted in its last \
                 seconds can be reset when this node takes its VIPs (install nftables)"
            );
            false
        }
    };
    while let Some(request) = rx.recv().await {
        match request {
            Request::Apply(ops, done) => {
                if on {
                    if let Err(e) = nft(&script(&ops)).await {
                        warn!(?ops, "hand-over guard: {e}");
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Request::Teardown(done) => {
                if on {
                    if let Err(e) = nft(&teardown()).await {
                        warn!("hand-over guard: removing table {TABLE}: {e}");
                    }
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Runs one `nft -f -` transaction, killed after `NFT_TIMEOUT`.
async fn nft(script: &str) -> Result<(), String> {
    tokio::time::timeout(NFT_TIMEOUT, run_nft(script))
        .await
        .unwrap_or_else(|_| Err(format!("nft did not finish in {NFT_TIMEOUT:?}: killed")))
}

async fn run_nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(addr: &str, port: u16) -> Target {
        Target {
            addr: addr.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn each_op_is_add_delete_then_the_wanted_element() {
        let ops = [
            Op::Always(t("192.0.2.10", 80)),
            Op::For(t("2001:db8::10", 443), Duration::from_secs(6)),
            Op::For(t("192.0.2.11", 80), Duration::ZERO),
            Op::Forget(t("192.0.2.12", 25)),
        ];
        assert_eq!(
            script(&ops),
            "add element inet lvs_mesh guard4 { 192.0.2.10 . 80 }\n\
             delete element inet lvs_mesh guard4 { 192.0.2.10 . 80 }\n\
             add element inet lvs_mesh guard4 { 192.0.2.10 . 80 }\n\
             add element inet lvs_mesh guard6 { 2001:db8::10 . 443 }\n\
             delete element inet lvs_mesh guard6 { 2001:db8::10 . 443 }\n\
             add element inet lvs_mesh guard6 { 2001:db8::10 . 443 timeout 6000ms }\n\
             add element inet lvs_mesh guard4 { 192.0.2.11 . 80 }\n\
             delete element inet lvs_mesh guard4 { 192.0.2.11 . 80 }\n\
             add element inet lvs_mesh guard4 { 192.0.2.12 . 25 }\n\
             delete element inet lvs_mesh guard4 { 192.0.2.12 . 25 }\n"
        );
    }

    #[test]
    fn the_chain_runs_after_ipvs_input_hooks() {
        // IPVS hooks LOCAL_IN at NF_IP_PRI_NAT_SRC - 2 and - 1 (98, 99): a later
        // priority sees only what IPVS let through.
        assert!(setup().contains("hook input priority 200;"));
    }
}
