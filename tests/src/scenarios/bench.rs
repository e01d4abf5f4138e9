//! The IPVS benchmark in the VM: `lvs-lab-guest ipvs-bench` (the agent's
//! reconciler against `ipvsadm`, see [`crate::ipvs_bench`]) in its own
//! process, then `lvs-agent run` itself on a config of the same size: time to
//! converge, its memory while it checks for drift every second, and how fast
//! it stops on SIGTERM in the middle of a check. `ipvs_bench` is the full 10,000 × 4 run,
//! `ipvs_bench_smoke` a small one for CI. Figures are reported, never asserted;
//! the checks are on write counts and on the state reached.
use crate::ipvs_bench::desired;
use crate::scenario::Ctx;
use crate::scenarios::agent::{self, Agent};
use anyhow::{bail, Result};
use lvs_agent::ipvs::ServiceKey;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const DESTS: u32 = 4;

pub fn full(ctx: &mut Ctx) -> Result<()> {
    run(ctx, 10_000)
}

pub fn smoke(ctx: &mut Ctx) -> Result<()> {
    run(ctx, 1_000)
}

fn run(ctx: &mut Ctx, services: u32) -> Result<()> {
    ctx.sh.run("free -m")?;
    let tool = ctx.guest_tool().to_string_lossy().into_owned();
    let (s, d) = (services.to_string(), DESTS.to_string());
    let ran = ctx.sh.exec(None, &[&tool, "ipvs-bench", &s, &d])?;
    ctx.check(
        ran.success(),
        format!(
            "ipvs-bench {services}x{DESTS}: writes as planned (cold {}, no-op 0, drift checks 0, one weight 1, removal {}) {}",
            services * (1 + DESTS),
            services.min(1000),
            ran.stderr.trim()
        ),
    )?;

    ctx.sh.run("ip link add eth0 type dummy")?;
    ctx.sh.run("ip addr add 172.16.0.10/24 dev eth0")?;
    ctx.sh.run("ip link set eth0 up")?;
    let outcome = agent_at_size(ctx, services);
    ctx.sh.run("ipvsadm -C")?;
    ctx.sh.run("ip link del eth0")?;
    ctx.sh.run("free -m")?;
    outcome
}

/// `lvs-agent run` on `services` × [`DESTS`]: time from start until ipvsadm lists
/// all of it, the agent's memory after a few more drift checks, then the time
/// from SIGTERM to its exit.
fn agent_at_size(ctx: &mut Ctx, services: u32) -> Result<()> {
    let config = std::env::temp_dir().join("ipvs-bench.toml");
    std::fs::write(&config, config_toml(services)?)?;
    let started = Instant::now();
    let mut agent = Agent::start(ctx, None, &config, &[])?;
    let want = (services as usize, (services * DESTS) as usize);
    let converged = agent::wait_until(Duration::from_secs(600), || {
        agent.check_alive_quiet()?;
        Ok(counts()? == want)
    })?;
    let took = started.elapsed();
    ctx.check(
        converged,
        format!(
            "lvs-agent run created {}x{DESTS} in {:.1} s (process start to ipvsadm listing all)",
            services,
            took.as_secs_f64()
        ),
    )?;
    // A few drift checks at full size (each a full read and a plan).
    std::thread::sleep(Duration::from_secs(8));
    agent.check_alive(ctx)?;
    let (rss, hwm) = agent.memory_kib()?;
    ctx.sh.note(format!(
        "lvs-agent at {services}x{DESTS}: VmRSS {rss} KiB, VmHWM {hwm} KiB"
    ));
    ctx.check(counts()? == want, "the state is still complete")?;
    // A drift check is running or due within the second.
    let stopping = Instant::now();
    agent.stop(ctx)?;
    ctx.sh.note(format!(
        "lvs-agent at {services}x{DESTS}: SIGTERM to exit (and log read) {:.2} s",
        stopping.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// (services, real servers) as `ipvsadm -S -n` lists them.
fn counts() -> Result<(usize, usize)> {
    let out = std::process::Command::new("ipvsadm")
        .args(["-S", "-n"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let n = |p: &str| text.lines().filter(|l| l.starts_with(p)).count();
    Ok((n("-A"), n("-a")))
}

/// The bench's desired state as an agent config (1 s drift check period).
fn config_toml(services: u32) -> Result<String> {
    let mut out = String::from(
        "[node]\nid = \"lb1\"\ninterface = \"eth0\"\naddress = \"172.16.0.10\"\nsyncid = 1\n\
         reconcile_interval = 1\n\n[cluster]\nname = \"bench\"\n",
    );
    for (svc, dests) in desired(services, DESTS) {
        let ServiceKey::Addr { addr, .. } = svc.key else {
            bail!("bench services are address services");
        };
        let _ = write!(
            out,
            "\n[[service]]\nvip = \"{}\"\nport = {}\nscheduler = \"{}\"\n",
            addr.ip(),
            addr.port(),
            svc.scheduler
        );
        for d in dests {
            let _ = write!(
                out,
                "[[service.real_server]]\naddress = \"{}\"\nport = {}\n",
                d.addr.ip(),
                d.addr.port()
            );
        }
    }
    Ok(out)
}
