//! `weir consume TOPIC`: prints messages as they arrive, raw payloads or
//! JSON lines, until `--count` messages or ctrl-c; with `--group`, as a
//! member of a consumer group, acking (or committing) a message only once
//! its line is flushed unless `--ack auto`. Binary keys and payloads are
//! never printed lossily in JSON: they go as hex under `key_hex` /
//! `payload_hex` instead.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use weir_client::{
    AckMode, Client, ConsumedMessage, ConsumerConfig, GroupConfig, GroupMessage, GroupMode,
    GroupOptions, StartAt,
};

use crate::args::{AckArg, ConsumeArgs, Format, GroupModeArg};
use crate::connect::connect;

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    if args.group.group.is_some() {
        return run_group(args).await;
    }
    let client = connect(&args.conn).await?;
    let mut sub = client
        .subscribe(
            &args.topic,
            args.partition,
            args.from.unwrap_or(StartAt::Earliest),
        )
        .await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut seen = 0u64;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while args.count.is_none_or(|n| seen < n) {
        let next = tokio::select! {
            next = sub.next() => next,
            _ = &mut interrupted => break,
        };
        let Some(message) = next else { break };
        let message = message?;
        seen += 1;
        match print(&mut out, args.format, &message) {
            Ok(()) => {}
            // A reader such as `head` went away: that is a normal end.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("cannot write to standard output"),
        }
    }
    drop(sub);
    client.close().await;
    Ok(())
}

/// `weir consume TOPIC --group G`.
async fn run_group(args: ConsumeArgs) -> anyhow::Result<()> {
    let config = group_config(&args)?;
    let manual = config.ack == AckMode::Manual;
    let client = connect(&args.conn).await?;
    let result = consume_group(&client, &args, config, manual).await;
    client.close().await;
    result
}

async fn consume_group(
    client: &Client,
    args: &ConsumeArgs,
    config: GroupConfig,
    manual: bool,
) -> anyhow::Result<()> {
    let group = config.group.clone();
    let mut member = client
        .join_group(config)
        .await
        .with_context(|| format!("cannot join group {group} on topic {}", args.topic))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut seen = 0u64;
    let interrupted = stop_signal();
    tokio::pin!(interrupted);
    let mut failed = None;
    while args.count.is_none_or(|n| seen < n) {
        let next = tokio::select! {
            next = member.next() => next,
            _ = &mut interrupted => break,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                failed = Some(anyhow::Error::new(err).context(format!("group {group}")));
                break;
            }
            None => break,
        };
        seen += 1;
        match print_group(&mut out, args.format, &message) {
            // Only a line that reached standard output counts as done.
            Ok(()) if manual => member.done(&message)?,
            Ok(()) => {}
            // A reader such as `head` went away: that is a normal end, and
            // the message it did not take is left for another member.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => {
                failed = Some(anyhow::Error::new(e).context("cannot write to standard output"));
                break;
            }
        }
    }
    let closed = member.close().await;
    if let Some(err) = failed {
        return Err(err);
    }
    closed.with_context(|| format!("leaving group {group}"))
}

/// Resolves on ctrl-c, or SIGTERM where there is one, so that a member
/// killed either way still leaves cleanly with its acks sent.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The member `weir consume` joins as: only the group options typed on
/// the command line are stated.
fn group_config(args: &ConsumeArgs) -> anyhow::Result<GroupConfig> {
    let g = &args.group;
    let Some(group) = &g.group else {
        anyhow::bail!("no --group");
    };
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let options = GroupOptions {
        mode: g.mode.map(|m| match m {
            GroupModeArg::Stream => GroupMode::Stream,
            GroupModeArg::Queue => GroupMode::Queue,
        }),
        start: args.from,
        ack_wait_ms: g.ack_wait.map(millis),
        max_deliveries: g.max_deliveries,
        backoff_ms: (!g.backoff.is_empty())
            .then(|| g.backoff.iter().copied().map(millis).collect()),
        ordered: g.ordered.then_some(true),
    };
    // With --count, take no more than that at once: a queue-mode message
    // delivered and never printed would count as a failed delivery when
    // this member leaves.
    let count = args
        .count
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX).max(1));
    let prefetch = g.prefetch.or(count).unwrap_or(0);
    let mut window = ConsumerConfig::default();
    if let Some(n) = count {
        window.window_messages = window.window_messages.min(n);
    }
    let mut config = GroupConfig::new(group.clone(), args.topic.clone())
        .with_options(options)
        .with_prefetch(prefetch)
        .with_window(window)
        .with_ack(match g.ack {
            Some(AckArg::Auto) => AckMode::Auto,
            Some(AckArg::Manual) | None => AckMode::Manual,
        });
    if let Some(name) = &g.member {
        config = config.with_member(name.clone());
    }
    Ok(config)
}

/// Writes a group member's message: as [`print`], with its attempt in JSON.
fn print_group(
    out: &mut impl Write,
    format: Format,
    message: &GroupMessage,
) -> std::io::Result<()> {
    match format {
        Format::Raw => print(out, format, &message.message),
        Format::Json => {
            let mut line = json_line(&message.message);
            if let Value::Object(obj) = &mut line {
                obj.insert("attempt".into(), message.attempt.into());
            }
            writeln!(out, "{line}").and_then(|()| out.flush())
        }
    }
}

/// Writes one message as `format` says and flushes: the payload and a
/// newline (raw), or one JSON line. Shared with `weir message get`.
pub(crate) fn print(
    out: &mut impl Write,
    format: Format,
    message: &ConsumedMessage,
) -> std::io::Result<()> {
    match format {
        Format::Raw => out
            .write_all(&message.payload)
            .and_then(|()| out.write_all(b"\n")),
        Format::Json => writeln!(out, "{}", json_line(message)),
    }
    .and_then(|()| out.flush())
}

fn bytes_field(obj: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => obj.insert(name.into(), Value::String(s.into())),
        Err(_) => obj.insert(format!("{name}_hex"), Value::String(hex(bytes))),
    };
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_line(m: &ConsumedMessage) -> Value {
    let mut obj = Map::new();
    obj.insert("topic".into(), Value::String(m.topic.to_string()));
    obj.insert("partition".into(), m.partition.into());
    obj.insert("offset".into(), m.offset.into());
    let timestamp = u64::try_from(m.timestamp_ms)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .map_or_else(
            || Value::from(m.timestamp_ms),
            |t| humantime::format_rfc3339_millis(t).to_string().into(),
        );
    obj.insert("timestamp".into(), timestamp);
    match &m.key {
        Some(k) => bytes_field(&mut obj, "key", k),
        None => {
            obj.insert("key".into(), Value::Null);
        }
    }
    let mut headers = Map::new();
    for (name, value) in &m.headers {
        let v = std::str::from_utf8(value)
            .map_or_else(|_| Value::String(hex(value)), |s| Value::String(s.into()));
        headers.insert(name.clone(), v);
    }
    obj.insert("headers".into(), Value::Object(headers));
    bytes_field(&mut obj, "payload", &m.payload);
    if let Some(id) = &m.id {
        bytes_field(&mut obj, "id", id);
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn json_line_has_the_documented_fields() {
        let m = ConsumedMessage {
            topic: "orders".into(),
            partition: 3,
            offset: 17,
            timestamp_ms: 1_000,
            key: Some(Bytes::from_static(b"k")),
            id: None,
            headers: vec![("h".into(), Bytes::from_static(b"v"))],
            payload: Bytes::from_static(&[0xff, 0x00]),
        };
        let v = json_line(&m);
        assert_eq!(v["topic"], "orders");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 17);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["key"], "k");
        assert_eq!(v["headers"]["h"], "v");
        assert_eq!(v["payload_hex"], "ff00");
        assert!(v.get("payload").is_none());
    }

    fn consume_args(line: &[&str]) -> ConsumeArgs {
        use clap::Parser;
        let mut argv = vec!["weir", "consume", "orders"];
        argv.extend_from_slice(line);
        match crate::args::Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(crate::args::Command::Consume(args)) => args,
            other => panic!("not a consume command line: {other:?}"),
        }
    }

    #[test]
    fn a_group_member_states_only_the_options_typed() {
        let config = group_config(&consume_args(&["--group", "billing"])).expect("config");
        assert_eq!(config.group, "billing");
        assert_eq!(config.topic, "orders");
        assert_eq!(config.options, GroupOptions::default(), "nothing stated");
        assert_eq!(config.ack, AckMode::Manual);
        assert_eq!(config.prefetch, 0, "the node's default");
        assert_eq!(config.member, None);

        let config = group_config(&consume_args(&[
            "--group",
            "billing",
            "--mode",
            "queue",
            "--ack",
            "auto",
            "--member",
            "worker-1",
            "--ack-wait",
            "45s",
            "--max-deliveries",
            "5",
            "--backoff",
            "1s,500ms,1m",
            "--ordered",
            "--from",
            "offset:7",
            "--count",
            "20",
        ]))
        .expect("config");
        assert_eq!(
            config.options,
            GroupOptions {
                mode: Some(GroupMode::Queue),
                start: Some(StartAt::Offset(7)),
                ack_wait_ms: Some(45_000),
                max_deliveries: Some(5),
                backoff_ms: Some(vec![1000, 500, 60_000]),
                ordered: Some(true),
            }
        );
        assert_eq!(config.ack, AckMode::Auto);
        assert_eq!(config.member.as_deref(), Some("worker-1"));
        assert_eq!(config.prefetch, 20, "no more in flight than --count");
        assert_eq!(config.window.window_messages, 20);
        let config = group_config(&consume_args(&[
            "--group",
            "g",
            "--count",
            "20",
            "--prefetch",
            "3",
        ]))
        .expect("config");
        assert_eq!(config.prefetch, 3, "--prefetch wins");
    }

    #[test]
    fn group_flags_need_a_group() {
        use clap::Parser;
        for flags in [
            &["--mode", "queue"][..],
            &["--ack", "auto"],
            &["--ordered"],
            &["--backoff", "1s"],
        ] {
            let mut argv = vec!["weir", "consume", "orders"];
            argv.extend_from_slice(flags);
            assert!(
                crate::args::Cli::try_parse_from(&argv).is_err(),
                "{flags:?} without --group"
            );
        }
        let argv = ["weir", "consume", "t", "--group", "g", "--partition", "1"];
        assert!(
            crate::args::Cli::try_parse_from(argv).is_err(),
            "a member reads what it is assigned"
        );
    }
}
