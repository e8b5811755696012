//! Frames on QUIC streams. This module owns reading a frame with its length
//! bounded before anything is allocated, and writing one; it never
//! interprets a frame's meaning.

use bytes::{Bytes, BytesMut};
use weir_proto::frame::{EncodedFrame, FRAME_PREFIX_LEN, Frame, FrameHeader, FrameType};

use crate::ClientError;

/// Largest chunk taken from the stream at once. A body is gathered from
/// the chunks that arrived, so a peer's length claim alone never makes the
/// client allocate it.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Reads one frame whose type is in `allowed` and whose body is at most
/// `max_body_bytes` (and at most its type's limit). `Ok(None)` when the
/// stream ended cleanly before a new frame began.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    allowed: &[FrameType],
    max_body_bytes: usize,
) -> Result<Option<Frame>, ClientError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    let mut filled = 0;
    while filled < FRAME_PREFIX_LEN {
        match recv.read(&mut prefix[filled..]).await? {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(None),
            None => {
                return Err(ClientError::Protocol(format!(
                    "stream ended inside a frame prefix ({filled} of {FRAME_PREFIX_LEN} bytes)"
                )));
            }
        }
    }
    let header = FrameHeader::parse(prefix).map_err(ClientError::protocol)?;
    if !allowed.contains(&header.kind) {
        return Err(ClientError::Protocol(format!(
            "unexpected {} frame",
            header.kind.name()
        )));
    }
    if header.body_len > max_body_bytes {
        return Err(ClientError::Protocol(format!(
            "{} frame of {} bytes exceeds the {max_body_bytes} bytes this stream allows",
            header.kind.name(),
            header.body_len
        )));
    }
    // Quinn's chunks are kept as they arrive and joined once at the end,
    // into a buffer of exactly the body's size: one copy, no regrowth,
    // and nothing allocated for bytes that have not arrived.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut got = 0;
    while got < header.body_len {
        let want = (header.body_len - got).min(READ_CHUNK_BYTES);
        match recv.read_chunk(want, true).await? {
            Some(chunk) => {
                got += chunk.bytes.len();
                chunks.push(chunk.bytes);
            }
            None => {
                return Err(ClientError::Protocol(format!(
                    "stream ended inside a {} frame ({} of {} body bytes)",
                    header.kind.name(),
                    got,
                    header.body_len
                )));
            }
        }
    }
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = BytesMut::with_capacity(got);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            joined.freeze()
        }
    };
    Frame::decode(header.kind, body)
        .map(Some)
        .map_err(ClientError::protocol)
}

/// Encodes a frame, refusing one that breaks a limit.
pub(crate) fn encode(frame: &Frame) -> Result<EncodedFrame, ClientError> {
    frame
        .encode()
        .map_err(|e| ClientError::Invalid(e.to_string()))
}

/// Writes an encoded frame: the head, then the bulk without copying it.
pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &EncodedFrame,
) -> Result<(), ClientError> {
    send.write_all(&frame.head).await?;
    if !frame.bulk.is_empty() {
        send.write_chunk(frame.bulk.clone()).await?;
    }
    Ok(())
}
