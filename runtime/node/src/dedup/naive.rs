//! The dedup window as it was first written (runtime/node/src/dedup.rs at
//! commit 05f2a1b): a `HashMap` of owned keys and a queue of owned copies.
//! Not used by the node: it is the model the randomized test holds the
//! window to, and the baseline `benches/dedup.rs` measures it against.

use std::collections::{HashMap, VecDeque};

use crate::dedup::Seen;

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
