//! Failover prober for deploy/bench/failover: measures how long a VIP takes to
//! answer ARP from a new MAC after its owner is killed.
//!
//! ```text
//! arp_failover_probe --iface IF --src IP --vip IP --victim MAC=PGID [--victim ...]
//!                    [--interval-ms 10] [--stable 20] [--timeout-s 60]
//! ```
//! Sends an ARP request for the VIP every interval (broadcast, from `--src`),
//! waits until `--stable` answers in a row come from one MAC, sends SIGKILL to
//! the process group mapped to that MAC, then prints one line
//! `old=MAC new=MAC failover_ms=F via=reply|announce` as soon as any ARP packet
//! whose sender is the VIP comes from another MAC (a reply to us, or the new
//! owner's gratuitous ARP). The killed node's kernel may keep answering with
//! the old MAC (kill -9 leaves the address configured); only the first new
//! MAC counts. Exit 1 on timeout, 2 on bad arguments.
#![allow(unsafe_code)] // bind(2) and kill(2): see `bind_to` and `kill_group`.

use std::{
    collections::HashMap,
    io::Read as _,
    net::Ipv4Addr,
    process::exit,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
type Mac = [u8; 6];

struct Args {
    iface: String,
    src: Ipv4Addr,
    vip: Ipv4Addr,
    victims: HashMap<Mac, i32>,
    interval: Duration,
    stable: u32,
    timeout: Duration,
}

fn parse_mac(text: &str) -> Option<Mac> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

fn show(mac: &Mac) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn parse_args() -> Result<Args, String> {
    let (mut iface, mut src, mut vip) = (None, None, None);
    let mut args = Args {
        iface: String::new(),
        src: Ipv4Addr::UNSPECIFIED,
        vip: Ipv4Addr::UNSPECIFIED,
        victims: HashMap::new(),
        interval: Duration::from_millis(10),
        stable: 20,
        timeout: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--iface" => iface = Some(value),
            "--src" => src = Some(value.parse().map_err(|e| bad(&e))?),
            "--vip" => vip = Some(value.parse().map_err(|e| bad(&e))?),
            "--victim" => {
                let (mac, pgid) = value.split_once('=').ok_or(bad(&"expected MAC=PGID"))?;
                let mac = parse_mac(mac).ok_or(bad(&"bad MAC"))?;
                args.victims.insert(mac, pgid.parse().map_err(|e| bad(&e))?);
            }
            "--interval-ms" => {
                args.interval = Duration::from_millis(value.parse().map_err(|e| bad(&e))?)
            }
            "--stable" => args.stable = value.parse().map_err(|e| bad(&e))?,
            "--timeout-s" => {
                args.timeout = Duration::from_secs(value.parse().map_err(|e| bad(&e))?)
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    args.iface = iface.ok_or("--iface is required")?;
    args.src = src.ok_or("--src is required")?;
    args.vip = vip.ok_or("--vip is required")?;
    if args.victims.is_empty() {
        return Err("at least one --victim MAC=PGID is required".into());
    }
    Ok(args)
}

/// Binds an AF_PACKET socket to one interface; socket2 has no safe way to
/// build a `sockaddr_ll`.
fn bind_to(socket: &Socket, ifindex: u32) -> std::io::Result<()> {
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    use std::os::fd::AsRawFd as _;
    // SAFETY: `addr` is a fully initialised sockaddr_ll and we pass its exact size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGKILL to a whole process group (keepalived's parent and VRRP child die
/// together, so neither can send a priority-0 advert on its way out).
fn kill_group(pgid: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn arp_request(mac: Mac, src: Ipv4Addr, vip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&vip.octets());
    frame
}

/// An ARP packet claiming `vip`: (sender MAC, is a reply).
fn vip_sender(frame: &[u8], vip: Ipv4Addr) -> Option<(Mac, bool)> {
    let arp = frame.get(14..42)?;
    if frame[12..14] != ETH_P_ARP.to_be_bytes() || arp[14..18] != vip.octets() {
        return None;
    }
    Some((arp[8..14].try_into().ok()?, arp[7] == 2))
}

fn run(args: &Args) -> std::io::Result<Option<String>> {
    let ifindex = nix::net::if_::if_nametoindex(args.iface.as_str())?;
    let own = std::fs::read_to_string(format!("/sys/class/net/{}/address", args.iface))?;
    let own = parse_mac(own.trim()).ok_or(std::io::Error::other("interface has no MAC"))?;
    let protocol = Protocol::from(i32::from(ETH_P_ARP.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol))?;
    bind_to(&socket, ifindex)?;
    socket.set_read_timeout(Some(Duration::from_millis(2)))?;
    let request = arp_request(own, args.src, args.vip);

    let deadline = Instant::now() + args.timeout;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 1514];
    let (mut owner, mut in_a_row): (Option<Mac>, u32) = (None, 0);
    let mut killed: Option<(Mac, Instant)> = None;
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            socket.send(&request)?;
            next_send += args.interval;
        }
        let len = match (&socket).read(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let at = Instant::now();
        let Some((mac, reply)) = vip_sender(&buf[..len], args.vip) else {
            continue;
        };
        match killed {
            Some((old, since)) if mac != old => {
                let ms = (at - since).as_secs_f64() * 1e3;
                let via = if reply { "reply" } else { "announce" };
                return Ok(Some(format!(
                    "old={} new={} failover_ms={ms:.1} via={via}",
                    show(&old),
                    show(&mac)
                )));
            }
            Some(_) => {}
            None if reply => {
                in_a_row = if owner == Some(mac) { in_a_row + 1 } else { 1 };
                owner = Some(mac);
                if in_a_row >= args.stable {
                    let pgid = *args.victims.get(&mac).ok_or(std::io::Error::other(format!(
                        "the owner {} is not a --victim",
                        show(&mac)
                    )))?;
                    let at = Instant::now();
                    kill_group(pgid)?;
                    killed = Some((mac, at));
                }
            }
            None => {}
        }
    }
    Ok(None)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("arp_failover_probe: {e}");
        exit(2);
    });
    match run(&args) {
        Ok(Some(line)) => println!("{line}"),
        Ok(None) => {
            eprintln!("arp_failover_probe: no failover within {:?}", args.timeout);
            exit(1);
        }
        Err(e) => {
            eprintln!("arp_failover_probe: {e}");
            exit(2);
        }
    }
}
