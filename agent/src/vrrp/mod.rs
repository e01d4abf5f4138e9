//! VRRP, pure parts: the advertisement codec and what a router does with a received advert.
//! Sockets live elsewhere.

pub mod decision;
pub mod packet;

#[cfg(test)]
mod tests;

pub use decision::{decide, skew_time, Decision, Local, Mismatch, MismatchKind, Role};
pub use packet::{
    decode, encode, virtual_mac, Advert, Auth, DecodeError, DecodeErrorKind, EncodeError,
    PasswordTooLong, Version, HOP_LIMIT, IP_PROTO_VRRP, MCAST_V4, MCAST_V6,
};
