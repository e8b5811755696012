//! Benchmark of a topic's dedup window: nanoseconds per message for the
//! `get` then `insert` that ingest does, with every key unique (the common
//! case: nothing to deduplicate, everything to remember).
//!
//! ```text
//! cargo bench -p weir-node --bench dedup              # the full run, some seconds
//! cargo bench -p weir-node --bench dedup -- --quick   # a tiny run of every code path
//! cargo test -p weir-node --benches                   # the same tiny run, as a test
//! ```
//!
//! It feeds 1,000,000 unique 24-byte keys, 1,000 per millisecond of record
//! time, into a window of 60 s (so nothing expires by time) holding at most
//! 1,000,000 keys, then at most 100,000 (so from the 100,001st key on, each
//! insert drops the oldest). Each case runs the window as it was before (a
//! copy kept below as the baseline), then the window as it is now, and
//! reports the median of the runs. Dropping the window is not timed.
//! The process uses the system allocator; the `weir` binary uses mimalloc,
//! which makes the baseline's two allocations per key cheaper.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

// The window itself, compiled from the node's source: it is private to
// the crate. The bench uses only part of it.
#[allow(dead_code)]
#[path = "../src/dedup.rs"]
mod dedup;

use dedup::Seen;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const KEY_BYTES: usize = 24;
const WINDOW_MS: u64 = 60_000;
const KEYS_PER_MS: usize = 1_000;
const BASE_MS: i64 = 1_700_000_000_000;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    keys: usize,
    /// The `max_entries` of each case.
    max_entries: [usize; 2],
    /// Runs of each case and implementation (the median is reported).
    runs: usize,
}

const FULL: Sizes = Sizes {
    keys: 1_000_000,
    max_entries: [1_000_000, 100_000],
    runs: 5,
};

const QUICK: Sizes = Sizes {
    keys: 20_000,
    max_entries: [20_000, 2_000],
    runs: 1,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then this is a smoke test of every code path.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let sizes = if quick { QUICK } else { FULL };

    println!(
        "weir-node dedup window benchmark{}",
        if quick {
            " (quick: figures are meaningless)"
        } else {
            ""
        }
    );
    println!(
        "  keys      {} unique, {KEY_BYTES} B each, {KEYS_PER_MS} per ms of record time",
        sizes.keys
    );
    println!("  window    {WINDOW_MS} ms; median of {} runs", sizes.runs);
    println!();

    let keys = keys(sizes.keys);
    println!("| max_entries | keys | old ns/op | new ns/op | old / new |");
    println!("|---:|---:|---:|---:|---:|");
    for max_entries in sizes.max_entries {
        // Not interleaved: the baseline's millions of small frees leave
        // the allocator work that the next run's large allocations would
        // pay for. The median leaves out the run that does.
        let old_runs = (0..sizes.runs)
            .map(|_| run::<old::DedupWindow>(&keys, max_entries))
            .collect::<Result<Vec<_>>>()?;
        let new_runs = (0..sizes.runs)
            .map(|_| run::<dedup::DedupWindow>(&keys, max_entries))
            .collect::<Result<Vec<_>>>()?;
        let (old, new) = (
            ns_per_op(old_runs, keys.len()),
            ns_per_op(new_runs, keys.len()),
        );
        println!(
            "| {max_entries} | {} | {old:.1} | {new:.1} | {:.2} |",
            keys.len(),
            old / new
        );
    }
    Ok(())
}

/// The operations measured, so both implementations run the same loop.
trait Window {
    fn new(window_ms: u64, max_entries: usize) -> Self;
    fn get(&self, key: &[u8], now_ms: i64) -> Option<Seen>;
    fn insert(&mut self, key: &[u8], seen: Seen, ts_ms: i64, now_ms: i64);
    fn len(&self) -> usize;
}

/// One timed pass over `keys`, checked afterwards.
fn run<W: Window>(keys: &[[u8; KEY_BYTES]], max_entries: usize) -> Result<Duration> {
    let mut w = W::new(WINDOW_MS, max_entries);
    let start = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        let now_ms = BASE_MS + (i / KEYS_PER_MS) as i64;
        if black_box(w.get(key, now_ms)).is_none() {
            let seen = Seen {
                partition: (i % 8) as u32,
                offset: i as u64,
            };
            w.insert(key, seen, now_ms, now_ms);
        }
    }
    let elapsed = start.elapsed();

    let now_ms = BASE_MS + (keys.len() / KEYS_PER_MS) as i64;
    let kept = keys.len().min(max_entries);
    if w.len() != kept {
        return Err(format!("{} keys remembered, expected {kept}", w.len()).into());
    }
    let last = keys.len() - 1;
    let expected = Some(Seen {
        partition: (last % 8) as u32,
        offset: last as u64,
    });
    if w.get(&keys[last], now_ms) != expected {
        return Err("the newest key is not remembered where it was stored".into());
    }
    if kept < keys.len() && w.get(&keys[0], now_ms).is_some() {
        return Err("the oldest key outlived the count limit".into());
    }
    drop(w);
    Ok(elapsed)
}

fn ns_per_op(mut runs: Vec<Duration>, ops: usize) -> f64 {
    runs.sort();
    runs[runs.len() / 2].as_nanos() as f64 / ops as f64
}

/// Unique keys shaped like message ids: 16 hex digits, a dash, 7 digits.
fn keys(n: usize) -> Vec<[u8; KEY_BYTES]> {
    (0..n)
        .map(|i| {
            let text = format!("{:016x}-{:07}", splitmix(i as u64), i % 10_000_000);
            let mut key = [0; KEY_BYTES];
            key.copy_from_slice(&text.as_bytes()[..KEY_BYTES]);
            key
        })
        .collect()
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Both windows have the same inherent methods; the trait only names them.
macro_rules! window {
    ($window:ty) => {
        impl Window for $window {
            fn new(window_ms: u64, max_entries: usize) -> Self {
                <$window>::new(window_ms, max_entries)
            }
            fn get(&self, key: &[u8], now_ms: i64) -> Option<Seen> {
                self.get(key, now_ms)
            }
            fn insert(&mut self, key: &[u8], seen: Seen, ts_ms: i64, now_ms: i64) {
                self.insert(key, seen, ts_ms, now_ms)
            }
            fn len(&self) -> usize {
                self.len()
            }
        }
    };
}

window!(dedup::DedupWindow);
window!(old::DedupWindow);

/// BASELINE, not used by the node: the dedup window as it was before
/// hashbrown and foldhash.
// Under `cargo test --benches` src/dedup.rs loads this file too, as its
// test model.
#[allow(clippy::duplicate_mod)]
#[path = "../src/dedup/naive.rs"]
mod old;
