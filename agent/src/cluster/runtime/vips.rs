//! The effects on addresses and the wire: adding and removing a group's VIPs (all or
//! none), announcing them, adverts, releases with their hand-overs, and preempting a
//! foreign master (advert first, addresses once it let go).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{announce_settings, ms, Held, Router, Runtime};
use crate::cluster::decide;
use crate::cluster::uplink::UplinkEvent;
use crate::config::VipGroup;
use crate::vip::addr::Vip;
use crate::vip::guard;
use crate::vip::probe::{Outcome, Probe};
use crate::vrrp;

impl Runtime {
    /// A held group whose addresses changed in the config: add the new ones, then
    /// remove those no longer configured.
    pub(super) async fn readdress(&mut self, group: VipGroup) {
        let Some(old) = self.held.get(&group.name).map(|h| h.group.clone()) else {
            return;
        };
        info!(group = %group.name, "addresses changed in the config: applying them");
        if old.interface_or(&self.node.interface) != group.interface_or(&self.node.interface) {
            self.release(&group.name, None).await;
            if let Some(r) = self.routers.get_mut(&group.name) {
                *r = Router::new();
            }
            return;
        }
        if !self.add_vips(&group).await {
            return;
        }
        let keep: BTreeSet<IpAddr> = group.addresses.iter().map(|a| a.addr).collect();
        let stale: Vec<IpAddr> = old
            .addresses
            .iter()
            .map(|a| a.addr)
            .filter(|a| !keep.contains(a))
            .collect();
        self.remove_vips(&old, &stale).await;
        let new = group
            .addresses
            .iter()
            .filter(|a| !old.addresses.contains(a))
            .map(|a| a.addr);
        self.guard.apply(self.guard_taken(new));
        if let Some(h) = self.held.get_mut(&group.name) {
            h.group = group.clone();
        }
        self.announce(&group.name);
    }

    /// Adds every address of `group`; on any failure removes those it added and says
    /// false, so a group is never held, nor advertised, with addresses missing.
    pub(super) async fn add_vips(&self, group: &VipGroup) -> bool {
        let Some(uplink) = self.uplinks.get(group.interface_or(&self.node.interface)) else {
            return false;
        };
        let mut added = Vec::new();
        for a in &group.addresses {
            let vip = Vip {
                addr: a.addr,
                prefix_len: a.prefix_len,
                label: None,
            };
            match self.addrs.add(&uplink.link, &vip).await {
                Ok(_) => added.push(a.addr),
                Err(e) => {
                    warn!(group = %group.name, error = %e, "adding a VIP failed: not holding the group");
                    self.remove_vips(group, &added).await;
                    return false;
                }
            }
        }
        true
    }

    pub(super) async fn remove_vips(&self, group: &VipGroup, addrs: &[IpAddr]) {
        let Some(uplink) = self.uplinks.get(group.interface_or(&self.node.interface)) else {
            return;
        };
        for &addr in addrs {
            if let Err(e) = self.addrs.remove(&uplink.link, addr).await {
                warn!(group = %group.name, error = %e, "removing a VIP");
            }
        }
    }

    /// Re-adds the addresses of held groups that someone removed by hand.
    pub(super) async fn repair_vips(&self, group: &VipGroup) {
        let Some(uplink) = self.uplinks.get(group.interface_or(&self.node.interface)) else {
            return;
        };
        let wanted: BTreeSet<IpAddr> = group.addresses.iter().map(|a| a.addr).collect();
        let Ok(present) = self.addrs.list_in(&uplink.link, &wanted).await else {
            return;
        };
        if present.len() < wanted.len() {
            warn!(group = %group.name, "a held VIP was removed from the interface: adding it back");
            self.add_vips(group).await;
        }
    }

    pub(super) async fn acquire(&mut self, name: &str) -> bool {
        let Some(group) = self.group(name).cloned() else {
            return false;
        };
        if !self.add_vips(&group).await {
            return false;
        }
        // Guarded with no end while not held: now for the window (no gap between).
        self.guard
            .apply(self.guard_taken(group.addresses.iter().map(|a| a.addr)));
        self.master_until_ms = None;
        info!(group = name, "acquired: VIPs added, announcing");
        let me = self.node.id.to_string();
        self.ownership_event("acquired", name, &me);
        self.held.insert(
            name.to_owned(),
            Held {
                group,
                announcing: tokio::spawn(async {}),
                next_advert: Instant::now(),
            },
        );
        self.announce(name);
        self.owners
            .insert(name.to_owned(), Some(self.node.id.to_string()));
        self.publish_claims().await;
        true
    }

    /// (Re)starts announcing a held group's addresses: a burst now, then as configured.
    pub(super) fn announce(&mut self, name: &str) {
        let Some(held) = self.held.get(name) else {
            return;
        };
        let Some(uplink) = self
            .uplinks
            .get(held.group.interface_or(&self.node.interface))
        else {
            return;
        };
        let announcer = Arc::clone(&uplink.announcer);
        let vips: Vec<IpAddr> = held.group.addresses.iter().map(|a| a.addr).collect();
        let settings = announce_settings(&held.group);
        let task = tokio::spawn(async move { announcer.run(&vips, &settings).await });
        if let Some(held) = self.held.get_mut(name) {
            std::mem::replace(&mut held.announcing, task).abort();
        }
    }

    /// Addresses first, so traffic stops here before anyone else is told to take it;
    /// then the hand-over to `to` (the successor claims at once: the group has no
    /// holder in between) and a priority-0 advert for the other routers.
    pub(super) async fn release(&mut self, name: &str, to: Option<String>) {
        let Some(held) = self.held.remove(name) else {
            return;
        };
        held.announcing.abort();
        let me = self.node.id.to_string();
        self.ownership_event("released", name, &me);
        let addrs: Vec<IpAddr> = held.group.addresses.iter().map(|a| a.addr).collect();
        self.remove_vips(&held.group, &addrs).await;
        let ops = self.guard_ops(addrs.iter().copied(), guard::Op::Always);
        self.guard.apply(ops);
        if self.held.is_empty() {
            let linger = ms(super::guard_window(&self.cluster));
            self.master_until_ms = Some(self.now_ms() + linger);
        }
        // A successor gone from the gossip meanwhile gets no hand-over.
        let successor = to.and_then(|to| Some((self.roster.gossip_addr(&to)?, to)));
        if let Some((addr, to)) = &successor {
            if self
                .membership
                .handover(*addr, to.clone(), name.to_owned())
                .await
                .is_err()
            {
                debug!("hand-over: the membership task has stopped");
            }
        }
        if self
            .uplinks
            .get(held.group.interface_or(&self.node.interface))
            .is_some_and(|u| u.up)
        {
            self.send_advert(&held.group, 0).await;
        }
        match successor {
            Some((_, to)) => {
                info!(group = name, successor = %to, "released: VIPs removed, handed over");
            }
            None => info!(group = name, "released: VIPs removed"),
        }
        self.publish_claims().await;
    }

    /// Takes `name` from the lower-priority foreign master the router preempts, break
    /// before make: our advert now (the master lets go on hearing it), then a probe of
    /// who answers for the addresses, whose end comes back as `UplinkEvent::LetGo`; the
    /// router claims then, or at its bound (one advert interval).
    pub(super) async fn preempt(&mut self, name: &str) {
        let Some(group) = self.group(name).cloned() else {
            return;
        };
        let Some(uplink) = self.uplinks.get(group.interface_or(&self.node.interface)) else {
            return;
        };
        let vips: Vec<IpAddr> = group.addresses.iter().map(|a| a.addr).collect();
        // Probing starts before the advert, so the master's answers are seen before it
        // lets go (`Probe::start`).
        let probe = Probe::start(&uplink.link, &vips).await;
        let priority = group.priority_of(&self.node.id).get();
        self.send_advert(&group, priority).await;
        if let Some(lower) = self.routers.get(name).and_then(Router::preempting) {
            info!(
                group = name, master = %lower.src, priority = lower.priority,
                "non-agent VRRP master {} for {}, priority {}: preempting (advertised {priority}; VIPs added once it stops answering for them)",
                lower.src, name, lower.priority
            );
        }
        let bound = group.advert_int;
        let events = self.uplink_tx.clone();
        let group_name = name.to_owned();
        let task = tokio::spawn(async move {
            let outcome = match probe {
                Ok(probe) => probe.until_let_go(bound).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Outcome::LetGo {
                    answered: true,
                    after,
                }) => {
                    info!(group = %group_name, after_ms = ms(after), "the preempted master let go of the VIPs: claiming");
                }
                Ok(Outcome::LetGo {
                    answered: false, ..
                }) => warn!(
                    group = %group_name,
                    "nobody answered probes for the VIPs: claiming (a master that holds them without answering keeps them until it hears our adverts)"
                ),
                Ok(Outcome::StillAnswered) => warn!(
                    group = %group_name, bound_ms = ms(bound),
                    "the preempted master still answers for the VIPs: claiming beside it, as VRRP preemption does"
                ),
                Err(e) => {
                    warn!(group = %group_name, error = %e, "probing the VIPs failed: claiming as VRRP preemption does")
                }
            }
            let _ = events.send(UplinkEvent::LetGo(group_name)).await;
        });
        if let Some(old) = self.probes.insert(name.to_owned(), task) {
            old.abort();
        }
    }

    pub(super) async fn send_due_adverts(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.next_advert <= now)
            .map(|(g, _)| g.clone())
            .collect();
        for name in due {
            let Some(group) = self.held.get(&name).map(|h| h.group.clone()) else {
                continue;
            };
            self.send_advert(&group, group.priority_of(&self.node.id).get())
                .await;
            self.repair_vips(&group).await;
            if let Some(h) = self.held.get_mut(&name) {
                h.next_advert = now + group.advert_int;
            }
        }
    }

    pub(super) async fn send_advert(&self, group: &VipGroup, priority: u8) {
        let Some(socket) = self
            .uplinks
            .get(group.interface_or(&self.node.interface))
            .and_then(|u| u.socket(decide::is_v6(group)))
        else {
            return;
        };
        let advert = decide::advert(group, priority);
        let sent = vrrp::encode(&advert, socket.source(), socket.group())
            .map_err(anyhow::Error::from)
            .map(|bytes| async move { socket.send(&bytes, socket.group()).await });
        let result = match sent {
            Ok(send) => send.await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => self.metrics.adverts_sent.inc(),
            Err(e) => {
                warn!(group = %group.name, error = %e, "sending a VRRP advert");
                0
            }
        };
    }
}
