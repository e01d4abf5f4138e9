//! Health checks on the seed topology: the seed's HTTP_GET (`url { path /; status_code
//! 200 }`, connect_timeout 3, retry 2, delay_before_retry 2, delay_loop 6) run by the
//! directors, lvs-agent from the project's seed example files or keepalived from the
//! seed's own configs. rs1's web server stops: rs1 must leave the IPVS table of every
//! director within connect_timeout + retry × delay_before_retry + delay_loop (13 s),
//! new connections meanwhile go to rs2 without a failure; the server starts again: rs1
//! comes back with its weight. Prints one `health:` line per director (out after,
//! back after; `deploy/bench/health` tabulates them).
use crate::scenario::Ctx;
use crate::scenarios::agent::{wait_until, Background};
use crate::scenarios::probe::quiet;
use crate::scenarios::seed_ha::{write_agent_configs, Director, Kind};
use crate::topology::{Topology, TopologySpec};
use anyhow::Result;
use std::time::{Duration, Instant};

/// The seed check's bound: connect_timeout + retry × delay_before_retry + delay_loop.
const OUT_BOUND: Duration = Duration::from_secs(3 + 2 * 2 + 6);
/// Back at the first check after the server answers again: delay_loop + one check.
const BACK_BOUND: Duration = Duration::from_secs(6 + 3);
const SERVICE: &str = "10.0.0.10:80";
const RS1: &str = "172.16.0.100:80";
const FETCHES: u16 = 50;

/// lvs-agent on lb1/lb2: rs1 out within the bound, no failed fetch, back with weight 1.
pub fn agents(ctx: &mut Ctx) -> Result<()> {
    run(ctx, Kind::Agent, true)
}

/// The seed's keepalived pair, for the bench: figures only.
pub fn keepalived(ctx: &mut Ctx) -> Result<()> {
    run(ctx, Kind::Keepalived, false)
}

fn run(ctx: &mut Ctx, kind: Kind, strict: bool) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let dir = write_agent_configs(ctx)?;
    let mut directors = Vec::new();
    for n in 1..=2 {
        directors.push(Director::start(ctx, &topo, kind, n, &dir)?);
    }
    let directors_ns = [topo.ns("lb1"), topo.ns("lb2")];
    let weight = |ns: &str| -> Result<Option<u32>> { rs1_weight(ns) };
    let ok = wait_until(Duration::from_secs(60), || {
        Ok(directors_ns
            .iter()
            .all(|ns| weight(ns).ok().flatten() == Some(1)))
    })?;
    ctx.check(ok, format!("rs1 in {SERVICE} on lb1 and lb2 with weight 1"))?;
    for ns in &directors_ns {
        let table = quiet(ns, &["ipvsadm", "-L", "-n", "-t", SERVICE])?;
        ctx.sh.note(format!("[{ns}] {table}"));
    }

    let mut watchers = Background::default();
    let watch = if kind == Kind::Agent {
        let cli = ctx.guest_tool().with_file_name("lvs-cli");
        let cli = cli.to_string_lossy().into_owned();
        let argv = [cli.as_str(), "--socket", "/run/lvs-agent-lb1.sock", "watch"];
        Some(watchers.spawn(ctx, &directors_ns[0], &argv)?)
    } else {
        None
    };
    let stopped = Instant::now();
    let mut servers = Background::default();
    stop_web_server(ctx, &topo, "rs1")?;
    let out = times(&directors_ns, OUT_BOUND * 2, |ns| Ok(weight(ns)?.is_none()))?;
    let got = topo.fetch(&mut ctx.sh, "client", "10.0.0.10".parse()?, FETCHES)?;
    let fetch_errors = got.errors;
    ctx.sh.note(format!("after rs1 left: {got}"));
    if kind == Kind::Agent {
        // Each director's verdicts reach the other by gossip: lb1's status shows rs1
        // down on both, with lb1's own reason.
        let agent = ctx.guest_tool().with_file_name("lvs-agent");
        let status = format!(
            "{} status --socket /run/lvs-agent-lb1.sock",
            agent.display()
        );
        let mut last = String::new();
        let shown = wait_until(Duration::from_secs(10), || {
            last = quiet(&directors_ns[0], &["sh", "-c", &status])?;
            Ok(last.contains(&format!("service tcp {SERVICE} healthy 1/2"))
                && last.contains(&format!(
                    "real-server {RS1} down (connect to {RS1}: Connection refused"
                ))
                && last.contains("down-on [ha_lb_02] up-on []"))
        })?;
        ctx.sh.note(format!("[lb1]# lvs-agent status\n{last}"));
        ctx.check(
            shown,
            "lvs-agent status on lb1: 1/2 healthy, rs1 down with its reason, down on ha_lb_02 too",
        )?;
    }
    if let Some(index) = watch {
        let said = watchers.interrupt(ctx, index)?;
        ctx.check(
            said.contains(&format!("tcp {SERVICE} real server {RS1} down")),
            "lvs-cli watch on lb1 said rs1 went down",
        )?;
    }

    let started = Instant::now();
    let rs1_www = topo.www("rs1").to_string_lossy().into_owned();
    servers.spawn(
        ctx,
        &topo.ns("rs1"),
        &["busybox", "httpd", "-f", "-p", "80", "-h", &rs1_www],
    )?;
    let back = times(&directors_ns, BACK_BOUND * 2, |ns| {
        Ok(weight(ns)? == Some(1))
    })?;
    let fmt =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
    for (i, ns) in directors_ns.iter().enumerate() {
        let table = quiet(ns, &["ipvsadm", "-L", "-n", "-t", SERVICE])?;
        ctx.sh.note(format!("[{ns}] {table}"));
        ctx.sh.note(format!(
            "health: {} lb{} out_s={} back_s={} fetch_errors={fetch_errors}",
            match kind {
                Kind::Agent => "agent",
                Kind::Keepalived => "keepalived",
            },
            i + 1,
            fmt(out[i].map(|t| t - stopped)),
            fmt(back[i].map(|t| t - started)),
        ));
    }
    if strict {
        for (i, (o, b)) in out.iter().zip(&back).enumerate() {
            let o = o.map(|t| t - stopped);
            ctx.check(
                o.is_some_and(|o| o <= OUT_BOUND),
                format!(
                    "lb{}: rs1 out of {SERVICE} {} s after its web server stopped (bound {} s)",
                    i + 1,
                    fmt(o),
                    OUT_BOUND.as_secs()
                ),
            )?;
            let b = b.map(|t| t - started);
            ctx.check(
                b.is_some_and(|b| b <= BACK_BOUND),
                format!(
                    "lb{}: rs1 back with weight 1 {} s after its web server started (bound {} s)",
                    i + 1,
                    fmt(b),
                    BACK_BOUND.as_secs()
                ),
            )?;
        }
        ctx.check(
            got.errors == 0 && got.from("rs2") == u64::from(FETCHES),
            format!("{FETCHES} new connections while rs1 is out: all on rs2 ({got})"),
        )?;
    }
    for d in directors {
        d.stop(ctx)?;
    }
    Ok(())
}

/// rs1's weight in `ns`'s table for [`SERVICE`], `None` when it is not there.
fn rs1_weight(ns: &str) -> Result<Option<u32>> {
    let table = quiet(ns, &["ipvsadm", "-L", "-n", "-t", SERVICE])?;
    Ok(table.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["->", rs, _, weight, ..] if *rs == RS1 => weight.parse().ok(),
            _ => None,
        }
    }))
}

/// Kills the web server of real server `node` (the only process in its namespace).
fn stop_web_server(ctx: &mut Ctx, topo: &Topology, node: &str) -> Result<()> {
    topo.kill_all(&mut ctx.sh, node, "TERM")
}

/// Polls every 100 ms until `cond` holds in each namespace or `limit` passes; when it
/// first held in each.
fn times(
    namespaces: &[String],
    limit: Duration,
    cond: impl Fn(&str) -> Result<bool>,
) -> Result<Vec<Option<Instant>>> {
    let mut at = vec![None; namespaces.len()];
    let deadline = Instant::now() + limit;
    while at.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, ns) in namespaces.iter().enumerate() {
            if at[i].is_none() && cond(ns)? {
                at[i] = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(at)
}
