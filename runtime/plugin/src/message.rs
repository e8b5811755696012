//! The host's message type and its flat layout for the guest: every key,
//! header and payload of a batch copied once into one buffer, with ranges.
//! Owns that layout; must never produce a range outside the buffer.

use crate::bindings::{Batch, Header};

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

/// A message as the chain reads it, wherever it lives: the node passes
/// views of the records in a produced batch, so that they are copied only
/// into the guest's layout and not into owned messages first.
pub trait MessageRef {
    /// The producer's key, if it gave one.
    fn key(&self) -> Option<&[u8]>;
    /// Headers in the order the producer sent them.
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])>;
    /// The payload.
    fn payload(&self) -> &[u8];
    /// Producer timestamp, milliseconds since the Unix epoch.
    fn timestamp_ms(&self) -> u64;

    /// An owned copy.
    fn to_message(&self) -> Message {
        Message {
            key: self.key().map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(name, value)| Header {
                    name: name.to_string(),
                    value: value.to_vec(),
                })
                .collect(),
            payload: self.payload().to_vec(),
            timestamp_ms: self.timestamp_ms(),
        }
    }
}

impl MessageRef for Message {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    fn to_message(&self) -> Message {
        self.clone()
    }
}

/// Words per message in `Batch::messages` (see the contract).
pub(crate) const MESSAGE_WORDS: usize = 7;
/// Words per header entry in `Batch::headers`.
pub(crate) const HEADER_WORDS: usize = 4;
/// Bit of a message's flags word set when it has a key.
pub(crate) const HAS_KEY: u32 = 1;

/// Lays a batch out flat, or `Err` (with the size) when its bytes or
/// header count do not fit the contract's 32-bit ranges.
pub(crate) fn pack<M: MessageRef>(messages: &[M]) -> Result<Batch, usize> {
    let mut bytes = 0usize;
    let mut header_count = 0usize;
    for m in messages {
        bytes += m.key().map_or(0, <[u8]>::len) + m.payload().len();
        for (name, value) in m.headers() {
            bytes += name.len() + value.len();
            header_count += 1;
        }
    }
    if u32::try_from(bytes).is_err() || u32::try_from(header_count).is_err() {
        return Err(bytes);
    }
    let mut data = Vec::with_capacity(bytes);
    let mut headers = Vec::with_capacity(header_count * HEADER_WORDS);
    let mut words = Vec::with_capacity(messages.len() * MESSAGE_WORDS);
    let mut timestamps = Vec::with_capacity(messages.len());
    // Every offset and length below is at most `bytes` or `header_count`,
    // both checked to fit in u32 above, so the casts cannot truncate.
    let mut put = |bytes: &[u8]| {
        let offset = data.len() as u32;
        data.extend_from_slice(bytes);
        [offset, bytes.len() as u32]
    };
    for message in messages {
        let (flags, [key_offset, key_len]) = match message.key() {
            Some(key) => (HAS_KEY, put(key)),
            None => (0, [0, 0]),
        };
        let [payload_offset, payload_len] = put(message.payload());
        let first_header = (headers.len() / HEADER_WORDS) as u32;
        let mut count = 0u32;
        for (name, value) in message.headers() {
            headers.extend(put(name.as_bytes()));
            headers.extend(put(value));
            count += 1;
        }
        words.extend([
            flags,
            key_offset,
            key_len,
            payload_offset,
            payload_len,
            first_header,
            count,
        ]);
        timestamps.push(message.timestamp_ms());
    }
    Ok(Batch {
        data,
        headers,
        messages: words,
        timestamps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(batch: &Batch, offset: u32, len: u32) -> &[u8] {
        &batch.data[offset as usize..(offset + len) as usize]
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
        let [first, second] = [0, 1].map(|i| &batch.messages[i * MESSAGE_WORDS..][..MESSAGE_WORDS]);
        assert_eq!(first[0], HAS_KEY);
        assert_eq!(slice(&batch, first[1], first[2]), b"k");
        assert_eq!(slice(&batch, first[3], first[4]), b"one");
        assert_eq!((first[5], first[6]), (0, 1));
        assert_eq!(slice(&batch, batch.headers[0], batch.headers[1]), b"h");
        assert_eq!(slice(&batch, batch.headers[2], batch.headers[3]), b"v");
        assert_eq!(second[0], 0);
        assert_eq!(slice(&batch, second[3], second[4]), b"two");
        assert_eq!((second[5], second[6]), (1, 0));
        assert_eq!(batch.timestamps, vec![5, 0]);
    }
}
