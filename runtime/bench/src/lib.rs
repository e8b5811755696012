//! `weir bench`: throughput and latency of a weir node, measured through
//! the real client over real QUIC, next to what the machine can do without
//! weir (raw QUIC on one stream, sequential write + fdatasync) and next to
//! NATS JetStream on the same workload.
//!
//! The `weir` binary mounts [`BenchArgs`] as its `bench` command and calls
//! [`run`]; the [`Report`] comes back for it to print as text or JSON. By
//! default each command starts its own node in a temporary data directory
//! (`--dir`, else `$WEIR_BENCH_DIR`, else the system temp dir) on a
//! loopback port, in this process; `--server` measures a running node
//! instead. A run whose messages are not all stored or delivered is an
//! error, never a figure. Figures are not pass/fail tests: `compare`
//! prints the targets' ratios for a person to read.
//!
//! While a run goes, a progress bar is drawn on standard error when it is
//! a terminal; notes about skipped parts go to standard error too.

mod args;
mod chart;
mod commands;
mod compare;
mod disk;
mod error;
mod nats;
mod payload;
mod progress;
mod raw_quic;
mod report;
mod target;
mod weir;

pub use args::{
    AckLevel, BenchArgs, BenchCommand, CompareArgs, ConsumeArgs, Direction, E2eArgs, ProduceArgs,
    RawQuicArgs, TargetArgs, WorkloadArgs,
};
pub use error::BenchError;
pub use report::{Latency, Machine, Measurement, Ratio, Report};

/// Runs the benchmark `args` names and returns what it measured.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_bench::BenchError> {
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     bench: weir_bench::BenchArgs,
/// }
///
/// let cli = Cli::parse_from(["bench", "produce", "--messages", "10000"]);
/// let report = weir_bench::run(cli.bench).await?;
/// println!("{}", report.to_text());
/// # Ok(()) }
/// ```
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    match args.command {
        BenchCommand::Produce(a) => commands::produce(a).await,
        BenchCommand::Consume(a) => commands::consume(a).await,
        BenchCommand::E2e(a) => commands::e2e(a).await,
        BenchCommand::RawQuic(a) => commands::raw_quic(a).await,
        BenchCommand::Compare(a) => compare::run(a).await,
    }
}

/// Whether nats-server is on PATH (the tests run NATS only then).
pub fn nats_server_on_path() -> bool {
    nats::find_server().is_some()
}
