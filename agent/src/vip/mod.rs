//! The network edges of VIP ownership: putting VIP addresses on an interface and taking
//! them off (`addr`), telling the segment who owns them now (`announce`), asking it
//! whether another host still answers for them (`probe`), carrying VRRP payloads
//! (`vrrp_socket`), and keeping a taken VIP from resetting connections
//! whose sync messages are still on their way (`guard`, nftables). Each is a thin
//! async shell; the bytes they put on the wire are built by pure functions (`frames`,
//! `guard::script`).

pub mod addr;
pub mod announce;
mod frames;
pub mod guard;
pub mod probe;
mod sys;
pub mod vrrp_socket;

use std::io;
use std::net::IpAddr;

/// What can go wrong at the VIP edges; each variant names the interface, address or
/// operation concerned.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("interface {0:?} not found")]
    NoSuchInterface(String),
    #[error("interface {0:?} has no Ethernet (6-byte) hardware address")]
    NoMacAddress(String),
    #[error("VIP {addr}/{prefix_len}: prefix length exceeds {max}")]
    BadPrefixLength {
        addr: IpAddr,
        prefix_len: u8,
        max: u8,
    },
    #[error("VIP {addr} label {label:?}: {reason}")]
    BadLabel {
        addr: IpAddr,
        label: String,
        reason: &'static str,
    },
    #[error("{addr}: {reason}")]
    BadAddress { addr: IpAddr, reason: String },
    #[error("netlink {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("received packet from {from}: {reason}")]
    BadPacket { from: String, reason: String },
}

impl VipError {
    fn io(op: impl Into<String>) -> impl FnOnce(io::Error) -> VipError {
        let op = op.into();
        move |source| VipError::Io { op, source }
    }

    fn io_errno(op: impl Into<String>) -> impl FnOnce(nix::Error) -> VipError {
        let op = op.into();
        move |errno| VipError::Io {
            op,
            source: io::Error::from(errno),
        }
    }
}

/// A 6-byte Ethernet hardware address.
pub type Mac = [u8; 6];
