//! lvs-agent: one director of an lvs-mesh cluster.
//!
//! Pure cores (config validation, ownership election, the IPVS plan, the VRRP codec,
//! the health checkers and pools) live in their own modules with no I/O; sockets and
//! netlink stay at the edges.

pub mod cluster;
pub mod config;
pub mod control;
pub mod document;
pub mod health;
pub mod ipvs;
pub mod keepalived;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod ownership;
pub mod realserver;
pub mod sim;
pub mod vip;
pub mod vrrp;

/// `d` in whole milliseconds, saturating: the unit of the pure state machines' clocks
/// (routers, health checkers, the VIP probe's quiet time).
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
