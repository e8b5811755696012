//! `weir consume TOPIC`: prints messages as they arrive, raw payloads or
//! JSON lines, until `--count` messages or ctrl-c. Binary keys and
//! payloads are never printed lossily in JSON: they go as hex under
//! `key_hex` / `payload_hex` instead.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use weir_client::ConsumedMessage;

use crate::args::{ConsumeArgs, Format};
use crate::connect::connect;

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = connect(&args.conn).await?;
    let mut sub = client
        .subscribe(&args.topic, args.partition, args.from)
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
}
