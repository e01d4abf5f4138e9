//! Reconciling the kernel with the services the agent wants, two ways:
//! - [`Reconciler::apply_changes`], on a config or health change: plans against
//!   the [`KernelCache`] (the kernel state last read or written), so it reads
//!   only what the cache does not know and a change costs its writes alone;
//! - [`Reconciler::check_drift`], periodic: reads every managed service, which
//!   refreshes the cache, and repairs what someone else changed.
//!
//! Ops go in batches; each accepted op updates the cache, each failed one is
//! logged with its object and leaves its service unknown, read again before the
//! next plan. Only the destinations of a service that could not be added are
//! skipped, every other service goes on.

use std::collections::BTreeSet;

use tracing::{error, info};

use super::cache::KernelCache;
use super::client::IpvsClient;
use super::error::Error;
use super::model::{Op, ServiceKey};
use super::plan::{op_key, plan, Scope, VirtualService};

/// Sockets dumping destinations side by side in a full read.
pub const DUMP_SOCKETS: usize = 4;

/// What a pass did.
#[derive(Debug, Default)]
pub struct Report {
    /// Ops the kernel accepted.
    pub applied: usize,
    /// Ops the kernel refused, with why.
    pub failed: Vec<(Op, Error)>,
    /// Ops not sent because their service could not be added.
    pub skipped: usize,
    /// Services whose destinations were read from the kernel.
    pub read: usize,
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

/// The reconciler's memory of the kernel between passes.
#[derive(Debug)]
pub struct Reconciler {
    /// `None` until the first read, and after a pass was abandoned while
    /// writing (its outcome unknown).
    cache: Option<KernelCache>,
    dump_sockets: usize,
}

impl Default for Reconciler {
    fn default() -> Self {
        Reconciler::new(DUMP_SOCKETS)
    }
}

impl Reconciler {
    /// A reconciler whose full reads dump on `dump_sockets` sockets.
    pub fn new(dump_sockets: usize) -> Self {
        Reconciler {
            cache: None,
            dump_sockets,
        }
    }

    /// Makes the kernel match `desired` as far as the cache knows it: reads
    /// only services the cache does not cover or lost track of. `Err` only when
    /// the kernel could not be read (nothing was changed then).
    pub async fn apply_changes(
        &mut self,
        client: &IpvsClient,
        desired: &[VirtualService],
        scope: &Scope,
    ) -> Result<Report, Error> {
        // Taken while in use: a pass dropped halfway leaves no cache behind.
        let mut cache = self.cache.take().unwrap_or_default();
        let read = read_missing(client, &mut cache, desired, scope, self.dump_sockets).await?;
        let mut report = apply_plan(client, &plan_for(&cache, desired, scope), &mut cache).await;
        report.read = read;
        self.cache = Some(cache);
        Ok(report)
    }

    /// Reads every managed service from the kernel (a fresh cache), then
    /// plans and applies as [`Reconciler::apply_changes`] does.
    pub async fn check_drift(
        &mut self,
        client: &IpvsClient,
        desired: &[VirtualService],
        scope: &Scope,
    ) -> Result<Report, Error> {
        let mut fresh = KernelCache::default();
        let read = read_missing(client, &mut fresh, desired, scope, self.dump_sockets).await?;
        self.cache = None;
        let mut report = apply_plan(client, &plan_for(&fresh, desired, scope), &mut fresh).await;
        report.read = read;
        self.cache = Some(fresh);
        Ok(report)
    }
}

/// The plan from what `cache` knows to `desired`, looking only at the
/// services that differ.
fn plan_for(cache: &KernelCache, desired: &[VirtualService], scope: &Scope) -> Vec<Op> {
    let (want, have) = cache.differing(desired, scope);
    plan(&want, &have, scope)
}

/// Reads into `cache` what it needs to plan `desired` in `scope`: the services
/// it does not cover yet (one dump of the service list, then their
/// destinations) and those it lost track of. Returns how many were read.
async fn read_missing(
    client: &IpvsClient,
    cache: &mut KernelCache,
    desired: &[VirtualService],
    scope: &Scope,
    dump_sockets: usize,
) -> Result<usize, Error> {
    let mut read = 0;
    if !cache.covers_all(scope, desired.iter().map(|v| &v.service.key)) {
        let wanted: BTreeSet<ServiceKey> = desired.iter().map(|v| v.service.key).collect();
        let new: Vec<_> = client
            .services()
            .await?
            .into_iter()
            .filter(|s| {
                let key = &s.service.key;
                (scope.contains(key) || wanted.contains(key)) && !cache.covers(key)
            })
            .collect();
        let keys = new.iter().map(|s| s.service.key).collect();
        let dests = client.destinations_of(keys, dump_sockets).await?;
        read += new.len();
        let services = new
            .into_iter()
            .zip(dests)
            .map(|(s, d)| VirtualService::observed(s, d))
            .collect();
        cache.extend(scope, wanted, services);
    }
    let unknown: Vec<ServiceKey> = cache.unknown().copied().collect();
    for key in unknown {
        let service = match client.service(&key).await? {
            Some(s) => Some(VirtualService::observed(
                s,
                client.destinations(&key).await?,
            )),
            None => None,
        };
        read += 1;
        cache.refresh(key, service);
    }
    Ok(read)
}

/// Applies planned ops, logging one line per change or failure and recording
/// each outcome in `cache`. Ops go in batches ([`IpvsClient::apply_all`]), in
/// two rounds so that a failed service add holds back its destinations: first
/// every service op, then the destination ops of the services that exist. The
/// plan's order is kept within each round; no service op depends on a
/// destination op, so the split is safe.
pub async fn apply_plan(client: &IpvsClient, ops: &[Op], cache: &mut KernelCache) -> Report {
    let mut report = Report::default();
    let (service_ops, dest_ops): (Vec<Op>, Vec<Op>) = ops.iter().cloned().partition(|op| {
        matches!(
            op,
            Op::AddService(_) | Op::EditService(_) | Op::DeleteService(_)
        )
    });
    let results = client.apply_all(&service_ops).await;
    record(&mut report, cache, service_ops, results);
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
    record(&mut report, cache, dest_ops, results);
    report
}

fn record(
    report: &mut Report,
    cache: &mut KernelCache,
    ops: Vec<Op>,
    results: Vec<Result<(), Error>>,
) {
    for (op, result) in ops.into_iter().zip(results) {
        match result {
            Ok(()) => {
                info!("ipvs: {op}");
                cache.record(&op);
                report.applied += 1;
            }
            Err(e) => {
                error!("ipvs: cannot {op}: {e} (retrying at the next pass)");
                cache.invalidate(op_key(&op));
                report.failed.push((op, e));
            }
        }
    }
}
