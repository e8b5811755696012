//! A group member's stream. Stream mode pushes the member's assigned
//! partitions under its credit, like a subscription, and sends a new
//! `assignment` when the group rebalances or seeks. Queue mode hands out
//! messages up to the member's prefetch and takes acks and nacks. The
//! member leaves when its stream or connection ends; its share goes back
//! to the group.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use tokio::sync::watch;
use weir_proto::BatchHeader;
use weir_proto::frame::{ErrorCode, Frame, GroupMode, StartAt};

use super::io::{fail, read_frame, write_frame};
use super::subscribe::{Granted, Pusher, Stop};
use crate::NodeError;
use crate::auth::{Grant, Right};
use crate::group::{self, DeadLetter, GroupTopic, StreamShare};
use crate::state::{Shared, now_ms};
use crate::topic::{Partition, Topic};

/// Most messages handed to a queue-mode member in one round.
const PICK_MAX: usize = 1000;

/// A joined member: leaves its group when dropped.
struct Joined {
    shared: Arc<Shared>,
    gt: Arc<GroupTopic>,
    topic: Arc<Topic>,
    id: u64,
}

impl Drop for Joined {
    /// Leaving: in stream mode the partitions are dealt again; in queue
    /// mode what the member held is redelivered (or dead-lettered).
    fn drop(&mut self) {
        let (shared, gt, topic, id) = (
            self.shared.clone(),
            self.gt.clone(),
            self.topic.clone(),
            self.id,
        );
        tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let dead = gt.leave(id, now, topic.partitions.len());
            group::dead_letter(&shared, &gt, &topic, &dead, now);
            tracing::debug!(group = %gt.group, topic = %gt.topic, member = id, "member left");
        });
    }
}

pub(super) async fn run(
    first: Frame,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
    shutdown: watch::Receiver<bool>,
) {
    let Frame::JoinGroup {
        group,
        topic,
        member,
        prefetch,
        options,
    } = first
    else {
        return;
    };
    if !grant.allows(Right::Consume, Some(&topic)) {
        let message = format!("the token lacks the consume right on topic {topic:?}");
        fail(&mut send, ErrorCode::Forbidden, message).await;
        return;
    }
    let t = match shared.topic(&topic) {
        Ok(t) => t,
        Err(e) => {
            fail(&mut send, ErrorCode::NotFound, e.to_string()).await;
            return;
        }
    };
    let s = shared.clone();
    let topic_ref = t.clone();
    let joined =
        tokio::task::spawn_blocking(move || -> Result<(Arc<GroupTopic>, u64), NodeError> {
            let settings = s.group_settings(&group, &options)?;
            let gt = s.groups.open(&group, &topic_ref, &settings)?;
            let id = s.groups.member_id();
            let start = options.start.unwrap_or(StartAt::Earliest);
            gt.join(id, member, prefetch, &topic_ref, start)?;
            Ok((gt, id))
        })
        .await;
    let (gt, id) = match joined {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "join refused");
            fail(&mut send, e.code(), e.to_string()).await;
            return;
        }
        Err(e) => {
            fail(&mut send, ErrorCode::Internal, format!("join failed: {e}")).await;
            return;
        }
    };
    tracing::debug!(group = %gt.group, topic = %gt.topic, member = id, mode = gt.settings.mode.name(), "member joined");
    let member = Joined {
        shared,
        gt,
        topic: t,
        id,
    };
    let (credit_tx, credit) = watch::channel::<Granted>(Some((0, 0)));
    let reader = tokio::spawn(read_member(
        recv,
        credit_tx,
        member.gt.clone(),
        member.shared.clone(),
        member.topic.clone(),
        id,
    ));
    let result = match member.gt.settings.mode {
        GroupMode::Stream => stream_member(&member, &mut send, credit, shutdown).await,
        GroupMode::Queue => queue_member(&member, &mut send, credit, shutdown).await,
    };
    reader.abort();
    match result {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(Stop::Gone) => {}
        Err(Stop::Failed(message)) => fail(&mut send, ErrorCode::Unavailable, message).await,
    }
    drop(member);
}

/// Stream mode: the member's partitions under its credit.
async fn stream_member(
    m: &Joined,
    send: &mut quinn::SendStream,
    mut credit: watch::Receiver<Granted>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Stop> {
    let mut changed = m.gt.watch();
    let max_delivery = m.shared.config.limits.max_delivery_bytes as u64;
    let mut pusher = Pusher::new(Vec::new(), max_delivery);
    let mut share: Option<StreamShare> = None;
    let mut watches: Vec<watch::Receiver<u64>> = Vec::new();
    loop {
        let Some(granted) = *credit.borrow_and_update() else {
            return Ok(());
        };
        changed.borrow_and_update();
        let now = m.gt.share(m.id);
        if share.as_ref() != Some(&now) {
            // A partition the member keeps goes on where it is, unless a
            // seek moved the group; a new one starts at the committed offset.
            let reset = share
                .as_ref()
                .is_none_or(|s| s.seek_epoch != now.seek_epoch);
            let kept: Vec<(u32, u64)> = pusher.cursors().collect();
            let cursors: Vec<(Arc<Partition>, u64)> = now
                .partitions
                .iter()
                .filter_map(|p| m.topic.partitions.get(*p as usize).cloned())
                .map(|p| {
                    let at = kept
                        .iter()
                        .find(|(i, _)| *i == p.index && !reset)
                        .map_or_else(|| m.gt.committed(p.index), |(_, o)| *o);
                    (p, at)
                })
                .collect();
            let frame = Frame::Assignment {
                generation: now.generation,
                mode: GroupMode::Stream,
                partitions: cursors.iter().map(|(p, o)| (p.index, *o)).collect(),
            };
            if write_frame(send, &frame).await.is_err() {
                return Err(Stop::Gone);
            }
            watches = cursors.iter().map(|(p, _)| p.watch()).collect();
            pusher.reassign(cursors);
            share = Some(now);
        }
        for w in &mut watches {
            w.borrow_and_update();
        }
        if pusher.push(send, granted).await? {
            continue;
        }
        let grown = async {
            if watches.is_empty() {
                std::future::pending::<()>().await;
            } else {
                let _ = select_all(watches.iter_mut().map(|w| Box::pin(w.changed()))).await;
            }
        };
        tokio::select! {
            c = credit.changed() => if c.is_err() { return Ok(()) },
            _ = changed.changed() => {}
            _ = grown => {}
            _ = shutdown.changed() => return Err(Stop::Failed("the node is shutting down".into())),
        }
    }
}

/// Queue mode: messages up to the member's prefetch, redeliveries when
/// they fall due.
async fn queue_member(
    m: &Joined,
    send: &mut quinn::SendStream,
    mut credit: watch::Receiver<Granted>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Stop> {
    let mut changed = m.gt.watch();
    let mut watches: Vec<watch::Receiver<u64>> =
        m.topic.partitions.iter().map(|p| p.watch()).collect();
    let max_bytes = m.shared.config.limits.max_delivery_bytes;
    let mut sent_generation = None;
    loop {
        if credit.borrow_and_update().is_none() {
            return Ok(());
        }
        changed.borrow_and_update();
        for w in &mut watches {
            w.borrow_and_update();
        }
        let now = now_ms();
        let dead = m.gt.expire(now);
        settle_dead(m, dead);
        for p in &m.topic.partitions {
            m.gt.fill(p);
        }
        let generation = m.gt.generation();
        if sent_generation != Some(generation) {
            let frame = Frame::Assignment {
                generation,
                mode: GroupMode::Queue,
                partitions: m
                    .topic
                    .partitions
                    .iter()
                    .map(|p| (p.index, m.gt.committed(p.index)))
                    .collect(),
            };
            if write_frame(send, &frame).await.is_err() {
                return Err(Stop::Gone);
            }
            sent_generation = Some(generation);
        }
        let (generation, picks) =
            m.gt.pick(m.id, now, PICK_MAX)
                .map_err(|e| Stop::Failed(e.to_string()))?;
        if !picks.is_empty() {
            for (p, messages) in picks {
                let Some(partition) = m.topic.partitions.get(p as usize) else {
                    continue;
                };
                send_queue_deliveries(m, send, partition, generation, &messages, max_bytes).await?;
            }
            continue;
        }
        let wake = m.gt.next_wake().map(|at| {
            let ms = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
            Duration::from_millis(ms.max(1))
        });
        let sleep = async {
            match wake {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let grown = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            c = credit.changed() => if c.is_err() { return Ok(()) },
            _ = changed.changed() => {}
            _ = grown => {}
            _ = sleep => {}
            _ = shutdown.changed() => return Err(Stop::Failed("the node is shutting down".into())),
        }
    }
}

fn settle_dead(m: &Joined, dead: Vec<DeadLetter>) {
    if dead.is_empty() {
        return;
    }
    let (shared, gt, topic) = (m.shared.clone(), m.gt.clone(), m.topic.clone());
    tokio::task::spawn_blocking(move || group::dead_letter(&shared, &gt, &topic, &dead, now_ms()));
}

/// Sends `messages` (offset, attempt; in offset order) of partition `p` in
/// as few `queue-delivery` frames as the delivery size allows, each with
/// the stored batches that hold its messages.
async fn send_queue_deliveries(
    m: &Joined,
    send: &mut quinn::SendStream,
    p: &Partition,
    generation: u64,
    messages: &[(u64, u32)],
    max_bytes: usize,
) -> Result<(), Stop> {
    let mut i = 0;
    while i < messages.len() {
        let fetched = match p.log.read(messages[i].0, max_bytes) {
            Ok(f) => f,
            Err(weir_log::LogError::OffsetOutOfRange { start, .. }) => {
                // Retention deleted them while they waited: they cannot
                // be delivered, so they are finished.
                let gone: Vec<(u32, u64)> = messages[i..]
                    .iter()
                    .filter(|(o, _)| *o < start)
                    .map(|(o, _)| (p.index, *o))
                    .collect();
                tracing::warn!(group = %m.gt.group, partition = p.index, lost = gone.len(),
                    "messages deleted by retention before delivery");
                let _ = m.gt.ack(generation, &gone);
                i += gone.len().max(1);
                continue;
            }
            Err(e) => return Err(Stop::Failed(format!("partition {}: {e}", p.index))),
        };
        let (frame_messages, batches, used) = cover(&fetched.batches, &messages[i..], max_bytes);
        if used == 0 {
            return Err(Stop::Failed(format!(
                "partition {}: the stored batch at offset {} does not parse",
                p.index, messages[i].0
            )));
        }
        let frame = Frame::QueueDelivery {
            generation,
            partition: p.index,
            messages: frame_messages,
            batches,
        };
        if write_frame(send, &frame).await.is_err() {
            return Err(Stop::Gone);
        }
        i += used;
    }
    Ok(())
}

/// Picks from `batches` (read from the first message's offset) the whole
/// batches holding messages of `wanted`, up to `max_bytes` (one batch at
/// least). Returns the messages covered, the batches (one slice if they
/// are adjacent, else a copy), and how many of `wanted` were covered.
fn cover(
    batches: &Bytes,
    wanted: &[(u64, u32)],
    max_bytes: usize,
) -> (Vec<(u64, u32)>, Bytes, usize) {
    let mut pos = 0usize;
    let mut j = 0usize;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut total = 0usize;
    while pos < batches.len() && j < wanted.len() {
        let Ok(h) = BatchHeader::parse(&batches[pos..]) else {
            break;
        };
        let len = h.batch_len as usize;
        let end = (pos + len).min(batches.len());
        let next = h.next_offset();
        let holds = wanted[j..].iter().take_while(|(o, _)| *o < next).count();
        if holds > 0 {
            if total > 0 && total + (end - pos) > max_bytes {
                break;
            }
            match ranges.last_mut() {
                Some((_, e)) if *e == pos => *e = end,
                _ => ranges.push((pos, end)),
            }
            total += end - pos;
            j += holds;
        }
        pos = end;
    }
    let out = match ranges.as_slice() {
        [] => Bytes::new(),
        [(s, e)] => batches.slice(*s..*e),
        many => {
            let mut v = Vec::with_capacity(total);
            for (s, e) in many {
                v.extend_from_slice(&batches[*s..*e]);
            }
            Bytes::from(v)
        }
    };
    (wanted[..j].to_vec(), out, j)
}

/// Reads the member's frames: credit (stream mode), commits, acks and
/// nacks. Ends the membership when the member finishes its side, sends
/// something else, or the stream fails.
async fn read_member(
    mut recv: quinn::RecvStream,
    credit: watch::Sender<Granted>,
    gt: Arc<GroupTopic>,
    shared: Arc<Shared>,
    topic: Arc<Topic>,
    id: u64,
) {
    loop {
        let frame = match read_frame(&mut recv).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "member stream failed");
                break;
            }
        };
        let result = match frame {
            Frame::Credit { messages, bytes } => {
                credit.send_modify(|c| {
                    if let Some((m, b)) = c {
                        *m = m.saturating_add(messages.into());
                        *b = b.saturating_add(bytes.into());
                    }
                });
                Ok(())
            }
            Frame::Commit {
                generation,
                offsets,
            } => gt.commit(id, generation, &offsets).map(|_| ()),
            Frame::Ack {
                generation,
                messages,
            } => gt.ack(generation, &messages),
            Frame::Nack {
                generation,
                partition,
                offset,
                delay_ms,
                error,
            } => gt
                .nack(
                    id,
                    generation,
                    partition,
                    offset,
                    delay_ms,
                    &error,
                    now_ms(),
                )
                .map(|dead| {
                    if !dead.is_empty() {
                        let (shared, gt, topic) = (shared.clone(), gt.clone(), topic.clone());
                        tokio::task::spawn_blocking(move || {
                            group::dead_letter(&shared, &gt, &topic, &dead, now_ms())
                        });
                    }
                }),
            other => {
                tracing::debug!(
                    kind = other.kind().name(),
                    "member sent a frame a member may not send; leaving"
                );
                break;
            }
        };
        if let Err(e) = result {
            tracing::error!(group = %gt.group, error = %e, "group state could not be recorded");
            break;
        }
    }
    credit.send_replace(None);
}

#[cfg(test)]
mod tests {
    use weir_proto::{BatchBuilder, NewRecord};

    use super::*;

    fn batch(base: u64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            let payload = format!("m{i}");
            b.push(&NewRecord {
                timestamp_ms: 1,
                key: None,
                id: None,
                dedup_key: None,
                headers: &[],
                payload: payload.as_bytes(),
            })
            .expect("push");
        }
        let mut bytes = b.finish().expect("finish");
        weir_proto::set_base_offset(&mut bytes, base).expect("base");
        bytes
    }

    #[test]
    fn cover_takes_the_batches_holding_wanted_offsets() {
        let mut all = Vec::new();
        for base in [0u64, 10, 20, 30] {
            all.extend(batch(base, 10));
        }
        let one = batch(0, 10).len();
        let all = Bytes::from(all);
        // Offsets in batches 0 and 2: two ranges, copied together.
        let (m, b, used) = cover(&all, &[(3, 1), (4, 2), (25, 1)], usize::MAX);
        assert_eq!((m.len(), used, b.len()), (3, 3, 2 * one));
        // Adjacent batches are one slice of the read.
        let (_, b, _) = cover(&all, &[(3, 1), (15, 1)], usize::MAX);
        assert_eq!(b.len(), 2 * one);
        // The byte limit stops after the first batch but never before it.
        let (m, _, used) = cover(&all, &[(3, 1), (15, 1)], 1);
        assert_eq!((m, used), (vec![(3, 1)], 1));
    }
}
