//! Appending, reading by offset and time, rolling, reopening.

mod common;

use common::{assert_intact, batch, fill, read_all};
use weir_log::{FlushPolicy, Log, LogConfig, LogError};
use weir_proto::BatchView;

fn config(segment_bytes_max: u64, flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes_max,
        index_interval_bytes: 1024,
        flush,
        ..LogConfig::default()
    }
}

fn segment_files(dir: &std::path::Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[test]
fn offsets_are_dense_and_reads_return_what_was_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config(1 << 20, FlushPolicy::None), 0).expect("open");
    let mut expected_base = 0;
    for n in [1, 5, 17, 3] {
        let mut b = batch(expected_base, n, 100, 1_000);
        let a = log.append(&mut b, 1_000).expect("append");
        assert_eq!(
            (a.base_offset, a.last_offset),
            (expected_base, expected_base + n - 1)
        );
        expected_base += n;
    }
    assert_eq!(log.end_offset(), 26);
    assert_intact(&log, 0, 26);
    // Reading from the middle of a batch returns that whole batch.
    let fetched = log.read(7, 1).expect("read");
    let view = BatchView::parse(&fetched.batches).expect("batch");
    assert_eq!(view.header().base_offset, 6);
    assert_eq!(fetched.next_offset, 23);
    assert_intact(&log, 7, 26);
    // At the end: empty, not an error. Past the end: an error.
    assert!(log.read(26, 1024).expect("caught up").batches.is_empty());
    assert!(matches!(
        log.read(27, 1024),
        Err(LogError::OffsetOutOfRange {
            requested: 27,
            start: 0,
            end: 26
        })
    ));
}

#[test]
fn checked_batches_are_stored_from_the_callers_buffer_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config(1 << 20, FlushPolicy::None), 0).expect("open");
    let mut base = 0;
    // Small batches go out as one write, large ones as header + body.
    for (n, len) in [(1, 10), (3, 2_000), (40, 1_000), (2, 1)] {
        let b = batch(base, n, len, 1_000);
        let checked = BatchView::parse(&b).expect("parse").check().expect("check");
        let a = log.append_checked_no_wait(checked, 1_000).expect("append");
        assert_eq!((a.base_offset, a.last_offset), (base, base + n - 1));
        // The caller's bytes keep the base offset they had.
        assert_eq!(BatchView::parse(&b).expect("parse").header().base_offset, 0);
        base += n;
    }
    assert_eq!(log.end_offset(), base);
    assert_intact(&log, 0, base);
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config(8 * 1024, FlushPolicy::None), 0).expect("open");
    let end = fill(&log, 60, 4, 200, 5_000);
    let logs = segment_files(dir.path(), ".log");
    assert!(logs.len() > 5, "expected several segments, got {logs:?}");
    assert_eq!(logs[0], "00000000000000000000.log");
    // Sealed segments have their index files; the active one does not yet.
    assert_eq!(segment_files(dir.path(), ".index").len(), logs.len() - 1);
    assert_eq!(
        segment_files(dir.path(), ".timeindex").len(),
        logs.len() - 1
    );
    for name in &logs[..logs.len() - 1] {
        let size = std::fs::metadata(dir.path().join(name))
            .expect("stat")
            .len();
        assert!(size <= 8 * 1024, "{name} is {size} bytes");
    }
    assert_intact(&log, 0, end);
    for offset in [0, 3, 4, 99, 100, end - 1] {
        assert_eq!(read_all(&log, offset)[0].0, offset);
    }
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_age_max_ms: 1_000,
        ..config(1 << 20, FlushPolicy::None)
    };
    let log = Log::open(dir.path(), cfg, 0).expect("open");
    for (i, now) in [0, 500, 999, 1_000, 1_500, 2_100].into_iter().enumerate() {
        let mut b = batch(i as u64, 1, 10, now);
        log.append(&mut b, now).expect("append");
    }
    // First append at 0 opens segment 0; at 1_000 it is a second old and
    // rolls; the one started at 1_000 rolls at 2_100.
    assert_eq!(
        segment_files(dir.path(), ".log"),
        [
            "00000000000000000000.log",
            "00000000000000000003.log",
            "00000000000000000005.log"
        ]
    );
}

#[test]
fn segment_age_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_age_max_ms: 1_000,
        ..config(1 << 20, FlushPolicy::None)
    };
    {
        let log = Log::open(dir.path(), cfg.clone(), 0).expect("open");
        let mut b = batch(0, 1, 10, 100);
        log.append(&mut b, 100).expect("append");
    }
    let log = Log::open(dir.path(), cfg, 900).expect("reopen");
    let mut b = batch(1, 1, 10, 1_100);
    log.append(&mut b, 1_100).expect("append");
    assert_eq!(
        segment_files(dir.path(), ".log"),
        ["00000000000000000000.log", "00000000000000000001.log"]
    );
}

#[test]
fn reopen_keeps_everything_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let end = {
        let log = Log::open(dir.path(), config(16 * 1024, FlushPolicy::Durable), 0).expect("open");
        let end = fill(&log, 40, 3, 300, 10);
        log.close().expect("close");
        end
    };
    let log = Log::open(dir.path(), config(16 * 1024, FlushPolicy::Durable), 0).expect("reopen");
    assert_eq!(log.end_offset(), end);
    assert_eq!(log.durable_offset(), end);
    assert_intact(&log, 0, end);
    let end = fill(&log, 5, 3, 300, 10);
    assert_intact(&log, 0, end);
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let end = {
        let log = Log::open(dir.path(), config(8 * 1024, FlushPolicy::None), 0).expect("open");
        fill(&log, 40, 4, 150, 1_000)
    };
    let indexes = segment_files(dir.path(), ".index");
    std::fs::remove_file(dir.path().join(&indexes[0])).expect("remove");
    let damaged = dir.path().join(&indexes[1]);
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[3] ^= 0xff;
    std::fs::write(&damaged, bytes).expect("write");
    std::fs::write(
        dir.path()
            .join(segment_files(dir.path(), ".timeindex")[2].clone()),
        b"junk",
    )
    .expect("write");

    let log = Log::open(dir.path(), config(8 * 1024, FlushPolicy::None), 0).expect("open");
    assert!(log.fenced().is_none());
    assert_intact(&log, 0, end);
    assert_eq!(log.offset_for_timestamp(1_002).expect("by time"), Some(2));
    assert!(
        dir.path().join(&indexes[0]).exists(),
        "rebuilt index is written back"
    );
}

#[test]
fn read_by_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config(4 * 1024, FlushPolicy::None), 0).expect("open");
    // Timestamps 0,1,2 | 10,11,12 | 20,.. : batch k holds 10k..10k+2.
    for k in 0..100u64 {
        let mut b = batch(k * 3, 3, 100, k as i64 * 10);
        log.append(&mut b, 0).expect("append");
    }
    assert_eq!(log.offset_for_timestamp(-5).expect("t"), Some(0));
    assert_eq!(log.offset_for_timestamp(0).expect("t"), Some(0));
    assert_eq!(log.offset_for_timestamp(11).expect("t"), Some(4));
    assert_eq!(log.offset_for_timestamp(13).expect("t"), Some(6));
    assert_eq!(log.offset_for_timestamp(500).expect("t"), Some(150));
    assert_eq!(log.offset_for_timestamp(992).expect("t"), Some(299));
    assert_eq!(log.offset_for_timestamp(993).expect("t"), None);
}

#[test]
fn malformed_batches_are_refused_before_touching_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config(1 << 20, FlushPolicy::None), 0).expect("open");
    let mut good = batch(0, 3, 50, 0);
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        log.append(&mut flipped, 0),
        Err(LogError::InvalidBatch(_))
    ));
    let mut short = good[..good.len() - 1].to_vec();
    assert!(matches!(
        log.append(&mut short, 0),
        Err(LogError::InvalidBatch(_))
    ));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        log.append(&mut long, 0),
        Err(LogError::InvalidBatch(_))
    ));
    assert_eq!(log.end_offset(), 0);
    log.append(&mut good, 0).expect("good batch");
    assert_eq!(
        std::fs::metadata(dir.path().join("00000000000000000000.log"))
            .expect("stat")
            .len(),
        good.len() as u64
    );
}

#[test]
fn reads_are_slices_of_the_mapping_not_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config(1 << 20, FlushPolicy::None), 0).expect("open");
    fill(&log, 10, 10, 100, 0);
    let a = log.read(0, 1 << 20).expect("read");
    let b = log.read(50, 1 << 20).expect("read");
    // Both are views into one mapping: b starts inside a's bytes.
    let (a_start, b_start) = (a.batches.as_ptr() as usize, b.batches.as_ptr() as usize);
    assert!(b_start > a_start && b_start < a_start + a.batches.len());
}

#[test]
fn durable_appends_report_durability_and_interval_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(
        dir.path().join("d"),
        config(1 << 20, FlushPolicy::Durable),
        0,
    )
    .expect("open");
    let mut b = batch(0, 2, 10, 0);
    let a = log.append(&mut b, 0).expect("append");
    assert!(a.durable);
    assert_eq!(log.durable_offset(), 2);

    let cfg = config(1 << 20, FlushPolicy::Interval { interval_ms: 100 });
    let log = Log::open(dir.path().join("i"), cfg, 0).expect("open");
    let mut b = batch(0, 2, 10, 0);
    assert!(!log.append(&mut b, 50).expect("append").durable);
    // Under interval, unsynced data is still readable.
    assert_eq!(read_all(&log, 0).len(), 2);
    assert_eq!(log.tick(99).expect("tick"), 0);
    assert_eq!(log.tick(100).expect("tick"), 2);

    let log = Log::open(dir.path().join("n"), config(1 << 20, FlushPolicy::None), 0).expect("open");
    let mut b = batch(0, 2, 10, 0);
    assert!(!log.append(&mut b, 0).expect("append").durable);
    assert_eq!(log.sync_to(2).expect("explicit sync"), 2);
}

#[test]
fn concurrent_durable_appends_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::sync::Arc::new(
        Log::open(dir.path(), config(64 * 1024, FlushPolicy::Durable), 0).expect("open"),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..50u64 {
                    let mut b = weir_proto::BatchBuilder::new();
                    let payload = [t as u8, i as u8];
                    b.push(&weir_proto::NewRecord {
                        payload: &payload,
                        ..Default::default()
                    })
                    .expect("push");
                    let mut bytes = b.finish().expect("finish");
                    let a = log.append(&mut bytes, 0).expect("append");
                    assert!(a.durable);
                    mine.push((a.base_offset, payload));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(u64, [u8; 2])> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    all.sort();
    assert_eq!(all.len(), 200);
    let stored = read_all(&log, 0);
    for ((offset, payload), (stored_offset, _, stored_payload)) in all.iter().zip(&stored) {
        assert_eq!(offset, stored_offset);
        assert_eq!(&payload[..], &stored_payload[..]);
    }
}
