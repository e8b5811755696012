//! A topic: its partitions (one log each), its plugin chain, and the
//! signal that wakes consumers when a partition grows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use weir_log::{FlushPolicy, Log, LogConfig};
use weir_proto::frame::{FlushMode, PartitionInfo, TopicSpec};

use crate::NodeError;
use crate::dedup::{DedupWindow, Seen};

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
        PartitionInfo {
            start_offset: stats.start_offset,
            end_offset: stats.end_offset,
            bytes: stats.bytes,
        }
    }
}

/// A topic and its partitions.
pub(crate) struct Topic {
    pub(crate) spec: TopicSpec,
    pub(crate) dir: PathBuf,
    pub(crate) partitions: Vec<Arc<Partition>>,
    pub(crate) chain: weir_plugin::Chain,
    /// Keys stored within the dedup window; locked across check, append
    /// and insert by ingest.
    pub(crate) dedup: Mutex<DedupWindow>,
    next_partition: AtomicU32,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Topic {
    /// Opens (creating if needed) every partition's log under `dir`.
    pub(crate) fn open(
        dir: &Path,
        spec: TopicSpec,
        segment_bytes: u64,
        chain: Vec<Arc<weir_plugin::Attachment>>,
        dedup_max_entries: usize,
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
            let partition = Partition {
                index,
                log,
                visible,
            };
            partition.publish();
            partitions.push(Arc::new(partition));
        }
        let mut dedup = DedupWindow::new(spec.dedup_window_ms, dedup_max_entries);
        if dedup.enabled() {
            for p in &partitions {
                rebuild_window(&mut dedup, p, now_ms);
            }
            tracing::info!(topic = %spec.name, keys = dedup.len(), "dedup window rebuilt from the log");
        }
        Ok(Topic {
            spec,
            dir: dir.to_path_buf(),
            partitions,
            chain: weir_plugin::Chain::new(chain),
            dedup: Mutex::new(dedup),
            next_partition: AtomicU32::new(0),
        })
    }

    /// Whether this topic deduplicates.
    pub(crate) fn dedup_enabled(&self) -> bool {
        self.spec.dedup_window_ms > 0
    }

    /// A partition for a message with no key and no choice made: round
    /// robin, one step per call.
    pub(crate) fn round_robin(&self) -> u32 {
        self.next_partition.fetch_add(1, Ordering::Relaxed) % self.spec.partitions.max(1)
    }
}

/// Reads the records of the last window of `p` back into `window`: each
/// stored record carries its dedup key (or the producer's id).
fn rebuild_window(window: &mut DedupWindow, p: &Partition, now_ms: i64) {
    let horizon = now_ms.saturating_sub(i64::try_from(window.window_ms()).unwrap_or(i64::MAX));
    let mut next = match p.log.offset_for_timestamp(horizon) {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(partition = p.index, error = %e, "dedup window not rebuilt for this partition");
            return;
        }
    };
    loop {
        let fetched = match p.log.read(next, 1 << 20) {
            Ok(f) if !f.batches.is_empty() => f,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(partition = p.index, error = %e, "dedup window rebuilt only up to offset {next}");
                return;
            }
        };
        let mut buf = &fetched.batches[..];
        while let Ok(view) = weir_proto::BatchView::parse(buf) {
            for record in view.records().flatten() {
                if record.offset < next {
                    continue;
                }
                if let Some(key) = record.dedup_key.or(record.id) {
                    window.insert(
                        key,
                        Seen {
                            partition: p.index,
                            offset: record.offset,
                        },
                        record.timestamp_ms,
                        now_ms,
                    );
                }
            }
            buf = &buf[view.header().batch_len as usize..];
        }
        next = fetched.next_offset;
    }
}

fn log_config(spec: &TopicSpec, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max: segment_bytes,
        flush: match spec.flush {
            FlushMode::Durable => FlushPolicy::Durable,
            FlushMode::Interval { interval_ms } => FlushPolicy::Interval {
                interval_ms: interval_ms.max(1),
            },
            FlushMode::None => FlushPolicy::None,
        },
        retention_ms: spec.retention_ms,
        retention_bytes: spec.retention_bytes,
        ..LogConfig::default()
    }
}
