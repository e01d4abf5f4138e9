//! Asking the segment whether another host still answers for a group's VIPs: ARP
//! probes for IPv4, neighbour solicitations for IPv6, one round every [`PROBE_EVERY`],
//! until nobody has answered for a quiet time ([`Quiet`]).
//!
//! Taking a group from a lower-priority master that is not an agent (keepalived) is VRRP
//! preemption: it lets go of the VIPs when it hears our advert, and says nothing on the
//! wire when it does. Its kernel answers ARP and neighbour solicitations for as long as
//! the addresses are on its interface, so the end of those answers is the evidence that
//! it let go; the agent adds the addresses only then (break before make).

use crate::ms;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{sleep_until, Instant};

use super::addr::Link;
use super::frames::{
    arp_probe, arp_reply_sender, na_target, neighbour_solicitation, solicited_node, ETH_P_ARP,
};
use super::sys::{link_layer_addr, nd_socket, registered};
use super::{Mac, VipError};

/// One probe per VIP this often. A holder's kernel answers within a millisecond on a
/// LAN; 10 ms keeps the time without holder short at 100 probes a second per VIP.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);

/// No answer for this long after the last one: the holder let go. Three rounds of
/// probes, so one lost answer (or a reader woken late, which reads what waited first)
/// is not taken for a release.
pub const QUIET_AFTER_ANSWER: Duration = Duration::from_millis(30);

/// Never answered at all (the holder ignores probes, `arp_ignore`, or its first answer
/// is slow): counted from the first probe, ten rounds. Past it the holder is as
/// invisible to probes as it will ever be, and the caller claims as VRRP preemption
/// does.
pub const QUIET_NEVER_ANSWERED: Duration = Duration::from_millis(100);

/// When the probed VIPs count as free (pure): no answer for [`QUIET_AFTER_ANSWER`]
/// since the last one, or for [`QUIET_NEVER_ANSWERED`] since the start if none came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quiet {
    started_ms: u64,
    last_answer_ms: Option<u64>,
}

impl Quiet {
    pub fn new(now_ms: u64) -> Self {
        Quiet {
            started_ms: now_ms,
            last_answer_ms: None,
        }
    }

    /// Someone answered for one of the VIPs.
    pub fn answered(&mut self, now_ms: u64) {
        self.last_answer_ms = Some(self.last_answer_ms.map_or(now_ms, |t| t.max(now_ms)));
    }

    pub fn answered_at_all(&self) -> bool {
        self.last_answer_ms.is_some()
    }

    /// The time from which the quiet is counted, and how long it must last.
    fn quiet_since(&self) -> (u64, u64) {
        match self.last_answer_ms {
            Some(t) => (t, ms(QUIET_AFTER_ANSWER)),
            None => (self.started_ms, ms(QUIET_NEVER_ANSWERED)),
        }
    }

    pub fn let_go(&self, now_ms: u64) -> bool {
        let (since, quiet) = self.quiet_since();
        now_ms >= since.saturating_add(quiet)
    }
}

/// How probing ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nobody answers any more (or never did: `answered` false).
    LetGo { answered: bool, after: Duration },
    /// Still answered when `bound` ran out.
    StillAnswered,
}

/// Probing of one group's VIPs, started by [`Probe::start`] (its first round sent) and
/// run to its end by [`Probe::until_let_go`].
pub struct Probe {
    sockets: Sockets,
    vips: Vec<IpAddr>,
    start: Instant,
    next_round: Instant,
}

impl Probe {
    /// Opens the sockets on `link` and sends the first round. A preempting caller
    /// starts the probe before it advertises: the holder's kernel answers this round
    /// at once, before the holder has read the advert and let go, so the release is
    /// seen as answers that stop ([`QUIET_AFTER_ANSWER`]) rather than waited out as
    /// silence ([`QUIET_NEVER_ANSWERED`]).
    pub async fn start(link: &Link, vips: &[IpAddr]) -> Result<Probe, VipError> {
        let sockets = Sockets::open(link, vips)?;
        let start = Instant::now();
        sockets.send_round(vips).await?;
        Ok(Probe {
            sockets,
            vips: vips.to_vec(),
            start,
            next_round: start + PROBE_EVERY,
        })
    }

    /// Probes until nobody answers for the VIPs ([`Quiet`]) or `bound`, counted from
    /// the start, runs out. Answers from the link's own MAC are not counted.
    pub async fn until_let_go(mut self, bound: Duration) -> Result<Outcome, VipError> {
        let deadline = self.start + bound;
        let mut quiet = Quiet::new(0);
        loop {
            tokio::select! {
                ready = readable(&self.sockets.arp) => {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                }
                ready = readable(&self.sockets.icmp6) => {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                }
                () = sleep_until(self.next_round) => {}
            }
            // Whatever woke us, what waits in the sockets is read before deciding: a
            // reader woken late must not take answers it has not read yet for silence.
            if self.sockets.drain(&self.vips) {
                quiet.answered(ms(self.start.elapsed()));
            }
            if Instant::now() < self.next_round {
                continue;
            }
            if quiet.let_go(ms(self.start.elapsed())) {
                return Ok(Outcome::LetGo {
                    answered: quiet.answered_at_all(),
                    after: self.start.elapsed(),
                });
            }
            if Instant::now() >= deadline {
                return Ok(Outcome::StillAnswered);
            }
            self.sockets.send_round(&self.vips).await?;
            self.next_round += PROBE_EVERY;
        }
    }
}

/// Readiness of an optional socket; never ready without one.
async fn readable(
    socket: &Option<AsyncFd<Socket>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, Socket>> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

struct Sockets {
    link: Link,
    mac: Mac,
    /// AF_PACKET bound to ARP frames on the link (IPv4 VIPs only).
    arp: Option<AsyncFd<Socket>>,
    /// Raw ICMPv6 on the link (IPv6 VIPs only): solicitations out, advertisements in.
    icmp6: Option<AsyncFd<Socket>>,
}

impl Sockets {
    fn open(link: &Link, vips: &[IpAddr]) -> Result<Self, VipError> {
        let mac = link
            .mac
            .ok_or_else(|| VipError::NoMacAddress(link.name.clone()))?;
        let op = |what: &str| format!("probe VIPs on {}: {what}", link.name);
        let arp = if vips.iter().any(IpAddr::is_ipv4) {
            let protocol = Protocol::from(i32::from(ETH_P_ARP.to_be()));
            let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol))
                .map_err(VipError::io(op("AF_PACKET socket")))?;
            socket
                .bind(&link_layer_addr(link.index, ETH_P_ARP, [0; 6]))
                .map_err(VipError::io(op("bind to the link")))?;
            Some(registered(socket, &op)?)
        } else {
            None
        };
        let icmp6 = if vips.iter().any(IpAddr::is_ipv6) {
            Some(registered(nd_socket(link, &op)?, &op)?)
        } else {
            None
        };
        Ok(Sockets {
            link: link.clone(),
            mac,
            arp,
            icmp6,
        })
    }

    async fn send_round(&self, vips: &[IpAddr]) -> Result<(), VipError> {
        for &vip in vips {
            let sent = match (vip, &self.arp, &self.icmp6) {
                (IpAddr::V4(v4), Some(socket), _) => self.send_arp(socket, v4).await,
                (IpAddr::V6(v6), _, Some(socket)) => self.send_ns(socket, v6).await,
                _ => Ok(()),
            };
            sent.map_err(VipError::io(format!("probe {vip} on {}", self.link.name)))?;
        }
        Ok(())
    }

    async fn send_arp(&self, socket: &AsyncFd<Socket>, vip: Ipv4Addr) -> std::io::Result<()> {
        let frame = arp_probe(self.mac, vip);
        let to = link_layer_addr(self.link.index, ETH_P_ARP, [0xff; 6]);
        socket
            .async_io(Interest::WRITABLE, |s| s.send_to(&frame, &to))
            .await
            .map(drop)
    }

    async fn send_ns(&self, socket: &AsyncFd<Socket>, vip: Ipv6Addr) -> std::io::Result<()> {
        let message = neighbour_solicitation(self.mac, vip);
        let to = SockAddr::from(SocketAddrV6::new(
            solicited_node(vip),
            0,
            0,
            self.link.index,
        ));
        socket
            .async_io(Interest::WRITABLE, |s| s.send_to(&message, &to))
            .await
            .map(drop)
    }

    /// Reads every frame waiting in both sockets; true when one answers for a VIP from
    /// another host (an ARP reply, a neighbour advertisement).
    fn drain(&self, vips: &[IpAddr]) -> bool {
        let mut answered = false;
        let mut buf = [0u8; 256];
        if let Some(socket) = &self.arp {
            while let Ok(n) = read(socket.get_ref(), &mut buf) {
                answered |= arp_reply_sender(&buf[..n])
                    .is_some_and(|(mac, ip)| mac != self.mac && vips.contains(&IpAddr::V4(ip)));
            }
        }
        if let Some(socket) = &self.icmp6 {
            while let Ok(n) = read(socket.get_ref(), &mut buf) {
                answered |= na_target(&buf[..n]).is_some_and(|t| vips.contains(&IpAddr::V6(t)));
            }
        }
        answered
    }
}

fn read(socket: &Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read as _;
    let mut s = socket;
    s.read(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quiet_after_the_last_answer_or_longer_when_none_came() {
        let mut q = Quiet::new(0);
        assert!(!q.let_go(99));
        assert!(q.let_go(100), "never answered: free after 100 ms");
        q.answered(5);
        q.answered(40);
        q.answered(20); // read late: the latest answer counts
        assert!(!q.let_go(69));
        assert!(q.let_go(70));
        assert!(q.answered_at_all());
    }

    proptest! {
        /// While answers keep coming at least every QUIET_AFTER_ANSWER, the VIPs never
        /// count as free; once they stop, they do after exactly that long.
        #[test]
        fn answers_closer_than_the_quiet_time_hold_it(
            gaps in proptest::collection::vec(0u64..30, 1..50),
        ) {
            let mut q = Quiet::new(0);
            let mut now = 0;
            for gap in gaps {
                for t in now..now + gap {
                    prop_assert!(!q.let_go(t));
                }
                now += gap;
                q.answered(now);
                prop_assert!(!q.let_go(now));
            }
            prop_assert!(!q.let_go(now + 29));
            prop_assert!(q.let_go(now + 30));
        }
    }
}
