//! Telling the segment that this node now owns a VIP: gratuitous ARP for IPv4 and
//! unsolicited neighbour advertisements for IPv6, repeated as keepalived's garp_*
//! settings say. The schedule is computed by a pure function; the sockets only send.

use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::warn;

use super::addr::Link;
use super::frames::{gratuitous_arp, unsolicited_na, ETH_P_ARP};
use super::sys::{link_layer_addr, nd_socket, registered};
use super::{Mac, VipError};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// How announcements repeat (keepalived's garp_master_* and garp/gna_interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSettings {
    /// Packets per VIP in each burst (garp_master_repeat).
    pub repeat: u32,
    /// Delay before a second burst after taking ownership (garp_master_delay); zero
    /// sends only the first.
    pub delay: Duration,
    /// Minimum gap between two gratuitous ARPs on the interface (garp_interval).
    pub garp_interval: Duration,
    /// Minimum gap between two neighbour advertisements (gna_interval).
    pub gna_interval: Duration,
    /// Period of further bursts while owning the VIPs (garp_master_refresh).
    pub refresh: Option<Duration>,
    /// Packets per VIP in each refresh burst (garp_master_refresh_repeat).
    pub refresh_repeat: u32,
}

impl Default for AnnounceSettings {
    /// keepalived's defaults.
    fn default() -> Self {
        AnnounceSettings {
            repeat: 5,
            delay: Duration::from_secs(5),
            garp_interval: Duration::ZERO,
            gna_interval: Duration::ZERO,
            refresh: None,
            refresh_repeat: 1,
        }
    }
}

/// When, from the start of a burst, each packet goes out: `repeat` rounds over `vips`,
/// the IPv4 and IPv6 packets each spaced by their own interval, in time order.
pub fn burst_schedule(
    vips: &[IpAddr],
    repeat: u32,
    garp_interval: Duration,
    gna_interval: Duration,
) -> Vec<(Duration, IpAddr)> {
    let (mut sent_v4, mut sent_v6) = (0u32, 0u32);
    let mut schedule = Vec::with_capacity(vips.len() * repeat as usize);
    for _ in 0..repeat {
        for &vip in vips {
            let (sent, interval) = match vip {
                IpAddr::V4(_) => (&mut sent_v4, garp_interval),
                IpAddr::V6(_) => (&mut sent_v6, gna_interval),
            };
            schedule.push((interval * *sent, vip));
            *sent += 1;
        }
    }
    // Stable: packets due at the same time keep their round order.
    schedule.sort_by_key(|&(at, _)| at);
    schedule
}

/// Sends announcements for VIPs on one interface.
pub struct Announcer {
    link: Link,
    mac: Mac,
    /// AF_PACKET, protocol 0: sends Ethernet frames, receives nothing.
    arp: AsyncFd<Socket>,
    icmp6: AsyncFd<Socket>,
}

impl Announcer {
    /// Opens the sockets for `link` (from [`super::addr::AddrControl::link`]).
    pub fn open(link: &Link) -> Result<Self, VipError> {
        let mac = link
            .mac
            .ok_or_else(|| VipError::NoMacAddress(link.name.clone()))?;
        let op = |what: &str| format!("open announcer on {}: {what}", link.name);

        let arp = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
            .map_err(VipError::io(op("AF_PACKET socket")))?;

        let icmp6 = nd_socket(link, &op)?;
        icmp6
            .set_multicast_loop_v6(false)
            .map_err(VipError::io(op("IPV6_MULTICAST_LOOP")))?;
        // It only sends: keep what it is handed of others' ICMPv6 traffic small.
        icmp6
            .set_recv_buffer_size(0)
            .map_err(VipError::io(op("SO_RCVBUF")))?;

        Ok(Announcer {
            link: link.clone(),
            mac,
            arp: registered(arp, &op)?,
            icmp6: registered(icmp6, &op)?,
        })
    }

    /// One gratuitous ARP or unsolicited neighbour advertisement for `vip`.
    pub async fn send(&self, vip: IpAddr) -> Result<(), VipError> {
        let result = match vip {
            IpAddr::V4(v4) => self.send_garp(v4).await,
            IpAddr::V6(v6) => self.send_na(v6).await,
        };
        result.map_err(VipError::io(format!(
            "announce {vip} on {}",
            self.link.name
        )))
    }

    async fn send_garp(&self, vip: Ipv4Addr) -> std::io::Result<()> {
        let frame = gratuitous_arp(self.mac, vip);
        let to = link_layer_addr(self.link.index, ETH_P_ARP, [0xff; 6]);
        self.arp
            .async_io(Interest::WRITABLE, |socket| socket.send_to(&frame, &to))
            .await
            .map(drop)
    }

    /// Sent from the VIP itself, as the kernel sends its own unsolicited NAs.
    async fn send_na(&self, vip: Ipv6Addr) -> std::io::Result<()> {
        let message = unsolicited_na(self.mac, vip);
        let to = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, self.link.index));
        let source = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: vip.octets(),
            },
            ipi6_ifindex: self.link.index,
        };
        self.icmp6
            .async_io(Interest::WRITABLE, |socket| {
                sendmsg(
                    socket.as_raw_fd(),
                    &[IoSlice::new(&message)],
                    &[ControlMessage::Ipv6PacketInfo(&source)],
                    MsgFlags::empty(),
                    Some(&to),
                )
                .map_err(std::io::Error::from)
            })
            .await
            .map(drop)
    }

    /// One burst: `repeat` announcements of each VIP, spaced per `settings`.
    pub async fn burst(
        &self,
        vips: &[IpAddr],
        repeat: u32,
        settings: &AnnounceSettings,
    ) -> Result<(), VipError> {
        let start = Instant::now();
        let schedule = burst_schedule(vips, repeat, settings.garp_interval, settings.gna_interval);
        for (at, vip) in schedule {
            sleep_until(start + at).await;
            self.send(vip).await?;
        }
        Ok(())
    }

    /// Everything a new owner sends: a burst now, another after `delay`, then refresh
    /// bursts for as long as the future runs. Drop it (or abort its task) on losing
    /// the VIPs. Returns when there is nothing left to send. A failed send (link
    /// flapping, buffer full) is logged and the schedule goes on: the next burst may
    /// well get through.
    pub async fn run(&self, vips: &[IpAddr], settings: &AnnounceSettings) {
        let burst = |repeat| async move {
            if let Err(e) = self.burst(vips, repeat, settings).await {
                warn!(error = %e, "announcing VIPs");
            }
        };
        burst(settings.repeat).await;
        if !settings.delay.is_zero() {
            sleep(settings.delay).await;
            burst(settings.repeat).await;
        }
        let Some(period) = settings.refresh else {
            return;
        };
        loop {
            sleep(period).await;
            burst(settings.refresh_repeat).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn interleaves_families_with_their_own_intervals() {
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let schedule = burst_schedule(&[v4, v6], 2, ms(100), ms(30));
        assert_eq!(
            schedule,
            vec![(ms(0), v4), (ms(0), v6), (ms(30), v6), (ms(100), v4)]
        );
    }

    #[test]
    fn zero_intervals_send_rounds_back_to_back() {
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        let b: IpAddr = "192.0.2.11".parse().unwrap();
        let schedule = burst_schedule(&[a, b], 2, Duration::ZERO, Duration::ZERO);
        let order: Vec<IpAddr> = schedule.iter().map(|&(_, vip)| vip).collect();
        assert_eq!(order, vec![a, b, a, b]);
    }

    fn vip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::from(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::from(Ipv6Addr::from(n))),
        ]
    }

    proptest! {
        #[test]
        fn every_vip_repeat_times_and_same_family_gaps_are_the_interval(
            vips in proptest::collection::vec(vip(), 0..6),
            repeat in 0u32..5,
            garp in 0u64..500,
            gna in 0u64..500,
        ) {
            let schedule = burst_schedule(&vips, repeat, ms(garp), ms(gna));
            prop_assert_eq!(schedule.len(), vips.len() * repeat as usize);
            prop_assert!(schedule.windows(2).all(|w| w[0].0 <= w[1].0));
            for vip in &vips {
                let copies = vips.iter().filter(|v| *v == vip).count() * repeat as usize;
                prop_assert_eq!(schedule.iter().filter(|(_, v)| v == vip).count(), copies);
            }
            for (is_v4, interval) in [(true, ms(garp)), (false, ms(gna))] {
                let times: Vec<Duration> = schedule
                    .iter()
                    .filter(|(_, v)| v.is_ipv4() == is_v4)
                    .map(|&(at, _)| at)
                    .collect();
                for (k, at) in times.iter().enumerate() {
                    prop_assert_eq!(*at, interval * k as u32);
                }
            }
        }
    }
}
