//! A topic: its partitions (one log each), its plugin chain, and the
//! signal that wakes consumers when a partition grows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;
use weir_log::{FlushPolicy, Log, LogConfig};
use weir_proto::frame::{FlushMode, PartitionInfo, TopicSpec};

use crate::NodeError;

/// One partition of a topic.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) index: u32,
    pub(crate) log: Log,
    /// The end of what consumers may see; bumped after appends (or after
    /// fsyncs, on durable topics).
    visible: watch::Sender<u64>,
}

impl Partition {
    /// The end of what consumers may read: durable data only on a durable
    /// topic, everything written otherwise.
    pub(crate) fn visible_end(&self) -> u64 {
        match self.log.flush_policy() {
            FlushPolicy::Durable => self.log.durable_offset().min(self.log.end_offset()),
            _ => self.log.end_offset(),
        }
    }

    /// Wakes consumers if the visible end moved.
    pub(crate) fn publish(&self) {
        let end = self.visible_end();
        self.visible.send_if_modified(|v| {
            if end > *v {
                *v = end;
                true
            } else {
                false
            }
        });
    }

    /// A receiver that changes whenever the visible end moves.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.visible.subscribe()
    }

    /// Whether appends must be fsynced before consumers see them.
    pub(crate) fn is_durable(&self) -> bool {
        self.log.flush_policy() == FlushPolicy::Durable
    }

    pub(crate) fn info(&self) -> PartitionInfo {
        let stats = self.log.stats();
        PartitionInfo { start_offset: stats.start_offset, end_offset: stats.end_offset, bytes: stats.bytes }
    }
}

/// A topic and its partitions.
pub(crate) struct Topic {
    pub(crate) spec: TopicSpec,
    pub(crate) dir: PathBuf,
    pub(crate) partitions: Vec<Arc<Partition>>,
    pub(crate) chain: weir_plugin::Chain,
    next_partition: AtomicU32,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Topic {
    /// Opens (creating if needed) every partition's log under `dir`.
    pub(crate) fn open(
        dir: &Path,
        spec: TopicSpec,
        segment_bytes: u64,
        chain: Vec<Arc<weir_plugin::Attachment>>,
        now_ms: i64,
    ) -> Result<Topic, NodeError> {
        let config = log_config(&spec, segment_bytes);
        let mut partitions = Vec::with_capacity(spec.partitions as usize);
        for index in 0..spec.partitions {
            let log = Log::open(dir.join(index.to_string()), config.clone(), now_ms)?;
            if let Some(reason) = log.fenced() {
                tracing::error!(topic = %spec.name, partition = index, %reason, "partition is fenced: writes refused");
            }
            let (visible, _) = watch::channel(0);
            let partition = Partition { index, log, visible };
            partition.publish();
            partitions.push(Arc::new(partition));
        }
        Ok(Topic {
            spec,
            dir: dir.to_path_buf(),
            partitions,
            chain: weir_plugin::Chain::new(chain),
            next_partition: AtomicU32::new(0),
        })
    }

    /// A partition for a message with no key and no choice made: round
    /// robin, one step per call.
    pub(crate) fn round_robin(&self) -> u32 {
        self.next_partition.fetch_add(1, Ordering::Relaxed) % self.spec.partitions.max(1)
    }
}

fn log_config(spec: &TopicSpec, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max: segment_bytes,
        flush: match spec.flush {
            FlushMode::Durable => FlushPolicy::Durable,
            FlushMode::Interval { interval_ms } => FlushPolicy::Interval { interval_ms: interval_ms.max(1) },
            FlushMode::None => FlushPolicy::None,
        },
        retention_ms: spec.retention_ms,
        retention_bytes: spec.retention_bytes,
        ..LogConfig::default()
    }
}
