//! Every `weir bench` code path at sizes that run in seconds: against the
//! bench's own in-process node, through the real client, with the real
//! example plugins (built by scripts/build-plugins). The figures are
//! meaningless at these sizes and nothing here checks a speed; what is
//! checked is that each run moves every message and reports it.

use clap::Parser;
use weir_bench::{BenchArgs, Report};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

async fn bench(args: &[&str]) -> Report {
    let argv = std::iter::once("bench").chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let report = weir_bench::run(cli.bench)
        .await
        .unwrap_or_else(|e| panic!("weir bench {}: {e}", args.join(" ")));
    // Both renderings work for every report; JSON is one parseable object.
    assert!(report.to_text().contains("| figure |"));
    let parsed: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    assert_eq!(
        parsed["measurements"].as_array().map(Vec::len),
        Some(report.measurements.len())
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_counts_every_message_and_its_latency() {
    let report = bench(&["produce", "--messages", "1000", "--batch", "100", "--json"]).await;
    let m = &report.measurements[0];
    assert_eq!(m.messages, 1000);
    assert_eq!(m.bytes, 1000 * 1024);
    let latency = m.latency.as_ref().expect("latency");
    assert_eq!(latency.count, 1000);
    assert!(latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us);
    assert!(m.msgs_per_s > 0.0 && m.mb_per_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_producers_partitions_durable_acks_and_small_messages() {
    let report = bench(&[
        "produce",
        "--messages",
        "600",
        "--size",
        "40",
        "--batch",
        "7",
        "--producers",
        "3",
        "--partitions",
        "2",
        "--acks",
        "durable",
    ])
    .await;
    assert_eq!(report.measurements[0].messages, 600);
    let report = bench(&["produce", "--duration", "200ms", "--acks", "none"]).await;
    assert!(report.measurements[0].messages > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_through_the_three_plugin_chain_stores_every_message() {
    let report = bench(&[
        "produce",
        "--messages",
        "500",
        "--batch",
        "50",
        "--partitions",
        "3",
        "--chain",
        "json-filter,dedup-by-field,kafka-partitioner",
    ])
    .await;
    let m = &report.measurements[0];
    assert_eq!(m.messages, 500);
    assert!(
        m.notes.is_empty(),
        "nothing dropped or deduplicated: {:?}",
        m.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_filters_everything_is_reported() {
    let report = bench(&[
        "produce",
        "--messages",
        "100",
        "--chain",
        "json-filter",
        "--plugin-config",
        r#"json-filter={"where": [{"field": "/latency_ms", "op": ">", "value": 1000}]}"#,
    ])
    .await;
    let m = &report.measurements[0];
    assert_eq!(m.messages, 100);
    assert_eq!(m.notes, ["100 messages dropped by a plugin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_reads_back_every_message() {
    let report = bench(&["consume", "--messages", "1000"]).await;
    assert_eq!(report.measurements.len(), 2, "fill and consume");
    assert_eq!(report.measurements[1].messages, 1000);
    assert_eq!(report.measurements[1].bytes, 1000 * 1024);

    let report = bench(&[
        "consume",
        "--messages",
        "900",
        "--partitions",
        "3",
        "--consumers",
        "2",
    ])
    .await;
    assert_eq!(report.measurements[1].messages, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_times_every_message_from_produce_to_consume() {
    let report = bench(&["e2e", "--rate", "2000", "--duration", "500ms"]).await;
    let m = &report.measurements[0];
    assert!(m.messages > 0);
    let latency = m.latency.as_ref().expect("latency");
    assert_eq!(latency.count, m.messages);

    let report = bench(&["e2e", "--rate", "1000", "--messages", "200", "--size", "16"]).await;
    assert_eq!(report.measurements[0].messages, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_quic_moves_bytes_both_ways() {
    let report = bench(&["raw-quic", "--duration", "200ms", "--batch", "64"]).await;
    assert_eq!(report.measurements.len(), 2);
    for m in &report.measurements {
        assert!(m.bytes > 0, "{m:?}");
        assert_eq!(m.messages, m.bytes / 1024);
    }
    let report = bench(&["raw-quic", "--duration", "100ms", "--direction", "down"]).await;
    assert_eq!(report.measurements.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_clear_errors() {
    let cli = Cli::try_parse_from(["bench", "consume", "--consumers", "2", "--messages", "10"])
        .expect("parses");
    let err = weir_bench::run(cli.bench)
        .await
        .expect_err("2 consumers, 1 partition");
    assert!(err.to_string().contains("--partitions 2"), "{err}");
    let cli = Cli::try_parse_from(["bench", "produce", "--size", "50", "--chain", "json-filter"])
        .expect("parses");
    let err = weir_bench::run(cli.bench)
        .await
        .expect_err("too small for JSON");
    assert!(err.to_string().contains("JSON"), "{err}");
    let cli =
        Cli::try_parse_from(["bench", "produce", "--chain", "no-such-plugin"]).expect("parses");
    let err = weir_bench::run(cli.bench)
        .await
        .expect_err("no such plugin");
    assert!(err.to_string().contains("no-such-plugin.wasm"), "{err}");
}

/// The whole suite at tiny sizes. NATS JetStream runs only where
/// nats-server is on PATH (the test never installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_runs_the_suite_and_draws_the_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = dir.path().join("chart.png");
    let chart_arg = chart.to_str().expect("utf-8 path");
    let nats = weir_bench::nats_server_on_path();
    let mut args = vec!["compare", "--duration", "200ms", "--chart", chart_arg];
    if !nats {
        eprintln!("nats-server is not on PATH: the NATS JetStream part is skipped");
        args.push("--skip-nats");
    }
    let report = bench(&args).await;
    let names: Vec<&str> = report
        .measurements
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for wanted in [
        "raw-quic upload (1000 KiB writes), before",
        "raw-quic download (1000 KiB writes), before",
        "raw-quic upload (1000 KiB writes), after",
        "raw-quic download (1000 KiB writes), after",
        "weir produce, batch 1000",
        "weir consume, written in batches of 100",
        "weir produce, batch 1,",
        "json-filter → dedup-by-field → kafka-partitioner",
        "acks durable",
        "baseline: 1 MiB write + fdatasync (before)",
        "baseline: 1 MiB write + fdatasync (after)",
        "weir e2e at 10,000 msg/s",
    ] {
        assert!(
            names.iter().any(|n| n.contains(wanted)),
            "{wanted:?} missing from {names:?}"
        );
    }
    let ratios = report.ratios.len();
    if nats {
        assert!(
            names
                .iter()
                .any(|n| n.contains("NATS JetStream ordered consumer"))
        );
        assert_eq!(ratios, 7, "{:?}", report.ratios);
    } else {
        assert_eq!(ratios, 5, "{:?}", report.ratios);
    }
    let text = report.to_text();
    assert!(text.contains("| target | measured | target | |"), "{text}");
    let machine = report.machine.as_ref().expect("machine");
    assert!(machine.cores > 0);
    if report.chart.is_some() {
        let png = std::fs::read(&chart).expect("chart written");
        assert_eq!(&png[..4], b"\x89PNG");
    } else {
        eprintln!("no chart drawn: {:?}", report.notes);
    }
}
