//! Figures for docs/plugins.md, not a timed test: ns per message for batches
//! of 100 × 1 KiB messages through no plugin, a no-op plugin, and the chain
//! json-filter → dedup-by-field → kafka-partitioner; plus the compile time
//! of a plugin and its load time from the disk cache.
//!
//! Run after scripts/build-plugins:
//! `cargo run -p weir-plugin --release --example plugin_bench`

#[path = "../tests/host/common.rs"]
mod common;

use std::time::{Duration, Instant};

use weir_plugin::{Chain, HostConfig, Message, PluginHost};

const BATCH: usize = 100;
const BATCHES: usize = 2_000;

/// Batches per figure; `WEIR_BENCH_BATCHES` raises it so a profiler sees
/// the runs rather than the compiles.
fn batches() -> usize {
    std::env::var("WEIR_BENCH_BATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(BATCHES)
}

fn messages() -> Vec<Message> {
    (0..BATCH)
        .map(|i| {
            let head = format!(r#"{{"level": "warn", "latency_ms": {}, "user": "u-{i}", "order_id": "o-{i}", "pad": ""#, 100 + i);
            let mut payload = head.into_bytes();
            payload.resize(1024 - 2, b'x');
            payload.extend_from_slice(b"\"}");
            Message { key: Some(format!("key-{i}").into_bytes()), headers: vec![], payload, timestamp_ms: 0 }
        })
        .collect()
}

/// CPU time of this thread, so figures hold on a machine shared with other
/// work (wall time is printed too).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn per_message(chain: &Chain, messages: &[Message]) -> String {
    let context = common::context(12);
    for _ in 0..50 {
        chain.run(&context, messages);
    }
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let batches = batches();
    for _ in 0..batches {
        let run = chain.run(&context, messages);
        assert!(run.errors.is_empty(), "{:?}", run.errors);
    }
    let n = (batches * BATCH) as f64;
    let cpu_ns = (thread_cpu() - cpu).as_nanos() as f64 / n;
    let wall_ns = wall.elapsed().as_nanos() as f64 / n;
    format!("{cpu_ns:>8.1} ns/message CPU ({wall_ns:.1} wall)")
}

fn main() {
    let host = common::host();
    let messages = messages();
    // `plugin_bench PLUGIN [CONFIG]` times one plugin alone, for profiling.
    if let Some(plugin) = std::env::args().nth(1) {
        let config = std::env::args().nth(2).unwrap_or_default();
        let chain = Chain::new(vec![common::attach(&host, &plugin, &config)]);
        println!("{plugin}: {}", per_message(&chain, &messages));
        return;
    }

    let none = Chain::new(vec![]);
    let noop = Chain::new(vec![common::attach(&host, "noop", "")]);
    let three = Chain::new(vec![
        common::attach(
            &host,
            "json-filter",
            r#"{"where": [{"field": "/latency_ms", "op": ">=", "value": 100}]}"#,
        ),
        common::attach(&host, "dedup-by-field", r#"{"field": "/order_id"}"#),
        common::attach(&host, "kafka-partitioner", ""),
    ]);
    println!("batch of {BATCH} x 1 KiB messages, {} batches", batches());
    println!("(a) no plugin:           {}", per_message(&none, &messages));
    println!("(b) noop plugin:         {}", per_message(&noop, &messages));
    println!(
        "(c) 3-plugin chain:      {}",
        per_message(&three, &messages)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = common::plugin_bytes("json-filter");
    let cached = |dir: &std::path::Path| {
        PluginHost::new(HostConfig {
            cache_dir: Some(dir.to_path_buf()),
            ..HostConfig::default()
        })
        .expect("host")
    };
    let compiled = cached(dir.path())
        .compile("json-filter", &wasm)
        .expect("compiles");
    let loaded: Vec<Duration> = (0..5)
        .map(|_| {
            cached(dir.path())
                .compile("json-filter", &wasm)
                .expect("loads")
                .load_time()
        })
        .collect();
    let best = loaded.iter().min().copied().unwrap_or_default();
    println!(
        "compile json-filter ({} KiB): {:>8.1} ms",
        wasm.len() / 1024,
        compiled.load_time().as_secs_f64() * 1e3
    );
    println!(
        "load json-filter from cache:  {:>8.1} ms (best of 5)",
        best.as_secs_f64() * 1e3
    );
}
