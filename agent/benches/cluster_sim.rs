//! Gossip + ownership convergence of simulated clusters (virtual time, no sockets).
//!
//! `cargo bench -p lvs-agent --bench cluster_sim -- [--sizes 100,1000] [--trials 5] [--seed 1] [--swim-size 8]`
//!
//! The SWIM config is `lan_swim_config(N)`, or `lan_swim_config(S)` with
//! `--swim-size S` (the agent's `MembershipConfig::new` uses 8).
//!
//! For each size N: N nodes form a cluster (each announces to node 0), then
//! `trials` times the owner of group `vip000` is killed, then `trials` times a
//! fresh node joins (announcing to one live node, as `join` does); each time
//! we measure the virtual time until every live node's own election equals the
//! election over the true live set ("agree", checked every 10 ms) and, for a
//! join, until every node also sees every other ("all know": with 64 groups
//! and many nodes a joiner often owns nothing, so agreeing only needs the
//! joiner to know everyone). Gossip traffic is sealed `GossipDatagram` bytes
//! (the UDP payload: foca's protobuf packet + key id, nonce, tag and framing)
//! per node per second: at rest (once no update is left to piggyback, over
//! two periodic-announce periods) and while a crash is being detected.

use std::time::{Duration, Instant};

use lvs_agent::{
    membership::{failure_detection_bound, lan_swim_config},
    sim::{Sim, SimConfig, Traffic},
};

const TICK: Duration = Duration::from_millis(10);
/// For waits that are not measured precisely (formation, settling between trials).
const SETTLE_TICK: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(300);
/// Two periods of the LAN preset's periodic announce (30 s), whose feed
/// dominates the traffic at rest in large clusters.
const STEADY_WINDOW: Duration = Duration::from_secs(60);

struct Args {
    sizes: Vec<usize>,
    trials: usize,
    seed: u64,
    /// Size `lan_swim_config` for this many members instead of N.
    swim_size: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sizes: vec![100, 1000],
        trials: 5,
        seed: 1,
        swim_size: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value("--sizes")?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("--sizes {s:?}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--trials" => {
                args.trials = value("--trials")?
                    .parse()
                    .map_err(|e| format!("--trials: {e}"))?;
            }
            "--swim-size" => {
                let size = value("--swim-size")?;
                args.swim_size = Some(size.parse().map_err(|e| format!("--swim-size: {e}"))?);
            }
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?;
            }
            // cargo bench passes --bench; libtest filters make no sense here.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.sizes.iter().any(|&n| n < 2) || args.trials == 0 {
        return Err("--sizes must be at least 2 and --trials at least 1".into());
    }
    Ok(args)
}

struct Row {
    n: usize,
    formed: Option<Duration>,
    joins: Vec<Option<Duration>>,
    joins_known: Vec<Option<Duration>>,
    crashes: Vec<Option<Duration>>,
    steady: Traffic,
    during_crash: Traffic,
    crash_time: Duration,
    wall: Duration,
}

fn settled(sim: &mut Sim) -> bool {
    sim.membership_converged() && sim.ownership_agreed()
}

/// Crashes first, on the formed cluster; then joins. A trial that does not
/// converge within `LIMIT` ends the series.
fn run(n: usize, trials: usize, seed: u64, swim: foca::Config) -> Row {
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        swim,
        ..SimConfig::lan(n + trials, seed)
    });
    for i in 0..n {
        sim.start(i, &[0]);
        sim.run_for(Duration::from_millis(1));
    }
    let formed = sim
        .run_until(LIMIT, SETTLE_TICK, settled)
        .map(|t| t + Duration::from_millis(n as u64));
    let mut row = Row {
        n,
        formed,
        joins: Vec::new(),
        joins_known: Vec::new(),
        crashes: Vec::new(),
        steady: Traffic::default(),
        during_crash: Traffic::default(),
        crash_time: Duration::ZERO,
        wall: Duration::ZERO,
    };
    if formed.is_none() {
        row.wall = wall.elapsed();
        return row;
    }
    if sim.run_until(LIMIT, SETTLE_TICK, |s| s.quiet()).is_none() {
        eprintln!("cluster_sim: N={n} still had updates to gossip after {LIMIT:?}");
    }
    let before = sim.traffic();
    sim.run_for(STEADY_WINDOW);
    row.steady = sim.traffic() - before;

    for _ in 0..trials {
        let owners = sim.expected_owners();
        let victim_id = owners["vip000"].clone().expect("vip000 has an owner");
        let victim = (0..sim.len())
            .find(|&i| sim.is_alive(i) && format!("lb{i:04}") == victim_id)
            .expect("the owner is a live node");
        let before = sim.traffic();
        sim.kill(victim);
        let took = sim.run_until(LIMIT, TICK, Sim::ownership_agreed);
        row.during_crash = add(row.during_crash, sim.traffic() - before);
        row.crash_time += took.unwrap_or(LIMIT);
        row.crashes.push(took);
        if took.is_none() || sim.run_until(LIMIT, SETTLE_TICK, settled).is_none() {
            break;
        }
    }
    for k in 0..trials {
        let seed_node = (0..sim.len())
            .find(|&i| sim.is_alive(i))
            .expect("a live node");
        sim.start(n + k, &[seed_node]);
        let took = sim.run_until(LIMIT, TICK, Sim::ownership_agreed);
        row.joins.push(took);
        let known = took.and_then(|agreed| {
            let rest = sim.run_until(LIMIT, TICK, |s| s.membership_converged())?;
            Some(agreed + rest)
        });
        row.joins_known.push(known);
        if known.is_none() || sim.run_until(LIMIT, SETTLE_TICK, settled).is_none() {
            break;
        }
    }
    row.wall = wall.elapsed();
    row
}

fn add(a: Traffic, b: Traffic) -> Traffic {
    Traffic {
        datagrams: a.datagrams + b.datagrams,
        payload_bytes: a.payload_bytes + b.payload_bytes,
        wire_bytes: a.wire_bytes + b.wire_bytes,
    }
}

/// "p50 / max s", the max as ">LIMIT" when a trial never converged.
fn p50_max(samples: &[Option<Duration>]) -> String {
    let mut done: Vec<Duration> = samples.iter().flatten().copied().collect();
    if done.is_empty() {
        return format!("none in {}", LIMIT.as_secs());
    }
    done.sort();
    let max = if done.len() < samples.len() {
        format!(">{}", LIMIT.as_secs())
    } else {
        format!("{:.2}", done[done.len() - 1].as_secs_f64())
    };
    format!("{:.2} / {max}", done[done.len() / 2].as_secs_f64())
}

/// Per node per second.
fn rate(total: u64, nodes: usize, span: Duration) -> f64 {
    total as f64 / nodes as f64 / span.as_secs_f64()
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("cluster_sim: {e}");
        std::process::exit(2);
    });
    println!(
        "cluster_sim: lvs-agent's lan_swim_config({}) (max packet {} B), one-way latency 0.5 ms, \
         lossless; 64 VIP groups (default priority, preempt, no delay); {} trials, seed {}",
        args.swim_size.map_or("N".to_owned(), |s| s.to_string()),
        lan_swim_config(2).max_packet_size,
        args.trials,
        args.seed
    );
    println!("times are virtual seconds, checked every {TICK:?}; B = sealed GossipDatagram bytes (UDP payload)\n");
    println!(
        "| N | suspect→down | detection bound | formed | join→agree p50/max | join→all know p50/max \
         | crash→agree p50/max | rest B/s/node | rest dgram/s/node | rest payload B/dgram \
         | crash B/s/node | wall |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.sizes {
        let size = args
            .swim_size
            .unwrap_or_else(|| u32::try_from(n).unwrap_or(u32::MAX));
        let swim = lan_swim_config(size);
        let row = run(n, args.trials, args.seed, swim.clone());
        let live = row.n;
        let formed = row.formed.map_or(format!(">{}", LIMIT.as_secs()), |t| {
            format!("{:.1}", t.as_secs_f64())
        });
        println!(
            "| {} | {:.1} s | {:.0} s | {formed} s | {} s | {} s | {} s | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} s |",
            row.n,
            swim.suspect_to_down_after.as_secs_f64(),
            failure_detection_bound(&swim, n).as_secs_f64(),
            p50_max(&row.joins),
            p50_max(&row.joins_known),
            p50_max(&row.crashes),
            rate(row.steady.wire_bytes, live, STEADY_WINDOW),
            rate(row.steady.datagrams, live, STEADY_WINDOW),
            row.steady.payload_bytes as f64 / row.steady.datagrams.max(1) as f64,
            rate(row.during_crash.wire_bytes, live, row.crash_time),
            row.wall.as_secs_f64(),
        );
    }
}
