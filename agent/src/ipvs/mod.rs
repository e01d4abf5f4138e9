//! Typed async client for the kernel's IPVS generic-netlink family.
//!
//! Layers, innermost first: [`model`] (plain data the reconciler works with),
//! [`attrs`] (netlink attributes), [`message`] (the generic-netlink payload),
//! [`codec`] (model <-> attributes, pure), [`socket`] (batched generic netlink),
//! [`client`] (typed requests).
//! On top, the dataplane: [`desired`] (config -> wanted services, pure), [`plan`]
//! (wanted vs kernel -> ops, pure), [`cache`] (the kernel state last read or written,
//! pure), [`reconcile`] (plan + apply against the kernel),
//! [`sync`] (connection-sync daemons) and [`sysctl`] (the `net.ipv4.vs` settings).
//! Wire format: `include/uapi/linux/ip_vs.h`; requests mirror ipvsadm's layout,
//! checked against byte vectors captured from a real kernel (`tests`).

pub mod attrs;
pub mod cache;
pub mod client;
pub mod codec;
pub mod desired;
pub mod error;
pub mod listing;
pub mod message;
pub mod model;
pub mod plan;
pub mod reconcile;
mod socket;
pub mod sync;
pub mod sysctl;

#[cfg(test)]
mod tests;

pub use client::IpvsClient;
pub use error::{Errno, Error, Object};
pub use model::*;
