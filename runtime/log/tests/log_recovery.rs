//! Recovery at open and behaviour under injected faults: torn tails are
//! truncated, damage before the tail fences the log, failed writes are
//! undone, a failed fsync is fatal.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{assert_intact, batch, fill};
use weir_log::fs::{Fault, FaultyFs, OsFs};
use weir_log::{FenceReason, FlushPolicy, Log, LogConfig, LogError};

const SEGMENT: &str = "00000000000000000000.log";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        index_interval_bytes: 512,
        flush: FlushPolicy::Durable,
        ..LogConfig::default()
    }
}

/// A log of `batches` batches of 3 records; returns the byte position and
/// base offset of each batch, and the end offset.
fn build(dir: &Path, batches: u64) -> (Vec<(u64, u64)>, u64) {
    let log = Log::open(dir, config(), 0).expect("open");
    let mut starts = Vec::new();
    let mut position = 0;
    for _ in 0..batches {
        let first = log.end_offset();
        // Batches longer than a sector, so one always straddles a boundary.
        let mut b = batch(first, 3, 200, 1_000);
        starts.push((position, first));
        position += b.len() as u64;
        log.append(&mut b, 0).expect("append");
    }
    let end = log.end_offset();
    log.close().expect("close");
    (starts, end)
}

fn copy_log(from: &Path, to: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    std::fs::create_dir_all(to).expect("mkdir");
    let mut bytes = std::fs::read(from.join(SEGMENT)).expect("read segment");
    edit(&mut bytes);
    std::fs::write(to.join(SEGMENT), bytes).expect("write segment");
}

fn corrupt_reason(log: &Log) -> (u64, u64, String) {
    match log.fenced().as_deref() {
        Some(FenceReason::Corrupt {
            position,
            offset,
            file,
            ..
        }) => (
            *position,
            *offset,
            file.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        other => panic!("expected a corruption fence, got {other:?}"),
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_batch_is_truncated() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let original = scratch.path().join("original");
    let (starts, end) = build(&original, 6);
    let (last_pos, last_base) = *starts.last().expect("batches");
    let file_len = std::fs::metadata(original.join(SEGMENT))
        .expect("stat")
        .len();

    let mut zero_filled_cases = 0;
    for cut in last_pos..file_len {
        // Lost pages read back as zeros from the batch start or a sector
        // boundary; a process kill just ends the file early.
        let zero_fill_possible = cut == last_pos || cut % 512 == 0;
        for zero_filled in [false, true] {
            if zero_filled && !zero_fill_possible {
                continue;
            }
            zero_filled_cases += usize::from(zero_filled);
            let dir = scratch.path().join(format!("cut-{cut}-{zero_filled}"));
            copy_log(&original, &dir, |bytes| {
                if zero_filled {
                    // The file kept its length but the tail never reached
                    // the disk: what a crash with delayed allocation leaves.
                    bytes[cut as usize..].fill(0);
                } else {
                    bytes.truncate(cut as usize);
                }
            });
            let log = Log::open(&dir, config(), 0).expect("open");
            assert!(
                log.fenced().is_none(),
                "cut at {cut} (zero-filled {zero_filled}) fenced the log"
            );
            assert_eq!(log.end_offset(), last_base, "cut at {cut}");
            assert_intact(&log, 0, last_base);
            assert_eq!(
                std::fs::metadata(dir.join(SEGMENT)).expect("stat").len(),
                last_pos,
                "truncated to the last whole batch"
            );
            // The log takes appends again from there.
            let mut b = batch(last_base, 3, 200, 1_000);
            log.append(&mut b, 0).expect("append after recovery");
            assert_intact(&log, 0, end);
            drop(log);
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }
    assert!(
        zero_filled_cases >= 2,
        "a sector boundary falls inside the last batch ({last_pos}..{file_len})"
    );
}

#[test]
fn a_flipped_bit_before_the_tail_fences_and_keeps_earlier_data_readable() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let original = scratch.path().join("original");
    let (starts, end) = build(&original, 6);
    let (damaged_pos, damaged_base) = starts[2];
    let damaged_len = starts[3].0 - damaged_pos;
    let pristine = std::fs::read(original.join(SEGMENT)).expect("read");

    for byte in 0..damaged_len {
        let at = (damaged_pos + byte) as usize;
        let dir = scratch.path().join(format!("flip-{byte}"));
        copy_log(&original, &dir, |bytes| bytes[at] ^= 1 << (byte % 8));
        let log = Log::open(&dir, config(), 0).expect("open succeeds, fenced");
        let (position, offset, file) = corrupt_reason(&log);
        assert_eq!(
            (position, offset, file.as_str()),
            (damaged_pos, damaged_base, SEGMENT),
            "flip at byte {byte}"
        );
        // Readable up to the damage, nothing after it, no writes.
        assert_eq!(log.end_offset(), damaged_base);
        assert_intact(&log, 0, damaged_base);
        let mut b = batch(damaged_base, 1, 10, 0);
        let err = log
            .append(&mut b, 0)
            .expect_err("fenced log refuses writes");
        assert!(matches!(err, LogError::Fenced { .. }), "{err}");
        assert!(
            err.to_string().contains(SEGMENT)
                && err.to_string().contains(&format!("byte {damaged_pos}")),
            "{err}"
        );
        drop(log);
        // Nothing was truncated or rewritten.
        let mut expected = pristine.clone();
        expected[at] ^= 1 << (byte % 8);
        assert_eq!(
            std::fs::read(dir.join(SEGMENT)).expect("read"),
            expected,
            "flip at byte {byte}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
    let _ = end;
}

#[test]
fn a_flipped_bit_in_the_last_batch_is_corruption_not_a_torn_tail() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let original = scratch.path().join("original");
    let (starts, _) = build(&original, 4);
    let (last_pos, last_base) = *starts.last().expect("batches");
    let file_len = std::fs::metadata(original.join(SEGMENT))
        .expect("stat")
        .len();
    for at in last_pos..file_len {
        let dir = scratch.path().join(format!("flip-{at}"));
        copy_log(&original, &dir, |bytes| bytes[at as usize] ^= 0x04);
        let log = Log::open(&dir, config(), 0).expect("open");
        let (position, offset, _) = corrupt_reason(&log);
        assert_eq!(
            (position, offset),
            (last_pos, last_base),
            "flip at byte {at}"
        );
        assert_eq!(
            std::fs::metadata(dir.join(SEGMENT)).expect("stat").len(),
            file_len,
            "nothing truncated"
        );
        assert_intact(&log, 0, last_base);
        drop(log);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

#[test]
fn damage_in_a_sealed_segment_or_a_missing_segment_fences() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        segment_bytes_max: 4096,
        ..config()
    };
    let dir = scratch.path().join("sealed");
    {
        let log = Log::open(&dir, cfg.clone(), 0).expect("open");
        fill(&log, 40, 3, 100, 0);
    }
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 4);
    // Damage the header of the last batch of the second segment.
    let victim = &logs[1];
    let mut bytes = std::fs::read(victim).expect("read");
    let n = bytes.len();
    let last_batch_start = {
        let mut pos = 0;
        loop {
            let h = weir_proto::BatchHeader::parse(&bytes[pos..]).expect("header");
            if pos + h.batch_len as usize == n {
                break pos;
            }
            pos += h.batch_len as usize;
        }
    };
    bytes[last_batch_start + 9] ^= 0x40;
    std::fs::write(victim, &bytes).expect("write");
    let log = Log::open(&dir, cfg.clone(), 0).expect("open");
    let (position, _, file) = corrupt_reason(&log);
    assert_eq!(position, last_batch_start as u64);
    assert_eq!(file, victim.file_name().expect("name").to_string_lossy());
    assert_intact(&log, 0, log.end_offset());
    drop(log);

    // A segment missing from the middle leaves a gap in the offsets.
    let dir = scratch.path().join("gap");
    {
        let log = Log::open(&dir, cfg.clone(), 0).expect("open");
        fill(&log, 40, 3, 100, 0);
    }
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    std::fs::remove_file(&logs[1]).expect("remove");
    let log = Log::open(&dir, cfg, 0).expect("open");
    let reason = log.fenced().expect("fenced");
    assert!(
        reason.to_string().contains("the one before ends at"),
        "{reason}"
    );
}

fn faulty() -> FaultyFs {
    FaultyFs::new(Arc::new(OsFs))
}

#[test]
fn short_writes_are_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = faulty();
    let log = Log::open_with(Arc::new(fs.clone()), dir.path(), config(), 0).expect("open");
    fill(&log, 3, 3, 60, 0);
    fs.fail_write(1, Fault::ShortWrite { bytes: 7 });
    fs.fail_write(3, Fault::ShortWrite { bytes: 1 });
    let end = fill(&log, 4, 3, 60, 0);
    assert_intact(&log, 0, end);
    drop(log);
    let log = Log::open(dir.path(), config(), 0).expect("reopen");
    assert!(log.fenced().is_none());
    assert_intact(&log, 0, end);
}

#[test]
fn a_failed_write_is_undone_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = faulty();
    let log = Log::open_with(Arc::new(fs.clone()), dir.path(), config(), 0).expect("open");
    let end = fill(&log, 3, 3, 60, 0);
    // A short write followed by an error leaves part of the batch behind.
    fs.fail_write(1, Fault::ShortWrite { bytes: 20 });
    fs.fail_write(2, Fault::WriteError);
    let mut b = batch(end, 3, 60, 0);
    let err = log.append(&mut b, 0).expect_err("write fails");
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    assert!(log.fenced().is_none());
    assert_eq!(log.end_offset(), end);
    let end = fill(&log, 2, 3, 60, 0);
    assert_intact(&log, 0, end);
    drop(log);
    let log = Log::open(dir.path(), config(), 0).expect("reopen");
    assert!(log.fenced().is_none());
    assert_intact(&log, 0, end);
}

#[test]
fn a_torn_write_then_reopen_recovers_to_the_last_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = faulty();
    let log = Log::open_with(Arc::new(fs.clone()), dir.path(), config(), 0).expect("open");
    let end = fill(&log, 5, 3, 60, 0);
    fs.fail_write(1, Fault::TornWrite { bytes: 100 });
    let mut b = batch(end, 3, 60, 0);
    assert!(log.append(&mut b, 0).is_err());
    assert!(fs.is_dead());
    // The undo failed too (the "process" is gone), so the log fenced itself.
    assert!(matches!(
        log.fenced().as_deref(),
        Some(FenceReason::WriteFailed { .. })
    ));
    drop(log);
    let log = Log::open(dir.path(), config(), 0).expect("reopen after the crash");
    assert!(log.fenced().is_none());
    assert_eq!(log.end_offset(), end);
    assert_intact(&log, 0, end);
}

#[test]
fn a_failed_fsync_fences_the_log_and_is_never_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = faulty();
    let log = Log::open_with(Arc::new(fs.clone()), dir.path(), config(), 0).expect("open");
    let end = fill(&log, 3, 3, 60, 0);
    fs.fail_sync(1);
    let mut b = batch(end, 3, 60, 0);
    let err = log.append(&mut b, 0).expect_err("fsync fails");
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("fsync"), "{err}");
    assert!(matches!(
        log.fenced().as_deref(),
        Some(FenceReason::SyncFailed { .. })
    ));
    assert_eq!(
        log.durable_offset(),
        end,
        "the unsynced batch is not reported durable"
    );
    // Durable reads see only what was synced.
    assert_intact(&log, 0, end);
    let mut b = batch(end, 1, 10, 0);
    assert!(matches!(
        log.append(&mut b, 0),
        Err(LogError::Fenced { .. })
    ));
    assert!(matches!(log.sync_to(end + 3), Err(LogError::Fenced { .. })));
}

#[test]
fn a_misdirected_write_is_found_as_corruption_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = faulty();
    let log = Log::open_with(Arc::new(fs.clone()), dir.path(), config(), 0).expect("open");
    let end = fill(&log, 3, 3, 60, 0);
    let position = std::fs::metadata(dir.path().join(SEGMENT))
        .expect("stat")
        .len();
    // The next batch reaches the disk with a bit flipped in its payload.
    fs.fail_write(1, Fault::FlipBit { byte: 80, bit: 3 });
    fill(&log, 3, 3, 60, 0);
    drop(log);
    let log = Log::open(dir.path(), config(), 0).expect("open");
    let (at, offset, _) = corrupt_reason(&log);
    assert_eq!((at, offset), (position, end));
    assert_intact(&log, 0, end);
}
