//! The replies as text: `lvs-agent status`'s one line per fact (for scripts and
//! tests), and `lvs-cli`'s tables in ipvsadm's and keepalived's words (MASTER/BACKUP,
//! VIPs, priorities).

use std::collections::BTreeMap;

use lvs_proto::v1::{
    ClusterEvent, ConnectionsReply, DaemonsReply, GroupStatus, IpvsStats, JoinReply, MemberStatus,
    ServicesReply, StatusReply,
};

/// Columns padded to their widest cell, two spaces apart; the last is not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line += cell;
            } else {
                line += &format!("{cell:<w$}  ", w = widths[i]);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `lvs-cli members`: one row per member.
pub fn members(status: &StatusReply) -> String {
    let mut rows = vec![[
        "NODE", "ADDRESS", "STATE", "SYNCID", "SYNC", "HOLDS", "DOCUMENT", "CONFIG",
    ]
    .map(String::from)
    .to_vec()];
    for m in &status.members {
        rows.push(vec![
            format!("{}{}", m.node_id, if m.local { "*" } else { "" }),
            m.addr.clone(),
            member_state(m),
            m.syncid.to_string(),
            sync(m),
            or_dash(&m.holds.join(",")),
            document(m),
            format!("{:016x}", m.config_digest),
        ]);
    }
    columns(&rows)
}

/// The sync daemons a member's kernel runs: `master+backup`, `backup`, `-`.
fn sync(m: &MemberStatus) -> String {
    match (m.sync_master, m.sync_backup) {
        (true, true) => "master+backup",
        (true, false) => "master",
        (false, true) => "backup",
        (false, false) => "-",
    }
    .to_owned()
}

/// The cluster document a member runs: `v3`, or `files` (its config files' cluster part).
fn document(m: &MemberStatus) -> String {
    if m.config_version == 0 {
        "files".to_owned()
    } else {
        format!("v{}", m.config_version)
    }
}

fn member_state(m: &MemberStatus) -> String {
    let mut state = if m.live { "alive" } else { "down" }.to_owned();
    if m.live && !m.ready {
        state += ",not-ready";
    }
    if m.drain {
        state += ",drained";
    }
    state
}

/// `lvs-cli vips`: one row per VIP group.
pub fn vips(status: &StatusReply) -> String {
    let mut rows = vec![[
        "GROUP",
        "VRID",
        "OWNER",
        "HERE",
        "PRIORITY",
        "MASTER",
        "SINCE",
        "ADDRESSES",
    ]
    .map(String::from)
    .to_vec()];
    for g in &status.groups {
        rows.push(vec![
            g.name.clone(),
            g.vrrp_id.to_string(),
            or_dash(&g.owner),
            or_dash(&g.state),
            g.priority.to_string(),
            master(g),
            clock(g.since_unix_ms),
            g.addresses.join(","),
        ]);
    }
    columns(&rows)
}

/// A time of day (UTC) from ms since the Unix epoch; `-` for none.
fn clock(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "-".to_owned();
    }
    let secs = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Who is VRRP master as this node sees it: itself, a foreign router, or the owner.
fn master(g: &GroupStatus) -> String {
    if g.held {
        "this node".to_owned()
    } else if !g.foreign_master.is_empty() {
        format!("{} (not an agent)", g.foreign_master)
    } else {
        or_dash(&g.owner)
    }
}

/// Warnings an operator must see: two holders, config skew, conflicts, members down.
pub fn warnings(status: &StatusReply) -> Vec<String> {
    let mut out = Vec::new();
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in status.members.iter().filter(|m| m.live) {
        for g in &m.holds {
            holders.entry(g).or_default().push(&m.node_id);
        }
    }
    for (group, nodes) in holders.iter().filter(|(_, n)| n.len() > 1) {
        out.push(format!("two holders: {group} on {}", nodes.join(" and ")));
    }
    for peer in &status.config_differs {
        out.push(format!(
            "config skew: {peer} has another cluster config (no preemption until it matches)"
        ));
    }
    let newest = status
        .members
        .iter()
        .filter(|m| m.live)
        .map(|m| (m.config_version, m.document_digest))
        .max();
    if let Some(newest) = newest.filter(|n| n.0 > 0) {
        for m in status.members.iter().filter(|m| m.live) {
            if (m.config_version, m.document_digest) < newest {
                out.push(format!(
                    "document skew: {} runs {}, the newest is v{} (it fetches it over QUIC; \
                     if this stays, its log says why)",
                    m.node_id,
                    document(m),
                    newest.0
                ));
            }
        }
    }
    out.extend(status.conflicts.iter().cloned());
    for m in status.members.iter().filter(|m| !m.live) {
        out.push(format!("unreachable: {} ({})", m.node_id, m.addr));
    }
    out
}

/// `lvs-cli status`: members, VIP groups, services and warnings at a glance.
pub fn status_table(status: &StatusReply) -> String {
    let mut out = format!(
        "cluster as {} sees it (config {:016x})\n\nMEMBERS\n{}\nVIP GROUPS\n{}",
        status.node_id,
        status.config_digest,
        members(status),
        vips(status)
    );
    if !status.services.is_empty() {
        let mut rows = vec![["SERVICE", "HEALTHY", "FAILING"].map(String::from).to_vec()];
        for s in &status.services {
            let failing: Vec<String> = s
                .troubled
                .iter()
                .filter(|rs| !rs.up)
                .map(|rs| format!("{} ({})", rs.real_server, or_dash(&rs.last_failure)))
                .collect();
            rows.push(vec![
                s.service.clone(),
                format!("{}/{}", s.healthy, s.total),
                or_dash(&failing.join(", ")),
            ]);
        }
        out += &format!("\nSERVICES\n{}", columns(&rows));
    }
    let warnings = warnings(status);
    if !warnings.is_empty() {
        out += "\nWARNINGS\n";
        for w in warnings {
            out += &format!("  {w}\n");
        }
    }
    out
}

fn counters(stats: Option<&IpvsStats>) -> [String; 5] {
    let s = stats.cloned().unwrap_or_default();
    [
        s.conns,
        s.in_packets,
        s.out_packets,
        s.in_bytes,
        s.out_bytes,
    ]
    .map(|n| n.to_string())
}

/// `lvs-cli services`: `ipvsadm -L -n --stats --exact` with the scheduler, weights and
/// connection counts of each real server.
pub fn services(reply: &ServicesReply) -> String {
    let mut rows = vec![[
        "SERVICE",
        "SCHED/FWD",
        "WEIGHT",
        "ACTIVE",
        "INACTIVE",
        "CONNS",
        "INPKTS",
        "OUTPKTS",
        "INBYTES",
        "OUTBYTES",
    ]
    .map(String::from)
    .to_vec()];
    for svc in &reply.services {
        let mut row = vec![
            svc.service.clone(),
            svc.scheduler.clone(),
            String::new(),
            String::new(),
            String::new(),
        ];
        row.extend(counters(svc.stats.as_ref()));
        rows.push(row);
        for d in &svc.destinations {
            let mut row = vec![
                format!("  -> {}", d.address),
                d.forwarding.clone(),
                d.weight.to_string(),
                d.active_conns.to_string(),
                d.inactive_conns.to_string(),
            ];
            row.extend(counters(d.stats.as_ref()));
            rows.push(row);
        }
    }
    columns(&rows)
}

/// `lvs-cli conns`: `ipvsadm -L -n -c`.
pub fn connections(reply: &ConnectionsReply) -> String {
    let mut rows = vec![
        ["PRO", "EXPIRE", "STATE", "SOURCE", "VIRTUAL", "DESTINATION"]
            .map(String::from)
            .to_vec(),
    ];
    for c in &reply.connections {
        rows.push(vec![
            c.protocol.clone(),
            format!("{:02}:{:02}", c.expires_s / 60, c.expires_s % 60),
            c.state.clone(),
            c.client.clone(),
            c.service.clone(),
            c.destination.clone(),
        ]);
    }
    columns(&rows)
}

/// `lvs-cli daemons`: one line per daemon, as `ipvsadm -l --daemon` prints it.
pub fn daemons(reply: &DaemonsReply) -> String {
    reply
        .daemons
        .iter()
        .map(|d| {
            format!(
                "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})\n",
                d.state, d.interface, d.syncid, d.maxlen, d.group, d.port, d.ttl
            )
        })
        .collect()
}

/// One `lvs-cli watch` line: the time (UTC, ms) and what happened.
pub fn event(e: &ClusterEvent) -> String {
    let what = match e.kind.as_str() {
        "acquired" | "released" => format!("{} {} {}", e.node, e.kind, e.group),
        "owner" => format!("{} owner {}", e.group, or_dash(&e.node)),
        "member_up" => format!("member {} up", e.node),
        "member_down" => format!("member {} down", e.node),
        "real_server_down" => format!("{} real server {} down", e.group, e.node),
        "real_server_up" => format!("{} real server {} up", e.group, e.node),
        "lagged" => format!("{} events lost (read too slowly)", e.count),
        "document" => format!("{} runs cluster document {}", e.node, e.group),
        other => format!("{other} {} {}", e.group, e.node),
    };
    format!("{}.{:03} {what}\n", clock(e.unix_ms), e.unix_ms % 1000)
}

/// A join's outcome: which peers answered; an error when none did.
pub fn join(reply: &JoinReply) -> Result<String, String> {
    if reply.answered.is_empty() {
        return Err(format!(
            "no peer answered: {} (is an agent running there, with this cluster's key?)",
            reply.silent.join(" ")
        ));
    }
    let mut out = String::new();
    for peer in &reply.answered {
        out += &format!("answered {peer}\n");
    }
    for peer in &reply.silent {
        out += &format!("silent {peer}\n");
    }
    Ok(out)
}

/// `lvs-agent status` output: one line per member, group and drop counter, e.g.
/// `group web owner lb1 held foreign -`.
pub fn lines(status: &StatusReply) -> String {
    let mut out = format!("node {}\n", status.node_id);
    for m in &status.members {
        let state = if m.live { "live" } else { "down" };
        let drain = if m.drain { " drain" } else { "" };
        let local = if m.local { " local" } else { "" };
        let ready = if m.live && !m.ready { " not-ready" } else { "" };
        out += &format!(
            "member {} {} {state}{drain}{ready}{local} config {:016x}\n",
            m.node_id, m.addr, m.config_digest
        );
    }
    for peer in &status.config_differs {
        out += &format!(
            "config differs: {peer} (ours {:016x}): no preemption until it matches\n",
            status.config_digest
        );
    }
    for conflict in &status.conflicts {
        out += &format!("conflict: {conflict}\n");
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for g in &status.groups {
        let held = if g.held { "held" } else { "not-held" };
        out += &format!(
            "group {} owner {} {held} foreign {}\n",
            g.name,
            dash(&g.owner),
            dash(&g.foreign_master)
        );
    }
    for svc in &status.services {
        out += &format!(
            "service {} healthy {}/{}\n",
            svc.service, svc.healthy, svc.total
        );
        for rs in &svc.troubled {
            let here = if rs.up { "up" } else { "down" };
            let disagree = if (rs.up && !rs.down_on.is_empty()) || (!rs.up && !rs.up_on.is_empty())
            {
                " DISAGREE"
            } else {
                ""
            };
            let reason = if rs.last_failure.is_empty() {
                String::new()
            } else {
                format!(" ({})", rs.last_failure)
            };
            out += &format!(
                "  real-server {} {here}{reason} down-on [{}] up-on [{}]{disagree}\n",
                rs.real_server,
                rs.down_on.join(" "),
                rs.up_on.join(" ")
            );
        }
    }
    for (reason, count) in &status.vrrp_dropped {
        out += &format!("vrrp-dropped {reason} {count}\n");
    }
    for (name, count) in status.gossip.iter().filter(|(_, n)| **n > 0) {
        out += &format!("gossip {name} {count}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_proto::v1::{RealServerStatus, ServiceStatus};

    #[test]
    fn status_lists_services_and_flags_disagreement() {
        let status = StatusReply {
            node_id: "lb1".into(),
            services: vec![ServiceStatus {
                service: "tcp 10.0.0.10:80".into(),
                healthy: 1,
                total: 2,
                troubled: vec![RealServerStatus {
                    real_server: "172.16.0.100:80".into(),
                    up: false,
                    last_failure: "GET /: status 503".into(),
                    down_on: vec![],
                    up_on: vec!["lb2".into()],
                }],
            }],
            ..StatusReply::default()
        };
        assert_eq!(
            lines(&status),
            "node lb1\nservice tcp 10.0.0.10:80 healthy 1/2\n  real-server 172.16.0.100:80 down \
             (GET /: status 503) down-on [] up-on [lb2] DISAGREE\n"
        );
    }

    #[test]
    fn the_status_table_shows_members_groups_and_warnings() {
        use lvs_proto::v1::{GroupStatus, MemberStatus};
        let member = |id: &str, live: bool, holds: &[&str]| MemberStatus {
            node_id: id.into(),
            addr: format!("192.0.2.{}:7946", &id[2..]),
            live,
            ready: live,
            local: id == "lb1",
            syncid: id[2..].parse().unwrap(),
            holds: holds.iter().map(|s| (*s).to_owned()).collect(),
            ..MemberStatus::default()
        };
        let status = StatusReply {
            node_id: "lb1".into(),
            members: vec![
                MemberStatus {
                    config_version: 3,
                    sync_master: true,
                    sync_backup: true,
                    ..member("lb1", true, &["g1"])
                },
                MemberStatus {
                    config_version: 2,
                    sync_backup: true,
                    ..member("lb2", true, &["g1"])
                },
                member("lb3", false, &[]),
            ],
            groups: vec![GroupStatus {
                name: "g1".into(),
                owner: "lb1".into(),
                held: true,
                addresses: vec!["198.51.100.1/24".into()],
                state: "MASTER".into(),
                priority: 150,
                vrrp_id: 51,
                since_unix_ms: 1_796_283_852_000,
                ..GroupStatus::default()
            }],
            config_differs: vec!["lb2".into()],
            ..StatusReply::default()
        };
        let text = status_table(&status);
        assert_eq!(
            text,
            "cluster as lb1 sees it (config 0000000000000000)\n\n\
             MEMBERS\n\
             NODE  ADDRESS         STATE  SYNCID  SYNC           HOLDS  DOCUMENT  CONFIG\n\
             lb1*  192.0.2.1:7946  alive  1       master+backup  g1     v3        0000000000000000\n\
             lb2   192.0.2.2:7946  alive  2       backup         g1     v2        0000000000000000\n\
             lb3   192.0.2.3:7946  down   3       -              -      files     0000000000000000\n\
             \nVIP GROUPS\n\
             GROUP  VRID  OWNER  HERE    PRIORITY  MASTER     SINCE     ADDRESSES\n\
             g1     51    lb1    MASTER  150       this node  07:44:12  198.51.100.1/24\n\
             \nWARNINGS\n\
             \x20 two holders: g1 on lb1 and lb2\n\
             \x20 config skew: lb2 has another cluster config (no preemption until it matches)\n\
             \x20 document skew: lb2 runs v2, the newest is v3 (it fetches it over QUIC; if \
             this stays, its log says why)\n\
             \x20 unreachable: lb3 (192.0.2.3:7946)\n"
        );
    }
}
