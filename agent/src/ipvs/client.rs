//! The socket side: one generic-netlink connection, one request per call, each
//! kernel refusal mapped to a typed error naming its object.
//!
//! There is deliberately no flush: the agent only ever touches the services it
//! owns, one by one.

use std::net::SocketAddr;

use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_proto::sys::protocols::NETLINK_GENERIC;
use netlink_proto::sys::SocketAddr as NlAddr;
use netlink_proto::ConnectionHandle;

use super::codec::{self, Invalid};
use super::error::{Errno, Error, Object};
use super::message::{Cmd, IpvsMessage, FAMILY_NAME};
use super::model::{
    Destination, Info, ObservedDestination, ObservedService, Op, Service, ServiceKey, SyncDaemon,
    SyncState, Timeouts,
};

/// An async IPVS client bound to the caller's network namespace. Needs a tokio
/// runtime (the connection task is spawned on it) and CAP_NET_ADMIN for changes.
#[derive(Clone, Debug)]
pub struct IpvsClient {
    handle: ConnectionHandle<GenlMessage<IpvsMessage>>,
    family_id: u16,
}

fn connection_error(object: Object, e: impl std::fmt::Display) -> Error {
    Error::Connection {
        object,
        message: e.to_string(),
    }
}

fn with_object(object: Object) -> impl FnOnce(Invalid) -> Error {
    move |i| Error::Invalid {
        object,
        field: i.field,
        reason: i.reason,
    }
}

/// Asks the generic-netlink controller for the IPVS family id.
async fn resolve_family() -> Result<u16, Error> {
    let (conn, handle, _) = netlink_proto::new_connection::<GenlMessage<GenlCtrl>>(NETLINK_GENERIC)
        .map_err(|e| connection_error(Object::Family, e))?;
    let task = tokio::spawn(conn);
    let mut msg = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_owned())],
    }));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.finalize();
    let mut replies = handle
        .request(msg, NlAddr::new(0, 0))
        .map_err(|e| connection_error(Object::Family, e))?;
    let mut id = None;
    let mut refused = None;
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::InnerMessage(genl) => {
                id = id.or(genl.payload.nlas.iter().find_map(|a| match a {
                    GenlCtrlAttrs::FamilyId(id) => Some(*id),
                    _ => None,
                }))
            }
            NetlinkPayload::Error(e) => refused = refused.or(e.code),
            _ => {}
        }
    }
    task.abort();
    match (id, refused) {
        (Some(id), _) => Ok(id),
        // ENOENT: no such family registered.
        (None, Some(code)) if code.get() == -2 => Err(Error::FamilyNotFound),
        (None, Some(code)) => Err(Error::Kernel {
            object: Object::Family,
            errno: Errno(-code.get()),
        }),
        (None, None) => Err(Error::FamilyNotFound),
    }
}

impl IpvsClient {
    /// Resolves the "IPVS" family and opens the connection.
    pub async fn connect() -> Result<Self, Error> {
        let family_id = resolve_family().await?;
        let (conn, handle, _) =
            netlink_proto::new_connection::<GenlMessage<IpvsMessage>>(NETLINK_GENERIC)
                .map_err(|e| connection_error(Object::Family, e))?;
        tokio::spawn(conn);
        Ok(IpvsClient { handle, family_id })
    }

    /// Sends one request and collects the reply messages; a dump returns
    /// every message, a plain request its reply (if any) after the ACK.
    async fn request(
        &self,
        msg: IpvsMessage,
        dump: bool,
        object: &Object,
    ) -> Result<Vec<IpvsMessage>, Error> {
        let mut genl = GenlMessage::from_payload(msg);
        genl.set_resolved_family_id(self.family_id);
        let mut nl = NetlinkMessage::from(genl);
        nl.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        nl.finalize();
        let mut replies = self
            .handle
            .request(nl, NlAddr::new(0, 0))
            .map_err(|e| connection_error(object.clone(), e))?;
        let mut out = Vec::new();
        while let Some(reply) = replies.next().await {
            let code = match reply.payload {
                NetlinkPayload::InnerMessage(genl) => {
                    out.push(genl.payload);
                    continue;
                }
                NetlinkPayload::Error(e) => e.code.map(|c| c.get()),
                NetlinkPayload::Done(d) => Some(d.code).filter(|c| *c != 0),
                NetlinkPayload::Overrun(_) => {
                    return Err(connection_error(object.clone(), "receive buffer overrun"))
                }
                _ => None,
            };
            if let Some(code) = code {
                return Err(Error::Kernel {
                    object: object.clone(),
                    errno: Errno(-code),
                });
            }
        }
        Ok(out)
    }

    async fn change(&self, msg: IpvsMessage, object: Object) -> Result<(), Error> {
        self.request(msg, false, &object).await.map(drop)
    }

    fn decoded<T>(object: &Object, r: Result<T, String>) -> Result<T, Error> {
        r.map_err(|message| Error::Decode {
            object: object.clone(),
            message,
        })
    }

    /// The single reply of a GET-style request.
    async fn get_one(&self, cmd: Cmd, object: Object) -> Result<IpvsMessage, Error> {
        self.request(codec::bare_request(cmd), false, &object)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Decode {
                object,
                message: "no reply".to_owned(),
            })
    }

    pub async fn info(&self) -> Result<Info, Error> {
        let reply = self.get_one(Cmd::GetInfo, Object::Info).await?;
        Self::decoded(&Object::Info, codec::decode_info(&reply))
    }

    pub async fn timeouts(&self) -> Result<Timeouts, Error> {
        let reply = self.get_one(Cmd::GetConfig, Object::Timeouts).await?;
        Self::decoded(&Object::Timeouts, codec::decode_timeouts(&reply))
    }

    /// Sets the connection timeouts; a 0 field keeps the current value.
    pub async fn set_timeouts(&self, t: &Timeouts) -> Result<(), Error> {
        self.change(codec::timeouts_request(t), Object::Timeouts)
            .await
    }

    /// Every service in the namespace, the agent's and anyone else's.
    pub async fn services(&self) -> Result<Vec<ObservedService>, Error> {
        let object = Object::Services;
        let replies = self
            .request(codec::bare_request(Cmd::GetService), true, &object)
            .await?;
        replies
            .iter()
            .map(|m| Self::decoded(&object, codec::decode_service(m)))
            .collect()
    }

    /// One service, or `None` when the kernel has no such service.
    pub async fn service(&self, key: &ServiceKey) -> Result<Option<ObservedService>, Error> {
        let object = Object::Service(*key);
        let msg = codec::service_key_request(Cmd::GetService, key);
        match self.request(msg, false, &object).await {
            Ok(replies) => match replies.first() {
                Some(m) => Self::decoded(&object, codec::decode_service(m)).map(Some),
                None => Ok(None),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn add_service(&self, svc: &Service) -> Result<(), Error> {
        let object = Object::Service(svc.key);
        let msg =
            codec::service_request(Cmd::NewService, svc).map_err(with_object(object.clone()))?;
        self.change(msg, object).await
    }

    /// Changes scheduler, flags and persistence in place (connections survive).
    pub async fn edit_service(&self, svc: &Service) -> Result<(), Error> {
        let object = Object::Service(svc.key);
        let msg =
            codec::service_request(Cmd::SetService, svc).map_err(with_object(object.clone()))?;
        self.change(msg, object).await
    }

    pub async fn delete_service(&self, key: &ServiceKey) -> Result<(), Error> {
        self.change(
            codec::service_key_request(Cmd::DelService, key),
            Object::Service(*key),
        )
        .await
    }

    pub async fn destinations(&self, key: &ServiceKey) -> Result<Vec<ObservedDestination>, Error> {
        let object = Object::Destinations(*key);
        let replies = self
            .request(codec::destination_dump_request(key), true, &object)
            .await?;
        replies
            .iter()
            .map(|m| Self::decoded(&object, codec::decode_destination(m, key.family())))
            .collect()
    }

    pub async fn add_destination(&self, key: &ServiceKey, dest: &Destination) -> Result<(), Error> {
        let object = Object::Destination(*key, dest.addr);
        let msg = codec::destination_request(Cmd::NewDest, key, dest)
            .map_err(with_object(object.clone()))?;
        self.change(msg, object).await
    }

    pub async fn edit_destination(
        &self,
        key: &ServiceKey,
        dest: &Destination,
    ) -> Result<(), Error> {
        let object = Object::Destination(*key, dest.addr);
        let msg = codec::destination_request(Cmd::SetDest, key, dest)
            .map_err(with_object(object.clone()))?;
        self.change(msg, object).await
    }

    pub async fn delete_destination(
        &self,
        key: &ServiceKey,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        self.change(
            codec::destination_delete_request(key, addr),
            Object::Destination(*key, addr),
        )
        .await
    }

    /// Every service with its destinations: the kernel state a reconciler plans against.
    pub async fn snapshot(
        &self,
    ) -> Result<Vec<(ObservedService, Vec<ObservedDestination>)>, Error> {
        let mut out = Vec::new();
        for svc in self.services().await? {
            let dests = self.destinations(&svc.service.key).await?;
            out.push((svc, dests));
        }
        Ok(out)
    }

    /// Applies one planned change.
    pub async fn apply(&self, op: &Op) -> Result<(), Error> {
        match op {
            Op::AddService(s) => self.add_service(s).await,
            Op::EditService(s) => self.edit_service(s).await,
            Op::DeleteService(k) => self.delete_service(k).await,
            Op::AddDestination(k, d) => self.add_destination(k, d).await,
            Op::EditDestination(k, d) => self.edit_destination(k, d).await,
            Op::DeleteDestination(k, a) => self.delete_destination(k, *a).await,
        }
    }

    pub async fn sync_daemons(&self) -> Result<Vec<SyncDaemon>, Error> {
        let object = Object::SyncDaemons;
        let replies = self
            .request(codec::bare_request(Cmd::GetDaemon), true, &object)
            .await?;
        replies
            .iter()
            .map(|m| Self::decoded(&object, codec::decode_daemon(m)))
            .collect()
    }

    /// Starts a sync daemon. The kernel refuses (EINVAL) while any service has
    /// a destination of the other address family, and EEXIST for a second
    /// daemon of the same state.
    pub async fn start_sync_daemon(&self, d: &SyncDaemon) -> Result<(), Error> {
        let object = Object::SyncDaemon(d.state);
        let msg = codec::daemon_start_request(d).map_err(with_object(object.clone()))?;
        self.change(msg, object).await
    }

    pub async fn stop_sync_daemon(&self, state: SyncState) -> Result<(), Error> {
        self.change(codec::daemon_stop_request(state), Object::SyncDaemon(state))
            .await
    }
}
