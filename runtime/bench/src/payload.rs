//! The bench's messages: every payload has the requested size and carries
//! its sequence number and the time it was made, at fixed places, so that
//! a consumer can read the time back without parsing.
//!
//! From [`JSON_MIN_BYTES`] on a payload is a JSON object that the example
//! plugins read (json-filter on `/latency_ms`, dedup-by-field on the unique
//! `/order_id`), padded to size; below it the payload is binary: the
//! sequence number and the time as little-endian u64s, then zeros.

use bytes::{Bytes, BytesMut};

const HEAD: &str = r#"{"level":"warn","latency_ms":150,"order_id":"o-"#;
const AFTER_SEQ: &str = r#"","t_ns":""#;
const AFTER_TIME: &str = r#"","pad":""#;
const TAIL: &str = r#""}"#;
const DIGITS: usize = 20;

/// The smallest payload that is JSON.
pub(crate) const JSON_MIN_BYTES: usize =
    HEAD.len() + DIGITS + AFTER_SEQ.len() + DIGITS + AFTER_TIME.len() + TAIL.len();

/// The smallest payload that carries its time.
pub(crate) const TIMED_MIN_BYTES: usize = 16;

/// Keys cycle through this many values, so keyed partitioners spread them.
const KEYS: u64 = 1024;

/// Plugin configs that pass every bench message and give each its own
/// dedup key.
pub(crate) fn default_plugin_config(plugin: &str) -> &'static str {
    match plugin {
        "json-filter" => r#"{"where": [{"field": "/latency_ms", "op": ">=", "value": 100}]}"#,
        "dedup-by-field" => r#"{"field": "/order_id"}"#,
        _ => "",
    }
}

/// Makes payloads of one size.
#[derive(Debug, Clone)]
pub(crate) struct Payloads {
    template: Vec<u8>,
    json: bool,
    keys: Vec<Bytes>,
}

impl Payloads {
    pub(crate) fn new(size: usize) -> Payloads {
        let json = size >= JSON_MIN_BYTES;
        let template = if json {
            let pad = size - JSON_MIN_BYTES;
            let mut t = String::with_capacity(size);
            t.push_str(HEAD);
            t.push_str(&"0".repeat(DIGITS));
            t.push_str(AFTER_SEQ);
            t.push_str(&"0".repeat(DIGITS));
            t.push_str(AFTER_TIME);
            // Varied letters, so that nothing on the way can shrink them.
            t.extend((0..pad).map(|i| char::from(b'a' + (i * 7 % 26) as u8)));
            t.push_str(TAIL);
            t.into_bytes()
        } else {
            vec![0u8; size]
        };
        debug_assert_eq!(template.len(), size);
        let keys = (0..KEYS)
            .map(|k| Bytes::from(format!("user-{k}")))
            .collect();
        Payloads {
            template,
            json,
            keys,
        }
    }

    /// Whether payloads are JSON objects.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    pub(crate) fn size(&self) -> usize {
        self.template.len()
    }

    /// The key of message `seq` (a shared buffer: no allocation).
    pub(crate) fn key(&self, seq: u64) -> Bytes {
        self.keys[(seq % KEYS) as usize].clone()
    }

    /// The payload of message `seq`, made at `t_ns`.
    pub(crate) fn make(&self, seq: u64, t_ns: u64) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.template.len());
        buf.extend_from_slice(&self.template);
        if self.json {
            let at = HEAD.len();
            write_digits(&mut buf[at..at + DIGITS], seq);
            let at = at + DIGITS + AFTER_SEQ.len();
            write_digits(&mut buf[at..at + DIGITS], t_ns);
        } else {
            let n = buf.len();
            let seq = seq.to_le_bytes();
            buf[..n.min(8)].copy_from_slice(&seq[..n.min(8)]);
            if n >= TIMED_MIN_BYTES {
                buf[8..16].copy_from_slice(&t_ns.to_le_bytes());
            }
        }
        buf.freeze()
    }

    /// The time a payload made by [`Payloads::make`] carries; `None` for a
    /// payload of another size or shape.
    pub(crate) fn time_ns(&self, payload: &[u8]) -> Option<u64> {
        if payload.len() != self.template.len() {
            return None;
        }
        if self.json {
            let at = HEAD.len() + DIGITS + AFTER_SEQ.len();
            read_digits(payload.get(at..at + DIGITS)?)
        } else {
            let bytes: [u8; 8] = payload.get(8..16)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        }
    }
}

fn write_digits(out: &mut [u8], mut n: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn read_digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_have_the_size_and_parse() {
        let p = Payloads::new(1024);
        assert!(p.is_json());
        let payload = p.make(42, 1_234_567_890);
        assert_eq!(payload.len(), 1024);
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("valid JSON");
        assert_eq!(v["order_id"], "o-00000000000000000042");
        assert_eq!(v["latency_ms"], 150);
        assert_eq!(p.time_ns(&payload), Some(1_234_567_890));
        assert_eq!(p.time_ns(&payload[1..]), None);

        let smallest = Payloads::new(JSON_MIN_BYTES).make(u64::MAX, u64::MAX);
        let v: serde_json::Value = serde_json::from_slice(&smallest).expect("valid JSON");
        assert_eq!(v["t_ns"], u64::MAX.to_string());
    }

    #[test]
    fn small_payloads_are_binary() {
        let p = Payloads::new(16);
        assert!(!p.is_json());
        let payload = p.make(7, 99);
        assert_eq!(payload.len(), 16);
        assert_eq!(p.time_ns(&payload), Some(99));
        assert_eq!(Payloads::new(3).make(0x0102_0304, 5).as_ref(), &[4, 3, 2]);
        assert_eq!(Payloads::new(3).time_ns(&[0, 0, 0]), None);
    }

    #[test]
    fn keys_cycle() {
        let p = Payloads::new(200);
        assert_eq!(p.key(3), p.key(3 + KEYS));
        assert_ne!(p.key(3), p.key(4));
    }
}
