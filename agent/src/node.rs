//! The agent's run loop (`lvs-agent run`): one task that reacts to the periodic
//! drift check, SIGHUP (reload the config files), cluster documents (`lvs-cli apply`,
//! or a peer's newer one, fetched by `fetch`; see `crate::document`), ownership
//! changes and SIGTERM/SIGINT (exit). Every new config goes through
//! `Running::adopt`. The control sockets are bound first (a second agent on
//! this node, or a bad `control_tls`, stops there with nothing changed); the cluster
//! stage (membership, heartbeats, VIP ownership, VRRP; only when the cluster has VIP
//! groups or the node a `cluster_store`) starts before the IPVS stage's first pass, so a failure there stops the
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

mod fetch;
mod sched;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::cluster::{self, ClusterHandle};
use crate::config::{self, ClusterConfig, NodeConfig};
use crate::control::{self, DocumentCall};
use crate::document::{self, Document, Offer, Stamp};
use crate::health::runner::HealthHandle;
use crate::health::{self, CheckKey, Health};
use crate::ipvs::plan::Scope;
use crate::ipvs::reconcile::Reconciler;
use crate::ipvs::{desired, sync, sysctl, Error as IpvsError, IpvsClient};
use crate::membership::SyncRunning;
use crate::metrics::Metrics;
use crate::notify;
use fetch::{spawn_fetch, Fetcher};

/// A loaded config with what the IPVS and health stages derive from it.
struct Loaded {
    node: NodeConfig,
    cluster: ClusterConfig,
    /// The cluster document the cluster part comes from (version 0: the config files).
    document: Document,
    scope: Scope,
    /// Every distinct health check.
    checks: BTreeSet<CheckKey>,
}

impl Loaded {
    /// The config files, with the cluster part from `cluster_store` once a document
    /// was applied there.
    fn read(files: &[PathBuf]) -> Result<Loaded, String> {
        let config = config::load_all(files).map_err(|e| e.to_string())?;
        let Some(node) = config.node else {
            return Err("the config needs a [node] table".to_owned());
        };
        let stored = match &node.cluster_store {
            Some(path) => document::read(path)?.map(|doc| (path, doc)),
            None => None,
        };
        let (cluster, document) = match (stored, config.cluster) {
            (Some((path, doc)), from_files) => {
                if from_files.is_some() {
                    warn!(
                        "the cluster part of {} is not used: node.cluster_store {} holds the applied cluster document (version {})",
                        display_paths(files),
                        path.display(),
                        doc.version
                    );
                }
                let cluster = config::parse_document(&doc.text, &node)
                    .map_err(|e| format!("node.cluster_store {}: {e}", path.display()))?;
                (cluster, doc)
            }
            (None, Some(cluster)) => (cluster, Document::default()),
            (None, None) if node.cluster_store.is_some() => {
                info!("no cluster part yet: it comes with the cluster document from the peers");
                (ClusterConfig::default(), Document::default())
            }
            (None, None) => {
                return Err(
                    "the config needs a [cluster] table, or node.cluster_store to \
                     receive the cluster document from the peers"
                        .to_owned(),
                )
            }
        };
        Ok(Loaded::new(node, cluster, document))
    }

    fn new(node: NodeConfig, cluster: ClusterConfig, document: Document) -> Loaded {
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
            document,
        };
        release_freed_memory();
        loaded
    }

    /// One line for systemd's STATUS: what runs.
    fn summary(&self) -> String {
        format!(
            "{} in cluster {:?} ({}): {} services, {} VIP groups",
            self.node.id,
            self.cluster.name,
            self.document.stamp(),
            self.cluster.services.len(),
            self.cluster.vip_groups.len()
        )
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
    /// A cluster document call from the control API.
    Document(DocumentCall),
    /// A peer's newer cluster document, fetched (or why not).
    Fetched(Offer, Result<Document, String>),
    /// SIGTERM or SIGINT.
    Stop,
}

/// The longest a planned stop waits for the hand-over of its VIP groups: each one is a
/// few netlink calls and two datagrams, milliseconds on a healthy host.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// What runs, and what a new config is handed to.
struct Running {
    files: Vec<PathBuf>,
    config: Loaded,
    ipvs: IpvsStage,
    checks: HealthHandle,
    cluster: Option<ClusterHandle>,
    tick: Interval,
}

impl Running {
    /// Replaces the running config with `new`, checked first: a change that needs a
    /// restart, or a service the kernel cannot serve, changes nothing. A new cluster
    /// document is stored before anything is applied, so what runs is what a restart
    /// loads.
    async fn adopt(&mut self, new: Loaded) -> Result<(), String> {
        let old = &self.config;
        let keys = cluster::check_reload((&old.node, &old.cluster), (&new.node, &new.cluster))?;
        self.ipvs.connect_for(&new).await?;
        if new.document != old.document {
            if let Some(path) = &new.node.cluster_store {
                document::write(path, &new.document)?;
            }
        }
        self.ipvs.reconfigure(old, &new);
        info!(
            "config applied ({}): {} services, {} distinct health checks",
            new.document.stamp(),
            new.cluster.services.len(),
            new.checks.len()
        );
        if new.checks != old.checks {
            self.checks.set(new.checks.clone()).await;
        }
        if let Some(handle) = &self.cluster {
            if let Some(keys) = keys {
                if handle.set_keys(keys).await.is_err() {
                    error!("the cluster task has stopped");
                }
            }
            if handle
                .reload(new.cluster.clone(), new.document.stamp())
                .await
                .is_err()
            {
                error!("the cluster task has stopped");
            }
        }
        if new.node.reconcile_interval != old.node.reconcile_interval {
            self.tick = new.tick(Instant::now() + new.node.reconcile_interval);
        }
        self.config = new;
        Ok(())
    }

    /// `lvs-cli apply`: the document gets the next version after the highest this
    /// node knows of in the cluster; the same text as the running document changes
    /// nothing.
    async fn apply(&mut self, text: String) -> Result<Stamp, String> {
        if text == self.config.document.text && self.config.document.version > 0 {
            return Ok(self.config.document.stamp());
        }
        if self.config.node.cluster_store.is_none() {
            return Err(format!(
                "{} has no node.cluster_store: set it (e.g. /var/lib/lvs-mesh/cluster.toml) to apply cluster documents",
                self.config.node.id
            ));
        }
        let cluster = config::parse_document(&text, &self.config.node)
            .map_err(|e| format!("cluster document refused, nothing applied:\n{e}"))?;
        let mut highest = self.config.document.version;
        if let Some(handle) = &self.cluster {
            if let Ok(status) = handle.status().await {
                highest = status
                    .members
                    .iter()
                    .map(|m| m.config_version)
                    .fold(highest, u64::max);
            }
        }
        let doc = Document {
            version: highest + 1,
            text,
        };
        let stamp = doc.stamp();
        let new = Loaded::new(self.config.node.clone(), cluster, doc);
        self.adopt(new).await?;
        info!(document = %stamp, "cluster document applied by the operator");
        Ok(stamp)
    }

    /// A fetched peer document, applied when it is still newer than ours.
    async fn apply_fetched(&mut self, offer: &Offer, doc: Document) -> Result<(), String> {
        if doc.stamp() <= self.config.document.stamp() {
            return Ok(());
        }
        let cluster = config::parse_document(&doc.text, &self.config.node)
            .map_err(|e| format!("invalid here:\n{e}"))?;
        let stamp = doc.stamp();
        let new = Loaded::new(self.config.node.clone(), cluster, doc);
        self.adopt(new).await?;
        info!(document = %stamp, from = %offer.node, "cluster document applied from a peer");
        Ok(())
    }
}

/// Runs until SIGTERM or SIGINT. Fails at start on a bad config, or when services
/// are configured and the kernel has no IPVS.
pub async fn run(config_files: &[PathBuf]) -> anyhow::Result<()> {
    let config = Loaded::read(config_files).map_err(anyhow::Error::msg)?;
    // Before the health task's thread starts: threads created later run at normal
    // priority (`sched`).
    let rt_priority = config.node.rt_priority;
    match sched::realtime(rt_priority) {
        Ok(0) => {}
        Ok(threads) => info!(threads, "real-time priority {rt_priority} (SCHED_RR)"),
        Err(e) => warn!(
            "cannot run at real-time priority {rt_priority} (node.rt_priority): {e}; adverts, heartbeats and hand-overs may wait behind other processes on a busy director"
        ),
    }
    // The control sockets first: a second agent on this node, or a bad control_tls,
    // stops here, before anything is changed.
    let listeners = control::bind(&config.node).await?;
    let metrics = Metrics::new();
    let mut ipvs = IpvsStage::start(&config, Arc::clone(&metrics)).await?;
    let checks = health::runner::spawn(config.checks.clone())?;
    let mut verdicts = checks.verdicts();
    ipvs.health.verdicts = verdicts.borrow_and_update().clone();
    // Without VIP groups or a cluster store a director only runs IPVS, and needs no
    // cluster key.
    let cluster = if cluster::runs_cluster(&config.node, &config.cluster) {
        Some(
            cluster::start(
                config.node.clone(),
                config.cluster.clone(),
                config.document.stamp(),
                checks.verdicts(),
                Arc::clone(&metrics),
            )
            .await?,
        )
    } else {
        None
    };
    let (documents, mut document_calls) = mpsc::channel(4);
    let _control = control::serve(
        listeners,
        control::Api::new(&config.node, cluster.clone(), documents),
        Arc::clone(&metrics),
    );
    let _metrics_server = match config.node.metrics_listen {
        Some(addr) => Some(crate::metrics::serve(addr, metrics, cluster.clone()).await?),
        None => None,
    };
    // Without VIP groups the node owns none: the sync master never runs; nor does it
    // hear of peers' documents.
    let (_never_owns, mut owns_any) = watch::channel(false);
    let (_never_offered, mut offers) = watch::channel(None);
    // Without a cluster there is no gossip view to wait for.
    let (_always_settled, mut settled) = watch::channel(true);
    if let Some(handle) = &cluster {
        owns_any = handle.owns_any();
        offers = handle.offers();
        settled = handle.settled();
    }
    ipvs.cluster = cluster.clone();
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
    info!(
        "running as {}, {} distinct health checks, drift check every {:?}",
        config.summary(),
        config.checks.len(),
        config.node.reconcile_interval
    );
    let mut run = Running {
        files: config_files.to_vec(),
        tick: config.tick(Instant::now() + config.node.reconcile_interval),
        config,
        ipvs,
        checks,
        cluster,
    };
    let (fetched_tx, mut fetched) = mpsc::channel(1);
    let mut fetcher = Fetcher::default();
    let mut next: Option<Event> = None;
    let mut ready_sent = false;
    loop {
        // systemd (Type=notify): ready once the first pass is done (above) and the
        // gossip view has formed.
        if !ready_sent && *settled.borrow_and_update() {
            notify::send(&[("READY", "1"), ("STATUS", &run.config.summary())]);
            ready_sent = true;
        }
        if let Some(offer) = fetcher.next(std::time::Instant::now()) {
            if run.config.node.control_tls.is_some() {
                spawn_fetch(offer, &run.config.node, fetched_tx.clone());
            } else {
                // Nothing to retry until the config changes: said once per document.
                error!(
                    "{} runs cluster document {}, newer than this node's ({}); this node cannot fetch it: node.control_tls is not set",
                    offer.node,
                    offer.stamp,
                    run.config.document.stamp()
                );
                fetcher.refused(offer.stamp);
            }
        }
        let retry = fetcher.wake().map(Instant::from_std);
        let event = match next.take() {
            Some(event) => event,
            None => tokio::select! {
                _ = run.tick.tick() => Event::Pass(Pass::DriftCheck),
                Ok(()) = owns_any.changed() => {
                    let owns_any = *owns_any.borrow_and_update();
                    info!("node owns a VIP group: {owns_any}");
                    run.ipvs.sync_daemons(&run.config, owns_any).await;
                    continue;
                }
                Ok(()) = verdicts.changed() => {
                    run.ipvs.health.verdicts = verdicts.borrow_and_update().clone();
                    Event::Pass(Pass::Changes)
                }
                Ok(()) = settled.changed(), if !ready_sent => continue,
                Ok(()) = offers.changed() => {
                    fetcher.set_offer(offers.borrow_and_update().clone());
                    continue;
                }
                () = sleep_until_some(retry) => continue,
                Some((offer, result)) = fetched.recv() => Event::Fetched(offer, result),
                Some(call) = document_calls.recv() => Event::Document(call),
                _ = hup.recv() => Event::Reload,
                _ = term.recv() => Event::Stop,
                _ = int.recv() => Event::Stop,
            },
        };
        match event {
            Event::Stop => break,
            Event::Pass(pass) => {
                let running = run.ipvs.pass(&run.config, *owns_any.borrow(), pass);
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
                    run.tick.reset();
                }
            }
            Event::Reload => {
                info!("SIGHUP: reloading {}", display_paths(&run.files));
                notify::send(&[
                    ("RELOADING", "1"),
                    ("MONOTONIC_USEC", &notify::monotonic_usec()),
                ]);
                let loaded = Loaded::read(&run.files);
                let status = match async { run.adopt(loaded?).await }.await {
                    Ok(()) => {
                        next = Some(Event::Pass(Pass::Changes));
                        run.config.summary()
                    }
                    Err(e) => {
                        error!("reload rejected, keeping the running config:\n{e}");
                        format!(
                            "reload rejected, running the previous config: {}",
                            run.config.summary()
                        )
                    }
                };
                // Not ready before the first READY (a SIGHUP while settling).
                if ready_sent {
                    notify::send(&[("READY", "1"), ("STATUS", &status)]);
                }
            }
            Event::Document(DocumentCall::Get(reply)) => {
                let _ = reply.send(run.config.document.clone());
            }
            Event::Document(DocumentCall::Apply(text, reply)) => {
                let applied = run.apply(text).await;
                if let Err(e) = &applied {
                    warn!("lvs-cli apply refused: {e}");
                } else {
                    next = Some(Event::Pass(Pass::Changes));
                }
                let _ = reply.send(applied);
            }
            Event::Fetched(offer, result) => {
                let applied = match result {
                    Ok(doc) => run.apply_fetched(&offer, doc).await.map_err(|e| (e, true)),
                    Err(e) => Err((e, false)),
                };
                match applied {
                    Ok(()) => {
                        fetcher.done();
                        next = Some(Event::Pass(Pass::Changes));
                    }
                    Err((e, refused)) => {
                        error!(
                            "cluster document {} of {} not applied: {e}",
                            offer.stamp, offer.node
                        );
                        if refused {
                            fetcher.refused(offer.stamp);
                        } else {
                            fetcher.failed(std::time::Instant::now());
                        }
                    }
                }
            }
        }
    }
    notify::send(&[("STOPPING", "1"), ("STATUS", "handing VIP groups over")]);
    if let Some(handle) = &run.cluster {
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

/// Sleeps until `at`, forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
    /// Told which sync daemons run (for status), when the node runs the cluster stage.
    cluster: Option<ClusterHandle>,
    /// The sync daemons last read running.
    sync_running: Option<SyncRunning>,
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
            cluster: None,
            sync_running: None,
        };
        stage.apply_sysctls(&config.cluster);
        Ok(stage)
    }

    /// Connects if the new config needs IPVS: without it the config cannot be served.
    async fn connect_for(&mut self, new: &Loaded) -> Result<(), String> {
        if self.client.is_none() && !new.cluster.services.is_empty() {
            self.client = Some(IpvsClient::connect().await.map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// Notes what the new config no longer manages and applies its sysctls.
    fn reconfigure(&mut self, old: &Loaded, new: &Loaded) {
        self.retired = self.retired.union(&old.scope.difference(&new.scope));
        self.apply_sysctls(&new.cluster);
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

    /// Makes the kernel's sync daemons the wanted ones, then reads which run: the
    /// metrics and the cluster's claims (status) say what the kernel runs.
    async fn sync_daemons(&mut self, config: &Loaded, owns_any: bool) {
        let Some(client) = &self.client else { return };
        let want = sync::desired(&config.node, &config.cluster.sync, owns_any);
        let actual = match sync::reconcile(client, &want).await {
            Ok(_) => client.sync_daemons().await,
            Err(e) => Err(e),
        };
        let actual = match actual {
            Ok(actual) => actual,
            Err(e) => {
                error!("ipvs: cannot read the sync daemons: {e} (retrying at the next pass)");
                return;
            }
        };
        let running = |state| actual.iter().any(|d| d.state == state);
        let now = SyncRunning {
            master: running(crate::ipvs::model::SyncState::Master),
            backup: running(crate::ipvs::model::SyncState::Backup),
        };
        for (role, on) in [("master", now.master), ("backup", now.backup)] {
            self.metrics
                .sync_daemons
                .get_or_create(&crate::metrics::Role { role })
                .set(i64::from(on));
        }
        if self.sync_running != Some(now) {
            self.sync_running = Some(now);
            if let Some(handle) = &self.cluster {
                if handle.set_sync(now).await.is_err() {
                    error!("the cluster task has stopped");
                }
            }
        }
    }
}
