//! `weir plugin test FILE.wasm`: runs a component in the real plugin host,
//! offline, on messages read as JSON lines, and prints each message's
//! outcome as one JSON line. Owns that output format; must never call the
//! host on an async worker thread: compiling and running a batch block and
//! need the stack the host asks for, so they go to blocking threads.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, BufReader};
use weir_plugin::{
    BatchContext, Chain, FailurePolicy, Header, HostConfig, Message, Outcome, Partition, PluginHost,
};

use super::read_component;
use crate::args::PluginTestArgs;
use crate::cmd::lines::{json_message, read_line};

pub(crate) async fn run(args: PluginTestArgs) -> anyhow::Result<()> {
    weir_proto::frame::validate_name("topic name", &args.topic)?;
    let wasm = read_component(&args.file)?;
    let plugin = plugin_name(&args.file);
    let config = args.config.clone();
    let chain = Arc::new(blocking(move || load(&plugin, &wasm, &config)).await??);
    let context = Arc::new(BatchContext {
        topic: args.topic.clone(),
        partitions: args.partitions,
    });

    let (mut input, source): (Box<dyn AsyncBufRead + Unpin + Send>, String) = match &args.input {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            (Box::new(BufReader::new(file)), path.display().to_string())
        }
        None => (
            Box::new(BufReader::new(tokio::io::stdin())),
            "standard input".to_string(),
        ),
    };
    let batch_len = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let mut report = Report::default();
    let mut batch = Vec::with_capacity(batch_len);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    while read_line(&mut input, &mut line)
        .await
        .with_context(|| format!("{source}: line {}", line_no + 1))?
    {
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let message = json_message(weir_client::Message::default(), &line)
            .with_context(|| format!("{source}: line {line_no}"))?;
        batch.push(plugin_message(message));
        if batch.len() == batch_len {
            report
                .run(&chain, &context, std::mem::take(&mut batch))
                .await?;
        }
    }
    if !batch.is_empty() {
        report.run(&chain, &context, batch).await?;
    }
    if let Some(error) = report.first_error {
        bail!(
            "{} of {} messages were rejected because the plugin failed (first failure: {error})",
            report.failed,
            report.index
        );
    }
    Ok(())
}

/// Runs `f` on one of the runtime's blocking threads. Their stack (set in
/// `main`) is what the plugin host needs: at least 1 MiB.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the plugin thread failed")
}

/// The host and a chain of one attachment, with the failure policy a
/// topic gets by default (reject).
fn load(plugin: &str, wasm: &[u8], config: &str) -> anyhow::Result<Chain> {
    let host = PluginHost::new(HostConfig::default())?;
    let compiled = host.compile(plugin, wasm)?;
    let attachment = host.attach(compiled, config, FailurePolicy::Reject)?;
    Ok(Chain::new(vec![Arc::new(attachment)]))
}

/// The name errors and logs call the plugin: the file's stem.
fn plugin_name(file: &Path) -> String {
    file.file_stem().map_or_else(
        || "plugin".to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// A message as the node would hand it to a chain, stamped now. The id a
/// JSON line may carry is not part of what a plugin sees.
fn plugin_message(m: weir_client::Message) -> Message {
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Message {
        key: m.key.map(|k| k.to_vec()),
        headers: m
            .headers
            .into_iter()
            .map(|(name, value)| Header {
                name,
                value: value.to_vec(),
            })
            .collect(),
        payload: m.payload.to_vec(),
        timestamp_ms,
    }
}

/// What has been printed so far.
#[derive(Debug, Default)]
struct Report {
    /// The next message's index.
    index: u64,
    /// Messages rejected because the plugin failed on their batch.
    failed: u64,
    first_error: Option<String>,
}

impl Report {
    /// Runs one batch on a blocking thread and prints its outcomes.
    async fn run(
        &mut self,
        chain: &Arc<Chain>,
        context: &Arc<BatchContext>,
        batch: Vec<Message>,
    ) -> anyhow::Result<()> {
        let (chain, context_for_run) = (Arc::clone(chain), Arc::clone(context));
        let run = blocking(move || chain.run(&context_for_run, &batch)).await?;
        if let Some(error) = run.errors.first() {
            tracing::debug!(%error, "the plugin failed on a batch");
            self.failed += run.outcomes.len() as u64;
            self.first_error
                .get_or_insert_with(|| summary(&error.to_string()));
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for outcome in &run.outcomes {
            let line = outcome_line(self.index, outcome, context);
            writeln!(out, "{line}").context("cannot write standard output")?;
            self.index += 1;
        }
        out.flush().context("cannot write standard output")
    }
}

/// One output line: `{"index", "verdict", "reason", "topics", "partition",
/// "dedup_key", "headers"}`. An accepted message's topics are where it
/// goes (the published topic unless a plugin chose others); its partition
/// is the one a plugin chose, or its hash key's under Kafka's partitioner
/// over `--partitions`, and null when no plugin chose (the node's default
/// then applies); headers are those the chain added.
fn outcome_line(index: u64, outcome: &Outcome, context: &BatchContext) -> Value {
    let (verdict, reason, routing) = match outcome {
        Outcome::Accept(routing) => ("accept", None, Some(routing)),
        Outcome::Drop { reason, .. } => ("drop", Some(reason), None),
        Outcome::Reject { reason, .. } => ("reject", Some(reason), None),
        // Not reached: the attachment's policy is reject.
        Outcome::DeadLetter { error, .. } => ("reject", Some(error), None),
    };
    let Some(routing) = routing else {
        return json!({
            "index": index, "verdict": verdict, "reason": reason,
            "topics": [], "partition": null, "dedup_key": null, "headers": {},
        });
    };
    let topics = routing
        .topics
        .clone()
        .unwrap_or_else(|| vec![context.topic.clone()]);
    let partition = match &routing.partition {
        Some(Partition::Index(p)) => Some(*p),
        Some(Partition::HashKey(key)) => Some(weir_proto::partition::kafka_partition(
            key,
            context.partitions,
        )),
        None => None,
    };
    let mut headers = Map::new();
    for header in &routing.added_headers {
        let value = bytes_value(&header.value);
        // A name added twice keeps every value, in order.
        match headers.get_mut(&header.name) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                headers.insert(header.name.clone(), value);
            }
        }
    }
    json!({
        "index": index, "verdict": verdict, "reason": reason,
        "topics": topics, "partition": partition,
        "dedup_key": routing.dedup_key.as_deref().map(bytes_value), "headers": headers,
    })
}

/// An error on one line without the wasm backtrace (the reject lines
/// carry it whole).
fn summary(error: &str) -> String {
    let is_frame = |line: &str| {
        line.split_once(": ").is_some_and(|(n, rest)| {
            n.parse::<u32>().is_ok() && rest.trim_start().starts_with("0x")
        })
    };
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_frame(l))
        .collect();
    lines.join(" ")
}

/// Bytes as a JSON string when they are UTF-8, else as an array of numbers.
fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin::Routing;

    fn context() -> BatchContext {
        BatchContext {
            topic: "in".into(),
            partitions: 4,
        }
    }

    #[test]
    fn accepted_messages_show_their_routing() {
        let routing = Routing {
            topics: None,
            partition: Some(Partition::HashKey(b"key".to_vec())),
            dedup_key: Some(vec![0xff, 1]),
            added_headers: vec![
                Header {
                    name: "a".into(),
                    value: b"1".to_vec(),
                },
                Header {
                    name: "a".into(),
                    value: b"2".to_vec(),
                },
                Header {
                    name: "b".into(),
                    value: b"x".to_vec(),
                },
            ],
        };
        let line = outcome_line(3, &Outcome::Accept(routing), &context());
        let expected = weir_proto::partition::kafka_partition(b"key", 4);
        assert_eq!(
            line.to_string(),
            format!(
                r#"{{"index":3,"verdict":"accept","reason":null,"topics":["in"],"partition":{expected},"dedup_key":[255,1],"headers":{{"a":["1","2"],"b":"x"}}}}"#
            )
        );
    }

    #[test]
    fn drops_and_rejects_go_nowhere() {
        let drop = Outcome::Drop {
            plugin: "p".into(),
            reason: "filtered".into(),
        };
        assert_eq!(
            outcome_line(0, &drop, &context()).to_string(),
            r#"{"index":0,"verdict":"drop","reason":"filtered","topics":[],"partition":null,"dedup_key":null,"headers":{}}"#
        );
        let reject = Outcome::Reject {
            plugin: "p".into(),
            reason: "no".into(),
        };
        let line = outcome_line(1, &reject, &context());
        assert_eq!(line["verdict"], "reject");
        assert_eq!(line["reason"], "no");
    }

    #[test]
    fn failures_are_summed_up_without_the_backtrace() {
        let error = "plugin p: trapped: error while executing at wasm backtrace:\n    0:   0xd3d8 - <unknown>!<wasm function 205>\n   11:   0x3d61 - x\n\nCaused by:\n    wasm trap: unreachable\n";
        assert_eq!(
            summary(error),
            "plugin p: trapped: error while executing at wasm backtrace: Caused by: wasm trap: unreachable"
        );
    }

    #[test]
    fn messages_keep_key_headers_payload() {
        let line = br#"{"key":"k","headers":{"h":"v"},"payload":{"n":1},"id":"ignored"}"#;
        let m = plugin_message(
            json_message(weir_client::Message::default(), line).expect("valid line"),
        );
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            m.headers,
            vec![Header {
                name: "h".into(),
                value: b"v".to_vec()
            }]
        );
        assert_eq!(m.payload, br#"{"n":1}"#);
        assert_eq!(
            plugin_name(Path::new("target/plugins/json-filter.wasm")),
            "json-filter"
        );
    }
}
