//! The health task: owns every check's [`Checker`], runs each probe when due (at most
//! [`MAX_IN_FLIGHT`] at once, each bounded by its own timeout, all polled by this one
//! task: no task spawned per probe), and publishes the verdicts whenever one changes.
//! The first probes are spread over each check's `warmup` by a hash of the check, so
//! 10,000 checks do not start in one instant and a restarted agent spreads them the
//! same way.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use super::checker::{Checker, Outcome};
use super::spec::{CheckKey, Probe};
use super::{probe, Verdicts};

/// Verdict changes within this time are published together: a mass change (every
/// port of a host closing) is one new state, not 10,000, for the IPVS stage.
const COALESCE: Duration = Duration::from_millis(20);

/// Due probes are launched on a grid of this many milliseconds: at 500 probes a
/// second, spread over the interval, the task wakes 100 times a second for batches of
/// about 5 instead of 500 times for one (the thread's sleeps and wake-ups were a tenth
/// of its CPU, perf). A probe starts at most this late.
const LAUNCH_TICK_MS: u64 = 10;

/// Probes running at once. Each holds a socket (or a child process) for at most its
/// timeout: 512 leaves room under the usual 1,024 open files, and is 170 dead servers
/// a second at a 3 s `connect_timeout`; live ones answer in milliseconds. Due probes
/// beyond it wait in the queue.
const MAX_IN_FLIGHT: usize = 512;

/// A running probe; it yields its check's slot and serial with the outcome.
type Running = Pin<Box<dyn Future<Output = (usize, u64, Outcome)> + Send>>;

/// The running health task.
pub struct HealthHandle {
    set: mpsc::Sender<BTreeSet<CheckKey>>,
    verdicts: watch::Receiver<Arc<Verdicts>>,
}

impl HealthHandle {
    /// Replaces the checks: unchanged ones keep their state and verdict (no new
    /// warm-up, no flap), new ones start, removed ones stop.
    pub async fn set(&self, checks: BTreeSet<CheckKey>) {
        if self.set.send(checks).await.is_err() {
            warn!("health: the task has stopped");
        }
    }

    /// The verdicts, published at start and at every change.
    pub fn verdicts(&self) -> watch::Receiver<Arc<Verdicts>> {
        self.verdicts.clone()
    }
}

/// Starts the task with `checks`.
pub fn spawn(checks: BTreeSet<CheckKey>) -> anyhow::Result<HealthHandle> {
    let (set_tx, set_rx) = mpsc::channel(4);
    let (verdicts_tx, verdicts_rx) = watch::channel(Arc::new(Verdicts::new()));
    let mut runner = Runner::new(verdicts_tx);
    runner.set(checks);
    // A thread and a single-threaded runtime of its own: thousands of probes a second
    // never delay the cluster's adverts and heartbeats on the main runtime, and their
    // wake-ups stay on one thread (no hand-offs between workers per probe).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("health: the probes' runtime")?;
    std::thread::Builder::new()
        .name("health".to_owned())
        .spawn(move || runtime.block_on(runner.run(set_rx)))
        .context("health: the probes' thread")?;
    Ok(HealthHandle {
        set: set_tx,
        verdicts: verdicts_rx,
    })
}

struct Slot {
    key: Arc<CheckKey>,
    /// Tells a probe of this check from one of a removed check that had the slot.
    serial: u64,
    checker: Checker,
    in_flight: bool,
}

/// The checks live in slots addressed by index: the queue and the running probes carry
/// an index, not a key. At 10,000 probes a second, moving and comparing keys in the
/// queue and the map was a tenth of the task's CPU (perf, host).
struct Runner {
    t0: Instant,
    slots: Vec<Option<Slot>>,
    /// Empty slots, reused first.
    free: Vec<usize>,
    /// Each check's slot.
    ids: BTreeMap<Arc<CheckKey>, usize>,
    /// The last serial given.
    serials: u64,
    /// Due times by slot; an entry whose check is gone, running or rescheduled is
    /// skipped.
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    probes: FuturesUnordered<Running>,
    verdicts: watch::Sender<Arc<Verdicts>>,
    /// A verdict changed: publish then (see [`COALESCE`]).
    publish_at: Option<Instant>,
}

impl Runner {
    fn new(verdicts: watch::Sender<Arc<Verdicts>>) -> Self {
        Runner {
            t0: Instant::now(),
            slots: Vec::new(),
            free: Vec::new(),
            ids: BTreeMap::new(),
            serials: 0,
            queue: BinaryHeap::new(),
            probes: FuturesUnordered::new(),
            verdicts,
            publish_at: None,
        }
    }

    async fn run(mut self, mut set: mpsc::Receiver<BTreeSet<CheckKey>>) {
        loop {
            let due = self.queue.peek().map(|Reverse((at, _))| {
                self.t0 + Duration::from_millis(at.next_multiple_of(LAUNCH_TICK_MS))
            });
            tokio::select! {
                checks = set.recv() => match checks {
                    Some(checks) => self.set(checks),
                    None => break,
                },
                Some((id, serial, outcome)) = self.probes.next(), if !self.probes.is_empty() => {
                    self.record(id, serial, outcome);
                }
                () = sleep_until(due.unwrap_or_else(Instant::now)),
                    if due.is_some() && self.probes.len() < MAX_IN_FLIGHT => {
                    self.launch_due();
                }
                () = sleep_until(self.publish_at.unwrap_or_else(Instant::now)),
                    if self.publish_at.is_some() => {
                    self.publish();
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set(&mut self, checks: BTreeSet<CheckKey>) {
        let before = self.ids.len();
        let (slots, free) = (&mut self.slots, &mut self.free);
        self.ids.retain(|key, &mut id| {
            let keep = checks.contains(key.as_ref());
            if !keep {
                slots[id] = None;
                free.push(id);
            }
            keep
        });
        let kept = self.ids.len();
        let now = self.now_ms();
        for key in checks {
            if self.ids.contains_key(&key) {
                continue;
            }
            let checker = Checker::new(key.alpha, now, spread(&key));
            let key = Arc::new(key);
            self.serials += 1;
            let slot = Slot {
                key: Arc::clone(&key),
                serial: self.serials,
                checker,
                in_flight: false,
            };
            let id = match self.free.pop() {
                Some(id) => id,
                None => {
                    self.slots.push(None);
                    self.slots.len() - 1
                }
            };
            self.queue.push(Reverse((slot.checker.next_at_ms(), id)));
            self.slots[id] = Some(slot);
            self.ids.insert(key, id);
        }
        info!(
            checks = self.ids.len(),
            kept,
            removed = before - kept,
            "health: checks set"
        );
        self.publish();
    }

    fn launch_due(&mut self) {
        let now = self.now_ms();
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > now || self.probes.len() >= MAX_IN_FLIGHT {
                break;
            }
            self.queue.pop();
            let Some(slot) = self.slots[id].as_mut() else {
                continue;
            };
            if slot.in_flight || slot.checker.next_at_ms() != at {
                continue;
            }
            slot.in_flight = true;
            let (key, serial) = (Arc::clone(&slot.key), slot.serial);
            self.probes.push(Box::pin(async move {
                let outcome = probe::run(&key.probe, Duration::from_millis(key.limit_ms)).await;
                (id, serial, outcome)
            }));
        }
    }

    fn record(&mut self, id: usize, serial: u64, outcome: Outcome) {
        let now = self.now_ms();
        let Some(slot) = self.slots[id].as_mut().filter(|s| s.serial == serial) else {
            return;
        };
        slot.in_flight = false;
        let changed = slot.checker.record(outcome, &slot.key.timing, now);
        self.queue.push(Reverse((slot.checker.next_at_ms(), id)));
        if changed {
            let v = slot.checker.verdict();
            if v.up {
                info!(check = %Show(&slot.key.probe), weight = ?v.weight, "health: real server up");
            } else {
                warn!(
                    check = %Show(&slot.key.probe),
                    reason = v.last_failure.as_deref().unwrap_or("-"),
                    "health: real server down"
                );
            }
            self.publish_at
                .get_or_insert_with(|| Instant::now() + COALESCE);
        }
    }

    fn publish(&mut self) {
        self.publish_at = None;
        let verdicts: Verdicts = self
            .slots
            .iter()
            .flatten()
            .map(|s| (CheckKey::clone(&s.key), s.checker.verdict().clone()))
            .collect();
        self.verdicts.send_replace(Arc::new(verdicts));
    }
}

/// Where in its warm-up a check first runs: a hash of the check (FNV-1a), so the same
/// config spreads the same way on every start.
fn spread(key: &CheckKey) -> u64 {
    let text = format!("{:?}", key.probe);
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash % key.warmup_ms.max(1)
}

/// A probe as the log names it.
struct Show<'a>(&'a Probe);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Probe::Tcp { target } => write!(f, "tcp_check {target}"),
            Probe::Http {
                target, tls, urls, ..
            } => {
                let kind = if *tls { "ssl_get" } else { "http_get" };
                let paths: Vec<&str> = urls.iter().map(|u| u.path.as_str()).collect();
                write!(f, "{kind} {target} {}", paths.join(","))
            }
            Probe::Misc { command, .. } => write!(f, "misc_check {command:?}"),
            Probe::Dns { target, name, .. } => write!(f, "dns_check {target} {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::checker::Timing;

    fn key(port: u16, alpha: bool) -> CheckKey {
        CheckKey {
            probe: Probe::Tcp {
                target: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            },
            limit_ms: 1000,
            timing: Timing {
                delay_loop_ms: 100,
                retry: 1,
                delay_before_retry_ms: 50,
            },
            alpha,
            warmup_ms: 50,
        }
    }

    #[test]
    fn the_first_probes_spread_over_the_warmup() {
        let spreads: BTreeSet<u64> = (1000..1100).map(|p| spread(&key(p, false))).collect();
        assert!(spreads.iter().all(|&s| s < 50));
        assert!(spreads.len() > 25, "{spreads:?}");
    }

    #[test]
    fn an_outcome_for_a_removed_check_does_not_land_on_the_check_in_its_slot() {
        let (tx, rx) = watch::channel(Arc::new(Verdicts::new()));
        let mut runner = Runner::new(tx);
        let (old, new) = (key(1000, false), key(1001, false));
        runner.set(BTreeSet::from([old.clone()]));
        let (id, serial) = (runner.ids[&old], runner.slots[0].as_ref().unwrap().serial);
        runner.set(BTreeSet::new());
        runner.set(BTreeSet::from([new.clone()]));
        assert_eq!(runner.ids[&new], id, "the free slot is reused");
        for _ in 0..3 {
            runner.record(id, serial, Outcome::Fail("connect refused".into()));
        }
        runner.publish();
        assert!(rx.borrow().get(&new).unwrap().up);
        assert!(!rx.borrow().contains_key(&old));
    }

    #[tokio::test]
    async fn verdicts_follow_a_listener_and_survive_a_new_set() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = key(port, true);
        let handle = spawn(BTreeSet::from([up.clone()])).unwrap();
        let wait = |want: bool| {
            let mut verdicts = handle.verdicts();
            let up = up.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    verdicts.wait_for(|v| v.get(&up).is_some_and(|v| v.up == want)),
                )
                .await
                .expect("verdict in time")
                .expect("task running");
            }
        };
        wait(true).await;
        // Another check added: the first one keeps its verdict.
        let mut verdicts = handle.verdicts();
        verdicts.mark_unchanged();
        handle
            .set(BTreeSet::from([up.clone(), key(port, false)]))
            .await;
        verdicts.changed().await.unwrap();
        assert_eq!(verdicts.borrow().len(), 2);
        assert!(verdicts.borrow().get(&up).unwrap().up);
        drop(listener);
        wait(false).await;
        let reason = verdicts.borrow().get(&up).unwrap().last_failure.clone();
        assert!(reason.unwrap().contains("refused"));
    }
}
