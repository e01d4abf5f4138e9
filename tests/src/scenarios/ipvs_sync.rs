//! Connection sync between three directors, each running `lvs-agent run` with its
//! own sync id, joined in one cluster: lb1 (elected for the VIP group, so the only
//! sync master) sends, every node runs a backup daemon on sync id 0. Connections
//! through lb1 must appear in lb2's and lb3's connection tables, and each node's
//! daemons must be the configured ones. `lvs-cli daemons`, `conns` and `services` on
//! lb1 and lb2 must list what ipvsadm lists.
use crate::ipvs_rules::sorted_lines;
use crate::ipvsadm::{connections_from, service_stats};
use crate::scenario::Ctx;
use crate::scenarios::agent::{self, cluster_key, Agent, Background, Stream};
use crate::scenarios::agent_restart::{echo_service, node_toml, ECHO_PORT};
use crate::topology::TopologySpec;
use anyhow::{Context as _, Result};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const CONNS: u16 = 20;
/// How long a connection may take to show up on the backups.
const SYNC_DEADLINE: Duration = Duration::from_secs(10);
/// Configured (non-default) so the daemons prove they follow the config.
const MCAST_PORT: u16 = 8850;
const MCAST_TTL: u8 = 2;

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let mut spec = TopologySpec::seed();
    spec.directors.push(Ipv4Addr::new(172, 16, 0, 12));
    let topo = ctx.topology(spec)?;
    let spec = topo.spec().clone();
    let vip = spec.vips[0].to_string();
    let service = format!("{vip}:{ECHO_PORT}");
    let rs: Vec<String> = spec.real_servers.iter().map(|a| a.to_string()).collect();

    let tool = ctx.guest_tool().to_string_lossy().into_owned();
    let mut procs = Background::default();
    for node in ["rs1", "rs2"] {
        let listen = format!("0.0.0.0:{ECHO_PORT}");
        procs.spawn(ctx, &topo.ns(node), &[&tool, "echo-server", &listen])?;
    }

    // lb1 first for the group: the only holder, so the only sync master.
    let cluster = format!(
        "[cluster]\nname = \"sync\"\n\n[sync]\nmcast_port = {MCAST_PORT}\nmcast_ttl = {MCAST_TTL}\n\n\
         [[vip_group]]\nname = \"v1\"\nvrrp_id = 50\naddresses = [\"{vip}/24\"]\npriorities = {{ lb1 = 150 }}\n\n{}",
        echo_service(&vip, &rs)
    );
    let key = cluster_key(ctx)?;
    let gossip: Vec<String> = spec
        .directors
        .iter()
        .map(|a| format!("\"{a}:7946\""))
        .collect();
    let mut agents = Vec::new();
    for (i, addr) in spec.directors.iter().enumerate() {
        let n = i + 1;
        let config = std::env::temp_dir().join(format!("sync-lb{n}.toml"));
        let node = node_toml(n, &addr.to_string());
        let others: Vec<&str> = (0..gossip.len())
            .filter(|&j| j != i)
            .map(|j| gossip[j].as_str())
            .collect();
        let join = format!(
            "join = [{}]\ncluster_key_files = [\"{key}\"]\n\n",
            others.join(", ")
        );
        std::fs::write(
            &config,
            node.trim_end().to_owned() + "\n" + &join + &cluster,
        )?;
        agents.push(Agent::start(
            ctx,
            Some(&topo.ns(&format!("lb{n}"))),
            &config,
            &[],
        )?);
    }

    // Daemons as configured on every node.
    for n in 1..=spec.directors.len() {
        let ns = topo.ns(&format!("lb{n}"));
        let ok = agent::wait_until(Duration::from_secs(30), || {
            Ok(daemons_match(
                &ctx.sh.run_in(&ns, "ipvsadm -l --daemon")?,
                n,
            ))
        })?;
        let listing = ctx.sh.run_in(&ns, "ipvsadm -l --daemon")?;
        ctx.check(
            ok,
            format!(
                "lb{n} daemons: {} backup syncid 0, group 224.0.0.81 port {MCAST_PORT} ttl {MCAST_TTL}: {:?}",
                if n == 1 { "master syncid 1 and" } else { "no master," },
                listing.trim()
            ),
        )?;
    }
    for n in 1..=spec.directors.len() {
        let ns = topo.ns(&format!("lb{n}"));
        let ready = agent::wait_until(Duration::from_secs(30), || {
            let l = ctx.sh.run_in(&ns, "ipvsadm -L -n")?;
            Ok(l.matches(&format!(":{ECHO_PORT} ")).count() >= 3)
        })?;
        ctx.check(ready, format!("lb{n}: the agent created {service}"))?;
    }

    let started = Instant::now();
    let stream = Stream {
        target: &service,
        conns: CONNS,
        secs: 14,
        first_port: 31000,
        rate: 10,
    };
    let client = procs.stream(ctx, &topo.ns("client"), &stream)?;
    let client_addr = spec.client.to_string();
    for n in 2..=spec.directors.len() {
        let ns = topo.ns(&format!("lb{n}"));
        let synced = agent::wait_until(SYNC_DEADLINE, || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "ipvsadm", "-L", "-n", "-c"])
                .output()?;
            let l = String::from_utf8_lossy(&out.stdout);
            Ok(connections_from(&l, &client_addr, &service) >= usize::from(CONNS))
        })?;
        let took = started.elapsed();
        let l = ctx.sh.run_in(&ns, "ipvsadm -L -n -c")?;
        let seen = connections_from(&l, &client_addr, &service);
        ctx.check(
            synced,
            format!(
                "lb{n} learned {seen}/{CONNS} connections through lb1 by sync, {:.2} s after the client started",
                took.as_secs_f64()
            ),
        )?;
    }
    // The control API's IPVS listings against ipvsadm's, with the connections open:
    // on lb1 (it forwards them) and lb2 (it learnt them by sync).
    for n in 1..=2 {
        listings_match(ctx, &topo.ns(&format!("lb{n}")), n, &service)?;
    }
    let summary = procs.finish(ctx, client)?;
    ctx.check(
        summary.contains("resets=0 errors=0"),
        format!("client through lb1: {}", summary.trim()),
    )?;
    for a in agents {
        a.stop(ctx)?;
    }
    Ok(())
}

/// `lvs-cli daemons`, `conns` and `services` of lbN equal `ipvsadm -l --daemon`,
/// `-L -n -c` (established entries: the others come and go) and `-L -n --stats --exact`
/// (each counter of `service` between two ipvsadm reads around the call).
fn listings_match(ctx: &mut Ctx, ns: &str, n: usize, service: &str) -> Result<()> {
    let cli = ctx.guest_tool().with_file_name("lvs-cli");
    let cli = format!("{} --socket /run/lvs-agent-lb{n}.sock", cli.display());
    // Two reads at two instants: a daemon started or stopped between them (a group
    // moving, or a released node's master ending) makes them differ once; the
    // comparison is of one state, read again until both agree.
    let (mut ours, mut theirs) = (String::new(), String::new());
    agent::wait_until(Duration::from_secs(15), || {
        ours = ctx.sh.run_in(ns, &format!("{cli} daemons"))?;
        theirs = ctx.sh.run_in(ns, "ipvsadm -l --daemon")?;
        Ok(sorted_lines(&ours) == sorted_lines(&theirs))
    })?;
    ctx.check(
        sorted_lines(&ours) == sorted_lines(&theirs),
        format!(
            "lb{n}: lvs-cli daemons = ipvsadm -l --daemon ({:?})",
            ours.trim()
        ),
    )?;
    // The members table's SYNC column (its own row) says what the kernel runs.
    let members: serde_json::Value =
        serde_json::from_str(&ctx.sh.run_in(ns, &format!("{cli} members --json"))?)?;
    let own = members["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["local"] == true))
        .cloned()
        .unwrap_or_default();
    let flag = |key: &str| own[key].as_bool().unwrap_or(false);
    ctx.check(
        (flag("sync_master"), flag("sync_backup"))
            == (theirs.contains("master"), theirs.contains("backup")),
        format!(
            "lb{n}: lvs-cli members reports the sync daemons ipvsadm lists (master {}, backup {})",
            flag("sync_master"),
            flag("sync_backup")
        ),
    )?;

    let established = |rows: Vec<[String; 5]>| -> BTreeSet<[String; 5]> {
        rows.into_iter().filter(|r| r[1] == "ESTABLISHED").collect()
    };
    let listing = ctx.sh.run_in(ns, "ipvsadm -L -n -c")?;
    let theirs = established(
        listing
            .lines()
            .skip(2)
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let [pro, _, state, src, vip, dst] = w[..] else {
                    return None;
                };
                Some([pro, state, src, vip, dst].map(str::to_owned))
            })
            .collect(),
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctx.sh.run_in(ns, &format!("{cli} conns --json"))?)?;
    let field = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_owned();
    let ours = established(
        json["connections"]
            .as_array()
            .context("connections")?
            .iter()
            .map(|c| ["protocol", "state", "client", "service", "destination"].map(|k| field(c, k)))
            .collect(),
    );
    ctx.check(
        ours == theirs && ours.len() >= usize::from(CONNS),
        format!(
            "lb{n}: lvs-cli conns = ipvsadm -L -n -c ({} established entries each: {} and {})",
            usize::from(CONNS),
            ours.len(),
            theirs.len()
        ),
    )?;

    let before = service_stats(
        &ctx.sh.run_in(ns, "ipvsadm -L -n --stats --exact")?,
        service,
    )?;
    let json: serde_json::Value =
        serde_json::from_str(&ctx.sh.run_in(ns, &format!("{cli} services --json"))?)?;
    let after = service_stats(
        &ctx.sh.run_in(ns, "ipvsadm -L -n --stats --exact")?,
        service,
    )?;
    let key = format!("tcp {service}");
    let svc = json["services"]
        .as_array()
        .context("services")?
        .iter()
        .find(|s| s["service"] == key.as_str())
        .with_context(|| format!("{key} in lvs-cli services"))?;
    let got = |k: &str| svc["stats"][k].as_u64().unwrap_or(u64::MAX);
    let within = [
        ("conns", before.conns, after.conns),
        ("in_packets", before.in_pkts, after.in_pkts),
        ("out_packets", before.out_pkts, after.out_pkts),
        ("in_bytes", before.in_bytes, after.in_bytes),
        ("out_bytes", before.out_bytes, after.out_bytes),
    ]
    .iter()
    .all(|(k, lo, hi)| (*lo..=*hi).contains(&got(k)));
    ctx.check(
        within && svc["destinations"].as_array().map_or(0, Vec::len) == 2,
        format!(
            "lb{n}: lvs-cli services counters of {key} within two ipvsadm --stats reads \
             ({before:?} .. {after:?}: {})",
            svc["stats"]
        ),
    )
}

/// `ipvsadm -l --daemon` shows a backup on sync id 0 and, on lb1 only, a master
/// on sync id 1, all with the configured group, port and ttl.
fn daemons_match(listing: &str, node: usize) -> bool {
    let tail = format!("group=224.0.0.81, port={MCAST_PORT}, ttl={MCAST_TTL})");
    let has = |state: &str, syncid: usize| {
        listing.lines().any(|l| {
            l.starts_with(&format!(
                "{state} sync daemon (mcast=eth0, syncid={syncid},"
            )) && l.ends_with(&tail)
        })
    };
    let masters = listing.lines().filter(|l| l.starts_with("master")).count();
    has("backup", 0)
        && if node == 1 {
            has("master", 1) && masters == 1
        } else {
            masters == 0
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ipvsadm_daemon_listing() {
        let lb1 = "master sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8850, ttl=2)\n\
                   backup sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8850, ttl=2)\n";
        assert!(daemons_match(lb1, 1));
        assert!(!daemons_match(lb1, 2));
        let backup_only = lb1.lines().nth(1).unwrap();
        assert!(daemons_match(backup_only, 3));
        assert!(!daemons_match(backup_only, 1));
        assert!(!daemons_match(&backup_only.replace("ttl=2", "ttl=1"), 3));
    }
}
