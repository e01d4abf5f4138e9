//! One exchange per stream: the client writes one `ControlRequest` in protobuf's
//! length-delimited form and closes its side, the server answers with one
//! `ControlReply` in the same form and closes. The same bytes on a Unix stream and on
//! a QUIC bidirectional stream.

use anyhow::Context as _;
use lvs_proto::v1::{control_reply::Reply, ControlReply, ControlRequest};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Far above any request (the largest, a cluster config, is a few hundred KiB at
/// 10,000 real servers); a peer sending more is cut off there.
pub const MAX_REQUEST: u64 = 4 * 1024 * 1024;
/// Far above any reply: a status of 10,000 real servers all down is ~2 MiB.
pub const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// Reads to the end of the stream (at most `limit` bytes) and decodes one message.
pub async fn read<M: Message + Default>(
    stream: &mut (impl AsyncRead + Unpin),
    limit: u64,
) -> anyhow::Result<M> {
    let mut bytes = Vec::new();
    stream
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .await
        .context("read")?;
    anyhow::ensure!(
        bytes.len() as u64 <= limit,
        "message longer than {limit} bytes"
    );
    M::decode_length_delimited(bytes.as_slice()).with_context(|| {
        format!(
            "not a {} ({} bytes)",
            std::any::type_name::<M>()
                .rsplit("::")
                .next()
                .unwrap_or("message"),
            bytes.len()
        )
    })
}

/// The next message of a stream of them (a watch), each length-delimited; `None` at
/// the end of the stream.
pub async fn read_next<M: Message + Default>(
    stream: &mut (impl AsyncRead + Unpin),
    limit: u64,
) -> anyhow::Result<Option<M>> {
    // The varint length: 7 bits a byte, at most 10 bytes.
    let mut len = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        if stream.read(&mut byte).await.context("read")? == 0 {
            anyhow::ensure!(i == 0, "the stream ended inside a message length");
            return Ok(None);
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    anyhow::ensure!(len <= limit, "message longer than {limit} bytes");
    let mut bytes = vec![0u8; usize::try_from(len)?];
    stream.read_exact(&mut bytes).await.context("read")?;
    M::decode(bytes.as_slice())
        .map(Some)
        .context("not a message of the stream")
}

/// The request's reply, or the error it carries.
pub fn into_result(reply: ControlReply) -> anyhow::Result<Reply> {
    match reply.reply {
        Some(Reply::Error(reason)) => anyhow::bail!("{reason}"),
        Some(reply) => Ok(reply),
        None => anyhow::bail!("the agent sent an empty ControlReply"),
    }
}

/// A request's bytes.
pub fn encode(request: &ControlRequest) -> Vec<u8> {
    request.encode_length_delimited_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_proto::v1::{control_request::Request, StatusRequest};

    #[tokio::test]
    async fn a_request_round_trips_and_garbage_is_named() {
        let request = ControlRequest {
            request: Some(Request::Status(StatusRequest {})),
        };
        let bytes = encode(&request);
        let back: ControlRequest = read(&mut bytes.as_slice(), MAX_REQUEST).await.unwrap();
        assert_eq!(back, request);
        let err = read::<ControlRequest>(&mut &[0x05u8, 0xff][..], MAX_REQUEST)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "not a ControlRequest (2 bytes)");
        let long = vec![0u8; 11];
        let err = read::<ControlRequest>(&mut long.as_slice(), 10)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "message longer than 10 bytes");
    }

    #[tokio::test]
    async fn a_stream_of_messages_is_read_one_by_one() {
        let one = ControlRequest {
            request: Some(Request::Status(StatusRequest {})),
        };
        let mut bytes = encode(&one);
        bytes.extend(encode(&ControlRequest::default()));
        let mut stream = bytes.as_slice();
        let first: Option<ControlRequest> = read_next(&mut stream, MAX_REQUEST).await.unwrap();
        assert_eq!(first, Some(one));
        let second: Option<ControlRequest> = read_next(&mut stream, MAX_REQUEST).await.unwrap();
        assert_eq!(second, Some(ControlRequest::default()));
        let end: Option<ControlRequest> = read_next(&mut stream, MAX_REQUEST).await.unwrap();
        assert_eq!(end, None);
        let cut = read_next::<ControlRequest>(&mut &[0x80u8][..], MAX_REQUEST).await;
        assert_eq!(
            cut.unwrap_err().to_string(),
            "the stream ended inside a message length"
        );
    }
}
