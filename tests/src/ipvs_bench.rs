//! The IPVS dataplane benchmark (`lvs-lab-guest ipvs-bench SERVICES DESTS`, in
//! the lab VM): the agent's reconciler on N services × M real servers against
//! `ipvsadm` doing the same, step by step, in the same kernel (each side in a
//! network namespace of its own): cold apply, no-op pass, drift check (a full
//! read; on 4 sockets, as the agent does, and on 1), one weight changed, 1,000
//! services removed. Every step but the drift checks is a config change the
//! agent applies against the kernel state it keeps
//! ([`Reconciler::apply_changes`]); a drift check is what the agent runs every
//! `reconcile_interval` ([`Reconciler::check_drift`]).
//! Prints a table; every figure comes from this run.
use crate::ipvs_rules::{delete_service, destination, restore_script, ServiceState};
use anyhow::{bail, Context, Result};
use lvs_agent::ipvs::plan::{Scope, VirtualService};
use lvs_agent::ipvs::reconcile::{Reconciler, Report, DUMP_SOCKETS};
use lvs_agent::ipvs::{
    Destination, Forwarding, IpvsClient, Protocol, Scheduler, Service, ServiceKey,
};
use nix::sched::{unshare, CloneFlags};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// First service VIP; services take consecutive addresses from here.
const FIRST_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 0);
/// Real servers are shared by every service: 172.20.0.1, .2, ...
const FIRST_REAL_SERVER: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 1);
/// Services removed in the removal step (fewer when the bench is smaller).
const REMOVED: usize = 1000;

/// `services` TCP services on port 80 (wlc), each with `dests` DR real servers of weight 1.
pub fn desired(services: u32, dests: u32) -> Vec<ServiceState> {
    (0..services)
        .map(|i| {
            let key = ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from(FIRST_VIP) + i),
                    80,
                )),
            };
            let real_servers = (0..dests)
                .map(|j| Destination {
                    addr: SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::from(u32::from(FIRST_REAL_SERVER) + j),
                        80,
                    )),
                    forwarding: Forwarding::Route,
                    weight: 1,
                    upper_threshold: 0,
                    lower_threshold: 0,
                })
                .collect();
            (Service::new(key, Scheduler::Wlc), real_servers)
        })
        .collect()
}

/// One step measured both ways.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub agent: Duration,
    /// Netlink requests that changed the kernel.
    pub agent_writes: usize,
    pub ipvsadm: Duration,
    /// What ipvsadm did for the comparison.
    pub ipvsadm_what: String,
}

/// How long the agent's part of a step took, and the writes it made.
pub type Timed = (Duration, usize);

/// How the agent reconciles in a step.
#[derive(Clone, Copy, Debug)]
pub enum Pass {
    /// A config change, against the kernel state the agent keeps.
    Changes,
    /// A full read of the kernel, then repairs, dumping on this many sockets.
    DriftCheck { sockets: usize },
}

/// The agent's side of the bench, as [`run`] drives it.
pub trait AgentSide {
    /// Makes the kernel match `want`.
    fn reconcile(&mut self, want: &[ServiceState], pass: Pass) -> Result<Timed>;
    /// Fails unless the kernel holds exactly `services` x `dests`.
    fn expect_rules(&mut self, services: u32, dests: u32) -> Result<()>;
}

/// Runs every step. Each side starts from an IPVS state of its own (the agent
/// side in its own network namespace): deleted real servers linger in a
/// per-namespace list that every add scans, so one side's flush must not slow
/// the other's adds, and one side's edits must not be the other's drift.
pub fn run(
    services: u32,
    dests: u32,
    agent: &mut dyn AgentSide,
    scratch: &std::path::Path,
) -> Result<Vec<Step>> {
    let want = desired(services, dests);
    let mut steps = Vec::new();

    // Cold apply. ipvsadm keeps its state for its later steps.
    flush()?;
    let ipvsadm = restore(scratch, &restore_script(&want))?;
    expect_rules(services, dests)?;
    let (took, writes) = agent.reconcile(&want, Pass::Changes)?;
    agent.expect_rules(services, dests)?;
    steps.push(Step {
        name: format!("cold apply {services}x{dests}"),
        agent: took,
        agent_writes: writes,
        ipvsadm,
        ipvsadm_what: format!("-R of {} -A/-a lines", want.len() * (1 + dests as usize)),
    });

    // No-op: nothing to change. ipvsadm's nearest is reading everything back.
    let (took, writes) = agent.reconcile(&want, Pass::Changes)?;
    let (ipvsadm, _) = timed(ipvsadm_save)?;
    steps.push(Step {
        name: "no-op (no read)".into(),
        agent: took,
        agent_writes: writes,
        ipvsadm,
        ipvsadm_what: "-S -n (read all)".into(),
    });

    // Drift checks: the agent reads all of it, as ipvsadm -S does.
    for sockets in [DUMP_SOCKETS, 1] {
        let (took, writes) = agent.reconcile(&want, Pass::DriftCheck { sockets })?;
        let (ipvsadm, _) = timed(ipvsadm_save)?;
        steps.push(Step {
            name: format!("drift check, {sockets} sock"),
            agent: took,
            agent_writes: writes,
            ipvsadm,
            ipvsadm_what: "-S -n (read all)".into(),
        });
    }

    // One weight changed (the agent changes it back, untimed).
    let mut changed = want.clone();
    let (svc, dests_of) = changed.get_mut(want.len() / 2).context("no services")?;
    let dest = dests_of.first_mut().context("no real servers")?;
    dest.weight = 7;
    let edit = destination(&svc.key, dest, true);
    let (took, writes) = agent.reconcile(&changed, Pass::Changes)?;
    agent.reconcile(&want, Pass::Changes)?;
    let ipvsadm = restore(scratch, &format!("{edit}\n"))?;
    steps.push(Step {
        name: "one weight changed".into(),
        agent: took,
        agent_writes: writes,
        ipvsadm,
        ipvsadm_what: "-R of one -e line".into(),
    });

    // Removal, from the full state on both sides.
    let removed = REMOVED.min(want.len());
    let (took, writes) = agent.reconcile(&want[removed..], Pass::Changes)?;
    let deletes: String = want[..removed]
        .iter()
        .map(|(s, _)| delete_service(&s.key) + "\n")
        .collect();
    let ipvsadm = restore(scratch, &deletes)?;
    steps.push(Step {
        name: format!("{removed} services removed"),
        agent: took,
        agent_writes: writes,
        ipvsadm,
        ipvsadm_what: format!("-R of {removed} -D lines"),
    });
    flush()?;
    let expected = [want.len() * (1 + dests as usize), 0, 0, 0, 1, removed];
    for (step, writes) in steps.iter().zip(expected) {
        if step.agent_writes != writes {
            bail!(
                "{}: the agent made {} writes, want {writes}\n{}",
                step.name,
                step.agent_writes,
                table(&steps)
            );
        }
    }
    Ok(steps)
}

/// A job for the agent's thread.
type Job = Box<dyn FnOnce(&Runtime, &IpvsClient, &mut Reconciler) -> Result<Timed> + Send>;

/// The agent's reconciler on a thread of this process that has a network
/// namespace of its own (ipvsadm runs there too when the thread checks the
/// rules), in a runtime like the agent's (one worker per CPU).
struct InProcess {
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<Result<Timed>>,
    thread: Option<std::thread::JoinHandle<()>>,
    scope: Arc<Scope>,
}

impl InProcess {
    fn start(scope: Scope) -> Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done, results) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let setup = || -> Result<(Runtime, IpvsClient)> {
                own_namespace()?;
                // Built after the unshare: its workers share the namespace.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let client = rt.block_on(IpvsClient::connect())?;
                Ok((rt, client))
            };
            match setup() {
                Err(e) => drop(done.send(Err(e))),
                Ok((rt, client)) => {
                    let _ = done.send(Ok((Duration::ZERO, 0)));
                    let mut reconciler = Reconciler::default();
                    for job in job_rx {
                        if done.send(job(&rt, &client, &mut reconciler)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let side = InProcess {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
            scope: Arc::new(scope),
        };
        side.results.recv().context("the agent thread died")??;
        Ok(side)
    }

    fn call(&self, job: Job) -> Result<Timed> {
        let jobs = self.jobs.as_ref().context("the agent thread is stopped")?;
        jobs.send(job).ok().context("the agent thread died")?;
        self.results.recv().context("the agent thread died")?
    }
}

impl AgentSide for InProcess {
    fn reconcile(&mut self, want: &[ServiceState], pass: Pass) -> Result<Timed> {
        let want: Vec<VirtualService> = want
            .iter()
            .map(|(service, destinations)| VirtualService {
                service: service.clone(),
                destinations: destinations.clone(),
            })
            .collect();
        let scope = self.scope.clone();
        self.call(Box::new(move |rt, client, reconciler| {
            let started = Instant::now();
            let report: Report = match pass {
                Pass::Changes => rt.block_on(reconciler.apply_changes(client, &want, &scope))?,
                // The agent's reconciler then holds what this one read.
                Pass::DriftCheck { sockets } => {
                    let mut fresh = Reconciler::new(sockets);
                    let report = rt.block_on(fresh.check_drift(client, &want, &scope))?;
                    *reconciler = fresh;
                    report
                }
            };
            let took = started.elapsed();
            if !report.is_clean() {
                bail!("reconcile failed: {:?}", report.failed.first());
            }
            Ok((took, report.writes()))
        }))
    }

    fn expect_rules(&mut self, services: u32, dests: u32) -> Result<()> {
        self.call(Box::new(move |_, _, _| {
            expect_rules(services, dests).map(|()| (Duration::ZERO, 0))
        }))
        .map(drop)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Empty the namespace here rather than in the kernel's teardown after
        // the process exits, which would overlap whatever runs next.
        let _ = self.call(Box::new(|_, _, _| flush().map(|()| (Duration::ZERO, 0))));
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bench with the agent's reconciler in this process, each side in a
/// network namespace of its own: the table, the no-op pass and the drift check
/// as shares of the cold apply, then this process's memory while it held the
/// desired and the actual state of the full size.
pub fn with_planner(services: u32, dests: u32, scratch: &std::path::Path) -> Result<String> {
    // ipvsadm's side: this thread (and the ipvsadm it starts) leaves the
    // namespace it was started in untouched.
    own_namespace()?;
    let (rss_before, _) = memory_kib("self")?;
    let scope = Scope {
        addrs: desired(services, dests)
            .iter()
            .filter_map(|(s, _)| match s.key {
                ServiceKey::Addr { addr, .. } => Some(addr.ip()),
                ServiceKey::Fwmark { .. } => None,
            })
            .collect(),
        fwmarks: Default::default(),
    };
    let mut agent = InProcess::start(scope)?;
    let steps = run(services, dests, &mut agent, scratch)?;
    let (rss, hwm) = memory_kib("self")?;
    drop(agent);
    let share =
        |i: usize| 100.0 * steps[i].agent.as_secs_f64() / steps[0].agent.as_secs_f64().max(1e-6);
    Ok(format!(
        "{}no-op pass: {:.3}% of the agent's cold apply; drift check: {:.1}%\n\
         bench process memory: VmRSS {rss_before} KiB at start, {rss} KiB at the end; \
         VmHWM {hwm} KiB (peak, holding desired and actual {services}x{dests})\n",
        table(&steps),
        share(1),
        share(2)
    ))
}

/// Moves this thread (and the processes it starts) to a new network namespace,
/// with `lo` up: until an address is local, IPVS refuses every real server
/// (EINVAL, its address type being unknown).
fn own_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).context("cannot enter a network namespace of its own")?;
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !status.success() {
        bail!("ip link set lo up failed");
    }
    Ok(())
}

/// The result table.
pub fn table(steps: &[Step]) -> String {
    let mut out = format!(
        "{:<24} {:>11} {:>8} {:>11} {:>7}  ipvsadm did\n",
        "step", "agent ms", "writes", "ipvsadm ms", "ratio"
    );
    for s in steps {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let _ = writeln!(
            out,
            "{:<24} {:>11.1} {:>8} {:>11.1} {:>7.2}  {}",
            s.name,
            ms(s.agent),
            s.agent_writes,
            ms(s.ipvsadm),
            ms(s.agent) / ms(s.ipvsadm).max(0.001),
            s.ipvsadm_what
        );
    }
    out
}

/// `VmRSS` and `VmHWM` in KiB of the process `/proc/<pid>` names (`"self"` or a pid).
pub fn memory_kib(pid: &str) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let started = Instant::now();
    let out = f()?;
    Ok((started.elapsed(), out))
}

/// Times `ipvsadm -R` reading `rules` (the process start is part of it, as it
/// is of every real ipvsadm use).
fn restore(scratch: &std::path::Path, rules: &str) -> Result<Duration> {
    let file = scratch.join("ipvs-bench.rules");
    std::fs::write(&file, rules)?;
    let input = std::fs::File::open(&file)?;
    let started = Instant::now();
    let out = Command::new("ipvsadm")
        .arg("-R")
        .stdin(input)
        .stderr(Stdio::piped())
        .output()
        .context("cannot run ipvsadm")?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "ipvsadm -R failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

fn ipvsadm_save() -> Result<String> {
    let out = Command::new("ipvsadm").args(["-S", "-n"]).output()?;
    if !out.status.success() {
        bail!("ipvsadm -S -n failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn flush() -> Result<()> {
    let status = Command::new("ipvsadm").arg("-C").status()?;
    if !status.success() {
        bail!("ipvsadm -C failed");
    }
    Ok(())
}

/// The kernel holds exactly `services` × `dests` (counted in ipvsadm's listing).
fn expect_rules(services: u32, dests: u32) -> Result<()> {
    let listing = ipvsadm_save()?;
    let count = |p: &str| listing.lines().filter(|l| l.starts_with(p)).count();
    let (s, d) = (count("-A"), count("-a"));
    if s != services as usize || d != (services * dests) as usize {
        bail!("after the cold apply ipvsadm lists {s} services and {d} real servers, want {services} and {}", services * dests);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_state_is_distinct_services_over_shared_servers() {
        let state = desired(300, 4);
        assert_eq!(state.len(), 300);
        assert_eq!(state[0].0.key.to_string(), "tcp 10.100.0.0:80");
        assert_eq!(state[299].0.key.to_string(), "tcp 10.100.1.43:80");
        assert_eq!(state[299].1[3].addr.to_string(), "172.20.0.4:80");
        let mut keys: Vec<_> = state.iter().map(|(s, _)| s.key).collect();
        keys.dedup();
        assert_eq!(keys.len(), 300);
    }

    #[test]
    fn table_has_ratio() {
        let steps = [Step {
            name: "x".into(),
            agent: Duration::from_millis(30),
            agent_writes: 2,
            ipvsadm: Duration::from_millis(10),
            ipvsadm_what: "y".into(),
        }];
        let t = table(&steps);
        assert!(t.contains("3.00"), "{t}");
    }
}
