//! Finding one stored message by its producer id or its dedup key (the
//! RocketMQ IndexFile use case). The topic's dedup window answers keys
//! stored within it directly; anything else is a scan of every partition
//! from its first offset, bounded by a byte budget. Blocking (it reads the
//! log): callers run it on a blocking thread. It never copies a batch: the
//! answer is a slice of what the log read.

use bytes::Bytes;
use weir_log::LogError;
use weir_proto::BatchView;

use crate::NodeError;
use crate::topic::{Partition, Topic};

/// Bytes asked of the log per read while scanning.
const FETCH_BYTES: usize = 1 << 20;

/// A stored message and the batch that holds it.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    timestamp_ms: i64,
    /// The one encoded batch holding `offset`.
    pub(crate) batch: Bytes,
}

/// Finds the message whose id or dedup key is `key`.
///
/// When several records match (a key outside any dedup window, stored
/// twice), the answer is the most recent: in each partition the match at
/// the highest offset, and of those the one with the latest timestamp (on
/// a tie, the higher partition). A scan that reads `scan_bytes_max` bytes
/// stops there; it answers the most recent match it has seen, or not
/// found saying the limit stopped it.
pub(crate) fn find(
    topic: &Topic,
    key: &[u8],
    now_ms: i64,
    scan_bytes_max: u64,
) -> Result<Found, NodeError> {
    if let Some(found) = from_window(topic, key, now_ms)? {
        return Ok(found);
    }
    let mut best: Option<Found> = None;
    let mut budget = Budget {
        left: scan_bytes_max,
        exhausted: false,
    };
    for p in &topic.partitions {
        let mut latest = None;
        scan(p, key, &mut budget, &mut latest)?;
        if let Some(found) = latest
            && best
                .as_ref()
                .is_none_or(|b| found.timestamp_ms >= b.timestamp_ms)
        {
            best = Some(found);
        }
        if budget.exhausted {
            break;
        }
    }
    match best {
        Some(found) => {
            if budget.exhausted {
                tracing::info!(topic = %topic.spec.name, "lookup hit its scan limit; answering the latest match seen");
            }
            Ok(found)
        }
        None => {
            let shown = String::from_utf8_lossy(key);
            let name = &topic.spec.name;
            if budget.exhausted {
                Err(NodeError::NotFound(format!(
                    "no message with id {shown:?} found in topic {name:?} before the scan limit \
                     ({scan_bytes_max} bytes, limits.lookup_scan_bytes_max) was reached"
                )))
            } else {
                Err(NodeError::NotFound(format!(
                    "no message with id {shown:?} in topic {name:?} (searched {} partitions)",
                    topic.partitions.len()
                )))
            }
        }
    }
}

struct Budget {
    left: u64,
    exhausted: bool,
}

/// The dedup window's answer, read back from the log and checked. A miss
/// (no window, key not in it, record gone to retention) falls back to the
/// scan.
fn from_window(topic: &Topic, key: &[u8], now_ms: i64) -> Result<Option<Found>, NodeError> {
    if !topic.dedup_enabled() {
        return Ok(None);
    }
    let Some(seen) = topic.dedup.lock().get(key, now_ms) else {
        return Ok(None);
    };
    let Some(p) = topic.partitions.get(seen.partition as usize) else {
        return Ok(None);
    };
    let fetched = match p.log.read(seen.offset, FETCH_BYTES) {
        Ok(f) => f,
        Err(LogError::OffsetOutOfRange { .. }) => return Ok(None),
        Err(e) => return Err(NodeError::Internal(format!("partition {}: {e}", p.index))),
    };
    // Only the record at the window's place counts; a later match in the
    // same read leaves the answer to the scan.
    let mut latest = None;
    matches_in(p, &fetched.batches, seen.offset, key, &mut latest)?;
    Ok(latest.filter(|f: &Found| f.offset == seen.offset))
}

/// Reads `p` from its first offset to its visible end, within the budget.
fn scan(
    p: &Partition,
    key: &[u8],
    budget: &mut Budget,
    latest: &mut Option<Found>,
) -> Result<(), NodeError> {
    let mut next = p.log.stats().start_offset;
    let end = p.visible_end();
    while next < end {
        if budget.left == 0 {
            budget.exhausted = true;
            return Ok(());
        }
        let fetched = match p.log.read(next, FETCH_BYTES) {
            Ok(f) => f,
            // Retention deleted the segment under the cursor: go on from
            // the new start.
            Err(LogError::OffsetOutOfRange { start, .. }) if start > next => {
                next = start;
                continue;
            }
            Err(e) => return Err(NodeError::Internal(format!("partition {}: {e}", p.index))),
        };
        if fetched.batches.is_empty() || fetched.next_offset <= next {
            return Ok(());
        }
        budget.left = budget.left.saturating_sub(fetched.batches.len() as u64);
        matches_in(p, &fetched.batches, next, key, latest)?;
        next = fetched.next_offset;
    }
    Ok(())
}

/// Looks at every record at or after `from` in `batches` of partition `p`;
/// a match replaces `latest` (the previous match in `p`, at a lower offset).
fn matches_in(
    p: &Partition,
    batches: &Bytes,
    from: u64,
    key: &[u8],
    latest: &mut Option<Found>,
) -> Result<(), NodeError> {
    let corrupt = |at: usize, e: &dyn std::fmt::Display| {
        NodeError::Internal(format!(
            "partition {}: a stored batch at byte {at} of a read from offset {from}: {e}",
            p.index
        ))
    };
    let mut pos = 0;
    while pos < batches.len() {
        let view = BatchView::parse(&batches[pos..]).map_err(|e| corrupt(pos, &e))?;
        let len = view.header().batch_len as usize;
        for record in view.records() {
            let record = record.map_err(|e| corrupt(pos, &e))?;
            if record.offset < from || !(record.id == Some(key) || record.dedup_key == Some(key)) {
                continue;
            }
            *latest = Some(Found {
                partition: p.index,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                batch: batches.slice(pos..(pos + len).min(batches.len())),
            });
        }
        pos += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_proto::frame::{FlushMode, TopicSpec};
    use weir_proto::{BatchBuilder, NewRecord};

    use super::*;
    use crate::dedup::Seen;

    const NOW: i64 = 1_700_000_000_000;

    fn topic(dir: &std::path::Path, partitions: u32, dedup_window_ms: u64) -> Topic {
        let spec = TopicSpec {
            name: "t".into(),
            partitions,
            retention_ms: None,
            retention_bytes: None,
            flush: FlushMode::None,
            dedup_window_ms,
        };
        Topic::open(dir, spec, 1 << 20, Vec::new(), 1000, NOW).expect("open")
    }

    /// Appends one batch of (id, dedup key, payload, timestamp) records.
    fn append(p: &Partition, records: &[(&str, Option<&str>, &str, i64)]) -> u64 {
        let mut b = BatchBuilder::new();
        for (id, dedup, payload, ts) in records {
            b.push(&NewRecord {
                timestamp_ms: *ts,
                id: Some(id.as_bytes()),
                dedup_key: dedup.map(str::as_bytes),
                payload: payload.as_bytes(),
                ..NewRecord::default()
            })
            .expect("push");
        }
        let mut bytes = b.finish().expect("finish");
        p.log.append(&mut bytes, NOW).expect("append").base_offset
    }

    fn payload(found: &Found) -> Vec<u8> {
        let view = BatchView::parse(&found.batch).expect("one whole batch");
        assert_eq!(
            view.header().batch_len as usize,
            found.batch.len(),
            "exactly one batch"
        );
        let record = view
            .records()
            .flatten()
            .find(|r| r.offset == found.offset)
            .expect("the batch holds the offset");
        record.payload.to_vec()
    }

    #[test]
    fn the_window_answers_without_a_scan_and_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = topic(dir.path(), 2, 60_000);
        let base = append(
            &t.partitions[1],
            &[("a", None, "pa", NOW), ("b", Some("order-7"), "pb", NOW)],
        );
        t.dedup.lock().insert(
            b"order-7",
            Seen {
                partition: 1,
                offset: base + 1,
            },
            NOW,
            NOW,
        );
        // A stale entry: the record at that place has another key.
        t.dedup.lock().insert(
            b"ghost",
            Seen {
                partition: 1,
                offset: base,
            },
            NOW,
            NOW,
        );

        // A budget of zero bytes: only the window can answer.
        let found = find(&t, b"order-7", NOW, 0).expect("from the window");
        assert_eq!(
            (found.partition, found.offset, payload(&found)),
            (1, base + 1, b"pb".to_vec())
        );
        let err = find(&t, b"ghost", NOW, 0).expect_err("stale entry is not trusted");
        assert!(err.to_string().contains("scan limit"), "{err}");
        // The producer id of a record stored under a plugin's key: the scan.
        let found = find(&t, b"b", NOW, 1 << 30).expect("by scan");
        assert_eq!((found.partition, found.offset), (1, base + 1));
    }

    #[test]
    fn the_scan_answers_the_most_recent_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = topic(dir.path(), 3, 0);
        append(
            &t.partitions[0],
            &[("x", None, "old", NOW - 10), ("y", None, "y", NOW)],
        );
        append(&t.partitions[2], &[("x", None, "newest", NOW)]);
        append(&t.partitions[1], &[("x", None, "middle", NOW - 5)]);
        append(
            &t.partitions[0],
            &[("x", None, "older-but-later-offset", NOW - 20)],
        );
        let found = find(&t, b"x", NOW, 1 << 30).expect("found");
        assert_eq!((found.partition, payload(&found)), (2, b"newest".to_vec()));
        let err = find(&t, b"z", NOW, 1 << 30).expect_err("absent");
        assert_eq!(
            err.to_string(),
            "no message with id \"z\" in topic \"t\" (searched 3 partitions)"
        );
        // Within a partition the highest offset is its latest, whatever its
        // timestamp; across partitions the timestamps decide.
        let dir = tempfile::tempdir().expect("tempdir");
        let t = topic(dir.path(), 2, 0);
        append(
            &t.partitions[0],
            &[
                ("x", None, "p0-first", NOW),
                ("x", None, "p0-last", NOW - 30),
            ],
        );
        append(&t.partitions[1], &[("x", None, "p1", NOW - 20)]);
        let found = find(&t, b"x", NOW, 1 << 30).expect("found");
        assert_eq!(payload(&found), b"p1".to_vec());
    }
}
