//! Process-kill crash test of the log with `FlushPolicy::Durable`.
//!
//! A child process (this test binary, re-executed on one of the `child_*`
//! tests) appends to a log and reports on stdout every offset an append
//! returned as durable. The parent kills it with SIGKILL a random 2–40 ms
//! after it is ready, reopens the log (so every cycle is a recovery) and
//! checks that every reported offset is there, that every record in the log
//! decodes with valid checksums and holds exactly what the child wrote for
//! it, and that the segment files hold nothing but whole batches. The log
//! keeps growing across cycles, with 64 KiB segments so kills also land on
//! segment rolls.
//!
//! Two variants: `kill_single_appender` (one appender thread; each record's
//! content is a function of its offset) and `kill_group_commit` (2–4 threads
//! sharing fsyncs; each record carries `(writer, seq)` and every writer's
//! sequence must be gap-free up to the last seq reported durable).
//!
//! Each variant runs 50 kill cycles by default. Set `WEIR_CRASH_CYCLES` for
//! more, e.g. `WEIR_CRASH_CYCLES=1000 cargo test -p weir-log --release
//! --test log_crash`; `WEIR_CRASH_SEED` fixes the children's choices of
//! batch sizes (kill timing stays random). A failing cycle keeps its log
//! directory and names it in the panic message.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_log::{FlushPolicy, Log, LogConfig};
use weir_proto::{BatchBuilder, BatchView, NewRecord, RecordView};

/// Cycles per variant unless `WEIR_CRASH_CYCLES` says otherwise.
const DEFAULT_CYCLES: u32 = 50;
const CYCLES_ENV: &str = "WEIR_CRASH_CYCLES";
const SEED_ENV: &str = "WEIR_CRASH_SEED";

/// Set only in a child: the log directory. Its absence makes the `child_*`
/// tests no-ops in a normal run.
const CHILD_DIR_ENV: &str = "WEIR_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "WEIR_CRASH_CHILD_SEED";
/// Group-commit child: writer id of its first thread, and its thread count.
const CHILD_WRITER_BASE_ENV: &str = "WEIR_CRASH_CHILD_WRITER_BASE";
const CHILD_THREADS_ENV: &str = "WEIR_CRASH_CHILD_THREADS";

/// Every line of the child protocol starts with this, wherever libtest's
/// own output puts it on the line.
const MARK: &str = "@weir-crash ";

/// A child that is never killed (its parent died) stops on its own.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
/// How long the parent waits for a child to open the log.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 2..=40;

/// Writer ids per group-commit cycle (threads per child are at most 4).
const WRITERS_PER_CYCLE: u64 = 8;
const TIMESTAMP_BASE_MS: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        index_interval_bytes: 4096,
        flush: FlushPolicy::Durable,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------
// Deterministic content.

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        state = mix(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What the single-appender child writes at `offset`.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    payload: Vec<u8>,
}

fn expected_at(offset: u64) -> Expected {
    let h = mix(offset);
    let len = match h % 100 {
        0..=59 => (h >> 8) % 256,
        60..=94 => 256 + (h >> 8) % 2048,
        _ => 2304 + (h >> 8) % 14_000,
    } as usize;
    let mut payload = offset.to_le_bytes().to_vec();
    payload.extend(filler(h, len));
    Expected {
        timestamp_ms: TIMESTAMP_BASE_MS + offset as i64,
        key: (h & (1 << 40) != 0).then(|| format!("k{offset}").into_bytes()),
        headers: if h & (1 << 41) != 0 {
            vec![("offset".to_owned(), offset.to_be_bytes().to_vec())]
        } else {
            Vec::new()
        },
        payload,
    }
}

fn matches(record: &RecordView<'_>, expected: &Expected) -> bool {
    record.timestamp_ms == expected.timestamp_ms
        && record.key == expected.key.as_deref()
        && record.id.is_none()
        && record.dedup_key.is_none()
        && record
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect::<Vec<_>>()
            == expected.headers
        && record.payload == expected.payload.as_slice()
}

/// Payload of a group-commit record: writer, seq, then filler of a length
/// that depends on both.
fn group_payload(writer: u64, seq: u64) -> Vec<u8> {
    let h = mix(writer.wrapping_mul(0x1_0000_0001) ^ mix(seq));
    let mut payload = Vec::new();
    payload.extend_from_slice(&writer.to_le_bytes());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend(filler(h, (h % 1024) as usize));
    payload
}

fn encode(records: &[NewRecord<'_>]) -> Vec<u8> {
    let mut builder =
        BatchBuilder::with_capacity(records.iter().map(|r| r.payload.len() + 64).sum());
    for record in records {
        builder.push(record).expect("child: record fits in a batch");
    }
    builder.finish().expect("child: batch has records")
}

// ---------------------------------------------------------------------------
// Children. Each is a no-op unless the parent set `CHILD_DIR_ENV`.

fn report(line: std::fmt::Arguments<'_>) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // If the parent is gone the pipe is broken: stop.
    writeln!(out, "{MARK}{line}").expect("child: parent's stdout pipe is gone");
    out.flush().expect("child: parent's stdout pipe is gone");
}

fn child_env_u64(name: &str) -> u64 {
    let value = std::env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("child: {name}={value:?} is not a number: {e}"))
}

/// Batch length in records: mostly small, sometimes large enough (with
/// ~1 KiB average records) to need a segment of its own.
fn batch_len(rng: &mut StdRng) -> u64 {
    match rng.random_range(0..100) {
        0..=69 => rng.random_range(1..=8),
        70..=94 => rng.random_range(9..=64),
        _ => rng.random_range(65..=200),
    }
}

#[test]
fn child_single_appender() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(child_env_u64(CHILD_SEED_ENV));
    let log = Log::open(&dir, config(), now_ms()).expect("child: open log");
    report(format_args!("READY {}", log.end_offset()));
    let deadline = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < deadline {
        // The only appender: the next offset is the end.
        let base = log.end_offset();
        let expected: Vec<Expected> = (base..base + batch_len(&mut rng))
            .map(expected_at)
            .collect();
        let headers: Vec<Vec<(&str, &[u8])>> = expected
            .iter()
            .map(|e| {
                e.headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect()
            })
            .collect();
        let records: Vec<NewRecord<'_>> = expected
            .iter()
            .zip(&headers)
            .map(|(e, h)| NewRecord {
                timestamp_ms: e.timestamp_ms,
                key: e.key.as_deref(),
                headers: h,
                payload: &e.payload,
                ..NewRecord::default()
            })
            .collect();
        let mut batch = encode(&records);
        let appended = log.append(&mut batch, now_ms()).expect("child: append");
        assert_eq!(
            appended.base_offset, base,
            "child: batch landed at another offset than the log's end"
        );
        if appended.durable {
            report(format_args!("DURABLE {}", appended.last_offset));
        }
    }
}

#[test]
fn child_group_commit() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let seed = child_env_u64(CHILD_SEED_ENV);
    let writer_base = child_env_u64(CHILD_WRITER_BASE_ENV);
    let threads = child_env_u64(CHILD_THREADS_ENV);
    let log = Arc::new(Log::open(&dir, config(), now_ms()).expect("child: open log"));
    report(format_args!("READY {}", log.end_offset()));
    let deadline = Instant::now() + CHILD_LIFETIME;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                let writer = writer_base + t;
                let mut rng = StdRng::seed_from_u64(seed ^ mix(writer));
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    let n = rng.random_range(1..=16);
                    let payloads: Vec<Vec<u8>> =
                        (seq..seq + n).map(|s| group_payload(writer, s)).collect();
                    let ts = now_ms();
                    let records: Vec<NewRecord<'_>> = payloads
                        .iter()
                        .map(|p| NewRecord {
                            timestamp_ms: ts,
                            payload: p,
                            ..NewRecord::default()
                        })
                        .collect();
                    let mut batch = encode(&records);
                    let appended = log.append(&mut batch, ts).expect("child: append");
                    seq += n;
                    if appended.durable {
                        report(format_args!(
                            "DURABLE {writer} {} {}",
                            seq - 1,
                            appended.last_offset
                        ));
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("child: appender thread panicked");
    }
}

// ---------------------------------------------------------------------------
// The parent.

/// What one child run reported before it was killed.
#[derive(Debug, Default)]
struct ChildRun {
    ready_end: Option<u64>,
    /// Protocol lines after READY, without the mark.
    lines: Vec<String>,
    stderr: String,
}

enum Mode {
    Single,
    Group { writer_base: u64, threads: u64 },
}

impl Mode {
    fn test_name(&self) -> &'static str {
        match self {
            Mode::Single => "child_single_appender",
            Mode::Group { .. } => "child_group_commit",
        }
    }
}

/// Runs one child, kills it a random moment after READY, and returns what
/// it reported. Err if it could not be run or did not die by our SIGKILL.
fn run_and_kill(
    dir: &Path,
    mode: &Mode,
    seed: u64,
    kill_after: Duration,
) -> Result<ChildRun, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        mode.test_name(),
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_DIR_ENV, dir)
    .env(CHILD_SEED_ENV, seed.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Mode::Group {
        writer_base,
        threads,
    } = mode
    {
        cmd.env(CHILD_WRITER_BASE_ENV, writer_base.to_string())
            .env(CHILD_THREADS_ENV, threads.to_string());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning the child test binary: {e}"))?;
    let lines = spawn_line_reader(&mut child)?;
    let stderr = spawn_stderr_reader(&mut child)?;

    let mut run = ChildRun::default();
    let ready_by = Instant::now() + READY_TIMEOUT;
    while run.ready_end.is_none() {
        let left = ready_by.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let Some(rest) = line.strip_prefix("READY ") else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("child said {line:?} before READY"));
                };
                let end = rest
                    .parse()
                    .map_err(|e| format!("child's READY line {line:?} has no offset: {e}"))?;
                run.ready_end = Some(end);
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("child was not READY within {READY_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child
                    .wait()
                    .map_err(|e| format!("waiting for child: {e}"))?;
                let stderr = stderr.join().unwrap_or_default();
                return Err(format!(
                    "child exited ({status}) before READY; stderr:\n{stderr}"
                ));
            }
        }
    }
    thread::sleep(kill_after);
    // On Unix this is SIGKILL.
    child.kill().map_err(|e| format!("killing child: {e}"))?;
    let status = child
        .wait()
        .map_err(|e| format!("waiting for child: {e}"))?;
    // The pipe holds whatever the child wrote before it died.
    run.lines.extend(lines.iter());
    run.stderr = stderr.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    if status.signal() != Some(libc::SIGKILL) {
        return Err(format!(
            "child died on its own ({status}) before the kill; stderr:\n{}",
            run.stderr
        ));
    }
    Ok(run)
}

fn spawn_line_reader(child: &mut Child) -> Result<Receiver<String>, String> {
    let stdout = child.stdout.take().ok_or("child has no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test child_x ... " on the same line first.
            if let Some(at) = line.find(MARK)
                && tx.send(line[at + MARK.len()..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

fn spawn_stderr_reader(child: &mut Child) -> Result<thread::JoinHandle<String>, String> {
    let mut stderr = child.stderr.take().ok_or("child has no stderr pipe")?;
    Ok(thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    }))
}

fn parse_fields<const N: usize>(line: &str, prefix: &str) -> Result<[u64; N], String> {
    let rest = line
        .strip_prefix(prefix)
        .ok_or_else(|| format!("unexpected child line {line:?}"))?;
    let fields: Vec<u64> = rest
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("child line {line:?} is not {N} numbers after {prefix:?}: {e}"))?;
    fields
        .try_into()
        .map_err(|_| format!("child line {line:?} is not {N} numbers after {prefix:?}"))
}

/// What earlier cycles verified, so a cycle re-reads only what can have
/// changed: sealed segments are immutable, so their sizes are compared and
/// their bytes re-walked only on full passes.
#[derive(Debug, Default)]
struct Verified {
    /// End offset of the log as last verified.
    end_offset: u64,
    /// Sealed segments (all but the last file) by base: (bytes, next offset).
    sealed: BTreeMap<u64, (u64, u64)>,
}

/// Reopens the log (recovery) and checks it: every record from
/// `verified.end_offset` (from the start on a `full` pass) is read back
/// through the log and handed to `check`, and the raw segment files are
/// walked independently of the log's code.
fn verify_log(
    dir: &Path,
    verified: &mut Verified,
    full: bool,
    mut check: impl FnMut(&RecordView<'_>) -> Result<(), String>,
) -> Result<LogSummary, String> {
    let log =
        Log::open(dir, config(), now_ms()).map_err(|e| format!("reopening the log failed: {e}"))?;
    if let Some(reason) = log.fenced() {
        return Err(format!(
            "the log reopened fenced after a SIGKILL (nothing can be corrupt): {reason}"
        ));
    }
    let stats = log.stats();
    if stats.durable_offset != stats.end_offset {
        return Err(format!(
            "after reopening, durable offset {} != end {}",
            stats.durable_offset, stats.end_offset
        ));
    }
    if stats.end_offset < verified.end_offset {
        return Err(format!(
            "the log shrank from {} to {} records",
            verified.end_offset, stats.end_offset
        ));
    }
    let mut next = if full {
        stats.start_offset
    } else {
        verified.end_offset
    };
    while next < stats.end_offset {
        let fetched = log
            .read(next, 1 << 20)
            .map_err(|e| format!("read at offset {next}: {e}"))?;
        if fetched.batches.is_empty() {
            return Err(format!(
                "read at offset {next} returned nothing before the end {}",
                stats.end_offset
            ));
        }
        let mut buf = &fetched.batches[..];
        while !buf.is_empty() {
            let view = BatchView::parse(buf)
                .map_err(|e| format!("batch at offset {next} does not decode: {e}"))?;
            if view.header().base_offset != next {
                return Err(format!(
                    "batch starts at offset {} where {next} was expected",
                    view.header().base_offset
                ));
            }
            for record in view.records() {
                let record = record
                    .map_err(|e| format!("record near offset {next} does not decode: {e}"))?;
                if record.offset != next {
                    return Err(format!(
                        "record has offset {} where {next} was expected",
                        record.offset
                    ));
                }
                check(&record)?;
                next += 1;
            }
            buf = &buf[view.header().batch_len as usize..];
        }
        if next != fetched.next_offset {
            return Err(format!(
                "read said the next offset is {}, the batches end at {next}",
                fetched.next_offset
            ));
        }
    }
    drop(log);
    let raw_end = walk_segment_files(dir, &mut verified.sealed, full)?;
    if raw_end != stats.end_offset {
        return Err(format!(
            "segment files end at offset {raw_end}, the log at {}",
            stats.end_offset
        ));
    }
    verified.end_offset = stats.end_offset;
    Ok(LogSummary {
        end_offset: stats.end_offset,
        segments: stats.segments,
        bytes: stats.bytes,
    })
}

/// Walks the `.log` files byte by byte: each must be whole, checksummed
/// batches from its first byte to its last, offsets continuing across
/// files. Sealed segments known from `sealed` are only checked for size
/// unless `full`. Updates `sealed` and returns the end offset.
fn walk_segment_files(
    dir: &Path,
    sealed: &mut BTreeMap<u64, (u64, u64)>,
    full: bool,
) -> Result<u64, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("listing {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut walked = BTreeMap::new();
    let mut next: Option<u64> = None;
    for (i, path) in files.iter().enumerate() {
        let base: u64 = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{} is not named by its base offset", path.display()))?;
        if next.is_some_and(|n| n != base) {
            return Err(format!(
                "{} starts at offset {base}, the segment before ends at {next:?}",
                path.display()
            ));
        }
        let len = std::fs::metadata(path)
            .map_err(|e| format!("stat {}: {e}", path.display()))?
            .len();
        let offset = match sealed.get(&base) {
            Some(&(sealed_len, sealed_next)) if !full => {
                if len != sealed_len {
                    return Err(format!(
                        "sealed segment {} changed size: {sealed_len} -> {len} bytes",
                        path.display()
                    ));
                }
                sealed_next
            }
            _ => walk_file(path, base)?,
        };
        if i + 1 < files.len() {
            walked.insert(base, (len, offset));
        }
        next = Some(offset);
    }
    if let Some((base, _)) = sealed.iter().find(|(base, _)| !walked.contains_key(base)) {
        return Err(format!("sealed segment with base offset {base} is gone"));
    }
    *sealed = walked;
    Ok(next.unwrap_or(0))
}

/// Checks one segment file whole; returns the offset after its last batch.
fn walk_file(path: &Path, base: u64) -> Result<u64, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut offset = base;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let view = BatchView::parse(&bytes[pos..]).map_err(|e| {
            format!(
                "{} byte {pos} (offset {offset}): not a whole batch: {e}",
                path.display()
            )
        })?;
        view.validate()
            .map_err(|e| format!("{} byte {pos}: bad records: {e}", path.display()))?;
        if view.header().base_offset != offset {
            return Err(format!(
                "{} byte {pos}: batch at offset {} where {offset} was expected",
                path.display(),
                view.header().base_offset
            ));
        }
        offset = view.header().next_offset();
        pos += view.header().batch_len as usize;
    }
    Ok(offset)
}

#[derive(Debug, Clone, Copy)]
struct LogSummary {
    end_offset: u64,
    segments: usize,
    bytes: u64,
}

fn cycles() -> u32 {
    match std::env::var(CYCLES_ENV) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{CYCLES_ENV}={v:?} is not a cycle count: {e}")),
        Err(_) => DEFAULT_CYCLES,
    }
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={v:?} is not a u64: {e}")),
        Err(_) => rand::rng().random(),
    }
}

/// A full pass re-reads the whole log; other cycles read what is new.
const FULL_PASS_EVERY: u32 = 50;

/// Runs the kill cycles of one variant. `one_cycle(dir, cycle, full, seed,
/// rng)` runs and kills a child, then verifies the reopened log (all of it
/// when `full`: every 50th cycle and the last).
fn kill_cycles(
    name: &str,
    mut one_cycle: impl FnMut(&Path, u32, bool, u64, &mut StdRng) -> Result<LogSummary, String>,
) {
    let cycles = cycles();
    let seed = seed();
    let dir = tempfile::Builder::new()
        .prefix(&format!("weir-crash-{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("creating the test directory");
    let log_dir = dir.path().join("log");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut last = LogSummary {
        end_offset: 0,
        segments: 0,
        bytes: 0,
    };
    for cycle in 0..cycles {
        let full = (cycle + 1) % FULL_PASS_EVERY == 0 || cycle + 1 == cycles;
        match one_cycle(&log_dir, cycle, full, seed, &mut rng) {
            Ok(summary) => last = summary,
            Err(e) => {
                let kept = dir.keep();
                panic!(
                    "{name}: crash cycle {cycle} of {cycles} ({CYCLES_ENV}) failed: {e}\n\
                     seed {seed} (rerun with {SEED_ENV}={seed}); log kept in {}",
                    kept.join("log").display()
                );
            }
        }
    }
    println!(
        "{name}: {cycles} kill cycles in {:.1?}; log holds {} records, {} bytes in {} segments",
        started.elapsed(),
        last.end_offset,
        last.bytes,
        last.segments
    );
}

fn kill_after(rng: &mut StdRng) -> Duration {
    Duration::from_millis(rng.random_range(KILL_AFTER_MS))
}

#[test]
fn kill_single_appender() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let mut verified = Verified::default();
    let mut durable_max: Option<u64> = None;
    kill_cycles("single", |dir, cycle, full, seed, rng| {
        let run = run_and_kill(
            dir,
            &Mode::Single,
            seed ^ mix(u64::from(cycle)),
            kill_after(rng),
        )?;
        if run.ready_end != Some(verified.end_offset) {
            return Err(format!(
                "child opened the log at end {:?}, the parent last saw {}",
                run.ready_end, verified.end_offset
            ));
        }
        for line in &run.lines {
            let [last] = parse_fields::<1>(line, "DURABLE ")?;
            if durable_max.is_some_and(|m| last <= m) {
                return Err(format!(
                    "durable offsets went backwards: {last} after {durable_max:?}"
                ));
            }
            durable_max = Some(last);
        }
        let summary = verify_log(dir, &mut verified, full, |record| {
            let expected = expected_at(record.offset);
            if matches(record, &expected) {
                Ok(())
            } else {
                Err(format!(
                    "record at offset {} differs from what the child wrote there (payload {} bytes, expected {})",
                    record.offset,
                    record.payload.len(),
                    expected.payload.len()
                ))
            }
        })?;
        if let Some(last) = durable_max
            && summary.end_offset <= last
        {
            return Err(format!(
                "offset {last} was reported durable but the reopened log ends at {} (lost durable data)",
                summary.end_offset
            ));
        }
        Ok(summary)
    });
}

#[test]
fn kill_group_commit() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let mut verified = Verified::default();
    // Per writer: the highest seq reported durable. Per offset: which
    // (writer, seq) the child said it put there.
    let mut reported: HashMap<u64, u64> = HashMap::new();
    let mut reported_at: HashMap<u64, (u64, u64)> = HashMap::new();
    // Per writer: the next seq expected in log order, for records below
    // `verified.end_offset`.
    let mut next_seq: HashMap<u64, u64> = HashMap::new();
    kill_cycles("group", |dir, cycle, full, seed, rng| {
        let writer_base = u64::from(cycle) * WRITERS_PER_CYCLE;
        let threads = rng.random_range(2..=4);
        let mode = Mode::Group {
            writer_base,
            threads,
        };
        let run = run_and_kill(dir, &mode, seed ^ mix(u64::from(cycle)), kill_after(rng))?;
        if run.ready_end != Some(verified.end_offset) {
            return Err(format!(
                "child opened the log at end {:?}, the parent last saw {}",
                run.ready_end, verified.end_offset
            ));
        }
        for line in &run.lines {
            let [writer, seq, last_offset] = parse_fields::<3>(line, "DURABLE ")?;
            if !(writer_base..writer_base + threads).contains(&writer) {
                return Err(format!(
                    "child reported writer {writer}, not one of this cycle's"
                ));
            }
            let previous = reported.insert(writer, seq);
            if previous.is_some_and(|p| p >= seq) {
                return Err(format!(
                    "writer {writer}'s durable seq went backwards: {seq} after {previous:?}"
                ));
            }
            reported_at.insert(last_offset, (writer, seq));
        }
        if full {
            next_seq.clear();
        }
        let summary = verify_log(dir, &mut verified, full, |record| {
            let p = record.payload;
            let (Some(w), Some(s)) = (p.get(0..8), p.get(8..16)) else {
                return Err(format!(
                    "record at offset {} has a {}-byte payload",
                    record.offset,
                    p.len()
                ));
            };
            let writer = u64::from_le_bytes(w.try_into().unwrap_or_default());
            let seq = u64::from_le_bytes(s.try_into().unwrap_or_default());
            let expected_seq = next_seq.entry(writer).or_insert(0);
            if seq != *expected_seq {
                return Err(format!(
                    "record at offset {} is writer {writer} seq {seq}, but that writer's next seq is {expected_seq}",
                    record.offset
                ));
            }
            *expected_seq += 1;
            if p != group_payload(writer, seq).as_slice() {
                return Err(format!(
                    "record at offset {} (writer {writer} seq {seq}) has the wrong payload",
                    record.offset
                ));
            }
            if let Some(&(w, s)) = reported_at.get(&record.offset)
                && (w, s) != (writer, seq)
            {
                return Err(format!(
                    "offset {} was reported durable as writer {w} seq {s}, the log holds writer {writer} seq {seq}",
                    record.offset
                ));
            }
            Ok(())
        })?;
        for (&writer, &seq) in &reported {
            let held = next_seq.get(&writer).copied().unwrap_or(0);
            if held <= seq {
                return Err(format!(
                    "writer {writer} seq {seq} was reported durable but the log holds only seqs below {held} (lost durable data)"
                ));
            }
        }
        if let Some(&max) = reported_at.keys().max()
            && summary.end_offset <= max
        {
            return Err(format!(
                "offset {max} was reported durable but the log ends at {}",
                summary.end_offset
            ));
        }
        Ok(summary)
    });
}
