//! Input one message per line, shared by `weir produce` and `weir plugin
//! test`: bounded line reading and the JSON line format
//! `{"key", "headers", "payload", "id"}`. Owns that format; must never hold
//! a line longer than [`MAX_LINE_BYTES`].

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use weir_client::Message;

/// Longest input line: the largest batch the protocol carries.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Reads one line without its newline into `buf`; `false` at the end of
/// input. A line longer than the limit is an error before it is held.
pub(crate) async fn read_line(
    input: &mut (impl AsyncBufReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    buf.clear();
    loop {
        let available = input.fill_buf().await.context("cannot read the input")?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > MAX_LINE_BYTES {
            bail!("longer than {MAX_LINE_BYTES} bytes");
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        input.consume(used);
        if done.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

/// A JSON line: `{"key", "headers", "payload", "id"}`, all optional but
/// the payload. A string payload is sent as its UTF-8 bytes; any other
/// JSON value as its compact encoding. Headers are an object of strings
/// or a list of `[name, value]` pairs; they add to `base`'s headers, and a
/// key or id in the line replaces `base`'s (`null` clears it).
pub(crate) fn json_message(base: Message, line: &[u8]) -> anyhow::Result<Message> {
    let value: Value = serde_json::from_slice(line).context("not JSON")?;
    let Value::Object(mut obj) = value else {
        bail!("expected a JSON object with key, headers, payload, id");
    };
    let payload = match obj.remove("payload") {
        None => bail!("no \"payload\""),
        Some(Value::String(s)) => Bytes::from(s),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut m = base;
    m.payload = payload;
    if let Some(key) = obj.remove("key") {
        m.key = optional_string("key", key)?.map(Bytes::from);
    }
    if let Some(id) = obj.remove("id") {
        m.id = optional_string("id", id)?.map(Bytes::from);
    }
    match obj.remove("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            for (k, v) in headers {
                m.headers.push((k, Bytes::from(header_value(v)?)));
            }
        }
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                match pair {
                    Value::Array(kv) if kv.len() == 2 => {
                        let mut kv = kv.into_iter();
                        let (Some(Value::String(k)), Some(v)) = (kv.next(), kv.next()) else {
                            bail!("a header pair is [\"name\", \"value\"]");
                        };
                        m.headers.push((k, Bytes::from(header_value(v)?)));
                    }
                    _ => bail!("a header pair is [\"name\", \"value\"]"),
                }
            }
        }
        Some(_) => bail!("\"headers\" is an object or a list of [name, value] pairs"),
    }
    if let Some((unknown, _)) = obj.into_iter().next() {
        bail!("unknown field {unknown:?} (expected key, headers, payload, id)");
    }
    Ok(m)
}

fn optional_string(what: &str, v: Value) -> anyhow::Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => bail!("{what:?} must be a string, not {other}"),
    }
}

fn header_value(v: Value) -> anyhow::Result<String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Null => bail!("a header value is a string, not null"),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    fn parse(line: &[u8]) -> anyhow::Result<Message> {
        json_message(Message::default(), line)
    }

    #[test]
    fn json_lines_carry_key_headers_payload_id() {
        let m = parse(br#"{"key":"k1","headers":{"h":"v","n":3},"payload":"hi","id":"m-1"}"#)
            .expect("parse");
        assert_eq!(m.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(m.id.as_deref(), Some(&b"m-1"[..]));
        assert_eq!(&m.payload[..], b"hi");
        let names: Vec<&str> = m.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["h", "n"]);
        assert_eq!(&m.headers[1].1[..], b"3");

        let m =
            parse(br#"{"payload":{"total":42},"headers":[["x","y"]]}"#).expect("object payload");
        assert_eq!(&m.payload[..], br#"{"total":42}"#);
        assert_eq!(m.headers.len(), 1);
    }

    #[test]
    fn json_lines_are_checked() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(br#"{"key":"k"}"#).is_err(), "payload is required");
        assert!(parse(br#"{"payload":"p","extra":1}"#).is_err());
        assert!(parse(br#"{"payload":"p","key":5}"#).is_err());
        assert!(parse(br#"{"payload":"p","headers":{"h":null}}"#).is_err());
        assert!(parse(br#"{"payload":"p","headers":[["h"]]}"#).is_err());
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let mut input = BufReader::new(&b"one\r\ntwo\n\nlast"[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut input, &mut buf).await.expect("read") {
            lines.push(String::from_utf8(buf.clone()).expect("utf8"));
        }
        assert_eq!(lines, vec!["one", "two", "", "last"]);
    }
}
