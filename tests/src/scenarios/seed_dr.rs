//! The seed design's services on one director, checked end to end in DR mode:
//! 10.0.0.10:80 and 10.0.0.11:80 on lb1, real servers rs1 (weight 1) and rs2
//! (weight 2), `-g` (direct routing).
use crate::ipvsadm::{connections_from, service_stats, ServiceStats};
use crate::scenario::Ctx;
use crate::topology::TopologySpec;
use anyhow::Result;
use std::time::{Duration, Instant};

/// Fresh connections per phase; a multiple of 3 so wrr 1:2 is exact.
const FETCHES: u16 = 300;

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let spec = topo.spec().clone();
    let lb1 = topo.ns("lb1");
    let [vip1, vip2] = [spec.vips[0], spec.vips[1]];
    let port = spec.http_port;
    let (rs1, rs2) = (spec.real_servers[0], spec.real_servers[1]);

    // lb1 holds both VIPs on its LAN interface, where VRRP would put them.
    for vip in &spec.vips {
        ctx.sh
            .run(&format!("ip -n {lb1} addr add {vip}/32 dev eth0"))?;
        ctx.sh
            .run_in(&lb1, &format!("ipvsadm -A -t {vip}:{port} -s lc"))?;
        ctx.sh.run_in(
            &lb1,
            &format!("ipvsadm -a -t {vip}:{port} -r {rs1}:{port} -g -w 1"),
        )?;
        ctx.sh.run_in(
            &lb1,
            &format!("ipvsadm -a -t {vip}:{port} -r {rs2}:{port} -g -w 2"),
        )?;
    }
    ctx.sh.run_in(&lb1, "ipvsadm -L -n")?;

    // wrr is deterministic: over 3k fresh connections exactly k to rs1 and 2k to rs2.
    ctx.sh
        .run_in(&lb1, &format!("ipvsadm -E -t {vip1}:{port} -s wrr"))?;
    let lb1_tx = topo.tx_bytes(&mut ctx.sh, "lb1")?;
    let rs_tx = topo.tx_bytes(&mut ctx.sh, "rs1")? + topo.tx_bytes(&mut ctx.sh, "rs2")?;
    let got = topo.fetch(&mut ctx.sh, "client", vip1, FETCHES)?;
    let lb1_sent = topo.tx_bytes(&mut ctx.sh, "lb1")? - lb1_tx;
    let rs_sent = topo.tx_bytes(&mut ctx.sh, "rs1")? + topo.tx_bytes(&mut ctx.sh, "rs2")? - rs_tx;
    ctx.check(
        got.errors == 0,
        format!("wrr: {} fetch errors ({:?})", got.errors, got.first_error),
    )?;
    ctx.check(
        got.from("rs1") == u64::from(FETCHES / 3) && got.from("rs2") == u64::from(FETCHES / 3 * 2),
        format!(
            "wrr 1:2 over {FETCHES}: rs1={} rs2={}",
            got.from("rs1"),
            got.from("rs2")
        ),
    )?;

    // DR: replies go rs -> client directly; lb1 only forwards the client's packets.
    let stats = settled_stats(ctx, &lb1, &format!("{vip1}:{port}"), u64::from(FETCHES))?;
    ctx.check(
        stats.conns == u64::from(FETCHES) && stats.out_pkts == 0 && stats.in_pkts > 0,
        format!(
            "DR counters on lb1: conns={} in_pkts={} out_pkts={} (out must be 0)",
            stats.conns, stats.in_pkts, stats.out_pkts
        ),
    )?;
    ctx.check(
        lb1_sent * 4 < got.bytes && rs_sent >= got.bytes,
        format!(
            "bytes: client received {}, real servers sent {rs_sent}, lb1 sent {lb1_sent}",
            got.bytes
        ),
    )?;
    let conns = ctx.sh.run_in(&lb1, "ipvsadm -L -n -c")?;
    let client_entries =
        connections_from(&conns, &spec.client.to_string(), &format!("{vip1}:{port}"));
    ctx.check(
        client_entries > 0,
        format!(
            "ipvsadm -L -n -c: {client_entries} entries from client {} to {vip1}:{port}",
            spec.client
        ),
    )?;

    // lc (the seed's scheduler) spreads over both.
    ctx.sh
        .run_in(&lb1, &format!("ipvsadm -E -t {vip1}:{port} -s lc"))?;
    for vip in [vip1, vip2] {
        let got = topo.fetch(&mut ctx.sh, "client", vip, FETCHES)?;
        ctx.check(
            got.errors == 0
                && got.from("rs1") > 0
                && got.from("rs2") > 0
                && got.answers() == u64::from(FETCHES),
            format!(
                "lc via {vip}: rs1={} rs2={} errors={}",
                got.from("rs1"),
                got.from("rs2"),
                got.errors
            ),
        )?;
    }
    settled_stats(ctx, &lb1, &format!("{vip2}:{port}"), u64::from(FETCHES))?;
    ctx.sh.run_in(&lb1, "ipvsadm -L -n --stats")?;
    Ok(())
}

/// The service's counters once they show `conns` connections (or after 10 s):
/// kernels before 6.2 fold the per-CPU counters into what ipvsadm reads only
/// every 2 s, in the rate estimator.
fn settled_stats(ctx: &mut Ctx, ns: &str, service: &str, conns: u64) -> Result<ServiceStats> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listing = ctx.sh.run_in(ns, "ipvsadm -L -n --stats --exact")?;
        let stats = service_stats(&listing, service)?;
        if stats.conns >= conns || Instant::now() > deadline {
            return Ok(stats);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
