//! Drift repair: with `lvs-agent run` reconciling every second, a service deleted
//! by hand and a real server added by hand to one of its services are put back
//! as configured; a service on another VIP (outside the agent's scope) is left alone.
use crate::ipvs_rules::sorted_lines;
use crate::scenario::Ctx;
use crate::scenarios::agent::{self, Agent};
use anyhow::Result;
use std::time::{Duration, Instant};

/// The agent's reconcile period in this scenario.
const INTERVAL_S: u64 = 1;
/// How long a repair may take before the check fails (many periods: a loaded
/// CI machine must not fail it; the measured time is reported).
const REPAIR_DEADLINE: Duration = Duration::from_secs(15);

fn config_toml() -> String {
    format!(
        r#"[node]
id = "lb1"
interface = "eth0"
address = "172.16.0.10"
syncid = 1
reconcile_interval = {INTERVAL_S}

[cluster]
name = "drift"

[[service]]
vip = "10.2.0.1"
port = 80
scheduler = "wrr"
[[service.real_server]]
address = "172.16.1.1"
port = 80
[[service.real_server]]
address = "172.16.1.2"
port = 80
weight = 2

[[service]]
vip = "10.2.0.2"
port = 443
scheduler = "rr"
[[service.real_server]]
address = "172.16.1.1"
port = 443
"#
    )
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    ctx.sh.run("ip link add eth0 type dummy")?;
    ctx.sh.run("ip addr add 172.16.0.10/24 dev eth0")?;
    ctx.sh.run("ip link set eth0 up")?;
    let outcome = checks(ctx);
    ctx.sh.run("ipvsadm -C")?;
    ctx.sh.run("ip link del eth0")?;
    outcome
}

fn checks(ctx: &mut Ctx) -> Result<()> {
    let config = std::env::temp_dir().join("ipvs-drift.toml");
    std::fs::write(&config, config_toml())?;
    let mut agent = Agent::start(ctx, None, &config, &[])?;
    let converged = agent::wait_until(Duration::from_secs(30), || {
        let l = listing(ctx)?;
        Ok(count(&l, "-A") == 2 && count(&l, "-a") == 3)
    })?;
    ctx.check(
        converged,
        "the agent created 2 services with 3 real servers",
    )?;
    let want = listing(ctx)?;

    // Someone else's service on another VIP.
    let foreign = [
        "-A -t 10.9.9.9:80 -s rr",
        "-a -t 10.9.9.9:80 -r 172.16.9.9:80 -g -w 1",
    ];
    for rule in foreign {
        ctx.sh.run(&format!("ipvsadm {rule}"))?;
    }
    let all = listing(ctx)?;
    let foreign: Vec<String> = all.iter().filter(|l| !want.contains(l)).cloned().collect();
    ctx.check(
        foreign.len() == 2,
        format!("ipvsadm lists the foreign service: {foreign:?}"),
    )?;

    ctx.sh.run("ipvsadm -D -t 10.2.0.1:80")?;
    let took = repair_time(ctx, &all)?;
    ctx.check(
        took.is_some(),
        format!(
            "deleted service 10.2.0.1:80 repaired in {} (period {INTERVAL_S} s)",
            shown(took)
        ),
    )?;

    ctx.sh
        .run("ipvsadm -a -t 10.2.0.2:443 -r 172.16.1.9:443 -g -w 5")?;
    let took = repair_time(ctx, &all)?;
    ctx.check(
        took.is_some(),
        format!(
            "real server 172.16.1.9:443 added by hand removed in {} (period {INTERVAL_S} s)",
            shown(took)
        ),
    )?;

    ctx.sh
        .run("ipvsadm -e -t 10.2.0.1:80 -r 172.16.1.2:80 -g -w 9")?;
    let took = repair_time(ctx, &all)?;
    ctx.check(
        took.is_some(),
        format!(
            "weight changed by hand restored in {} (period {INTERVAL_S} s)",
            shown(took)
        ),
    )?;

    // Several more periods: the foreign service is still there, untouched.
    std::thread::sleep(Duration::from_secs(4 * INTERVAL_S));
    agent.check_alive(ctx)?;
    let l = listing(ctx)?;
    ctx.check(
        foreign.iter().all(|r| l.contains(r)),
        "service 10.9.9.9:80 (outside the agent's scope) left alone for 4 periods",
    )?;
    agent.stop(ctx)
}

/// Time until the listing is `expected` again, or `None` after [`REPAIR_DEADLINE`].
fn repair_time(ctx: &mut Ctx, expected: &[String]) -> Result<Option<Duration>> {
    let started = Instant::now();
    let repaired = agent::wait_until(REPAIR_DEADLINE, || Ok(quiet_listing()? == expected))?;
    let took = started.elapsed();
    ctx.sh.run("ipvsadm -S -n")?;
    Ok(repaired.then_some(took))
}

fn listing(ctx: &mut Ctx) -> Result<Vec<String>> {
    Ok(sorted_lines(&ctx.sh.run("ipvsadm -S -n")?))
}

/// The listing without a transcript entry (polled every 200 ms).
fn quiet_listing() -> Result<Vec<String>> {
    let out = std::process::Command::new("ipvsadm")
        .args(["-S", "-n"])
        .output()?;
    Ok(sorted_lines(&String::from_utf8_lossy(&out.stdout)))
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

fn shown(took: Option<Duration>) -> String {
    took.map_or(format!("NOT within {} s", REPAIR_DEADLINE.as_secs()), |d| {
        format!("{:.2} s", d.as_secs_f64())
    })
}
