//! Consumer groups: a group's members, and its durable progress on each
//! topic it consumes.
//!
//! A [`GroupTopic`] is one group on one topic. In stream mode it holds the
//! committed offset per partition and which member each partition is
//! assigned to; in queue mode a [`QueuePartition`] per partition (what is
//! out, with whom, how often, when due again). Every change goes to the
//! group-topic's [`Journal`] before the answer that depends on it, under
//! the same lock, and wakes the member tasks through a watch channel. The
//! member tasks (`server::group`) do the I/O on the network and read the
//! logs; the dead-letter writes are in [`dead_letter`].

pub(crate) mod journal;
pub(crate) mod queue;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use weir_proto::frame::{
    GroupInfo, GroupMode, GroupOptions, GroupPartitionInfo, GroupTopicInfo, MemberInfo, StartAt,
};
use weir_proto::{BatchBuilder, BatchView, NewRecord};

use crate::NodeError;
use crate::meta::GroupMeta;
use crate::topic::{Partition, Topic};
use journal::{Event, Journal};
use queue::{Failure, QueuePartition, RetryPolicy};

/// Default ack wait.
pub(crate) const DEFAULT_ACK_WAIT_MS: u64 = 30_000;
/// Default deliveries before a message is dead-lettered.
pub(crate) const DEFAULT_MAX_DELIVERIES: u32 = 16;
/// Default redelivery schedule (RocketMQ's levels): 1s 5s 10s 30s 1m 2m
/// 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h.
pub(crate) const DEFAULT_BACKOFF_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];
/// Default prefetch of a queue-mode member.
pub(crate) const DEFAULT_PREFETCH: u32 = 1000;
/// Longest ack wait or backoff step accepted (a day).
const MAX_WAIT_MS: u64 = 86_400_000;
/// Messages read ahead per partition in queue mode.
pub(crate) const READ_AHEAD: usize = 8192;
/// Suffix of a group's dead-letter topic.
pub(crate) const GROUP_DLQ_SUFFIX: &str = ".dlq";

/// A group's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSettings {
    pub(crate) mode: GroupMode,
    pub(crate) ack_wait_ms: u64,
    pub(crate) max_deliveries: u32,
    pub(crate) backoff_ms: Vec<u64>,
    pub(crate) ordered: bool,
}

impl GroupSettings {
    /// A new group's settings: the options given, defaults for the rest.
    pub(crate) fn new(options: &GroupOptions) -> Result<GroupSettings, NodeError> {
        let s = GroupSettings {
            mode: options.mode.unwrap_or(GroupMode::Stream),
            ack_wait_ms: options.ack_wait_ms.unwrap_or(DEFAULT_ACK_WAIT_MS),
            max_deliveries: options.max_deliveries.unwrap_or(DEFAULT_MAX_DELIVERIES),
            backoff_ms: options
                .backoff_ms
                .clone()
                .unwrap_or_else(|| DEFAULT_BACKOFF_MS.to_vec()),
            ordered: options.ordered.unwrap_or(false),
        };
        if !(1..=MAX_WAIT_MS).contains(&s.ack_wait_ms) {
            return Err(NodeError::Invalid(format!(
                "ack wait must be 1 ms to {MAX_WAIT_MS} ms, not {}",
                s.ack_wait_ms
            )));
        }
        if s.max_deliveries == 0 {
            return Err(NodeError::Invalid(
                "max deliveries must be at least 1".into(),
            ));
        }
        if s.backoff_ms.is_empty() || s.backoff_ms.iter().any(|b| *b > MAX_WAIT_MS) {
            return Err(NodeError::Invalid(format!(
                "a backoff schedule needs 1 to 64 steps of at most {MAX_WAIT_MS} ms"
            )));
        }
        Ok(s)
    }

    /// Checks the options a joining member states against these settings.
    pub(crate) fn check(&self, group: &str, o: &GroupOptions) -> Result<(), NodeError> {
        let differs = |what: &str, theirs: String, ours: String| {
            Err(NodeError::Invalid(format!(
                "group {group:?} has {what} {ours}; this member asked for {theirs}"
            )))
        };
        if let Some(m) = o.mode
            && m != self.mode
        {
            return differs("mode", m.name().into(), self.mode.name().into());
        }
        if let Some(v) = o.ack_wait_ms
            && v != self.ack_wait_ms
        {
            return differs(
                "ack wait",
                format!("{v} ms"),
                format!("{} ms", self.ack_wait_ms),
            );
        }
        if let Some(v) = o.max_deliveries
            && v != self.max_deliveries
        {
            return differs(
                "max deliveries",
                v.to_string(),
                self.max_deliveries.to_string(),
            );
        }
        if let Some(v) = &o.backoff_ms
            && *v != self.backoff_ms
        {
            return differs(
                "backoff",
                format!("{v:?} ms"),
                format!("{:?} ms", self.backoff_ms),
            );
        }
        if let Some(v) = o.ordered
            && v != self.ordered
        {
            return differs("ordered", v.to_string(), self.ordered.to_string());
        }
        Ok(())
    }

    pub(crate) fn to_meta(&self) -> GroupMeta {
        GroupMeta {
            mode: self.mode.name().into(),
            ack_wait_ms: self.ack_wait_ms,
            max_deliveries: self.max_deliveries,
            backoff_ms: self.backoff_ms.clone(),
            ordered: self.ordered,
        }
    }

    pub(crate) fn from_meta(m: &GroupMeta) -> Result<GroupSettings, NodeError> {
        let mode = match m.mode.as_str() {
            "stream" => GroupMode::Stream,
            "queue" => GroupMode::Queue,
            other => {
                return Err(NodeError::Corrupt(format!(
                    "a group has mode {other:?}; known are stream and queue"
                )));
            }
        };
        Ok(GroupSettings {
            mode,
            ack_wait_ms: m.ack_wait_ms,
            max_deliveries: m.max_deliveries,
            backoff_ms: m.backoff_ms.clone(),
            ordered: m.ordered,
        })
    }

    fn policy(&self) -> RetryPolicy<'_> {
        RetryPolicy {
            max_deliveries: self.max_deliveries,
            backoff_ms: &self.backoff_ms,
        }
    }

    pub(crate) fn info(&self, name: &str, topics: Vec<GroupTopicInfo>) -> GroupInfo {
        GroupInfo {
            name: name.into(),
            mode: self.mode,
            ack_wait_ms: self.ack_wait_ms,
            max_deliveries: self.max_deliveries,
            backoff_ms: self.backoff_ms.clone(),
            ordered: self.ordered,
            topics,
        }
    }
}

/// A connected member.
#[derive(Debug)]
struct Member {
    name: String,
    prefetch: u32,
    partitions: Vec<u32>,
}

/// What a stream-mode member consumes, as of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamShare {
    pub(crate) generation: u64,
    /// Bumped by seeks: cursors must be re-read from the committed offsets.
    pub(crate) seek_epoch: u64,
    pub(crate) partitions: Vec<u32>,
}

/// Messages of one partition handed to a member: (partition, [(offset,
/// attempt)]).
pub(crate) type Picked = (u32, Vec<(u64, u32)>);

/// A message that ran out of deliveries, to be written to the group's
/// dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) attempts: u32,
    pub(crate) error: String,
}

struct State {
    generation: u64,
    seek_epoch: u64,
    members: BTreeMap<u64, Member>,
    /// Stream mode: committed offset per partition.
    committed: Vec<Option<u64>>,
    /// Stream mode: per partition, the generation since which its holder
    /// has held it (a seek counts as a new hold).
    held_since: Vec<u64>,
    /// Queue mode: per partition.
    queue: Vec<QueuePartition>,
    journal: Journal,
}

/// One group on one topic.
pub(crate) struct GroupTopic {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) settings: GroupSettings,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for GroupTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupTopic")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Every group-topic the node has opened, and where their journals live.
#[derive(Debug)]
pub(crate) struct Groups {
    dir: PathBuf,
    open: Mutex<HashMap<(String, String), Arc<GroupTopic>>>,
    next_member: AtomicU64,
}

impl Groups {
    pub(crate) fn new(dir: PathBuf) -> Groups {
        Groups {
            dir,
            open: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(1),
        }
    }

    fn journal_path(&self, group: &str, topic: &str) -> PathBuf {
        self.dir.join(group).join(format!("{topic}.journal"))
    }

    /// The group's state on `topic`, replayed from its journal the first
    /// time. Blocks (file I/O).
    pub(crate) fn open(
        &self,
        group: &str,
        topic: &Topic,
        settings: &GroupSettings,
    ) -> Result<Arc<GroupTopic>, NodeError> {
        let key = (group.to_string(), topic.spec.name.clone());
        let mut open = self.open.lock();
        if let Some(gt) = open.get(&key) {
            return Ok(gt.clone());
        }
        let gt = Arc::new(GroupTopic::load(
            &self.journal_path(group, &topic.spec.name),
            group,
            topic,
            settings.clone(),
        )?);
        open.insert(key, gt.clone());
        Ok(gt)
    }

    /// The topics `group` has state for, from the journals on disk.
    pub(crate) fn topics_of(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.join(group))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".journal"))
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        out
    }

    /// A fresh member id.
    pub(crate) fn member_id(&self) -> u64 {
        self.next_member.fetch_add(1, Ordering::Relaxed)
    }

    /// Fsyncs every open journal; compacts those that grew.
    pub(crate) fn sync_all(&self) {
        let all: Vec<Arc<GroupTopic>> = self.open.lock().values().cloned().collect();
        for gt in all {
            if let Err(e) = gt.sync() {
                tracing::error!(group = %gt.group, topic = %gt.topic, error = %e, "group journal sync failed");
            }
        }
    }
}

impl GroupTopic {
    fn load(
        path: &std::path::Path,
        group: &str,
        topic: &Topic,
        settings: GroupSettings,
    ) -> Result<GroupTopic, NodeError> {
        let (journal, events) = Journal::open(path)?;
        let n = topic.partitions.len();
        let mut committed = vec![None; n];
        let mut queue: Vec<QueuePartition> = (0..n).map(|_| QueuePartition::default()).collect();
        for e in &events {
            let p = match e {
                Event::Position { partition, .. }
                | Event::Commit { partition, .. }
                | Event::Delivered { partition, .. }
                | Event::Acked { partition, .. }
                | Event::Dead { partition, .. }
                | Event::Failed { partition, .. }
                | Event::Attempts { partition, .. }
                | Event::Counters { partition, .. } => *partition as usize,
            };
            if p >= n {
                return Err(NodeError::Corrupt(format!(
                    "{} names partition {p}; topic {:?} has {n}",
                    path.display(),
                    topic.spec.name
                )));
            }
            match e {
                Event::Position { offset, .. } | Event::Commit { offset, .. } => {
                    committed[p] = Some(*offset);
                }
                _ => {}
            }
            queue[p].replay(e);
        }
        // A partition with no position yet gets one when a member first
        // joins, at that member's start (`ensure_positioned`).
        let (changed, _) = watch::channel(0);
        tracing::info!(group, topic = %topic.spec.name, events = events.len(), "group state loaded");
        let state = State {
            generation: 0,
            seek_epoch: 0,
            members: BTreeMap::new(),
            committed,
            held_since: vec![0; n],
            queue,
            journal,
        };
        let gt = GroupTopic {
            group: group.to_string(),
            topic: topic.spec.name.clone(),
            settings,
            state: Mutex::new(state),
            changed,
        };
        Ok(gt)
    }

    /// A receiver that changes whenever the state does.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resolves a start position on partition `p` for a group that has
    /// none there yet, and records it, so a member that takes the
    /// partition over later starts at the same place.
    fn ensure_positioned(
        state: &mut State,
        p: &Partition,
        start: StartAt,
    ) -> Result<u64, NodeError> {
        let i = p.index as usize;
        if let Some(o) = state.committed[i] {
            return Ok(o);
        }
        let offset = resolve(p, start)?;
        state.journal.append(&[Event::Position {
            partition: p.index,
            offset,
        }])?;
        state.committed[i] = Some(offset);
        state.queue[i] = QueuePartition::at(offset);
        Ok(offset)
    }

    /// Adds a member; in stream mode the partitions are dealt again.
    pub(crate) fn join(
        &self,
        id: u64,
        name: String,
        prefetch: u32,
        topic: &Topic,
        start: StartAt,
    ) -> Result<(), NodeError> {
        let mut s = self.state.lock();
        for p in &topic.partitions {
            Self::ensure_positioned(&mut s, p, start)?;
        }
        let prefetch = if prefetch == 0 {
            DEFAULT_PREFETCH
        } else {
            prefetch
        };
        s.members.insert(
            id,
            Member {
                name,
                prefetch,
                partitions: Vec::new(),
            },
        );
        self.rebalance(&mut s, topic.partitions.len());
        drop(s);
        self.bump();
        Ok(())
    }

    /// Removes a member. Queue mode: its unacked messages fail (they are
    /// redelivered, or dead-lettered if out of deliveries).
    pub(crate) fn leave(&self, id: u64, now_ms: i64, partitions: usize) -> Vec<DeadLetter> {
        let mut s = self.state.lock();
        let Some(member) = s.members.remove(&id) else {
            return Vec::new();
        };
        let mut dead = Vec::new();
        if self.settings.mode == GroupMode::Queue {
            let error = format!("member {:?} left with the message unacked", member.name);
            for p in 0..s.queue.len() {
                let held = s.queue[p].held_by(id);
                for offset in held {
                    self.fail_locked(
                        &mut s, p as u32, offset, None, now_ms, None, &error, &mut dead,
                    );
                }
            }
        }
        self.rebalance(&mut s, partitions);
        drop(s);
        self.bump();
        dead
    }

    /// Stream mode: deals partitions round robin over the members in join
    /// order and moves the generation on. Queue mode has nothing to deal:
    /// its generation moves only with seeks, so acks stay valid while
    /// members come and go.
    fn rebalance(&self, s: &mut State, partitions: usize) {
        if self.settings.mode != GroupMode::Stream {
            return;
        }
        s.generation += 1;
        let generation = s.generation;
        let mut before = vec![None; partitions];
        for (id, m) in &s.members {
            for p in &m.partitions {
                if let Some(b) = before.get_mut(*p as usize) {
                    *b = Some(*id);
                }
            }
        }
        let ids: Vec<u64> = s.members.keys().copied().collect();
        for m in s.members.values_mut() {
            m.partitions.clear();
        }
        s.held_since.resize(partitions, 0);
        if ids.is_empty() {
            return;
        }
        for (p, was) in before.into_iter().enumerate() {
            let to = ids[p % ids.len()];
            if let Some(m) = s.members.get_mut(&to) {
                m.partitions.push(p as u32);
            }
            if was != Some(to) {
                s.held_since[p] = generation;
            }
        }
    }

    /// Stream mode: the member's share now.
    pub(crate) fn share(&self, id: u64) -> StreamShare {
        let s = self.state.lock();
        StreamShare {
            generation: s.generation,
            seek_epoch: s.seek_epoch,
            partitions: s
                .members
                .get(&id)
                .map(|m| m.partitions.clone())
                .unwrap_or_default(),
        }
    }

    /// The committed offset (stream) or ack floor (queue) of a partition.
    pub(crate) fn committed(&self, partition: u32) -> u64 {
        let s = self.state.lock();
        match self.settings.mode {
            GroupMode::Stream => s
                .committed
                .get(partition as usize)
                .copied()
                .flatten()
                .unwrap_or(0),
            GroupMode::Queue => s.queue.get(partition as usize).map_or(0, |q| q.floor),
        }
    }

    /// The generation now.
    pub(crate) fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Stream mode: records a member's commit for the partitions it has
    /// held without a break since `generation` (a partition it kept
    /// through a rebalance keeps taking commits of messages delivered
    /// before it); returns how many offsets it took.
    pub(crate) fn commit(
        &self,
        id: u64,
        generation: u64,
        offsets: &[(u32, u64)],
    ) -> Result<usize, NodeError> {
        let mut s = self.state.lock();
        if generation > s.generation {
            return Ok(0);
        }
        let Some(member) = s.members.get(&id) else {
            return Ok(0);
        };
        let owned = member.partitions.clone();
        let since = &s.held_since;
        let events: Vec<Event> = offsets
            .iter()
            .filter(|(p, _)| {
                owned.contains(p) && since.get(*p as usize).is_some_and(|g| *g <= generation)
            })
            .map(|(p, o)| Event::Commit {
                partition: *p,
                offset: *o,
            })
            .collect();
        s.journal.append(&events)?;
        for e in &events {
            if let Event::Commit { partition, offset } = e {
                s.committed[*partition as usize] = Some(*offset);
            }
        }
        Ok(events.len())
    }

    /// Queue mode: reads ahead into partition `p` from the log.
    pub(crate) fn fill(&self, p: &Partition) {
        let i = p.index as usize;
        let visible = p.visible_end();
        let (cursor, wants) = {
            let s = self.state.lock();
            let q = &s.queue[i];
            (q.cursor, q.wants_more(READ_AHEAD))
        };
        if !wants || cursor >= visible {
            return;
        }
        let fetched = match p.log.read(cursor, 1 << 20) {
            Ok(f) => f,
            Err(weir_log::LogError::OffsetOutOfRange { start, .. }) if start > cursor => {
                let lost = self.state.lock().queue[i].truncated(start);
                if lost > 0 {
                    tracing::warn!(group = %self.group, topic = %self.topic, partition = p.index, lost,
                        "retention deleted messages the group had not finished");
                }
                self.bump();
                return;
            }
            Err(e) => {
                tracing::error!(group = %self.group, topic = %self.topic, partition = p.index, error = %e, "group read-ahead failed");
                return;
            }
        };
        let mut s = self.state.lock();
        let q = &mut s.queue[i];
        if q.cursor != cursor {
            return;
        }
        let mut buf = &fetched.batches[..];
        let mut admitted = 0usize;
        'batches: while let Ok(view) = BatchView::parse(buf) {
            for record in view.records().flatten() {
                if record.offset >= visible || !q.wants_more(READ_AHEAD) {
                    break 'batches;
                }
                if record.offset >= q.cursor {
                    q.admit(record.offset, record.key);
                    admitted += 1;
                }
            }
            buf = &buf[view.header().batch_len as usize..];
        }
        drop(s);
        if admitted > 0 {
            self.bump();
        }
    }

    /// Queue mode: hands `member` what it has room for. Returns the
    /// generation and, per partition, (offset, attempt) in offset order.
    pub(crate) fn pick(
        &self,
        id: u64,
        now_ms: i64,
        max: usize,
    ) -> Result<(u64, Vec<Picked>), NodeError> {
        let mut s = self.state.lock();
        let Some(prefetch) = s.members.get(&id).map(|m| m.prefetch as usize) else {
            return Ok((s.generation, Vec::new()));
        };
        let held: usize = s.queue.iter().map(|q| q.held_by(id).len()).sum();
        let mut room = prefetch.saturating_sub(held).min(max);
        let mut out = Vec::new();
        let n = s.queue.len();
        // Start at a different partition for each member so that members
        // spread over partitions.
        let first = (id as usize) % n.max(1);
        for k in 0..n {
            if room == 0 {
                break;
            }
            let p = (first + k) % n;
            let picked = s.queue[p].pick(
                id,
                room,
                now_ms,
                self.settings.ack_wait_ms,
                self.settings.ordered,
            );
            if picked.is_empty() {
                continue;
            }
            room -= picked.len();
            out.push((p as u32, picked));
        }
        let events: Vec<Event> = out
            .iter()
            .map(|(p, picked)| Event::Delivered {
                partition: *p,
                offsets: picked.iter().map(|(o, _)| *o).collect(),
            })
            .collect();
        s.journal.append(&events)?;
        Ok((s.generation, out))
    }

    /// Queue mode: acks from a member; those of another generation are
    /// ignored.
    pub(crate) fn ack(&self, generation: u64, messages: &[(u32, u64)]) -> Result<(), NodeError> {
        let mut s = self.state.lock();
        if generation != s.generation {
            return Ok(());
        }
        let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (p, o) in messages {
            if let Some(q) = s.queue.get_mut(*p as usize)
                && q.ack(*o)
            {
                by_partition.entry(*p).or_default().push(*o);
            }
        }
        let events: Vec<Event> = by_partition
            .into_iter()
            .map(|(partition, offsets)| Event::Acked { partition, offsets })
            .collect();
        s.journal.append(&events)?;
        drop(s);
        if !events.is_empty() {
            self.bump();
        }
        Ok(())
    }

    /// Queue mode: a member's nack.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn nack(
        &self,
        id: u64,
        generation: u64,
        partition: u32,
        offset: u64,
        delay_ms: Option<u64>,
        error: &str,
        now_ms: i64,
    ) -> Result<Vec<DeadLetter>, NodeError> {
        let mut s = self.state.lock();
        let mut dead = Vec::new();
        if generation != s.generation || partition as usize >= s.queue.len() {
            return Ok(dead);
        }
        let delay = delay_ms.map(|d| d.min(MAX_WAIT_MS));
        self.fail_locked(
            &mut s,
            partition,
            offset,
            Some(id),
            now_ms,
            delay,
            error,
            &mut dead,
        );
        drop(s);
        self.bump();
        Ok(dead)
    }

    /// Queue mode: fails every delivery whose ack wait has ended.
    pub(crate) fn expire(&self, now_ms: i64) -> Vec<DeadLetter> {
        let mut s = self.state.lock();
        let mut dead = Vec::new();
        let error = format!(
            "not acked within the ack wait of {} ms",
            self.settings.ack_wait_ms
        );
        let mut any = false;
        for p in 0..s.queue.len() {
            for offset in s.queue[p].expired(now_ms) {
                any = true;
                self.fail_locked(
                    &mut s,
                    p as u32,
                    offset,
                    None,
                    now_ms,
                    Some(0),
                    &error,
                    &mut dead,
                );
            }
        }
        drop(s);
        if any {
            self.bump();
        }
        dead
    }

    #[allow(clippy::too_many_arguments)]
    fn fail_locked(
        &self,
        s: &mut State,
        partition: u32,
        offset: u64,
        member: Option<u64>,
        now_ms: i64,
        delay_ms: Option<u64>,
        error: &str,
        dead: &mut Vec<DeadLetter>,
    ) {
        let policy = self.settings.policy();
        let Some(failure) =
            s.queue[partition as usize].fail(offset, member, now_ms, delay_ms, error, policy)
        else {
            return;
        };
        match failure {
            Failure::Retry { due_ms } => {
                let event = Event::Failed {
                    partition,
                    offset,
                    due_ms,
                    error: error.to_string(),
                };
                if let Err(e) = s.journal.append(&[event]) {
                    tracing::error!(group = %self.group, error = %e, "group journal write failed");
                }
            }
            Failure::DeadLetter { attempts, error } => dead.push(DeadLetter {
                partition,
                offset,
                attempts,
                error,
            }),
        }
    }

    /// The dead-letter write of a message ended.
    pub(crate) fn dead_lettered(&self, d: &DeadLetter, stored: bool, now_ms: i64) {
        let mut s = self.state.lock();
        if stored
            && let Err(e) = s.journal.append(&[Event::Dead {
                partition: d.partition,
                offset: d.offset,
            }])
        {
            tracing::error!(group = %self.group, error = %e, "group journal write failed");
        }
        if let Some(q) = s.queue.get_mut(d.partition as usize) {
            q.dead_lettered(d.offset, stored, now_ms + 1000);
        }
        drop(s);
        self.bump();
    }

    /// Queue mode: when something changes by itself next (ms).
    pub(crate) fn next_wake(&self) -> Option<i64> {
        let s = self.state.lock();
        s.queue.iter().filter_map(QueuePartition::next_wake).min()
    }

    /// Moves the group on every partition of `topic` to `to`.
    pub(crate) fn seek(&self, topic: &Topic, to: StartAt) -> Result<(), NodeError> {
        let mut s = self.state.lock();
        let mut events = Vec::new();
        let mut offsets = Vec::new();
        for p in &topic.partitions {
            let offset = resolve(p, to)?;
            events.push(Event::Position {
                partition: p.index,
                offset,
            });
            offsets.push(offset);
        }
        s.journal.append(&events)?;
        for (i, offset) in offsets.into_iter().enumerate() {
            s.committed[i] = Some(offset);
            s.queue[i].seek(offset);
        }
        s.seek_epoch += 1;
        s.generation += 1;
        let generation = s.generation;
        s.held_since.iter_mut().for_each(|g| *g = generation);
        drop(s);
        tracing::info!(group = %self.group, topic = %self.topic, ?to, "group seek");
        self.bump();
        Ok(())
    }

    /// The group's state on this topic for `describe-group`.
    pub(crate) fn describe(&self, topic: &Topic) -> GroupTopicInfo {
        let s = self.state.lock();
        let members = s
            .members
            .iter()
            .map(|(id, m)| MemberInfo {
                name: m.name.clone(),
                partitions: m.partitions.clone(),
                in_flight: s.queue.iter().map(|q| q.held_by(*id).len() as u32).sum(),
            })
            .collect();
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let i = p.index as usize;
                let end = p.visible_end();
                let q = &s.queue[i];
                let (committed, lag) = match self.settings.mode {
                    GroupMode::Stream => {
                        let c = s.committed[i].unwrap_or(0);
                        (c, end.saturating_sub(c))
                    }
                    GroupMode::Queue => (q.floor, q.lag(end)),
                };
                GroupPartitionInfo {
                    partition: p.index,
                    committed,
                    end,
                    lag,
                    in_flight: q.in_flight() as u32,
                    redelivered: q.redelivered,
                    dead_lettered: q.dead_lettered,
                }
            })
            .collect();
        GroupTopicInfo {
            topic: self.topic.clone(),
            generation: s.generation,
            members,
            partitions,
        }
    }

    /// Fsyncs the journal, compacting it first if it grew.
    pub(crate) fn sync(&self) -> Result<(), NodeError> {
        let mut s = self.state.lock();
        if s.journal.wants_compaction() {
            let mut snapshot = Vec::new();
            for (i, q) in s.queue.iter().enumerate() {
                let partition = i as u32;
                match self.settings.mode {
                    GroupMode::Stream => {
                        if let Some(offset) = s.committed[i] {
                            snapshot.push(Event::Position { partition, offset });
                        }
                    }
                    GroupMode::Queue => q.snapshot(partition, &mut snapshot),
                }
            }
            s.journal.compact(&snapshot)?;
            return Ok(());
        }
        s.journal.sync()
    }
}

/// Where `at` falls in `p` now: an offset is clamped to what the
/// partition holds; a time finds the first message at or after it, or the
/// end.
fn resolve(p: &Partition, at: StartAt) -> Result<u64, NodeError> {
    let start = p.log.stats().start_offset;
    let end = p.visible_end();
    Ok(match at {
        StartAt::Earliest => start,
        StartAt::Latest => end,
        StartAt::Offset(o) => o.clamp(start, end),
        StartAt::Timestamp(ts) => p.log.offset_for_timestamp(ts)?.unwrap_or(end).min(end),
    })
}

/// Writes dead letters to `<group>.dlq` with headers naming where each
/// came from, then settles them in the group. Blocks.
pub(crate) fn dead_letter(
    shared: &crate::state::Shared,
    gt: &GroupTopic,
    topic: &Topic,
    dead: &[DeadLetter],
    now_ms: i64,
) {
    if dead.is_empty() {
        return;
    }
    let name = format!("{}{GROUP_DLQ_SUFFIX}", gt.group);
    let dlq = match shared.dead_letter_topic_named(&name, topic) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(group = %gt.group, error = %e, "the group's dead-letter topic is unavailable; retrying in 1 s");
            for d in dead {
                gt.dead_lettered(d, false, now_ms);
            }
            return;
        }
    };
    for d in dead {
        let stored = match write_dead_letter(&dlq, gt, topic, d, now_ms) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(group = %gt.group, partition = d.partition, offset = d.offset, error = %e,
                    "dead-letter write failed; retrying in 1 s");
                false
            }
        };
        gt.dead_lettered(d, stored, now_ms);
    }
}

fn write_dead_letter(
    dlq: &Topic,
    gt: &GroupTopic,
    topic: &Topic,
    d: &DeadLetter,
    now_ms: i64,
) -> Result<(), String> {
    let source = topic
        .partitions
        .get(d.partition as usize)
        .ok_or_else(|| format!("partition {} is gone", d.partition))?;
    let fetched = source
        .log
        .read(d.offset, 1)
        .map_err(|e| format!("reading the message back: {e}"))?;
    let view = BatchView::parse(&fetched.batches)
        .map_err(|e| format!("the stored batch at {} does not parse: {e}", d.offset))?;
    let record = view
        .records()
        .flatten()
        .find(|r| r.offset == d.offset)
        .ok_or_else(|| format!("offset {} is not in the batch read for it", d.offset))?;
    let partition = d.partition.to_string();
    let offset = d.offset.to_string();
    let attempts = d.attempts.to_string();
    let mut headers: Vec<(&str, &[u8])> = record.headers().collect();
    headers.push(("weir-dlq-topic", topic.spec.name.as_bytes()));
    headers.push(("weir-dlq-partition", partition.as_bytes()));
    headers.push(("weir-dlq-offset", offset.as_bytes()));
    headers.push(("weir-dlq-attempts", attempts.as_bytes()));
    headers.push(("weir-dlq-error", d.error.as_bytes()));
    let mut builder = BatchBuilder::new();
    builder
        .push(&NewRecord {
            timestamp_ms: record.timestamp_ms,
            key: record.key,
            id: record.id,
            dedup_key: record.dedup_key,
            headers: &headers,
            payload: record.payload,
        })
        .map_err(|e| format!("the dead letter cannot be encoded: {e}"))?;
    let mut bytes = builder.finish().map_err(|e| e.to_string())?;
    let p = dlq
        .partitions
        .first()
        .ok_or_else(|| "the dead-letter topic has no partition".to_string())?;
    let appended = p
        .log
        .append_no_wait(&mut bytes, now_ms)
        .map_err(|e| format!("{}: {e}", dlq.spec.name))?;
    if p.is_durable() {
        p.log
            .sync_to(appended.last_offset + 1)
            .map_err(|e| format!("{}: {e}", dlq.spec.name))?;
    }
    p.publish();
    tracing::info!(group = %gt.group, topic = %topic.spec.name, partition = d.partition, offset = d.offset,
        attempts = d.attempts, dlq = %dlq.spec.name, "dead-lettered");
    Ok(())
}
