//! A topic's dedup window: which keys were stored recently, and where.
//!
//! A key is the dedup key a plugin chose, else the producer's message id.
//! Entries live for the topic's window, measured on record timestamps (the
//! producer's clock, which a retry repeats), and at most `max_entries` are
//! kept, the oldest going first. Pure: time comes in as an argument, and
//! the window is rebuilt from the log at start (records store their key).

use std::collections::{HashMap, VecDeque};

/// Where a key was first stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
}

#[derive(Debug)]
pub(crate) struct DedupWindow {
    window_ms: u64,
    max_entries: usize,
    entries: HashMap<Vec<u8>, (Seen, i64)>,
    /// Keys in the order they were inserted, with their timestamps, for
    /// expiry. A key re-inserted after expiry appears twice; the stale
    /// copy is skipped when it comes up.
    order: VecDeque<(i64, Vec<u8>)>,
}

impl DedupWindow {
    pub(crate) fn new(window_ms: u64, max_entries: usize) -> DedupWindow {
        DedupWindow {
            window_ms,
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
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
        let (seen, ts) = self.entries.get(key)?;
        (*ts >= self.horizon(now_ms)).then_some(*seen)
    }

    /// Remembers `key`, stored at `seen` with record timestamp `ts_ms`.
    pub(crate) fn insert(&mut self, key: &[u8], seen: Seen, ts_ms: i64, now_ms: i64) {
        if !self.enabled() || ts_ms < self.horizon(now_ms) {
            return;
        }
        self.entries.insert(key.to_vec(), (seen, ts_ms));
        self.order.push_back((ts_ms, key.to_vec()));
        self.expire(now_ms);
    }

    /// Drops entries older than the window, and the oldest past the count.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        let horizon = self.horizon(now_ms);
        while let Some((ts, key)) = self.order.front() {
            let current = self.entries.get(key).is_some_and(|(_, t)| t == ts);
            let over = self.entries.len() > self.max_entries;
            if !current {
                self.order.pop_front();
            } else if *ts < horizon || over {
                self.entries.remove(key);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn horizon(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::try_from(self.window_ms).unwrap_or(i64::MAX))
    }
}

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
}
