//! The lvs-mesh control API (`lvs.v1.ControlRequest` → `ControlReply`, proto/lvs/v1/control.proto)
//! on both of its transports, shared by the agent (serving) and the CLIs (calling):
//! - [`frame`]: one length-delimited request, one length-delimited reply, per stream;
//! - [`unix`]: the root-only local socket;
//! - [`quic`]: QUIC with mutual TLS, both ends certified by the cluster CA ([`pki`]);
//! - [`client`]: one call to an agent over either transport, with a deadline;
//! - [`table`]: the replies as text tables.

pub mod client;
pub mod frame;
pub mod pki;
pub mod quic;
pub mod table;
pub mod unix;
