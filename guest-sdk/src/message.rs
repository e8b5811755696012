//! Conveniences on the contract's generated types: header and key access,
//! patch building. Owns no state; must never allocate where a borrow does.

use crate::{Header, Message, Partition, Patch, Verdict};

impl Message {
    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == name).map(|h| h.value.as_slice())
    }

    /// The first header called `name`, if it is present and UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key, if the producer gave one and it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload parsed as JSON, or `None` if it is not JSON.
    #[cfg(feature = "json")]
    pub fn payload_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

impl Header {
    /// A header from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header { name: name.into(), value: value.into() }
    }
}

impl Patch {
    /// A patch that changes nothing yet.
    pub fn new() -> Self {
        Patch { topics: None, partition: None, dedup_key: None, add_headers: Vec::new() }
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

    fn message() -> Message {
        Message {
            key: Some(b"k1".to_vec()),
            headers: vec![Header::new("a", "1"), Header::new("a", "2"), Header::new("bin", vec![0xff])],
            payload: br#"{"x": 1}"#.to_vec(),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn first_header_wins() {
        assert_eq!(message().header("a"), Some(&b"1"[..]));
        assert_eq!(message().header("missing"), None);
    }

    #[test]
    fn non_utf8_header_is_not_a_str() {
        assert_eq!(message().header_str("bin"), None);
        assert_eq!(message().key_str(), Some("k1"));
    }

    #[test]
    fn patch_builder_sets_each_field() {
        let patch = Patch::new().topics(["a", "b"]).hash_key("k").dedup_key("d").header("h", "v");
        assert_eq!(patch.topics, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(matches!(patch.partition, Some(Partition::HashKey(ref k)) if k == b"k"));
        assert_eq!(patch.dedup_key.as_deref(), Some(&b"d"[..]));
        assert_eq!(patch.add_headers.len(), 1);
    }
}
