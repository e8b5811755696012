//! What a member owes the node, coalesced into as few frames as order
//! allows: acks and commits wait a little (up to a delay or a count) so
//! that many go in one frame, while a nack, or an item of another kind or
//! generation, first sends what is pending. No I/O and no clock of its own:
//! every decision takes `now`. It must never reorder items nor hold one
//! longer than the configured delay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_proto::frame::Frame;

/// One thing the member tells the node about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Queue mode: this message is done.
    Ack {
        generation: u64,
        partition: u32,
        offset: u64,
    },
    /// Queue mode: this message failed.
    Nack {
        generation: u64,
        partition: u32,
        offset: u64,
        delay_ms: Option<u64>,
        error: String,
    },
    /// Stream mode: `offset` is the next to consume on `partition`.
    Commit {
        generation: u64,
        partition: u32,
        offset: u64,
    },
}

/// How long and how much the outbox may hold before it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutboxLimits {
    /// Longest an item waits for company.
    pub(crate) max_delay: Duration,
    /// Acks at which the pending ack frame goes at once.
    pub(crate) ack_batch: usize,
    /// Commits (messages committed, not partitions) at which the pending
    /// commit frame goes at once.
    pub(crate) commit_batch: usize,
}

/// At most one commit frame per 200 ms or per 1000 messages.
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(200);
/// See [`FLUSH_DELAY`].
pub(crate) const FLUSH_ITEMS: usize = 1000;
/// The prefetch a node uses when a member asks for 0.
const NODE_DEFAULT_PREFETCH: u32 = 1000;

impl OutboxLimits {
    /// Limits for a member with this prefetch: acks go at the latest when
    /// half the prefetch is waiting for them, so that a small prefetch is
    /// never starved by acks held back for company.
    pub(crate) fn for_prefetch(prefetch: u32) -> OutboxLimits {
        let prefetch = if prefetch == 0 {
            NODE_DEFAULT_PREFETCH
        } else {
            prefetch
        };
        OutboxLimits {
            max_delay: FLUSH_DELAY,
            ack_batch: (prefetch as usize / 2).clamp(1, FLUSH_ITEMS),
            commit_batch: FLUSH_ITEMS,
        }
    }
}

#[derive(Debug)]
enum Pending {
    Acks {
        generation: u64,
        messages: Vec<(u32, u64)>,
    },
    Commits {
        generation: u64,
        offsets: BTreeMap<u32, u64>,
    },
}

/// Acks and commits waiting to be sent.
#[derive(Debug)]
pub(crate) struct Outbox {
    limits: OutboxLimits,
    pending: Option<Pending>,
    /// When the oldest pending item arrived.
    since: Option<Instant>,
    /// Items coalesced into `pending`.
    items: usize,
}

impl Outbox {
    pub(crate) fn new(limits: OutboxLimits) -> Outbox {
        Outbox {
            limits,
            pending: None,
            since: None,
            items: 0,
        }
    }

    /// Takes an item; returns the frames to send now, in order (none while
    /// the item waits for company).
    pub(crate) fn push(&mut self, item: Settle, now: Instant) -> Vec<Frame> {
        let mut out = Vec::new();
        match item {
            Settle::Nack {
                generation,
                partition,
                offset,
                delay_ms,
                error,
            } => {
                out.extend(self.flush());
                out.push(Frame::Nack {
                    generation,
                    partition,
                    offset,
                    delay_ms,
                    error,
                });
                return out;
            }
            Settle::Ack {
                generation,
                partition,
                offset,
            } => {
                let joins = matches!(&self.pending,
                    Some(Pending::Acks { generation: g, .. }) if *g == generation);
                if !joins {
                    out.extend(self.flush());
                    self.pending = Some(Pending::Acks {
                        generation,
                        messages: Vec::new(),
                    });
                }
                if let Some(Pending::Acks { messages, .. }) = &mut self.pending {
                    messages.push((partition, offset));
                }
            }
            Settle::Commit {
                generation,
                partition,
                offset,
            } => {
                let joins = matches!(&self.pending,
                    Some(Pending::Commits { generation: g, .. }) if *g == generation);
                if !joins {
                    out.extend(self.flush());
                    self.pending = Some(Pending::Commits {
                        generation,
                        offsets: BTreeMap::new(),
                    });
                }
                if let Some(Pending::Commits { offsets, .. }) = &mut self.pending {
                    // Within a generation a partition's offsets only move
                    // forward; an earlier commit arriving late must not
                    // take the group back.
                    let at = offsets.entry(partition).or_insert(offset);
                    *at = (*at).max(offset);
                }
            }
        }
        self.items += 1;
        self.since.get_or_insert(now);
        let batch = match &self.pending {
            Some(Pending::Acks { .. }) => self.limits.ack_batch,
            _ => self.limits.commit_batch,
        };
        if self.items >= batch {
            out.extend(self.flush());
        }
        out
    }

    /// When the pending frame must be sent, if anything is pending.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + self.limits.max_delay)
    }

    /// The pending frame, if its deadline has come.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Frame> {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.flush(),
            _ => None,
        }
    }

    /// The pending frame, now.
    pub(crate) fn flush(&mut self) -> Option<Frame> {
        self.since = None;
        self.items = 0;
        match self.pending.take()? {
            Pending::Acks {
                generation,
                messages,
            } => Some(Frame::Ack {
                generation,
                messages,
            }),
            Pending::Commits {
                generation,
                offsets,
            } => Some(Frame::Commit {
                generation,
                offsets: offsets.into_iter().collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(generation: u64, partition: u32, offset: u64) -> Settle {
        Settle::Ack {
            generation,
            partition,
            offset,
        }
    }

    fn commit(generation: u64, partition: u32, offset: u64) -> Settle {
        Settle::Commit {
            generation,
            partition,
            offset,
        }
    }

    fn limits() -> OutboxLimits {
        OutboxLimits {
            max_delay: Duration::from_millis(200),
            ack_batch: 3,
            commit_batch: 1000,
        }
    }

    #[test]
    fn commits_coalesce_until_the_delay() {
        let t0 = Instant::now();
        let mut o = Outbox::new(limits());
        for i in 0..10 {
            assert!(o.push(commit(4, i % 2, 100 + u64::from(i)), t0).is_empty());
        }
        assert_eq!(o.deadline(), Some(t0 + Duration::from_millis(200)));
        assert_eq!(o.due(t0 + Duration::from_millis(199)), None);
        assert_eq!(
            o.due(t0 + Duration::from_millis(200)),
            Some(Frame::Commit {
                generation: 4,
                offsets: vec![(0, 108), (1, 109)],
            })
        );
        assert_eq!(o.deadline(), None);
        assert_eq!(o.flush(), None);
    }

    #[test]
    fn the_delay_counts_from_the_oldest_item() {
        let t0 = Instant::now();
        let mut o = Outbox::new(limits());
        o.push(commit(1, 0, 1), t0);
        o.push(commit(1, 0, 2), t0 + Duration::from_millis(150));
        assert!(o.due(t0 + Duration::from_millis(200)).is_some());
        o.push(commit(1, 0, 3), t0 + Duration::from_millis(250));
        assert_eq!(o.deadline(), Some(t0 + Duration::from_millis(450)));
    }

    #[test]
    fn a_thousand_commits_go_at_once() {
        let t0 = Instant::now();
        let mut o = Outbox::new(OutboxLimits::for_prefetch(0));
        for i in 0..999 {
            assert!(o.push(commit(1, 0, i + 1), t0).is_empty());
        }
        let sent = o.push(commit(1, 0, 1000), t0);
        assert_eq!(
            sent,
            vec![Frame::Commit {
                generation: 1,
                offsets: vec![(0, 1000)],
            }]
        );
        assert_eq!(o.deadline(), None);
    }

    #[test]
    fn a_late_lower_commit_does_not_go_back() {
        let t0 = Instant::now();
        let mut o = Outbox::new(limits());
        o.push(commit(1, 0, 10), t0);
        o.push(commit(1, 0, 7), t0);
        assert_eq!(
            o.flush(),
            Some(Frame::Commit {
                generation: 1,
                offsets: vec![(0, 10)],
            })
        );
    }

    #[test]
    fn a_new_generation_sends_the_old_one_first() {
        let t0 = Instant::now();
        let mut o = Outbox::new(limits());
        o.push(commit(1, 0, 10), t0);
        let sent = o.push(commit(2, 0, 4), t0);
        assert_eq!(
            sent,
            vec![Frame::Commit {
                generation: 1,
                offsets: vec![(0, 10)],
            }]
        );
        assert_eq!(
            o.flush(),
            Some(Frame::Commit {
                generation: 2,
                offsets: vec![(0, 4)],
            })
        );
    }

    #[test]
    fn acks_go_by_batch_and_a_nack_keeps_its_place() {
        let t0 = Instant::now();
        let mut o = Outbox::new(limits());
        assert!(o.push(ack(1, 0, 5), t0).is_empty());
        assert!(o.push(ack(1, 1, 9), t0).is_empty());
        let sent = o.push(ack(1, 0, 6), t0);
        assert_eq!(
            sent,
            vec![Frame::Ack {
                generation: 1,
                messages: vec![(0, 5), (1, 9), (0, 6)],
            }]
        );
        o.push(ack(1, 0, 7), t0);
        let sent = o.push(
            Settle::Nack {
                generation: 1,
                partition: 0,
                offset: 8,
                delay_ms: Some(50),
                error: "bad".into(),
            },
            t0,
        );
        assert_eq!(
            sent,
            vec![
                Frame::Ack {
                    generation: 1,
                    messages: vec![(0, 7)],
                },
                Frame::Nack {
                    generation: 1,
                    partition: 0,
                    offset: 8,
                    delay_ms: Some(50),
                    error: "bad".into(),
                },
            ]
        );
        assert_eq!(o.deadline(), None, "nothing left pending");
        o.push(ack(1, 0, 9), t0);
        let sent = o.push(ack(2, 0, 9), t0);
        assert_eq!(
            sent,
            vec![Frame::Ack {
                generation: 1,
                messages: vec![(0, 9)],
            }],
            "acks of two generations never share a frame"
        );
    }

    #[test]
    fn ack_batches_follow_the_prefetch() {
        assert_eq!(OutboxLimits::for_prefetch(1).ack_batch, 1);
        assert_eq!(OutboxLimits::for_prefetch(3).ack_batch, 1);
        assert_eq!(OutboxLimits::for_prefetch(10).ack_batch, 5);
        assert_eq!(OutboxLimits::for_prefetch(0).ack_batch, 500);
        assert_eq!(OutboxLimits::for_prefetch(100_000).ack_batch, 1000);
        let mut o = Outbox::new(OutboxLimits::for_prefetch(1));
        assert_eq!(o.push(ack(3, 0, 1), Instant::now()).len(), 1);
    }
}
