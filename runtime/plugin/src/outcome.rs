//! What a chain decided for one message. Owns the patch-merging rule (later
//! plugins override topics, partition and dedup key; headers accumulate);
//! must never hold anything wasmtime-specific.

use crate::bindings::{Header, Partition, Patch};

/// The chain's decision about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Store it, routed as described.
    Accept(Routing),
    /// Filtered out by `plugin`; the producer is told it was accepted.
    Drop {
        /// The plugin that dropped it.
        plugin: String,
        /// Its reason.
        reason: String,
    },
    /// Refused; the producer gets `reason` as an error. Also the outcome of
    /// every message of a batch on which a plugin with
    /// [`crate::FailurePolicy::Reject`] failed.
    Reject {
        /// The plugin that rejected it (or failed).
        plugin: String,
        /// Its reason, or the failure.
        reason: String,
    },
    /// A plugin with [`crate::FailurePolicy::DeadLetter`] failed on the
    /// batch; the node stores the message in its dead-letter topic.
    DeadLetter {
        /// The plugin that failed.
        plugin: String,
        /// The failure.
        error: String,
    },
}

/// Where an accepted message goes. `None` fields mean "as published": the
/// topic it was published to, the node's default partitioning, no dedup key
/// beyond the producer's id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Destination topics (fan-out when several).
    pub topics: Option<Vec<String>>,
    /// Partition index or hash key.
    pub partition: Option<Partition>,
    /// Dedup key.
    pub dedup_key: Option<Vec<u8>>,
    /// Headers added by the chain, in the order they were added.
    pub added_headers: Vec<Header>,
}

impl Routing {
    pub(crate) fn apply(&mut self, patch: Patch) {
        if let Some(topics) = patch.topics {
            self.topics = Some(topics);
        }
        if let Some(partition) = patch.partition {
            self.partition = Some(partition);
        }
        if let Some(key) = patch.dedup_key {
            self.dedup_key = Some(key);
        }
        self.added_headers.extend(patch.add_headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_patches_override_and_headers_accumulate() {
        let mut routing = Routing::default();
        routing.apply(Patch {
            topics: Some(vec!["a".into()]),
            partition: Some(Partition::Index(1)),
            dedup_key: None,
            add_headers: vec![Header {
                name: "x".into(),
                value: b"1".to_vec(),
            }],
        });
        routing.apply(Patch {
            topics: None,
            partition: Some(Partition::Index(2)),
            dedup_key: Some(b"k".to_vec()),
            add_headers: vec![Header {
                name: "y".into(),
                value: b"2".to_vec(),
            }],
        });
        assert_eq!(routing.topics, Some(vec!["a".to_string()]));
        assert_eq!(routing.partition, Some(Partition::Index(2)));
        assert_eq!(routing.dedup_key, Some(b"k".to_vec()));
        assert_eq!(routing.added_headers.len(), 2);
    }
}
