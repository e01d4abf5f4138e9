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
}
