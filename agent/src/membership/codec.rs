//! foca's wire items as the protobuf messages of `proto/lvs/v1/gossip.proto`.
//!
//! Each header and member is written length-delimited so foca can read one
//! item and continue with the next from the same buffer.

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};
use lvs_proto::v1::{
    gossip_header::Kind, GossipEmpty, GossipHeader, GossipIdentity, GossipMember,
    GossipMemberState, GossipProbeRelay,
};
use prost::Message as _;

use super::identity::{NodeIdentity, NodeMeta};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed gossip protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("gossip item does not fit the packet: {0}")]
    Encode(#[from] prost::EncodeError),
    #[error("gossip field {0} is missing")]
    Missing(&'static str),
    #[error("gossip field {field}: {value:?} is not an ip:port address")]
    Addr { field: &'static str, value: String },
    #[error("gossip field {field}.vrrp_sources: {value:?} is not an IP address")]
    VrrpSource { field: &'static str, value: String },
    #[error("gossip field {field}: {value} is out of range")]
    OutOfRange { field: &'static str, value: u64 },
}

/// The foca codec of lvs-mesh: stateless, protobuf via prost.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProtoCodec;

impl foca::Codec<NodeIdentity> for ProtoCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeIdentity>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(header_to_proto(header).encode_length_delimited(&mut buf)?)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeIdentity>, CodecError> {
        header_from_proto(GossipHeader::decode_length_delimited(buf)?)
    }

    // prost checks the remaining capacity before writing anything, so a
    // member that does not fit leaves the buffer untouched, as foca requires.
    fn encode_member(
        &mut self,
        member: &Member<NodeIdentity>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(member_to_proto(member).encode_length_delimited(&mut buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeIdentity>, CodecError> {
        member_from_proto(GossipMember::decode_length_delimited(buf)?)
    }
}

fn identity_to_proto(id: &NodeIdentity) -> GossipIdentity {
    GossipIdentity {
        node_id: id.node_id.clone(),
        gossip_addr: id.addr.to_string(),
        incarnation: id.incarnation,
        revision: id.revision,
        syncid: id.meta.syncid.into(),
        software_version: id.meta.version.clone(),
        vrrp_sources: id
            .meta
            .vrrp_sources
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn identity_from_proto(
    id: Option<GossipIdentity>,
    field: &'static str,
) -> Result<NodeIdentity, CodecError> {
    let id = id.ok_or(CodecError::Missing(field))?;
    let addr: SocketAddr = id.gossip_addr.parse().map_err(|_| CodecError::Addr {
        field,
        value: id.gossip_addr.clone(),
    })?;
    let vrrp_sources = id
        .vrrp_sources
        .into_iter()
        .map(|value| {
            value
                .parse::<IpAddr>()
                .map_err(|_| CodecError::VrrpSource { field, value })
        })
        .collect::<Result<_, _>>()?;
    Ok(NodeIdentity {
        node_id: id.node_id,
        addr,
        incarnation: id.incarnation,
        revision: id.revision,
        meta: NodeMeta {
            syncid: narrow(id.syncid, field)?,
            version: id.software_version,
            vrrp_sources,
        },
    })
}

/// Converts a proto `uint32` to foca's narrower integer types.
fn narrow<T: TryFrom<u32>>(value: u32, field: &'static str) -> Result<T, CodecError> {
    T::try_from(value).map_err(|_| CodecError::OutOfRange {
        field,
        value: value.into(),
    })
}

fn relay(peer: &NodeIdentity, probe_number: u8) -> GossipProbeRelay {
    GossipProbeRelay {
        peer: Some(identity_to_proto(peer)),
        probe_number: probe_number.into(),
    }
}

fn header_to_proto(header: &Header<NodeIdentity>) -> GossipHeader {
    let kind = match &header.message {
        Message::Ping(n) => Kind::Ping((*n).into()),
        Message::Ack(n) => Kind::Ack((*n).into()),
        Message::PingReq {
            target,
            probe_number,
        } => Kind::PingReq(relay(target, *probe_number)),
        Message::IndirectPing {
            origin,
            probe_number,
        } => Kind::IndirectPing(relay(origin, *probe_number)),
        Message::IndirectAck {
            target,
            probe_number,
        } => Kind::IndirectAck(relay(target, *probe_number)),
        Message::ForwardedAck {
            origin,
            probe_number,
        } => Kind::ForwardedAck(relay(origin, *probe_number)),
        Message::Announce => Kind::Announce(GossipEmpty {}),
        Message::Feed => Kind::Feed(GossipEmpty {}),
        Message::Gossip => Kind::Gossip(GossipEmpty {}),
        Message::Broadcast => Kind::Broadcast(GossipEmpty {}),
        Message::TurnUndead => Kind::TurnUndead(GossipEmpty {}),
    };
    GossipHeader {
        src: Some(identity_to_proto(&header.src)),
        src_swim_incarnation: header.src_incarnation.into(),
        dst: Some(identity_to_proto(&header.dst)),
        kind: Some(kind),
    }
}

fn relay_from_proto(
    relay: GossipProbeRelay,
    field: &'static str,
) -> Result<(NodeIdentity, u8), CodecError> {
    Ok((
        identity_from_proto(relay.peer, field)?,
        narrow(relay.probe_number, "GossipProbeRelay.probe_number")?,
    ))
}

fn header_from_proto(header: GossipHeader) -> Result<Header<NodeIdentity>, CodecError> {
    let probe = |n| narrow(n, "GossipHeader.probe_number");
    let message = match header
        .kind
        .ok_or(CodecError::Missing("GossipHeader.kind"))?
    {
        Kind::Ping(n) => Message::Ping(probe(n)?),
        Kind::Ack(n) => Message::Ack(probe(n)?),
        Kind::PingReq(r) => {
            let (target, probe_number) = relay_from_proto(r, "GossipHeader.ping_req.peer")?;
            Message::PingReq {
                target,
                probe_number,
            }
        }
        Kind::IndirectPing(r) => {
            let (origin, probe_number) = relay_from_proto(r, "GossipHeader.indirect_ping.peer")?;
            Message::IndirectPing {
                origin,
                probe_number,
            }
        }
        Kind::IndirectAck(r) => {
            let (target, probe_number) = relay_from_proto(r, "GossipHeader.indirect_ack.peer")?;
            Message::IndirectAck {
                target,
                probe_number,
            }
        }
        Kind::ForwardedAck(r) => {
            let (origin, probe_number) = relay_from_proto(r, "GossipHeader.forwarded_ack.peer")?;
            Message::ForwardedAck {
                origin,
                probe_number,
            }
        }
        Kind::Announce(_) => Message::Announce,
        Kind::Feed(_) => Message::Feed,
        Kind::Gossip(_) => Message::Gossip,
        Kind::Broadcast(_) => Message::Broadcast,
        Kind::TurnUndead(_) => Message::TurnUndead,
    };
    Ok(Header {
        src: identity_from_proto(header.src, "GossipHeader.src")?,
        src_incarnation: narrow(
            header.src_swim_incarnation,
            "GossipHeader.src_swim_incarnation",
        )?,
        dst: identity_from_proto(header.dst, "GossipHeader.dst")?,
        message,
    })
}

fn member_to_proto(member: &Member<NodeIdentity>) -> GossipMember {
    let state = match member.state() {
        State::Alive => GossipMemberState::Alive,
        State::Suspect => GossipMemberState::Suspect,
        State::Down => GossipMemberState::Down,
    };
    GossipMember {
        id: Some(identity_to_proto(member.id())),
        swim_incarnation: member.incarnation().into(),
        state: state.into(),
    }
}

fn member_from_proto(member: GossipMember) -> Result<Member<NodeIdentity>, CodecError> {
    let state = match GossipMemberState::try_from(member.state) {
        Ok(GossipMemberState::Alive) => State::Alive,
        Ok(GossipMemberState::Suspect) => State::Suspect,
        Ok(GossipMemberState::Down) => State::Down,
        Ok(GossipMemberState::Unspecified) | Err(_) => {
            return Err(CodecError::OutOfRange {
                field: "GossipMember.state",
                value: u64::from(member.state as u32),
            })
        }
    };
    Ok(Member::new(
        identity_from_proto(member.id, "GossipMember.id")?,
        narrow(member.swim_incarnation, "GossipMember.swim_incarnation")?,
        state,
    ))
}

/// Reads only the sender of a foca packet, for conflict detection before foca
/// sees the packet.
pub fn peek_sender(mut plaintext: &[u8]) -> Option<NodeIdentity> {
    let header = GossipHeader::decode_length_delimited(&mut plaintext).ok()?;
    identity_from_proto(header.src, "GossipHeader.src").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::identity::test_identity;
    use foca::Codec;
    use proptest::prelude::*;

    fn every_message_kind(peer: &NodeIdentity) -> Vec<Message<NodeIdentity>> {
        vec![
            Message::Ping(0),
            Message::Ack(255),
            Message::PingReq {
                target: peer.clone(),
                probe_number: 7,
            },
            Message::IndirectPing {
                origin: peer.clone(),
                probe_number: 8,
            },
            Message::IndirectAck {
                target: peer.clone(),
                probe_number: 9,
            },
            Message::ForwardedAck {
                origin: peer.clone(),
                probe_number: 10,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    #[test]
    fn every_header_kind_round_trips_and_consumes_exactly_one_item() {
        let src = test_identity("lb1", 7946, 1_700_000_000_000);
        let dst = test_identity("lb2", 7947, 1_700_000_000_001);
        let peer = test_identity("lb3", 7948, 3);
        for message in every_message_kind(&peer) {
            let header = Header {
                src: src.clone(),
                src_incarnation: 65535,
                dst: dst.clone(),
                message,
            };
            let mut buf = Vec::new();
            ProtoCodec.encode_header(&header, &mut buf).unwrap();
            buf.extend_from_slice(b"tail");
            let mut cursor = &buf[..];
            assert_eq!(ProtoCodec.decode_header(&mut cursor).unwrap(), header);
            assert_eq!(cursor, b"tail");
        }
    }

    #[test]
    fn every_member_state_round_trips() {
        let id = test_identity("lb1", 7946, 5);
        for state in [State::Alive, State::Suspect, State::Down] {
            let member = Member::new(id.clone(), 42, state);
            let mut buf = Vec::new();
            ProtoCodec.encode_member(&member, &mut buf).unwrap();
            assert_eq!(ProtoCodec.decode_member(&buf[..]).unwrap(), member);
        }
    }

    #[test]
    fn a_member_that_does_not_fit_leaves_the_buffer_clean() {
        let member = Member::alive(test_identity("lb1", 7946, 5));
        let mut storage = Vec::new();
        let mut buf = (&mut storage).limit(10);
        assert!(ProtoCodec.encode_member(&member, &mut buf).is_err());
        assert!(storage.is_empty());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let mut proto = member_to_proto(&Member::alive(test_identity("lb1", 7946, 5)));
        proto.swim_incarnation = 70_000;
        let err = member_from_proto(proto.clone()).unwrap_err();
        assert!(err.to_string().contains("GossipMember.swim_incarnation"));

        proto.swim_incarnation = 0;
        proto.id.as_mut().unwrap().gossip_addr = "lb1:x".into();
        let err = member_from_proto(proto.clone()).unwrap_err();
        assert!(err.to_string().contains("GossipMember.id"), "{err}");

        proto.id.as_mut().unwrap().gossip_addr = "127.0.0.1:1".into();
        proto.id.as_mut().unwrap().syncid = 256;
        assert!(member_from_proto(proto.clone()).is_err());

        proto.id.as_mut().unwrap().syncid = 1;
        proto.id.as_mut().unwrap().vrrp_sources = vec!["fe80::1%eth0".into()];
        let err = member_from_proto(proto.clone()).unwrap_err().to_string();
        assert!(err.contains("GossipMember.id.vrrp_sources"), "{err}");
        assert!(err.contains("fe80::1%eth0"), "{err}");

        proto.id.as_mut().unwrap().vrrp_sources.clear();
        proto.state = 0;
        assert!(member_from_proto(proto).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_identities_round_trip(
            node_id in "[a-z0-9-]{0,20}",
            ip in any::<[u8; 16]>(),
            port in any::<u16>(),
            incarnation in any::<u64>(),
            revision in any::<u32>(),
            syncid in any::<u8>(),
            version in "\\PC{0,12}",
            v4_sources in proptest::collection::vec(any::<[u8; 4]>(), 0..3),
            v6_sources in proptest::collection::vec(any::<[u8; 16]>(), 0..3),
        ) {
            let vrrp_sources = v4_sources
                .into_iter()
                .map(IpAddr::from)
                .chain(v6_sources.into_iter().map(IpAddr::from))
                .collect();
            let id = NodeIdentity {
                node_id,
                addr: SocketAddr::from((ip, port)),
                incarnation,
                revision,
                meta: NodeMeta { syncid, version, vrrp_sources },
            };
            let back = identity_from_proto(Some(identity_to_proto(&id)), "test").unwrap();
            prop_assert_eq!(back, id);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ProtoCodec.decode_header(&bytes[..]);
            let _ = ProtoCodec.decode_member(&bytes[..]);
        }
    }
}
