//! Arbitrary bytes as a received VRRP payload: decode must never panic, and whatever it
//! accepts must survive encode → decode unchanged.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use lvs_agent::vrrp::{decode, encode, Auth, HOP_LIMIT, MCAST_V4, MCAST_V6};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the carrying family and the expected auth; the rest is the payload.
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    let (src, dst): (IpAddr, IpAddr) = if flags & 1 == 0 {
        ([192, 0, 2, 1].into(), MCAST_V4.into())
    } else {
        ("fe80::1".parse().unwrap(), MCAST_V6.into())
    };
    let auth = if flags & 2 == 0 {
        Auth::None
    } else {
        Auth::simple_password("1111").unwrap()
    };
    if let Ok(advert) = decode(payload, src, dst, HOP_LIMIT, &auth) {
        let bytes = encode(&advert, src, dst).expect("a decoded advert encodes");
        assert_eq!(decode(&bytes, src, dst, HOP_LIMIT, &auth), Ok(advert));
    }
});
