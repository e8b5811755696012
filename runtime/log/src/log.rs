//! The log of one partition: append, flush, read, recover, expire.
//!
//! Concurrency: appends serialise on the state lock while they write (one
//! `pwrite` per batch); readers take it shared only long enough to slice a
//! mapping. fsync never holds the state lock, so appends carry on while a
//! group commit is in flight and the next fsync covers them all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use weir_proto::{BatchHeader, BatchView, CheckedBatch, limits::MAX_BATCH_BYTES, set_base_offset};

use crate::config::{FlushPolicy, LogConfig};
use crate::error::{FenceReason, LogError, io_err};
use crate::fs::{Fs, OsFs, read_small, write_all_at, write_batch};
use crate::index::SegmentIndex;
use crate::segment::{
    Segment, WalkEnd, index_path, is_torn_tail, log_name, parse_log_name, rebuild_index, seek,
    time_index_path, valid_batch_after, walk,
};

/// Largest index file the log will read (a 4 GiB segment indexed every
/// byte-sized batch could not need more).
const INDEX_FILE_MAX: u64 = 64 << 20;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// Whether the batch is known to be on stable storage already.
    pub durable: bool,
}

/// Whole batches read from the log: a zero-copy slice of a segment mapping.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Consecutive encoded batches. The first one holds the requested offset
    /// (and may start before it); empty when the reader is caught up.
    pub batches: Bytes,
    /// Offset after the last batch in `batches`: where to read next.
    pub next_offset: u64,
    /// Offset the next append will get (the end of the visible log).
    pub end_offset: u64,
}

/// What [`Log::apply_retention`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// Base offsets of the deleted segments.
    pub deleted_segments: Vec<u64>,
    /// Bytes they held.
    pub deleted_bytes: u64,
    /// First offset the log now holds.
    pub start_offset: u64,
}

/// A summary of the log's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    /// First offset held.
    pub start_offset: u64,
    /// Offset the next append gets.
    pub end_offset: u64,
    /// Every offset below this is on stable storage.
    pub durable_offset: u64,
    /// Number of segments.
    pub segments: usize,
    /// Bytes in all segments.
    pub bytes: u64,
    /// Why the log refuses writes, if it does.
    pub fenced: Option<Arc<FenceReason>>,
}

#[derive(Debug)]
struct State {
    segments: Vec<Segment>,
    /// Set on a fatal error; writes are refused from then on.
    fence: Option<Arc<FenceReason>>,
    last_sync_ms: i64,
}

#[derive(Debug, Default)]
struct SyncState {
    in_progress: bool,
}

/// One partition's segmented, append-only log.
///
/// ```
/// use weir_log::{Log, LogConfig, FlushPolicy};
/// use weir_proto::{BatchBuilder, NewRecord, BatchView};
///
/// let dir = tempfile::tempdir()?;
/// let config = LogConfig { flush: FlushPolicy::Durable, ..LogConfig::default() };
/// let log = Log::open(dir.path(), config, 0)?;
///
/// let mut builder = BatchBuilder::new();
/// builder.push(&NewRecord { payload: b"hello", ..NewRecord::default() })?;
/// let mut batch = builder.finish()?;
/// let appended = log.append(&mut batch, 0)?;
/// assert_eq!((appended.base_offset, appended.durable), (0, true));
///
/// let fetched = log.read(0, 1 << 20)?;
/// let view = BatchView::parse(&fetched.batches)?;
/// assert_eq!(view.records().next().unwrap()?.payload, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    config: LogConfig,
    state: RwLock<State>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Every offset below this is durable.
    durable_offset: AtomicU64,
    /// Offset the next append gets; readable without the state lock.
    end_offset: AtomicU64,
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system. `now_ms`
    /// is the current time, in ms since the Unix epoch.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        Log::open_with(Arc::new(OsFs), dir, config, now_ms)
    }

    /// Opens (or creates) the log in `dir` through `fs`.
    ///
    /// Recovery: the active (last) segment is read whole and every batch's
    /// checksums verified. A damaged batch with no whole batch after it is a
    /// torn tail, an append the crash interrupted: the file is truncated
    /// there. Damage followed by good data is corruption: the log opens
    /// fenced, readable up to the damage, refusing writes. Sealed segments
    /// are checked from their last index entry to their end; missing or
    /// damaged index files are rebuilt from the segment.
    pub fn open_with(
        fs: Arc<dyn Fs>,
        dir: impl AsRef<Path>,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Log, LogError> {
        config.validate().map_err(LogError::Config)?;
        let dir = dir.as_ref().to_path_buf();
        let existed = fs.list_dir(&dir).is_ok();
        fs.create_dir_all(&dir)
            .map_err(io_err("create directory", &dir))?;
        if !existed && let Some(parent) = dir.parent() {
            // A new partition's directory entry must survive a power loss
            // as surely as the appends it will hold.
            fs.sync_dir(parent)
                .map_err(io_err("fsync directory", parent))?;
        }
        let mut bases: Vec<u64> = Vec::new();
        for name in fs.list_dir(&dir).map_err(io_err("list directory", &dir))? {
            if let Some(base) = parse_log_name(&name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut fence: Option<FenceReason> = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(log_name(base));
            if let Some(prev) = segments.last()
                && prev.next_offset != base
            {
                fence = Some(FenceReason::Corrupt {
                    file: path,
                    position: 0,
                    offset: prev.next_offset,
                    detail: format!(
                        "segment starts at offset {base} but the one before ends at {}",
                        prev.next_offset
                    ),
                });
                break;
            }
            let last = i + 1 == bases.len();
            let (segment, damage) = if last {
                recover_active(fs.as_ref(), &config, path, base, now_ms)?
            } else {
                open_sealed(fs.as_ref(), &config, path, base)?
            };
            segments.push(segment);
            if let Some(damage) = damage {
                fence = Some(damage);
                break;
            }
        }
        if segments.is_empty() {
            segments.push(create_segment(fs.as_ref(), &dir, &config, 0)?);
        }
        if let Some(reason) = &fence {
            tracing::error!(dir = %dir.display(), %reason, "log opened fenced: writes are refused");
        }
        let end = segments.last().map_or(0, |s| s.next_offset);
        let log = Log {
            dir,
            fs,
            config,
            state: RwLock::new(State {
                segments,
                fence: fence.map(Arc::new),
                last_sync_ms: now_ms,
            }),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            // What recovery found was read back from the file; whether it
            // is on stable storage is unknown until the next fsync.
            durable_offset: AtomicU64::new(0),
            end_offset: AtomicU64::new(end),
        };
        log.sync_recovered()?;
        Ok(log)
    }

    /// Fsyncs what recovery found so the durable offset starts at the end
    /// (also for a log fenced by corruption: what is before the damage
    /// stays readable, and durable reads need it synced).
    fn sync_recovered(&self) -> Result<(), LogError> {
        let state = self.state.read();
        if let Some(active) = state.segments.last() {
            active
                .file
                .sync_data()
                .map_err(io_err("fsync", &active.path))?;
        }
        self.durable_offset
            .store(self.end_offset.load(Ordering::Acquire), Ordering::Release);
        Ok(())
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Offset the next append gets.
    pub fn end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }

    /// Every offset below this is on stable storage.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset.load(Ordering::Acquire)
    }

    /// Why the log refuses writes, if it does.
    pub fn fenced(&self) -> Option<Arc<FenceReason>> {
        self.state.read().fence.clone()
    }

    /// A summary of the log.
    pub fn stats(&self) -> LogStats {
        let state = self.state.read();
        LogStats {
            start_offset: state.segments.first().map_or(0, |s| s.base),
            end_offset: self.end_offset(),
            durable_offset: self.durable_offset(),
            segments: state.segments.len(),
            bytes: state.segments.iter().map(|s| s.size).sum(),
            fenced: state.fence.clone(),
        }
    }

    /// Appends an encoded batch (from [`weir_proto::BatchBuilder`] or the
    /// wire), stamping its base offset in place, and applies the flush
    /// policy: with [`FlushPolicy::Durable`] this returns after the batch is
    /// fsynced, sharing the fsync with concurrent appends.
    pub fn append(&self, batch: &mut [u8], now_ms: i64) -> Result<Appended, LogError> {
        let appended = self.append_no_wait(batch, now_ms)?;
        let end = appended.last_offset + 1;
        match self.config.flush {
            FlushPolicy::Durable => {
                self.sync_to(end)?;
            }
            FlushPolicy::Interval { .. } => {
                self.tick(now_ms)?;
            }
            FlushPolicy::None => {}
        }
        Ok(Appended {
            durable: self.durable_offset() >= end,
            ..appended
        })
    }

    /// Appends like [`Log::append`] but returns once the batch is written,
    /// whatever the flush policy; the caller waits with [`Log::sync_to`]
    /// when it needs durability. A pipeline that writes many batches before
    /// waiting gets them all into one fsync. The batch is checked whole
    /// first; nothing malformed reaches the disk.
    pub fn append_no_wait(&self, batch: &mut [u8], now_ms: i64) -> Result<Appended, LogError> {
        let view = BatchView::parse(batch)?;
        if view.header().batch_len as usize != batch.len() {
            return Err(LogError::InvalidBatch(
                weir_proto::BatchError::RecordLength {
                    index: view.header().record_count,
                    declared: view.header().batch_len.into(),
                    actual: batch.len() as u64,
                },
            ));
        }
        let appended = self.append_checked_no_wait(view.check()?, now_ms)?;
        set_base_offset(batch, appended.base_offset)?;
        Ok(appended)
    }

    /// Appends a batch the caller has already verified whole (its
    /// checksums and every record), without reading it again or copying
    /// it: the stored header carries the base offset, the body is written
    /// from the caller's buffer as it is. Returns once written, like
    /// [`Log::append_no_wait`].
    pub fn append_checked_no_wait(
        &self,
        batch: CheckedBatch<'_>,
        now_ms: i64,
    ) -> Result<Appended, LogError> {
        let (base_offset, last_offset) = self.write(batch, now_ms)?;
        Ok(Appended {
            base_offset,
            last_offset,
            durable: self.durable_offset() > last_offset,
        })
    }

    /// The log's flush policy.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.config.flush
    }

    fn write(&self, batch: CheckedBatch<'_>, now_ms: i64) -> Result<(u64, u64), LogError> {
        let bytes = batch.as_bytes();
        let mut state = self.state.write();
        if let Some(reason) = &state.fence {
            return Err(LogError::Fenced {
                dir: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        let len = bytes.len() as u64;
        let must_roll = state.segments.last().is_some_and(|active| {
            active.size > 0
                && (active.size + len > self.config.segment_bytes_max
                    || active.first_append_ms.is_some_and(|t| {
                        now_ms.saturating_sub(t) >= self.config.segment_age_max_ms as i64
                    }))
        });
        if must_roll {
            self.roll(&mut state)?;
        }
        let Some(active) = state.segments.last_mut() else {
            return Err(LogError::Config("log has no segment".into()));
        };
        let base_offset = active.next_offset;
        let stamped = batch.header_at(base_offset)?;
        let header = BatchHeader::parse(&stamped)?;
        if let Err(e) = write_batch(active.file.as_ref(), &stamped, bytes, active.size) {
            // Undo a partial write so the next append starts on a batch
            // boundary; if that fails too the tail is in doubt.
            let undo = active.file.set_len(active.size);
            let path = active.path.clone();
            if let Err(undo) = undo {
                let reason = Arc::new(FenceReason::WriteFailed {
                    file: path.clone(),
                    error: format!("{e}; undo: {undo}"),
                });
                tracing::error!(file = %path.display(), %reason, "log fenced");
                state.fence = Some(reason);
            }
            return Err(LogError::Io {
                op: "append to",
                path,
                source: e,
            });
        }
        let position = active.size;
        active.index.on_batch(
            active.base,
            position,
            &header,
            self.config.index_interval_bytes,
        );
        active.size += len;
        active.next_offset = header.next_offset();
        active.first_append_ms.get_or_insert(now_ms);
        if active.size > active.map.len() as u64 {
            // Only a batch larger than the segment's reserve gets here.
            active.map = active
                .file
                .map(active.size as usize)
                .map_err(io_err("map", &active.path))?;
        }
        self.end_offset.store(active.next_offset, Ordering::Release);
        Ok((base_offset, header.last_offset()))
    }

    /// Seals the active segment (fsync, index files) and starts a new one.
    fn roll(&self, state: &mut State) -> Result<(), LogError> {
        let Some(active) = state.segments.last_mut() else {
            return Ok(());
        };
        if let Err(e) = active.file.sync_data() {
            let reason = Arc::new(FenceReason::SyncFailed {
                file: active.path.clone(),
                error: e.to_string(),
            });
            tracing::error!(file = %active.path.display(), %reason, "log fenced");
            state.fence = Some(reason.clone());
            return Err(LogError::Fenced {
                dir: self.dir.clone(),
                reason,
            });
        }
        write_index_files(self.fs.as_ref(), active)?;
        // A sealed segment needs no room to grow.
        active.map = active
            .file
            .map(active.size as usize)
            .map_err(io_err("map", &active.path))?;
        let next = active.next_offset;
        self.durable_offset.fetch_max(next, Ordering::AcqRel);
        let segment = create_segment(self.fs.as_ref(), &self.dir, &self.config, next)?;
        tracing::debug!(dir = %self.dir.display(), base = next, "segment rolled");
        state.segments.push(segment);
        Ok(())
    }

    /// Makes every offset below `end` durable, sharing fsyncs: if one is in
    /// flight, wait for it and start another only if it did not cover `end`.
    pub fn sync_to(&self, end: u64) -> Result<u64, LogError> {
        let mut sync = self.sync.lock();
        loop {
            let durable = self.durable_offset();
            if durable >= end {
                return Ok(durable);
            }
            if let Some(reason) = self.state.read().fence.clone() {
                return Err(LogError::Fenced {
                    dir: self.dir.clone(),
                    reason,
                });
            }
            if sync.in_progress {
                self.synced.wait(&mut sync);
                continue;
            }
            sync.in_progress = true;
            drop(sync);
            // Everything below `target` is written: appends update the end
            // under the state lock after their write returns.
            let (file, path, target) = {
                let state = self.state.read();
                let active = state.segments.last();
                (
                    active.map(|s| s.file.clone()),
                    active.map(|s| s.path.clone()),
                    self.end_offset(),
                )
            };
            let result = file.map_or(Ok(()), |f| f.sync_data());
            sync = self.sync.lock();
            sync.in_progress = false;
            match result {
                Ok(()) => {
                    self.durable_offset.fetch_max(target, Ordering::AcqRel);
                }
                Err(e) => {
                    let file = path.unwrap_or_else(|| self.dir.clone());
                    let reason = Arc::new(FenceReason::SyncFailed {
                        file: file.clone(),
                        error: e.to_string(),
                    });
                    tracing::error!(file = %file.display(), %reason, "fsync failed; log fenced");
                    let mut state = self.state.write();
                    state.fence.get_or_insert(reason);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Drives time-based work: under [`FlushPolicy::Interval`], fsyncs when
    /// the interval has passed since the last one. Returns the durable
    /// offset. Call it from a timer at least as often as the interval.
    pub fn tick(&self, now_ms: i64) -> Result<u64, LogError> {
        let FlushPolicy::Interval { interval_ms } = self.config.flush else {
            return Ok(self.durable_offset());
        };
        let end = self.end_offset();
        if self.durable_offset() >= end {
            return Ok(end);
        }
        {
            let mut state = self.state.write();
            if now_ms.saturating_sub(state.last_sync_ms) < interval_ms as i64 {
                return Ok(self.durable_offset());
            }
            state.last_sync_ms = now_ms;
        }
        self.sync_to(end)
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// about `max_bytes` (at least one batch, never past a segment's end).
    /// Under [`FlushPolicy::Durable`] only durable batches are visible, so a
    /// consumer never sees a message a crash could take back.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Fetched, LogError> {
        let state = self.state.read();
        let visible_end = match self.config.flush {
            FlushPolicy::Durable => self.durable_offset().min(self.end_offset()),
            _ => self.end_offset(),
        };
        let start = state.segments.first().map_or(0, |s| s.base);
        if offset == visible_end {
            return Ok(Fetched {
                batches: Bytes::new(),
                next_offset: offset,
                end_offset: visible_end,
            });
        }
        if offset < start || offset > visible_end {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start,
                end: visible_end,
            });
        }
        let i = state
            .segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1);
        let segment = &state.segments[i];
        let from = segment.index.position_for_offset(offset - segment.base);
        let corrupt = |(position, e): (u64, weir_proto::BatchError)| LogError::Corrupt {
            file: segment.path.clone(),
            position,
            detail: e.to_string(),
        };
        let (first_pos, first) = seek(&segment.map, from, segment.size, offset).map_err(corrupt)?;
        let mut end_pos = first_pos + u64::from(first.batch_len);
        let mut next = first.next_offset();
        while end_pos < segment.size && next < visible_end {
            let Ok(h) = BatchHeader::parse(&segment.map[end_pos as usize..segment.size as usize])
            else {
                break;
            };
            let after = end_pos + u64::from(h.batch_len);
            if after - first_pos > max_bytes as u64
                || after > segment.size
                || h.next_offset() > visible_end
            {
                break;
            }
            end_pos = after;
            next = h.next_offset();
        }
        if next > visible_end {
            // The batch holding `offset` is not durable yet.
            return Ok(Fetched {
                batches: Bytes::new(),
                next_offset: offset,
                end_offset: visible_end,
            });
        }
        Ok(Fetched {
            batches: segment.map.slice(first_pos as usize..end_pos as usize),
            next_offset: next,
            end_offset: visible_end,
        })
    }

    /// The offset of the first record whose timestamp is at or after
    /// `timestamp_ms`, or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
        let state = self.state.read();
        let Some(segment) = state
            .segments
            .iter()
            .find(|s| s.index.max_timestamp_ms >= timestamp_ms)
        else {
            return Ok(None);
        };
        let mut position = segment.index.position_for_time(timestamp_ms);
        while position < segment.size {
            let buf = &segment.map[position as usize..segment.size as usize];
            let view = BatchView::parse(buf).map_err(|e| LogError::Corrupt {
                file: segment.path.clone(),
                position,
                detail: e.to_string(),
            })?;
            if view.header().max_timestamp_ms >= timestamp_ms {
                for record in view.records() {
                    let record = record.map_err(|e| LogError::Corrupt {
                        file: segment.path.clone(),
                        position,
                        detail: e.to_string(),
                    })?;
                    if record.timestamp_ms >= timestamp_ms {
                        return Ok(Some(record.offset));
                    }
                }
            }
            position += u64::from(view.header().batch_len);
        }
        Ok(None)
    }

    /// Deletes sealed segments past the retention limits: those whose newest
    /// record is older than `retention_ms`, then the oldest while the log is
    /// larger than `retention_bytes`. The active segment is never deleted.
    /// Readers holding slices of a deleted segment keep them: the mapping
    /// lives until the last slice is dropped.
    pub fn apply_retention(&self, now_ms: i64) -> Result<Retained, LogError> {
        let removed: Vec<Segment> = {
            let mut state = self.state.write();
            let sealed = state.segments.len().saturating_sub(1);
            let mut total: u64 = state.segments.iter().map(|s| s.size).sum();
            let mut n = 0;
            while n < sealed {
                let s = &state.segments[n];
                let expired = self
                    .config
                    .retention_ms
                    .is_some_and(|ms| s.index.max_timestamp_ms < now_ms.saturating_sub(ms as i64));
                let oversized = self.config.retention_bytes.is_some_and(|max| total > max);
                if !(expired || oversized) {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            state.segments.drain(..n).collect()
        };
        let mut report = Retained {
            start_offset: self.stats().start_offset,
            ..Retained::default()
        };
        for segment in removed {
            for path in [
                index_path(&segment.path),
                time_index_path(&segment.path),
                segment.path.clone(),
            ] {
                match self.fs.remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(LogError::Io {
                            op: "delete",
                            path,
                            source: e,
                        });
                    }
                }
            }
            tracing::info!(dir = %self.dir.display(), base = segment.base, bytes = segment.size, "segment deleted by retention");
            report.deleted_segments.push(segment.base);
            report.deleted_bytes += segment.size;
        }
        if !report.deleted_segments.is_empty() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_err("fsync directory", &self.dir))?;
        }
        Ok(report)
    }

    /// Fsyncs everything written, for a clean shutdown.
    pub fn close(self) -> Result<(), LogError> {
        let end = self.end_offset();
        if self.fenced().is_none() {
            self.sync_to(end)?;
        }
        Ok(())
    }
}

/// The mapping a segment gets: room for it to grow to its limit, plus one
/// batch past it.
fn reserve(config: &LogConfig) -> usize {
    (config.segment_bytes_max as usize).saturating_add(MAX_BATCH_BYTES)
}

fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    config: &LogConfig,
    base: u64,
) -> Result<Segment, LogError> {
    let path = dir.join(log_name(base));
    let file = fs.open(&path, true).map_err(io_err("create", &path))?;
    fs.sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    let map = file.map(reserve(config)).map_err(io_err("map", &path))?;
    Ok(Segment {
        base,
        path,
        file,
        map,
        size: 0,
        next_offset: base,
        index: SegmentIndex::new(),
        first_append_ms: None,
    })
}

fn write_index_files(fs: &dyn Fs, segment: &Segment) -> Result<(), LogError> {
    for (path, bytes) in [
        (index_path(&segment.path), segment.index.encode_offsets()),
        (time_index_path(&segment.path), segment.index.encode_times()),
    ] {
        let file = fs.open(&path, true).map_err(io_err("create", &path))?;
        file.set_len(0).map_err(io_err("truncate", &path))?;
        write_all_at(file.as_ref(), &bytes, 0).map_err(io_err("write", &path))?;
        file.sync_data().map_err(io_err("fsync", &path))?;
    }
    Ok(())
}

/// Opens a sealed segment: indexes from their files (or rebuilt), then the
/// batches after the last index entry are walked to find its end.
fn open_sealed(
    fs: &dyn Fs,
    config: &LogConfig,
    path: PathBuf,
    base: u64,
) -> Result<(Segment, Option<FenceReason>), LogError> {
    let file = fs.open(&path, false).map_err(io_err("open", &path))?;
    let len = file.len().map_err(io_err("stat", &path))?;
    let map = file.map(len as usize).map_err(io_err("map", &path))?;
    let loaded = match (
        read_small(fs, &index_path(&path), INDEX_FILE_MAX),
        read_small(fs, &time_index_path(&path), INDEX_FILE_MAX),
    ) {
        (Ok(o), Ok(t)) => SegmentIndex::decode(&o, &t, len),
        _ => None,
    };
    let rebuilt = loaded.is_none();
    let (index, end) = match loaded {
        Some(index) => {
            let last = index
                .offsets
                .last()
                .copied()
                .unwrap_or(crate::index::OffsetEntry {
                    rel_offset: 0,
                    position: 0,
                });
            let end = walk(
                &map,
                last.position.into(),
                len,
                base + u64::from(last.rel_offset),
                false,
                |_, _| {},
            );
            (index, end)
        }
        None => {
            tracing::warn!(file = %path.display(), "index files missing or damaged; rebuilding from the segment");
            rebuild_index(&map, base, len, config.index_interval_bytes, false)
        }
    };
    let damage = end
        .damage
        .clone()
        .map(|detail| corrupt_at(&path, &end, detail));
    let segment = Segment::opened(base, path, file, map, &end, index, None);
    if damage.is_none() && rebuilt {
        write_index_files(fs, &segment)?;
    }
    Ok((segment, damage))
}

/// Opens the active segment: verify every batch, truncate a torn tail,
/// fence on corruption.
fn recover_active(
    fs: &dyn Fs,
    config: &LogConfig,
    path: PathBuf,
    base: u64,
    now_ms: i64,
) -> Result<(Segment, Option<FenceReason>), LogError> {
    let file = fs.open(&path, false).map_err(io_err("open", &path))?;
    let len = file.len().map_err(io_err("stat", &path))?;
    let scan_map = file.map(len as usize).map_err(io_err("map", &path))?;
    // The segment's age survives a restart: it counts from its first
    // batch's timestamp, but never from the future.
    let first_append_ms = BatchHeader::parse(&scan_map)
        .ok()
        .map(|h| h.first_timestamp_ms.min(now_ms));
    let (index, end) = rebuild_index(&scan_map, base, len, config.index_interval_bytes, true);
    let at = end.position as usize;
    let corrupt = |detail: String| corrupt_at(&path, &end, detail);
    let damage = match &end.damage {
        None => None,
        Some(detail) => match valid_batch_after(&scan_map, at, end.next_offset) {
            Some(next) => Some(corrupt(format!(
                "{detail} (a whole batch follows at byte {next})"
            ))),
            None if !is_torn_tail(&scan_map, at) => Some(corrupt(format!(
                "{detail} (the last batch is whole in length, so this is not an interrupted write)"
            ))),
            None => None,
        },
    };
    let map = if damage.is_some() {
        // Fenced: no appends, so the scan's mapping is all it needs.
        scan_map
    } else {
        // No slice of the scan's mapping escapes: drop it before truncating.
        drop(scan_map);
        if let Some(detail) = &end.damage {
            tracing::warn!(
                file = %path.display(),
                position = end.position,
                dropped_bytes = len - end.position,
                %detail,
                "truncating torn tail"
            );
            file.set_len(end.position)
                .map_err(io_err("truncate", &path))?;
            file.sync_data().map_err(io_err("fsync", &path))?;
        }
        file.map(reserve(config)).map_err(io_err("map", &path))?
    };
    let first_append_ms = first_append_ms.filter(|_| end.position > 0);
    let segment = Segment::opened(base, path, file, map, &end, index, first_append_ms);
    Ok((segment, damage))
}

/// The fence for damage a walk stopped at.
fn corrupt_at(path: &Path, end: &WalkEnd, detail: String) -> FenceReason {
    FenceReason::Corrupt {
        file: path.to_path_buf(),
        position: end.position,
        offset: end.next_offset,
        detail,
    }
}
