//! What a member holds: the latest `assignment`, where each stream-mode
//! partition's delivery stands, and so which delivered but not yet handed
//! out messages are still the member's to hand out. Also the choice of the
//! records a `queue-delivery` names among the batches it carries. No I/O;
//! it must never let a message of a partition taken away (or restarted
//! elsewhere) reach the application.

use std::collections::{HashMap, HashSet};

use weir_proto::frame::{GroupMode, MAX_PARTITIONS};

use crate::ConsumedMessage;

/// A stream-mode partition's current run of deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// The generation the run began in: messages delivered before it
    /// belong to an earlier run, which the node has since restarted or
    /// given away.
    since: u64,
    /// The offset expected next.
    expected: u64,
}

/// The member's view of its assignment.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    mode: GroupMode,
    generation: u64,
    /// As the node listed them last.
    listed: Vec<(u32, u64)>,
    /// Stream mode: the assigned partitions.
    runs: HashMap<u32, Run>,
}

impl Assignment {
    /// The first assignment after a join.
    pub(crate) fn new(
        generation: u64,
        mode: GroupMode,
        partitions: Vec<(u32, u64)>,
    ) -> Result<Assignment, String> {
        let mut a = Assignment {
            mode,
            generation,
            listed: Vec::new(),
            runs: HashMap::new(),
        };
        a.apply(generation, mode, partitions)?;
        Ok(a)
    }

    pub(crate) fn mode(&self) -> GroupMode {
        self.mode
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The partitions and offsets of the latest assignment.
    pub(crate) fn listed(&self) -> &[(u32, u64)] {
        &self.listed
    }

    /// A new `assignment`. In stream mode a partition kept where its
    /// delivery stands keeps its run (its buffered messages stay good); one
    /// that is new, or listed at another offset (a seek), starts a new run;
    /// one not listed is gone. In queue mode a new generation makes every
    /// buffered message stale, since the node ignores its ack.
    pub(crate) fn apply(
        &mut self,
        generation: u64,
        mode: GroupMode,
        partitions: Vec<(u32, u64)>,
    ) -> Result<(), String> {
        if mode != self.mode {
            return Err(format!(
                "assignment says the group is in {} mode, it was in {} mode",
                mode.name(),
                self.mode.name()
            ));
        }
        if generation < self.generation {
            return Err(format!(
                "assignment of generation {generation} after generation {}",
                self.generation
            ));
        }
        let mut seen = HashSet::with_capacity(partitions.len());
        for (p, _) in &partitions {
            if *p >= MAX_PARTITIONS {
                return Err(format!(
                    "assignment lists partition {p}, beyond the {MAX_PARTITIONS}-partition limit"
                ));
            }
            if !seen.insert(*p) {
                return Err(format!("assignment lists partition {p} twice"));
            }
        }
        if mode == GroupMode::Stream {
            let mut runs = HashMap::with_capacity(partitions.len());
            for (p, offset) in &partitions {
                let run = match self.runs.get(p) {
                    Some(run) if run.expected == *offset => *run,
                    _ => Run {
                        since: generation,
                        expected: *offset,
                    },
                };
                runs.insert(*p, run);
            }
            self.runs = runs;
        }
        self.generation = generation;
        self.listed = partitions;
        Ok(())
    }

    /// Stream mode: the offset expected next on `partition`, if assigned.
    pub(crate) fn expected(&self, partition: u32) -> Option<u64> {
        self.runs.get(&partition).map(|r| r.expected)
    }

    /// Stream mode: a delivery of `partition` ended before `next`.
    pub(crate) fn advance(&mut self, partition: u32, next: u64) {
        if let Some(run) = self.runs.get_mut(&partition) {
            run.expected = run.expected.max(next);
        }
    }

    /// Queue mode: a `queue-delivery` of `generation` arrived. A node that
    /// moved the generation on (a seek) without an assignment has still
    /// made everything delivered before stale.
    pub(crate) fn on_queue_delivery(&mut self, generation: u64) {
        self.generation = self.generation.max(generation);
    }

    /// Whether a message of `partition` delivered under `generation` may
    /// still be handed to the application.
    pub(crate) fn is_current(&self, partition: u32, generation: u64) -> bool {
        match self.mode {
            GroupMode::Stream => self
                .runs
                .get(&partition)
                .is_some_and(|run| run.since <= generation),
            GroupMode::Queue => generation == self.generation,
        }
    }
}

/// The messages a `queue-delivery` names, each with its attempt, in the
/// order of the batches; `messages` are every record of its batches from
/// the lowest named offset on. Fails if a named offset is missing, named
/// twice, or has attempt 0.
pub(crate) fn pick_listed(
    partition: u32,
    messages: Vec<ConsumedMessage>,
    listed: &[(u64, u32)],
) -> Result<Vec<(ConsumedMessage, u32)>, String> {
    let mut wanted: HashMap<u64, u32> = HashMap::with_capacity(listed.len());
    for (offset, attempt) in listed {
        if *attempt == 0 {
            return Err(format!(
                "queue-delivery gives offset {offset} of partition {partition} attempt 0 (attempts count from 1)"
            ));
        }
        if wanted.insert(*offset, *attempt).is_some() {
            return Err(format!(
                "queue-delivery lists offset {offset} of partition {partition} twice"
            ));
        }
    }
    let mut picked = Vec::with_capacity(listed.len());
    for m in messages {
        if let Some(attempt) = wanted.remove(&m.offset) {
            picked.push((m, attempt));
        }
    }
    if !wanted.is_empty() {
        let mut missing: Vec<u64> = wanted.into_keys().collect();
        missing.sort_unstable();
        missing.truncate(10);
        return Err(format!(
            "queue-delivery lists offsets of partition {partition} that its batches do not hold: {missing:?}"
        ));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(offset: u64) -> ConsumedMessage {
        ConsumedMessage {
            topic: "t".into(),
            partition: 2,
            offset,
            timestamp_ms: 0,
            key: None,
            id: None,
            headers: Vec::new(),
            payload: Bytes::from(offset.to_string()),
        }
    }

    #[test]
    fn queue_delivery_hands_out_only_the_listed_offsets() {
        let batch: Vec<ConsumedMessage> = (10..20).map(message).collect();
        let picked = pick_listed(2, batch, &[(17, 3), (11, 1), (12, 1)]).expect("all present");
        let got: Vec<(u64, u32)> = picked.iter().map(|(m, a)| (m.offset, *a)).collect();
        assert_eq!(got, vec![(11, 1), (12, 1), (17, 3)], "in batch order");
        assert_eq!(&picked[2].0.payload[..], b"17");
    }

    #[test]
    fn queue_delivery_must_hold_what_it_lists() {
        let batch: Vec<ConsumedMessage> = (10..13).map(message).collect();
        let err = pick_listed(2, batch.clone(), &[(11, 1), (30, 1)]).expect_err("30 missing");
        assert!(err.contains("[30]"), "{err}");
        let err = pick_listed(2, batch.clone(), &[(11, 1), (11, 2)]).expect_err("twice");
        assert!(err.contains("twice"), "{err}");
        let err = pick_listed(2, batch.clone(), &[(11, 0)]).expect_err("attempt 0");
        assert!(err.contains("attempt 0"), "{err}");
        assert!(pick_listed(2, batch, &[]).expect("empty").is_empty());
    }

    #[test]
    fn stream_mode_keeps_kept_partitions_and_drops_the_rest() {
        let mut a = Assignment::new(1, GroupMode::Stream, vec![(0, 0), (1, 50)]).expect("first");
        a.advance(0, 10);
        a.advance(1, 60);
        assert!(a.is_current(0, 1) && a.is_current(1, 1));
        // Partition 0 is kept where it stands, 1 goes away, 2 arrives.
        a.apply(2, GroupMode::Stream, vec![(0, 10), (2, 7)])
            .expect("second");
        assert!(a.is_current(0, 1), "buffered messages of a kept partition");
        assert!(!a.is_current(1, 1), "partition 1 is another member's now");
        assert!(a.is_current(2, 2));
        assert_eq!(a.expected(0), Some(10));
        assert_eq!(a.expected(2), Some(7));
        assert_eq!(a.expected(1), None);
        assert_eq!(a.listed(), &[(0, 10), (2, 7)]);
        assert_eq!(a.generation(), 2);
    }

    #[test]
    fn stream_mode_restarts_a_partition_moved_by_a_seek_or_given_back() {
        let mut a = Assignment::new(1, GroupMode::Stream, vec![(0, 0), (1, 0)]).expect("first");
        a.advance(0, 10);
        a.apply(2, GroupMode::Stream, vec![(0, 3), (1, 0)])
            .expect("seek");
        assert!(!a.is_current(0, 1), "delivered before the seek");
        assert!(a.is_current(0, 2));
        assert!(a.is_current(1, 1), "partition 1 untouched");
        assert_eq!(a.expected(0), Some(3));
        // Taken away and given back: the old run is over even at the same offset.
        a.apply(3, GroupMode::Stream, vec![(0, 3)]).expect("away");
        a.apply(4, GroupMode::Stream, vec![(0, 3), (1, 0)])
            .expect("back");
        assert!(!a.is_current(1, 1) && !a.is_current(1, 3));
        assert!(a.is_current(1, 4));
    }

    #[test]
    fn queue_mode_drops_what_an_older_generation_delivered() {
        let mut a = Assignment::new(5, GroupMode::Queue, vec![(0, 0), (1, 0)]).expect("first");
        assert!(a.is_current(1, 5));
        a.on_queue_delivery(6);
        assert!(!a.is_current(1, 5));
        assert!(a.is_current(0, 6));
        a.on_queue_delivery(5);
        assert_eq!(a.generation(), 6, "never goes back");
    }

    #[test]
    fn refuses_inconsistent_assignments() {
        assert!(Assignment::new(1, GroupMode::Stream, vec![(0, 0), (0, 1)]).is_err());
        assert!(Assignment::new(1, GroupMode::Stream, vec![(5000, 0)]).is_err());
        let mut a = Assignment::new(3, GroupMode::Stream, vec![]).expect("empty is fine");
        assert!(a.apply(2, GroupMode::Stream, vec![]).is_err(), "older");
        assert!(a.apply(4, GroupMode::Queue, vec![]).is_err(), "mode");
    }
}
