//! Frames on QUIC streams. This module owns reading a frame with its length
//! bounded before anything is allocated, and writing one; it never
//! interprets a frame's meaning.

use bytes::BytesMut;
use weir_proto::frame::{EncodedFrame, FRAME_PREFIX_LEN, Frame, FrameHeader, FrameType};

use crate::ClientError;

/// Largest chunk taken from the stream at once; the body buffer grows as
/// bytes actually arrive, so a peer's length claim alone never makes the
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
    let mut body = BytesMut::with_capacity(header.body_len.min(READ_CHUNK_BYTES));
    while body.len() < header.body_len {
        let want = (header.body_len - body.len()).min(READ_CHUNK_BYTES);
        match recv.read_chunk(want, true).await? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(ClientError::Protocol(format!(
                    "stream ended inside a {} frame ({} of {} body bytes)",
                    header.kind.name(),
                    body.len(),
                    header.body_len
                )));
            }
        }
    }
    Frame::decode(header.kind, body.freeze())
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
