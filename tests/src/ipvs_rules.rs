//! The agent's IPVS model written as `ipvsadm -R` rule lines, and kernel dumps
//! reduced to that model: what the lab compares the agent with ipvsadm by.
use lvs_agent::ipvs::{
    Destination, Family, Forwarding, ObservedDestination, ObservedService, Service, ServiceKey,
    TunnelKind,
};

/// A service with its destinations, sorted by destination address (no counters).
pub type ServiceState = (Service, Vec<Destination>);

/// `-t 10.0.0.10:80`, `-u [2001:db8::1]:53`, `-f 7 -6`: ipvsadm's service selector.
pub fn selector(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr } => {
            let flag = match protocol.name() {
                "tcp" => "-t",
                "udp" => "-u",
                _ => "--sctp-service",
            };
            format!("{flag} {addr}")
        }
        ServiceKey::Fwmark { family, mark } => match family {
            Family::V4 => format!("-f {mark}"),
            Family::V6 => format!("-f {mark} -6"),
        },
    }
}

/// The `-A` line creating `svc`.
pub fn add_service(svc: &Service) -> String {
    let mut line = format!("-A {} -s {}", selector(&svc.key), svc.scheduler);
    let flags = sched_flag_names(svc);
    if !flags.is_empty() {
        line += &format!(" -b {}", flags.join(","));
    }
    if let Some(p) = svc.persistence {
        line += &format!(" -p {}", p.timeout_s);
        if p.prefix_len < svc.key.family().max_prefix() {
            line += &format!(" -M {}", netmask(svc.key.family(), p.prefix_len));
        }
    }
    if svc.one_packet {
        line += " -o";
    }
    line
}

/// The `-a` (or `-e` with `edit`) line for destination `d` of service `key`.
pub fn destination(key: &ServiceKey, d: &Destination, edit: bool) -> String {
    let mut line = format!(
        "{} {} -r {}",
        if edit { "-e" } else { "-a" },
        selector(key),
        d.addr
    );
    match d.forwarding {
        Forwarding::Route => line += " -g",
        Forwarding::Masq => line += " -m",
        Forwarding::Local => {}
        Forwarding::Tunnel { kind, port, flags } => {
            line += " -i";
            match kind {
                TunnelKind::Ipip => {}
                TunnelKind::Gue => line += &format!(" --tun-type gue --tun-port {port}"),
                TunnelKind::Gre => line += " --tun-type gre",
            }
            if flags.remcsum {
                line += " --tun-remcsum";
            } else if flags.csum {
                line += " --tun-csum";
            }
        }
    }
    line += &format!(" -w {}", d.weight);
    if d.upper_threshold != 0 {
        line += &format!(" -x {}", d.upper_threshold);
    }
    if d.lower_threshold != 0 {
        line += &format!(" -y {}", d.lower_threshold);
    }
    line
}

/// The `-D` line deleting service `key`.
pub fn delete_service(key: &ServiceKey) -> String {
    format!("-D {}", selector(key))
}

/// Rule lines creating `state` (services, then each one's destinations).
pub fn restore_script(state: &[ServiceState]) -> String {
    let mut out = String::new();
    for (svc, dests) in state {
        out += &add_service(svc);
        out.push('\n');
        for d in dests {
            out += &destination(&svc.key, d, false);
            out.push('\n');
        }
    }
    out
}

/// A kernel dump without counters, services and destinations sorted.
pub fn from_dump(dump: Vec<(ObservedService, Vec<ObservedDestination>)>) -> Vec<ServiceState> {
    let mut state: Vec<ServiceState> = dump
        .into_iter()
        .map(|(s, ds)| {
            let mut ds: Vec<Destination> = ds.into_iter().map(|d| d.destination).collect();
            ds.sort();
            (s.service, ds)
        })
        .collect();
    state.sort();
    state
}

/// Lines of `text` sorted, blank lines dropped: `ipvsadm -S` output compared as a set.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn sched_flag_names(svc: &Service) -> Vec<String> {
    let f = svc.sched_flags;
    let named = matches!(svc.scheduler.name(), "sh" | "mh");
    let prefix = svc.scheduler.name();
    [
        (f.flag1, "fallback", 1),
        (f.flag2, "port", 2),
        (f.flag3, "", 3),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, name, n)| {
        if named && !name.is_empty() {
            format!("{prefix}-{name}")
        } else {
            format!("flag-{n}")
        }
    })
    .collect()
}

fn netmask(family: Family, prefix_len: u8) -> String {
    match family {
        Family::V4 => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            std::net::Ipv4Addr::from(mask).to_string()
        }
        Family::V6 => prefix_len.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_agent::ipvs::{Persistence, Protocol, SchedFlags, Scheduler, TunnelFlags};

    fn tcp(addr: &str) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn services_and_destinations_as_rules() {
        let mut svc = Service::new(tcp("10.0.0.1:80"), Scheduler::Sh);
        svc.sched_flags = SchedFlags::PORT.union(SchedFlags::FALLBACK);
        svc.persistence = Some(Persistence {
            timeout_s: 300,
            prefix_len: 24,
        });
        assert_eq!(
            add_service(&svc),
            "-A -t 10.0.0.1:80 -s sh -b sh-fallback,sh-port -p 300 -M 255.255.255.0"
        );
        let v6 = ServiceKey::Fwmark {
            family: Family::V6,
            mark: 7,
        };
        let mut svc6 = Service::new(v6, Scheduler::Wlc);
        svc6.persistence = Some(Persistence {
            timeout_s: 60,
            prefix_len: 128,
        });
        assert_eq!(add_service(&svc6), "-A -f 7 -6 -s wlc -p 60");
        let d = Destination {
            addr: "[2001:db8::1]:0".parse().unwrap(),
            forwarding: Forwarding::Tunnel {
                kind: TunnelKind::Gue,
                port: 6080,
                flags: TunnelFlags {
                    csum: true,
                    remcsum: false,
                },
            },
            weight: 3,
            upper_threshold: 10,
            lower_threshold: 5,
        };
        assert_eq!(
            destination(&v6, &d, false),
            "-a -f 7 -6 -r [2001:db8::1]:0 -i --tun-type gue --tun-port 6080 --tun-csum -w 3 -x 10 -y 5"
        );
        let dr = Destination {
            forwarding: Forwarding::Route,
            addr: "10.0.0.2:80".parse().unwrap(),
            upper_threshold: 0,
            lower_threshold: 0,
            ..d
        };
        assert_eq!(
            destination(&tcp("10.0.0.1:80"), &dr, true),
            "-e -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 3"
        );
        assert_eq!(delete_service(&tcp("10.0.0.1:80")), "-D -t 10.0.0.1:80");
    }

    #[test]
    fn sorted_lines_ignore_order_and_blanks() {
        assert_eq!(sorted_lines("b\n\n a \n"), ["a", "b"]);
    }
}
