//! One reconcile pass against the kernel: read the services in scope, plan, apply
//! in batches, log each change. A failed op is logged with its object and left
//! for the next pass; only the destinations of a service that could not be added
//! are skipped, every other service goes on.

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

/// Applies planned ops, logging one line per change or failure. Ops go in
/// batches ([`IpvsClient::apply_all`]), in two rounds so that a failed service
/// add holds back its destinations: first every service op, then the
/// destination ops of the services that exist. The plan's order is kept within
/// each round; no service op depends on a destination op, so the split is safe.
pub async fn apply_plan(client: &IpvsClient, ops: &[Op]) -> Report {
    let mut report = Report::default();
    let (service_ops, dest_ops): (Vec<Op>, Vec<Op>) = ops.iter().cloned().partition(|op| {
        matches!(
            op,
            Op::AddService(_) | Op::EditService(_) | Op::DeleteService(_)
        )
    });
    let results = client.apply_all(&service_ops).await;
    record(&mut report, service_ops, results);
    let not_added: BTreeSet<ServiceKey> = report
        .failed
        .iter()
        .filter_map(|(op, _)| match op {
            Op::AddService(s) => Some(s.key),
            _ => None,
        })
        .collect();
    let (skipped, dest_ops): (Vec<Op>, Vec<Op>) = dest_ops
        .into_iter()
        .partition(|op| not_added.contains(&op_key(op)));
    report.skipped = skipped.len();
    let results = client.apply_all(&dest_ops).await;
    record(&mut report, dest_ops, results);
    report
}

fn record(report: &mut Report, ops: Vec<Op>, results: Vec<Result<(), Error>>) {
    for (op, result) in ops.into_iter().zip(results) {
        match result {
            Ok(()) => {
                info!("ipvs: {op}");
                report.applied += 1;
            }
            Err(e) => {
                error!("ipvs: cannot {op}: {e} (retrying at the next pass)");
                report.failed.push((op, e));
            }
        }
    }
}
