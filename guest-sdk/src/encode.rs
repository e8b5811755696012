//! Encoding a plugin's verdicts into the byte list `on-batch` returns (the
//! layout is documented on `on-batch` in `wit/plugin.wit`). Owns that
//! encoder; must never check the host's limits itself (the host does, and
//! a plugin that breaks them must fail there, visibly), and never write
//! anything but what a verdict says.

use crate::{Partition, Patch, Verdict};

const PASS: u8 = 0;
const DROP: u8 = 1;
const REJECT: u8 = 2;
const PATCH: u8 = 3;

const TOPICS: u8 = 1;
const INDEX: u8 = 1 << 1;
const HASH_KEY: u8 = 1 << 2;
const DEDUP_KEY: u8 = 1 << 3;
const HEADERS: u8 = 1 << 4;

/// The verdicts as the contract's byte list, in order.
pub(crate) fn encode(verdicts: &[Verdict]) -> Vec<u8> {
    // A pass is one byte; most patches fit in 32.
    let mut out = Vec::with_capacity(verdicts.len() * 32);
    for verdict in verdicts {
        match verdict {
            Verdict::Pass => out.push(PASS),
            Verdict::Drop(reason) => {
                out.push(DROP);
                bytes(&mut out, reason.as_bytes());
            }
            Verdict::Reject(reason) => {
                out.push(REJECT);
                bytes(&mut out, reason.as_bytes());
            }
            Verdict::Patch(patch) => encode_patch(&mut out, patch),
        }
    }
    out
}

fn encode_patch(out: &mut Vec<u8>, patch: &Patch) {
    let mut fields = 0;
    if patch.topics.is_some() {
        fields |= TOPICS;
    }
    match patch.partition {
        Some(Partition::Index(_)) => fields |= INDEX,
        Some(Partition::HashKey(_)) => fields |= HASH_KEY,
        None => {}
    }
    if patch.dedup_key.is_some() {
        fields |= DEDUP_KEY;
    }
    if !patch.add_headers.is_empty() {
        fields |= HEADERS;
    }
    out.extend([PATCH, fields]);
    if let Some(topics) = &patch.topics {
        word(out, topics.len());
        for topic in topics {
            bytes(out, topic.as_bytes());
        }
    }
    match &patch.partition {
        Some(Partition::Index(index)) => out.extend(index.to_le_bytes()),
        Some(Partition::HashKey(key)) => bytes(out, key),
        None => {}
    }
    if let Some(key) = &patch.dedup_key {
        bytes(out, key);
    }
    if !patch.add_headers.is_empty() {
        word(out, patch.add_headers.len());
        for header in &patch.add_headers {
            bytes(out, header.name.as_bytes());
            bytes(out, &header.value);
        }
    }
}

/// A count or length as the contract's u32. Nothing in a wasm32 guest's
/// memory is longer; should one be, the saturated value makes the host
/// refuse the output rather than misread it.
fn word(out: &mut Vec<u8>, len: usize) {
    out.extend(u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    word(out, bytes.len());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_each_kind_as_documented() {
        let verdicts = [
            Verdict::Pass,
            Verdict::Drop("ab".into()),
            Verdict::Reject(String::new()),
            Patch::new().partition(3).into(),
            Patch::new()
                .topics(["t"])
                .hash_key("h")
                .dedup_key("d")
                .header("n", "v")
                .into(),
            Patch::new().into(),
        ];
        let mut want = vec![PASS, DROP, 2, 0, 0, 0, b'a', b'b', REJECT, 0, 0, 0, 0];
        want.extend([PATCH, INDEX, 3, 0, 0, 0]);
        want.extend([PATCH, TOPICS | HASH_KEY | DEDUP_KEY | HEADERS]);
        want.extend([1, 0, 0, 0, 1, 0, 0, 0, b't']);
        want.extend([1, 0, 0, 0, b'h']);
        want.extend([1, 0, 0, 0, b'd']);
        want.extend([1, 0, 0, 0, 1, 0, 0, 0, b'n', 1, 0, 0, 0, b'v']);
        want.extend([PATCH, 0]);
        assert_eq!(encode(&verdicts), want);
    }
}
