//! VIP addresses on an interface, over rtnetlink: idempotent add and remove, listing
//! (for crash recovery: addresses from the VIP set that this node does not own), and a
//! watch of the interface's link state so that losing the uplink releases its VIPs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use tokio::task::JoinHandle;

use super::{Mac, VipError};

/// Linux interface names (and so IPv4 labels) are at most IFNAMSIZ - 1 bytes.
const MAX_LABEL_LEN: usize = 15;

/// A VIP address as configured on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    /// Usually /32 or /128, so that the VIP adds no connected route of its own.
    pub prefix_len: u8,
    /// An IPv4 label (`eth0:vip`), as keepalived can set; IPv6 has no labels.
    pub label: Option<String>,
}

impl Vip {
    /// A host-prefix VIP (/32 or /128) without a label.
    pub fn host(addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Vip {
            addr,
            prefix_len,
            label: None,
        }
    }

    fn validate(&self, interface: &str) -> Result<(), VipError> {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max {
            return Err(VipError::BadPrefixLength {
                addr: self.addr,
                prefix_len: self.prefix_len,
                max,
            });
        }
        if let Some(label) = &self.label {
            let bad = |reason| VipError::BadLabel {
                addr: self.addr,
                label: label.clone(),
                reason,
            };
            if self.addr.is_ipv6() {
                return Err(bad("IPv6 addresses carry no label"));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(bad("longer than 15 bytes"));
            }
            if !label.starts_with(interface) {
                return Err(bad("must start with the interface name"));
            }
        }
        Ok(())
    }
}

/// An address found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub label: Option<String>,
    /// IFA_F_SECONDARY: not the interface's primary address of its subnet.
    pub secondary: bool,
    /// IFA_F_TENTATIVE: IPv6 duplicate address detection has not finished.
    pub tentative: bool,
}

impl IfAddr {
    fn from_message(msg: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut flags = AddressFlags::empty();
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
        // point-to-point links and the only one present for IPv6.
        let addr = local.or(address)?;
        Some(IfAddr {
            addr,
            prefix_len: msg.header.prefix_len,
            label,
            secondary: flags.contains(AddressFlags::Secondary),
            tentative: flags.contains(AddressFlags::Tentative),
        })
    }
}

/// What an idempotent add or remove found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The call changed the interface.
    Done,
    /// The interface already was as asked (added: present; removed: absent).
    AlreadySo,
}

/// Administrative and operational state of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// IFF_UP: set up by the administrator.
    pub admin_up: bool,
    /// IFF_RUNNING: the driver reports carrier (operationally up).
    pub running: bool,
}

impl LinkState {
    fn from_flags(flags: LinkFlags) -> Self {
        LinkState {
            admin_up: flags.contains(LinkFlags::Up),
            running: flags.contains(LinkFlags::Running),
        }
    }

    /// Whether the link can carry the VIPs' traffic.
    pub fn is_up(self) -> bool {
        self.admin_up && self.running
    }
}

/// An interface as the VIP edges need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub state: LinkState,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut name = String::new();
        let mut mac = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Address(a) => mac = <Mac>::try_from(a.as_slice()).ok(),
                _ => {}
            }
        }
        Link {
            index: msg.header.index,
            name,
            mac,
            state: LinkState::from_flags(msg.header.flags),
        }
    }
}

/// A link change seen by [`LinkWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    State(LinkState),
    /// The interface was deleted (or moved to another namespace).
    Removed,
}

/// Aborts the rtnetlink connection task when its owner goes away.
struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An rtnetlink connection for VIP addresses. Must be created inside a tokio runtime;
/// it belongs to the network namespace of the creating thread.
pub struct AddrControl {
    handle: Handle,
    _connection: ConnectionTask,
}

fn netlink_error(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VipError {
    let op = op.into();
    move |source| VipError::Netlink { op, source }
}

/// The errno a netlink request failed with, if it failed with one.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

impl AddrControl {
    pub fn connect() -> Result<Self, VipError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(VipError::io("open rtnetlink socket"))?;
        Ok(AddrControl {
            handle,
            _connection: ConnectionTask(tokio::spawn(connection)),
        })
    }

    /// Looks an interface up by name.
    pub async fn link(&self, name: &str) -> Result<Link, VipError> {
        link_by_name(&self.handle, name).await
    }

    /// Adds `vip` to `interface`. An address already there counts as success. IPv6
    /// VIPs skip duplicate address detection so they are usable at once, as
    /// keepalived does.
    pub async fn add(&self, interface: &Link, vip: &Vip) -> Result<Change, VipError> {
        vip.validate(&interface.name)?;
        let mut request = self
            .handle
            .address()
            .add(interface.index, vip.addr, vip.prefix_len);
        let attributes = &mut request.message_mut().attributes;
        if vip.addr.is_ipv6() {
            attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        if let Some(label) = &vip.label {
            attributes.push(AddressAttribute::Label(label.clone()));
        }
        match request.execute().await {
            Ok(()) => Ok(Change::Done),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(Change::AlreadySo),
            Err(e) => Err(netlink_error(format!(
                "add {}/{} on {}",
                vip.addr, vip.prefix_len, interface.name
            ))(e)),
        }
    }

    /// Removes `addr` (whatever its prefix length) from `interface`. An address not
    /// there counts as success.
    pub async fn remove(&self, interface: &Link, addr: IpAddr) -> Result<Change, VipError> {
        let op = || format!("remove {addr} from {}", interface.name);
        let Some(message) = self
            .address_messages(interface)
            .await?
            .into_iter()
            .find(|m| IfAddr::from_message(m).is_some_and(|a| a.addr == addr))
        else {
            return Ok(Change::AlreadySo);
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(Change::Done),
            // Someone removed it between our dump and our delete.
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(Change::AlreadySo),
            Err(e) => Err(netlink_error(op())(e)),
        }
    }

    /// Sets `interface` administratively up or down.
    pub async fn set_up(&self, interface: &Link, up: bool) -> Result<(), VipError> {
        let builder = rtnetlink::LinkUnspec::new_with_index(interface.index);
        let message = if up { builder.up() } else { builder.down() }.build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(netlink_error(format!(
                "set {} {}",
                interface.name,
                if up { "up" } else { "down" }
            )))
    }

    /// Every address on the interface.
    pub async fn list(&self, interface: &Link) -> Result<Vec<IfAddr>, VipError> {
        Ok(self
            .address_messages(interface)
            .await?
            .iter()
            .filter_map(IfAddr::from_message)
            .collect())
    }

    /// The addresses on the interface that are in `set`: at start-up, the VIPs a
    /// previous run left behind.
    pub async fn list_in(
        &self,
        interface: &Link,
        set: &BTreeSet<IpAddr>,
    ) -> Result<Vec<IfAddr>, VipError> {
        let mut found = self.list(interface).await?;
        found.retain(|a| set.contains(&a.addr));
        Ok(found)
    }

    async fn address_messages(&self, interface: &Link) -> Result<Vec<AddressMessage>, VipError> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(interface.index)
            .execute();
        let mut messages = Vec::new();
        while let Some(message) = dump.next().await {
            messages.push(message.map_err(netlink_error(format!(
                "list addresses of {}",
                interface.name
            )))?);
        }
        Ok(messages)
    }
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Link, VipError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.next().await {
        Some(Ok(message)) => Ok(Link::from_message(&message)),
        Some(Err(e)) if errno(&e) == Some(libc::ENODEV) => {
            Err(VipError::NoSuchInterface(name.to_owned()))
        }
        Some(Err(e)) => Err(netlink_error(format!("get link {name}"))(e)),
        None => Err(VipError::NoSuchInterface(name.to_owned())),
    }
}

type Notifications = futures::channel::mpsc::UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Link state changes of one interface (RTNLGRP_LINK), starting with its state when
/// the watch began. Repeated notifications without a state change are skipped.
pub struct LinkWatch {
    index: u32,
    notifications: Notifications,
    last: Option<LinkEvent>,
    pending: Option<LinkEvent>,
    _connection: ConnectionTask,
}

impl LinkWatch {
    /// Subscribes first and then reads the current state, so no change falls between.
    pub async fn start(name: &str) -> Result<Self, VipError> {
        let (connection, handle, notifications) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(VipError::io("open rtnetlink link watch"))?;
        let connection = ConnectionTask(tokio::spawn(connection));
        let link = link_by_name(&handle, name).await?;
        Ok(LinkWatch {
            index: link.index,
            notifications,
            last: None,
            pending: Some(LinkEvent::State(link.state)),
            _connection: connection,
        })
    }

    /// The next change; `None` once the netlink connection is gone.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        loop {
            let event = match self.pending.take() {
                Some(event) => event,
                None => {
                    let (message, _) = self.notifications.next().await?;
                    match self.event_of(message) {
                        Some(event) => event,
                        None => continue,
                    }
                }
            };
            if self.last != Some(event) {
                self.last = Some(event);
                return Some(event);
            }
        }
    }

    fn event_of(&self, message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m))
                if m.header.index == self.index =>
            {
                Some(LinkEvent::State(LinkState::from_flags(m.header.flags)))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m))
                if m.header.index == self.index =>
            {
                Some(LinkEvent::Removed)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_fit_and_start_with_the_interface() {
        let mut vip = Vip::host("192.0.2.10".parse().unwrap());
        vip.label = Some("eth0:vip".into());
        assert!(vip.validate("eth0").is_ok());
        assert!(matches!(
            vip.validate("ens3"),
            Err(VipError::BadLabel { reason, .. }) if reason.contains("interface name")
        ));
        vip.label = Some("eth0:0123456789a".into());
        assert!(matches!(
            vip.validate("eth0"),
            Err(VipError::BadLabel { .. })
        ));
        let mut v6 = Vip::host("2001:db8::10".parse().unwrap());
        v6.label = Some("eth0:v6".into());
        assert!(matches!(
            v6.validate("eth0"),
            Err(VipError::BadLabel { .. })
        ));
    }

    #[test]
    fn prefix_length_is_bounded_by_the_family() {
        let mut vip = Vip::host("192.0.2.10".parse().unwrap());
        vip.prefix_len = 33;
        let err = vip.validate("eth0").unwrap_err().to_string();
        assert_eq!(err, "VIP 192.0.2.10/33: prefix length exceeds 32");
        let mut v6 = Vip::host("2001:db8::10".parse().unwrap());
        assert_eq!(v6.prefix_len, 128);
        v6.prefix_len = 129;
        assert!(v6.validate("eth0").is_err());
    }

    #[test]
    fn link_state_is_up_only_when_admin_up_and_running() {
        let up = LinkState::from_flags(LinkFlags::Up | LinkFlags::Running);
        assert!(up.is_up());
        assert!(!LinkState::from_flags(LinkFlags::Up).is_up());
        assert!(!LinkState::from_flags(LinkFlags::Running).is_up());
    }
}
