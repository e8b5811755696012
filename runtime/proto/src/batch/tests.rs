use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct OwnedRecord {
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    dedup_key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    payload: Vec<u8>,
}

fn owned_record() -> impl Strategy<Value = OwnedRecord> {
    (
        -1_000_000i64..1_000_000,
        proptest::option::of(vec(any::<u8>(), 0..40)),
        proptest::option::of(vec(any::<u8>(), 0..MAX_ID_BYTES)),
        proptest::option::of(vec(any::<u8>(), 0..20)),
        vec(("[a-z-]{0,12}", vec(any::<u8>(), 0..16)), 0..5),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(ts, key, id, dedup_key, headers, payload)| OwnedRecord {
            timestamp_ms: 1_700_000_000_000 + ts,
            key,
            id,
            dedup_key,
            headers,
            payload,
        })
}

fn encode(records: &[OwnedRecord]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in records {
        let headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        b.push(&NewRecord {
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            id: r.id.as_deref(),
            dedup_key: r.dedup_key.as_deref(),
            headers: &headers,
            payload: &r.payload,
        })
        .expect("generated records are within limits");
    }
    b.finish().expect("at least one record")
}

fn simple_batch(n: usize) -> Vec<u8> {
    let records: Vec<OwnedRecord> = (0..n)
        .map(|i| OwnedRecord {
            timestamp_ms: 1_000 + i as i64,
            key: Some(format!("k{i}").into_bytes()),
            id: Some(format!("id-{i}").into_bytes()),
            dedup_key: None,
            headers: vec![("h".into(), vec![i as u8])],
            payload: vec![b'x'; 10 + i],
        })
        .collect();
    encode(&records)
}

proptest! {
    #[test]
    fn round_trip(records in vec(owned_record(), 1..30), base in 0u64..u64::MAX / 2) {
        let mut bytes = encode(&records);
        set_base_offset(&mut bytes, base).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let view = BatchView::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(view.header().base_offset, base);
        prop_assert_eq!(view.header().record_count as usize, records.len());
        prop_assert_eq!(view.header().batch_len as usize, bytes.len());
        let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or_default();
        prop_assert_eq!(view.header().max_timestamp_ms, max_ts);
        let mut n = 0;
        for (i, (got, want)) in view.records().zip(&records).enumerate() {
            let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.offset, base + i as u64);
            prop_assert_eq!(got.timestamp_ms, want.timestamp_ms);
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.id, want.id.as_deref());
            prop_assert_eq!(got.dedup_key, want.dedup_key.as_deref());
            prop_assert_eq!(got.payload, want.payload.as_slice());
            let headers: Vec<(String, Vec<u8>)> = got.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect();
            prop_assert_eq!(&headers, &want.headers);
            n += 1;
        }
        prop_assert_eq!(n, records.len());
        prop_assert!(view.validate().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = BatchHeader::parse(&bytes);
        if let Ok(view) = BatchView::parse(&bytes) {
            for r in view.records().flatten() {
                let _ = r.headers().count();
            }
        }
    }

    /// Random damage to a valid batch whose checksums are then resealed, so
    /// the record decoder itself (not just the CRC) meets hostile input.
    #[test]
    fn damaged_records_never_panic(
        records in vec(owned_record(), 1..6),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode(&records);
        for (at, value) in edits {
            let i = BATCH_HEADER_LEN + at.index(bytes.len() - BATCH_HEADER_LEN);
            bytes[i] = value;
        }
        reseal(&mut bytes);
        if let Ok(view) = BatchView::parse(&bytes) {
            for r in view.records().flatten() {
                let _ = r.headers().count();
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_detected(n in 1usize..5, bit in any::<prop::sample::Index>()) {
        let mut bytes = simple_batch(n);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(BatchView::parse(&bytes).is_err());
    }
}

/// Recomputes both checksums after a test edited the body.
fn reseal(bytes: &mut [u8]) {
    let body = crc32c::crc32c(&bytes[BATCH_HEADER_LEN..]);
    bytes[36..40].copy_from_slice(&body.to_le_bytes());
    let header = crc32c::crc32c(&bytes[..HEADER_CRC_COVERS]);
    bytes[40..44].copy_from_slice(&header.to_le_bytes());
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let bytes = simple_batch(3);
    for len in 0..bytes.len() {
        let err = BatchView::parse(&bytes[..len]).expect_err("a prefix is not a batch");
        assert!(
            matches!(err, BatchError::Truncated { .. }),
            "len {len}: {err}"
        );
    }
    assert!(BatchView::parse(&bytes).is_ok());
}

#[test]
fn declared_lengths_are_bounded_before_use() {
    let mut bytes = simple_batch(1);
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut bytes);
    assert!(matches!(
        BatchHeader::parse(&bytes),
        Err(BatchError::TooLarge {
            what: "batch length",
            ..
        })
    ));

    let mut bytes = simple_batch(1);
    bytes[16..20].copy_from_slice(&(MAX_RECORDS_PER_BATCH + 1).to_le_bytes());
    reseal(&mut bytes);
    assert!(matches!(
        BatchHeader::parse(&bytes),
        Err(BatchError::TooLarge {
            what: "record count",
            ..
        })
    ));

    // A record whose key length claims 2^60 bytes.
    let mut b = BatchBuilder::new();
    b.push(&NewRecord {
        key: Some(b"k"),
        payload: b"p",
        ..NewRecord::default()
    })
    .expect("push");
    let mut bytes = b.finish().expect("finish");
    // record: len, attrs, offset delta, ts delta, key len at +4.
    let key_len_at = BATCH_HEADER_LEN + 4;
    assert_eq!(bytes[key_len_at], 1);
    let mut patched = bytes[..key_len_at].to_vec();
    let mut huge = Vec::new();
    varint::put_u64(&mut huge, 1 << 60);
    patched.extend_from_slice(&huge);
    patched.extend_from_slice(&bytes[key_len_at + 1..]);
    // The record's own length grows by the 8 extra varint bytes.
    patched[BATCH_HEADER_LEN] += 8;
    let len = patched.len() as u32;
    patched[8..12].copy_from_slice(&len.to_le_bytes());
    reseal(&mut patched);
    bytes = patched;
    let view = BatchView::parse(&bytes).expect("checksums are resealed");
    let err = view
        .records()
        .next()
        .expect("one item")
        .expect_err("key is too long");
    assert!(
        matches!(err, BatchError::TooLarge { what: "key", .. }),
        "{err}"
    );
}

#[test]
fn record_count_must_match_body() {
    let mut bytes = simple_batch(3);
    bytes[16..20].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut bytes);
    let view = BatchView::parse(&bytes).expect("checksums are resealed");
    assert!(matches!(
        view.validate(),
        Err(BatchError::RecordLength { index: 2, .. })
    ));

    let mut bytes = simple_batch(3);
    bytes[16..20].copy_from_slice(&4u32.to_le_bytes());
    reseal(&mut bytes);
    let view = BatchView::parse(&bytes).expect("checksums are resealed");
    assert!(matches!(
        view.validate(),
        Err(BatchError::RecordCount {
            declared: 4,
            actual: 3
        })
    ));
}

#[test]
fn builder_refuses_records_past_limits_and_stays_usable() {
    let mut b = BatchBuilder::new();
    let long_id = vec![0u8; MAX_ID_BYTES + 1];
    let err = b
        .push(&NewRecord {
            id: Some(&long_id),
            ..NewRecord::default()
        })
        .expect_err("id too long");
    assert!(matches!(
        err,
        BatchError::TooLarge {
            what: "message id",
            ..
        }
    ));
    assert!(b.is_empty());
    let big = vec![0u8; MAX_BATCH_BYTES];
    assert!(
        b.push(&NewRecord {
            payload: &big,
            ..NewRecord::default()
        })
        .is_err()
    );
    b.push(&NewRecord {
        payload: b"ok",
        ..NewRecord::default()
    })
    .expect("a small record fits");
    assert_eq!(b.len(), 1);
    assert!(BatchView::parse(&b.finish().expect("finish")).is_ok());
    assert!(matches!(
        BatchBuilder::new().finish(),
        Err(BatchError::Empty)
    ));
}

#[test]
fn record_len_predicts_growth() {
    let mut b = BatchBuilder::new();
    for i in 0..50i64 {
        let r = NewRecord {
            timestamp_ms: 5_000 - i * 7,
            key: Some(b"key"),
            payload: &[1; 100],
            ..NewRecord::default()
        };
        let before = b.encoded_len();
        let predicted = b.record_len(&r).expect("valid");
        b.push(&r).expect("push");
        assert_eq!(b.encoded_len() - before, predicted);
    }
}
