//! Helpers shared by the log's integration tests.
#![allow(dead_code, unreachable_pub)]

use weir_log::Log;
use weir_proto::{BatchBuilder, BatchView, NewRecord};

/// The payload a test writes at `offset`: its own offset, then filler, so a
/// misplaced or damaged record is recognisable.
pub fn payload_for(offset: u64, len: usize) -> Vec<u8> {
    let mut p = offset.to_le_bytes().to_vec();
    p.extend((0..len.saturating_sub(8)).map(|i| (offset as usize + i) as u8));
    p
}

/// A batch of `n` records that will land at `first_offset..`, each with a
/// payload from [`payload_for`] and timestamp `ts_ms + i`.
pub fn batch(first_offset: u64, n: u64, len: usize, ts_ms: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let payload = payload_for(first_offset + i, len);
        b.push(&NewRecord {
            timestamp_ms: ts_ms + i as i64,
            key: Some(b"k"),
            payload: &payload,
            ..NewRecord::default()
        })
        .expect("record fits");
    }
    b.finish().expect("non-empty")
}

/// Appends `batches` batches of `n` records each; returns the end offset.
pub fn fill(log: &Log, batches: u64, n: u64, len: usize, ts_ms: i64) -> u64 {
    for _ in 0..batches {
        let first = log.end_offset();
        let mut b = batch(first, n, len, ts_ms);
        log.append(&mut b, ts_ms).expect("append");
    }
    log.end_offset()
}

/// Every record from `from` to the end, as (offset, timestamp, payload),
/// checking each batch's checksums on the way.
pub fn read_all(log: &Log, from: u64) -> Vec<(u64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let fetched = log.read(next, 64 * 1024).expect("read");
        if fetched.batches.is_empty() {
            return out;
        }
        let mut buf = &fetched.batches[..];
        while !buf.is_empty() {
            let view = BatchView::parse(buf).expect("stored batch is whole");
            for r in view.records() {
                let r = r.expect("stored record decodes");
                if r.offset >= next {
                    out.push((r.offset, r.timestamp_ms, r.payload.to_vec()));
                }
            }
            buf = &buf[view.header().batch_len as usize..];
        }
        next = fetched.next_offset;
    }
}

/// Asserts that the log holds exactly offsets `from..end` with the payloads
/// [`fill`] writes.
pub fn assert_intact(log: &Log, from: u64, end: u64) {
    let records = read_all(log, from);
    assert_eq!(records.len() as u64, end - from, "record count from {from}");
    for (i, (offset, _, payload)) in records.iter().enumerate() {
        assert_eq!(*offset, from + i as u64);
        assert_eq!(
            payload[..8],
            offset.to_le_bytes(),
            "payload at offset {offset}"
        );
    }
}
