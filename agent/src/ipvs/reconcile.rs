//! One reconcile pass against the kernel: read the services in scope, plan, apply
//! op by op, log each change. A failed op is logged with its object and left for
//! the next pass; only the destinations of a service that could not be added are
//! skipped, every other service goes on.

use std::collections::BTreeSet;

use tracing::{error, info};

use super::client::IpvsClient;
use super::error::Error;
use super::model::{Op, ServiceKey};
use super::plan::{op_key, plan, Scope, VirtualService};

/// What a pass did.
#[derive(Debug, Default)]
pub struct Report {
    /// Ops the kernel accepted.
    pub applied: usize,
    /// Ops the kernel refused, with why.
    pub failed: Vec<(Op, Error)>,
    /// Ops not sent because their service could not be added.
    pub skipped: usize,
}

impl Report {
    /// Change requests sent to the kernel.
    pub fn writes(&self) -> usize {
        self.applied + self.failed.len()
    }

    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.skipped == 0
    }
}

/// The kernel's services in `scope` or in `desired`, with their destinations. Other
/// services' destinations are not even read.
pub async fn read_managed(
    client: &IpvsClient,
    desired: &[VirtualService],
    scope: &Scope,
) -> Result<Vec<VirtualService>, Error> {
    let wanted: BTreeSet<ServiceKey> = desired.iter().map(|v| v.service.key).collect();
    let mut out = Vec::new();
    for svc in client.services().await? {
        let key = svc.service.key;
        if scope.contains(&key) || wanted.contains(&key) {
            let dests = client.destinations(&key).await?;
            out.push(VirtualService::observed(svc, dests));
        }
    }
    Ok(out)
}

/// Reads the kernel, plans against `desired` and applies. `Err` only when the
/// kernel could not be read (nothing was changed then).
pub async fn reconcile_once(
    client: &IpvsClient,
    desired: &[VirtualService],
    scope: &Scope,
) -> Result<Report, Error> {
    let actual = read_managed(client, desired, scope).await?;
    Ok(apply_plan(client, &plan(desired, &actual, scope)).await)
}

/// Applies planned ops in order, logging one line per change or failure.
pub async fn apply_plan(client: &IpvsClient, ops: &[Op]) -> Report {
    let mut report = Report::default();
    let mut not_added = BTreeSet::new();
    for op in ops {
        if not_added.contains(&op_key(op)) {
            report.skipped += 1;
            continue;
        }
        match client.apply(op).await {
            Ok(()) => {
                info!("ipvs: {op}");
                report.applied += 1;
            }
            Err(e) => {
                error!("ipvs: cannot {op}: {e} (retrying at the next pass)");
                if let Op::AddService(s) = op {
                    not_added.insert(s.key);
                }
                report.failed.push((op.clone(), e));
            }
        }
    }
    report
}
