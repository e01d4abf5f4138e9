//! Reading `ipvsadm` listings in scenarios (pure parsers over its text output).
use anyhow::{bail, Context, Result};

/// Counters of one virtual service from `ipvsadm -L -n --stats --exact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Finds the service line `PROTO service ...` (e.g. `TCP 10.0.0.10:80`) in the
/// output of `ipvsadm -L -n --stats --exact` and reads its counters.
pub fn service_stats(listing: &str, service: &str) -> Result<ServiceStats> {
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(service) && !l.trim_start().starts_with("->"))
        .with_context(|| format!("service {service} not in ipvsadm --stats listing"))?;
    let numbers = line
        .split_whitespace()
        .skip(2)
        .map(|f| {
            f.parse::<u64>().with_context(|| {
                format!("ipvsadm stats line {line:?}: {f:?} is not a number (missing --exact?)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let [conns, in_pkts, out_pkts, in_bytes, out_bytes] = numbers[..] else {
        bail!("ipvsadm stats line {line:?}: expected 5 counters");
    };
    Ok(ServiceStats {
        conns,
        in_pkts,
        out_pkts,
        in_bytes,
        out_bytes,
    })
}

/// Connection entries of `ipvsadm -L -n -c` from `client` (an address) to `vip:port`.
pub fn connections_from(listing: &str, client: &str, service: &str) -> usize {
    listing
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 6 && f[3].rsplit_once(':').map(|(a, _)| a) == Some(client) && f[4] == service
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.10:80                      300     3150        0   212345        0
  -> 172.16.0.100:80                   100     1050        0    70000        0
  -> 172.16.0.101:80                   200     2100        0   142345        0
TCP  10.0.0.11:80                       30      315        0    21000        0
";

    #[test]
    fn reads_service_counters() {
        let s = service_stats(STATS, "10.0.0.10:80").unwrap();
        assert_eq!(
            (s.conns, s.in_pkts, s.out_pkts, s.in_bytes),
            (300, 3150, 0, 212345)
        );
        assert_eq!(service_stats(STATS, "10.0.0.11:80").unwrap().conns, 30);
        let e = service_stats(STATS, "10.0.0.12:80").unwrap_err();
        assert!(e.to_string().contains("10.0.0.12:80"), "{e}");
        let e = service_stats("TCP  10.0.0.10:80  3K 1 0 0 0", "10.0.0.10:80").unwrap_err();
        assert!(format!("{e:#}").contains("--exact"), "{e:#}");
    }

    #[test]
    fn counts_client_connections() {
        let listing = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:56  FIN_WAIT    172.16.0.200:39652 10.0.0.10:80       172.16.0.101:80
TCP 01:56  FIN_WAIT    172.16.0.200:39662 10.0.0.10:80       172.16.0.100:80
TCP 01:57  FIN_WAIT    172.16.0.201:39662 10.0.0.10:80       172.16.0.100:80
TCP 01:57  FIN_WAIT    172.16.0.200:39663 10.0.0.11:80       172.16.0.100:80
";
        assert_eq!(connections_from(listing, "172.16.0.200", "10.0.0.10:80"), 2);
        assert_eq!(connections_from(listing, "172.16.0.20", "10.0.0.10:80"), 0);
    }
}
