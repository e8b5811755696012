//! Queue mode's bookkeeping for one partition: which messages are handed
//! out, to whom, how often, when each is due again, and the ack floor.
//! Pure state with no I/O: the caller reads the log, writes the journal
//! and sends frames.
//!
//! Offsets below `floor` are done (acked or dead-lettered). Offsets in
//! `floor..cursor` have been read ahead: those in `entries` are not done,
//! the others are. Offsets from `cursor` on have not been read, except
//! that a restart may know some of them are done (`done_ahead`) or have
//! been tried (`known`), from the journal.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::journal::Event;

/// The holder of a message that is being written to the dead-letter topic.
pub(crate) const DEAD_LETTERING: u64 = u64::MAX;

/// A message read ahead and not yet done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Deliveries so far.
    pub(crate) attempts: u32,
    /// Not to be delivered before this time (ms).
    pub(crate) due_ms: i64,
    /// The member it is out with, if any.
    pub(crate) holder: Option<u64>,
    /// When the holder's ack wait ends (ms).
    pub(crate) deadline_ms: i64,
    /// Hash of the record's key, for ordered groups.
    pub(crate) key: Option<u64>,
    /// Why the last delivery failed.
    pub(crate) error: String,
}

/// What became of a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Redelivered from this time on.
    Retry { due_ms: i64 },
    /// Out of deliveries: to the dead-letter topic. The entry is held by
    /// [`DEAD_LETTERING`] until the caller settles it.
    DeadLetter { attempts: u32, error: String },
}

/// What a failed delivery needs to know about the group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy<'a> {
    pub(crate) max_deliveries: u32,
    pub(crate) backoff_ms: &'a [u64],
}

impl RetryPolicy<'_> {
    /// The delay before the redelivery that follows delivery `attempts`.
    pub(crate) fn backoff(&self, attempts: u32) -> u64 {
        let step = (attempts.max(1) - 1) as usize;
        self.backoff_ms
            .get(step)
            .or(self.backoff_ms.last())
            .copied()
            .unwrap_or(0)
    }
}

/// Hashes a record key for ordered groups.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// One partition of a queue-mode group.
#[derive(Debug, Default)]
pub(crate) struct QueuePartition {
    pub(crate) floor: u64,
    pub(crate) cursor: u64,
    pub(crate) entries: BTreeMap<u64, Entry>,
    done_ahead: BTreeSet<u64>,
    known: HashMap<u64, Entry>,
    pub(crate) redelivered: u64,
    pub(crate) dead_lettered: u64,
}

impl QueuePartition {
    /// A partition positioned at `offset` with nothing known past it.
    pub(crate) fn at(offset: u64) -> QueuePartition {
        QueuePartition {
            floor: offset,
            cursor: offset,
            ..QueuePartition::default()
        }
    }

    /// Applies one journal event during replay (before any read-ahead).
    pub(crate) fn replay(&mut self, event: &Event) {
        match event {
            Event::Position { offset, .. } => self.seek(*offset),
            Event::Delivered { offsets, .. } => {
                for o in offsets.iter().filter(|o| **o >= self.floor) {
                    let e = self.known.entry(*o).or_default();
                    e.attempts += 1;
                    if e.attempts > 1 {
                        self.redelivered += 1;
                    }
                }
            }
            Event::Acked { offsets, .. } => {
                for o in offsets.iter().filter(|o| **o >= self.floor) {
                    self.known.remove(o);
                    self.done_ahead.insert(*o);
                }
            }
            Event::Dead { offset, .. } => {
                if *offset >= self.floor {
                    self.known.remove(offset);
                    self.done_ahead.insert(*offset);
                }
                self.dead_lettered += 1;
            }
            Event::Failed {
                offset,
                due_ms,
                error,
                ..
            } => {
                if *offset >= self.floor && !self.done_ahead.contains(offset) {
                    let e = self.known.entry(*offset).or_default();
                    e.due_ms = *due_ms;
                    e.error.clone_from(error);
                }
            }
            Event::Attempts {
                offset, attempts, ..
            } => {
                if *offset >= self.floor {
                    self.known.entry(*offset).or_default().attempts = *attempts;
                }
            }
            Event::Counters {
                redelivered,
                dead_lettered,
                ..
            } => {
                self.redelivered = *redelivered;
                self.dead_lettered = *dead_lettered;
            }
            Event::Commit { .. } => {}
        }
    }

    /// Forgets everything and stands at `offset`.
    pub(crate) fn seek(&mut self, offset: u64) {
        self.entries.clear();
        self.done_ahead.clear();
        self.known.clear();
        self.floor = offset;
        self.cursor = offset;
    }

    /// Takes in the record at the cursor, read ahead from the log.
    pub(crate) fn admit(&mut self, offset: u64, key: Option<&[u8]>) {
        if offset < self.cursor {
            return;
        }
        self.cursor = offset + 1;
        if self.done_ahead.remove(&offset) {
            self.advance_floor();
            return;
        }
        let mut entry = self.known.remove(&offset).unwrap_or_default();
        entry.key = key.map(key_hash);
        entry.holder = None;
        self.entries.insert(offset, entry);
    }

    /// Retention removed everything below `start`: what is not yet done
    /// there can no longer be delivered.
    pub(crate) fn truncated(&mut self, start: u64) -> usize {
        let kept = self.entries.split_off(&start);
        let lost = std::mem::replace(&mut self.entries, kept).len();
        self.done_ahead = self.done_ahead.split_off(&start);
        self.known.retain(|o, _| *o >= start);
        self.cursor = self.cursor.max(start);
        self.advance_floor();
        lost
    }

    fn advance_floor(&mut self) {
        self.floor = self
            .entries
            .keys()
            .next()
            .copied()
            .unwrap_or(self.cursor)
            .max(self.floor);
    }

    /// Hands up to `n` due messages to `member`: attempts go up by one and
    /// the ack wait starts. With `ordered`, a message is skipped while an
    /// earlier unfinished message has the same key. Returns (offset,
    /// attempt) in offset order.
    pub(crate) fn pick(
        &mut self,
        member: u64,
        n: usize,
        now_ms: i64,
        ack_wait_ms: u64,
        ordered: bool,
    ) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        let mut blocked: HashSet<u64> = HashSet::new();
        let deadline = now_ms.saturating_add(i64::try_from(ack_wait_ms).unwrap_or(i64::MAX));
        for (offset, e) in self.entries.iter_mut() {
            if out.len() >= n {
                break;
            }
            let free = e.holder.is_none() && e.due_ms <= now_ms;
            if ordered
                && let Some(k) = e.key
                && !blocked.insert(k)
            {
                continue;
            }
            if !free {
                continue;
            }
            e.holder = Some(member);
            e.attempts += 1;
            e.deadline_ms = deadline;
            if e.attempts > 1 {
                self.redelivered += 1;
            }
            out.push((*offset, e.attempts));
        }
        out
    }

    /// Marks `offset` done; false if it was not outstanding.
    pub(crate) fn ack(&mut self, offset: u64) -> bool {
        match self.entries.get(&offset) {
            Some(e) if e.holder != Some(DEAD_LETTERING) => {
                self.entries.remove(&offset);
                self.advance_floor();
                true
            }
            _ => false,
        }
    }

    /// A delivery of `offset` failed. `member` must hold it if given (a
    /// nack); `None` is the node's own decision (ack wait, member gone).
    pub(crate) fn fail(
        &mut self,
        offset: u64,
        member: Option<u64>,
        now_ms: i64,
        delay_ms: Option<u64>,
        error: &str,
        policy: RetryPolicy<'_>,
    ) -> Option<Failure> {
        let e = self.entries.get_mut(&offset)?;
        match (e.holder, member) {
            (None, _) | (Some(DEAD_LETTERING), _) => return None,
            (Some(h), Some(m)) if h != m => return None,
            _ => {}
        }
        e.error = error.to_string();
        if e.attempts >= policy.max_deliveries {
            e.holder = Some(DEAD_LETTERING);
            return Some(Failure::DeadLetter {
                attempts: e.attempts,
                error: e.error.clone(),
            });
        }
        e.holder = None;
        let delay = delay_ms.unwrap_or_else(|| policy.backoff(e.attempts));
        e.due_ms = now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
        Some(Failure::Retry { due_ms: e.due_ms })
    }

    /// The dead-letter write of `offset` ended: done if it was stored,
    /// otherwise due again at `retry_ms`.
    pub(crate) fn dead_lettered(&mut self, offset: u64, stored: bool, retry_ms: i64) {
        if stored {
            if self.entries.remove(&offset).is_some() {
                self.dead_lettered += 1;
                self.advance_floor();
            }
        } else if let Some(e) = self.entries.get_mut(&offset) {
            e.holder = None;
            e.due_ms = retry_ms;
        }
    }

    /// Offsets held by `member`.
    pub(crate) fn held_by(&self, member: u64) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| e.holder == Some(member))
            .map(|(o, _)| *o)
            .collect()
    }

    /// Offsets whose ack wait ended by `now_ms`.
    pub(crate) fn expired(&self, now_ms: i64) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| {
                e.holder.is_some_and(|h| h != DEAD_LETTERING) && e.deadline_ms <= now_ms
            })
            .map(|(o, _)| *o)
            .collect()
    }

    /// The earliest time something here changes by itself: a retry falls
    /// due or an ack wait ends.
    pub(crate) fn next_wake(&self) -> Option<i64> {
        self.entries
            .values()
            .filter_map(|e| match e.holder {
                None => Some(e.due_ms),
                Some(DEAD_LETTERING) => None,
                Some(_) => Some(e.deadline_ms),
            })
            .min()
    }

    /// Messages out with members (dead-letter writes not counted).
    pub(crate) fn in_flight(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.holder.is_some_and(|h| h != DEAD_LETTERING))
            .count()
    }

    /// Messages from the floor to `end` that are not done.
    pub(crate) fn lag(&self, end: u64) -> u64 {
        let unread = end.saturating_sub(self.cursor);
        let done_unread = self.done_ahead.range(self.cursor..end).count() as u64;
        self.entries.len() as u64 + unread.saturating_sub(done_unread)
    }

    /// Whether read-ahead has room: fewer than `limit` entries held.
    pub(crate) fn wants_more(&self, limit: usize) -> bool {
        self.entries.len() < limit
    }

    /// The events that rebuild this partition's state.
    pub(crate) fn snapshot(&self, partition: u32, out: &mut Vec<Event>) {
        out.push(Event::Position {
            partition,
            offset: self.floor,
        });
        out.push(Event::Counters {
            partition,
            redelivered: self.redelivered,
            dead_lettered: self.dead_lettered,
        });
        let done: Vec<u64> = (self.floor..self.cursor)
            .filter(|o| !self.entries.contains_key(o))
            .chain(self.done_ahead.iter().copied())
            .collect();
        if !done.is_empty() {
            out.push(Event::Acked {
                partition,
                offsets: done,
            });
        }
        let tried = self
            .entries
            .iter()
            .chain(self.known.iter())
            .filter(|(_, e)| e.attempts > 0 || !e.error.is_empty());
        for (offset, e) in tried {
            out.push(Event::Attempts {
                partition,
                offset: *offset,
                attempts: e.attempts,
            });
            if e.due_ms != 0 || !e.error.is_empty() {
                out.push(Event::Failed {
                    partition,
                    offset: *offset,
                    due_ms: e.due_ms,
                    error: e.error.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy<'static> = RetryPolicy {
        max_deliveries: 3,
        backoff_ms: &[100, 500],
    };

    fn filled(n: u64, key: impl Fn(u64) -> Option<Vec<u8>>) -> QueuePartition {
        let mut q = QueuePartition::at(0);
        for o in 0..n {
            q.admit(o, key(o).as_deref());
        }
        q
    }

    #[test]
    fn acks_move_the_floor_over_what_is_done() {
        let mut q = filled(5, |_| None);
        assert_eq!(q.pick(1, 10, 0, 1000, false).len(), 5);
        assert!(q.ack(1));
        assert!(q.ack(2));
        assert_eq!(q.floor, 0);
        assert!(q.ack(0));
        assert_eq!(q.floor, 3);
        assert!(!q.ack(0), "a second ack is a no-op");
        assert_eq!(q.lag(5), 2);
        assert_eq!(q.lag(8), 5);
    }

    #[test]
    fn nacks_follow_the_backoff_and_then_dead_letter() {
        let mut q = filled(1, |_| None);
        assert_eq!(q.pick(1, 1, 0, 1000, false), vec![(0, 1)]);
        assert_eq!(
            q.fail(0, Some(2), 0, None, "x", POLICY),
            None,
            "only the holder nacks"
        );
        assert_eq!(
            q.fail(0, Some(1), 10, None, "boom", POLICY),
            Some(Failure::Retry { due_ms: 110 })
        );
        assert!(q.pick(1, 1, 109, 1000, false).is_empty(), "not due yet");
        assert_eq!(q.pick(2, 1, 110, 1000, false), vec![(0, 2)]);
        assert_eq!(
            q.fail(0, None, 200, None, "ack wait", POLICY),
            Some(Failure::Retry { due_ms: 700 })
        );
        assert_eq!(q.pick(1, 1, 700, 1000, false), vec![(0, 3)]);
        assert_eq!(
            q.fail(0, Some(1), 800, Some(5), "boom", POLICY),
            Some(Failure::DeadLetter {
                attempts: 3,
                error: "boom".into()
            })
        );
        assert!(
            q.pick(1, 1, 10_000, 1000, false).is_empty(),
            "held while dead-lettering"
        );
        q.dead_lettered(0, true, 0);
        assert_eq!((q.floor, q.dead_lettered, q.redelivered), (1, 1, 2));
    }

    #[test]
    fn ordered_picks_hold_back_later_messages_of_a_busy_key() {
        let mut q = filled(6, |o| Some(vec![(o % 2) as u8]));
        assert_eq!(q.pick(1, 10, 0, 1000, true), vec![(0, 1), (1, 1)]);
        assert!(q.pick(2, 10, 0, 1000, true).is_empty());
        assert!(q.ack(0));
        assert_eq!(q.pick(2, 10, 0, 1000, true), vec![(2, 1)]);
        // A failed message keeps its key blocked until it is done.
        q.fail(1, Some(1), 0, Some(50), "x", POLICY);
        assert!(q.pick(2, 10, 10, 1000, true).is_empty());
        assert_eq!(q.pick(2, 10, 50, 1000, true), vec![(1, 2)]);
        // Unkeyed messages are never held back.
        let mut q = filled(3, |_| None);
        assert_eq!(q.pick(1, 10, 0, 1000, true).len(), 3);
    }

    #[test]
    fn ack_waits_expire_and_members_release() {
        let mut q = filled(3, |_| None);
        q.pick(1, 2, 0, 100, false);
        q.pick(2, 1, 50, 100, false);
        assert_eq!(q.expired(100), vec![0, 1]);
        assert_eq!(q.held_by(2), vec![2]);
        assert_eq!(q.next_wake(), Some(100));
        assert_eq!(q.in_flight(), 3);
    }

    #[test]
    fn a_snapshot_replays_to_the_same_state() {
        let mut q = filled(6, |_| None);
        q.pick(1, 4, 0, 100, false);
        q.ack(0);
        q.ack(2);
        q.fail(3, Some(1), 0, Some(1000), "bad", POLICY);
        let mut events = Vec::new();
        q.snapshot(0, &mut events);
        let mut back = QueuePartition::default();
        for e in &events {
            back.replay(e);
        }
        for o in 0..6 {
            back.admit(o, None);
        }
        assert_eq!(back.floor, 1);
        assert_eq!(
            back.entries.keys().copied().collect::<Vec<_>>(),
            vec![1, 3, 4, 5]
        );
        assert_eq!(back.entries[&3].attempts, 1);
        assert_eq!(back.entries[&3].due_ms, 1000);
        assert_eq!(back.entries[&3].error, "bad");
        assert_eq!(back.entries[&1].attempts, 1);
        assert_eq!(back.entries[&4].attempts, 0);
    }

    #[test]
    fn retention_drops_what_it_deleted() {
        let mut q = filled(4, |_| None);
        q.ack(3);
        assert_eq!(q.truncated(2), 2);
        assert_eq!(q.floor, 2);
        assert_eq!(q.lag(4), 1);
    }
}
