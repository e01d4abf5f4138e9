//! The agent's run loop (`lvs-agent run`): one task that reacts to the periodic
//! drift check, SIGHUP (reload the config files), ownership changes and
//! SIGTERM/SIGINT (exit). The control sockets are bound first (a second agent on
//! this node, or a bad `control_tls`, stops there with nothing changed); the cluster
//! stage (membership, heartbeats, VIP ownership, VRRP; only when the cluster has VIP
//! groups) starts before the IPVS stage's first pass, so a failure there stops the
//! agent before it changes any IPVS service; then the IPVS stage (services, sync
//! daemons, sysctls) makes its first pass and tells the cluster stage its backup sync
//! daemon listens: only from then on (plus `[sync] catch_up`) can the node be
//! elected. The cluster stage runs as its own task and drives `owns_any` (the sync
//! master runs while the node holds a group); the health task (`health::runner`) runs
//! the real servers' checks, and each change of a verdict is applied at once (the
//! pools follow, see `ipvs::desired`); the loop hands reloads to both, and on exit
//! releases its VIP groups.
//!
//! A config change is applied against the kernel state the agent last read or
//! wrote (no read: its writes alone); every `node.reconcile_interval` a drift
//! check reads the whole managed state and repairs what others changed. A pass
//! can take seconds at a large size, so signals are raced with it: SIGTERM and
//! SIGINT stop at once, SIGHUP abandons the pass and reloads (the next pass
//! then reads what the abandoned one may have changed).
//!
//! Stopping the agent leaves the kernel's IPVS services and sync daemons in
//! place, so the kernel keeps forwarding and no connection drops; a restarted
//! agent adopts matching entries without rewriting them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::cluster;
use crate::config::{self, ClusterConfig, NodeConfig};
use crate::control;
use crate::health::{self, CheckKey, Health};
use crate::ipvs::plan::Scope;
use crate::ipvs::reconcile::Reconciler;
use crate::ipvs::{desired, sync, sysctl, Error as IpvsError, IpvsClient};
use crate::membership::KeyRing;
use crate::metrics::Metrics;

/// A loaded config with what the IPVS and health stages derive from it.
struct Loaded {
    node: NodeConfig,
    cluster: ClusterConfig,
    scope: Scope,
    /// Every distinct health check.
    checks: BTreeSet<CheckKey>,
}

impl Loaded {
    fn read(files: &[PathBuf]) -> Result<Loaded, String> {
        let config = config::load_all(files).map_err(|e| e.to_string())?;
        let (Some(node), Some(cluster)) = (config.node, config.cluster) else {
            return Err("the config needs a [node] table and a [cluster] table".to_owned());
        };
        let loaded = Loaded {
            scope: desired::scope(&cluster),
            checks: cluster
                .services
                .iter()
                .flat_map(|s| {
                    s.real_servers
                        .iter()
                        .flat_map(|rs| health::spec::checks(s, rs))
                })
                .collect(),
            node,
            cluster,
        };
        release_freed_memory();
        Ok(loaded)
    }

    /// Drift checks, the first at `first`.
    fn tick(&self, first: Instant) -> Interval {
        let mut tick = interval_at(first, self.node.reconcile_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    }
}

/// Hands memory freed by the allocator back to the kernel. Loading a config
/// peaks at many times its size (about 110 MB for a 2.9 MB file of 10,000
/// services, mostly the TOML parser's tokens and spanned tables), and glibc
/// keeps what is freed in the middle of its heaps mapped: without this the
/// agent keeps about 60 MB after that load, with it under 30 MB.
#[allow(unsafe_code)] // malloc_trim has no safe wrapper.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer; it only returns free pages of
    // the allocator's own heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What a pass does.
#[derive(Clone, Copy, Debug)]
enum Pass {
    /// Read the whole managed state, then repair.
    DriftCheck,
    /// Apply a config change against what the agent knows of the kernel.
    Changes,
}

/// What the loop reacts to.
enum Event {
    Pass(Pass),
    /// SIGHUP.
    Reload,
    /// SIGTERM or SIGINT.
    Stop,
}

/// The longest a planned stop waits for the hand-over of its VIP groups: each one is a
/// few netlink calls and two datagrams, milliseconds on a healthy host.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// Runs until SIGTERM or SIGINT. Fails at start on a bad config, or when services
/// are configured and the kernel has no IPVS.
pub async fn run(config_files: &[PathBuf]) -> anyhow::Result<()> {
    let mut config = Loaded::read(config_files).map_err(anyhow::Error::msg)?;
    // The control sockets first: a second agent on this node, or a bad control_tls,
    // stops here, before anything is changed.
    let listeners = control::bind(&config.node).await?;
    let metrics = Metrics::new();
    let mut ipvs = IpvsStage::start(&config, Arc::clone(&metrics)).await?;
    let checks = health::runner::spawn(config.checks.clone());
    let mut verdicts = checks.verdicts();
    ipvs.health.verdicts = verdicts.borrow_and_update().clone();
    // Without VIP groups a director only runs IPVS, and needs no cluster key.
    let cluster = if config.cluster.vip_groups.is_empty() {
        None
    } else {
        Some(
            cluster::start(
                config.node.clone(),
                config.cluster.clone(),
                checks.verdicts(),
                Arc::clone(&metrics),
            )
            .await?,
        )
    };
    let _control = control::serve(
        listeners,
        control::Api::new(&config.node, cluster.clone()),
        Arc::clone(&metrics),
    );
    let _metrics_server = match config.node.metrics_listen {
        Some(addr) => Some(crate::metrics::serve(addr, metrics, cluster.clone()).await?),
        None => None,
    };
    // Without VIP groups the node owns none: the sync master never runs.
    let (_never_owns, mut owns_any) = watch::channel(false);
    if let Some(handle) = &cluster {
        owns_any = handle.owns_any();
    }
    // Services and the backup sync daemon before the node can be elected: it forwards,
    // and its sync catch-up counts from when the daemon listens.
    ipvs.pass(&config, *owns_any.borrow(), Pass::DriftCheck)
        .await;
    if let Some(handle) = &cluster {
        if handle.sync_listening().await.is_err() {
            error!("the cluster task has stopped");
        }
    }
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut tick = config.tick(Instant::now() + config.node.reconcile_interval);
    info!(
        "running as {} in cluster {:?}: {} services, {} distinct health checks, drift check every {:?}",
        config.node.id,
        config.cluster.name,
        config.cluster.services.len(),
        config.checks.len(),
        config.node.reconcile_interval
    );
    let mut next: Option<Event> = None;
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => tokio::select! {
                _ = tick.tick() => Event::Pass(Pass::DriftCheck),
                Ok(()) = owns_any.changed() => {
                    let owns_any = *owns_any.borrow_and_update();
                    info!("node owns a VIP group: {owns_any}");
                    ipvs.sync_daemons(&config, owns_any).await;
                    continue;
                }
                Ok(()) = verdicts.changed() => {
                    ipvs.health.verdicts = verdicts.borrow_and_update().clone();
                    Event::Pass(Pass::Changes)
                }
                _ = hup.recv() => Event::Reload,
                _ = term.recv() => Event::Stop,
                _ = int.recv() => Event::Stop,
            },
        };
        match event {
            Event::Stop => break,
            Event::Pass(pass) => {
                let running = ipvs.pass(&config, *owns_any.borrow(), pass);
                tokio::pin!(running);
                next = tokio::select! {
                    () = &mut running => None,
                    _ = hup.recv() => Some(Event::Reload),
                    _ = term.recv() => Some(Event::Stop),
                    _ = int.recv() => Some(Event::Stop),
                };
                if next.is_some() {
                    info!("ipvs: pass abandoned for a signal");
                }
                if let Pass::DriftCheck = pass {
                    // The next check a full period after this one, however long it took.
                    tick.reset();
                }
            }
            Event::Reload => match reload(config_files, &config, &mut ipvs).await {
                Ok((new, keys)) => {
                    info!(
                        "config reloaded: {} services, {} distinct health checks",
                        new.cluster.services.len(),
                        new.checks.len()
                    );
                    if new.checks != config.checks {
                        checks.set(new.checks.clone()).await;
                    }
                    if let Some(handle) = &cluster {
                        if let Some(keys) = keys {
                            if handle.set_keys(keys).await.is_err() {
                                error!("the cluster task has stopped");
                            }
                        }
                        if handle.reload(new.cluster.clone()).await.is_err() {
                            error!("the cluster task has stopped");
                        }
                    }
                    if new.node.reconcile_interval != config.node.reconcile_interval {
                        tick = new.tick(Instant::now() + new.node.reconcile_interval);
                    }
                    config = new;
                    next = Some(Event::Pass(Pass::Changes));
                }
                Err(e) => error!("reload rejected, keeping the running config:\n{e}"),
            },
        }
    }
    if let Some(handle) = &cluster {
        info!("handing VIP groups over and leaving the cluster (a second SIGTERM exits at once)");
        tokio::select! {
            done = handle.shutdown() => {
                if done.is_err() {
                    error!("the cluster task had already stopped");
                }
            }
            () = tokio::time::sleep(SHUTDOWN_BOUND) => {
                error!("hand-over not finished after {SHUTDOWN_BOUND:?}: exiting");
            }
            _ = term.recv() => warn!("second SIGTERM: exiting without finishing the hand-over"),
            _ = int.recv() => warn!("second SIGINT: exiting without finishing the hand-over"),
        }
    }
    info!("stopping; IPVS services and sync daemons stay in the kernel");
    Ok(())
}

/// Reads the files again; the running config is replaced only by a valid one that
/// the IPVS stage can serve.
async fn reload(
    files: &[PathBuf],
    old: &Loaded,
    ipvs: &mut IpvsStage,
) -> Result<(Loaded, Option<KeyRing>), String> {
    info!("SIGHUP: reloading {}", display_paths(files));
    let new = Loaded::read(files)?;
    let keys = cluster::check_reload((&old.node, &old.cluster), (&new.node, &new.cluster))?;
    ipvs.reconfigure(old, &new).await?;
    Ok((new, keys))
}

fn display_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The IPVS stage: services, sync daemons and sysctls.
struct IpvsStage {
    /// `None` only while no service is configured and the kernel has no IPVS.
    client: Option<IpvsClient>,
    /// Scope of services a reload removed from the config, still to be deleted;
    /// cleared after a pass that had no failure.
    retired: Scope,
    reconciler: Reconciler,
    /// The real servers' health: which of them the services' pools hold.
    health: Health,
    metrics: Arc<Metrics>,
}

impl IpvsStage {
    async fn start(config: &Loaded, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = match IpvsClient::connect().await {
            Ok(client) => Some(client),
            Err(IpvsError::FamilyNotFound) if config.cluster.services.is_empty() => {
                warn!(
                    "{}: running without IPVS (no services configured)",
                    IpvsError::FamilyNotFound
                );
                None
            }
            Err(e) => bail!(e),
        };
        let stage = IpvsStage {
            client,
            retired: Scope::default(),
            reconciler: Reconciler::default(),
            health: Health::default(),
            metrics,
        };
        stage.apply_sysctls(&config.cluster);
        Ok(stage)
    }

    /// Connects if the new config needs IPVS and notes what it no longer manages.
    async fn reconfigure(&mut self, old: &Loaded, new: &Loaded) -> Result<(), String> {
        if self.client.is_none() && !new.cluster.services.is_empty() {
            self.client = Some(IpvsClient::connect().await.map_err(|e| e.to_string())?);
        }
        self.retired = self.retired.union(&old.scope.difference(&new.scope));
        self.apply_sysctls(&new.cluster);
        Ok(())
    }

    fn apply_sysctls(&self, cluster: &ClusterConfig) {
        if self.client.is_some() {
            for e in sysctl::apply(Path::new(sysctl::DIR), &cluster.sync) {
                error!("ipvs: {e}");
            }
        }
    }

    async fn pass(&mut self, config: &Loaded, owns_any: bool, pass: Pass) {
        let Some(client) = &self.client else { return };
        let scope = config.scope.union(&self.retired);
        let desired = desired::services(&config.cluster, &mut self.health);
        let reconciler = &mut self.reconciler;
        let started = std::time::Instant::now();
        let done = match pass {
            Pass::DriftCheck => reconciler.check_drift(client, &desired, &scope).await,
            Pass::Changes => reconciler.apply_changes(client, &desired, &scope).await,
        };
        match done {
            Ok(report) => {
                let kind = match pass {
                    Pass::DriftCheck => "drift",
                    Pass::Changes => "changes",
                };
                self.metrics.reconciled(
                    kind,
                    started.elapsed(),
                    report.applied,
                    report.failed.len(),
                );
                if report.is_clean() {
                    self.retired = Scope::default();
                }
                debug!(
                    "ipvs: {pass:?} done: {} services read, {} applied, {} failed, {} skipped",
                    report.read,
                    report.applied,
                    report.failed.len(),
                    report.skipped
                );
            }
            Err(e) => {
                error!("ipvs: cannot read the kernel's services: {e} (retrying at the next pass)")
            }
        }
        self.sync_daemons(config, owns_any).await;
    }

    async fn sync_daemons(&self, config: &Loaded, owns_any: bool) {
        let Some(client) = &self.client else { return };
        let want = sync::desired(&config.node, &config.cluster.sync, owns_any);
        for (role, state) in [
            ("master", crate::ipvs::model::SyncState::Master),
            ("backup", crate::ipvs::model::SyncState::Backup),
        ] {
            self.metrics
                .sync_daemons
                .get_or_create(&crate::metrics::Role { role })
                .set(i64::from(want.iter().any(|d| d.state == state)));
        }
        if let Err(e) = sync::reconcile(client, &want).await {
            error!("ipvs: cannot read the sync daemons: {e} (retrying at the next pass)");
        }
    }
}
