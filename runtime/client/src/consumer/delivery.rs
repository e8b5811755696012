//! Turning a `delivery` frame's batches into messages: every batch is
//! checked (both checksums, every record), records below the offset the
//! subscription expects are skipped, and fields are handed out as slices
//! of the frame's buffer without copying. This module never trusts a
//! length it has not checked and does no I/O.

use std::sync::Arc;

use bytes::Bytes;
use weir_proto::BatchView;

/// A message read from a topic. Key, id, header values and payload are
/// slices of the delivery they arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedMessage {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The offset in the partition.
    pub offset: u64,
    /// Timestamp in ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Producer-assigned id.
    pub id: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
    /// The payload.
    pub payload: Bytes,
}

/// The messages of one delivery and what it cost in credit.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) messages: Vec<ConsumedMessage>,
    /// Records in the batches, skipped ones included (the node deducts them).
    pub(crate) records: u32,
    pub(crate) batches: u32,
    /// The offset after the last record.
    pub(crate) next_offset: u64,
}

/// Parses the batches of a delivery for `partition`, skipping records
/// below `expected`.
pub(crate) fn parse_delivery(
    topic: &Arc<str>,
    partition: u32,
    batches: &Bytes,
    expected: u64,
) -> Result<Parsed, String> {
    let mut out = Parsed {
        next_offset: expected,
        ..Parsed::default()
    };
    let mut pos = 0;
    while pos < batches.len() {
        let rest = &batches[pos..];
        let view = BatchView::parse(rest)
            .map_err(|e| format!("partition {partition}, batch at byte {pos}: {e}"))?;
        let header = *view.header();
        out.records = out.records.saturating_add(header.record_count);
        out.batches += 1;
        for record in view.records() {
            let record =
                record.map_err(|e| format!("partition {partition}, batch at byte {pos}: {e}"))?;
            if record.offset < out.next_offset {
                continue;
            }
            out.next_offset = record.offset + 1;
            out.messages.push(ConsumedMessage {
                topic: topic.clone(),
                partition,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key.map(|k| batches.slice_ref(k)),
                id: record.id.map(|i| batches.slice_ref(i)),
                headers: record
                    .headers()
                    .map(|(n, v)| (n.to_owned(), batches.slice_ref(v)))
                    .collect(),
                payload: batches.slice_ref(record.payload),
            });
        }
        pos += header.batch_len as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::{BatchBuilder, NewRecord, set_base_offset};

    fn batch(base: u64, payloads: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for p in payloads {
            b.push(&NewRecord {
                timestamp_ms: 1_000,
                key: Some(b"k"),
                headers: &[("h", b"v")],
                payload: p.as_bytes(),
                ..NewRecord::default()
            })
            .expect("push");
        }
        let mut bytes = b.finish().expect("finish");
        set_base_offset(&mut bytes, base).expect("offset");
        bytes
    }

    #[test]
    fn skips_records_below_the_expected_offset() {
        let mut all = batch(10, &["a", "b", "c"]);
        all.extend(batch(13, &["d"]));
        let bytes = Bytes::from(all);
        let topic: Arc<str> = "t".into();
        let parsed = parse_delivery(&topic, 2, &bytes, 11).expect("parse");
        let offsets: Vec<u64> = parsed.messages.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, vec![11, 12, 13]);
        assert_eq!(parsed.records, 4, "skipped records still cost credit");
        assert_eq!(parsed.batches, 2);
        assert_eq!(parsed.next_offset, 14);
        let m = &parsed.messages[0];
        assert_eq!(
            (m.partition, &m.payload[..], m.key.as_deref()),
            (2, &b"b"[..], Some(&b"k"[..]))
        );
        assert_eq!(m.headers, vec![("h".to_string(), Bytes::from_static(b"v"))]);
    }

    #[test]
    fn refuses_corrupt_and_truncated_batches() {
        let good = batch(0, &["a"]);
        let topic: Arc<str> = "t".into();
        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let err = parse_delivery(&topic, 0, &Bytes::from(corrupt), 0).expect_err("checksum");
        assert!(err.contains("checksum"), "{err}");
        let truncated = Bytes::copy_from_slice(&good[..good.len() - 1]);
        assert!(parse_delivery(&topic, 0, &truncated, 0).is_err());
        let mut trailing = good;
        trailing.extend_from_slice(&[0; 3]);
        assert!(parse_delivery(&topic, 0, &Bytes::from(trailing), 0).is_err());
    }

    #[test]
    fn empty_delivery_is_empty() {
        let parsed = parse_delivery(&"t".into(), 0, &Bytes::new(), 5).expect("empty");
        assert!(parsed.messages.is_empty());
        assert_eq!(parsed.next_offset, 5);
    }
}
