//! The bytes the VIP edges put on the wire or take off it, with no I/O: the gratuitous
//! ARP frame and unsolicited neighbour advertisement that announce a VIP's owner
//! (RFC 5227, RFC 4861 §7.2.6, the same packets keepalived sends), and the IPv4 header
//! that raw IPv4 sockets deliver in front of a VRRP payload.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Mac;

pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const BROADCAST: Mac = [0xff; 6];
const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_OP_REQUEST: u16 = 1;
pub const GARP_LEN: usize = 14 + 28;

const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINK_ADDR: u8 = 2;
pub const NA_LEN: usize = 4 + 4 + 16 + 8;

/// A broadcast ARP request whose sender and target protocol address are both the VIP:
/// every host on the segment that already knows the VIP learns its new MAC.
pub fn gratuitous_arp(mac: Mac, vip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut frame = [0u8; GARP_LEN];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let arp = &mut frame[14..];
    arp[0..2].copy_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    arp[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    arp[4] = 6; // hardware address length
    arp[5] = 4; // protocol address length
    arp[6..8].copy_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&vip.octets());
    arp[18..24].copy_from_slice(&BROADCAST);
    arp[24..28].copy_from_slice(&vip.octets());
    frame
}

/// An unsolicited neighbour advertisement for `vip` (ICMPv6 message only: the kernel
/// fills in the checksum on ICMPv6 raw sockets). Override is set so that neighbours
/// replace a cached MAC; Solicited and Router are clear.
pub fn unsolicited_na(mac: Mac, vip: Ipv6Addr) -> [u8; NA_LEN] {
    let mut message = [0u8; NA_LEN];
    message[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
    message[4] = NA_FLAG_OVERRIDE;
    message[8..24].copy_from_slice(&vip.octets());
    message[24] = ND_OPT_TARGET_LINK_ADDR;
    message[25] = 1; // option length in units of 8 bytes
    message[26..32].copy_from_slice(&mac);
    message
}

/// A datagram received on a raw IPv4 socket, split at the end of its IP header.
#[derive(Debug, PartialEq, Eq)]
pub struct Ipv4Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub payload: &'a [u8],
}

/// Strips the IPv4 header (options included) from a raw socket's datagram.
pub fn strip_ipv4_header(packet: &[u8]) -> Result<Ipv4Datagram<'_>, String> {
    let header = packet
        .get(..20)
        .ok_or_else(|| format!("{} bytes, shorter than an IPv4 header", packet.len()))?;
    let version = header[0] >> 4;
    if version != 4 {
        return Err(format!("IP version {version}, expected 4"));
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header_len < 20 || header_len > total_len {
        return Err(format!(
            "IPv4 header length {header_len} outside 20..={total_len} (total length)"
        ));
    }
    let payload = packet.get(header_len..total_len).ok_or_else(|| {
        format!(
            "IPv4 total length {total_len} exceeds the {} bytes received",
            packet.len()
        )
    })?;
    let addr =
        |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
    Ok(Ipv4Datagram {
        src: addr(12),
        dst: addr(16),
        ttl: header[8],
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: Mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn gratuitous_arp_bytes() {
        let frame = gratuitous_arp(MAC, Ipv4Addr::new(192, 0, 2, 10));
        #[rustfmt::skip]
        let expected: [u8; GARP_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 0, 2, 10,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 192, 0, 2, 10,
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn unsolicited_na_bytes() {
        let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let message = unsolicited_na(MAC, vip);
        assert_eq!(&message[..8], &[136, 0, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(&message[8..24], &vip.octets());
        assert_eq!(&message[24..], &[2, 1, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
    }

    fn ipv4_packet(ihl: u8, total_len: u16, ttl: u8, body: &[u8]) -> Vec<u8> {
        let mut packet = vec![0u8; usize::from(ihl) * 4];
        packet[0] = 0x40 | ihl;
        packet[2..4].copy_from_slice(&total_len.to_be_bytes());
        packet[8] = ttl;
        packet[9] = 112;
        packet[12..16].copy_from_slice(&[192, 0, 2, 1]);
        packet[16..20].copy_from_slice(&[224, 0, 0, 18]);
        packet.extend_from_slice(body);
        packet
    }

    #[test]
    fn strips_header_with_options() {
        let packet = ipv4_packet(6, 24 + 3, 255, &[1, 2, 3]);
        let datagram = strip_ipv4_header(&packet).unwrap();
        assert_eq!(
            datagram,
            Ipv4Datagram {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(224, 0, 0, 18),
                ttl: 255,
                payload: &[1, 2, 3],
            }
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        assert!(strip_ipv4_header(&[0x45; 10])
            .unwrap_err()
            .contains("shorter"));
        let mut v6 = ipv4_packet(5, 20, 1, &[]);
        v6[0] = 0x65;
        assert!(strip_ipv4_header(&v6).unwrap_err().contains("version 6"));
        let short_ihl = ipv4_packet(5, 20, 1, &[]);
        let mut bad = short_ihl.clone();
        bad[0] = 0x44;
        assert!(strip_ipv4_header(&bad)
            .unwrap_err()
            .contains("header length 16"));
        let truncated = ipv4_packet(5, 30, 1, &[0; 4]);
        assert!(strip_ipv4_header(&truncated)
            .unwrap_err()
            .contains("exceeds"));
    }

    proptest! {
        #[test]
        fn strip_never_panics(packet in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = strip_ipv4_header(&packet);
        }

        #[test]
        fn strip_returns_exactly_the_body(
            ihl in 5u8..=15,
            ttl in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            trailer in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let total = u16::from(ihl) * 4 + body.len() as u16;
            let mut packet = ipv4_packet(ihl, total, ttl, &body);
            packet.extend_from_slice(&trailer);
            let datagram = strip_ipv4_header(&packet).unwrap();
            prop_assert_eq!(datagram.payload, &body[..]);
            prop_assert_eq!(datagram.ttl, ttl);
        }
    }
}
