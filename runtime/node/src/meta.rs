//! Durable metadata: topics, their plugin chains, and uploaded plugins.
//!
//! One JSON document, `meta.json` in the data directory, replaced
//! atomically (write a temporary file, fsync it, rename it over, fsync the
//! directory) on every change, so a crash leaves either the old or the new
//! metadata, never a mix. It is small: the data lives in the logs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_proto::frame::{FailurePolicy, FlushMode, TopicSpec};

use crate::NodeError;

const FILE: &str = "meta.json";
const FORMAT: u32 = 1;

/// Everything the node must remember across restarts, besides the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    pub(crate) format: u32,
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    pub(crate) plugins: BTreeMap<String, PluginMeta>,
    /// Consumer groups and their settings (their progress is in
    /// `groups/<group>/<topic>.journal`).
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, GroupMeta>,
}

/// A consumer group's settings, fixed when its first member joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupMeta {
    /// "stream" or "queue".
    pub(crate) mode: String,
    pub(crate) ack_wait_ms: u64,
    pub(crate) max_deliveries: u32,
    pub(crate) backoff_ms: Vec<u64>,
    pub(crate) ordered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicMeta {
    pub(crate) partitions: u32,
    pub(crate) retention_ms: Option<u64>,
    pub(crate) retention_bytes: Option<u64>,
    /// "durable", "none", or the interval in ms.
    pub(crate) flush: FlushMeta,
    pub(crate) dedup_window_ms: u64,
    pub(crate) chain: Vec<AttachmentMeta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FlushMeta {
    Durable,
    Interval { interval_ms: u64 },
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentMeta {
    pub(crate) plugin: String,
    pub(crate) version: u32,
    pub(crate) config: String,
    pub(crate) on_error: PolicyMeta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PolicyMeta {
    Reject,
    DeadLetter,
    Bypass,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginMeta {
    pub(crate) versions: Vec<PluginVersionMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginVersionMeta {
    pub(crate) version: u32,
    pub(crate) sha256: String,
    pub(crate) bytes: u64,
}

impl TopicMeta {
    pub(crate) fn from_spec(spec: &TopicSpec) -> TopicMeta {
        TopicMeta {
            partitions: spec.partitions,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            flush: match spec.flush {
                FlushMode::Durable => FlushMeta::Durable,
                FlushMode::Interval { interval_ms } => FlushMeta::Interval { interval_ms },
                FlushMode::None => FlushMeta::None,
            },
            dedup_window_ms: spec.dedup_window_ms,
            chain: Vec::new(),
        }
    }

    pub(crate) fn spec(&self, name: &str) -> TopicSpec {
        TopicSpec {
            name: name.to_string(),
            partitions: self.partitions,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            flush: match self.flush {
                FlushMeta::Durable => FlushMode::Durable,
                FlushMeta::Interval { interval_ms } => FlushMode::Interval { interval_ms },
                FlushMeta::None => FlushMode::None,
            },
            dedup_window_ms: self.dedup_window_ms,
        }
    }
}

impl From<FailurePolicy> for PolicyMeta {
    fn from(p: FailurePolicy) -> Self {
        match p {
            FailurePolicy::Reject => PolicyMeta::Reject,
            FailurePolicy::DeadLetter => PolicyMeta::DeadLetter,
            FailurePolicy::Bypass => PolicyMeta::Bypass,
        }
    }
}

impl From<PolicyMeta> for FailurePolicy {
    fn from(p: PolicyMeta) -> Self {
        match p {
            PolicyMeta::Reject => FailurePolicy::Reject,
            PolicyMeta::DeadLetter => FailurePolicy::DeadLetter,
            PolicyMeta::Bypass => FailurePolicy::Bypass,
        }
    }
}

impl From<PolicyMeta> for weir_plugin::FailurePolicy {
    fn from(p: PolicyMeta) -> Self {
        match p {
            PolicyMeta::Reject => weir_plugin::FailurePolicy::Reject,
            PolicyMeta::DeadLetter => weir_plugin::FailurePolicy::DeadLetter,
            PolicyMeta::Bypass => weir_plugin::FailurePolicy::Bypass,
        }
    }
}

/// Reads `meta.json`, or empty metadata if there is none yet.
pub(crate) fn load(dir: &Path) -> Result<Metadata, NodeError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Metadata {
                format: FORMAT,
                ..Metadata::default()
            });
        }
        Err(e) => return Err(NodeError::io("read", path, e)),
    };
    let meta: Metadata = serde_json::from_str(&text)
        .map_err(|e| NodeError::Corrupt(format!("{} does not parse: {e}", path.display())))?;
    if meta.format != FORMAT {
        return Err(NodeError::Corrupt(format!(
            "{} has format {}, this node reads {FORMAT}",
            path.display(),
            meta.format
        )));
    }
    Ok(meta)
}

/// Replaces `meta.json` atomically.
pub(crate) fn store(dir: &Path, meta: &Metadata) -> Result<(), NodeError> {
    let text = serde_json::to_vec_pretty(meta)
        .map_err(|e| NodeError::Internal(format!("metadata encoding: {e}")))?;
    let tmp: PathBuf = dir.join("meta.json.tmp");
    let path = dir.join(FILE);
    let mut f = File::create(&tmp).map_err(|e| NodeError::io("create", &tmp, e))?;
    f.write_all(&text)
        .map_err(|e| NodeError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| NodeError::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| NodeError::io("rename", &path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NodeError::io("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("empty").topics.len(), 0);
        let mut meta = Metadata {
            format: FORMAT,
            ..Metadata::default()
        };
        let spec = TopicSpec {
            name: "t".into(),
            partitions: 3,
            retention_ms: Some(5),
            retention_bytes: None,
            flush: FlushMode::Interval { interval_ms: 7 },
            dedup_window_ms: 9,
        };
        let mut topic = TopicMeta::from_spec(&spec);
        topic.chain.push(AttachmentMeta {
            plugin: "p".into(),
            version: 2,
            config: "{}".into(),
            on_error: PolicyMeta::DeadLetter,
        });
        meta.topics.insert("t".into(), topic);
        meta.plugins.insert(
            "p".into(),
            PluginMeta {
                versions: vec![PluginVersionMeta {
                    version: 2,
                    sha256: "ab".into(),
                    bytes: 1,
                }],
            },
        );
        store(dir.path(), &meta).expect("store");
        let back = load(dir.path()).expect("load");
        assert_eq!(back, meta);
        assert_eq!(back.topics["t"].spec("t"), spec);
        std::fs::write(dir.path().join(FILE), b"{ not json").expect("write");
        assert!(matches!(load(dir.path()), Err(NodeError::Corrupt(_))));
    }
}
