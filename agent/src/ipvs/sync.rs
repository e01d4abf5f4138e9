//! Connection-sync daemons. Every node runs a backup daemon with syncid 0 (which
//! accepts every master's syncid) at all times, so it holds the connections of
//! whichever node owns a VIP group when it takes the group over; while it owns at
//! least one group, and for the sync catch-up after it released its last, it also
//! runs a master with its own syncid (the cluster stage decides, `owns_any`). A
//! network namespace runs at most one daemon of each state. The decision is pure ([`desired`],
//! [`plan`]); [`reconcile`] is the thin shell.

use std::net::IpAddr;

use tracing::{error, info};

use super::client::IpvsClient;
use super::error::Error;
use super::model::{SyncDaemon, SyncState};
use crate::config::{NodeConfig, SyncConfig};

/// One change to the running daemons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOp {
    Start(SyncDaemon),
    Stop(SyncState),
}

/// The daemons this node should run: the backup always, the master while it owns
/// a VIP group or lingers after its last (`owns_any`).
pub fn desired(node: &NodeConfig, sync: &SyncConfig, owns_any: bool) -> Vec<SyncDaemon> {
    let daemon = |state, syncid| SyncDaemon {
        state,
        mcast_ifname: node.interface.clone(),
        syncid,
        maxlen: sync.maxlen,
        mcast_group: Some(sync.mcast_group),
        mcast_port: Some(sync.mcast_port),
        mcast_ttl: Some(sync.mcast_ttl),
    };
    let mut out = vec![daemon(SyncState::Backup, 0)];
    if owns_any {
        out.push(daemon(SyncState::Master, node.syncid));
    }
    out
}

/// The message size the kernel runs a daemon with when asked for `maxlen`: it
/// clamps it between 1024 (backup) or 1 (master) and 65535 minus the IP and UDP
/// headers (`start_sync_thread`).
fn kernel_maxlen(d: &SyncDaemon, maxlen: u16) -> u16 {
    let headers = match d.mcast_group {
        Some(IpAddr::V6(_)) => 40 + 8,
        _ => 20 + 8,
    };
    let least = match d.state {
        SyncState::Backup => 1024,
        SyncState::Master => 1,
    };
    maxlen.clamp(least, u16::MAX - headers)
}

/// Whether a running daemon already is the wanted one. A dump reports every field;
/// an unset wanted `maxlen` is the kernel's choice (from the MTU), and kernels
/// that do not report group, port or ttl use the defaults.
fn matches(want: &SyncDaemon, have: &SyncDaemon) -> bool {
    let or_default = |d: &SyncDaemon| {
        (
            d.mcast_group.unwrap_or(SyncDaemon::DEFAULT_GROUP.into()),
            d.mcast_port.unwrap_or(SyncDaemon::DEFAULT_PORT),
            d.mcast_ttl.unwrap_or(1),
        )
    };
    want.state == have.state
        && want.mcast_ifname == have.mcast_ifname
        && want.syncid == have.syncid
        && want
            .maxlen
            .is_none_or(|m| have.maxlen == Some(kernel_maxlen(want, m)))
        && or_default(want) == or_default(have)
}

/// Stops what is not wanted, restarts what differs (a daemon cannot be changed in
/// place), starts what is missing; matching daemons are adopted untouched.
pub fn plan(desired: &[SyncDaemon], actual: &[SyncDaemon]) -> Vec<SyncOp> {
    let mut ops = Vec::new();
    for state in [SyncState::Master, SyncState::Backup] {
        let want = desired.iter().find(|d| d.state == state);
        let have = actual.iter().find(|d| d.state == state);
        match (want, have) {
            (Some(w), Some(h)) if matches(w, h) => {}
            (Some(w), have) => {
                if have.is_some() {
                    ops.push(SyncOp::Stop(state));
                }
                ops.push(SyncOp::Start(w.clone()));
            }
            (None, Some(_)) => ops.push(SyncOp::Stop(state)),
            (None, None) => {}
        }
    }
    ops
}

fn describe(d: &SyncDaemon) -> String {
    let mut s = format!(
        "{} sync daemon on {} syncid {}",
        d.state, d.mcast_ifname, d.syncid
    );
    if let (Some(g), Some(p)) = (d.mcast_group, d.mcast_port) {
        s.push_str(&format!(" group {g} port {p}"));
    }
    s
}

/// Reads the running daemons and applies [`plan`]; returns the failures (each
/// already logged), to be retried at the next pass. A failed stop skips the start
/// that would replace it.
pub async fn reconcile(client: &IpvsClient, desired: &[SyncDaemon]) -> Result<Vec<Error>, Error> {
    let actual = client.sync_daemons().await?;
    let mut failed = Vec::new();
    let mut stuck = Vec::new();
    for op in plan(desired, &actual) {
        let (what, result) = match &op {
            SyncOp::Stop(state) => (
                format!("stop {state} sync daemon"),
                client.stop_sync_daemon(*state).await,
            ),
            SyncOp::Start(d) if stuck.contains(&d.state) => continue,
            SyncOp::Start(d) => (
                format!("start {}", describe(d)),
                client.start_sync_daemon(d).await,
            ),
        };
        match result {
            Ok(()) => info!("ipvs: {what}"),
            Err(e) => {
                error!("ipvs: cannot {what}: {e} (retrying at the next pass)");
                if let SyncOp::Stop(state) = op {
                    stuck.push(state);
                }
                failed.push(e);
            }
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node() -> NodeConfig {
        let text =
            "[node]\nid = \"lb1\"\ninterface = \"ens18\"\naddress = \"172.16.0.10\"\nsyncid = 7\n";
        crate::config::parse(text).unwrap().node.unwrap()
    }

    #[test]
    fn backup_always_master_while_owning() {
        let sync = SyncConfig::default();
        let idle = desired(&node(), &sync, false);
        assert_eq!(idle.len(), 1);
        assert_eq!((idle[0].state, idle[0].syncid), (SyncState::Backup, 0));
        let owning = desired(&node(), &sync, true);
        assert_eq!(
            owning
                .iter()
                .map(|d| (d.state, d.syncid))
                .collect::<Vec<_>>(),
            [(SyncState::Backup, 0), (SyncState::Master, 7)]
        );
        assert_eq!(owning[1].mcast_ifname, "ens18");
        assert_eq!(owning[1].mcast_port, Some(8848));
    }

    #[test]
    fn running_daemons_are_adopted_with_kernel_defaults() {
        let want = desired(&node(), &SyncConfig::default(), true);
        // As a dump reports them: maxlen chosen by the kernel, defaults filled in.
        let have: Vec<_> = want
            .iter()
            .map(|d| SyncDaemon {
                maxlen: Some(1452),
                ..d.clone()
            })
            .collect();
        assert_eq!(plan(&want, &have), []);
        let old_kernel: Vec<_> = want
            .iter()
            .map(|d| SyncDaemon {
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                ..d.clone()
            })
            .collect();
        assert_eq!(plan(&want, &old_kernel), []);
    }

    #[test]
    fn a_clamped_maxlen_is_no_change() {
        let sync = SyncConfig {
            maxlen: Some(500),
            ..SyncConfig::default()
        };
        let want = desired(&node(), &sync, true);
        let mut have = want.clone();
        have[0].maxlen = Some(1024); // the backup's floor
        assert_eq!(plan(&want, &have), []);
        have[1].maxlen = Some(1024); // a master keeps 500
        assert_eq!(
            plan(&want, &have),
            [
                SyncOp::Stop(SyncState::Master),
                SyncOp::Start(want[1].clone())
            ]
        );
    }

    #[test]
    fn changed_daemons_restart_and_unwanted_stop() {
        let want = desired(&node(), &SyncConfig::default(), false);
        let mut have = desired(&node(), &SyncConfig::default(), true);
        have[0].mcast_ttl = Some(2);
        assert_eq!(
            plan(&want, &have),
            [
                SyncOp::Stop(SyncState::Master),
                SyncOp::Stop(SyncState::Backup),
                SyncOp::Start(want[0].clone()),
            ]
        );
    }

    proptest! {
        #[test]
        fn the_plan_converges(
            owns in any::<bool>(), ttl in 1u8..=3, maxlen in proptest::option::of(1000u16..1500),
            have_master in proptest::option::of((any::<u8>(), 1u8..=3)),
            have_backup in proptest::option::of((any::<u8>(), 1u8..=3)),
        ) {
            let sync = SyncConfig { mcast_ttl: ttl, maxlen, ..SyncConfig::default() };
            let want = desired(&node(), &sync, owns);
            let base = desired(&node(), &SyncConfig::default(), true);
            let mut have = Vec::new();
            for (state, spec) in [(SyncState::Master, have_master), (SyncState::Backup, have_backup)] {
                if let Some((syncid, ttl)) = spec {
                    let mut d = base.iter().find(|d| d.state == state).unwrap().clone();
                    d.syncid = syncid;
                    d.mcast_ttl = Some(ttl);
                    have.push(d);
                }
            }
            // Run the plan on the daemon table as the kernel would.
            for op in plan(&want, &have) {
                match op {
                    SyncOp::Stop(s) => {
                        prop_assert!(have.iter().any(|d| d.state == s));
                        have.retain(|d| d.state != s);
                    }
                    SyncOp::Start(mut d) => {
                        prop_assert!(have.iter().all(|h| h.state != d.state), "EEXIST");
                        d.maxlen = d.maxlen.map(|m| kernel_maxlen(&d, m));
                        have.push(d);
                    }
                }
            }
            prop_assert_eq!(plan(&want, &have), vec![]);
            prop_assert_eq!(have.len(), want.len());
        }
    }
}
