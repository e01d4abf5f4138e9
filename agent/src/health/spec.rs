//! What to probe, from the config (pure). Each `[[service.real_server.check]]` becomes
//! a [`CheckKey`]: the probe (kind and target) with everything that shapes its
//! verdict. Equal keys are one check: the same real server and check behind many
//! services or ports is probed once per interval and its verdict serves them all.

use crate::ms;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{CheckKind, DnsType, RealServer, Service};

use super::checker::Timing;

/// One url of an HTTP check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Url {
    pub path: String,
    /// Accepted status ranges, inclusive.
    pub status: Vec<(u16, u16)>,
    /// MD5 of the body, hex.
    pub digest: Option<String>,
}

/// One attempt's work.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// `tcp_check`: the connection is accepted.
    Tcp { target: SocketAddr },
    /// `http_get` / `ssl_get`: every url answers with an accepted status (and digest).
    Http {
        target: SocketAddr,
        /// `ssl_get`: over TLS.
        tls: bool,
        /// `tls_ca`: the certificate is verified against these CAs (else not at all,
        /// as keepalived).
        ca: Option<PathBuf>,
        /// `Host:` header (`virtualhost`); default: the target.
        host: Option<String>,
        urls: Vec<Url>,
    },
    /// `misc_check`: the command exits 0 (or 2..255 with `misc_dynamic`).
    Misc { command: String, dynamic: bool },
    /// `dns_check`: a query of `qtype` for `name` gets an answer.
    Dns {
        target: SocketAddr,
        name: String,
        qtype: u16,
    },
}

/// A check as the runner keeps it: equal keys are probed once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckKey {
    pub probe: Probe,
    /// The bound of one attempt (`connect_timeout`, or `misc_timeout`).
    pub limit_ms: u64,
    pub timing: Timing,
    /// Starts down until its first success (the service's `alpha`).
    pub alpha: bool,
    /// The first probe runs within this after the check appears (`warmup`).
    pub warmup_ms: u64,
}

/// The checks of real server `rs` of `service`, in config order. A validated config
/// gives every address service's real server a port, and a misc check its path.
pub fn checks(service: &Service, rs: &RealServer) -> Vec<CheckKey> {
    rs.checks
        .iter()
        .filter_map(|c| {
            let delay_loop = c.delay_loop_in(service);
            let target = SocketAddr::new(
                c.connect_ip.unwrap_or(rs.address),
                c.connect_port.or(rs.port).or(service.port).unwrap_or(0),
            );
            let (probe, limit) = match c.kind {
                CheckKind::TcpCheck => (Probe::Tcp { target }, c.connect_timeout),
                CheckKind::HttpGet | CheckKind::SslGet => (
                    Probe::Http {
                        target,
                        tls: c.kind == CheckKind::SslGet,
                        ca: c.tls_ca.clone(),
                        host: c.virtualhost.clone(),
                        urls: c
                            .url
                            .iter()
                            .map(|u| Url {
                                path: u.path.clone(),
                                status: u.status_code.iter().map(|r| (r.first, r.last)).collect(),
                                digest: u.digest.as_ref().map(|d| d.to_ascii_lowercase()),
                            })
                            .collect(),
                    },
                    c.connect_timeout,
                ),
                CheckKind::DnsCheck => (
                    Probe::Dns {
                        target,
                        name: c.dns_name.clone().unwrap_or_else(|| ".".to_owned()),
                        qtype: c.dns_type.unwrap_or(DnsType::Soa).code(),
                    },
                    c.connect_timeout,
                ),
                CheckKind::MiscCheck => (
                    Probe::Misc {
                        command: c.misc_path.clone()?,
                        dynamic: c.misc_dynamic,
                    },
                    c.misc_timeout.unwrap_or(delay_loop),
                ),
            };
            Some(CheckKey {
                probe,
                limit_ms: ms(limit),
                timing: Timing {
                    delay_loop_ms: ms(delay_loop),
                    retry: c.retry,
                    delay_before_retry_ms: ms(c.delay_before_retry),
                },
                alpha: service.alpha,
                warmup_ms: ms(c.warmup.unwrap_or(delay_loop)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_seeds_checks_and_one_probe_per_real_server() {
        let c = crate::config::parse(include_str!("../../../deploy/examples/seed-cluster.toml"))
            .unwrap()
            .cluster
            .unwrap();
        let s = &c.services[0];
        let keys = checks(s, &s.real_servers[0]);
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(
            k.probe,
            Probe::Http {
                target: "172.16.0.100:80".parse().unwrap(),
                tls: false,
                ca: None,
                host: None,
                urls: vec![Url {
                    path: "/".into(),
                    status: vec![(200, 200)],
                    digest: None
                }],
            }
        );
        assert_eq!(
            (k.limit_ms, k.timing, k.warmup_ms),
            (
                3000,
                Timing {
                    delay_loop_ms: 6000,
                    retry: 2,
                    delay_before_retry_ms: 2000
                },
                6000
            )
        );
        // Both VIPs' services check the same two servers the same way: two probes.
        let all: BTreeSet<CheckKey> = c
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().flat_map(|rs| checks(s, rs)))
            .collect();
        assert_eq!(all.len(), 2);
    }
}
