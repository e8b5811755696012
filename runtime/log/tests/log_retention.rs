//! Retention deletes whole sealed segments by age and by size, and readers
//! holding slices of a deleted segment stay safe.

mod common;

use common::{assert_intact, batch, read_all};
use weir_log::{FlushPolicy, Log, LogConfig, LogError};
use weir_proto::BatchView;

fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Ten segments; segment k holds batches with timestamps 1000k..1000k+99.
fn ten_segments(
    dir: &std::path::Path,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
) -> Log {
    let cfg = LogConfig {
        segment_bytes_max: 4096,
        index_interval_bytes: 1024,
        flush: FlushPolicy::None,
        retention_ms,
        retention_bytes,
        ..LogConfig::default()
    };
    let log = Log::open(dir, cfg, 0).expect("open");
    for segment in 0..10i64 {
        // Each batch is ~1.3 KiB: three fit in a 4 KiB segment.
        for b in 0..3 {
            let first = log.end_offset();
            let mut bytes = batch(first, 4, 300, segment * 1000 + b * 10);
            log.append(&mut bytes, segment * 1000).expect("append");
        }
    }
    assert_eq!(log.stats().segments, 10);
    log
}

#[test]
fn time_retention_deletes_old_sealed_segments_while_readers_hold_slices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ten_segments(dir.path(), Some(3_500), None);
    // A consumer holds the first segment's bytes across the deletion.
    let held = log.read(0, 1 << 20).expect("read");
    let held_copy = held.batches.to_vec();

    // At t=9_000 the limit is 5_500: segments 0..=4 (newest record 4_022)
    // and 5 (5_022) are older; 6 (6_022) is not.
    let report = log.apply_retention(9_000).expect("retention");
    assert_eq!(report.deleted_segments, [0, 12, 24, 36, 48, 60]);
    assert_eq!(report.start_offset, 72);
    assert_eq!(log.stats().start_offset, 72);
    assert!(
        !log_files(dir.path())
            .iter()
            .any(|n| n.starts_with("00000000000000000000.")),
        "files are gone"
    );
    // The unlinked file's pages are still mapped for the holder.
    assert_eq!(&held.batches[..], &held_copy[..]);
    let view = BatchView::parse(&held.batches).expect("still readable");
    assert_eq!(view.records().count(), 4);

    assert!(matches!(
        log.read(0, 1024),
        Err(LogError::OffsetOutOfRange { start: 72, .. })
    ));
    assert_intact(&log, 72, log.end_offset());
    // The active segment is never deleted, however old.
    let report = log.apply_retention(1_000_000).expect("retention");
    assert_eq!(report.deleted_segments, [72, 84, 96]);
    assert_eq!(log.stats().segments, 1);
    assert_eq!(read_all(&log, 108).len(), 12);
}

#[test]
fn size_retention_keeps_the_newest_segments_within_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ten_segments(dir.path(), None, Some(4 * 4096));
    let sizes_before = log.stats().bytes;
    let report = log.apply_retention(0).expect("retention");
    let stats = log.stats();
    assert!(stats.bytes <= 4 * 4096, "{} bytes left", stats.bytes);
    assert_eq!(stats.bytes + report.deleted_bytes, sizes_before);
    assert_eq!(report.deleted_segments.len(), 10 - stats.segments);
    assert!(stats.segments >= 3, "kept {} segments", stats.segments);
    assert_intact(&log, stats.start_offset, stats.end_offset);

    // After a restart the log starts where retention left it.
    drop(log);
    let log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes_max: 4096,
            ..LogConfig::default()
        },
        0,
    )
    .expect("reopen");
    assert_eq!(log.stats().start_offset, stats.start_offset);
    assert_intact(&log, stats.start_offset, stats.end_offset);
}

#[test]
fn no_limits_delete_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ten_segments(dir.path(), None, None);
    assert!(
        log.apply_retention(i64::MAX)
            .expect("retention")
            .deleted_segments
            .is_empty()
    );
}
