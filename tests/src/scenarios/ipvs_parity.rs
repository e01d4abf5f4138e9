//! The agent's IPVS state against ipvsadm's, ipvsadm being the oracle. One
//! config (tests/lab/ipvs-parity.toml: v4 and v6, TCP/UDP/SCTP/fwmark, DR, NAT,
//! IP-in-IP, GUE, GRE, sh/mh flags, persistence masks, thresholds) and the same
//! state as ipvsadm rules (tests/lab/ipvs-parity.rules):
//! - the binding's dump of what ipvsadm created equals the state the agent
//!   derives from the config (`ipvs::desired`), and written back as rules and
//!   restored by ipvsadm gives ipvsadm's listing again (decode round trip);
//! - the binding re-creating that dump gives ipvsadm's listing (encode);
//! - `lvs-agent run` on the config gives ipvsadm's listing (the whole agent).
use crate::ipvs_rules::{from_dump, restore_script, sorted_lines, ServiceState};
use crate::scenario::Ctx;
use crate::scenarios::agent::{self, Agent};
use anyhow::{Context, Result};
use lvs_agent::ipvs::{desired, IpvsClient, Op};
use std::time::{Duration, Instant};

pub const CONFIG: &str = include_str!("../../lab/ipvs-parity.toml");
const RULES: &str = include_str!("../../lab/ipvs-parity.rules");

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The config's interface; IPVS itself is per namespace, this one is the VM's root.
    ctx.sh.run("ip link add eth0 type dummy")?;
    ctx.sh.run("ip addr add 172.16.0.10/24 dev eth0")?;
    ctx.sh.run("ip link set eth0 up")?;
    let outcome = checks(ctx, &rt);
    ctx.sh.run("ipvsadm -C")?;
    ctx.sh.run("ip link del eth0")?;
    outcome
}

fn checks(ctx: &mut Ctx, rt: &tokio::runtime::Runtime) -> Result<()> {
    let client = rt.block_on(IpvsClient::connect())?;

    // The oracle: ipvsadm's own listing of the rules.
    let expected = restore(ctx, &rules_without_comments(RULES))?;
    ctx.check(
        expected.iter().filter(|l| l.starts_with("-A")).count() == 11
            && expected.iter().filter(|l| l.starts_with("-a")).count() == 18,
        format!(
            "ipvsadm restored the parity rules: {} lines (11 services, 18 real servers)",
            expected.len()
        ),
    )?;

    // Decode: dump what ipvsadm made; it is the config's state, and restored
    // as rules it lists the same.
    let dumped = from_dump(rt.block_on(client.snapshot())?);
    let config =
        lvs_agent::config::parse(CONFIG).map_err(|e| anyhow::anyhow!("ipvs-parity.toml: {e:?}"))?;
    let cluster = config
        .cluster
        .context("ipvs-parity.toml has no cluster part")?;
    let mut wanted: Vec<ServiceState> =
        desired::services(&cluster, &mut lvs_agent::health::Health::default())
            .into_iter()
            .map(|v| {
                let mut d = v.destinations;
                d.sort();
                (v.service, d)
            })
            .collect();
    wanted.sort();
    for (w, d) in wanted.iter().zip(&dumped).filter(|(w, d)| w != d) {
        ctx.sh.note(format!("  config: {w:?}\n  kernel: {d:?}"));
    }
    ctx.check(
        wanted == dumped,
        format!(
            "binding dump of ipvsadm's state equals the config's desired state ({} services)",
            dumped.len()
        ),
    )?;
    let round_trip = restore(ctx, &restore_script(&dumped))?;
    report_diff(ctx, &expected, &round_trip);
    ctx.check(
        round_trip == expected,
        "binding dump of ipvsadm's state, restored by ipvsadm, lists the same",
    )?;

    // Encode: the binding re-creates the dumped state on an empty table.
    ctx.sh.run("ipvsadm -C")?;
    let writes = rt.block_on(apply_all(&client, &dumped))?;
    let listed = sorted_lines(&ctx.sh.run("ipvsadm -S -n")?);
    report_diff(ctx, &expected, &listed);
    ctx.check(
        listed == expected,
        format!("binding wrote the dumped state ({writes} requests): ipvsadm lists the same"),
    )?;

    // The agent: `lvs-agent run` on an empty table.
    ctx.sh.run("ipvsadm -C")?;
    let config = std::env::temp_dir().join("ipvs-parity.toml");
    std::fs::write(&config, CONFIG)?;
    let agent = Agent::start(ctx, None, &config, &[])?;
    let started = Instant::now();
    let applied = agent::wait_until(Duration::from_secs(30), || {
        Ok(sorted_lines(&ctx.sh.run("ipvsadm -S -n")?) == expected)
    });
    let took = started.elapsed();
    let listed = sorted_lines(&ctx.sh.run("ipvsadm -S -n")?);
    agent.stop(ctx)?;
    report_diff(ctx, &expected, &listed);
    ctx.check(
        applied?,
        format!(
            "lvs-agent run on ipvs-parity.toml: ipvsadm lists the rules' state (after {:.1} s)",
            took.as_secs_f64()
        ),
    )?;
    Ok(())
}

/// Empties the table, restores `rules` with `ipvsadm -R`, returns the sorted listing.
fn restore(ctx: &mut Ctx, rules: &str) -> Result<Vec<String>> {
    ctx.sh.run("ipvsadm -C")?;
    let file = std::env::temp_dir().join("ipvs-parity.rules");
    std::fs::write(&file, rules)?;
    let script = format!("ipvsadm -R < {}", file.display());
    let ran = ctx.sh.exec(None, &["sh", "-c", &script])?;
    if !ran.success() {
        anyhow::bail!("ipvsadm -R refused the rules: {}", ran.stderr.trim());
    }
    Ok(sorted_lines(&ctx.sh.run("ipvsadm -S -n")?))
}

async fn apply_all(client: &IpvsClient, state: &[ServiceState]) -> Result<usize> {
    let mut writes = 0;
    for (svc, dests) in state {
        let ops = std::iter::once(Op::AddService(svc.clone()))
            .chain(dests.iter().map(|d| Op::AddDestination(svc.key, *d)));
        for op in ops {
            client
                .apply(&op)
                .await
                .with_context(|| format!("apply {op:?}"))?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// ipvsadm -R takes no comments.
fn rules_without_comments(rules: &str) -> String {
    rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Notes the lines only one side has (nothing when equal).
fn report_diff(ctx: &mut Ctx, expected: &[String], got: &[String]) {
    for l in expected.iter().filter(|l| !got.contains(l)) {
        ctx.sh.note(format!("  missing: {l}"));
    }
    for l in got.iter().filter(|l| !expected.contains(l)) {
        ctx.sh.note(format!("  extra:   {l}"));
    }
}
