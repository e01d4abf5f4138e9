//! A director's health verdicts in a compact form for gossip (pure): one bit per real
//! server, in config order (service by service), set when the real server is down
//! there, with a digest of that order. Peers whose digests match compare bit by bit, so
//! `lvs-agent status` shows each real server as every director sees it and flags the
//! ones they disagree on. 10,000 real servers take 1,250 bytes.

use sha2::{Digest as _, Sha256};

use crate::config::ClusterConfig;

use super::Health;

/// One director's view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthView {
    /// [`digest`] of the services the bits follow; 0: no view published.
    pub services_digest: u64,
    /// Bit `i` (byte `i / 8`, bit `i % 8`) set: the `i`-th real server is down.
    pub down: Vec<u8>,
}

impl HealthView {
    /// This director's view of `cluster`'s real servers.
    pub fn of(cluster: &ClusterConfig, health: &Health) -> Self {
        HealthView {
            services_digest: digest(cluster),
            down: down_bits(cluster, health),
        }
    }

    /// The view after new verdicts, of the services this view is of: the digest is
    /// kept (at 10,000 real servers computing it again was half the cost of a view,
    /// paid on the cluster task at every verdict change).
    pub fn with_verdicts(&self, cluster: &ClusterConfig, health: &Health) -> Self {
        HealthView {
            services_digest: self.services_digest,
            down: down_bits(cluster, health),
        }
    }

    /// Whether the `index`-th real server is down in this view.
    pub fn is_down(&self, index: usize) -> bool {
        self.down
            .get(index / 8)
            .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }
}

/// One bit per real server of `cluster`, set when it is down.
fn down_bits(cluster: &ClusterConfig, health: &Health) -> Vec<u8> {
    let mut down = Vec::new();
    let mut i = 0;
    for s in &cluster.services {
        for rs in &s.real_servers {
            if i % 8 == 0 {
                down.push(0);
            }
            if !health.member(s, rs).up {
                down[i / 8] |= 1 << (i % 8);
            }
            i += 1;
        }
    }
    down
}

/// Digest of the services' keys and real servers in config order (never 0).
pub fn digest(cluster: &ClusterConfig) -> u64 {
    let mut h = Sha256::new();
    for s in &cluster.services {
        h.update(format!("{:?}|", s.key()).as_bytes());
        for rs in &s.real_servers {
            h.update(format!("{}:{:?};", rs.address, rs.port).as_bytes());
        }
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize()[..8]);
    u64::from_be_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Verdict;
    use std::sync::Arc;

    #[test]
    fn one_bit_per_real_server_in_config_order() {
        let c = crate::config::parse(include_str!("../../../deploy/examples/seed-cluster.toml"))
            .unwrap()
            .cluster
            .unwrap();
        let mut health = Health::default();
        let all_up = HealthView::of(&c, &health);
        assert_eq!(all_up.down, [0]);
        assert_ne!(all_up.services_digest, 0);
        // rs1 (172.16.0.100:80) down: its check is shared by both services, so
        // the 1st and 3rd real servers are down.
        let s = &c.services[0];
        let key = crate::health::spec::checks(s, &s.real_servers[0]).remove(0);
        health.verdicts = Arc::new(
            [(
                key,
                Verdict {
                    up: false,
                    weight: None,
                    last_failure: Some("status 503".into()),
                },
            )]
            .into(),
        );
        let v = HealthView::of(&c, &health);
        assert_eq!(v.down, [0b0101]);
        assert_eq!(all_up.with_verdicts(&c, &health), v);
        assert!(v.is_down(0) && !v.is_down(1) && v.is_down(2) && !v.is_down(3));
        assert!(!v.is_down(99));
        assert_eq!(v.services_digest, all_up.services_digest);
        let mut other = c.clone();
        other.services.swap(0, 1);
        assert_ne!(digest(&other), digest(&c));
    }
}
