//! The VRRP transport: a raw IP socket for protocol 112 on one interface, joined to the
//! VRRP group, sending with TTL / hop limit 255 and reporting the TTL each packet
//! arrived with (RFC 5798 §7.1 drops packets with any other). It carries VRRP payload
//! bytes only; the codec (and so the checksum, whose pseudo-header needs `source()`)
//! lives in `crate::vrrp`.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::addr::Link;
use super::frames::strip_ipv4_header;
use super::sys::register;
use super::VipError;

pub const IPPROTO_VRRP: i32 = 112;
/// RFC 5798 §5.1.1.2 / §5.1.2.2.
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// RFC 5798 §5.1.1.3 / §5.1.2.3: sent with 255, and anything else was routed.
pub const VRRP_TTL: u32 = 255;
/// Larger than any IP datagram, so nothing is truncated.
const RECV_BUFFER: usize = 65_536;

/// A VRRP packet as received: the payload after the IP header, and what the IP header
/// said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub payload: Vec<u8>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// When the kernel received it (`SO_TIMESTAMPNS`): a packet read late, after it
    /// waited in the socket while the agent was busy, is told from a fresh one.
    pub at: SystemTime,
}

/// A raw protocol-112 socket bound to one interface, of the family of its source.
pub struct VrrpSocket {
    socket: AsyncFd<Socket>,
    interface: String,
    ifindex: u32,
    source: IpAddr,
}

impl VrrpSocket {
    /// Opens the socket on `link`. Packets go out from `source`, which must be an
    /// address of the interface: its primary IPv4 address, or for IPv6 its link-local
    /// address (RFC 5798 §5.1.2.1).
    pub fn open(link: &Link, source: IpAddr) -> Result<Self, VipError> {
        let op = |what: &str| format!("open VRRP socket on {} from {source}: {what}", link.name);
        if let IpAddr::V6(v6) = source {
            if !v6.is_unicast_link_local() {
                return Err(VipError::BadAddress {
                    addr: source,
                    reason: "VRRP over IPv6 is sent from a link-local address".into(),
                });
            }
        }
        let domain = match source {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))
            .map_err(VipError::io(op("raw socket")))?;
        socket
            .bind_device(Some(link.name.as_bytes()))
            .map_err(VipError::io(op("SO_BINDTODEVICE")))?;
        match source {
            IpAddr::V4(_) => {
                let here = InterfaceIndexOrAddress::Index(link.index);
                socket
                    .join_multicast_v4_n(&VRRP_GROUP_V4, &here)
                    .map_err(VipError::io(op("join 224.0.0.18")))?;
                socket
                    .set_multicast_ttl_v4(VRRP_TTL)
                    .map_err(VipError::io(op("IP_MULTICAST_TTL")))?;
                socket
                    .set_ttl_v4(VRRP_TTL)
                    .map_err(VipError::io(op("IP_TTL")))?;
                socket
                    .set_multicast_loop_v4(false)
                    .map_err(VipError::io(op("IP_MULTICAST_LOOP")))?;
            }
            IpAddr::V6(_) => {
                socket
                    .join_multicast_v6(&VRRP_GROUP_V6, link.index)
                    .map_err(VipError::io(op("join ff02::12")))?;
                socket
                    .set_multicast_hops_v6(VRRP_TTL)
                    .map_err(VipError::io(op("IPV6_MULTICAST_HOPS")))?;
                socket
                    .set_unicast_hops_v6(VRRP_TTL)
                    .map_err(VipError::io(op("IPV6_UNICAST_HOPS")))?;
                socket
                    .set_multicast_if_v6(link.index)
                    .map_err(VipError::io(op("IPV6_MULTICAST_IF")))?;
                socket
                    .set_multicast_loop_v6(false)
                    .map_err(VipError::io(op("IPV6_MULTICAST_LOOP")))?;
                socket
                    .set_recv_hoplimit_v6(true)
                    .map_err(VipError::io(op("IPV6_RECVHOPLIMIT")))?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
                    .map_err(VipError::io_errno(op("IPV6_RECVPKTINFO")))?;
            }
        }
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
            .map_err(VipError::io_errno(op("SO_TIMESTAMPNS")))?;
        socket
            .set_nonblocking(true)
            .map_err(VipError::io(op("non-blocking")))?;
        Ok(VrrpSocket {
            socket: register(socket).map_err(VipError::io(op("register with tokio")))?,
            interface: link.name.clone(),
            ifindex: link.index,
            source,
        })
    }

    /// The address packets are sent from (for the VRRPv3 checksum's pseudo-header).
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// The VRRP multicast group of this socket's family.
    pub fn group(&self) -> IpAddr {
        match self.source {
            IpAddr::V4(_) => VRRP_GROUP_V4.into(),
            IpAddr::V6(_) => VRRP_GROUP_V6.into(),
        }
    }

    /// Sends one VRRP payload to `dst` (the group, or a unicast peer).
    pub async fn send(&self, payload: &[u8], dst: IpAddr) -> Result<(), VipError> {
        let op = format!("send VRRP on {} to {dst}", self.interface);
        let payload = [IoSlice::new(payload)];
        // The source and outgoing interface travel as IP(V6)_PKTINFO, so one unbound
        // socket can both send from `source` and receive what is sent to the group.
        let sent = match (self.source, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(src).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                self.sendmsg(&payload, ControlMessage::Ipv4PacketInfo(&info), &to)
                    .await
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                let scope = if dst.is_unicast_link_local() || dst.is_multicast() {
                    self.ifindex
                } else {
                    0
                };
                let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
                self.sendmsg(&payload, ControlMessage::Ipv6PacketInfo(&info), &to)
                    .await
            }
            _ => {
                return Err(VipError::BadAddress {
                    addr: dst,
                    reason: format!("not of the family of VRRP source {}", self.source),
                })
            }
        };
        sent.map(drop).map_err(VipError::io(op))
    }

    async fn sendmsg<S: nix::sys::socket::SockaddrLike>(
        &self,
        payload: &[IoSlice<'_>],
        source: ControlMessage<'_>,
        to: &S,
    ) -> std::io::Result<usize> {
        self.socket
            .async_io(Interest::WRITABLE, |socket| {
                sendmsg(
                    socket.as_raw_fd(),
                    payload,
                    &[source],
                    MsgFlags::empty(),
                    Some(to),
                )
                .map_err(std::io::Error::from)
            })
            .await
    }

    /// Receives the next VRRP packet. A malformed IP header is an error naming the
    /// sender; the caller may log it and call again.
    pub async fn recv(&self) -> Result<Received, VipError> {
        let op = || format!("receive VRRP on {}", self.interface);
        let mut buffer = vec![0u8; RECV_BUFFER];
        match self.source {
            IpAddr::V4(_) => {
                let mut control = nix::cmsg_space!(libc::timespec);
                let (len, from, at) = self
                    .socket
                    .async_io(Interest::READABLE, |socket| {
                        let mut iov = [IoSliceMut::new(&mut buffer)];
                        let msg = recvmsg::<SockaddrIn>(
                            socket.as_raw_fd(),
                            &mut iov,
                            Some(&mut control),
                            MsgFlags::empty(),
                        )?;
                        let mut at = None;
                        for cmsg in msg.cmsgs()? {
                            if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                                at = Some(received_at(ts));
                            }
                        }
                        Ok((msg.bytes, msg.address, at))
                    })
                    .await
                    .map_err(VipError::io(op()))?;
                let from = from.map_or_else(|| "?".to_owned(), |a| a.ip().to_string());
                let datagram = strip_ipv4_header(&buffer[..len])
                    .map_err(|reason| VipError::BadPacket { from, reason })?;
                Ok(Received {
                    payload: datagram.payload.to_vec(),
                    src: datagram.src.into(),
                    dst: datagram.dst.into(),
                    ttl: datagram.ttl,
                    at: at.unwrap_or_else(SystemTime::now),
                })
            }
            IpAddr::V6(_) => {
                let mut control = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo, libc::timespec);
                let (len, from, hop_limit, dst, at) = self
                    .socket
                    .async_io(Interest::READABLE, |socket| {
                        let mut iov = [IoSliceMut::new(&mut buffer)];
                        let msg = recvmsg::<SockaddrIn6>(
                            socket.as_raw_fd(),
                            &mut iov,
                            Some(&mut control),
                            MsgFlags::empty(),
                        )?;
                        let (mut hop_limit, mut dst, mut at) = (None, None, None);
                        for cmsg in msg.cmsgs()? {
                            match cmsg {
                                ControlMessageOwned::Ipv6HopLimit(h) => hop_limit = Some(h),
                                ControlMessageOwned::Ipv6PacketInfo(info) => {
                                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr))
                                }
                                ControlMessageOwned::ScmTimestampns(ts) => {
                                    at = Some(received_at(ts));
                                }
                                _ => {}
                            }
                        }
                        Ok((msg.bytes, msg.address.map(|a| a.ip()), hop_limit, dst, at))
                    })
                    .await
                    .map_err(VipError::io(op()))?;
                let src = from.ok_or_else(|| VipError::BadPacket {
                    from: "?".into(),
                    reason: "no source address".into(),
                })?;
                let missing = |what: &str| VipError::BadPacket {
                    from: src.to_string(),
                    reason: format!("no {what} control message"),
                };
                let ttl = hop_limit.ok_or_else(|| missing("IPV6_HOPLIMIT"))?;
                let ttl = u8::try_from(ttl).map_err(|_| VipError::BadPacket {
                    from: src.to_string(),
                    reason: format!("hop limit {ttl} out of range"),
                })?;
                let dst = dst.ok_or_else(|| missing("IPV6_PKTINFO"))?;
                buffer.truncate(len);
                Ok(Received {
                    payload: buffer,
                    src: src.into(),
                    dst: dst.into(),
                    ttl,
                    at: at.unwrap_or_else(SystemTime::now),
                })
            }
        }
    }
}

/// A kernel timestamp (CLOCK_REALTIME) as a `SystemTime`.
fn received_at(ts: nix::sys::time::TimeSpec) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(ts.tv_sec()).unwrap_or(0),
            u32::try_from(ts.tv_nsec()).unwrap_or(0),
        )
}
