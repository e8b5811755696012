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
use std::sync::Arc;

use parking_lot::MutexGuard;

use weir_plugin::{Header, MessageRef, Outcome, Partition as PluginPartition};
use weir_proto::frame::{ErrorCode, MessageOutcome, Placement};
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
    pub(crate) outcomes: Vec<MessageOutcome>,
    /// Partitions written, with the end offset each must reach to make
    /// this batch durable there.
    pub(crate) written: Vec<(Arc<Partition>, u64)>,
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
    let mut outcomes: Vec<MessageOutcome> = vec![MessageOutcome::Stored(Vec::new()); records.len()];
    // (topic, partition) -> records, in order, with what the chain added.
    let mut groups: BTreeMap<(String, u32), Vec<Member<'_>>> = BTreeMap::new();
    let mut dead: Vec<usize> = Vec::new();
    let mut destinations: BTreeMap<String, Arc<Topic>> = BTreeMap::new();
    let mut sticky: BTreeMap<String, u32> = BTreeMap::new();
    // Per record: where it goes, its dedup key, what the chain added.
    let mut planned: Vec<Vec<(String, u32)>> = vec![Vec::new(); records.len()];
    let mut keys: Vec<Option<&[u8]>> = vec![None; records.len()];
    let mut extras: Vec<(Option<&[u8]>, &[Header])> = vec![(None, &[][..]); records.len()];
    for (i, fate) in fates.iter().enumerate() {
        match fate {
            Fate::Drop(reason) => outcomes[i] = MessageOutcome::Dropped(reason.clone()),
            Fate::Reject(reason) => outcomes[i] = MessageOutcome::Rejected(reason.clone()),
            Fate::DeadLetter => dead.push(i),
            Fate::Route {
                topics,
                partition: chosen,
                dedup_key,
                headers,
            } => {
                let names: Vec<&str> = match topics {
                    Some(t) => t.iter().map(String::as_str).collect(),
                    None => vec![topic.spec.name.as_str()],
                };
                let mut routes = Vec::with_capacity(names.len());
                for name in names {
                    let dest = match destinations.get(name) {
                        Some(d) => d.clone(),
                        None => match shared.topic(name) {
                            Ok(d) => {
                                destinations.insert(name.to_string(), d.clone());
                                d
                            }
                            Err(_) => {
                                routes.clear();
                                outcomes[i] = MessageOutcome::Rejected(format!(
                                    "a plugin routed it to {name:?}, which does not exist"
                                ));
                                break;
                            }
                        },
                    };
                    let n = dest.spec.partitions;
                    let p = match chosen {
                        Some(PluginPartition::Index(p)) if *p < n => *p,
                        Some(PluginPartition::Index(p)) => {
                            routes.clear();
                            outcomes[i] = MessageOutcome::Rejected(format!(
                                "a plugin chose partition {p} of {name:?}, which has {n}"
                            ));
                            break;
                        }
                        Some(PluginPartition::HashKey(k)) => kafka_partition(k, n),
                        None => match (partition, records[i].key) {
                            (Some(p), _) if Arc::ptr_eq(&dest, topic) => p,
                            (_, Some(key)) => kafka_partition(key, n),
                            // Sticky: keyless records of one batch stay together.
                            _ => *sticky
                                .entry(name.to_string())
                                .or_insert_with(|| dest.round_robin()),
                        },
                    };
                    routes.push((name.to_string(), p));
                }
                planned[i] = routes;
                keys[i] = dedup_key
                    .as_deref()
                    .or(records[i].dedup_key)
                    .or(records[i].id);
                extras[i] = (dedup_key.as_deref(), headers.as_slice());
            }
        }
    }

    // Dedup: check, append and remember under the windows' locks, taken in
    // name order, so two producers cannot both store one key.
    let mut windows: BTreeMap<String, MutexGuard<'_, DedupWindow>> = BTreeMap::new();
    for (i, routes) in planned.iter().enumerate() {
        if keys[i].is_none() {
            continue;
        }
        for (name, _) in routes {
            if let Some(dest) = destinations.get(name)
                && dest.dedup_enabled()
                && !windows.contains_key(name)
            {
                windows.insert(name.clone(), dest.dedup.lock());
            }
        }
    }
    // Records that repeat a key earlier in this batch, and which one.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    if !windows.is_empty() {
        let mut first_in_batch: HashMap<(&str, &[u8]), usize> = HashMap::new();
        for (i, routes) in planned.iter_mut().enumerate() {
            let Some(key) = keys[i] else { continue };
            let mut verdict = None;
            for (name, _) in routes.iter() {
                let Some(window) = windows.get(name) else {
                    continue;
                };
                if let Some(seen) = window.get(key, now_ms) {
                    verdict = Some(Err(Placement {
                        topic: name.clone(),
                        partition: seen.partition,
                        offset: seen.offset,
                    }));
                    break;
                }
                if let Some(&first) = first_in_batch.get(&(name.as_str(), key)) {
                    verdict = Some(Ok(first));
                    break;
                }
            }
            match verdict {
                Some(Err(original)) => {
                    outcomes[i] = MessageOutcome::Duplicate(original);
                    routes.clear();
                }
                Some(Ok(first)) => {
                    repeats.push((i, first));
                    routes.clear();
                }
                None => {
                    for (name, _) in routes.iter() {
                        if windows.contains_key(name) {
                            first_in_batch.insert((name.as_str(), key), i);
                        }
                    }
                }
            }
        }
    }
    for (i, routes) in planned.iter().enumerate() {
        for route in routes {
            groups
                .entry(route.clone())
                .or_default()
                .push((i, extras[i].0, extras[i].1));
        }
    }

    let mut written = Vec::new();
    let all_unchanged = fates.iter().all(|f| matches!(f, Fate::Route { topics: None, dedup_key: None, headers, .. } if headers.is_empty()));
    for ((name, p), members) in &groups {
        let Some(dest) = destinations.get(name) else {
            continue;
        };
        let Some(partition) = dest.partitions.get(*p as usize) else {
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
                    if let MessageOutcome::Stored(places) = &mut outcomes[*i] {
                        places.push(Placement {
                            topic: name.clone(),
                            partition: *p,
                            offset,
                        });
                    }
                }
                written.push((partition.clone(), partition.log.end_offset()));
            }
            Err(reason) => {
                for (i, _, _) in members {
                    outcomes[*i] = MessageOutcome::Rejected(reason.clone());
                }
            }
        }
    }

    for (i, outcome) in outcomes.iter().enumerate() {
        let (Some(key), MessageOutcome::Stored(places)) = (keys[i], outcome) else {
            continue;
        };
        for place in places {
            if let Some(window) = windows.get_mut(&place.topic) {
                let seen = Seen {
                    partition: place.partition,
                    offset: place.offset,
                };
                window.insert(key, seen, records[i].timestamp_ms, now_ms);
            }
        }
    }
    drop(windows);
    for (i, first) in repeats {
        outcomes[i] = match &outcomes[first] {
            MessageOutcome::Stored(places) if !places.is_empty() => {
                MessageOutcome::Duplicate(places[0].clone())
            }
            other => other.clone(),
        };
    }

    if !dead.is_empty() {
        dead_letter(
            shared,
            topic,
            &records,
            &dead,
            &mut outcomes,
            &mut written,
            now_ms,
        );
    }
    Ok(Ingested { outcomes, written })
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
fn dead_letter(
    shared: &Shared,
    topic: &Topic,
    records: &[RecordView<'_>],
    dead: &[usize],
    outcomes: &mut [MessageOutcome],
    written: &mut Vec<(Arc<Partition>, u64)>,
    now_ms: i64,
) {
    let dlq = match shared.dead_letter_topic(topic) {
        Ok(t) => t,
        Err(e) => {
            for &i in dead {
                outcomes[i] = MessageOutcome::Rejected(format!(
                    "a plugin failed and the dead-letter topic is unavailable: {e}"
                ));
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
            let mut offsets = bases
                .into_iter()
                .flat_map(|(base, count)| base..base + count);
            for &i in dead {
                if let Some(offset) = offsets.next() {
                    outcomes[i] = MessageOutcome::Stored(vec![Placement {
                        topic: dlq.spec.name.clone(),
                        partition: 0,
                        offset,
                    }]);
                }
            }
            written.push((partition.clone(), partition.log.end_offset()));
        }
        Err(reason) => {
            for &i in dead {
                outcomes[i] = MessageOutcome::Rejected(reason.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
