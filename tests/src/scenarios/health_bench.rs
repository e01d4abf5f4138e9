//! Benchmark (not a test): 10,000 real servers with a TCP check, run by keepalived's
//! checker and by lvs-agent in turn on lb1, against 10,000 listening ports on rs1
//! (`lvs-lab-guest listen-many`, which counts the connections it accepts). 100
//! services of 100 real servers each, NAT (keepalived gives a DR real server its
//! service's port: the 100 of a service would be one), `connect_timeout` 1, `retry` 1,
//! `delay_before_retry` 1, at two `delay_loop`s:
//!
//! - 1 s, the load: 10,000 probes a second offered. TCG runs the kernel's TCP
//!   work 10 to 50 times slower than hardware, and a probe's handshake, both ends of
//!   it, is most of its cost (87 % of the checker's CPU on the host, perf): neither
//!   checker sustains it in the VM, each does what one vCPU allows.
//! - 20 s: 500 probes a second, which both sustain in the VM: the CPU each spends on
//!   the same work, and whether every change is applied within its bound.
//!
//! Per checker and delay loop: probes per second over a window, CPU % and RSS of its
//! processes over that window, real servers in the table at its end (all 10,000 are
//! up: fewer means the checker takes live servers out), and, once every port closes,
//! how long until no real server is left in the IPVS table (bound: `delay_loop` +
//! `retry` x `delay_before_retry`, a refused connect costing nothing), then, once
//! they open again, until all are back (bound: `delay_loop`). One `health-bench:`
//! line each; `deploy/bench/health-scale` prints them as a table.
use crate::ipvs_bench::memory_kib;
use crate::scenario::Ctx;
use crate::scenarios::agent::{wait_until, Agent, Background};
use crate::scenarios::probe::quiet;
use crate::topology::TopologySpec;
use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const SERVICES: u16 = 100;
const PER_SERVICE: u16 = 100;
const FIRST_PORT: u16 = 10000;
/// The delay loops measured, in seconds: the issue's, then one the VM sustains.
const DELAY_LOOPS: [u64; 2] = [1, 20];
/// `retry` x `delay_before_retry` of every check, in seconds.
const RETRIES_S: u64 = 1;
/// The longest wait for the table to empty or fill.
const SETTLE: Duration = Duration::from_secs(150);

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let (lb1, rs1) = (topo.ns("lb1"), topo.ns("rs1"));
    let dir = std::env::temp_dir().join("health-bench");
    std::fs::create_dir_all(&dir)?;
    for delay_loop in DELAY_LOOPS {
        for checker in ["keepalived", "agent"] {
            measure(ctx, &lb1, &rs1, &dir, checker, delay_loop)?;
        }
    }
    Ok(())
}

fn measure(
    ctx: &mut Ctx,
    lb1: &str,
    rs1: &str,
    dir: &Path,
    checker: &str,
    delay_loop: u64,
) -> Result<()> {
    let total = usize::from(SERVICES) * usize::from(PER_SERVICE);
    // Before the window every check has run at least once; the window holds two
    // rounds at the longer delay loop.
    let warm = Duration::from_secs((delay_loop + 10).max(20));
    let window = Duration::from_secs((2 * delay_loop).max(30));
    let tally = dir.join(format!("tally-{checker}-{delay_loop}"));
    let mut listener = Background::default();
    let index = listen(ctx, &mut listener, rs1, &tally)?;
    let running = match checker {
        "keepalived" => Running::Keepalived(start_keepalived(ctx, lb1, dir, delay_loop)?),
        _ => Running::Agent(start_agent(ctx, lb1, dir, delay_loop)?),
    };
    let pid = running.pid();
    let started = wait_until(Duration::from_secs(120), || Ok(destinations(pid)? > 0))?;
    ctx.check(
        started,
        format!("{checker}: real servers in lb1's IPVS table"),
    )?;
    sleep(warm);
    let (pids, prober) = (running.pids(), running.prober()?);
    let (cpu0, probing0) = (cpu_ticks(&pids)?, stat_ticks(&prober)?);
    let (probes0, t0) = (read_tally(&tally)?, Instant::now());
    sleep(window);
    let (cpu1, probing1) = (cpu_ticks(&pids)?, stat_ticks(&prober)?);
    let (probes1, secs) = (read_tally(&tally)?, t0.elapsed());
    // A checker that cannot keep up takes live servers out: the table is not required
    // full, its size is reported.
    let in_table = destinations(pid)?;
    let rss: u64 = pids
        .iter()
        .filter_map(|p| memory_kib(&p.to_string()).ok())
        .map(|(rss, _)| rss)
        .sum();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let pct = |ticks_used: u64| ticks_used as f64 / ticks / secs.as_secs_f64() * 100.0;
    let (cpu_pct, probing_pct) = (pct(cpu1 - cpu0), pct(probing1 - probing0));
    let probes_per_s = (probes1 - probes0) as f64 / secs.as_secs_f64();

    // Every port closes: the checker takes every real server out.
    let closed = Instant::now();
    listener.stop(ctx, index)?;
    let emptied = wait_until(SETTLE, || Ok(destinations(pid)? == 0))?;
    let all_out = emptied.then(|| closed.elapsed());
    // They open again (once all are out): the checker puts every one back.
    let back = if emptied {
        let index = listen(ctx, &mut listener, rs1, &tally)?;
        let opened = Instant::now();
        let filled = wait_until(SETTLE, || Ok(destinations(pid)? == total))?;
        listener.stop(ctx, index)?;
        filled.then(|| opened.elapsed())
    } else {
        None
    };
    let show = |d: Option<Duration>, tried: bool| match d {
        Some(d) => format!("{:.1}", d.as_secs_f64()),
        None if tried => "never".to_owned(),
        None => "-".to_owned(),
    };
    ctx.sh.note(format!(
        "health-bench: checker={checker} real_servers={total} delay_loop_s={delay_loop} \
         offered_per_s={} in_table={in_table} probes_per_s={probes_per_s:.0} \
         cpu_pct={cpu_pct:.1} probing_cpu_pct={probing_pct:.1} us_per_probe={:.0} rss_kib={rss} all_out_s={} out_bound_s={} \
         all_back_s={} back_bound_s={delay_loop}",
        total as u64 / delay_loop,
        cpu_pct / 100.0 / probes_per_s.max(1.0) * 1e6,
        show(all_out, true),
        delay_loop + RETRIES_S,
        show(back, emptied),
    ));
    running.stop(ctx)?;
    let _ = quiet(lb1, &["ipvsadm", "-C"]);
    Ok(())
}

/// Starts the 10,000 listeners on `ns`; returns once they all listen (the tally file
/// is written from then on).
fn listen(ctx: &mut Ctx, listener: &mut Background, ns: &str, tally: &Path) -> Result<usize> {
    std::fs::write(tally, "")?;
    let tool = ctx.guest_tool().to_string_lossy().into_owned();
    let index = listener.spawn(
        ctx,
        ns,
        &[
            &tool,
            "listen-many",
            "0.0.0.0",
            &FIRST_PORT.to_string(),
            &(SERVICES * PER_SERVICE).to_string(),
            &tally.to_string_lossy(),
        ],
    )?;
    let listening = wait_until(Duration::from_secs(60), || Ok(read_tally(tally).is_ok()))?;
    ctx.check(listening, format!("{ns}: 10,000 ports listening"))?;
    Ok(index)
}

enum Running {
    Keepalived(Child),
    Agent(Agent),
}

impl Running {
    /// The checker's main process, in lb1's namespace.
    fn pid(&self) -> u32 {
        match self {
            Running::Agent(a) => a.pid(),
            Running::Keepalived(child) => child.id(),
        }
    }

    /// The `stat` file of what runs the probes: the agent's `health` thread,
    /// keepalived's checker process.
    fn prober(&self) -> Result<std::path::PathBuf> {
        match self {
            Running::Agent(a) => {
                let tasks = format!("/proc/{}/task", a.pid());
                for task in std::fs::read_dir(&tasks)?.flatten() {
                    let comm = std::fs::read_to_string(task.path().join("comm"))?;
                    if comm.trim() == "health" {
                        return Ok(task.path().join("stat"));
                    }
                }
                anyhow::bail!("no thread named health in {tasks}")
            }
            Running::Keepalived(_) => {
                let pid = std::fs::read_to_string("/run/keepalived-bench-checkers.pid")?;
                Ok(format!("/proc/{}/stat", pid.trim()).into())
            }
        }
    }

    /// The checker's processes: keepalived's parent, checker and VRRP children.
    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Agent(a) => vec![a.pid()],
            Running::Keepalived(_) => processes_named("keepalived"),
        }
    }

    fn stop(self, ctx: &mut Ctx) -> Result<()> {
        match self {
            Running::Agent(a) => a.stop(ctx),
            Running::Keepalived(mut child) => {
                let _ = Command::new("kill").arg(child.id().to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait()?.is_none() && Instant::now() < deadline {
                    sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let _ = child.wait();
                Ok(())
            }
        }
    }
}

fn real_server(s: u16, r: u16) -> (String, u16) {
    ("172.16.0.100".to_owned(), FIRST_PORT + s * PER_SERVICE + r)
}

fn start_keepalived(ctx: &mut Ctx, ns: &str, dir: &Path, delay_loop: u64) -> Result<Child> {
    let mut conf = String::from("global_defs {\n  router_id bench\n}\n");
    for s in 0..SERVICES {
        conf += &format!(
            "virtual_server 10.0.0.10 {} {{\n  delay_loop {delay_loop}\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n",
            1000 + s
        );
        for r in 0..PER_SERVICE {
            let (addr, port) = real_server(s, r);
            conf += &format!(
                "  real_server {addr} {port} {{\n    weight 1\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }}\n  }}\n"
            );
        }
        conf += "}\n";
    }
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, conf)?;
    let log = File::create(dir.join("keepalived.log"))?;
    ctx.sh.note(format!(
        "[{ns}]# keepalived --dont-fork --log-console -f {} (100 virtual_server x 100 real_server, TCP_CHECK)",
        path.display()
    ));
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "keepalived",
            "--dont-fork",
            "--log-console",
        ])
        .arg(format!("--use-file={}", path.display()))
        .args([
            "--pid=/run/keepalived-bench.pid",
            "--vrrp_pid=/run/keepalived-bench-vrrp.pid",
            "--checkers_pid=/run/keepalived-bench-checkers.pid",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start keepalived")
}

fn start_agent(ctx: &mut Ctx, ns: &str, dir: &Path, delay_loop: u64) -> Result<Agent> {
    let mut conf = String::from(
        "[node]\nid = \"lb1\"\ninterface = \"eth0\"\naddress = \"172.16.0.10\"\nsyncid = 1\n\n\
         [cluster]\nname = \"bench\"\n",
    );
    for s in 0..SERVICES {
        conf += &format!(
            "[[service]]\nvip = \"10.0.0.10\"\nport = {}\nscheduler = \"rr\"\nforwarding = \"nat\"\ndelay_loop = {delay_loop}\n",
            1000 + s
        );
        for r in 0..PER_SERVICE {
            let (addr, port) = real_server(s, r);
            conf += &format!(
                "[[service.real_server]]\naddress = \"{addr}\"\nport = {port}\n\
                 [[service.real_server.check]]\nkind = \"tcp_check\"\nconnect_timeout = 1\n\
                 retry = 1\ndelay_before_retry = 1\n"
            );
        }
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, conf)?;
    // Errors only: 10,000 verdict lines would be the log's whole content.
    Agent::start_logging(ctx, Some(ns), &path, &[], "error")
}

/// Real servers in the IPVS table of the network namespace of process `pid`, from its
/// /proc/net/ip_vs: no process to start and no netlink dump to format, so polling it
/// five times a second takes little from the checker measured.
fn destinations(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/net/ip_vs");
    let table = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    Ok(table
        .lines()
        .filter(|l| l.starts_with("  -> ") && !l.contains("RemoteAddress"))
        .count())
}

fn read_tally(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: {text:?}", path.display()))
}

/// utime + stime of `pids`, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    pids.iter()
        .map(|pid| stat_ticks(Path::new(&format!("/proc/{pid}/stat"))))
        .sum()
}

/// utime + stime in a `stat` file of /proc (a process's or a thread's), in clock ticks.
fn stat_ticks(path: &Path) -> Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    // Fields after the command name's closing parenthesis; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Ok(field(11) + field(12))
}

/// Pids whose command is `name`.
fn processes_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}
