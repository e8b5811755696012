//! Decoding the verdict bytes a guest's `on-batch` returns (the encoding is
//! documented on `on-batch` in `guest-sdk/wit/plugin.wit`). Owns that
//! decoder; must never read past the buffer, never allocate more than the
//! limits allow for one verdict, and never accept bytes it cannot account
//! for. What it returns still goes through [`crate::limits::check_verdicts`].

use crate::Limits;
use crate::bindings::{Header, Partition, Patch, Verdict};

const PASS: u8 = 0;
const DROP: u8 = 1;
const REJECT: u8 = 2;
const PATCH: u8 = 3;

const TOPICS: u8 = 1;
const INDEX: u8 = 1 << 1;
const HASH_KEY: u8 = 1 << 2;
const DEDUP_KEY: u8 = 1 << 3;
const HEADERS: u8 = 1 << 4;
const KNOWN: u8 = TOPICS | INDEX | HASH_KEY | DEDUP_KEY | HEADERS;

/// The verdicts in `bytes`, one per message, or what was wrong (naming the
/// message). More or fewer verdicts than `messages` is an error that says
/// how many there were; extra ones are only counted, never kept.
pub(crate) fn decode(
    bytes: &[u8],
    messages: usize,
    limits: &Limits,
) -> Result<Vec<Verdict>, String> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut verdicts = Vec::with_capacity(messages);
    while !reader.done() && verdicts.len() < messages {
        // Most verdicts of most plugins are a single pass byte.
        if bytes[reader.pos] == PASS {
            reader.pos += 1;
            verdicts.push(Verdict::Pass);
            continue;
        }
        let index = verdicts.len();
        let verdict = reader
            .verdict(limits, true)
            .map_err(|e| format!("message {index}: {e}"))?;
        verdicts.push(verdict.unwrap_or(Verdict::Pass));
    }
    let mut count = verdicts.len();
    while !reader.done() {
        reader
            .verdict(limits, false)
            .map_err(|e| format!("verdict {count}: {e}"))?;
        count += 1;
    }
    if count != messages {
        return Err(format!("returned {count} verdicts for {messages} messages"));
    }
    Ok(verdicts)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("{len} bytes wanted at {} of {}", self.pos, self.bytes.len()))?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    /// A length-prefixed run of bytes, refused before it is read when it
    /// is over `max`.
    fn bytes(&mut self, what: &str, max: usize) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        bounded(what, len, max)?;
        self.take(len)
    }

    fn string(&mut self, what: &str, max: usize) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(what, max)?).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn count(&mut self, what: &str, max: usize) -> Result<usize, String> {
        let count = self.u32()? as usize;
        bounded(what, count, max)?;
        Ok(count)
    }

    /// One verdict; with `keep` false it is only checked and skipped.
    fn verdict(&mut self, limits: &Limits, keep: bool) -> Result<Option<Verdict>, String> {
        let tag = self.u8()?;
        let verdict = match tag {
            PASS => Verdict::Pass,
            DROP | REJECT => {
                let reason = self.string("reason", limits.reason_bytes_max)?;
                let reason = if keep {
                    reason.to_string()
                } else {
                    String::new()
                };
                if tag == DROP {
                    Verdict::Drop(reason)
                } else {
                    Verdict::Reject(reason)
                }
            }
            PATCH => Verdict::Patch(self.patch(limits, keep)?),
            other => return Err(format!("unknown verdict tag {other}")),
        };
        Ok(keep.then_some(verdict))
    }

    fn patch(&mut self, limits: &Limits, keep: bool) -> Result<Patch, String> {
        let fields = self.u8()?;
        if fields & !KNOWN != 0 || fields & (INDEX | HASH_KEY) == INDEX | HASH_KEY {
            return Err(format!("invalid patch field bits {fields:#04x}"));
        }
        let owned = |b: &[u8]| if keep { b.to_vec() } else { Vec::new() };
        let mut patch = Patch {
            topics: None,
            partition: None,
            dedup_key: None,
            add_headers: Vec::new(),
        };
        if fields & TOPICS != 0 {
            let count = self.count("topic count", limits.topics_per_verdict_max)?;
            let mut topics = Vec::with_capacity(if keep { count } else { 0 });
            for _ in 0..count {
                let topic = self.string("topic name", limits.topic_name_bytes_max)?;
                if keep {
                    topics.push(topic.to_string());
                }
            }
            patch.topics = Some(topics);
        }
        if fields & INDEX != 0 {
            patch.partition = Some(Partition::Index(self.u32()?));
        }
        if fields & HASH_KEY != 0 {
            let key = self.bytes("hash key", limits.key_bytes_max)?;
            patch.partition = Some(Partition::HashKey(owned(key)));
        }
        if fields & DEDUP_KEY != 0 {
            patch.dedup_key = Some(owned(self.bytes("dedup key", limits.key_bytes_max)?));
        }
        if fields & HEADERS != 0 {
            let count = self.count("added header count", limits.headers_per_verdict_max)?;
            if keep {
                patch.add_headers.reserve_exact(count);
            }
            for _ in 0..count {
                let name = self.string("header name", limits.header_name_bytes_max)?;
                let value = self.bytes("header value", limits.header_value_bytes_max)?;
                if keep {
                    patch.add_headers.push(Header {
                        name: name.to_string(),
                        value: value.to_vec(),
                    });
                }
            }
        }
        Ok(patch)
    }
}

fn bounded(what: &str, value: usize, max: usize) -> Result<(), String> {
    if value > max {
        Err(format!("{what} of {value} exceeds the limit of {max}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(bytes: &[u8]) -> [u8; 4] {
        (bytes.len() as u32).to_le_bytes()
    }

    fn encoded_patch() -> Vec<u8> {
        let mut b = vec![PATCH, TOPICS | HASH_KEY | DEDUP_KEY | HEADERS];
        b.extend(1u32.to_le_bytes());
        b.extend(len(b"t"));
        b.extend(b"t");
        b.extend(len(b"hk"));
        b.extend(b"hk");
        b.extend(len(b"dk"));
        b.extend(b"dk");
        b.extend(1u32.to_le_bytes());
        b.extend(len(b"n"));
        b.extend(b"n");
        b.extend(len(b"v"));
        b.extend(b"v");
        b
    }

    #[test]
    fn decodes_every_kind() {
        let mut bytes = vec![PASS, DROP];
        bytes.extend(len(b"why"));
        bytes.extend(b"why");
        bytes.push(REJECT);
        bytes.extend(len(b""));
        bytes.extend(encoded_patch());
        bytes.extend([PATCH, INDEX]);
        bytes.extend(7u32.to_le_bytes());
        let verdicts = decode(&bytes, 5, &Limits::default()).expect("well formed");
        assert_eq!(verdicts[0], Verdict::Pass);
        assert_eq!(verdicts[1], Verdict::Drop("why".into()));
        assert_eq!(verdicts[2], Verdict::Reject(String::new()));
        assert_eq!(
            verdicts[3],
            Verdict::Patch(Patch {
                topics: Some(vec!["t".into()]),
                partition: Some(Partition::HashKey(b"hk".to_vec())),
                dedup_key: Some(b"dk".to_vec()),
                add_headers: vec![Header {
                    name: "n".into(),
                    value: b"v".to_vec()
                }],
            })
        );
        assert!(matches!(
            &verdicts[4],
            Verdict::Patch(Patch {
                partition: Some(Partition::Index(7)),
                topics: None,
                ..
            })
        ));
    }

    #[test]
    fn counts_are_checked_both_ways() {
        let limits = Limits::default();
        let err = decode(&[PASS, PASS, PASS], 2, &limits).expect_err("one too many");
        assert!(err.contains("returned 3 verdicts for 2 messages"), "{err}");
        let err = decode(&[PASS], 2, &limits).expect_err("one too few");
        assert!(err.contains("returned 1 verdicts for 2 messages"), "{err}");
        assert!(decode(&[], 0, &limits).expect("none").is_empty());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encoded_patch();
        for cut in 1..bytes.len() {
            assert!(
                decode(&bytes[..cut], 1, &Limits::default()).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let limits = Limits::default();
        let err = decode(&[9], 1, &limits).expect_err("bad tag");
        assert!(err.contains("message 0: unknown verdict tag 9"), "{err}");
        let err = decode(&[PATCH, 1 << 5], 1, &limits).expect_err("bad bit");
        assert!(err.contains("field bits"), "{err}");
        let err = decode(&[PATCH, INDEX | HASH_KEY], 1, &limits).expect_err("both partitions");
        assert!(err.contains("field bits"), "{err}");
        let mut bad_utf8 = vec![DROP];
        bad_utf8.extend(len(&[0xff]));
        bad_utf8.push(0xff);
        assert!(
            decode(&bad_utf8, 1, &limits)
                .expect_err("utf8")
                .contains("UTF-8")
        );
    }

    #[test]
    fn huge_lengths_are_refused_before_reading() {
        let limits = Limits::default();
        let mut topics = vec![PATCH, TOPICS];
        topics.extend(u32::MAX.to_le_bytes());
        let err = decode(&topics, 1, &limits).expect_err("count");
        assert!(err.contains("topic count of 4294967295 exceeds"), "{err}");
        let mut reason = vec![DROP];
        reason.extend(u32::MAX.to_le_bytes());
        let err = decode(&reason, 1, &limits).expect_err("reason");
        assert!(err.contains("reason of 4294967295 exceeds"), "{err}");
    }
}
