//! Codec tests against adverts captured from keepalived, plus properties.
//!
//! Captures: keepalived v2.2.7 (Debian) in a network namespace, interface `vka` with
//! 192.0.2.1/24, 2001:db8::1/64 and link-local fe80::1c6c:b7ff:febf:56d, recorded with
//! `tcpdump -i vpeer -w` from the veth peer in a second namespace. Its keepalived.conf:
//!
//! ```text
//! vrrp_instance V2_PASS   { state MASTER  interface vka  virtual_router_id 50  priority 100
//!                           advert_int 1  authentication { auth_type PASS  auth_pass 1111 }
//!                           virtual_ipaddress { 192.0.2.10/24 } }
//! vrrp_instance V2_NOAUTH { state MASTER  interface vka  virtual_router_id 53  priority 150
//!                           advert_int 2  virtual_ipaddress { 192.0.2.13/24  192.0.2.14/24 } }
//! vrrp_instance V3_V4     { version 3  state MASTER  interface vka  virtual_router_id 51
//!                           priority 100  advert_int 1
//!                           virtual_ipaddress { 192.0.2.11/24  192.0.2.12/24 } }
//! vrrp_instance V3_V6     { version 3  state MASTER  interface vka  virtual_router_id 52
//!                           priority 100  advert_int 0.5  virtual_ipaddress { 2001:db8::10/64 } }
//! ```
//!
//! The `*_RESIGN` adverts are the priority-0 ones keepalived sent when stopped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::packet::*;

const SRC_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const DST_V4: IpAddr = IpAddr::V4(MCAST_V4);
const SRC_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(
    0xfe80, 0, 0, 0, 0x1c6c, 0xb7ff, 0xfebf, 0x056d,
));
const DST_V6: IpAddr = IpAddr::V6(MCAST_V6);

const V2_PASS: &str = "21 32 64 01 01 01 555e c000020a 31313131 00000000";
const V2_PASS_RESIGN: &str = "21 32 00 01 01 01 b95e c000020a 31313131 00000000";
const V2_NOAUTH: &str = "21 35 96 02 00 02 c4a9 c000020d c000020e 00000000 00000000";
const V2_NOAUTH_RESIGN: &str = "21 35 00 02 00 02 5aaa c000020d c000020e 00000000 00000000";
const V3_V4: &str = "31 33 64 02 0064 43b9 c000020b c000020c";
const V3_V4_RESIGN: &str = "31 33 00 02 0064 a7b9 c000020b c000020c";
const V3_V6: &str = "31 34 64 01 0032 6618 20010db8000000000000000000000010";
const V3_V6_RESIGN: &str = "31 34 00 01 0032 ca18 20010db8000000000000000000000010";

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn pass_1111() -> Auth {
    Auth::simple_password("1111").unwrap()
}

fn v4(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

/// (capture, src, dst, auth, the advert it carries)
fn keepalived_captures() -> Vec<(&'static str, IpAddr, IpAddr, Auth, Advert)> {
    let advert = |version, vrid, priority, advert_interval, addresses, auth| Advert {
        version,
        vrid,
        priority,
        advert_interval,
        addresses,
        auth,
    };
    let v6_vip: IpAddr = "2001:db8::10".parse().unwrap();
    vec![
        (
            V2_PASS,
            SRC_V4,
            DST_V4,
            pass_1111(),
            advert(Version::V2, 50, 100, 1, vec![v4(10)], pass_1111()),
        ),
        (
            V2_PASS_RESIGN,
            SRC_V4,
            DST_V4,
            pass_1111(),
            advert(Version::V2, 50, 0, 1, vec![v4(10)], pass_1111()),
        ),
        (
            V2_NOAUTH,
            SRC_V4,
            DST_V4,
            Auth::None,
            advert(Version::V2, 53, 150, 2, vec![v4(13), v4(14)], Auth::None),
        ),
        (
            V2_NOAUTH_RESIGN,
            SRC_V4,
            DST_V4,
            Auth::None,
            advert(Version::V2, 53, 0, 2, vec![v4(13), v4(14)], Auth::None),
        ),
        (
            V3_V4,
            SRC_V4,
            DST_V4,
            Auth::None,
            advert(Version::V3, 51, 100, 100, vec![v4(11), v4(12)], Auth::None),
        ),
        (
            V3_V4_RESIGN,
            SRC_V4,
            DST_V4,
            Auth::None,
            advert(Version::V3, 51, 0, 100, vec![v4(11), v4(12)], Auth::None),
        ),
        (
            V3_V6,
            SRC_V6,
            DST_V6,
            Auth::None,
            advert(Version::V3, 52, 100, 50, vec![v6_vip], Auth::None),
        ),
        (
            V3_V6_RESIGN,
            SRC_V6,
            DST_V6,
            Auth::None,
            advert(Version::V3, 52, 0, 50, vec![v6_vip], Auth::None),
        ),
    ]
}

#[test]
fn keepalived_adverts_decode_and_reencode_byte_for_byte() {
    for (capture, src, dst, auth, expected) in keepalived_captures() {
        let bytes = hex(capture);
        assert_eq!(
            decode(&bytes, src, dst, HOP_LIMIT, &auth),
            Ok(expected.clone()),
            "{capture}"
        );
        assert_eq!(encode(&expected, src, dst), Ok(bytes), "{capture}");
    }
}

fn decode_error(bytes: &[u8], src: IpAddr, dst: IpAddr, ttl: u8, auth: &Auth) -> String {
    decode(bytes, src, dst, ttl, auth).unwrap_err().to_string()
}

#[test]
fn bad_checksum_names_sender_vrid_and_both_values() {
    let mut bytes = hex(V2_PASS);
    bytes[7] ^= 1;
    assert_eq!(
        decode_error(&bytes, SRC_V4, DST_V4, 255, &pass_1111()),
        "VRRP from 192.0.2.1 vrid 50: bad checksum 0x555f (expected 0x555e)"
    );
}

#[test]
fn v3_checksum_covers_the_pseudo_header() {
    let other_src = v4(2);
    assert_eq!(
        decode_error(&hex(V3_V4), other_src, DST_V4, 255, &Auth::None),
        "VRRP from 192.0.2.2 vrid 51: bad checksum 0x43b9 (expected 0x43b8)"
    );
    // v2 does not: the same bytes from elsewhere are fine.
    assert!(decode(&hex(V2_NOAUTH), other_src, DST_V4, 255, &Auth::None).is_ok());
}

#[test]
fn hop_limit_below_255_is_refused() {
    assert_eq!(
        decode_error(&hex(V3_V6), SRC_V6, DST_V6, 254, &Auth::None),
        "VRRP from fe80::1c6c:b7ff:febf:56d vrid 52: TTL/hop limit 254 (must be 255: the packet crossed a router)"
    );
}

#[test]
fn authentication_must_match_what_we_expect() {
    let wrong = Auth::simple_password("2222").unwrap();
    assert_eq!(
        decode_error(&hex(V2_PASS), SRC_V4, DST_V4, 255, &wrong),
        "VRRP from 192.0.2.1 vrid 50: wrong authentication password"
    );
    assert_eq!(
        decode_error(&hex(V2_PASS), SRC_V4, DST_V4, 255, &Auth::None),
        "VRRP from 192.0.2.1 vrid 50: auth type 1 (expected 0)"
    );
    assert_eq!(
        decode_error(&hex(V2_NOAUTH), SRC_V4, DST_V4, 255, &pass_1111()),
        "VRRP from 192.0.2.1 vrid 53: auth type 0 (expected 1)"
    );
    // v3 carries no password, so a router expecting one refuses it.
    assert_eq!(
        decode_error(&hex(V3_V4), SRC_V4, DST_V4, 255, &pass_1111()),
        "VRRP from 192.0.2.1 vrid 51: auth type 0 (expected 1)"
    );
}

/// RFC 1071 over the concatenated parts, written out independently of the codec.
fn rfc1071(parts: &[&[u8]]) -> u16 {
    let bytes = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Replaces the checksum of a v2 message (or of a v3 message with `pseudo_header`).
fn fix_checksum(bytes: &mut [u8], pseudo_header: &[u8]) {
    bytes[6..8].fill(0);
    let checksum = rfc1071(&[pseudo_header, bytes]);
    bytes[6..8].copy_from_slice(&checksum.to_be_bytes());
}

#[test]
fn ip_ah_auth_type_is_refused() {
    let mut bytes = hex(V2_NOAUTH);
    bytes[4] = 2;
    fix_checksum(&mut bytes, &[]);
    assert_eq!(
        decode_error(&bytes, SRC_V4, DST_V4, 255, &Auth::None),
        "VRRP from 192.0.2.1 vrid 53: auth type 2 (expected 0)"
    );
}

#[test]
fn v3_reserved_bits_are_ignored_on_receipt() {
    let mut bytes = hex(V3_V4);
    bytes[4] |= 0xf0;
    let pseudo_header = hex("c0000201 e0000012 00 70 0010");
    fix_checksum(&mut bytes, &pseudo_header);
    let advert = decode(&bytes, SRC_V4, DST_V4, 255, &Auth::None).unwrap();
    assert_eq!(advert.advert_interval, 100);
}

#[test]
fn header_fields_are_validated() {
    let cases = [
        (&V2_PASS[..0], "VRRP from 192.0.2.1: 0 bytes, shorter than the 8-byte header"),
        (
            "21 32 64 01",
            "VRRP from 192.0.2.1 vrid 50: 4 bytes, shorter than the 8-byte header",
        ),
        (
            "41 32 64 01 01 01 555e c000020a 31313131 00000000",
            "VRRP from 192.0.2.1 vrid 50: version 4 (only 2 and 3 are known)",
        ),
        (
            "22 32 64 01 01 01 555e c000020a 31313131 00000000",
            "VRRP from 192.0.2.1 vrid 50: type 2 (only 1, advertisement, is known)",
        ),
        (
            "21 00 64 01 01 01 555e c000020a 31313131 00000000",
            "VRRP from 192.0.2.1 vrid 0: vrid must be 1..=255",
        ),
        (
            "21 32 64 02 01 01 555e c000020a 31313131 00000000",
            "VRRP from 192.0.2.1 vrid 50: length 20 bytes does not match 2 addresses (24 bytes expected)",
        ),
        (
            "21 32 64 01 01 01 555e c000020a 31313131 00000000 00",
            "VRRP from 192.0.2.1 vrid 50: length 21 bytes does not match 1 addresses (20 bytes expected)",
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(
            decode_error(&hex(bytes), SRC_V4, DST_V4, 255, &pass_1111()),
            message
        );
    }
}

#[test]
fn address_family_must_agree_with_the_ip_header() {
    assert_eq!(
        decode_error(&hex(V2_NOAUTH), SRC_V6, DST_V6, 255, &Auth::None),
        "VRRP from fe80::1c6c:b7ff:febf:56d vrid 53: VRRPv2 over IPv6"
    );
    assert_eq!(
        decode_error(&hex(V3_V4), SRC_V4, DST_V6, 255, &Auth::None),
        "VRRP from 192.0.2.1 vrid 51: source 192.0.2.1 and destination ff02::12 are of different address families"
    );
    // Two IPv4 addresses are 8 bytes, not the 16 of one IPv6 address.
    assert_eq!(
        decode_error(&hex(V3_V4), SRC_V6, DST_V6, 255, &Auth::None),
        "VRRP from fe80::1c6c:b7ff:febf:56d vrid 51: length 16 bytes does not match 2 addresses (40 bytes expected)"
    );
}

#[test]
fn encode_refuses_adverts_it_cannot_put_on_the_wire() {
    let base = Advert {
        version: Version::V2,
        vrid: 7,
        priority: 100,
        advert_interval: 1,
        addresses: vec![v4(10)],
        auth: Auth::None,
    };
    let with = |change: fn(&mut Advert)| {
        let mut advert = base.clone();
        change(&mut advert);
        encode(&advert, SRC_V4, DST_V4).unwrap_err().to_string()
    };
    assert_eq!(
        with(|a| a.vrid = 0),
        "VRRP vrid 0: virtual router ids are 1..=255"
    );
    assert_eq!(
        with(|a| a.advert_interval = 256),
        "VRRP vrid 7: VRRPv2 advert_interval 256 exceeds 255"
    );
    assert_eq!(
        with(|a| {
            a.version = Version::V3;
            a.advert_interval = 4096;
        }),
        "VRRP vrid 7: VRRPv3 advert_interval 4096 exceeds 4095"
    );
    assert_eq!(
        with(|a| {
            a.version = Version::V3;
            a.auth = Auth::SimplePassword([0; 8]);
        }),
        "VRRP vrid 7: VRRPv3 has no authentication; use Auth::None"
    );
    assert_eq!(
        with(|a| a.addresses = vec![v4(1); 256]),
        "VRRP vrid 7: 256 addresses, at most 255 fit in one advert"
    );
    assert_eq!(
        with(|a| a.addresses.push("2001:db8::1".parse().unwrap())),
        "VRRP vrid 7: address 2001:db8::1 is not of the family of source 192.0.2.1 and destination 224.0.0.18"
    );
    assert_eq!(
        encode(&base, SRC_V6, DST_V6).unwrap_err().to_string(),
        "VRRP vrid 7: address 192.0.2.10 is not of the family of source fe80::1c6c:b7ff:febf:56d and destination ff02::12"
    );
    assert_eq!(
        encode(&base, SRC_V4, DST_V6).unwrap_err().to_string(),
        "VRRP vrid 7: source 192.0.2.1 and destination ff02::12 are of different address families"
    );
    let v6_base = Advert {
        addresses: vec![],
        ..base.clone()
    };
    assert_eq!(
        encode(&v6_base, SRC_V6, DST_V6).unwrap_err().to_string(),
        "VRRP vrid 7: VRRPv2 runs over IPv4 only"
    );
}

#[test]
fn passwords_are_zero_padded_to_eight_bytes() {
    assert_eq!(pass_1111(), Auth::SimplePassword(*b"1111\0\0\0\0"));
    assert_eq!(
        Auth::simple_password("123456789").unwrap_err().to_string(),
        "VRRP auth_pass is 9 bytes long; the packet carries at most 8"
    );
}

#[test]
fn virtual_macs_follow_rfc_5798() {
    assert_eq!(virtual_mac(false, 50), [0, 0, 0x5e, 0, 1, 50]);
    assert_eq!(virtual_mac(true, 255), [0, 0, 0x5e, 0, 2, 255]);
}

/// A valid advert with the src/dst it travels between.
fn arb_advert() -> impl Strategy<Value = (Advert, IpAddr, IpAddr)> {
    let v4 = any::<[u8; 4]>().prop_map(IpAddr::from);
    let v6 = any::<[u8; 16]>().prop_map(IpAddr::from);
    let v4_advert = (
        prop_oneof![Just(Version::V2), Just(Version::V3)],
        v4.clone(),
        prop::collection::vec(v4, 0..20),
    );
    let v6_advert = (
        Just(Version::V3),
        v6.clone(),
        prop::collection::vec(v6, 0..20),
    );
    (
        prop_oneof![v4_advert, v6_advert],
        1..=255u8,
        any::<u8>(),
        any::<u16>(),
        any::<Option<[u8; 8]>>(),
    )
        .prop_map(
            |((version, src, addresses), vrid, priority, interval, password)| {
                let (advert_interval, auth) = match version {
                    Version::V2 => (
                        interval % 256,
                        password.map_or(Auth::None, Auth::SimplePassword),
                    ),
                    Version::V3 => (interval & MAX_V3_INTERVAL_CS, Auth::None),
                };
                let dst = if src.is_ipv6() { DST_V6 } else { DST_V4 };
                let advert = Advert {
                    version,
                    vrid,
                    priority,
                    advert_interval,
                    addresses,
                    auth,
                };
                (advert, src, dst)
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips((advert, src, dst) in arb_advert()) {
        let bytes = encode(&advert, src, dst).unwrap();
        prop_assert_eq!(decode(&bytes, src, dst, HOP_LIMIT, &advert.auth), Ok(advert));
    }

    #[test]
    fn a_flipped_bit_is_never_accepted((advert, src, dst) in arb_advert(), bit in any::<prop::sample::Index>()) {
        let mut bytes = encode(&advert, src, dst).unwrap();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // The checksum covers every bit of the message, ignored ones included.
        prop_assert!(decode(&bytes, src, dst, HOP_LIMIT, &advert.auth).is_err());
    }

    #[test]
    fn decode_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
        src in any::<IpAddr>(),
        dst in any::<IpAddr>(),
        ttl in any::<u8>(),
        password in any::<Option<[u8; 8]>>(),
    ) {
        let auth = password.map_or(Auth::None, Auth::SimplePassword);
        let _ = decode(&bytes, src, dst, ttl, &auth);
    }
}
