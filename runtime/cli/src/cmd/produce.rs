//! `weir produce TOPIC`: reads standard input, one message per line (raw
//! payloads or JSON objects), publishes them through a batching producer
//! and reports what became of them. A line is bounded before it is held
//! whole; outcomes are reported in input order.

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::io::BufReader;
use tokio::sync::mpsc;
use weir_client::{Acks, ClientError, Message, Outcome, ProducerConfig, SendHandle};

use super::lines::{self, read_line};
use crate::args::{AckLevel, Format, ProduceArgs};
use crate::connect::connect;

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    stored: u64,
    dropped: u64,
    rejected: u64,
    duplicate: u64,
    failed: u64,
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let client = connect(&args.conn).await?;
    let acks = match args.acks {
        AckLevel::None => Acks::None,
        AckLevel::Stored => Acks::Stored,
        AckLevel::Durable => Acks::Durable,
    };
    let producer = client.producer(
        &args.topic,
        ProducerConfig {
            acks,
            ..ProducerConfig::default()
        },
    )?;
    let (tx, rx) = mpsc::channel::<(u64, SendHandle)>(65_536);
    let collector = tokio::spawn(collect(rx));

    let mut input = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut line_no = 0u64;
    while read_line(&mut input, &mut line)
        .await
        .with_context(|| format!("line {}", line_no + 1))?
    {
        line_no += 1;
        let message = match args.format {
            Format::Raw => raw_message(&args, std::mem::take(&mut line)),
            Format::Json => {
                json_message(&args, &line).with_context(|| format!("line {line_no}"))?
            }
        };
        let size = message.payload.len() + message.key.as_ref().map_or(0, Bytes::len);
        producer.ready(size).await;
        if tx.send((line_no, producer.send(message))).await.is_err() {
            break;
        }
        line.clear();
    }
    drop(tx);
    producer.close().await;
    let tally = collector.await.context("collecting answers")?;
    client.close().await;

    let topic = &args.topic;
    if acks == Acks::None {
        eprintln!(
            "weir: sent {} messages to {topic} (acks none: not confirmed)",
            tally.sent
        );
    } else {
        eprintln!(
            "weir: {} messages to {topic}: {} stored, {} dropped, {} rejected, {} duplicates",
            line_no, tally.stored, tally.dropped, tally.rejected, tally.duplicate
        );
    }
    if tally.failed > 0 || tally.rejected > 0 {
        bail!(
            "{} of {line_no} messages were not stored ({} failed, {} rejected)",
            tally.failed + tally.rejected,
            tally.failed,
            tally.rejected
        );
    }
    Ok(())
}

async fn collect(mut rx: mpsc::Receiver<(u64, SendHandle)>) -> Tally {
    let mut tally = Tally::default();
    let mut first_error: Option<ClientError> = None;
    while let Some((line, handle)) = rx.recv().await {
        match handle.await {
            Ok(Outcome::Sent) => tally.sent += 1,
            Ok(Outcome::Stored(_)) => tally.stored += 1,
            Ok(Outcome::Dropped(reason)) => {
                tally.dropped += 1;
                tracing::info!(line, %reason, "dropped by a plugin");
            }
            Ok(Outcome::Rejected(reason)) => {
                tally.rejected += 1;
                eprintln!("weir: line {line} rejected: {reason}");
            }
            Ok(Outcome::Duplicate(p)) => {
                tally.duplicate += 1;
                tracing::info!(line, topic = %p.topic, partition = p.partition, offset = p.offset, "duplicate");
            }
            Ok(_) => tally.stored += 1,
            Err(err) => {
                tally.failed += 1;
                // One line per distinct failure: a lost connection fails
                // every message after it the same way.
                if first_error
                    .as_ref()
                    .is_none_or(|e| e.to_string() != err.to_string())
                {
                    eprintln!("weir: line {line} failed: {err}");
                    first_error = Some(err);
                }
            }
        }
    }
    tally
}

fn defaults(args: &ProduceArgs, payload: Bytes) -> Message {
    let mut m = Message::new(payload);
    m.key = args.key.clone().map(Bytes::from);
    m.id = args.id.clone().map(Bytes::from);
    m.headers = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Bytes::from(v.clone())))
        .collect();
    m
}

fn raw_message(args: &ProduceArgs, line: Vec<u8>) -> Message {
    defaults(args, Bytes::from(line))
}

/// A JSON line (see [`lines::json_message`]) on top of the flags.
fn json_message(args: &ProduceArgs, line: &[u8]) -> anyhow::Result<Message> {
    lines::json_message(defaults(args, Bytes::new()), line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ProduceArgs {
        let mut argv = vec!["weir", "produce", "t"];
        argv.extend_from_slice(extra);
        match crate::args::Cli::parse_from(argv).command {
            crate::args::Command::Produce(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn json_lines_carry_key_headers_payload_id() {
        let a = args(&["--header", "src=cli"]);
        let m = json_message(
            &a,
            br#"{"key":"k1","headers":{"h":"v","n":3},"payload":"hi","id":"m-1"}"#,
        )
        .expect("parse");
        assert_eq!(m.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(m.id.as_deref(), Some(&b"m-1"[..]));
        assert_eq!(&m.payload[..], b"hi");
        let names: Vec<&str> = m.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["src", "h", "n"]);
        assert_eq!(&m.headers[2].1[..], b"3");

        let m = json_message(&a, br#"{"payload":{"total":42},"headers":[["x","y"]]}"#)
            .expect("object payload");
        assert_eq!(&m.payload[..], br#"{"total":42}"#);
        assert_eq!(m.headers.len(), 2);
    }

    #[test]
    fn raw_lines_take_flags() {
        let a = args(&["--key", "k", "--id", "i", "--header", "a=b"]);
        let m = raw_message(&a, b"payload".to_vec());
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(m.id.as_deref(), Some(&b"i"[..]));
        assert_eq!(m.headers, vec![("a".to_string(), Bytes::from_static(b"b"))]);
    }
}
