//! The kernel's IPVS state for the control API, in ipvsadm's terms: the services with
//! their counters (`ipvsadm -L -n --stats`), the connection table (`-L -n -c`, read
//! from /proc/net/ip_vs_conn as ipvsadm does: generic netlink has no connection dump)
//! and the sync daemons (`-l --daemon`). Reads only, on a netlink socket of its own:
//! the reconciler's socket stays the only writer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lvs_proto::v1::{
    ConnectionsReply, DaemonsReply, IpvsConnection, IpvsDestination, IpvsService, IpvsStats,
    ServicesReply, SyncDaemonStatus,
};

use super::{Forwarding, IpvsClient, Stats};

/// The connection table's file in the caller's network namespace.
pub const CONN_TABLE: &str = "/proc/net/ip_vs_conn";

fn stats(s: &Stats) -> IpvsStats {
    IpvsStats {
        conns: s.conns,
        in_packets: s.inpkts,
        out_packets: s.outpkts,
        in_bytes: s.inbytes,
        out_bytes: s.outbytes,
    }
}

fn forwarding(f: Forwarding) -> &'static str {
    match f {
        Forwarding::Masq => "masq",
        Forwarding::Route => "route",
        Forwarding::Tunnel { .. } => "tunnel",
        Forwarding::Local => "local",
    }
}

pub async fn services() -> anyhow::Result<ServicesReply> {
    let client = IpvsClient::connect().await?;
    let mut out = Vec::new();
    for observed in client.services().await? {
        let key = observed.service.key;
        let destinations = client
            .destinations(&key)
            .await?
            .iter()
            .map(|d| IpvsDestination {
                address: d.destination.addr.to_string(),
                forwarding: forwarding(d.destination.forwarding).to_owned(),
                weight: d.destination.weight,
                active_conns: d.active_conns,
                inactive_conns: d.inactive_conns,
                stats: Some(stats(&d.stats)),
            })
            .collect();
        out.push(IpvsService {
            service: key.to_string(),
            scheduler: observed.service.scheduler.name().to_owned(),
            stats: Some(stats(&observed.stats)),
            destinations,
        });
    }
    Ok(ServicesReply { services: out })
}

pub async fn daemons() -> anyhow::Result<DaemonsReply> {
    let client = IpvsClient::connect().await?;
    let daemons = client
        .sync_daemons()
        .await?
        .into_iter()
        .map(|d| SyncDaemonStatus {
            state: d.state.to_string(),
            interface: d.mcast_ifname,
            syncid: u32::from(d.syncid),
            maxlen: u32::from(d.maxlen.unwrap_or(0)),
            group: d.mcast_group.map(|g| g.to_string()).unwrap_or_default(),
            port: u32::from(d.mcast_port.unwrap_or(0)),
            ttl: u32::from(d.mcast_ttl.unwrap_or(0)),
        })
        .collect();
    Ok(DaemonsReply { daemons })
}

pub async fn connections() -> anyhow::Result<ConnectionsReply> {
    let text = tokio::fs::read_to_string(CONN_TABLE)
        .await
        .map_err(|e| anyhow::anyhow!("{CONN_TABLE}: {e} (is the ip_vs module loaded?)"))?;
    Ok(ConnectionsReply {
        connections: parse_connections(&text)?,
    })
}

/// An address as the kernel prints it: IPv4 as 8 hex digits (host order of the
/// network value), IPv6 in full colon form.
fn address(word: &str) -> Option<IpAddr> {
    if word.len() == 8 && !word.contains(':') {
        return u32::from_str_radix(word, 16)
            .ok()
            .map(|n| IpAddr::V4(Ipv4Addr::from(n)));
    }
    word.parse().ok()
}

fn endpoint(addr: &str, port: &str) -> Option<SocketAddr> {
    Some(SocketAddr::new(
        address(addr)?,
        u16::from_str_radix(port, 16).ok()?,
    ))
}

/// The lines of /proc/net/ip_vs_conn (kernel `ip_vs_conn_seq_show`: `Pro FromIP FPrt
/// ToIP TPrt DestIP DPrt State Expires [PEName PEData]`); a malformed line is an error
/// naming it.
pub fn parse_connections(text: &str) -> anyhow::Result<Vec<IpvsConnection>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| {
            let [pro, ca, cp, va, vp, da, dp, state, expires, ..] = w[..] else {
                return None;
            };
            Some(IpvsConnection {
                protocol: pro.to_owned(),
                client: endpoint(ca, cp)?.to_string(),
                service: endpoint(va, vp)?.to_string(),
                destination: endpoint(da, dp)?.to_string(),
                state: state.to_owned(),
                expires_s: expires.parse().ok()?,
            })
        })();
        match parsed {
            Some(c) => out.push(c),
            None => anyhow::bail!("{CONN_TABLE} line {}: cannot read {line:?}", n + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `ip_vs_conn_seq_show` formats them (`%-3s %08X %04X ... %-11s %7u`), one
    /// IPv4 entry and one IPv6 entry.
    const TABLE: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0A80001 D1F4 0A00000A 0050 AC100064 0050 ESTABLISHED     899
UDP 2001:0db8:0000:0000:0000:0000:0000:0001 0035 2001:0db8:0000:0000:0000:0000:0000:000a 0035 2001:0db8:0000:0000:0000:0000:0000:0064 0035 NONE        299
";

    #[test]
    fn both_families_are_read_and_bad_lines_are_named() {
        let conns = parse_connections(TABLE).unwrap();
        assert_eq!(conns.len(), 2);
        assert_eq!(
            (
                conns[0].client.as_str(),
                conns[0].service.as_str(),
                conns[0].destination.as_str(),
                conns[0].state.as_str(),
                conns[0].expires_s
            ),
            (
                "192.168.0.1:53748",
                "10.0.0.10:80",
                "172.16.0.100:80",
                "ESTABLISHED",
                899
            )
        );
        assert_eq!(conns[1].service, "[2001:db8::a]:53");
        assert_eq!(conns[1].protocol, "UDP");
        let err = parse_connections("header\nTCP C0A80001 D1F4\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/net/ip_vs_conn line 2: cannot read \"TCP C0A80001 D1F4\""
        );
        assert!(parse_connections("header only\n").unwrap().is_empty());
    }
}
