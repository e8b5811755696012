//! Per-attachment counters, updated lock-free from the batch path and read
//! as a snapshot by whoever reports metrics. Must never block a batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    messages: AtomicU64,
    passes: AtomicU64,
    patches: AtomicU64,
    drops: AtomicU64,
    rejects: AtomicU64,
    errors: AtomicU64,
    instances: AtomicU64,
    busy_ns: AtomicU64,
}

/// What one attachment has done since it was created (kept across plugin
/// version swaps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Batches given to the plugin.
    pub batches: u64,
    /// Messages given to the plugin.
    pub messages: u64,
    /// Pass verdicts.
    pub passes: u64,
    /// Patch verdicts.
    pub patches: u64,
    /// Drop verdicts.
    pub drops: u64,
    /// Reject verdicts.
    pub rejects: u64,
    /// Failed batches (trap, timeout, limit, guest error, invalid output).
    pub errors: u64,
    /// Instances created (1 + one per discarded instance that was replaced).
    pub instances: u64,
    /// Wall time spent in the plugin, in nanoseconds.
    pub busy_ns: u64,
}

/// Verdicts of one batch, added to the counters in one go.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) passes: u64,
    pub(crate) patches: u64,
    pub(crate) drops: u64,
    pub(crate) rejects: u64,
}

impl Counters {
    pub(crate) fn batch(&self, messages: usize, busy: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        let ns = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn verdicts(&self, tally: &Tally) {
        self.passes.fetch_add(tally.passes, Ordering::Relaxed);
        self.patches.fetch_add(tally.patches, Ordering::Relaxed);
        self.drops.fetch_add(tally.drops, Ordering::Relaxed);
        self.rejects.fetch_add(tally.rejects, Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn instance(&self) {
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            passes: self.passes.load(Ordering::Relaxed),
            patches: self.patches.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            rejects: self.rejects.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            instances: self.instances.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
        }
    }
}
