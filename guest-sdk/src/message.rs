//! Conveniences on the contract's generated types: header and key access,
//! patch building. Owns no state; must never allocate where a borrow does.

use crate::bindings::weir::plugin::types::Batch;
use crate::{Header, Partition, Patch, Verdict};

/// One message of a batch, borrowed from the batch the host passed in (no
/// copy per message). Build one by hand with [`Message::new`] in tests.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    /// The producer's key, if it gave one.
    pub key: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
    /// Producer timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    headers: Headers<'a>,
}

#[derive(Clone, Copy)]
enum Headers<'a> {
    /// Header entries of the batch (4 words each), checked by [`unpack`].
    Packed {
        words: &'a [u32],
        data: &'a [u8],
    },
    Owned(&'a [Header]),
}

impl<'a> Message<'a> {
    /// A message built by hand (for unit tests of plugin logic).
    pub fn new(key: Option<&'a [u8]>, headers: &'a [Header], payload: &'a [u8]) -> Self {
        Message {
            key,
            payload,
            timestamp_ms: 0,
            headers: Headers::Owned(headers),
        }
    }

    /// Headers as (name, value) byte pairs, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let (packed, owned) = match self.headers {
            Headers::Packed { words, data } => (Some((words, data)), None),
            Headers::Owned(headers) => (None, Some(headers)),
        };
        let packed = packed.into_iter().flat_map(|(words, data)| {
            words
                .chunks_exact(HEADER_WORDS)
                .map(move |h| (span(data, h[0], h[1]), span(data, h[2], h[3])))
        });
        let owned = owned
            .into_iter()
            .flatten()
            .map(|h| (h.name.as_bytes(), h.value.as_slice()));
        packed.chain(owned)
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first header called `name`, if it is present and UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key, if the producer gave one and it is UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key.and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload parsed as JSON, or `None` if it is not JSON.
    #[cfg(feature = "json")]
    pub fn payload_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.payload).ok()
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("key", &self.key.map(String::from_utf8_lossy))
            .field(
                "headers",
                &self
                    .headers()
                    .map(|(n, v)| (String::from_utf8_lossy(n), v.len()))
                    .collect::<Vec<_>>(),
            )
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

/// Words per message in `Batch::messages` (see the contract).
const MESSAGE_WORDS: usize = 7;
/// Words per header entry in `Batch::headers`.
const HEADER_WORDS: usize = 4;
/// Bit of a message's flags word set when it has a key.
const HAS_KEY: u32 = 1;

/// A range already checked by [`unpack`]; empty rather than a panic if not.
fn span(data: &[u8], offset: u32, len: u32) -> &[u8] {
    checked(data, offset, len).unwrap_or_default()
}

fn checked(data: &[u8], offset: u32, len: u32) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

/// The messages of a batch, every range checked once here so accessors
/// never index out of bounds.
pub(crate) fn unpack(batch: &Batch) -> Result<Vec<Message<'_>>, String> {
    let data = batch.data.as_slice();
    let count = batch.timestamps.len();
    if batch.messages.len() != count * MESSAGE_WORDS
        || !batch.headers.len().is_multiple_of(HEADER_WORDS)
    {
        return Err(format!(
            "host sent a malformed batch: {} message words and {} header words for {count} messages",
            batch.messages.len(),
            batch.headers.len()
        ));
    }
    for (i, h) in batch.headers.chunks_exact(HEADER_WORDS).enumerate() {
        if checked(data, h[0], h[1]).is_none() || checked(data, h[2], h[3]).is_none() {
            return Err(format!(
                "host sent a malformed batch: header {i} is outside the data"
            ));
        }
    }
    let mut messages = Vec::with_capacity(count);
    let words = batch.messages.chunks_exact(MESSAGE_WORDS);
    for (i, (m, &timestamp_ms)) in words.zip(&batch.timestamps).enumerate() {
        let bad = || format!("host sent a malformed batch: message {i} is outside the data");
        let key = match m[0] & HAS_KEY {
            0 => None,
            _ => Some(checked(data, m[1], m[2]).ok_or_else(bad)?),
        };
        let payload = checked(data, m[3], m[4]).ok_or_else(bad)?;
        let first = (m[5] as usize).checked_mul(HEADER_WORDS).ok_or_else(bad)?;
        let words = (m[6] as usize)
            .checked_mul(HEADER_WORDS)
            .and_then(|len| first.checked_add(len))
            .and_then(|end| batch.headers.get(first..end))
            .ok_or_else(bad)?;
        messages.push(Message {
            key,
            payload,
            timestamp_ms,
            headers: Headers::Packed { words, data },
        });
    }
    Ok(messages)
}

impl Header {
    /// A header from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Patch {
    /// A patch that changes nothing yet.
    pub fn new() -> Self {
        Patch {
            topics: None,
            partition: None,
            dedup_key: None,
            add_headers: Vec::new(),
        }
    }

    /// Sends the message to these topics instead (fan-out when several).
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }

    /// Puts the message in this partition index.
    pub fn partition(mut self, index: u32) -> Self {
        self.partition = Some(Partition::Index(index));
        self
    }

    /// Lets the node hash these bytes onto a partition.
    pub fn hash_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.partition = Some(Partition::HashKey(key.into()));
        self
    }

    /// Sets the dedup key.
    pub fn dedup_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.add_headers.push(Header::new(name, value));
        self
    }
}

impl Default for Patch {
    fn default() -> Self {
        Patch::new()
    }
}

impl From<Patch> for Verdict {
    fn from(patch: Patch) -> Self {
        Verdict::Patch(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<Header> {
        vec![
            Header::new("a", "1"),
            Header::new("a", "2"),
            Header::new("bin", vec![0xff]),
        ]
    }

    #[test]
    fn first_header_wins() {
        let headers = headers();
        let message = Message::new(Some(b"k1"), &headers, b"{}");
        assert_eq!(message.header("a"), Some(&b"1"[..]));
        assert_eq!(message.header("missing"), None);
        assert_eq!(message.header_str("bin"), None);
        assert_eq!(message.key_str(), Some("k1"));
    }

    fn packed() -> Batch {
        // data: "k" "pay" "h" "v"
        let data = b"kpayhv".to_vec();
        Batch {
            data,
            headers: vec![4, 1, 5, 1],
            messages: vec![HAS_KEY, 0, 1, 1, 3, 0, 1, 0, 0, 0, 0, 0, 1, 0],
            timestamps: vec![7, 8],
        }
    }

    #[test]
    fn unpack_reads_ranges() {
        let batch = packed();
        let messages = unpack(&batch).expect("well formed");
        assert_eq!(messages[0].key, Some(&b"k"[..]));
        assert_eq!(messages[0].payload, b"pay");
        assert_eq!(messages[0].header("h"), Some(&b"v"[..]));
        assert_eq!(messages[0].timestamp_ms, 7);
        assert_eq!(messages[1].key, None);
        assert_eq!(messages[1].headers().count(), 0);
        assert_eq!(messages[1].timestamp_ms, 8);
    }

    #[test]
    fn unpack_refuses_ranges_outside_the_data() {
        let mut batch = packed();
        batch.messages[3] = 4;
        batch.messages[4] = 3;
        assert!(
            unpack(&batch)
                .expect_err("payload out of range")
                .contains("message 0")
        );
        let mut batch = packed();
        batch.messages[MESSAGE_WORDS + 6] = 1;
        assert!(unpack(&batch).is_err());
        let mut batch = packed();
        batch.headers[2] = u32::MAX;
        batch.headers[3] = u32::MAX;
        assert!(
            unpack(&batch)
                .expect_err("header out of range")
                .contains("header 0")
        );
        let mut batch = packed();
        batch.timestamps.push(9);
        assert!(
            unpack(&batch)
                .expect_err("word count")
                .contains("message words")
        );
    }

    #[test]
    fn patch_builder_sets_each_field() {
        let patch = Patch::new()
            .topics(["a", "b"])
            .hash_key("k")
            .dedup_key("d")
            .header("h", "v");
        assert_eq!(patch.topics, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(matches!(patch.partition, Some(Partition::HashKey(ref k)) if k == b"k"));
        assert_eq!(patch.dedup_key.as_deref(), Some(&b"d"[..]));
        assert_eq!(patch.add_headers.len(), 1);
    }
}
