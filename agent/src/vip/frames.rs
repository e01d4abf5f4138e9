//! The bytes the VIP edges put on the wire or take off it, with no I/O: the gratuitous
//! ARP frame and unsolicited neighbour advertisement that announce a VIP's owner
//! (RFC 5227, RFC 4861 §7.2.6, the same packets keepalived sends), the ARP probe and
//! neighbour solicitation that ask who still answers for a VIP and their replies, and
//! the IPv4 header that raw IPv4 sockets deliver in front of a VRRP payload.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Mac;

pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const BROADCAST: Mac = [0xff; 6];
const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_OP_REQUEST: u16 = 1;
const ARP_OP_REPLY: u16 = 2;
pub const GARP_LEN: usize = 14 + 28;
pub const ARP_PROBE_LEN: usize = GARP_LEN;

const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_SOURCE_LINK_ADDR: u8 = 1;
const ND_OPT_TARGET_LINK_ADDR: u8 = 2;
pub const NA_LEN: usize = 4 + 4 + 16 + 8;
pub const NS_LEN: usize = NA_LEN;

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
    nd_message(
        ICMPV6_NEIGHBOR_ADVERTISEMENT,
        NA_FLAG_OVERRIDE,
        vip,
        ND_OPT_TARGET_LINK_ADDR,
        mac,
    )
}

/// A neighbour discovery message of `kind` with `flags`, the `target` address and one
/// link-layer address option (`option`: source or target) holding `mac`.
fn nd_message(kind: u8, flags: u8, target: Ipv6Addr, option: u8, mac: Mac) -> [u8; NA_LEN] {
    let mut message = [0u8; NA_LEN];
    message[0] = kind;
    message[4] = flags;
    message[8..24].copy_from_slice(&target.octets());
    message[24] = option;
    message[25] = 1; // option length in units of 8 bytes
    message[26..32].copy_from_slice(&mac);
    message
}

/// An ARP probe (RFC 5227 §2.1.1: sender protocol address 0.0.0.0) asking who has
/// `vip`. A host holding it replies to `mac` (Linux does for probes too, arp_process's
/// duplicate-detection case), and no host's ARP cache learns anything from it.
pub fn arp_probe(mac: Mac, vip: Ipv4Addr) -> [u8; ARP_PROBE_LEN] {
    let mut frame = gratuitous_arp(mac, vip);
    let arp = &mut frame[14..];
    arp[14..18].copy_from_slice(&Ipv4Addr::UNSPECIFIED.octets());
    arp[18..24].copy_from_slice(&[0; 6]);
    frame
}

/// The sender of an ARP reply frame (Ethernet header first, padding allowed): its
/// hardware and protocol addresses. `None` for anything else.
pub fn arp_reply_sender(frame: &[u8]) -> Option<(Mac, Ipv4Addr)> {
    let arp = frame.get(14..42)?;
    let is_reply = frame[12..14] == ETH_P_ARP.to_be_bytes()
        && arp[0..2] == ARP_HTYPE_ETHERNET.to_be_bytes()
        && arp[2..4] == ETH_P_IP.to_be_bytes()
        && arp[4] == 6
        && arp[5] == 4
        && arp[6..8] == ARP_OP_REPLY.to_be_bytes();
    if !is_reply {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&arp[8..14]);
    Some((mac, Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17])))
}

/// A neighbour solicitation for `vip` (ICMPv6 message only, checksum left to the
/// kernel), with our link-layer address so the holder can answer at once. It goes to
/// [`solicited_node`] of `vip`.
pub fn neighbour_solicitation(mac: Mac, vip: Ipv6Addr) -> [u8; NS_LEN] {
    nd_message(
        ICMPV6_NEIGHBOR_SOLICITATION,
        0,
        vip,
        ND_OPT_SOURCE_LINK_ADDR,
        mac,
    )
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The target of a neighbour advertisement (an ICMPv6 message as a raw socket hands
/// it over). `None` for anything else.
pub fn na_target(message: &[u8]) -> Option<Ipv6Addr> {
    if message.first() != Some(&ICMPV6_NEIGHBOR_ADVERTISEMENT) || message.get(1) != Some(&0) {
        return None;
    }
    let target: [u8; 16] = message.get(8..24)?.try_into().ok()?;
    Some(Ipv6Addr::from(target))
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

    /// Captured by tcpdump -xx on a veth pair: the probe as Linux saw it leave, and
    /// the holder kernel's reply (192.0.2.10 on 02:00:00:00:00:01).
    #[rustfmt::skip]
    const CAPTURED_PROBE: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x0a,
    ];
    #[rustfmt::skip]
    const CAPTURED_REPLY: [u8; 42] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xc0, 0x00, 0x02, 0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
    ];
    /// The ICMPv6 part of a captured solicitation from 02:00:00:00:00:02 for
    /// 2001:db8::10 (checksum as the kernel filled it in), and of the holder's answer.
    #[rustfmt::skip]
    const CAPTURED_NS: [u8; 32] = [
        0x87, 0x00, 0x4c, 0x41, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0x00, 0x10, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];
    #[rustfmt::skip]
    const CAPTURED_NA: [u8; 32] = [
        0x88, 0x00, 0xba, 0x8d, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0x00, 0x10, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn arp_probe_and_reply_match_the_captured_exchange() {
        let asker = [0x02, 0, 0, 0, 0, 0x02];
        let vip = Ipv4Addr::new(192, 0, 2, 10);
        assert_eq!(arp_probe(asker, vip), CAPTURED_PROBE);
        assert_eq!(
            arp_reply_sender(&CAPTURED_REPLY),
            Some(([0x02, 0, 0, 0, 0, 0x01], vip))
        );
        // Padded to Ethernet's 60 bytes on a real wire: still the same reply.
        let mut padded = CAPTURED_REPLY.to_vec();
        padded.resize(60, 0);
        assert_eq!(
            arp_reply_sender(&padded),
            Some(([0x02, 0, 0, 0, 0, 0x01], vip))
        );
        // The request itself, a gratuitous ARP, a truncated reply: not replies.
        assert_eq!(arp_reply_sender(&CAPTURED_PROBE), None);
        assert_eq!(arp_reply_sender(&gratuitous_arp(asker, vip)), None);
        assert_eq!(arp_reply_sender(&CAPTURED_REPLY[..41]), None);
    }

    #[test]
    fn solicitation_and_advertisement_match_the_captured_exchange() {
        let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let ns = neighbour_solicitation([0x02, 0, 0, 0, 0, 0x02], vip);
        // The kernel fills in the checksum (bytes 2..4).
        assert_eq!(ns[..2], CAPTURED_NS[..2]);
        assert_eq!(ns[4..], CAPTURED_NS[4..]);
        assert_eq!(
            solicited_node(vip),
            "ff02::1:ff00:10".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(na_target(&CAPTURED_NA), Some(vip));
        assert_eq!(na_target(&CAPTURED_NS), None);
        assert_eq!(na_target(&CAPTURED_NA[..20]), None);
        assert_eq!(na_target(&unsolicited_na(MAC, vip)), Some(vip));
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
        fn reply_parsers_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = arp_reply_sender(&frame);
            let _ = na_target(&frame);
        }

        #[test]
        fn solicited_node_keeps_the_low_24_bits(addr in any::<u128>()) {
            let group = u128::from(solicited_node(Ipv6Addr::from(addr)));
            prop_assert_eq!(group & 0xff_ffff, addr & 0xff_ffff);
            prop_assert_eq!(group >> 24, 0x00ff_0200_0000_0000_0000_0000_01ff);
        }

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
