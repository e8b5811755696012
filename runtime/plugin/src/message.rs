//! The host's message type and its flat layout for the guest: every key,
//! header and payload of a batch copied once into one buffer, with ranges.
//! Owns that layout; must never produce a range outside the buffer.

use crate::bindings::{Batch, Header, HeaderRef, MessageRef, Span};

/// A message as published, before any plugin ran.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The producer's key, if it gave one.
    pub key: Option<Vec<u8>>,
    /// Headers in the order the producer sent them.
    pub headers: Vec<Header>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Producer timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Lays a batch out flat, or `None` (with the size) when its bytes or
/// header count do not fit the contract's 32-bit ranges.
pub(crate) fn pack(messages: &[Message]) -> Result<Batch, usize> {
    let bytes: usize = messages
        .iter()
        .map(|m| {
            let headers: usize = m.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
            m.key.as_ref().map_or(0, Vec::len) + m.payload.len() + headers
        })
        .sum();
    let header_count: usize = messages.iter().map(|m| m.headers.len()).sum();
    if u32::try_from(bytes).is_err() || u32::try_from(header_count).is_err() {
        return Err(bytes);
    }
    let mut data = Vec::with_capacity(bytes);
    let mut headers = Vec::with_capacity(header_count);
    let mut refs = Vec::with_capacity(messages.len());
    // Every offset and length below is at most `bytes` or `header_count`,
    // both checked to fit in u32 above, so the casts cannot truncate.
    let mut put = |bytes: &[u8]| {
        let span = Span {
            offset: data.len() as u32,
            len: bytes.len() as u32,
        };
        data.extend_from_slice(bytes);
        span
    };
    for message in messages {
        let key = message.key.as_deref().map(&mut put);
        let payload = put(&message.payload);
        let first_header = headers.len() as u32;
        for header in &message.headers {
            headers.push(HeaderRef {
                name: put(header.name.as_bytes()),
                value: put(&header.value),
            });
        }
        refs.push(MessageRef {
            key,
            payload,
            first_header,
            header_count: message.headers.len() as u32,
            timestamp_ms: message.timestamp_ms,
        });
    }
    Ok(Batch {
        data,
        headers,
        messages: refs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(batch: &Batch, span: Span) -> &[u8] {
        &batch.data[span.offset as usize..(span.offset + span.len) as usize]
    }

    #[test]
    fn pack_lays_out_every_field() {
        let messages = vec![
            Message {
                key: Some(b"k".to_vec()),
                headers: vec![Header {
                    name: "h".into(),
                    value: b"v".to_vec(),
                }],
                payload: b"one".to_vec(),
                timestamp_ms: 5,
            },
            Message {
                payload: b"two".to_vec(),
                ..Message::default()
            },
        ];
        let batch = pack(&messages).expect("fits");
        assert_eq!(batch.data.len(), 1 + 3 + 2 + 3);
        let [first, second] = batch.messages.as_slice() else {
            panic!("two messages")
        };
        assert_eq!(slice(&batch, first.key.expect("key")), b"k");
        assert_eq!(slice(&batch, first.payload), b"one");
        assert_eq!(
            (first.first_header, first.header_count, first.timestamp_ms),
            (0, 1, 5)
        );
        assert_eq!(slice(&batch, batch.headers[0].name), b"h");
        assert_eq!(slice(&batch, batch.headers[0].value), b"v");
        assert_eq!(second.key, None);
        assert_eq!(slice(&batch, second.payload), b"two");
        assert_eq!((second.first_header, second.header_count), (1, 0));
    }
}
