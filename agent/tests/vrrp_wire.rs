//! lvs-agent's VRRP adverts on the wire against keepalived's own, for the same
//! groups: a VRRPv2 group (vrid 50, priority 150, 1 s, auth PASS) and a VRRPv3
//! group (vrid 51, priority 150, 0.1 s). keepalived runs alone in k1, then the
//! agent alone in a1; tcpdump captures `ip proto 112` on the bridge. Every
//! captured advert (priority 0 "leaving" adverts aside) must have a valid
//! checksum, TTL 255, destination 224.0.0.18 / 01:00:5e:00:00:12 and the
//! sender's interface MAC (keepalived's default without use_vmac), and the two
//! daemons' adverts must agree field by field. Needs root, keepalived, tcpdump.

mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use support::keepalived_lab::{keepalived_global, Instance, Lab};
use support::netns::wait_for;

/// What must match between the two daemons, per vrid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    version: u8,
    kind: u8,
    vrid: u8,
    priority: u8,
    /// v2: auth type; v3: the reserved bits (0).
    auth_type_or_rsvd: u8,
    /// v2: seconds; v3: centiseconds.
    interval: u16,
    addresses: Vec<Ipv4Addr>,
    /// v2 only: the 8 bytes of authentication data.
    auth_data: Vec<u8>,
    ttl: u8,
    dst: Ipv4Addr,
    dst_mac: [u8; 6],
}

struct Captured {
    src_mac: [u8; 6],
    shape: Shape,
    checksum_ok: bool,
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn folds_to_zero(mut sum: u32) -> bool {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// One Ethernet frame carrying IPv4 protocol 112.
fn parse_frame(frame: &[u8]) -> Option<Captured> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9)? != &112 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let vrrp = ip.get(ihl..total)?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let version = vrrp[0] >> 4;
    let count = usize::from(vrrp[3]);
    let addresses: Vec<Ipv4Addr> = (0..count)
        .map(|i| {
            let a = vrrp.get(8 + 4 * i..12 + 4 * i)?;
            Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        })
        .collect::<Option<_>>()?;
    let (auth_type_or_rsvd, interval, auth_data, checksum_ok) = if version == 2 {
        let auth = vrrp.get(8 + 4 * count..16 + 4 * count)?.to_vec();
        (
            vrrp[4],
            u16::from(vrrp[5]),
            auth,
            folds_to_zero(sum16(vrrp)),
        )
    } else {
        let pseudo = [
            &src.octets()[..],
            &dst.octets()[..],
            &[0, 112],
            &u16::try_from(vrrp.len()).ok()?.to_be_bytes(),
        ]
        .concat();
        let interval = u16::from_be_bytes([vrrp[4] & 0x0f, vrrp[5]]);
        (
            vrrp[4] >> 4,
            interval,
            Vec::new(),
            folds_to_zero(sum16(&pseudo) + sum16(vrrp)),
        )
    };
    Some(Captured {
        src_mac: frame[6..12].try_into().ok()?,
        checksum_ok,
        shape: Shape {
            version,
            kind: vrrp[0] & 0x0f,
            vrid: vrrp[1],
            priority: vrrp[2],
            auth_type_or_rsvd,
            interval,
            addresses,
            auth_data,
            ttl: ip[8],
            dst,
            dst_mac: frame[0..6].try_into().ok()?,
        },
    })
}

/// The frames of a classic pcap file (either byte order).
fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
    let little = file.get(0..4) == Some(&[0xd4, 0xc3, 0xb2, 0xa1]);
    let word = |b: &[u8]| {
        let b: [u8; 4] = b.try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while let Some(header) = file.get(at..at + 16) {
        let len = word(&header[8..12]) as usize;
        let Some(frame) = file.get(at + 16..at + 16 + len) else {
            break;
        };
        frames.push(frame);
        at += 16 + len;
    }
    frames
}

/// Captures VRRP on the bridge while `node`'s daemon runs, until `enough` holds.
fn capture(lab: &mut Lab, name: &str, enough: impl Fn(&[Captured]) -> bool) -> Vec<Captured> {
    let file = lab.dir.join(format!("{name}.pcap"));
    let path = file.display().to_string();
    let tcpdump = lab.spawn(
        "br",
        &format!("tcpdump-{name}"),
        "tcpdump",
        &["-i", "br0", "-U", "-n", "-w", &path, "ip proto 112"],
    );
    let read = || {
        let bytes = std::fs::read(&file).unwrap_or_default();
        pcap_frames(&bytes)
            .into_iter()
            .filter_map(parse_frame)
            .collect::<Vec<_>>()
    };
    wait_for(
        Duration::from_secs(30),
        "VRRP adverts on the bridge",
        || enough(&read()),
    );
    lab.stop(tcpdump);
    read()
}

const V2: Instance<'static> = Instance {
    name: "v2",
    vrid: 50,
    version: 2,
    priority: 150,
    advert_int: "1",
    password: Some("1111"),
    addresses: &["192.0.2.100/32"],
    nopreempt: false,
};

const V3: Instance<'static> = Instance {
    name: "v3",
    vrid: 51,
    version: 3,
    priority: 150,
    advert_int: "0.1",
    password: None,
    addresses: &["192.0.2.101/32"],
    nopreempt: false,
};

fn agent_configs(lab: &Lab) -> (String, String) {
    let node = format!(
        "[node]\nid = \"a1\"\ninterface = \"eth0\"\naddress = \"{}\"\nsyncid = 1\n\
         cluster_key_files = [\"{}\"]\n",
        lab.addr("a1"),
        lab.cluster_key()
    );
    let cluster = "[cluster]\nname = \"wire\"\n\n\
        [[vip_group]]\nname = \"v2\"\nvrrp_id = 50\naddresses = [\"192.0.2.100/32\"]\n\
        priorities = { a1 = 150 }\nadvert_int = 1\n\
        authentication = { type = \"pass\", password = \"1111\" }\n\n\
        [[vip_group]]\nname = \"v3\"\nvrrp_id = 51\nversion = 3\naddresses = [\"192.0.2.101/32\"]\n\
        priorities = { a1 = 150 }\nadvert_int = 0.1\n"
        .to_owned();
    (node, cluster)
}

/// At least three priority-150 adverts of each vrid.
fn both_groups(captured: &[Captured]) -> bool {
    [50, 51].iter().all(|&vrid| {
        captured
            .iter()
            .filter(|c| c.shape.vrid == vrid && c.shape.priority == 150)
            .count()
            >= 3
    })
}

/// The distinct shapes of the priority-150 adverts, after checking each one.
fn checked_shapes(lab: &Lab, node: &str, captured: &[Captured]) -> BTreeSet<Shape> {
    let mac = lab.mac(node);
    captured
        .iter()
        .filter(|c| c.shape.priority == 150)
        .map(|c| {
            assert!(c.checksum_ok, "{node}: bad checksum in {:?}", c.shape);
            let src_mac: Vec<String> = c.src_mac.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                src_mac.join(":"),
                mac,
                "{node}: source MAC of {:?}",
                c.shape
            );
            assert_eq!(c.shape.ttl, 255, "{node}: TTL");
            assert_eq!(
                c.shape.dst,
                Ipv4Addr::new(224, 0, 0, 18),
                "{node}: destination"
            );
            assert_eq!(
                c.shape.dst_mac,
                [1, 0, 0x5e, 0, 0, 0x12],
                "{node}: destination MAC"
            );
            c.shape.clone()
        })
        .collect()
}

#[test]
fn agent_adverts_match_keepalived_adverts() {
    let mut lab = Lab::new("wire", &["k1", "a1"]);
    let config = keepalived_global("k1") + &V2.config() + &V3.config();
    let keepalived = lab.keepalived("k1", "keepalived", &config);
    let theirs = capture(&mut lab, "keepalived", both_groups);
    lab.stop(keepalived);

    let (node, cluster) = agent_configs(&lab);
    let agent = lab.agent("a1", &node, &cluster);
    // Start the capture once keepalived's leaving adverts are long gone.
    std::thread::sleep(Duration::from_secs(1));
    let ours = capture(&mut lab, "agent", both_groups);
    lab.stop(agent);

    let theirs = checked_shapes(&lab, "k1", &theirs);
    let ours = checked_shapes(&lab, "a1", &ours);
    assert_eq!(
        theirs.len(),
        2,
        "keepalived sent one shape per group: {theirs:#?}"
    );
    assert_eq!(ours, theirs, "lvs-agent adverts differ from keepalived's");
}
