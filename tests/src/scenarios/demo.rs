//! The README's main job (`deploy/lab/run demo`): the seed's two directors run
//! lvs-agent from the project's seed example files, a third one joins with
//! `lvs-agent join`, and a client's long-lived connections cross every move:
//! 1. ha_lb_01 and ha_lb_02 start (VI_1 on lb1, VI_2 on lb2); 100 connections per
//!    VIP, spread by IPVS over rs1/rs2;
//! 2. ha_lb_03 starts alone and joins: the election gives it VI_1, handed over by
//!    lb1 once lb3's sync backup has caught up;
//! 3. kill -9 of VI_2's owner (its link cut, its namespace gone: a power cut): the
//!    heir takes VI_2, a second batch of connections opens during the outage;
//! 4. the crashed director boots and takes VI_2 back after its sync catch-up.
//!
//! The headlines (`Shell::say`) end with one table: connections opened and lost, the
//! time each move left a VIP without holder or with two. `--verbose` prints every
//! command and its output.
use crate::holders::{fmt_ms, Recorder};
use crate::scenario::Ctx;
use crate::scenarios::agent::{wait_until, Agent, Background, Stream};
use crate::scenarios::probe::{holds, quiet};
use crate::scenarios::seed_ha::{first_holding, ip, write_agent_configs, SERVICE_PORT, WEB_PORT};
use crate::scenarios::three_ha::two_holders_bound;
use crate::stream::StreamSummary;
use crate::topology::{Topology, TopologySpec};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

const CONNS: u16 = 100;
const RATE: u32 = 10;
/// How long traffic runs between two moves.
const PHASE: Duration = Duration::from_secs(4);
const SETTLE: Duration = Duration::from_secs(60);
const DIRECTORS: usize = 3;

/// One row of the closing table.
struct Move {
    what: String,
    no_holder: Duration,
    two_holders: Duration,
    /// From the fault (or the join) to the new holder.
    took: Duration,
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let mut spec = TopologySpec::seed();
    spec.http_port = WEB_PORT;
    spec.directors = (0..DIRECTORS as u8)
        .map(|i| Ipv4Addr::new(172, 16, 0, 10 + i))
        .collect();
    let topo = ctx.topology(spec)?;
    let spec = topo.spec().clone();
    let vips: Vec<String> = spec.vips.iter().map(|v| v.to_string()).collect();
    ctx.sh.say(format!(
        "seed topology: directors lb1..lb3 (172.16.0.10-12), real servers rs1/rs2 \
         (VIPs on lo, DR), client 172.16.0.200; VIPs {}",
        vips.join(", ")
    ));
    let mut procs = Background::echo_servers(ctx, &topo, SERVICE_PORT)?;
    let dir = write_agent_configs(ctx)?;
    let mut agents: Vec<Option<Agent>> = (0..DIRECTORS).map(|_| None).collect();
    let t0 = Instant::now();
    for n in 1..=2 {
        agents[n - 1] = Some(start(ctx, &topo, &dir, n)?);
    }
    let placed = |want: [usize; 2]| -> Result<bool> {
        for (g, &n) in want.iter().enumerate() {
            for m in 1..=DIRECTORS {
                if holds(&topo.ns(&format!("lb{m}")), &vips[g])? != (m == n) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    let ok = wait_until(SETTLE, || placed([1, 2]))?;
    ctx.check(ok, "VI_1 on lb1, VI_2 on lb2")?;
    ctx.sh.say(format!(
        "lvs-agent on lb1 and lb2 (seed-cluster.toml + seed-ha_lb_0N.toml): \
         VI_1 {} on lb1, VI_2 {} on lb2 after {:.1} s",
        vips[0],
        vips[1],
        t0.elapsed().as_secs_f64()
    ));

    let mut rec = Recorder::start(
        &(1..=DIRECTORS)
            .map(|n| (format!("lb{n}"), topo.ns(&format!("lb{n}"))))
            .collect::<Vec<_>>(),
        "eth0",
        &topo.ns("sw"),
    );
    let mut next_port = 20000;
    let mut clients = Vec::new();
    let mut batch = |ctx: &mut Ctx, procs: &mut Background, name: &'static str| -> Result<()> {
        for v in &vips {
            let target = format!("{v}:{SERVICE_PORT}");
            let stream = Stream {
                target: &target,
                conns: CONNS,
                secs: 3600,
                first_port: next_port,
                rate: RATE,
            };
            next_port += CONNS;
            clients.push((name, procs.stream(ctx, &topo.ns("client"), &stream)?));
        }
        Ok(())
    };
    batch(ctx, &mut procs, "first")?;
    sleep(PHASE);
    for (g, owner) in [(0, 1), (1, 2)] {
        let table = quiet(&topo.ns(&format!("lb{owner}")), &["ipvsadm", "-L", "-n"])?;
        ctx.sh.note(&table);
        ctx.sh.say(format!(
            "client: {CONNS} connections to {}:{SERVICE_PORT}, {RATE} lines/s each; \
             lb{owner}'s IPVS spreads them: {}",
            vips[g],
            spread(&table, &vips[g], &spec.real_servers)
        ));
    }

    let mut moves = Vec::new();
    // 2. lb3 joins.
    let joined_at = rec.now();
    agents[2] = Some(start(ctx, &topo, &dir, 3)?);
    let agent_bin = ctx.guest_tool().with_file_name("lvs-agent");
    let join = format!(
        "{} join --socket /run/lvs-agent-lb3.sock {}:7946",
        agent_bin.display(),
        spec.directors[0]
    );
    let mut said = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let ran = ctx.sh.exec(Some(&topo.ns("lb3")), &["sh", "-c", &join])?;
        said = ran.stdout.trim().to_owned();
        Ok(ran.success())
    })?;
    ctx.check(ok, "lvs-agent join on lb3")?;
    ctx.sh.say(format!(
        "lb3: lvs-agent run -c seed-ha_lb_03.toml (no peers), then \
         `lvs-agent join 172.16.0.10:7946`: {said}"
    ));
    let ok = wait_until(SETTLE, || placed([3, 2]))?;
    ctx.check(ok, "the election gives lb3 VI_1; VI_2 stays on lb2")?;
    let s = rec.analyse(ip(&vips[0])?, None, joined_at, rec.now());
    moves.push(Move {
        what: "lb3 joins: VI_1 lb1 -> lb3 (hand-over)".into(),
        no_holder: s.no_holder,
        two_holders: s.two_holders,
        took: first_holding(&s, "lb3").map_or(Duration::ZERO, |t| t - joined_at),
    });
    let status = ctx.sh.run_in(
        &topo.ns("lb1"),
        &format!(
            "{} status --socket /run/lvs-agent-lb1.sock",
            agent_bin.display()
        ),
    )?;
    ctx.sh.say("lvs-agent status on lb1:");
    for l in status
        .lines()
        .filter(|l| l.starts_with("member") || l.starts_with("group"))
    {
        ctx.sh.say(format!("  {l}"));
    }
    sleep(PHASE);

    // 3. kill -9 of VI_2's owner.
    let crashed = rec.now();
    topo.crash(&mut ctx.sh, "lb2")?;
    rec.gone("lb2", crashed);
    if let Some(a) = agents[1].take() {
        a.kill9(ctx)?;
    }
    let ok = wait_until(SETTLE, || {
        Ok(holds(&topo.ns("lb1"), &vips[1])? || holds(&topo.ns("lb3"), &vips[1])?)
    })?;
    ctx.check(ok, "VI_2 taken over after lb2's crash")?;
    let s = rec.analyse(ip(&vips[1])?, None, crashed, rec.now());
    ctx.sh
        .note(format!("VI_2 holders after the crash: {:?}", s.timeline));
    let heir = s.final_holders().iter().next().cloned().unwrap_or_default();
    let took = first_holding(&s, &heir).map_or(Duration::ZERO, |t| t - crashed);
    ctx.sh.say(format!(
        "kill -9 of lb2 (VI_2's owner), its link cut: VI_2 on {heir} {} ms later; \
         a second batch of {CONNS} connections per VIP opens during the outage",
        fmt_ms(took)
    ));
    moves.push(Move {
        what: format!("crash of lb2: VI_2 -> {heir}"),
        no_holder: s.no_holder,
        two_holders: s.two_holders,
        took,
    });
    batch(ctx, &mut procs, "outage")?;
    sleep(PHASE);

    // 4. lb2 returns.
    let back = rec.now();
    topo.boot(&mut ctx.sh, "lb2")?;
    rec.watch("lb2", &topo.ns("lb2"));
    agents[1] = Some(start(ctx, &topo, &dir, 2)?);
    let ok = wait_until(SETTLE, || placed([3, 2]))?;
    ctx.check(ok, "lb2 took VI_2 back")?;
    let s = rec.analyse(ip(&vips[1])?, None, back, rec.now());
    let took = first_holding(&s, "lb2").map_or(Duration::ZERO, |t| t - back);
    ctx.sh.say(format!(
        "lb2 boots and starts again: VI_2 back on lb2 {:.1} s later, after its sync \
         backup caught up ([sync] catch_up), by a hand-over",
        took.as_secs_f64()
    ));
    moves.push(Move {
        what: format!("lb2 returns: VI_2 {heir} -> lb2 (hand-over)"),
        no_holder: s.no_holder,
        two_holders: s.two_holders,
        took,
    });
    sleep(PHASE);

    let mut rows = Vec::new();
    let mut lost_total = 0;
    for (name, index) in clients {
        let summary: StreamSummary = procs.stop(ctx, index)?.parse()?;
        let lost = summary.resets + summary.errors;
        lost_total += lost;
        rows.push((name, summary.conns, lost, summary.max_stall_ms));
    }
    ctx.sh.say("");
    ctx.sh.say(format!(
        "{:<44} {:>8} {:>12} {:>13}",
        "move", "took ms", "no holder ms", "two holders ms"
    ));
    for m in &moves {
        ctx.sh.say(format!(
            "{:<44} {:>8} {:>12} {:>13}",
            m.what,
            fmt_ms(m.took),
            fmt_ms(m.no_holder),
            fmt_ms(m.two_holders)
        ));
    }
    ctx.sh.say(format!(
        "{:<44} {:>8} {:>12} {:>13}",
        "connections", "opened", "lost", "longest stall ms"
    ));
    for (i, (name, conns, lost, stall)) in rows.iter().enumerate() {
        ctx.sh.say(format!(
            "{:<44} {conns:>8} {lost:>12} {stall:>13}",
            format!("{name} batch to {}", vips[i % vips.len()])
        ));
    }
    ctx.check(lost_total == 0, format!("{lost_total} connections lost"))?;
    let bound = two_holders_bound();
    for m in &moves {
        ctx.check(
            m.two_holders <= bound,
            format!(
                "{}: two holders {} ms (bound: one advert interval beyond the longest \
                 agent stall, {} ms)",
                m.what,
                fmt_ms(m.two_holders),
                fmt_ms(bound)
            ),
        )?;
    }
    for a in agents.into_iter().flatten() {
        a.stop(ctx)?;
    }
    Ok(())
}

fn start(ctx: &mut Ctx, topo: &Topology, dir: &Path, n: usize) -> Result<Agent> {
    let node = dir.join(format!("ha_lb_0{n}.toml"));
    let cluster = dir.join("seed-cluster.toml");
    Agent::start(
        ctx,
        Some(&topo.ns(&format!("lb{n}"))),
        &node,
        &["-c", &cluster.to_string_lossy()],
    )
    .with_context(|| format!("start lvs-agent on lb{n}"))
}

/// "rs1 172.16.0.100 (weight 1) 50 active, rs2 ..." from `ipvsadm -L -n` for `vip`.
fn spread(table: &str, vip: &str, real_servers: &[Ipv4Addr]) -> String {
    let mut inside = false;
    let mut out = Vec::new();
    for line in table.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["TCP", service, ..] => inside = service.starts_with(&format!("{vip}:")),
            ["->", rs, _, weight, active, ..] if inside => {
                let n = real_servers
                    .iter()
                    .position(|a| rs.starts_with(&format!("{a}:")))
                    .map_or("?".to_owned(), |i| format!("rs{}", i + 1));
                out.push(format!("{n} (weight {weight}) {active} active"));
            }
            _ => {}
        }
    }
    out.join(", ")
}
