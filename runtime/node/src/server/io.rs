//! Reading and writing frames on QUIC streams. A frame's length is bounded
//! by its type before its body is allocated; bulk data goes out as its own
//! chunk so stored batches are sent without a copy.

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};
use weir_proto::frame::{ErrorCode, FRAME_PREFIX_LEN, Frame, FrameError, FrameHeader};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The stream failed (reset, connection lost).
    #[error("stream: {0}")]
    Stream(String),
}

/// Reads one frame; `Ok(None)` when the peer finished the stream cleanly
/// between frames.
pub(crate) async fn read_frame(recv: &mut RecvStream) -> Result<Option<Frame>, ReadError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(ReadError::Truncated),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadError::Stream(e.to_string())),
    }
    let header = FrameHeader::parse(prefix)?;
    Ok(Some(Frame::decode(
        header.kind,
        read_body(recv, header.body_len).await?,
    )?))
}

/// Reads a frame body of `len` bytes: quinn's own buffer when one chunk
/// holds it all (a batch then reaches the log without a copy), else the
/// chunks gathered into one buffer.
async fn read_body(recv: &mut RecvStream, len: usize) -> Result<Bytes, ReadError> {
    let mut body: Option<BytesMut> = None;
    let mut got = 0;
    while got < len {
        let chunk = recv
            .read_chunk(len - got, true)
            .await
            .map_err(|e| ReadError::Stream(e.to_string()))?
            .ok_or(ReadError::Truncated)?;
        if got == 0 && chunk.bytes.len() == len {
            return Ok(chunk.bytes);
        }
        got += chunk.bytes.len();
        body.get_or_insert_with(|| BytesMut::with_capacity(len))
            .extend_from_slice(&chunk.bytes);
    }
    Ok(body.map_or_else(Bytes::new, BytesMut::freeze))
}

/// Writes one frame.
pub(crate) async fn write_frame(send: &mut SendStream, frame: &Frame) -> Result<(), String> {
    let encoded = frame
        .encode()
        .map_err(|e| format!("encoding {}: {e}", frame.kind().name()))?;
    send.write_all(&encoded.head)
        .await
        .map_err(|e| e.to_string())?;
    if !encoded.bulk.is_empty() {
        send.write_chunk(encoded.bulk)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Sends an error frame and finishes the stream; failures to do so only
/// mean the peer is gone.
pub(crate) async fn fail(send: &mut SendStream, code: ErrorCode, message: impl Into<String>) {
    let message = message.into();
    tracing::debug!(?code, %message, "request failed");
    let _ = write_frame(send, &Frame::Error { code, message }).await;
    let _ = send.finish();
}
