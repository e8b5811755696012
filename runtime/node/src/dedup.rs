//! A topic's dedup window: which keys were stored recently, and where.
//!
//! A key is the dedup key a plugin chose, else the producer's message id.
//! Entries live for the topic's window, measured on record timestamps (the
//! producer's clock, which a retry repeats), and at most `max_entries` are
//! kept, the oldest going first. Pure: time comes in as an argument, and
//! the window is rebuilt from the log at start (records store their key).
//!
//! It sits on the produce path under the topic's lock, once per message, so
//! it keeps each key's bytes once, in one ring of bytes shared by all keys
//! (no allocation per key), and indexes them by a 64-bit hash from a hasher
//! seeded at random per window: keys come from producers and plugins, and a
//! fixed hash would let them pile keys into one bucket.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;

/// Where a key was first stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
}

pub(crate) struct DedupWindow {
    window_ms: u64,
    max_entries: usize,
    hasher: foldhash::fast::RandomState,
    /// All ones, except in tests that make every key collide.
    hash_mask: u64,
    /// One entry per remembered key, pointing at its newest insert.
    index: HashTable<Current>,
    order: Order,
}

/// A remembered key in the index: its hash (kept for rehashing) and the
/// sequence number of its newest insert in [`Order`].
#[derive(Debug, Clone, Copy)]
struct Current {
    hash: u64,
    seq: usize,
}

/// Every insert, oldest first, for expiry, with the key's bytes. A key
/// re-inserted appears twice; the stale copy is skipped when it comes up.
#[derive(Debug, Default)]
struct Order {
    inserts: VecDeque<Insert>,
    /// Sequence number of `inserts[0]`. Sequence numbers and key positions
    /// count from the window's start and wrap (never, on 64 bits).
    first_seq: usize,
    /// The inserts' keys back to back, in the same order.
    keys: VecDeque<u8>,
    /// Position of `keys[0]`.
    keys_start: usize,
}

#[derive(Debug, Clone, Copy)]
struct Insert {
    ts_ms: i64,
    offset: u64,
    hash: u64,
    /// Where the key starts, counted as `Order::keys_start` is.
    key_start: usize,
    key_len: u32,
    partition: u32,
}

impl DedupWindow {
    pub(crate) fn new(window_ms: u64, max_entries: usize) -> DedupWindow {
        DedupWindow {
            window_ms,
            max_entries: max_entries.max(1),
            hasher: foldhash::fast::RandomState::default(),
            hash_mask: u64::MAX,
            index: HashTable::new(),
            order: Order::default(),
        }
    }

    /// Whether the topic deduplicates at all.
    pub(crate) fn enabled(&self) -> bool {
        self.window_ms > 0
    }

    pub(crate) fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Where `key` was stored, if within the window at `now_ms`.
    pub(crate) fn get(&self, key: &[u8], now_ms: i64) -> Option<Seen> {
        if self.index.is_empty() {
            return None;
        }
        let hash = self.hash(key);
        let order = &self.order;
        let current = self
            .index
            .find(hash, |c| c.hash == hash && order.holds(c.seq, key))?;
        let insert = order.get(current.seq)?;
        (insert.ts_ms >= self.horizon(now_ms)).then_some(Seen {
            partition: insert.partition,
            offset: insert.offset,
        })
    }

    /// Remembers `key`, stored at `seen` with record timestamp `ts_ms`.
    pub(crate) fn insert(&mut self, key: &[u8], seen: Seen, ts_ms: i64, now_ms: i64) {
        if !self.enabled() || ts_ms < self.horizon(now_ms) {
            return;
        }
        // Keys are bounded far below this by the protocol.
        let Ok(key_len) = u32::try_from(key.len()) else {
            return;
        };
        let hash = self.hash(key);
        let seq = self.order.next_seq();
        let order = &self.order;
        let entry = self.index.entry(
            hash,
            |c| c.hash == hash && order.holds(c.seq, key),
            |c| c.hash,
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().seq = seq,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Current { hash, seq });
            }
        }
        self.order.push(
            key,
            Insert {
                ts_ms,
                offset: seen.offset,
                hash,
                key_start: 0,
                key_len,
                partition: seen.partition,
            },
        );
        self.expire(now_ms);
    }

    /// Drops entries older than the window, and the oldest past the count.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        let horizon = self.horizon(now_ms);
        while let Some((seq, front)) = self.order.front() {
            let over = self.index.len() > self.max_entries;
            let order = &self.order;
            let entry = self.index.find_entry(front.hash, |c| {
                c.hash == front.hash && (c.seq == seq || order.same_key(c.seq, seq))
            });
            if let Ok(e) = entry {
                // A newer copy with the same timestamp makes this one count
                // as current too, as it always has.
                let newest = e.get().seq;
                let current =
                    newest == seq || order.get(newest).is_some_and(|n| n.ts_ms == front.ts_ms);
                if current {
                    if front.ts_ms < horizon || over {
                        e.remove();
                    } else {
                        break;
                    }
                }
            }
            self.order.pop_front();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    fn horizon(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::try_from(self.window_ms).unwrap_or(i64::MAX))
    }

    fn hash(&self, key: &[u8]) -> u64 {
        // `write` mixes in the length itself.
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.finish() & self.hash_mask
    }
}

#[cfg(test)]
impl DedupWindow {
    /// A window whose keys all hash alike, so lookups must tell them apart
    /// by their bytes.
    fn with_colliding_hashes(window_ms: u64, max_entries: usize) -> DedupWindow {
        DedupWindow {
            hash_mask: 3,
            ..DedupWindow::new(window_ms, max_entries)
        }
    }
}

impl fmt::Debug for DedupWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupWindow")
            .field("window_ms", &self.window_ms)
            .field("max_entries", &self.max_entries)
            .field("len", &self.index.len())
            .field("inserts", &self.order.inserts.len())
            .field("key_bytes", &self.order.keys.len())
            .finish()
    }
}

impl Order {
    fn next_seq(&self) -> usize {
        self.first_seq.wrapping_add(self.inserts.len())
    }

    fn get(&self, seq: usize) -> Option<&Insert> {
        self.inserts.get(seq.wrapping_sub(self.first_seq))
    }

    fn front(&self) -> Option<(usize, Insert)> {
        self.inserts.front().map(|i| (self.first_seq, *i))
    }

    /// The key of `insert`, in two parts where the ring wraps.
    fn key(&self, insert: &Insert) -> (&[u8], &[u8]) {
        let start = insert.key_start.wrapping_sub(self.keys_start);
        let end = start + insert.key_len as usize;
        let (a, b) = self.keys.as_slices();
        if end <= a.len() {
            (&a[start..end], &[])
        } else if start >= a.len() {
            (&b[start - a.len()..end - a.len()], &[])
        } else {
            (&a[start..], &b[..end - a.len()])
        }
    }

    /// Whether the insert numbered `seq` is of `key`.
    fn holds(&self, seq: usize, key: &[u8]) -> bool {
        let Some(insert) = self.get(seq) else {
            return false;
        };
        if insert.key_len as usize != key.len() {
            return false;
        }
        let (a, b) = self.key(insert);
        key[..a.len()] == *a && key[a.len()..] == *b
    }

    /// Whether the inserts numbered `x` and `y` are of the same key.
    fn same_key(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (self.get(x), self.get(y)) else {
            return false;
        };
        if x.key_len != y.key_len {
            return false;
        }
        let ((x1, x2), (y1, y2)) = (self.key(x), self.key(y));
        x1.iter().chain(x2).eq(y1.iter().chain(y2))
    }

    fn push(&mut self, key: &[u8], mut insert: Insert) {
        insert.key_start = self.keys_start.wrapping_add(self.keys.len());
        self.keys.extend(key);
        self.inserts.push_back(insert);
    }

    fn pop_front(&mut self) {
        if let Some(insert) = self.inserts.pop_front() {
            let len = insert.key_len as usize;
            self.keys.drain(..len);
            self.keys_start = self.keys_start.wrapping_add(len);
            self.first_seq = self.first_seq.wrapping_add(1);
        }
    }
}

#[cfg(test)]
#[path = "dedup/naive.rs"]
mod naive;

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(offset: u64) -> Seen {
        Seen {
            partition: 0,
            offset,
        }
    }

    #[test]
    fn keys_are_remembered_for_the_window_only() {
        let mut w = DedupWindow::new(1_000, 100);
        w.insert(b"a", seen(1), 10_000, 10_000);
        assert_eq!(w.get(b"a", 10_500), Some(seen(1)));
        assert_eq!(w.get(b"a", 11_000), Some(seen(1)));
        assert_eq!(w.get(b"a", 11_001), None);
        w.expire(11_001);
        assert_eq!(w.len(), 0);
        // A record already older than the window is not remembered.
        w.insert(b"old", seen(2), 5_000, 11_001);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn the_count_limit_drops_the_oldest() {
        let mut w = DedupWindow::new(60_000, 3);
        for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            w.insert(*key, seen(i as u64), 1_000 + i as i64, 1_000);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.get(b"a", 1_000), None);
        assert_eq!(w.get(b"d", 1_000), Some(seen(3)));
    }

    #[test]
    fn reinserting_a_key_keeps_the_newest_and_skips_stale_order_entries() {
        let mut w = DedupWindow::new(1_000, 10);
        w.insert(b"k", seen(1), 0, 0);
        w.insert(b"k", seen(9), 900, 900);
        w.expire(1_500);
        assert_eq!(w.get(b"k", 1_500), Some(seen(9)));
        w.expire(2_000);
        assert_eq!(w.get(b"k", 1_901), None);
    }

    #[test]
    fn a_zero_window_is_off() {
        let mut w = DedupWindow::new(0, 10);
        assert!(!w.enabled());
        w.insert(b"k", seen(1), 0, 0);
        assert_eq!(w.get(b"k", 0), None);
    }

    /// xorshift64: deterministic, and enough to shuffle operations.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn matches_a_naive_model_over_random_operations() {
        // Few keys, so repeats, re-inserts and both kinds of expiry all
        // happen; lengths from 0 to 44 bytes, so keys straddle the ring's
        // wrap, and keys of one length differing in one byte.
        let keys: Vec<Vec<u8>> = [0, 3, 3, 9, 17, 17, 24, 24, 24, 40, 44, 44]
            .into_iter()
            .zip(0u8..)
            .map(|(len, i)| {
                let mut key = vec![b'k'; len];
                if len > 0 {
                    key[usize::from(i) * 5 % len] = b'0' + i;
                }
                key
            })
            .collect();
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut wrapped = 0;
        for run in 0..240 {
            let window_ms = [0, 1, 40, 100, 1_000][(next(&mut rng) % 5) as usize];
            let max_entries = [0, 1, 2, 3, 5, 8, 100][(next(&mut rng) % 7) as usize];
            let mut w = if run % 3 == 0 {
                DedupWindow::with_colliding_hashes(window_ms, max_entries)
            } else {
                DedupWindow::new(window_ms, max_entries)
            };
            let mut model = naive::DedupWindow::new(window_ms, max_entries);
            let mut now_ms = (next(&mut rng) % 10_000) as i64;
            for op in 0..1_000_u64 {
                let r = next(&mut rng);
                let at_ms = match r % 10 {
                    0..=5 => {
                        let key = &keys[(r >> 8) as usize % keys.len()];
                        let ts_ms = now_ms - ((r >> 16) % 150) as i64 + ((r >> 24) % 10) as i64;
                        let seen = Seen {
                            partition: ((r >> 32) % 4) as u32,
                            offset: op,
                        };
                        w.insert(key, seen, ts_ms, now_ms);
                        model.insert(key, seen, ts_ms, now_ms);
                        now_ms
                    }
                    6 => {
                        w.expire(now_ms);
                        model.expire(now_ms);
                        now_ms
                    }
                    7 | 8 => {
                        now_ms += ((r >> 8) % 30) as i64;
                        now_ms
                    }
                    // A look at another time, earlier or later.
                    _ => now_ms - 200 + ((r >> 8) % 400) as i64,
                };
                assert_eq!(w.len(), model.len(), "run {run} op {op}");
                for key in &keys {
                    assert_eq!(
                        w.get(key, at_ms),
                        model.get(key, at_ms),
                        "run {run} op {op} key {key:?} at {at_ms}"
                    );
                }
                if !w.order.keys.as_slices().1.is_empty() {
                    wrapped += 1;
                }
            }
        }
        assert!(wrapped > 0, "the key ring never wrapped");
    }
}
