//! The generic-netlink socket under the IPVS client: many requests in one
//! datagram, replies matched to them by sequence number.
//!
//! Why batches: the kernel handles a datagram's messages one after the other, in
//! order, inside the sender's `sendmsg`, and answers a request without
//! `NLM_F_ACK` only to refuse it. So a batch of changes with the ACK asked on
//! the last one only costs one send and, when every change succeeds, one
//! receive, where one request per round trip costs two system calls and two
//! task wake-ups per change. A refusal still names its request (its sequence
//! number), and later requests of the batch are handled all the same.
//!
//! A dump cannot share a datagram or overlap with another dump on the same
//! socket (the kernel answers EBUSY while one runs), so dumps go one at a time.
//!
//! Every reply is queued by the kernel before `sendmsg` returns (a dump's next
//! part when the previous one is read), so a receive never waits for the
//! kernel to work; the tokio socket still yields to other tasks on its budget.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_proto::sys::protocols::NETLINK_GENERIC;
use netlink_proto::sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

/// Large enough for any datagram the kernel sends: dump parts are at most
/// 32 KiB (since Linux 4.9), acks and refusals are small.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// What the kernel answered to one request of a batch.
#[derive(Debug)]
pub struct Reply<T> {
    /// Reply messages (a GET's answer, a dump's entries).
    pub messages: Vec<T>,
    /// The positive errno when the kernel refused the request.
    pub errno: Option<i32>,
}

/// One generic-netlink socket; one exchange at a time (`&mut self`).
pub struct NlSocket<T> {
    socket: TokioSocket,
    /// Sequence number of the last request sent.
    seq: u32,
    /// An exchange started and did not finish (its future was dropped or it
    /// failed): replies to it may still be queued, a dump may still run.
    unfinished: bool,
    buffer: Vec<u8>,
    payload: PhantomData<fn(T) -> T>,
}

fn open() -> io::Result<TokioSocket> {
    let socket = TokioSocket::new(NETLINK_GENERIC)?;
    // Refusals carry only the header of the refused request, not all of it.
    socket.socket_ref().set_cap_ack(true)?;
    Ok(socket)
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<T> NlSocket<T>
where
    T: NetlinkSerializable + NetlinkDeserializable + Debug,
{
    /// Opens a socket. Needs a tokio runtime.
    pub fn open() -> io::Result<Self> {
        Ok(NlSocket {
            socket: open()?,
            seq: 0,
            unfinished: false,
            buffer: Vec::with_capacity(RECEIVE_BUFFER),
            payload: PhantomData,
        })
    }

    /// Sends `requests` in one datagram, the ACK asked on the last one only,
    /// and returns one reply per request, in order. A request without a
    /// refusal was accepted. The caller bounds the batch: every refusal must
    /// fit in the socket's receive buffer (about 200 do with the defaults).
    pub async fn batch(&mut self, requests: Vec<T>) -> io::Result<Vec<Reply<T>>> {
        self.exchange(requests, NLM_F_ACK).await
    }

    /// One dump: every entry, or the refusal.
    pub async fn dump(&mut self, request: T) -> io::Result<Reply<T>> {
        let mut replies = self.exchange(vec![request], NLM_F_DUMP).await?;
        replies.pop().ok_or_else(|| invalid("no reply"))
    }

    async fn exchange(&mut self, requests: Vec<T>, last_flags: u16) -> io::Result<Vec<Reply<T>>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        if self.unfinished {
            // A fresh socket rather than telling stale replies and dumps apart.
            self.socket = open()?;
        }
        self.unfinished = true;
        let first = self.seq.wrapping_add(1);
        let count = requests.len();
        let datagram = self.encode(requests, last_flags);
        let sent = self
            .socket
            .send_to(&datagram, &SocketAddr::new(0, 0))
            .await?;
        if sent != datagram.len() {
            return Err(io::Error::other("netlink datagram sent in part"));
        }
        let mut replies: Vec<Reply<T>> = (0..count)
            .map(|_| Reply {
                messages: Vec::new(),
                errno: None,
            })
            .collect();
        let mut finished = false;
        while !finished {
            self.buffer.clear();
            self.socket.recv(&mut self.buffer).await?;
            finished = route(&self.buffer, first, &mut replies)?;
        }
        self.unfinished = false;
        Ok(replies)
    }

    /// The requests as one datagram, numbered from `self.seq + 1`.
    fn encode(&mut self, requests: Vec<T>, last_flags: u16) -> Vec<u8> {
        let last = requests.len() - 1;
        let mut datagram = Vec::new();
        for (i, payload) in requests.into_iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            let mut msg = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(payload),
            );
            msg.header.flags = NLM_F_REQUEST | if i == last { last_flags } else { 0 };
            msg.header.sequence_number = self.seq;
            msg.finalize();
            let start = datagram.len();
            datagram.resize(start + msg.buffer_len(), 0);
            msg.serialize(&mut datagram[start..]);
        }
        datagram
    }
}

/// Files each message of a received datagram under its request (requests are
/// numbered from `first`; anything else is not ours and skipped). True once
/// the last request is answered: the kernel answers in order, so every earlier
/// one is then answered too.
fn route<T>(datagram: &[u8], first: u32, replies: &mut [Reply<T>]) -> io::Result<bool>
where
    T: NetlinkDeserializable + Debug,
{
    let mut rest = datagram;
    let mut finished = false;
    while !rest.is_empty() {
        let len = NetlinkBuffer::new_checked(rest).map_err(invalid)?.length() as usize;
        let msg = NetlinkMessage::<T>::deserialize(&rest[..len]).map_err(invalid)?;
        rest = &rest[(len.next_multiple_of(4)).min(rest.len())..];
        let index = msg.header.sequence_number.wrapping_sub(first) as usize;
        let Some(reply) = replies.get_mut(index) else {
            continue;
        };
        let answered = match msg.payload {
            NetlinkPayload::InnerMessage(m) => {
                reply.messages.push(m);
                false
            }
            NetlinkPayload::Error(e) => {
                reply.errno = e.code.map(|c| -c.get());
                true
            }
            NetlinkPayload::Done(d) => {
                reply.errno = Some(-d.code).filter(|c| *c != 0);
                true
            }
            NetlinkPayload::Overrun(_) => return Err(invalid("receive buffer overrun")),
            // Noop, and whatever later kernels add.
            _ => false,
        };
        finished |= answered && index + 1 == replies.len();
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage};
    use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
    use netlink_packet_generic::GenlMessage;
    use std::num::NonZeroI32;

    type Msg = GenlMessage<GenlCtrl>;

    fn datagram(messages: Vec<(u32, NetlinkPayload<Msg>)>) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, payload) in messages {
            let mut header = NetlinkHeader::default();
            header.sequence_number = seq;
            let mut msg = NetlinkMessage::new(header, payload);
            msg.finalize();
            let start = out.len();
            out.resize(start + msg.buffer_len(), 0);
            msg.serialize(&mut out[start..]);
        }
        out
    }

    fn refusal(errno: i32) -> NetlinkPayload<Msg> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(-errno);
        NetlinkPayload::Error(e)
    }

    fn entry() -> NetlinkPayload<Msg> {
        let mut m = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::NewFamily,
            nlas: vec![],
        });
        m.set_resolved_family_id(16);
        NetlinkPayload::InnerMessage(m)
    }

    fn replies(n: usize) -> Vec<Reply<Msg>> {
        (0..n)
            .map(|_| Reply {
                messages: Vec::new(),
                errno: None,
            })
            .collect()
    }

    #[test]
    fn a_refusal_names_its_request_and_the_last_ack_ends_the_batch() {
        let mut r = replies(3);
        let d = datagram(vec![(11, refusal(17))]);
        assert!(!route(&d, 10, &mut r).unwrap());
        let d = datagram(vec![(12, NetlinkPayload::Error(ErrorMessage::default()))]);
        assert!(route(&d, 10, &mut r).unwrap());
        let errnos: Vec<_> = r.iter().map(|r| r.errno).collect();
        assert_eq!(errnos, [None, Some(17), None]);
    }

    #[test]
    fn a_refused_last_request_also_ends_the_batch() {
        let mut r = replies(2);
        assert!(route(&datagram(vec![(6, refusal(3))]), 5, &mut r).unwrap());
        assert_eq!(r[1].errno, Some(3));
    }

    #[test]
    fn a_dump_collects_entries_until_done_and_skips_stale_replies() {
        let mut r = replies(1);
        let d = datagram(vec![(4, entry()), (7, entry()), (7, entry())]);
        assert!(!route(&d, 7, &mut r).unwrap());
        let d = datagram(vec![(7, NetlinkPayload::Done(DoneMessage::default()))]);
        assert!(route(&d, 7, &mut r).unwrap());
        assert_eq!(r[0].messages.len(), 2);
        assert_eq!(r[0].errno, None);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = replies(2);
        let d = datagram(vec![(0, NetlinkPayload::Error(ErrorMessage::default()))]);
        assert!(route(&d, u32::MAX, &mut r).unwrap());
    }

    #[test]
    fn a_truncated_datagram_is_an_error() {
        let mut r = replies(1);
        let d = datagram(vec![(1, entry())]);
        assert!(route(&d[..d.len() - 2], 1, &mut r).is_err());
    }
}
