//! How a log rolls, flushes and expires its segments.

/// When appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// An append returns only after its bytes are fsynced. Appends that
    /// arrive while an fsync runs share the next one (group commit).
    Durable,
    /// Data is fsynced at most every `interval_ms` by whoever calls
    /// [`crate::Log::append`] or [`crate::Log::tick`] after it is due.
    Interval {
        /// Longest time written data stays unsynced while the log is driven.
        interval_ms: u64,
    },
    /// The page cache decides; data is fsynced only when a segment is sealed.
    None,
}

/// Configuration of one log (one partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is sealed and a new one started when the next batch would
    /// take it past this size (a single larger batch gets a segment alone).
    pub segment_bytes_max: u64,
    /// A segment is sealed when its first append is older than this.
    pub segment_age_max_ms: u64,
    /// Bytes of batches between two entries of the sparse offset index (and
    /// of the time index).
    pub index_interval_bytes: u64,
    /// When data is fsynced.
    pub flush: FlushPolicy,
    /// Sealed segments whose newest record is older than this are deleted.
    pub retention_ms: Option<u64>,
    /// Oldest sealed segments are deleted while the log is larger than this.
    pub retention_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_age_max_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Durable,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
        }
    }
}

impl LogConfig {
    /// Smallest accepted `segment_bytes_max`.
    pub const SEGMENT_BYTES_MIN: u64 = 4096;

    /// Largest accepted `segment_bytes_max`: positions in a segment are u32.
    pub const SEGMENT_BYTES_LIMIT: u64 =
        (u32::MAX as u64) - weir_proto::limits::MAX_BATCH_BYTES as u64;

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(Self::SEGMENT_BYTES_MIN..=Self::SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes_max)
        {
            return Err(format!(
                "segment_bytes_max {} is outside {}..={}",
                self.segment_bytes_max,
                Self::SEGMENT_BYTES_MIN,
                Self::SEGMENT_BYTES_LIMIT
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be at least 1".into());
        }
        if let FlushPolicy::Interval { interval_ms: 0 } = self.flush {
            return Err(
                "flush interval must be at least 1 ms (use durable to sync every append)".into(),
            );
        }
        Ok(())
    }
}
