//! The sparse offset index and time index of a segment.
//!
//! Both are hints: a lookup gives a byte position at or before the batch
//! wanted and the caller walks batch headers from there. They live in memory
//! and are written beside a segment when it is sealed; the active segment's
//! are rebuilt by the recovery scan at open. A file that fails any check is
//! ignored and rebuilt from the segment, never trusted.

use weir_proto::BatchHeader;

/// An offset index entry: where the batch starting at `rel_offset` begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) rel_offset: u32,
    pub(crate) position: u32,
}

/// A time index entry: every batch before `position` holds only timestamps
/// up to `timestamp_ms` (the running maximum before that batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp_ms: i64,
    pub(crate) rel_offset: u32,
    pub(crate) position: u32,
}

const OFFSET_ENTRY_LEN: usize = 8;
const TIME_ENTRY_LEN: usize = 16;
const TRAILER_LEN: usize = 8;
const TIME_TRAILER_LEN: usize = 16;

/// Both indexes of one segment, and the state needed to extend them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentIndex {
    pub(crate) offsets: Vec<OffsetEntry>,
    pub(crate) times: Vec<TimeEntry>,
    /// Largest record timestamp in the segment (`i64::MIN` when empty).
    pub(crate) max_timestamp_ms: i64,
    bytes_since_entry: u64,
}

impl SegmentIndex {
    pub(crate) fn new() -> SegmentIndex {
        SegmentIndex {
            max_timestamp_ms: i64::MIN,
            ..SegmentIndex::default()
        }
    }

    /// Notes a batch appended at `position` of a segment starting at `base`.
    /// Both indexes get an entry at the same batches, one per
    /// `interval_bytes` of data.
    pub(crate) fn on_batch(
        &mut self,
        base: u64,
        position: u64,
        header: &BatchHeader,
        interval_bytes: u64,
    ) {
        let rel_offset = (header.base_offset - base) as u32;
        let position = position as u32;
        if self.offsets.is_empty() || self.bytes_since_entry >= interval_bytes {
            if !self.offsets.is_empty() {
                self.times.push(TimeEntry {
                    timestamp_ms: self.max_timestamp_ms,
                    rel_offset,
                    position,
                });
            }
            self.offsets.push(OffsetEntry {
                rel_offset,
                position,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += u64::from(header.batch_len);
        self.max_timestamp_ms = self.max_timestamp_ms.max(header.max_timestamp_ms);
    }

    /// A position at or before the batch that holds `rel_offset`.
    pub(crate) fn position_for_offset(&self, rel_offset: u64) -> u64 {
        let i = self
            .offsets
            .partition_point(|e| u64::from(e.rel_offset) <= rel_offset);
        i.checked_sub(1)
            .map_or(0, |i| u64::from(self.offsets[i].position))
    }

    /// A position such that every batch before it is older than
    /// `timestamp_ms`; the first batch reaching it is at most one index
    /// interval further on.
    pub(crate) fn position_for_time(&self, timestamp_ms: i64) -> u64 {
        let i = self
            .times
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        i.checked_sub(1)
            .map_or(0, |i| u64::from(self.times[i].position))
    }

    pub(crate) fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_LEN + TRAILER_LEN);
        for e in &self.offsets {
            out.extend_from_slice(&e.rel_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        seal(out, self.offsets.len())
    }

    pub(crate) fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_LEN + TRAILER_LEN);
        for e in &self.times {
            out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
            out.extend_from_slice(&e.rel_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        out.extend_from_slice(&self.max_timestamp_ms.to_le_bytes());
        seal(out, self.times.len())
    }

    /// Decodes both index files of a sealed segment of `segment_len` bytes.
    /// `None` if either fails a check; the caller then rebuilds them.
    pub(crate) fn decode(offsets: &[u8], times: &[u8], segment_len: u64) -> Option<SegmentIndex> {
        let offset_entries = unseal(offsets, OFFSET_ENTRY_LEN, TRAILER_LEN)?;
        let (time_entries, max_timestamp) = unseal(times, TIME_ENTRY_LEN, TIME_TRAILER_LEN)?
            .split_at_checked(times.len().checked_sub(TIME_TRAILER_LEN)?)?;
        let max_timestamp_ms = le_u64(max_timestamp) as i64;
        let offsets: Vec<OffsetEntry> = offset_entries
            .chunks_exact(OFFSET_ENTRY_LEN)
            .map(|c| OffsetEntry {
                rel_offset: le_u32(&c[0..4]),
                position: le_u32(&c[4..8]),
            })
            .collect();
        let times: Vec<TimeEntry> = time_entries
            .chunks_exact(TIME_ENTRY_LEN)
            .map(|c| TimeEntry {
                timestamp_ms: le_u64(&c[0..8]) as i64,
                rel_offset: le_u32(&c[8..12]),
                position: le_u32(&c[12..16]),
            })
            .collect();
        let first_ok = offsets
            .first()
            .is_some_and(|e| e.rel_offset == 0 && e.position == 0);
        let offsets_ok = offsets
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position)
            && offsets.iter().all(|e| u64::from(e.position) < segment_len);
        let times_ok = times
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms && w[0].position < w[1].position)
            && times.iter().all(|e| u64::from(e.position) < segment_len);
        if !(first_ok && offsets_ok && times_ok) {
            return None;
        }
        if times
            .last()
            .is_some_and(|e| e.timestamp_ms > max_timestamp_ms)
        {
            return None;
        }
        Some(SegmentIndex {
            offsets,
            times,
            max_timestamp_ms,
            bytes_since_entry: 0,
        })
    }
}

fn seal(mut out: Vec<u8>, count: usize) -> Vec<u8> {
    out.extend_from_slice(&(count as u32).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the count and checksum that end an index file; returns what is
/// before the count (the entries and, for the time index, its maximum).
fn unseal(buf: &[u8], entry_len: usize, trailer_len: usize) -> Option<&[u8]> {
    let body_len = buf.len().checked_sub(TRAILER_LEN)?;
    let (body, trailer) = buf.split_at(body_len);
    let count = le_u32(&trailer[0..4]) as usize;
    let crc = le_u32(&trailer[4..8]);
    let extra = trailer_len - TRAILER_LEN;
    if count.checked_mul(entry_len)?.checked_add(extra)? != body_len
        || crc32c::crc32c(&buf[..body_len + 4]) != crc
    {
        return None;
    }
    Some(body)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base: u64, len: u32, max_ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_len: len,
            attributes: 0,
            record_count: 1,
            first_timestamp_ms: max_ts,
            max_timestamp_ms: max_ts,
            body_crc: 0,
        }
    }

    fn sample() -> SegmentIndex {
        let mut idx = SegmentIndex::new();
        let mut pos = 0;
        for i in 0..100u64 {
            idx.on_batch(1000, pos, &header(1000 + i, 100, (i as i64 / 3) * 10), 1000);
            pos += 100;
        }
        idx
    }

    #[test]
    fn entries_are_sparse_and_lookups_land_at_or_before() {
        let idx = sample();
        assert_eq!(idx.offsets.len(), 10);
        assert_eq!(idx.times.len(), 9);
        for rel in 0..100u64 {
            let pos = idx.position_for_offset(rel);
            assert!(
                pos <= rel * 100 && rel * 100 - pos < 1000,
                "rel {rel} -> {pos}"
            );
        }
        for ts in [-5, 0, 10, 95, 330, 1000] {
            let pos = idx.position_for_time(ts);
            let first = (0..100u64)
                .find(|i| (*i as i64 / 3) * 10 >= ts)
                .map_or(10_000, |i| i * 100);
            assert!(pos <= first, "ts {ts}: {pos} > {first}");
        }
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let idx = sample();
        let (o, t) = (idx.encode_offsets(), idx.encode_times());
        let back = SegmentIndex::decode(&o, &t, 10_000).expect("valid");
        assert_eq!(back.offsets, idx.offsets);
        assert_eq!(back.times, idx.times);
        assert_eq!(back.max_timestamp_ms, idx.max_timestamp_ms);
        for i in 0..o.len() {
            let mut bad = o.clone();
            bad[i] ^= 0x10;
            assert!(
                SegmentIndex::decode(&bad, &t, 10_000).is_none(),
                "flip at {i}"
            );
        }
        assert!(SegmentIndex::decode(&o[..o.len() - 1], &t, 10_000).is_none());
        assert!(
            SegmentIndex::decode(&o, &t, 500).is_none(),
            "positions past the segment"
        );
        assert!(SegmentIndex::decode(&[], &t, 10_000).is_none());
    }
}
