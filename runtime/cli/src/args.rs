//! The command line as clap sees it, and the parsers for its values
//! (durations, start positions, headers). This module only describes and
//! parses; it never connects or reads files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// weir: a message node with QUIC transport, a segmented log and
/// WebAssembly routing plugins.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node until ctrl-c or SIGTERM.
    Serve(ServeArgs),
    /// Create, list, describe and delete topics; attach and detach plugins.
    Topic {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Upload, list and delete routing plugins; scaffold a new one and run
    /// one offline on sample messages.
    Plugin {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Publish messages read from standard input, one per line.
    Produce(ProduceArgs),
    /// Print messages from a topic.
    Consume(ConsumeArgs),
    /// Look stored messages up.
    Message {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        command: MessageCommand,
    },
    /// List, describe and move consumer groups (consume as a member with
    /// `weir consume TOPIC --group G`).
    Group {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Measure throughput and latency (produce, consume, e2e, raw-quic),
    /// or run the whole suite next to raw QUIC, the disk and NATS
    /// JetStream (compare).
    Bench(weir_bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum MessageCommand {
    /// Print the stored message with this producer id or dedup key (the
    /// most recent one, if several match).
    Get {
        /// The topic.
        topic: String,
        /// The message id, or the dedup key a plugin gave the message.
        #[arg(long, value_name = "ID")]
        id: String,
        /// Output: the payload (raw) or a JSON line like `weir consume`'s.
        #[arg(long, value_enum, default_value_t = Format::Raw)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups: per topic, the mode, members, lag and
    /// messages in flight.
    List {
        /// table: for a person; json: one JSON document.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
    },
    /// Describe a group: its options, and per topic its members and, per
    /// partition, the committed offset (queue mode: the ack floor), end,
    /// lag, in flight, redelivered and dead-lettered.
    Describe {
        /// The group.
        group: String,
        /// table: for a person; json: one JSON document.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
    },
    /// Move a group on every partition of a topic: its committed offsets
    /// (stream mode; members are reassigned there) or its ack floor (queue
    /// mode; what is in flight is forgotten).
    Seek {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// Where to: earliest, latest, offset:N or time:RFC3339.
        #[arg(long, value_parser = parse_from, value_name = "WHERE")]
        to: weir_client::StartAt,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see docs/operations.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory, created on first start [default: ./weir-data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// UDP address to listen on [default: 127.0.0.1:7400].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
}

/// How a client command finds and trusts the node.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection options")]
pub(crate) struct ConnArgs {
    /// The node's address.
    #[arg(
        long,
        env = "WEIR_SERVER",
        default_value = "127.0.0.1:7400",
        global = true,
        value_name = "ADDR"
    )]
    pub(crate) server: String,
    /// Trust the node by this CA or certificate file (PEM). Without --cert
    /// or --fingerprint, ./weir-data/cert.pem is pinned when it exists.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "fingerprint"
    )]
    pub(crate) cert: Option<PathBuf>,
    /// Trust the node whose certificate has this SHA-256 fingerprint (hex,
    /// colons allowed).
    #[arg(long, global = true, value_name = "SHA256")]
    pub(crate) fingerprint: Option<String>,
    /// Name the node's certificate must carry when verified by --cert.
    #[arg(long, global = true, default_value = "localhost", value_name = "NAME")]
    pub(crate) server_name: String,
    /// Bearer token for a node that requires one.
    #[arg(
        long,
        env = "WEIR_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
    /// Client certificate (PEM) for a node that requires mutual TLS.
    #[arg(long, global = true, requires = "client_key", value_name = "FILE")]
    pub(crate) client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, global = true, requires = "client_cert", value_name = "FILE")]
    pub(crate) client_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        /// The topic's name: 1 to 249 of A-Z a-z 0-9 . _ -
        name: String,
        /// Number of partitions (1 to 4096).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Delete sealed segments older than this (e.g. 7d, 12h).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        retention: Option<Duration>,
        /// Delete the oldest sealed segments while a partition is larger.
        #[arg(long, value_name = "N")]
        retention_bytes: Option<u64>,
        /// When partitions fsync: durable (every append, group-committed),
        /// interval (every --flush-interval), or none (page cache).
        #[arg(long, value_enum, default_value_t = Flush::Durable)]
        flush: Flush,
        /// Interval for --flush interval.
        #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DURATION")]
        flush_interval: Duration,
        /// Store each message id (or plugin-chosen dedup key) once within
        /// this window; a repeat is acked as a duplicate (0s: off).
        #[arg(long, value_parser = parse_duration, default_value = "2m", value_name = "DURATION")]
        dedup_window: Duration,
    },
    /// List every topic.
    List,
    /// Describe a topic: its settings, partitions and plugin chain.
    Describe {
        /// The topic.
        name: String,
    },
    /// Delete a topic and all its messages.
    Delete {
        /// The topic.
        name: String,
    },
    /// Attach a plugin (its newest version) to a topic's chain.
    Attach {
        /// The topic.
        topic: String,
        /// The plugin.
        plugin: String,
        /// Config string passed to the plugin (usually JSON).
        #[arg(long, default_value = "", value_name = "JSON")]
        config: String,
        /// What happens to a batch when the plugin fails.
        #[arg(long, value_enum, default_value_t = OnError::Reject)]
        on_error: OnError,
        /// Position in the chain (0 = first) [default: the end].
        #[arg(long, value_name = "N")]
        position: Option<u32>,
    },
    /// Detach a plugin from a topic's chain.
    Detach {
        /// The topic.
        topic: String,
        /// The plugin.
        plugin: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Upload a new version of a plugin.
    Put {
        /// The plugin's name.
        name: String,
        /// The WebAssembly component.
        #[arg(value_name = "FILE.wasm")]
        file: PathBuf,
    },
    /// List plugins.
    List,
    /// Delete a plugin (every version).
    Delete {
        /// The plugin.
        name: String,
    },
    /// Create a plugin crate that builds as is for wasm32-wasip2 (no node
    /// needed).
    #[command(
        long_about = "Create a plugin crate that builds as is for wasm32-wasip2 (no node needed).\n\n\
        The crate depends on the guest SDK (weir-guest) by path when this weir's source \
        checkout is still where it was built, else by version. Build it with \
        `cargo build --release --target wasm32-wasip2`; the component is \
        target/wasm32-wasip2/release/NAME.wasm (dashes and dots become underscores). \
        Its README says how to test and upload it."
    )]
    New {
        /// The plugin's name: 1 to 249 of A-Z a-z 0-9 . _ -
        name: String,
        /// Directory to create the crate in; it must not exist or be empty
        /// [default: ./NAME].
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
    },
    /// Run a component offline (no node) on sample messages and print each
    /// message's outcome as a JSON line.
    #[command(
        long_about = "Run a component offline (no node) on sample messages and print each \
        message's outcome as a JSON line.\n\n\
        Input: one JSON object per line, {\"key\": .., \"headers\": {..}, \"payload\": ..} \
        (the format of `weir produce --format json`; a payload that is not a string is passed \
        as compact JSON; blank lines are skipped). Output, one line per message: \
        {\"index\": N, \"verdict\": \"accept\"|\"drop\"|\"reject\", \"reason\": .., \"topics\": [..], \
        \"partition\": .., \"dedup_key\": .., \"headers\": {..}}.\n\n\
        The plugin runs in the node's host with the node's default limits and the failure \
        policy reject: when it fails on a batch (trap, time limit, memory limit, bad output), \
        every message of that batch is printed as a reject line and the command exits non-zero. \
        A plugin that cannot be loaded, or whose init refuses --config, is a one-line error. \
        WEIR_LOG=info shows the plugin's log lines.\n\n\
        Example: weir plugin test target/plugins/json-filter.wasm --input samples.jsonl \
        --config '{\"keep\": \"all\", \"where\": [{\"field\": \"/level\", \"op\": \"==\", \"value\": \"error\"}]}'"
    )]
    Test(PluginTestArgs),
}

/// `weir plugin test`.
#[derive(Debug, Args)]
pub(crate) struct PluginTestArgs {
    /// The WebAssembly component.
    #[arg(value_name = "FILE.wasm")]
    pub(crate) file: PathBuf,
    /// Config string passed to the plugin's init (usually JSON).
    #[arg(long, default_value = "", value_name = "JSON")]
    pub(crate) config: String,
    /// Sample messages, one JSON object per line [default: standard input].
    #[arg(long, value_name = "FILE.jsonl")]
    pub(crate) input: Option<PathBuf>,
    /// The topic the messages were published to.
    #[arg(long, default_value = "test", value_name = "NAME")]
    pub(crate) topic: String,
    /// The topic's partition count (1 to 4096).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096), value_name = "N")]
    pub(crate) partitions: u32,
    /// Messages per call into the plugin; state carries across batches, a
    /// failure rejects only its batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000), value_name = "N")]
    pub(crate) batch: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    pub(crate) topic: String,
    /// Key for every message (json lines may set their own).
    #[arg(long, value_name = "K")]
    pub(crate) key: Option<String>,
    /// Header for every message; repeatable.
    #[arg(long = "header", value_parser = parse_header, value_name = "K=V")]
    pub(crate) headers: Vec<(String, String)>,
    /// Message id for every message (json lines may set their own).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// When the node answers.
    #[arg(long, value_enum, default_value_t = AckLevel::Stored)]
    pub(crate) acks: AckLevel,
    /// raw: each line is a payload; json: each line is
    /// {"key","headers","payload","id"}.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    pub(crate) topic: String,
    /// Read one partition [default: all].
    #[arg(long, value_name = "P")]
    pub(crate) partition: Option<u32>,
    /// Where to start: earliest, latest, offset:N or time:RFC3339
    /// [default: earliest]. With --group: where a new group starts (a
    /// group that exists goes on from where it is).
    #[arg(long, value_parser = parse_from, value_name = "WHERE")]
    pub(crate) from: Option<weir_client::StartAt>,
    /// Exit after this many messages [default: run until interrupted].
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// raw: the payload, one line each; json: one object per line with
    /// topic, partition, offset, timestamp, key, headers, payload.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) group: GroupArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

/// `weir consume --group`: consume as a member of a consumer group. Only
/// the group options given here are stated when joining, so a member that
/// leaves them out is not refused by a group created with other values.
#[derive(Debug, Args)]
#[command(next_help_heading = "Consumer group options")]
pub(crate) struct GroupArgs {
    /// Consume as a member of this group: the members of a group share the
    /// topic's messages, and the group remembers what was consumed.
    #[arg(long, value_name = "GROUP", conflicts_with = "partition")]
    pub(crate) group: Option<String>,
    /// stream: partitions are assigned to members, offsets committed;
    /// queue: messages are handed out one by one and each is acked
    /// [default: the group's; stream for a new group].
    #[arg(long, value_enum, requires = "group")]
    pub(crate) mode: Option<GroupModeArg>,
    /// manual: ack (queue) or commit (stream) a message only once its line
    /// is written and flushed; auto: as it arrives [default: manual].
    #[arg(long, value_enum, requires = "group", value_name = "WHEN")]
    pub(crate) ack: Option<AckArg>,
    /// This member's name in `weir group describe` [default: weir-cli/VERSION
    /// and a random suffix].
    #[arg(long, requires = "group", value_name = "NAME")]
    pub(crate) member: Option<String>,
    /// Queue mode: most messages delivered to this member and not yet
    /// acked [default: --count if given, else the node's (1000)].
    #[arg(long, requires = "group", value_name = "N")]
    pub(crate) prefetch: Option<u32>,
    /// Queue mode: a message not acked within this long is redelivered.
    #[arg(long, value_parser = parse_duration, requires = "group", value_name = "DURATION")]
    pub(crate) ack_wait: Option<Duration>,
    /// Queue mode: after this many failed deliveries a message goes to the
    /// topic GROUP.dlq.
    #[arg(long, requires = "group", value_name = "N")]
    pub(crate) max_deliveries: Option<u32>,
    /// Queue mode: the delay before each redelivery, comma-separated, the
    /// last repeating (e.g. 1s,5s,30s).
    #[arg(
        long,
        value_parser = parse_duration,
        value_delimiter = ',',
        requires = "group",
        value_name = "DURATIONS"
    )]
    pub(crate) backoff: Vec<Duration>,
    /// Queue mode: never two messages with the same key in flight in the
    /// group at once, so per-key order holds.
    #[arg(long, requires = "group")]
    pub(crate) ordered: bool,
}

/// A consumer group's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GroupModeArg {
    /// Partitions assigned to members; offsets committed.
    Stream,
    /// Messages handed out one by one; each acked.
    Queue,
}

/// When a group member's messages count as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AckArg {
    /// Once its line is written and flushed.
    Manual,
    /// As it arrives.
    Auto,
}

/// Output of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// A table for a person.
    Table,
    /// One JSON document.
    Json,
}

/// A topic's flush policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Flush {
    /// fsync every append (group-committed).
    Durable,
    /// fsync every --flush-interval.
    Interval,
    /// Page cache only.
    None,
}

/// A plugin's failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnError {
    /// The producer gets an error for every message of the batch.
    Reject,
    /// The batch goes to <topic>.dlq unchanged.
    DeadLetter,
    /// The plugin is skipped for that batch.
    Bypass,
}

/// An ack level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AckLevel {
    /// No answer: fire and forget.
    None,
    /// After the write to the log.
    Stored,
    /// After the fsync that covers it.
    Durable,
}

/// Input or output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Payloads only, one per line.
    Raw,
    /// JSON lines.
    Json,
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 7d, 2m or 500ms ({e})"))
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not K=V")),
    }
}

pub(crate) fn parse_from(text: &str) -> Result<weir_client::StartAt, String> {
    use weir_client::StartAt;
    match text {
        "earliest" => return Ok(StartAt::Earliest),
        "latest" => return Ok(StartAt::Latest),
        _ => {}
    }
    if let Some(n) = text.strip_prefix("offset:") {
        return n
            .parse()
            .map(StartAt::Offset)
            .map_err(|_| format!("{n:?} is not an offset"));
    }
    if let Some(t) = text.strip_prefix("time:") {
        let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
            format!("{t:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z ({e})")
        })?;
        let ms = match at.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis())
                .map_err(|_| format!("{t:?} is too far in the future"))?,
            Err(before) => -i64::try_from(before.duration().as_millis())
                .map_err(|_| format!("{t:?} is too early"))?,
        };
        return Ok(StartAt::Timestamp(ms));
    }
    Err(format!(
        "{text:?}: expected earliest, latest, offset:N or time:RFC3339"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_client::StartAt;

    #[test]
    fn parses_start_positions() {
        assert_eq!(parse_from("earliest"), Ok(StartAt::Earliest));
        assert_eq!(parse_from("latest"), Ok(StartAt::Latest));
        assert_eq!(parse_from("offset:42"), Ok(StartAt::Offset(42)));
        assert_eq!(
            parse_from("time:1970-01-01T00:00:01Z"),
            Ok(StartAt::Timestamp(1000))
        );
        assert_eq!(
            parse_from("time:2026-11-21T11:00:00.250Z"),
            Ok(StartAt::Timestamp(1_795_258_800_250))
        );
        assert!(parse_from("offset:x").is_err());
        assert!(parse_from("time:yesterday").is_err());
        assert!(parse_from("soon").is_err());
    }

    #[test]
    fn parses_durations_and_headers() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_header("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_header("=v").is_err());
        assert!(parse_header("novalue").is_err());
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
