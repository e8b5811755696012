//! Storage benchmark of weir-log: append and read throughput against the
//! disk's own fdatasync speed, measured in one run on one directory.
//!
//! ```text
//! cargo bench -p weir-log --bench log              # the full run, about a minute
//! cargo bench -p weir-log --bench log -- --quick   # a tiny run of every code path
//! cargo test -p weir-log --benches                 # the same tiny run, as a test
//! ```
//!
//! It prints, for 1 KiB records in batches of 100 (pre-built, so the encoder
//! is not measured; the log's own validation of every batch, CRC and record
//! walk, is): append throughput with flush `none`, and with flush `durable`
//! from 1, 4 and 16 appender threads sharing one log (group commit); read
//! throughput from the page cache through `Log::read` in 1 MiB fetches, with
//! and without verifying and walking every batch; and the baseline,
//! sequential 1 MiB writes each followed by `fdatasync`, in the same
//! directory. Then the ratios against the targets (durable append ≥ 60 % of
//! the baseline, `none` append ≥ 1 GB/s, reads ≥ 2 GB/s) with PASS/MISS.
//!
//! Files go to a temporary directory under `WEIR_BENCH_DIR`, or under the
//! target directory by default (not `/tmp`, which may be tmpfs). MB and GB
//! are decimal (10^6, 10^9 bytes) and count encoded batch bytes.

use std::error::Error;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_log::{FlushPolicy, Log, LogConfig};
use weir_proto::{BatchBuilder, BatchView, NewRecord};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 100;
const FETCH_BYTES: usize = 1 << 20;
const BASELINE_WRITE_BYTES: usize = 1 << 20;
/// Distinct pre-built batches each appender cycles through.
const BATCH_POOL: usize = 16;

const TARGET_DURABLE_OF_BASELINE: f64 = 0.60;
const TARGET_NONE_MB_S: f64 = 1000.0;
const TARGET_READ_MB_S: f64 = 2000.0;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Bytes appended with flush `none` (kept under one segment and under
    /// the kernel's dirty-page limits, so this measures the log and the
    /// page cache, not writeback).
    none_bytes: u64,
    /// Runs of the `none` append (the median is reported).
    none_runs: usize,
    /// How long each durable append run and each baseline run lasts.
    timed: Duration,
    /// Timed passes over the log for each read mode (the median is reported).
    read_passes: usize,
    /// Appender threads of the durable runs.
    durable_threads: &'static [usize],
}

const FULL: Sizes = Sizes {
    none_bytes: 768 << 20,
    none_runs: 3,
    timed: Duration::from_secs(6),
    read_passes: 5,
    durable_threads: &[1, 4, 16],
};

const QUICK: Sizes = Sizes {
    none_bytes: 8 << 20,
    none_runs: 1,
    timed: Duration::from_millis(150),
    read_passes: 1,
    durable_threads: &[1, 4],
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then this is a smoke test of every code path.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let sizes = if quick { QUICK } else { FULL };

    let base = match std::env::var_os("WEIR_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    };
    std::fs::create_dir_all(&base)?;
    let root = tempfile::Builder::new()
        .prefix("weir-bench-")
        .tempdir_in(&base)?;
    let fs_type = fs_type(root.path());
    println!(
        "weir-log storage benchmark{}",
        if quick {
            " (quick: figures are meaningless)"
        } else {
            ""
        }
    );
    println!("  dir       {} ({fs_type})", root.path().display());
    println!(
        "  cpus      {}",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  records   {RECORD_BYTES} B payload, {RECORDS_PER_BATCH} per batch ({} B encoded)",
        batch(0)?.len()
    );
    if fs_type == "tmpfs" || fs_type == "ramfs" {
        println!("  WARNING   {fs_type} is memory: set WEIR_BENCH_DIR to a directory on a disk");
    }
    println!();

    let mut results = Results::default();

    let baseline_before = baseline(root.path(), BASELINE_WRITE_BYTES, sizes.timed)?;
    results.line(
        "baseline: 1 MiB write + fdatasync (before)",
        &baseline_before,
    );
    for &threads in sizes.durable_threads {
        let m = append_durable(
            &root.path().join(format!("durable-{threads}")),
            threads,
            sizes.timed,
        )?;
        results.line(&format!("append durable, {threads} thread(s)"), &m);
        results.durable.push((threads, m));
    }
    let pipelined = append_durable_pipelined(
        &root.path().join("durable-pipelined"),
        PIPELINE_WINDOW,
        sizes.timed,
    )?;
    results.line(
        &format!("append durable, 1 producer pipelined ({PIPELINE_WINDOW} in flight)"),
        &pipelined,
    );
    let baseline_after = baseline(root.path(), BASELINE_WRITE_BYTES, sizes.timed)?;
    results.line("baseline: 1 MiB write + fdatasync (after)", &baseline_after);
    // Not a target: the disk with one batch's worth of bytes per fdatasync,
    // what a lone durable appender can at best do.
    let small = baseline(root.path(), batch(0)?.len(), sizes.timed)?;
    results.line("info: batch-sized write + fdatasync", &small);
    let baseline_mb_s = (baseline_before.mb_s() + baseline_after.mb_s()) / 2.0;

    let mut none_runs = Vec::new();
    let mut kept = None;
    for run in 0..sizes.none_runs {
        let dir = root.path().join(format!("none-{run}"));
        let (m, log) = append_none(&dir, sizes.none_bytes)?;
        results.line(&format!("append none, 1 thread (run {})", run + 1), &m);
        none_runs.push(m);
        if let Some(previous) = kept.replace(log) {
            // Not timed: write the previous run out and free its space.
            drop_log(previous)?;
        }
    }
    let none = median(none_runs);
    let log = kept.ok_or("no none run")?;

    // The mapping is warm after this (as in a long-running node).
    read_pass(&log, ReadMode::Copy)?;
    let mut reads = Vec::new();
    for mode in [ReadMode::Fetch, ReadMode::Copy, ReadMode::Verify] {
        let m = median(
            (0..sizes.read_passes)
                .map(|_| read_pass(&log, mode))
                .collect::<Result<Vec<_>>>()?,
        );
        results.line(mode.label(), &m);
        reads.push((mode, m));
    }
    drop_log(log)?;

    println!();
    println!("| target | measured | target | ratio | |");
    println!("|---|---:|---:|---:|---|");
    for (threads, m) in &results.durable {
        verdict(
            &format!("durable append, {threads} thread(s), vs baseline {baseline_mb_s:.0} MB/s"),
            m.mb_s(),
            TARGET_DURABLE_OF_BASELINE * baseline_mb_s,
            "MB/s",
        );
    }
    verdict(
        &format!("durable append, 1 producer pipelined, vs baseline {baseline_mb_s:.0} MB/s"),
        pipelined.mb_s(),
        TARGET_DURABLE_OF_BASELINE * baseline_mb_s,
        "MB/s",
    );
    verdict("none append", none.mb_s(), TARGET_NONE_MB_S, "MB/s");
    // A zero-copy fetch touches only batch headers: its figure is printed
    // above but is no throughput to hold against a target.
    for (mode, m) in reads
        .iter()
        .filter(|(mode, _)| !matches!(mode, ReadMode::Fetch))
    {
        verdict(mode.label(), m.mb_s(), TARGET_READ_MB_S, "MB/s");
    }
    drop(root);
    Ok(())
}

/// One measurement. `cpu` over `elapsed` is the cores kept busy: near 0
/// means the disk (fsync) is the limit, near the core count the CPU.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    bytes: u64,
    records: u64,
    elapsed: Duration,
    /// CPU time of the process (all threads) during the measurement.
    cpu: Duration,
    /// Write latency percentiles (p50, p99), where measured.
    latency: Option<(Duration, Duration)>,
}

impl Measure {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    fn records_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Default)]
struct Results {
    durable: Vec<(usize, Measure)>,
}

impl Results {
    fn line(&mut self, what: &str, m: &Measure) {
        let records = if m.records > 0 {
            format!("{:>10.0} rec/s", m.records_s())
        } else {
            " ".repeat(16)
        };
        let latency = m
            .latency
            .map(|(p50, p99)| format!("  p50 {:.2} ms, p99 {:.2} ms", ms(p50), ms(p99)))
            .unwrap_or_default();
        println!(
            "{what:<50} {:>9.1} MB/s {records}  cpu {:.2}  ({:.0} MB in {:.2} s){latency}",
            m.mb_s(),
            m.cpu.as_secs_f64() / m.elapsed.as_secs_f64(),
            m.bytes as f64 / 1e6,
            m.elapsed.as_secs_f64()
        );
        // Keep the lines coming while a long run goes on.
        let _ = std::io::stdout().flush();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(what: &str, measured: f64, target: f64, unit: &str) {
    let ratio = measured / target;
    let pass = if ratio >= 1.0 { "PASS" } else { "MISS" };
    println!("| {what} | {measured:.0} {unit} | ≥ {target:.0} {unit} | {ratio:.2} | {pass} |");
}

fn median(mut ms: Vec<Measure>) -> Measure {
    ms.sort_by(|a, b| a.mb_s().total_cmp(&b.mb_s()));
    ms.get(ms.len() / 2).copied().unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        flush,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

/// A batch of 100 records with 1 KiB payloads of pseudo-random bytes.
fn batch(seed: u64) -> Result<Vec<u8>> {
    let mut builder = BatchBuilder::with_capacity(RECORDS_PER_BATCH * (RECORD_BYTES + 16) + 64);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut payload = vec![0u8; RECORD_BYTES];
    let ts = now_ms();
    for _ in 0..RECORDS_PER_BATCH {
        for chunk in payload.chunks_mut(8) {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        builder.push(&NewRecord {
            timestamp_ms: ts,
            payload: &payload,
            ..NewRecord::default()
        })?;
    }
    Ok(builder.finish()?)
}

fn batch_pool(seed: u64) -> Result<Vec<Vec<u8>>> {
    (0..BATCH_POOL as u64)
        .map(|i| batch(seed * BATCH_POOL as u64 + i))
        .collect()
}

/// Sequential writes of `write_bytes`, each followed by fdatasync, for
/// `timed`.
fn baseline(dir: &Path, write_bytes: usize, timed: Duration) -> Result<Measure> {
    let path = dir.join("baseline.dat");
    let mut file = File::create(&path)?;
    let buf: Vec<u8> = (0..write_bytes)
        .map(|i| (i as u8).wrapping_mul(31))
        .collect();
    let mut m = Measure::default();
    let mut latencies = Vec::new();
    let cpu = cpu_time();
    let start = Instant::now();
    while start.elapsed() < timed {
        let t0 = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        latencies.push(t0.elapsed());
        m.bytes += buf.len() as u64;
    }
    m.elapsed = start.elapsed();
    m.cpu = cpu_time().saturating_sub(cpu);
    m.latency = percentiles(latencies);
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(m)
}

fn percentiles(mut latencies: Vec<Duration>) -> Option<(Duration, Duration)> {
    latencies.sort_unstable();
    let last = latencies.len().checked_sub(1)?;
    let pick = |q: f64| latencies[(last as f64 * q) as usize];
    Some((pick(0.50), pick(0.99)))
}

/// CPU time (user + system) of the whole process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given and nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: it succeeded, so the struct is written (it was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `threads` appenders share one durable log for `timed`.
fn append_durable(dir: &Path, threads: usize, timed: Duration) -> Result<Measure> {
    let log = Arc::new(Log::open(dir, config(FlushPolicy::Durable), now_ms())?);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for t in 0..threads {
        let (log, stop, barrier) = (log.clone(), stop.clone(), barrier.clone());
        let mut pool = batch_pool(t as u64)?;
        handles.push(thread::spawn(
            move || -> std::result::Result<(u64, u64, Vec<Duration>), String> {
                let mut bytes = 0u64;
                let mut records = 0u64;
                let mut latencies = Vec::with_capacity(1 << 16);
                barrier.wait();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch = &mut pool[i % BATCH_POOL];
                    i += 1;
                    let t0 = Instant::now();
                    let appended = log.append(batch, now_ms()).map_err(|e| e.to_string())?;
                    latencies.push(t0.elapsed());
                    if !appended.durable {
                        return Err("a durable append returned before its batch was durable".into());
                    }
                    bytes += batch.len() as u64;
                    records += RECORDS_PER_BATCH as u64;
                }
                Ok((bytes, records, latencies))
            },
        ));
    }
    barrier.wait();
    let cpu = cpu_time();
    let start = Instant::now();
    thread::sleep(timed);
    stop.store(true, Ordering::Relaxed);
    let mut m = Measure::default();
    let mut latencies = Vec::new();
    for handle in handles {
        let (bytes, records, lat) = handle.join().map_err(|_| "appender thread panicked")??;
        m.bytes += bytes;
        m.records += records;
        latencies.extend(lat);
    }
    m.elapsed = start.elapsed();
    m.cpu = cpu_time().saturating_sub(cpu);
    m.latency = percentiles(latencies);
    let log = Arc::try_unwrap(log).map_err(|_| "log still shared")?;
    drop_log(log)?;
    Ok(m)
}

/// Batches one producer may have written but not yet seen durable: the
/// node's produce stream answers in order while the next batches are
/// written (`max_pending_produces`).
const PIPELINE_WINDOW: usize = 8;

/// One producer, pipelined as the node runs a produce stream: a writer
/// appends without waiting and hands each batch's end offset to an acker,
/// which waits for durability in order; at most `window` batches are
/// unacknowledged. Batches written during one fsync share the next.
fn append_durable_pipelined(dir: &Path, window: usize, timed: Duration) -> Result<Measure> {
    let log = Arc::new(Log::open(dir, config(FlushPolicy::Durable), now_ms())?);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Instant)>(window);
    let acker = {
        let log = log.clone();
        thread::spawn(move || -> std::result::Result<Vec<Duration>, String> {
            let mut latencies = Vec::with_capacity(1 << 16);
            for (end, t0) in rx {
                log.sync_to(end).map_err(|e| e.to_string())?;
                latencies.push(t0.elapsed());
            }
            Ok(latencies)
        })
    };
    let mut pool = batch_pool(99)?;
    let cpu = cpu_time();
    let start = Instant::now();
    let mut m = Measure::default();
    let mut i = 0;
    while start.elapsed() < timed {
        let batch = &mut pool[i % BATCH_POOL];
        i += 1;
        let t0 = Instant::now();
        let appended = log.append_no_wait(batch, now_ms())?;
        tx.send((appended.last_offset + 1, t0))
            .map_err(|_| "acker stopped")?;
        m.bytes += batch.len() as u64;
        m.records += RECORDS_PER_BATCH as u64;
    }
    drop(tx);
    let latencies = acker.join().map_err(|_| "acker thread panicked")??;
    m.elapsed = start.elapsed();
    m.cpu = cpu_time().saturating_sub(cpu);
    m.latency = percentiles(latencies);
    if log.durable_offset() != log.end_offset() {
        return Err("the pipelined run ended with batches not durable".into());
    }
    let log = Arc::try_unwrap(log).map_err(|_| "log still shared")?;
    drop_log(log)?;
    Ok(m)
}

/// One appender, flush `none`, until `total` bytes are appended. Returns
/// the log (open, its pages in the page cache) for the read passes.
fn append_none(dir: &Path, total: u64) -> Result<(Measure, Log)> {
    let log = Log::open(dir, config(FlushPolicy::None), now_ms())?;
    let mut pool = batch_pool(1000)?;
    let mut m = Measure::default();
    let cpu = cpu_time();
    let start = Instant::now();
    let mut i = 0;
    while m.bytes < total {
        let batch = &mut pool[i % BATCH_POOL];
        i += 1;
        log.append(batch, now_ms())?;
        m.bytes += batch.len() as u64;
        m.records += RECORDS_PER_BATCH as u64;
    }
    m.elapsed = start.elapsed();
    m.cpu = cpu_time().saturating_sub(cpu);
    Ok((m, log))
}

/// Closes a log (an fsync, not timed) and deletes its files.
fn drop_log(log: Log) -> Result<()> {
    let dir = log.dir().to_path_buf();
    log.close()?;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum ReadMode {
    /// `Log::read` only: zero-copy slices, so only batch headers are touched.
    Fetch,
    /// Each fetch copied into a buffer (every byte touched, as a send would).
    Copy,
    /// Each batch parsed (header and body CRC32C) and its records walked.
    Verify,
}

impl ReadMode {
    fn label(self) -> &'static str {
        match self {
            ReadMode::Fetch => "read: fetch 1 MiB (zero-copy, headers only)",
            ReadMode::Copy => "read: fetch 1 MiB + copy out",
            ReadMode::Verify => "read: fetch 1 MiB + verify batches + walk records",
        }
    }
}

/// Reads the whole log from the start in 1 MiB fetches.
fn read_pass(log: &Log, mode: ReadMode) -> Result<Measure> {
    let end = log.end_offset();
    let mut copy: Vec<u8> = Vec::with_capacity(FETCH_BYTES + (1 << 20));
    let mut m = Measure::default();
    let mut offset = log.stats().start_offset;
    let cpu = cpu_time();
    let start = Instant::now();
    while offset < end {
        let fetched = log.read(offset, FETCH_BYTES)?;
        if fetched.batches.is_empty() {
            return Err(format!("read at {offset} returned nothing before the end {end}").into());
        }
        match mode {
            ReadMode::Fetch => {
                black_box(&fetched.batches);
            }
            ReadMode::Copy => {
                copy.clear();
                copy.extend_from_slice(&fetched.batches);
                black_box(&copy);
            }
            ReadMode::Verify => {
                let mut buf = &fetched.batches[..];
                while !buf.is_empty() {
                    let view = BatchView::parse(buf)?;
                    for record in view.records() {
                        black_box(record?.payload);
                        m.records += 1;
                    }
                    buf = &buf[view.header().batch_len as usize..];
                }
            }
        }
        m.bytes += fetched.batches.len() as u64;
        offset = fetched.next_offset;
    }
    m.elapsed = start.elapsed();
    m.cpu = cpu_time().saturating_sub(cpu);
    if !matches!(mode, ReadMode::Verify) {
        m.records = end - log.stats().start_offset;
    }
    Ok(m)
}

/// The file system type of `dir`, as `stat -f` names it.
fn fs_type(dir: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown file system".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}
