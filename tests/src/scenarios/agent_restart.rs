//! Agent crash and restart under load: 50 long-lived TCP connections from the
//! client through lb1 (DR to rs1/rs2) keep exchanging data while `lvs-agent run`
//! on lb1 is killed with SIGKILL and started again. No connection may see a reset
//! or an error, the kernel's service must not be re-created (its counters keep
//! growing from where they were) and the 50 connection entries stay.
use crate::ipvsadm::{connections_from, service_stats, ServiceStats};
use crate::scenario::Ctx;
use crate::scenarios::agent::{self, Agent, Background, Stream};
use crate::stream::StreamSummary;
use crate::topology::TopologySpec;
use anyhow::Result;
use std::thread::sleep;
use std::time::Duration;

pub const ECHO_PORT: u16 = 7000;
const CONNS: u16 = 50;
/// The client's whole run: before the kill, the restart, and after it.
const CLIENT_SECS: u64 = 16;

/// The node part for `lbN` (address `addr`, sync id N) with a 1 s reconcile period and
/// a control socket of its own (the directors of one VM share its file system).
pub fn node_toml(n: usize, addr: &str) -> String {
    format!(
        "[node]\nid = \"lb{n}\"\ninterface = \"eth0\"\naddress = \"{addr}\"\nsyncid = {n}\nreconcile_interval = 1\n\
         control_socket = \"/run/lvs-agent-lb{n}.sock\"\n\n"
    )
}

/// The echo service on the seed's first VIP, DR to rs1 and rs2.
pub fn echo_service(vip: &str, rs: &[String]) -> String {
    let mut s = format!(
        "[[service]]\nvip = \"{vip}\"\nport = {ECHO_PORT}\nscheduler = \"wrr\"\nforwarding = \"dr\"\n"
    );
    for addr in rs {
        s += &format!("[[service.real_server]]\naddress = \"{addr}\"\nport = {ECHO_PORT}\n");
    }
    s
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let spec = topo.spec().clone();
    let lb1 = topo.ns("lb1");
    let vip = spec.vips[0].to_string();
    let service = format!("{vip}:{ECHO_PORT}");
    let rs: Vec<String> = spec.real_servers.iter().map(|a| a.to_string()).collect();
    ctx.sh
        .run(&format!("ip -n {lb1} addr add {vip}/32 dev eth0"))?;

    let tool = ctx.guest_tool().to_string_lossy().into_owned();
    let mut procs = Background::default();
    for node in ["rs1", "rs2"] {
        let listen = format!("0.0.0.0:{ECHO_PORT}");
        procs.spawn(ctx, &topo.ns(node), &[&tool, "echo-server", &listen])?;
    }

    let config = std::env::temp_dir().join("agent-restart.toml");
    std::fs::write(
        &config,
        format!(
            "{}[cluster]\nname = \"restart\"\n\n{}",
            node_toml(1, &spec.directors[0].to_string()),
            echo_service(&vip, &rs)
        ),
    )?;
    let agent = Agent::start(ctx, Some(&lb1), &config, &[])?;
    let ready = agent::wait_until(Duration::from_secs(30), || {
        let l = ctx.sh.run_in(&lb1, "ipvsadm -L -n")?;
        Ok(l.matches(&format!(":{ECHO_PORT} ")).count() >= 3)
    })?;
    ctx.check(
        ready,
        format!("lvs-agent on lb1 created {service} -> rs1, rs2"),
    )?;

    let stream = Stream {
        target: &service,
        conns: CONNS,
        secs: CLIENT_SECS,
        first_port: 30000,
        rate: 10,
    };
    let client = procs.stream(ctx, &topo.ns("client"), &stream)?;
    sleep(Duration::from_secs(4));
    let client_addr = spec.client.to_string();
    let entries = |ctx: &mut Ctx| -> Result<usize> {
        let l = ctx.sh.run_in(&lb1, "ipvsadm -L -n -c")?;
        Ok(connections_from(&l, &client_addr, &service))
    };
    let before_entries = entries(ctx)?;
    let before = stats(ctx, &lb1, &service)?;
    ctx.check(
        before_entries == usize::from(CONNS),
        format!("before the kill: {before_entries} connection entries from the client"),
    )?;

    agent.kill9(ctx)?;
    sleep(Duration::from_secs(1));
    let mut agent = Agent::start(ctx, Some(&lb1), &config, &[])?;
    // Several reconcile periods of the new agent while the client keeps going.
    sleep(Duration::from_secs(5));
    agent.check_alive(ctx)?;
    let after_restart = stats(ctx, &lb1, &service)?;
    let after_entries = entries(ctx)?;
    ctx.check(
        after_entries == usize::from(CONNS),
        format!("after the restart: {after_entries} connection entries from the client"),
    )?;

    let summary: StreamSummary = procs.finish(ctx, client)?.parse()?;
    ctx.check(
        summary.conns == u32::from(CONNS)
            && summary.resets == 0
            && summary.errors == 0
            && summary.exchanges > u64::from(CONNS) * 10,
        format!("{CONNS} connections through the kill and restart: {summary}"),
    )?;
    let after = stats(ctx, &lb1, &service)?;
    ctx.check(
        after_restart.conns >= before.conns
            && after_restart.in_pkts > before.in_pkts
            && after.in_pkts > after_restart.in_pkts,
        format!(
            "service counters never went back: conns {} -> {} -> {}, inpkts {} -> {} -> {}",
            before.conns,
            after_restart.conns,
            after.conns,
            before.in_pkts,
            after_restart.in_pkts,
            after.in_pkts
        ),
    )?;
    agent.stop(ctx)
}

/// Counters of `service` in `ns` (`ipvsadm --stats --exact`).
pub fn stats(ctx: &mut Ctx, ns: &str, service: &str) -> Result<ServiceStats> {
    let l = ctx.sh.run_in(ns, "ipvsadm -L -n --stats --exact")?;
    service_stats(&l, service)
}
