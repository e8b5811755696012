//! The `weir bench` command line as clap sees it. The `weir` binary mounts
//! [`BenchArgs`] as its `bench` command; everything the bench accepts is
//! described here, and this module only describes and parses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `weir bench`: measure a node, and compare it with raw QUIC, the disk and
/// NATS JetStream.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub command: BenchCommand,
}

impl BenchArgs {
    /// Whether the report is wanted as JSON.
    pub fn json(&self) -> bool {
        match &self.command {
            BenchCommand::Produce(a) => a.workload.json,
            BenchCommand::Consume(a) => a.workload.json,
            BenchCommand::E2e(a) => a.workload.json,
            BenchCommand::RawQuic(a) => a.json,
            BenchCommand::Compare(a) => a.json,
        }
    }
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce messages as fast as the node acknowledges them; latency is
    /// from send to acknowledgement.
    Produce(ProduceArgs),
    /// Fill a topic (untimed), then read it back with one or more
    /// consumers.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate while consuming; latency is from produce to
    /// consume.
    E2e(E2eArgs),
    /// The ceiling: bytes over one QUIC stream with the node's TLS and
    /// transport settings, in this process, with no weir.
    RawQuic(RawQuicArgs),
    /// Run the whole suite with 1 KiB messages (raw QUIC, weir produce,
    /// consume, plugin chain, durable acks, fdatasync, end-to-end latency,
    /// NATS JetStream) and print one table with the target ratios.
    Compare(CompareArgs),
}

/// What the workload is, shared by produce, consume and e2e.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Messages to produce [default: 100000; e2e: --duration 5s].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Produce for this long instead of a message count (e.g. 10s).
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    pub duration: Option<Duration>,
    /// Payload bytes per message. From 108 bytes on, payloads are JSON
    /// objects that the example plugins can read.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=(8 << 20)), value_name = "B")]
    pub size: u32,
    /// Most messages per produce batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub batch: u32,
    /// Producers, each with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "P")]
    pub producers: u32,
    /// Partitions of the bench topic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096), value_name = "N")]
    pub partitions: u32,
    /// When the node answers. The topic's flush policy follows: durable
    /// for acks durable, none (page cache) otherwise.
    #[arg(long, value_enum, default_value_t = AckLevel::Stored)]
    pub acks: AckLevel,
    /// Plugins to attach to the bench topic, in order (comma-separated
    /// names of components in the plugins directory). json-filter,
    /// dedup-by-field and kafka-partitioner get configs that pass every
    /// bench message; others get an empty config unless --plugin-config.
    #[arg(long, value_delimiter = ',', value_name = "PLUGIN[,PLUGIN..]")]
    pub chain: Vec<String>,
    /// Config for a plugin of --chain; repeatable.
    #[arg(long = "plugin-config", value_parser = parse_plugin_config, value_name = "PLUGIN=CONFIG")]
    pub plugin_configs: Vec<(String, String)>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Which node, and where files go.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `weir bench produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// How long a producer's batch waits for more messages.
    #[arg(long, value_parser = parse_duration, default_value = "5ms", value_name = "D")]
    pub linger: Duration,
}

/// `weir bench consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// How long a producer's batch waits for more messages (while filling).
    #[arg(long, value_parser = parse_duration, default_value = "5ms", value_name = "D")]
    pub linger: Duration,
    /// Consumers, each with its own connection; each reads whole
    /// partitions, so at most --partitions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "C")]
    pub consumers: u32,
}

/// `weir bench e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Messages per second, across all producers.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000), value_name = "MSGS_PER_S")]
    pub rate: u64,
    /// How long a producer's batch waits for more messages.
    #[arg(long, value_parser = parse_duration, default_value = "0ms", value_name = "D")]
    pub linger: Duration,
}

/// `weir bench raw-quic`.
#[derive(Debug, Clone, Args)]
pub struct RawQuicArgs {
    /// Bytes counted as one message (msgs/s is bytes/s over this).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=(8 << 20)), value_name = "B")]
    pub size: u32,
    /// Messages per write: each write hands quinn SIZE × BATCH bytes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=65_536), value_name = "N")]
    pub batch: u32,
    /// How long each direction runs.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "D")]
    pub duration: Duration,
    /// up (client to server), down (server to client), or both.
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    pub direction: Direction,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `weir bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Messages per throughput run [default: 1000000; each run also stops
    /// after 20 s, and the chart's extra points after 4 s].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Run every figure for this long instead (throughput, raw QUIC, the
    /// fdatasync baseline and the e2e run alike).
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    pub duration: Option<Duration>,
    /// Where to write the throughput-by-batch-size chart (PNG)
    /// [default: docs/bench-throughput.png in a weir checkout, else
    /// ./bench-throughput.png].
    #[arg(long, value_name = "FILE.png", conflicts_with = "no_chart")]
    pub chart: Option<PathBuf>,
    /// Draw no chart.
    #[arg(long)]
    pub no_chart: bool,
    /// Leave NATS JetStream out (it is skipped anyway, with a note, when
    /// nats-server cannot be found or installed).
    #[arg(long)]
    pub skip_nats: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Which node, and where files go.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Which node the bench talks to, and where its files go.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Node options")]
pub struct TargetArgs {
    /// Measure this node instead of starting one in a temporary data
    /// directory. Bench topics (bench-*) are created on it and deleted.
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// With --server: trust the node by this CA or certificate file (PEM).
    /// Without --cert or --fingerprint, ./weir-data/cert.pem is pinned.
    #[arg(
        long,
        value_name = "FILE",
        requires = "server",
        conflicts_with = "fingerprint"
    )]
    pub cert: Option<PathBuf>,
    /// With --server: the node's SHA-256 certificate fingerprint.
    #[arg(long, value_name = "SHA256", requires = "server")]
    pub fingerprint: Option<String>,
    /// With --server and --cert: the name the certificate must carry.
    #[arg(long, default_value = "localhost", value_name = "NAME")]
    pub server_name: String,
    /// With --server: bearer token (needs admin, produce and consume on
    /// bench-*, and admin on plugins for --chain).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Directory for the bench's own node, NATS's store and the fdatasync
    /// baseline [default: $WEIR_BENCH_DIR, else the system temp dir].
    /// Put it on the disk you mean to measure; tmpfs gets a warning.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where the plugin components of --chain are [default:
    /// $WEIR_PLUGINS_DIR, else target/plugins found from the current
    /// directory or from this executable, as scripts/build-plugins writes
    /// them].
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
}

/// A producer ack level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckLevel {
    /// No answer: fire and forget.
    None,
    /// After the write to the log.
    Stored,
    /// After the fsync that covers it.
    Durable,
}

impl AckLevel {
    pub(crate) fn acks(self) -> weir_client::Acks {
        match self {
            AckLevel::None => weir_client::Acks::None,
            AckLevel::Stored => weir_client::Acks::Stored,
            AckLevel::Durable => weir_client::Acks::Durable,
        }
    }
}

/// Which way raw QUIC bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Client to server (what a producer does).
    Up,
    /// Server to client (what a consumer gets).
    Down,
    /// Up, then down.
    Both,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 10s or 500ms ({e})"))?;
    Ok(d)
}

fn parse_plugin_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, config)) if !name.is_empty() => Ok((name.to_owned(), config.to_owned())),
        _ => Err(format!("{text:?} is not PLUGIN=CONFIG")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_issue_flags() {
        let cli = Cli::try_parse_from([
            "bench",
            "produce",
            "--messages",
            "1000",
            "--size",
            "512",
            "--batch",
            "10",
            "--producers",
            "2",
            "--partitions",
            "3",
            "--acks",
            "durable",
            "--chain",
            "json-filter,dedup-by-field",
            "--plugin-config",
            "dedup-by-field={\"field\": \"/id\"}",
        ])
        .expect("parses");
        let BenchCommand::Produce(p) = cli.bench.command else {
            panic!("not produce");
        };
        assert_eq!(p.workload.messages, Some(1000));
        assert_eq!(p.workload.chain, ["json-filter", "dedup-by-field"]);
        assert_eq!(p.workload.plugin_configs[0].1, "{\"field\": \"/id\"}");
        assert_eq!(p.workload.acks, AckLevel::Durable);
        assert!(
            Cli::try_parse_from(["bench", "produce", "--messages", "1", "--duration", "1s"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["bench", "consume", "--consumers", "0"]).is_err());
        assert!(Cli::try_parse_from(["bench", "e2e", "--rate", "5000", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["bench", "raw-quic", "--duration", "2s"]).is_ok());
        assert!(
            Cli::try_parse_from(["bench", "compare", "--chart", "x.png", "--no-chart"]).is_err()
        );
    }
}
