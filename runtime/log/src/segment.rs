//! One segment file: its name, its mapping, and the walks over its batches
//! that open, read and recovery need.
//!
//! A walk trusts nothing it reads: every header is parsed (and checksummed)
//! before its length moves the cursor, and an offset out of sequence stops
//! the walk like a bad checksum does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use weir_proto::{BATCH_HEADER_LEN, BATCH_MAGIC, BatchError, BatchHeader, BatchView};

use crate::fs::FileHandle;
use crate::index::SegmentIndex;

/// A segment of a log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn FileHandle>,
    /// A read-only mapping; bytes `[0, size)` are written and checked.
    pub(crate) map: Bytes,
    pub(crate) size: u64,
    pub(crate) next_offset: u64,
    pub(crate) index: SegmentIndex,
    /// When the first batch went into this segment (for rolling by age).
    pub(crate) first_append_ms: Option<i64>,
}

impl Segment {
    /// A segment opened at start, holding what the walk `end` found good.
    pub(crate) fn opened(
        base: u64,
        path: PathBuf,
        file: Arc<dyn FileHandle>,
        map: Bytes,
        end: &WalkEnd,
        index: SegmentIndex,
        first_append_ms: Option<i64>,
    ) -> Segment {
        Segment {
            base,
            path,
            file,
            map,
            size: end.position,
            next_offset: end.next_offset,
            index,
            first_append_ms,
        }
    }
}

pub(crate) fn log_name(base: u64) -> String {
    format!("{base:020}.log")
}

pub(crate) fn index_path(log: &Path) -> PathBuf {
    log.with_extension("index")
}

pub(crate) fn time_index_path(log: &Path) -> PathBuf {
    log.with_extension("timeindex")
}

/// The base offset named by a segment file name, `{base:020}.log`.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a walk over a segment stopped.
#[derive(Debug)]
pub(crate) struct WalkEnd {
    /// Byte position after the last good batch.
    pub(crate) position: u64,
    /// Offset after the last good batch.
    pub(crate) next_offset: u64,
    /// Why the walk stopped before the end, if it did.
    pub(crate) damage: Option<String>,
}

/// Walks batches from `position` (where the batch starting at `offset`
/// begins) to `end`, checking each header, and the body too when `verify`.
/// Each good batch is passed to `on_batch`.
pub(crate) fn walk(
    map: &[u8],
    mut position: u64,
    end: u64,
    mut offset: u64,
    verify: bool,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> WalkEnd {
    while position < end {
        let buf = &map[position as usize..end as usize];
        let header = if verify {
            BatchView::parse(buf).map(|v| *v.header())
        } else {
            BatchHeader::parse(buf).and_then(|h| {
                if (h.batch_len as usize) > buf.len() {
                    Err(BatchError::Truncated {
                        what: "batch body",
                        needed: h.batch_len as usize,
                        available: buf.len(),
                    })
                } else {
                    Ok(h)
                }
            })
        };
        let damage = match header {
            Ok(h) if h.base_offset == offset => {
                on_batch(position, &h);
                position += u64::from(h.batch_len);
                offset = h.next_offset();
                continue;
            }
            Ok(h) => format!(
                "batch has offset {} where {offset} was expected",
                h.base_offset
            ),
            Err(e) => e.to_string(),
        };
        return WalkEnd {
            position,
            next_offset: offset,
            damage: Some(damage),
        };
    }
    WalkEnd {
        position,
        next_offset: offset,
        damage: None,
    }
}

/// Finds the position of the batch holding `offset`, walking headers from
/// `position` (a batch boundary at or before it, whose batch starts at
/// `position_offset`). Returns the position and that batch's header.
pub(crate) fn seek(
    map: &[u8],
    mut position: u64,
    end: u64,
    target: u64,
) -> Result<(u64, BatchHeader), (u64, BatchError)> {
    loop {
        let buf = map.get(position as usize..end as usize).unwrap_or_default();
        let h = BatchHeader::parse(buf).map_err(|e| (position, e))?;
        if h.batch_len as usize > buf.len() {
            return Err((
                position,
                BatchError::Truncated {
                    what: "batch body",
                    needed: h.batch_len as usize,
                    available: buf.len(),
                },
            ));
        }
        if h.next_offset() > target {
            return Ok((position, h));
        }
        position += u64::from(h.batch_len);
    }
}

/// Whether a whole, checksummed batch that plausibly follows a damaged one
/// (expected at `offset`) starts anywhere in `map[from..]`. Finding one means
/// the damage at `from` is not an interrupted last write.
pub(crate) fn valid_batch_after(map: &[u8], from: usize, offset: u64) -> Option<usize> {
    let last = map.len().checked_sub(BATCH_HEADER_LEN)?;
    (from + 1..=last).find(|&q| {
        // Cheap filter before the checksums: magic and zero reserved bytes.
        map[q + 12] == BATCH_MAGIC
            && map[q + 13] == 0
            && map[q + 14] == 0
            && map[q + 15] == 0
            && BatchView::parse(&map[q..]).is_ok_and(|v| {
                let base = v.header().base_offset;
                base > offset && base - offset <= (q - from) as u64
            })
    })
}

/// Sector size below which a lost write can leave zeros mid-batch.
const SECTOR_BYTES: usize = 512;

/// Whether damage at `map[from..]`, with no whole batch after it, looks like
/// a write that never finished rather than damage to data that was written:
///
/// - the file ends inside the batch: too short for a header, or a header
///   whose checksum holds and whose length runs past the end (a process
///   killed mid-write leaves exactly this);
/// - or everything from the batch start, or from a sector boundary inside
///   it, to the end of the file is zero (pages that never reached the disk
///   before a power loss read back as zeros).
///
/// Anything else, such as a whole-length batch with a flipped bit, is
/// corruption even at the tail: it may have been acknowledged as durable.
pub(crate) fn is_torn_tail(map: &[u8], from: usize) -> bool {
    let rest = &map[from..];
    if rest.len() < BATCH_HEADER_LEN {
        return true;
    }
    if let Err(BatchError::Truncated { .. }) = BatchHeader::parse(rest).and_then(|h| {
        if h.batch_len as usize > rest.len() {
            Err(BatchError::Truncated {
                what: "batch body",
                needed: h.batch_len as usize,
                available: rest.len(),
            })
        } else {
            Ok(h)
        }
    }) {
        return true;
    }
    let zeros_from = from + rest.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    zeros_from == from || zeros_from.next_multiple_of(SECTOR_BYTES) < map.len()
}

/// Builds the indexes of a segment by walking it.
pub(crate) fn rebuild_index(
    map: &[u8],
    base: u64,
    end: u64,
    interval_bytes: u64,
    verify: bool,
) -> (SegmentIndex, WalkEnd) {
    let mut index = SegmentIndex::new();
    let walk_end = walk(map, 0, end, base, verify, |pos, h| {
        index.on_batch(base, pos, h, interval_bytes)
    });
    (index, walk_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(log_name(42), "00000000000000000042.log");
        assert_eq!(parse_log_name(&log_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.index",
            "00000000000000000042.log.tmp",
        ] {
            assert_eq!(parse_log_name(bad), None, "{bad}");
        }
    }
}
