//! The producer's batching decisions, with no I/O and no clock of its own:
//! records go into an open batch until it reaches its byte or record bound
//! or has lingered long enough, then it is sealed and waits to be sent.
//! This module never sends, sleeps or reads the time; callers pass `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_proto::{BatchBuilder, BatchError, NewRecord};

/// When a batch is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    /// Longest an open batch waits for more records.
    pub(crate) linger: Duration,
    /// Encoded size at which a batch is sealed (a single larger record is
    /// still sent, alone, up to the protocol's limit).
    pub(crate) max_bytes: usize,
    /// Records at which a batch is sealed.
    pub(crate) max_records: u32,
}

/// An encoded batch ready to send, with one waiter per record in order.
#[derive(Debug)]
pub(crate) struct Sealed<T> {
    pub(crate) batch: Bytes,
    pub(crate) waiters: Vec<T>,
}

#[derive(Debug)]
struct Open<T> {
    builder: BatchBuilder,
    waiters: Vec<T>,
    opened_at: Instant,
}

/// Buffers of answered batches kept for new ones.
const SPARE_BUFFERS: usize = 8;
/// Most bytes of batches kept that way (by their encoded length; a buffer
/// may hold up to twice that).
const SPARE_BYTES: usize = 8 * 1024 * 1024;

/// Collects records into batches.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    limits: BatchLimits,
    open: Option<Open<T>>,
    sealed: VecDeque<Sealed<T>>,
    /// Answered batches' bytes handed back by [`Accumulator::recycle`],
    /// to be encoded into again once nothing else holds them (the
    /// transport may keep a sent chunk until the peer acknowledges it,
    /// which can come after the node's answer).
    spare: VecDeque<Bytes>,
}

impl<T> Accumulator<T> {
    pub(crate) fn new(limits: BatchLimits) -> Accumulator<T> {
        Accumulator {
            limits,
            open: None,
            sealed: VecDeque::new(),
            spare: VecDeque::new(),
        }
    }

    /// Takes back a sent batch's bytes once nothing else holds them, to
    /// encode a later batch into.
    pub(crate) fn recycle(&mut self, batch: Bytes) {
        // The oldest are the likeliest to be free already: keep them.
        let kept: usize = self.spare.iter().map(Bytes::len).sum();
        if self.spare.len() < SPARE_BUFFERS && kept + batch.len() <= SPARE_BYTES {
            self.spare.push_back(batch);
        }
    }

    /// A spare buffer nothing else holds any more, oldest first.
    fn take_spare(&mut self) -> Option<Vec<u8>> {
        for _ in 0..self.spare.len() {
            let bytes = self.spare.pop_front()?;
            match bytes.try_into_mut() {
                Ok(buf) => return Some(buf.into()),
                Err(held) => self.spare.push_back(held),
            }
        }
        None
    }

    /// Adds a record. A record that cannot be encoded at all (it breaks a
    /// limit of the batch format) is refused and its waiter handed back.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        record: &NewRecord<'_>,
        waiter: T,
    ) -> Result<(), (T, BatchError)> {
        if let Some(open) = &self.open {
            let full = match open.builder.record_len(record) {
                Ok(add) => {
                    open.builder.encoded_len() + add > self.limits.max_bytes
                        || open.builder.len() >= self.limits.max_records
                }
                // The record itself may be fine but not beside this batch's
                // first timestamp: let a fresh batch decide.
                Err(_) => true,
            };
            if full {
                self.seal();
            }
        }
        let limits = self.limits;
        let spare = if self.open.is_none() {
            self.take_spare()
        } else {
            None
        };
        let open = self.open.get_or_insert_with(|| Open {
            builder: match spare {
                Some(buf) => BatchBuilder::reusing(buf),
                None => BatchBuilder::with_capacity(limits.max_bytes.min(64 * 1024)),
            },
            waiters: Vec::with_capacity(limits.max_records.min(1024) as usize),
            opened_at: now,
        });
        if let Err(err) = open.builder.push(record) {
            if open.builder.is_empty() {
                self.open = None;
            }
            return Err((waiter, err));
        }
        open.waiters.push(waiter);
        if open.builder.encoded_len() >= limits.max_bytes
            || open.builder.len() >= limits.max_records
        {
            self.seal();
        }
        Ok(())
    }

    /// Seals the open batch now, if there is one (a flush).
    pub(crate) fn seal(&mut self) {
        if let Some(open) = self.open.take() {
            match open.builder.finish() {
                Ok(batch) => self.sealed.push_back(Sealed {
                    batch: Bytes::from(batch),
                    waiters: open.waiters,
                }),
                // An open batch always holds a record, so this cannot happen;
                // if it did, the waiters are dropped and see `Closed`.
                Err(err) => tracing::error!(%err, "sealing a producer batch failed"),
            }
        }
    }

    /// The next batch to send, sealing the open one if it has lingered
    /// until `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Sealed<T>> {
        if self.sealed.is_empty() && self.deadline().is_some_and(|d| now >= d) {
            self.seal();
        }
        self.sealed.pop_front()
    }

    /// Whether a sealed batch waits to be sent.
    pub(crate) fn has_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// When the open batch's linger ends.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.opened_at + self.limits.linger)
    }

    /// Whether nothing is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(linger_ms: u64, max_bytes: usize, max_records: u32) -> BatchLimits {
        BatchLimits {
            linger: Duration::from_millis(linger_ms),
            max_bytes,
            max_records,
        }
    }

    fn record(payload: &[u8]) -> NewRecord<'_> {
        NewRecord {
            timestamp_ms: 1_700_000_000_000,
            payload,
            ..NewRecord::default()
        }
    }

    fn records_of(sealed: &Sealed<u32>) -> u32 {
        weir_proto::BatchView::parse(&sealed.batch)
            .expect("valid batch")
            .header()
            .record_count
    }

    #[test]
    fn an_answered_batch_buffer_is_encoded_into_again() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(10, 1 << 20, 2));
        acc.push(t0, &record(&[7u8; 5000]), 1).expect("push");
        acc.push(t0, &record(&[7u8; 5000]), 2).expect("push");
        let first = acc.poll(t0).expect("sealed at two records");
        let ptr = first.batch.as_ptr();
        // A clone still held elsewhere (a transport's send buffer) keeps
        // the buffer from being taken.
        let held = first.batch.clone();
        acc.recycle(first.batch);
        acc.push(t0, &record(b"b"), 3).expect("push");
        acc.seal();
        let second = acc.poll(t0).expect("sealed");
        assert_ne!(second.batch.as_ptr(), ptr);
        assert_eq!(records_of(&second), 1);
        // Once the transport lets go of it, the buffer is used again.
        drop(held);
        acc.push(t0, &record(b"c"), 4).expect("push");
        acc.push(t0, &record(b"d"), 5).expect("push");
        let third = acc.poll(t0).expect("sealed at two records");
        assert_eq!(third.batch.as_ptr(), ptr);
        assert_eq!(records_of(&third), 2);
        assert_eq!(third.waiters, vec![4, 5]);
    }

    #[test]
    fn lingers_then_seals() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(10, 1 << 20, 100));
        acc.push(t0, &record(b"a"), 1).expect("push");
        acc.push(t0 + Duration::from_millis(3), &record(b"b"), 2)
            .expect("push");
        assert!(acc.poll(t0 + Duration::from_millis(9)).is_none());
        assert_eq!(acc.deadline(), Some(t0 + Duration::from_millis(10)));
        let sealed = acc
            .poll(t0 + Duration::from_millis(10))
            .expect("sealed at linger");
        assert_eq!(sealed.waiters, vec![1, 2]);
        assert_eq!(records_of(&sealed), 2);
        assert!(acc.is_empty());
        assert_eq!(acc.deadline(), None);
    }

    #[test]
    fn zero_linger_sends_at_once() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(0, 1 << 20, 100));
        acc.push(t0, &record(b"a"), 1).expect("push");
        assert_eq!(acc.poll(t0).expect("sealed").waiters, vec![1]);
    }

    #[test]
    fn seals_at_record_count() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(1000, 1 << 20, 3));
        for i in 0..7 {
            acc.push(t0, &record(b"x"), i).expect("push");
        }
        assert!(acc.has_sealed());
        assert_eq!(acc.poll(t0).expect("first").waiters, vec![0, 1, 2]);
        assert_eq!(acc.poll(t0).expect("second").waiters, vec![3, 4, 5]);
        assert!(acc.poll(t0).is_none(), "the seventh lingers");
        acc.seal();
        assert_eq!(acc.poll(t0).expect("flushed").waiters, vec![6]);
    }

    #[test]
    fn seals_before_exceeding_bytes() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(1000, 300, 1000));
        let payload = [7u8; 100];
        for i in 0..5 {
            acc.push(t0, &record(&payload), i).expect("push");
        }
        acc.seal();
        let mut total = 0;
        while let Some(sealed) = acc.poll(t0) {
            assert!(
                sealed.batch.len() <= 300,
                "batch of {} bytes",
                sealed.batch.len()
            );
            total += records_of(&sealed);
        }
        assert_eq!(total, 5);
    }

    #[test]
    fn oversized_record_goes_alone() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(1000, 100, 1000));
        acc.push(t0, &record(b"small"), 1).expect("push");
        acc.push(t0, &record(&[1u8; 500]), 2)
            .expect("big record is allowed alone");
        assert_eq!(acc.poll(t0).expect("small").waiters, vec![1]);
        let big = acc.poll(t0).expect("big");
        assert_eq!(big.waiters, vec![2]);
        assert!(big.batch.len() > 500);
        assert!(acc.is_empty());
    }

    #[test]
    fn refuses_a_record_breaking_a_format_limit() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(limits(1000, 1 << 20, 1000));
        let long_id = [b'i'; weir_proto::limits::MAX_ID_BYTES + 1];
        let bad = NewRecord {
            id: Some(&long_id),
            ..record(b"p")
        };
        let (waiter, err) = acc.push(t0, &bad, 9).expect_err("id too long");
        assert_eq!(waiter, 9);
        assert!(err.to_string().contains("message id"), "{err}");
        assert!(acc.is_empty());
        acc.push(t0, &record(b"ok"), 1).expect("still usable");
        assert!(!acc.is_empty());
    }
}
