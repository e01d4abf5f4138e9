//! One interface carrying VIP groups: its link, announcer, VRRP sockets, and the tasks
//! that forward its link events and received VRRP packets to the runtime.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::vip::addr::{AddrControl, Link, LinkEvent, LinkWatch};
use crate::vip::announce::Announcer;
use crate::vip::vrrp_socket::{Received, VrrpSocket};

/// Something that happened on an uplink, tagged with the interface name (or, for a
/// probe, the group).
pub enum UplinkEvent {
    Link(String, LinkEvent),
    Vrrp(String, Received),
    /// The probe started by `Effect::Preempt` for this group ended: nobody answers for
    /// its addresses any more, or the probe gave up.
    LetGo(String),
}

pub struct Uplink {
    pub link: Link,
    pub up: bool,
    pub announcer: Arc<Announcer>,
    pub v4: Option<Arc<VrrpSocket>>,
    pub v6: Option<Arc<VrrpSocket>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Uplink {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Uplink {
    /// Opens `name`. `v4_source` is the node address when it is on this interface;
    /// otherwise the interface's first IPv4 address is used. IPv6 VRRP goes out from the
    /// interface's link-local address; a family without a source gets no socket.
    pub async fn open(
        addrs: &AddrControl,
        name: &str,
        v4_source: Option<IpAddr>,
        families: &BTreeSet<bool>,
        events: mpsc::Sender<UplinkEvent>,
    ) -> anyhow::Result<Self> {
        let link = addrs.link(name).await?;
        promote_secondaries(name);
        let announcer = Arc::new(Announcer::open(&link)?);
        let found = addrs.list(&link).await?;
        let pick = |v6: bool| {
            found.iter().map(|a| a.addr).find(|a| match a {
                IpAddr::V4(_) => !v6,
                IpAddr::V6(a) => v6 && a.is_unicast_link_local(),
            })
        };
        let mut tasks = Vec::new();
        let mut open = |v6: bool, source: Option<IpAddr>| -> anyhow::Result<_> {
            if !families.contains(&v6) {
                return Ok(None);
            }
            let Some(source) = source else {
                let which = if v6 { "IPv6 link-local" } else { "IPv4" };
                warn!(
                    interface = name,
                    "no {which} address: VRRP of that family is off"
                );
                return Ok(None);
            };
            let socket = Arc::new(VrrpSocket::open(&link, source)?);
            tasks.push(tokio::spawn(forward_vrrp(
                name.to_owned(),
                Arc::clone(&socket),
                events.clone(),
            )));
            Ok(Some(socket))
        };
        let v4 = open(
            false,
            v4_source.filter(IpAddr::is_ipv4).or_else(|| pick(false)),
        )?;
        let v6 = open(true, pick(true))?;
        let mut watch = LinkWatch::start(name)
            .await
            .with_context(|| format!("watch link {name}"))?;
        let watch_name = name.to_owned();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                if events
                    .send(UplinkEvent::Link(watch_name.clone(), event))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
        Ok(Uplink {
            up: link.state.is_up(),
            link,
            announcer,
            v4,
            v6,
            tasks,
        })
    }

    pub fn socket(&self, v6: bool) -> Option<&Arc<VrrpSocket>> {
        if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }
}

async fn forward_vrrp(name: String, socket: Arc<VrrpSocket>, events: mpsc::Sender<UplinkEvent>) {
    loop {
        match socket.recv().await {
            Ok(packet) => {
                if events
                    .send(UplinkEvent::Vrrp(name.clone(), packet))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // A malformed IP header: one packet lost, the socket is fine.
            Err(e) => warn!(interface = %name, error = %e, "VRRP receive"),
        }
    }
}

/// Without it, removing an interface's primary address of a subnet also removes every
/// secondary one: releasing one VIP group would silently drop the others' VIPs in the
/// same prefix (keepalived's users set this sysctl for the same reason).
fn promote_secondaries(interface: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/promote_secondaries");
    if let Err(e) = std::fs::write(&path, "1") {
        warn!(%path, error = %e, "cannot enable promote_secondaries: releasing a VIP may remove others of its subnet");
    }
}
