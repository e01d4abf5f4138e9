//! `lvs-agent realserver up|down|status`: a real server's side of the cluster's DR and
//! TUN services. `up` puts the VIP of every DR service that lists one of this host's
//! addresses on `lo` (of every TUN service on `tunl0`), as a host address (/32), and
//! sets the sysctls that keep the host from answering ARP for them
//! (`arp_ignore=1`, `arp_announce=2` on `all` and on the device; for TUN also
//! `rp_filter=0` on `all` and `tunl0`, as a packet arrives on `tunl0` for an address the
//! reverse path does not lead to), and sets the device up when it is down (`tunl0` is
//! down when the `ipip` module creates it, and a tunnel that is down receives nothing;
//! loading the module is the operator's part: it adds `tunl0` to every namespace).
//! Each change is recorded, with the value it replaced, in a state file before it is
//! made, so `down` undoes exactly what `up` did and leaves the host as it was; `up`
//! again changes only what is missing. `status` compares the host with the plan.
//!
//! [`plan`] is pure; [`State`] is the undo record (text, one change per line).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::config::{ClusterConfig, Forwarding};
use crate::vip::addr::{AddrControl, Link, Vip};

/// Default state file: under /run, gone at reboot like the addresses themselves.
pub const DEFAULT_STATE: &str = "/run/lvs-mesh/realserver.state";

/// What `up` wants on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Device → VIPs to hold there, with the services that want them.
    pub vips: BTreeMap<&'static str, BTreeMap<IpAddr, Vec<String>>>,
    /// Sysctl (path under /proc/sys) → value.
    pub sysctls: BTreeMap<String, String>,
    /// Services that list this host but whose VIPs the config does not name (fwmark),
    /// or that this command cannot set up (IPv6 over TUN): the operator's part.
    pub by_hand: Vec<String>,
}

const DR_DEVICE: &str = "lo";
const TUN_DEVICE: &str = "tunl0";

/// The plan for a host with addresses `own`.
pub fn plan(cluster: &ClusterConfig, own: &BTreeSet<IpAddr>) -> Plan {
    let mut out = Plan::default();
    for service in &cluster.services {
        let name = service
            .key()
            .map_or_else(|| "a service".to_owned(), |k| k.to_string());
        let ours = service
            .real_servers
            .iter()
            .filter(|rs| own.contains(&rs.address));
        for rs in ours {
            let device = match service.forwarding_of(rs) {
                Forwarding::Nat => continue,
                Forwarding::Dr => DR_DEVICE,
                Forwarding::Tun => TUN_DEVICE,
            };
            let vip = match service.vip {
                Some(vip) if device == TUN_DEVICE && vip.is_ipv6() => {
                    out.by_hand.push(format!(
                        "{name}: an IPv6 VIP over TUN (put {vip} on an ip6tnl device by hand)"
                    ));
                    continue;
                }
                Some(vip) => vip,
                None => {
                    out.by_hand.push(format!(
                        "{name}: its VIPs are whatever the directors mark; put them on {device} by hand"
                    ));
                    continue;
                }
            };
            let users = out.vips.entry(device).or_default().entry(vip).or_default();
            if !users.contains(&name) {
                users.push(name.clone());
            }
        }
    }
    for (device, vips) in &out.vips {
        if !vips.keys().any(IpAddr::is_ipv4) {
            continue;
        }
        for dev in ["all", device] {
            out.sysctls
                .insert(format!("net/ipv4/conf/{dev}/arp_ignore"), "1".into());
            out.sysctls
                .insert(format!("net/ipv4/conf/{dev}/arp_announce"), "2".into());
            if *device == TUN_DEVICE {
                out.sysctls
                    .insert(format!("net/ipv4/conf/{dev}/rp_filter"), "0".into());
            }
        }
    }
    out
}

/// What `up` changed, to undo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Sysctl → the value it had before the first `up`.
    pub sysctls: BTreeMap<String, String>,
    /// Addresses `up` added (those already there are not), by device.
    pub addrs: BTreeSet<(String, IpAddr)>,
    /// Devices `up` set up (they were down).
    pub links: BTreeSet<String>,
}

const STATE_HEADER: &str = "# lvs-agent realserver: what `lvs-agent realserver down` undoes\n";

impl State {
    pub fn encode(&self) -> String {
        let mut out = STATE_HEADER.to_owned();
        for (key, value) in &self.sysctls {
            let _ = writeln!(out, "sysctl {key} {value}");
        }
        for (device, addr) in &self.addrs {
            let _ = writeln!(out, "addr {device} {addr}");
        }
        for device in &self.links {
            let _ = writeln!(out, "link {device} up");
        }
        out
    }

    /// Reads the undo record; the error names the line.
    pub fn decode(text: &str) -> Result<State, String> {
        let mut state = State::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                format!(
                    "line {}: not `sysctl KEY VALUE`, `addr DEVICE ADDRESS` or `link DEVICE up`: {line:?}",
                    i + 1
                )
            };
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("sysctl"), Some(key), Some(value), None) => {
                    state.sysctls.insert(key.to_owned(), value.to_owned());
                }
                (Some("addr"), Some(device), Some(addr), None) => {
                    let addr = addr.parse().map_err(|_| bad())?;
                    state.addrs.insert((device.to_owned(), addr));
                }
                (Some("link"), Some(device), Some("up"), None) => {
                    state.links.insert(device.to_owned());
                }
                _ => return Err(bad()),
            }
        }
        Ok(state)
    }

    pub fn read(path: &Path) -> Result<Option<State>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => State::decode(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Written whole to a temporary file, then renamed over the old one.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        std::fs::write(&tmp, self.encode()).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

/// Reads a sysctl (`net/ipv4/conf/lo/arp_ignore`) under /proc/sys.
pub fn read_sysctl(key: &str) -> Result<String, String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(key))
        .map(|v| v.trim().to_owned())
        .map_err(|e| format!("sysctl {}: {e}", key.replace('/', ".")))
}

pub fn write_sysctl(key: &str, value: &str) -> Result<(), String> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
        .map_err(|e| format!("sysctl {} = {value}: {e}", key.replace('/', ".")))
}

/// `net/ipv4/conf/lo/arp_ignore` as `net.ipv4.conf.lo.arp_ignore`.
fn dotted(key: &str) -> String {
    key.replace('/', ".")
}

/// This host's addresses, on every interface.
fn own_addresses() -> Result<BTreeSet<IpAddr>, String> {
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| format!("listing this host's addresses: {e}"))?;
    Ok(addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect())
}

fn device_error(device: &str, e: impl std::fmt::Display) -> String {
    if device == TUN_DEVICE {
        format!(
            "{device}: {e} (TUN services need the ipip module, `modprobe ipip`, and {device} up)"
        )
    } else {
        format!("{device}: {e}")
    }
}

/// The addresses on `link`.
async fn addresses_on(control: &AddrControl, link: &Link) -> Result<BTreeSet<IpAddr>, String> {
    Ok(control
        .list(link)
        .await
        .map_err(|e| device_error(&link.name, e))?
        .into_iter()
        .map(|a| a.addr)
        .collect())
}

/// Sets this host up for `cluster`'s DR and TUN services; says what it changed. Each
/// change is in the undo record at `state` before it is made.
pub async fn up(cluster: &ClusterConfig, state: &Path) -> Result<String, String> {
    let plan = plan(cluster, &own_addresses()?);
    let mut undo = State::read(state)?.unwrap_or_default();
    let mut report = String::new();
    for (key, value) in &plan.sysctls {
        let before = read_sysctl(key)?;
        if before != *value {
            undo.sysctls.entry(key.clone()).or_insert(before);
            undo.write(state)?;
            write_sysctl(key, value)?;
            let _ = writeln!(report, "sysctl {} = {value}", dotted(key));
        }
    }
    let control = AddrControl::connect().map_err(|e| e.to_string())?;
    for (device, vips) in &plan.vips {
        let link = control
            .link(device)
            .await
            .map_err(|e| device_error(device, e))?;
        if !link.state.admin_up {
            undo.links.insert((*device).to_owned());
            undo.write(state)?;
            control
                .set_up(&link, true)
                .await
                .map_err(|e| device_error(device, e))?;
            let _ = writeln!(report, "{device} set up");
        }
        let present = addresses_on(&control, &link).await?;
        for (vip, users) in vips.iter().filter(|(vip, _)| !present.contains(vip)) {
            undo.addrs.insert(((*device).to_owned(), *vip));
            undo.write(state)?;
            let host = Vip::host(*vip);
            control
                .add(&link, &host)
                .await
                .map_err(|e| device_error(device, e))?;
            let _ = writeln!(
                report,
                "{vip}/{} on {device} ({})",
                host.prefix_len,
                users.join(", ")
            );
        }
    }
    if report.is_empty() {
        report = "already up: nothing changed\n".to_owned();
    }
    for line in &plan.by_hand {
        let _ = writeln!(report, "by hand: {line}");
    }
    Ok(report)
}

/// Undoes what `up` recorded at `state`: the addresses first (so the host never answers
/// ARP for a VIP), then the sysctls' earlier values; removes the record.
pub async fn down(state: &Path) -> Result<String, String> {
    let Some(undo) = State::read(state)? else {
        return Ok(format!(
            "nothing to undo: no record at {} (never up, or already down)\n",
            state.display()
        ));
    };
    let mut report = String::new();
    if !undo.addrs.is_empty() || !undo.links.is_empty() {
        let control = AddrControl::connect().map_err(|e| e.to_string())?;
        for (device, addr) in &undo.addrs {
            // A device gone since (tunl0 unloaded) took its addresses with it.
            if let Ok(link) = control.link(device).await {
                control
                    .remove(&link, *addr)
                    .await
                    .map_err(|e| device_error(device, e))?;
                let _ = writeln!(report, "{addr} removed from {device}");
            }
        }
        for device in &undo.links {
            if let Ok(link) = control.link(device).await {
                control
                    .set_up(&link, false)
                    .await
                    .map_err(|e| device_error(device, e))?;
                let _ = writeln!(report, "{device} set down (as before)");
            }
        }
    }
    for (key, value) in &undo.sysctls {
        write_sysctl(key, value)?;
        let _ = writeln!(report, "sysctl {} = {value} (as before)", dotted(key));
    }
    std::fs::remove_file(state).map_err(|e| format!("{}: {e}", state.display()))?;
    Ok(report)
}

/// Compares the host with the plan: one line per VIP and sysctl, and the undo record;
/// `true` when everything is as planned.
pub async fn status(cluster: &ClusterConfig, state: &Path) -> Result<(String, bool), String> {
    let plan = plan(cluster, &own_addresses()?);
    let mut report = String::new();
    let mut up = true;
    let control = AddrControl::connect().map_err(|e| e.to_string())?;
    for (device, vips) in &plan.vips {
        // A device that is not there holds nothing.
        let (present, link_up) = match control.link(device).await {
            Ok(link) => (addresses_on(&control, &link).await?, link.state.admin_up),
            Err(_) => (BTreeSet::new(), false),
        };
        up &= link_up;
        let said = if link_up { "up" } else { "DOWN" };
        let _ = writeln!(report, "device {device}: {said}");
        for (vip, users) in vips {
            let here = present.contains(vip);
            up &= here;
            let state = if here { "present" } else { "MISSING" };
            let _ = writeln!(
                report,
                "vip {vip} on {device}: {state} ({})",
                users.join(", ")
            );
        }
    }
    for (key, value) in &plan.sysctls {
        let now = read_sysctl(key)?;
        up &= now == *value;
        let _ = writeln!(report, "sysctl {} = {now} (wanted {value})", dotted(key));
    }
    for line in &plan.by_hand {
        let _ = writeln!(report, "by hand: {line}");
    }
    match State::read(state)? {
        Some(undo) => {
            let _ = writeln!(
                report,
                "undo record {}: {} addresses, {} sysctls, {} devices set up",
                state.display(),
                undo.addrs.len(),
                undo.sysctls.len(),
                undo.links.len()
            );
        }
        None => {
            let _ = writeln!(report, "no undo record at {}", state.display());
        }
    }
    if plan.vips.is_empty() {
        let _ = writeln!(report, "no DR or TUN service lists this host's addresses");
    }
    Ok((report, up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const CLUSTER: &str = r#"
        [cluster]
        name = "t"
        [[service]]
        vip = "10.0.0.10"
        port = 80
        forwarding = "dr"
        real_server = [{ address = "192.0.2.100", port = 80 }, { address = "192.0.2.101", port = 80 }]
        [[service]]
        vip = "10.0.0.10"
        port = 443
        forwarding = "dr"
        real_server = [{ address = "192.0.2.100", port = 443 }]
        [[service]]
        vip = "10.0.0.11"
        port = 80
        forwarding = "nat"
        real_server = [{ address = "192.0.2.100", port = 80 }]
        [[service]]
        vip = "10.0.0.12"
        port = 80
        forwarding = "tun"
        real_server = [{ address = "192.0.2.100", port = 80 }]
        [[service]]
        vip = "10.0.0.13"
        port = 80
        forwarding = "dr"
        real_server = [{ address = "192.0.2.101", port = 80 }]
        [[service]]
        fwmark = 7
        forwarding = "dr"
        real_server = [{ address = "192.0.2.100" }]
    "#;

    #[test]
    fn the_plan_takes_this_hosts_dr_and_tun_vips_and_says_what_is_left_by_hand() {
        let cluster = parse(CLUSTER).unwrap().cluster.unwrap();
        let own: BTreeSet<IpAddr> = ["192.0.2.100".parse().unwrap()].into();
        let p = plan(&cluster, &own);
        let lo: Vec<_> = p.vips["lo"].keys().map(ToString::to_string).collect();
        assert_eq!(lo, ["10.0.0.10"], "DR only, this host's only, once");
        assert_eq!(
            p.vips["lo"].values().next().unwrap().len(),
            2,
            "two services use it"
        );
        let tun: Vec<_> = p.vips["tunl0"].keys().map(ToString::to_string).collect();
        assert_eq!(tun, ["10.0.0.12"]);
        assert_eq!(p.sysctls["net/ipv4/conf/all/arp_ignore"], "1");
        assert_eq!(p.sysctls["net/ipv4/conf/lo/arp_announce"], "2");
        assert_eq!(p.sysctls["net/ipv4/conf/tunl0/rp_filter"], "0");
        assert_eq!(p.by_hand.len(), 1, "{:?}", p.by_hand);
        assert!(p.by_hand[0].contains("fwmark 7"), "{:?}", p.by_hand);
        // Another host: nothing of this host's.
        let other: BTreeSet<IpAddr> = ["192.0.2.200".parse().unwrap()].into();
        assert_eq!(plan(&cluster, &other), Plan::default());
    }

    #[test]
    fn the_undo_record_reads_back_and_names_a_bad_line() {
        let state = State {
            sysctls: [("net/ipv4/conf/all/arp_ignore".to_owned(), "0".to_owned())].into(),
            addrs: [("lo".to_owned(), "10.0.0.10".parse().unwrap())].into(),
            links: ["tunl0".to_owned()].into(),
        };
        assert_eq!(State::decode(&state.encode()), Ok(state));
        let err = State::decode("# x\naddr lo nope\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = State::decode("link tunl0 down\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
    }
}
