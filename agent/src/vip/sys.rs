//! The two system facilities the VIP edges need that have no safe API in the crates we
//! use: a link-layer address (`sockaddr_ll`) for AF_PACKET sends, which neither
//! socket2 nor nix can build safely, and registering a socket with tokio, whose safe
//! constructor `AsyncFd::new` is deprecated as unsound for arbitrary fd owners; and
//! the socket set-ups the announcer and the probe share around them.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::addr::Link;
use super::{Mac, VipError};

/// RFC 4861 §7.1.1-7.1.2: receivers drop neighbour discovery messages with another
/// hop limit.
const ND_HOP_LIMIT: u32 = 255;

/// The address of `dest` on interface `ifindex`, for frames of EtherType `protocol`.
pub fn link_layer_addr(ifindex: u32, protocol: u16, dest: Mac) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is larger and more aligned than sockaddr_ll, and an
    // all-zero sockaddr_ll is valid.
    let ll: &mut libc::sockaddr_ll = unsafe { storage.view_as() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = protocol.to_be();
    // Interface indexes are positive C ints in the kernel, so this never wraps.
    ll.sll_ifindex = ifindex as libc::c_int;
    ll.sll_halen = dest.len() as u8;
    ll.sll_addr[..dest.len()].copy_from_slice(&dest);
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: storage holds an initialised sockaddr_ll of exactly `len` bytes.
    unsafe { SockAddr::new(storage, len) }
}

/// Hands a non-blocking socket to tokio's reactor.
pub fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the Socket owns its descriptor, and nothing closes or replaces it while
    // the AsyncFd holds it: the AsyncFd drops the Socket (closing the fd) only after
    // deregistering it.
    Ok(unsafe { AsyncFd::register(socket) }?)
}

/// `socket`, non-blocking, registered with tokio; `op` names the step in errors.
pub fn registered(
    socket: Socket,
    op: &dyn Fn(&str) -> String,
) -> Result<AsyncFd<Socket>, VipError> {
    socket
        .set_nonblocking(true)
        .map_err(VipError::io(op("non-blocking")))?;
    register(socket).map_err(VipError::io(op("register with tokio")))
}

/// A raw ICMPv6 socket for neighbour discovery on `link`: bound to it, multicast sent
/// out of it with hop limit 255. `op` names the step in errors.
pub fn nd_socket(link: &Link, op: &dyn Fn(&str) -> String) -> Result<Socket, VipError> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(VipError::io(op("ICMPv6 raw socket")))?;
    socket
        .bind_device(Some(link.name.as_bytes()))
        .map_err(VipError::io(op("SO_BINDTODEVICE")))?;
    socket
        .set_multicast_hops_v6(ND_HOP_LIMIT)
        .map_err(VipError::io(op("IPV6_MULTICAST_HOPS")))?;
    socket
        .set_multicast_if_v6(link.index)
        .map_err(VipError::io(op("IPV6_MULTICAST_IF")))?;
    Ok(socket)
}
