//! The client side: typed requests over one generic-netlink socket, each kernel
//! refusal mapped to a typed error naming its object. Changes go in batches
//! ([`IpvsClient::apply_all`], see [`super::socket`] for why). A dump holds its
//! socket until done, so destination dumps of many services run on a few
//! sockets side by side ([`IpvsClient::destinations_of`]).
//!
//! There is deliberately no flush: the agent only ever touches the services it
//! owns, one by one.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use tokio::sync::Mutex;

use super::codec::{self, Invalid};
use super::error::{Errno, Error, Object};
use super::message::{Cmd, IpvsMessage, FAMILY_NAME};
use super::model::{
    Destination, Info, ObservedDestination, ObservedService, Op, Service, ServiceKey, SyncDaemon,
    SyncState, Timeouts,
};
use super::socket::{NlSocket, Reply};

/// Changes per datagram. Bounded so that even if the kernel refused every one,
/// the refusals (a few hundred bytes each in the receive buffer's accounting)
/// fit in a default-sized receive buffer (208 KiB) and none is lost; larger
/// batches gain little once the send cost is shared by 128.
const BATCH: usize = 128;

/// Sockets a client holds: the first serves every request, all of them serve
/// [`IpvsClient::destinations_of`].
pub const MAX_DUMP_SOCKETS: usize = 4;

type Socket = Mutex<NlSocket<GenlMessage<IpvsMessage>>>;

/// An async IPVS client bound to the caller's network namespace. Needs a tokio
/// runtime and CAP_NET_ADMIN for changes. Clones share the socket; requests
/// from several tasks are served one exchange at a time.
#[derive(Clone)]
pub struct IpvsClient {
    sockets: Arc<[Socket]>,
    family_id: u16,
}

impl fmt::Debug for IpvsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpvsClient")
            .field("family_id", &self.family_id)
            .finish_non_exhaustive()
    }
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

/// A refusal as a typed error.
fn refused(object: &Object, errno: Option<i32>) -> Result<(), Error> {
    match errno {
        None => Ok(()),
        Some(e) => Err(Error::Kernel {
            object: object.clone(),
            errno: Errno(e),
        }),
    }
}

/// Asks the generic-netlink controller for the IPVS family id.
async fn resolve_family() -> Result<u16, Error> {
    let object = Object::Family;
    let mut socket = NlSocket::open().map_err(|e| connection_error(object.clone(), e))?;
    let request = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_owned())],
    });
    let reply = socket
        .batch(vec![request])
        .await
        .map_err(|e| connection_error(object.clone(), e))?
        .pop()
        .ok_or(Error::FamilyNotFound)?;
    let id = reply.messages.iter().find_map(|genl| {
        genl.payload.nlas.iter().find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
    });
    match (id, reply.errno) {
        (Some(id), _) => Ok(id),
        // ENOENT: no such family registered.
        (None, Some(2) | None) => Err(Error::FamilyNotFound),
        (None, errno) => refused(&object, errno).and(Err(Error::FamilyNotFound)),
    }
}

/// The request for one planned change and the object it is about.
fn op_request(op: &Op) -> (Object, Result<IpvsMessage, Invalid>) {
    match op {
        Op::AddService(s) => (
            Object::Service(s.key),
            codec::service_request(Cmd::NewService, s),
        ),
        Op::EditService(s) => (
            Object::Service(s.key),
            codec::service_request(Cmd::SetService, s),
        ),
        Op::DeleteService(k) => (
            Object::Service(*k),
            Ok(codec::service_key_request(Cmd::DelService, k)),
        ),
        Op::AddDestination(k, d) => (
            Object::Destination(*k, d.addr),
            codec::destination_request(Cmd::NewDest, k, d),
        ),
        Op::EditDestination(k, d) => (
            Object::Destination(*k, d.addr),
            codec::destination_request(Cmd::SetDest, k, d),
        ),
        Op::DeleteDestination(k, a) => (
            Object::Destination(*k, *a),
            Ok(codec::destination_delete_request(k, *a)),
        ),
    }
}

impl IpvsClient {
    /// Resolves the "IPVS" family and opens the socket.
    pub async fn connect() -> Result<Self, Error> {
        let family_id = resolve_family().await?;
        let sockets = (0..MAX_DUMP_SOCKETS)
            .map(|_| NlSocket::open().map(Mutex::new))
            .collect::<Result<Arc<[Socket]>, _>>()
            .map_err(|e| connection_error(Object::Family, e))?;
        Ok(IpvsClient { sockets, family_id })
    }

    fn genl(&self, msg: IpvsMessage) -> GenlMessage<IpvsMessage> {
        let mut genl = GenlMessage::from_payload(msg);
        genl.set_resolved_family_id(self.family_id);
        genl
    }

    /// Sends one request and collects the reply messages; a dump returns
    /// every message, a plain request its reply (if any) after the ACK.
    async fn request(
        &self,
        msg: IpvsMessage,
        dump: bool,
        object: &Object,
    ) -> Result<Vec<IpvsMessage>, Error> {
        let genl = self.genl(msg);
        let mut socket = self.sockets[0].lock().await;
        let reply: Reply<_> = if dump {
            socket.dump(genl).await
        } else {
            socket
                .batch(vec![genl])
                .await
                .and_then(|mut r| r.pop().ok_or_else(|| std::io::Error::other("no reply")))
        }
        .map_err(|e| connection_error(object.clone(), e))?;
        refused(object, reply.errno)?;
        Ok(reply.messages.into_iter().map(|g| g.payload).collect())
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
        self.apply(&Op::AddService(svc.clone())).await
    }

    /// Changes scheduler, flags and persistence in place (connections survive).
    pub async fn edit_service(&self, svc: &Service) -> Result<(), Error> {
        self.apply(&Op::EditService(svc.clone())).await
    }

    pub async fn delete_service(&self, key: &ServiceKey) -> Result<(), Error> {
        self.apply(&Op::DeleteService(*key)).await
    }

    pub async fn destinations(&self, key: &ServiceKey) -> Result<Vec<ObservedDestination>, Error> {
        let object = Object::Destinations(*key);
        let replies = self
            .request(codec::destination_dump_request(key), true, &object)
            .await?;
        Self::decoded_destinations(key, &replies)
    }

    fn decoded_destinations(
        key: &ServiceKey,
        replies: &[IpvsMessage],
    ) -> Result<Vec<ObservedDestination>, Error> {
        let object = Object::Destinations(*key);
        replies
            .iter()
            .map(|m| Self::decoded(&object, codec::decode_destination(m, key.family())))
            .collect()
    }

    /// The destinations of each of `keys`, in order, dumped on up to `sockets`
    /// sockets (at most [`MAX_DUMP_SOCKETS`]) side by side, each in a task of
    /// its own: the kernel serves one dump per socket at a time, and each
    /// costs a few system calls however small it is.
    pub async fn destinations_of(
        &self,
        keys: Vec<ServiceKey>,
        sockets: usize,
    ) -> Result<Vec<Vec<ObservedDestination>>, Error> {
        let workers = sockets.clamp(1, MAX_DUMP_SOCKETS).min(keys.len().max(1));
        let keys: Arc<[ServiceKey]> = keys.into();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..workers {
            let (client, keys) = (self.clone(), keys.clone());
            tasks.spawn(async move {
                let mut socket = client.sockets[worker].lock().await;
                let mut out = Vec::with_capacity(keys.len() / workers + 1);
                for (i, key) in keys.iter().enumerate().skip(worker).step_by(workers) {
                    let object = Object::Destinations(*key);
                    let genl = client.genl(codec::destination_dump_request(key));
                    let reply = socket
                        .dump(genl)
                        .await
                        .map_err(|e| connection_error(object.clone(), e))?;
                    refused(&object, reply.errno)?;
                    let replies: Vec<IpvsMessage> =
                        reply.messages.into_iter().map(|g| g.payload).collect();
                    out.push((i, Self::decoded_destinations(key, &replies)?));
                }
                Ok::<_, Error>(out)
            });
        }
        let mut all: Vec<Vec<ObservedDestination>> = vec![Vec::new(); keys.len()];
        while let Some(done) = tasks.join_next().await {
            let part = done.map_err(|e| connection_error(Object::Services, e))??;
            for (i, dests) in part {
                all[i] = dests;
            }
        }
        Ok(all)
    }

    pub async fn add_destination(&self, key: &ServiceKey, dest: &Destination) -> Result<(), Error> {
        self.apply(&Op::AddDestination(*key, *dest)).await
    }

    pub async fn edit_destination(
        &self,
        key: &ServiceKey,
        dest: &Destination,
    ) -> Result<(), Error> {
        self.apply(&Op::EditDestination(*key, *dest)).await
    }

    pub async fn delete_destination(
        &self,
        key: &ServiceKey,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        self.apply(&Op::DeleteDestination(*key, addr)).await
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
        let (object, msg) = op_request(op);
        self.change(msg.map_err(with_object(object.clone()))?, object)
            .await
    }

    /// Applies planned changes in order, [`BATCH`] per datagram, and returns
    /// one result per op, in order. The kernel handles each on its own: a
    /// refused op does not stop the later ones (an op that depends on it is
    /// refused in turn, so callers hold dependent ops back themselves). When
    /// the socket fails, the ops of that batch are reported failed (some may
    /// have been applied: the next read shows which).
    pub async fn apply_all(&self, ops: &[Op]) -> Vec<Result<(), Error>> {
        let mut results = Vec::with_capacity(ops.len());
        let mut batch = Vec::with_capacity(BATCH);
        let mut pending = Vec::with_capacity(BATCH);
        for op in ops {
            let (object, msg) = op_request(op);
            match msg {
                // Not expressible: refused here, in place.
                Err(invalid) => results.push(Err(with_object(object)(invalid))),
                Ok(msg) => {
                    pending.push((results.len(), object));
                    // Placeholder until the batch is answered.
                    results.push(Ok(()));
                    batch.push(self.genl(msg));
                }
            }
            if batch.len() == BATCH {
                self.send_batch(std::mem::take(&mut batch), &mut pending, &mut results)
                    .await;
            }
        }
        self.send_batch(batch, &mut pending, &mut results).await;
        results
    }

    /// Sends one batch and files its outcome under `pending`'s result slots.
    async fn send_batch(
        &self,
        batch: Vec<GenlMessage<IpvsMessage>>,
        pending: &mut Vec<(usize, Object)>,
        results: &mut [Result<(), Error>],
    ) {
        if batch.is_empty() {
            return;
        }
        let answered = self.sockets[0].lock().await.batch(batch).await;
        for (n, (slot, object)) in pending.drain(..).enumerate() {
            results[slot] = match &answered {
                Ok(replies) => refused(&object, replies[n].errno),
                Err(e) => Err(connection_error(object, e)),
            };
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
