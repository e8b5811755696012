//! The ingest pipeline: a produced batch through the topic's plugin chain,
//! into the partitions of every topic the verdicts name.
//!
//! Plain blocking code with no sockets: the server calls it from a blocking
//! task and a test can call it directly. It writes but never waits for an
//! fsync; the caller decides that from the ack level, so a stream's next
//! batch can be written while this one's fsync is in flight.
//!
//! When the chain changes nothing and every record lands in one partition,
//! the producer's bytes are appended as they came (only the base offset is
//! stamped); otherwise the records of each destination are re-encoded.

use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;
use std::sync::Arc;

use parking_lot::MutexGuard;

use weir_plugin::{Header, MessageRef, Outcome, Partition as PluginPartition};
use weir_proto::frame::{ErrorCode, MessageOutcome, Outcomes, Placement};
use weir_proto::limits::MAX_BATCH_BYTES;
use weir_proto::partition::kafka_partition;
use weir_proto::{BatchBuilder, BatchError, BatchView, CheckedBatch, NewRecord, RecordView};

use crate::dedup::{DedupWindow, Seen};
use crate::state::Shared;
use crate::topic::{Partition, Topic};

/// A produce that failed as a whole.
#[derive(Debug)]
pub(crate) struct IngestError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl IngestError {
    fn new(code: ErrorCode, message: impl Into<String>) -> IngestError {
        IngestError {
            code,
            message: message.into(),
        }
    }
}

/// What became of a batch.
#[derive(Debug)]
pub(crate) struct Ingested {
    /// One per record, in order.
    pub(crate) outcomes: Outcomes,
    /// Partitions written, with the end offset each must reach to make
    /// this batch durable there.
    pub(crate) written: Vec<(Arc<Partition>, u64)>,
}

#[cfg(test)]
impl Ingested {
    /// Each record's outcome, in order.
    fn each(&self) -> Vec<MessageOutcome> {
        self.outcomes.iter().collect()
    }
}

/// One record bound for a partition: its index in the batch, the dedup key
/// and the headers the chain gave it.
type Member<'a> = (usize, Option<&'a [u8]>, &'a [Header]);

/// Where one record goes, after the chain.
enum Fate {
    Drop(String),
    Reject(String),
    DeadLetter,
    Route {
        topics: Option<Vec<String>>,
        partition: Option<PluginPartition>,
        dedup_key: Option<Vec<u8>>,
        headers: Vec<Header>,
    },
}

/// Runs `batch` (an encoded record batch) through `topic`'s chain and
/// appends the result. `partition` is the producer's choice, used when the
/// chain makes none.
pub(crate) fn ingest(
    shared: &Shared,
    topic: &Arc<Topic>,
    batch: &[u8],
    partition: Option<u32>,
    now_ms: i64,
) -> Result<Ingested, IngestError> {
    let malformed =
        |e: BatchError| IngestError::new(ErrorCode::Malformed, format!("produced batch: {e}"));
    let view = BatchView::parse(batch).map_err(malformed)?;
    if view.header().batch_len as usize != batch.len() {
        return Err(IngestError::new(
            ErrorCode::Malformed,
            format!(
                "produced batch is {} bytes but its header says {}",
                batch.len(),
                view.header().batch_len
            ),
        ));
    }
    let (checked, records) = view.check_records().map_err(malformed)?;
    if let Some(p) = partition
        && p >= topic.spec.partitions
    {
        return Err(IngestError::new(
            ErrorCode::InvalidArgument,
            format!(
                "partition {p} does not exist; topic {:?} has {}",
                topic.spec.name, topic.spec.partitions
            ),
        ));
    }

    let fates = run_chain(topic, &records);
    // Every topic a record goes to, by index; the produce's own is 0.
    let mut dests = Destinations::new(topic);
    // Per record: what became of it, where it goes, its dedup key and what
    // the chain added.
    let mut fated: Vec<Fated> = Vec::with_capacity(records.len());
    let mut planned: Vec<Routes> = Vec::with_capacity(records.len());
    let mut keys: Vec<Option<&[u8]>> = Vec::with_capacity(records.len());
    let mut extras: Vec<(Option<&[u8]>, &[Header])> = Vec::with_capacity(records.len());
    let mut dead: Vec<usize> = Vec::new();
    // Sticky: keyless records of one batch stay together, per destination.
    let mut sticky: Vec<Option<u32>> = Vec::new();
    for (i, fate) in fates.iter().enumerate() {
        let mut routes = Routes::new();
        let mut key = None;
        let mut extra: (Option<&[u8]>, &[Header]) = (None, &[]);
        let outcome = match fate {
            Fate::Drop(reason) => Fated::Done(MessageOutcome::Dropped(reason.clone())),
            Fate::Reject(reason) => Fated::Done(MessageOutcome::Rejected(reason.clone())),
            Fate::DeadLetter => {
                dead.push(i);
                Fated::Stored(Places::new())
            }
            Fate::Route {
                topics,
                partition: chosen,
                dedup_key,
                headers,
            } => {
                let own = [topic.spec.name.clone()];
                let names = topics.as_deref().unwrap_or(&own);
                match route(
                    shared,
                    topic,
                    &mut dests,
                    &mut sticky,
                    names,
                    chosen,
                    partition,
                    &records[i],
                ) {
                    Ok(r) => {
                        routes = r;
                        key = dedup_key
                            .as_deref()
                            .or(records[i].dedup_key)
                            .or(records[i].id);
                        extra = (dedup_key.as_deref(), headers.as_slice());
                        Fated::Stored(Places::new())
                    }
                    Err(reason) => Fated::Done(MessageOutcome::Rejected(reason)),
                }
            }
        };
        fated.push(outcome);
        planned.push(routes);
        keys.push(key);
        extras.push(extra);
    }

    // Dedup: check, append and remember under the windows' locks, taken in
    // name order, so two producers cannot both store one key.
    let mut wanted: Vec<usize> = Vec::new();
    for (i, routes) in planned.iter().enumerate() {
        if keys[i].is_none() {
            continue;
        }
        for &(d, _) in routes {
            if !wanted.contains(&d) && dests.get(d).dedup_enabled() {
                wanted.push(d);
            }
        }
    }
    wanted.sort_by(|a, b| dests.get(*a).spec.name.cmp(&dests.get(*b).spec.name));
    let locked: Vec<(usize, Arc<Topic>)> =
        wanted.iter().map(|&d| (d, dests.get(d).clone())).collect();
    let mut windows: Vec<Option<MutexGuard<'_, DedupWindow>>> =
        std::iter::repeat_with(|| None).take(dests.len()).collect();
    for (d, dest) in &locked {
        windows[*d] = Some(dest.dedup.lock());
    }
    // Records that repeat a key earlier in this batch, and which one.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    if !locked.is_empty() {
        let mut first_in_batch: HashMap<(usize, &[u8]), usize> = HashMap::new();
        for (i, routes) in planned.iter_mut().enumerate() {
            let Some(key) = keys[i] else { continue };
            let mut verdict = None;
            for &(d, _) in routes.iter() {
                let Some(window) = windows[d].as_ref() else {
                    continue;
                };
                if let Some(seen) = window.get(key, now_ms) {
                    verdict = Some(Err(Placement {
                        topic: dests.get(d).spec.name.clone(),
                        partition: seen.partition,
                        offset: seen.offset,
                    }));
                    break;
                }
                if let Some(&first) = first_in_batch.get(&(d, key)) {
                    verdict = Some(Ok(first));
                    break;
                }
            }
            match verdict {
                Some(Err(original)) => {
                    fated[i] = Fated::Done(MessageOutcome::Duplicate(original));
                    routes.clear();
                }
                Some(Ok(first)) => {
                    repeats.push((i, first));
                    routes.clear();
                }
                None => {
                    for &(d, _) in routes.iter() {
                        if windows[d].is_some() {
                            first_in_batch.insert((d, key), i);
                        }
                    }
                }
            }
        }
    }
    // (destination, partition) -> records, in order, with what the chain added.
    let mut groups: BTreeMap<(usize, u32), Vec<Member<'_>>> = BTreeMap::new();
    for (i, routes) in planned.iter().enumerate() {
        for &route in routes {
            groups
                .entry(route)
                .or_insert_with(|| Vec::with_capacity(records.len()))
                .push((i, extras[i].0, extras[i].1));
        }
    }

    let mut written = Vec::new();
    let all_unchanged = fates.iter().all(|f| matches!(f, Fate::Route { topics: None, dedup_key: None, headers, .. } if headers.is_empty()));
    for (&(d, p), members) in &groups {
        let dest = dests.get(d);
        let Some(partition) = dest.partitions.get(p as usize) else {
            continue;
        };
        let verbatim = all_unchanged && members.len() == records.len();
        let result = if verbatim {
            append(partition, checked, now_ms).map(|base| vec![base])
        } else {
            encode_and_append(partition, &records, members, now_ms)
        };
        match result {
            Ok(bases) => {
                let mut offsets = bases
                    .into_iter()
                    .flat_map(|(base, count)| base..base + count);
                for (i, _, _) in members {
                    let Some(offset) = offsets.next() else { break };
                    if let Fated::Stored(places) = &mut fated[*i] {
                        places.push((d, p, offset));
                    }
                }
                written.push((partition.clone(), partition.log.end_offset()));
            }
            Err(reason) => {
                for (i, _, _) in members {
                    fated[*i] = Fated::Done(MessageOutcome::Rejected(reason.clone()));
                }
            }
        }
    }

    for (i, fate) in fated.iter().enumerate() {
        let (Some(key), Fated::Stored(places)) = (keys[i], fate) else {
            continue;
        };
        for &(d, partition, offset) in places {
            if let Some(window) = windows[d].as_mut() {
                window.insert(
                    key,
                    Seen { partition, offset },
                    records[i].timestamp_ms,
                    now_ms,
                );
            }
        }
    }
    drop(windows);
    for (i, first) in repeats {
        fated[i] = match &fated[first] {
            Fated::Stored(places) => match places.first() {
                Some(&(d, partition, offset)) => {
                    Fated::Done(MessageOutcome::Duplicate(Placement {
                        topic: dests.get(d).spec.name.clone(),
                        partition,
                        offset,
                    }))
                }
                None => Fated::Stored(Places::new()),
            },
            Fated::Done(other) => Fated::Done(other.clone()),
        };
    }

    if !dead.is_empty() {
        dead_letter(
            shared,
            topic,
            &records,
            &dead,
            &mut fated,
            &mut dests,
            &mut written,
            now_ms,
        );
    }
    let mut outcomes = Outcomes::new();
    for fate in fated {
        match fate {
            Fated::Stored(places) => match places.as_slice() {
                [(d, partition, offset)] => {
                    outcomes.push_stored_at(&dests.get(*d).spec.name, *partition, *offset)
                }
                _ => outcomes.push(MessageOutcome::Stored(
                    places
                        .iter()
                        .map(|&(d, partition, offset)| Placement {
                            topic: dests.get(d).spec.name.clone(),
                            partition,
                            offset,
                        })
                        .collect(),
                )),
            },
            Fated::Done(outcome) => outcomes.push(outcome),
        }
    }
    Ok(Ingested { outcomes, written })
}

/// Where a record was stored: destination index, partition, offset.
type Place = (usize, u32, u64);
type Places = SmallVec<[Place; 1]>;
/// Where a record goes: destination index and partition.
type Routes = SmallVec<[(usize, u32); 1]>;

/// What became of a record while its batch is ingested.
enum Fated {
    /// Bound for (and, once appended, stored at) these places.
    Stored(Places),
    /// Settled otherwise (dropped, rejected, a duplicate).
    Done(MessageOutcome),
}

/// The topics a batch's records go to, by index, looked up once each.
struct Destinations {
    topics: Vec<Arc<Topic>>,
}

impl Destinations {
    fn new(own: &Arc<Topic>) -> Destinations {
        Destinations {
            topics: vec![own.clone()],
        }
    }

    fn len(&self) -> usize {
        self.topics.len()
    }

    fn get(&self, index: usize) -> &Arc<Topic> {
        &self.topics[index]
    }

    /// The index of the topic named `name`, looking it up the first time.
    fn index(&mut self, shared: &Shared, name: &str) -> Option<usize> {
        if let Some(i) = self.topics.iter().position(|t| t.spec.name == name) {
            return Some(i);
        }
        let topic = shared.topic(name).ok()?;
        self.topics.push(topic);
        Some(self.topics.len() - 1)
    }

    /// The index of `topic`, adding it if new.
    fn add(&mut self, topic: Arc<Topic>) -> usize {
        if let Some(i) = self.topics.iter().position(|t| Arc::ptr_eq(t, &topic)) {
            return i;
        }
        self.topics.push(topic);
        self.topics.len() - 1
    }
}

/// Where one routed record goes: a partition of each topic in `names`, or
/// why it cannot go anywhere.
#[allow(clippy::too_many_arguments)]
fn route(
    shared: &Shared,
    topic: &Arc<Topic>,
    dests: &mut Destinations,
    sticky: &mut Vec<Option<u32>>,
    names: &[String],
    chosen: &Option<PluginPartition>,
    partition: Option<u32>,
    record: &RecordView<'_>,
) -> Result<Routes, String> {
    let mut routes = Routes::new();
    for name in names {
        let Some(d) = dests.index(shared, name) else {
            return Err(format!(
                "a plugin routed it to {name:?}, which does not exist"
            ));
        };
        let dest = dests.get(d);
        let n = dest.spec.partitions;
        let p = match chosen {
            Some(PluginPartition::Index(p)) if *p < n => *p,
            Some(PluginPartition::Index(p)) => {
                return Err(format!(
                    "a plugin chose partition {p} of {name:?}, which has {n}"
                ));
            }
            Some(PluginPartition::HashKey(k)) => kafka_partition(k, n),
            None => match (partition, record.key) {
                (Some(p), _) if Arc::ptr_eq(dest, topic) => p,
                (_, Some(key)) => kafka_partition(key, n),
                _ => {
                    if sticky.len() <= d {
                        sticky.resize(d + 1, None);
                    }
                    *sticky[d].get_or_insert_with(|| dest.round_robin())
                }
            },
        };
        routes.push((d, p));
    }
    Ok(routes)
}

/// Runs the chain, or routes everything unchanged if there is none.
fn run_chain(topic: &Topic, records: &[RecordView<'_>]) -> Vec<Fate> {
    let chain = topic.chain.attachments();
    let unchanged = || Fate::Route {
        topics: None,
        partition: None,
        dedup_key: None,
        headers: Vec::new(),
    };
    if chain.is_empty() {
        return records.iter().map(|_| unchanged()).collect();
    }
    let messages: Vec<Record<'_, '_>> = records.iter().map(Record).collect();
    let context = weir_plugin::BatchContext {
        topic: topic.spec.name.clone(),
        partitions: topic.spec.partitions,
    };
    let run = topic.chain.run(&context, &messages);
    for error in &run.errors {
        tracing::warn!(topic = %topic.spec.name, %error, "plugin failed");
    }
    run.outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Accept(r) => Fate::Route {
                topics: r.topics,
                partition: r.partition,
                dedup_key: r.dedup_key,
                headers: r.added_headers,
            },
            Outcome::Drop { plugin, reason } => Fate::Drop(format!("{plugin}: {reason}")),
            Outcome::Reject { plugin, reason } => Fate::Reject(format!("{plugin}: {reason}")),
            Outcome::DeadLetter { .. } => Fate::DeadLetter,
        })
        .collect()
}

/// A produced record as the plugin chain reads it, borrowed from the batch.
struct Record<'r, 'a>(&'r RecordView<'a>);

impl MessageRef for Record<'_, '_> {
    fn key(&self) -> Option<&[u8]> {
        self.0.key
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.headers()
    }

    fn payload(&self) -> &[u8] {
        self.0.payload
    }

    fn timestamp_ms(&self) -> u64 {
        u64::try_from(self.0.timestamp_ms).unwrap_or(0)
    }
}

/// Appends a verified batch; returns (base offset, record count).
fn append(
    partition: &Partition,
    batch: CheckedBatch<'_>,
    now_ms: i64,
) -> Result<(u64, u64), String> {
    match partition.log.append_checked_no_wait(batch, now_ms) {
        Ok(a) => Ok((a.base_offset, a.last_offset - a.base_offset + 1)),
        Err(e) => Err(format!(
            "partition {} could not store it: {e}",
            partition.index
        )),
    }
}

/// Re-encodes `members` of `records` (with what the chain added) into as
/// many batches as they need and appends them in order.
fn encode_and_append(
    partition: &Partition,
    records: &[RecordView<'_>],
    members: &[Member<'_>],
    now_ms: i64,
) -> Result<Vec<(u64, u64)>, String> {
    let mut bases = Vec::new();
    // Room for the records as they came plus what the chain added, so the
    // buffer is allocated once rather than regrown (and copied) by doubling.
    let estimate: usize = members
        .iter()
        .map(|(i, dedup_key, added)| {
            let r = &records[*i];
            let field = |f: Option<&[u8]>| f.map_or(0, |b| b.len() + 3);
            r.payload.len()
                + 24
                + field(r.key)
                + field(r.id)
                + field(dedup_key.or(r.dedup_key))
                + r.headers()
                    .map(|(n, v)| n.len() + v.len() + 6)
                    .sum::<usize>()
                + added
                    .iter()
                    .map(|h| h.name.len() + h.value.len() + 4)
                    .sum::<usize>()
        })
        .sum();
    let mut builder =
        BatchBuilder::with_capacity(weir_proto::BATCH_HEADER_LEN + estimate.min(MAX_BATCH_BYTES));
    for (i, dedup_key, added) in members {
        let r = &records[*i];
        let mut headers: Vec<(&str, &[u8])> = r.headers().collect();
        headers.extend(added.iter().map(|h| (h.name.as_str(), h.value.as_slice())));
        let record = NewRecord {
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            id: r.id,
            dedup_key: dedup_key.or(r.dedup_key),
            headers: &headers,
            payload: r.payload,
        };
        if let Err(e) = builder.push(&record) {
            if builder.is_empty() {
                return Err(format!("record {i} cannot be stored: {e}"));
            }
            let full = std::mem::take(&mut builder);
            let built = full.finish_built().map_err(|e| e.to_string())?;
            bases.push(append(partition, built.checked(), now_ms)?);
            builder
                .push(&record)
                .map_err(|e| format!("record {i} cannot be stored: {e}"))?;
        }
    }
    if !builder.is_empty() {
        let built = builder.finish_built().map_err(|e| e.to_string())?;
        bases.push(append(partition, built.checked(), now_ms)?);
    }
    Ok(bases)
}

/// Parks records whose plugin failed under the dead-letter policy in
/// `<topic>.dlq`, unchanged.
#[allow(clippy::too_many_arguments)]
fn dead_letter(
    shared: &Shared,
    topic: &Topic,
    records: &[RecordView<'_>],
    dead: &[usize],
    fated: &mut [Fated],
    dests: &mut Destinations,
    written: &mut Vec<(Arc<Partition>, u64)>,
    now_ms: i64,
) {
    let dlq = match shared.dead_letter_topic(topic) {
        Ok(t) => t,
        Err(e) => {
            for &i in dead {
                fated[i] = Fated::Done(MessageOutcome::Rejected(format!(
                    "a plugin failed and the dead-letter topic is unavailable: {e}"
                )));
            }
            return;
        }
    };
    let Some(partition) = dlq.partitions.first() else {
        return;
    };
    let members: Vec<Member<'_>> = dead.iter().map(|&i| (i, None, &[][..])).collect();
    match encode_and_append(partition, records, &members, now_ms) {
        Ok(bases) => {
            let d = dests.add(dlq.clone());
            let mut offsets = bases
                .into_iter()
                .flat_map(|(base, count)| base..base + count);
            for &i in dead {
                if let Some(offset) = offsets.next() {
                    fated[i] = Fated::Stored(Places::from_slice(&[(d, 0, offset)]));
                }
            }
            written.push((partition.clone(), partition.log.end_offset()));
        }
        Err(reason) => {
            for &i in dead {
                fated[i] = Fated::Done(MessageOutcome::Rejected(reason.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
