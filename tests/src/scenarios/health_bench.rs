//! Benchmark (not a test): 10,000 real servers with a TCP check every second, run by
//! keepalived's checker and by lvs-agent in turn on lb1, against 10,000 listening
//! ports on rs1 (`lvs-lab-guest listen-many`, which counts the connections it
//! accepts). 100 services of 100 real servers each, DR, `connect_timeout` 1,
//! `delay_loop` 1. Per checker: probes per second sustained over a window, CPU % and
//! RSS of its processes over that window, real servers in the table at its end (all
//! 10,000 are up: fewer means the checker takes live servers out), and, once every
//! port closes, how long until no real server is left in the IPVS table. One
//! `health-bench:` line each; `deploy/bench/health-scale` prints them as a table.
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
/// Before the window: every check has run at least once.
const WARM: Duration = Duration::from_secs(20);
const WINDOW: Duration = Duration::from_secs(30);

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let (lb1, rs1) = (topo.ns("lb1"), topo.ns("rs1"));
    let dir = std::env::temp_dir().join("health-bench");
    std::fs::create_dir_all(&dir)?;
    let total = usize::from(SERVICES) * usize::from(PER_SERVICE);
    for checker in ["keepalived", "agent"] {
        let tally = dir.join(format!("tally-{checker}"));
        std::fs::write(&tally, "0")?;
        let mut listener = Background::default();
        let tool = ctx.guest_tool().to_string_lossy().into_owned();
        let index = listener.spawn(
            ctx,
            &rs1,
            &[
                &tool,
                "listen-many",
                "0.0.0.0",
                &FIRST_PORT.to_string(),
                &(SERVICES * PER_SERVICE).to_string(),
                &tally.to_string_lossy(),
            ],
        )?;
        let running = match checker {
            "keepalived" => Running::Keepalived(start_keepalived(ctx, &lb1, &dir)?),
            _ => Running::Agent(start_agent(ctx, &lb1, &dir)?),
        };
        // A checker that cannot keep up (keepalived in the VM) keeps taking live
        // servers out: the table is not required full, its size is reported.
        let started = wait_until(Duration::from_secs(120), || Ok(destinations(&lb1)? > 0))?;
        ctx.check(
            started,
            format!("{checker}: real servers in lb1's IPVS table"),
        )?;
        sleep(WARM);
        let pids = running.pids();
        let (cpu0, probes0, t0) = (cpu_ticks(&pids)?, read_tally(&tally)?, Instant::now());
        sleep(WINDOW);
        let (cpu1, probes1, secs) = (cpu_ticks(&pids)?, read_tally(&tally)?, t0.elapsed());
        let in_table = destinations(&lb1)?;
        let rss: u64 = pids
            .iter()
            .filter_map(|p| memory_kib(&p.to_string()).ok())
            .map(|(rss, _)| rss)
            .sum();
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
        let cpu_pct = (cpu1 - cpu0) as f64 / ticks / secs.as_secs_f64() * 100.0;
        let probes_per_s = (probes1 - probes0) as f64 / secs.as_secs_f64();

        // Every port closes: the checker must take every real server out.
        let closed = Instant::now();
        listener.stop(ctx, index)?;
        let emptied = wait_until(Duration::from_secs(120), || Ok(destinations(&lb1)? == 0))?;
        let all_down = emptied.then(|| closed.elapsed());
        ctx.sh.note(format!(
            "health-bench: checker={checker} real_servers={total} in_table={in_table} \
             probes_per_s={probes_per_s:.0} cpu_pct={cpu_pct:.1} rss_kib={rss} all_down_s={}",
            all_down.map_or("never".to_owned(), |d| format!("{:.1}", d.as_secs_f64()))
        ));
        running.stop(ctx)?;
        let _ = quiet(&lb1, &["ipvsadm", "-C"]);
    }
    Ok(())
}

enum Running {
    Keepalived(Child),
    Agent(Agent),
}

impl Running {
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

fn start_keepalived(ctx: &mut Ctx, ns: &str, dir: &Path) -> Result<Child> {
    let mut conf = String::from("global_defs {\n  router_id bench\n}\n");
    for s in 0..SERVICES {
        conf += &format!(
            "virtual_server 10.0.0.10 {} {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n",
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

fn start_agent(ctx: &mut Ctx, ns: &str, dir: &Path) -> Result<Agent> {
    let mut conf = String::from(
        "[node]\nid = \"lb1\"\ninterface = \"eth0\"\naddress = \"172.16.0.10\"\nsyncid = 1\n\n\
         [cluster]\nname = \"bench\"\n",
    );
    for s in 0..SERVICES {
        conf += &format!(
            "[[service]]\nvip = \"10.0.0.10\"\nport = {}\nscheduler = \"rr\"\ndelay_loop = 1\n",
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

/// Real servers in `ns`'s IPVS table.
fn destinations(ns: &str) -> Result<usize> {
    Ok(quiet(ns, &["ipvsadm", "-L", "-n"])?
        .lines()
        .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
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
    let mut sum = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name's closing parenthesis; utime and stime are the
        // 14th and 15th of the whole line.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
        sum += field(11) + field(12);
    }
    Ok(sum)
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
