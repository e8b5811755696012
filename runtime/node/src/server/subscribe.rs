//! A consumer's stream: server-pushed deliveries under credit. The node
//! sends while the consumer's message and byte credit last and otherwise
//! waits for credit or for new data, so what it holds for a consumer is
//! bounded by what that consumer granted.

use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;
use weir_log::LogError;
use weir_proto::BatchHeader;
use weir_proto::frame::{ErrorCode, Frame, StartAt};

use super::io::{fail, read_frame, write_frame};
use crate::auth::{Grant, Right};
use crate::state::Shared;
use crate::topic::{Partition, Topic};

/// Credit granted so far, summed; `None` once the consumer is gone.
pub(super) type Granted = Option<(u64, u64)>;

pub(super) async fn run(
    first: Frame,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (topic, start) = match first {
        Frame::Subscribe {
            topic,
            partition,
            from,
        } => (topic, Start::At { partition, from }),
        Frame::SubscribeAt { topic, positions } => (topic, Start::Positions(positions)),
        _ => return,
    };
    if !grant.allows(Right::Consume, Some(&topic)) {
        fail(
            &mut send,
            ErrorCode::Forbidden,
            format!("the token lacks the consume right on topic {topic:?}"),
        )
        .await;
        return;
    }
    let t = match shared.topic(&topic) {
        Ok(t) => t,
        Err(e) => {
            fail(&mut send, ErrorCode::NotFound, e.to_string()).await;
            return;
        }
    };
    let (partitions, cursors) = match start.resolve(&t) {
        Ok(resolved) => resolved,
        Err((code, message)) => {
            fail(&mut send, code, message).await;
            return;
        }
    };
    let subscribed = partitions
        .iter()
        .zip(&cursors)
        .map(|(p, o)| (p.index, *o))
        .collect();
    if write_frame(
        &mut send,
        &Frame::Subscribed {
            partitions: subscribed,
        },
    )
    .await
    .is_err()
    {
        return;
    }
    tracing::debug!(topic = %topic, partitions = partitions.len(), "subscribed");

    let (credit_tx, mut credit) = watch::channel::<Granted>(Some((0, 0)));
    let reader = tokio::spawn(read_credit(recv, credit_tx));
    let mut watches: Vec<watch::Receiver<u64>> = partitions.iter().map(|p| p.watch()).collect();
    let mut pusher = Pusher::new(
        partitions.into_iter().zip(cursors).collect(),
        shared.config.limits.max_delivery_bytes as u64,
    );
    loop {
        let Some(granted) = *credit.borrow_and_update() else {
            break;
        };
        for w in &mut watches {
            w.borrow_and_update();
        }
        match pusher.push(&mut send, granted).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(Stop::Gone) => {
                reader.abort();
                return;
            }
            Err(Stop::Failed(message)) => {
                fail(&mut send, ErrorCode::Unavailable, message).await;
                reader.abort();
                return;
            }
        }
        let grown = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            changed = credit.changed() => if changed.is_err() { break },
            _ = grown => {}
            _ = shutdown.changed() => {
                fail(&mut send, ErrorCode::Unavailable, "the node is shutting down").await;
                reader.abort();
                return;
            }
        }
    }
    reader.abort();
    let _ = send.finish();
}

/// Why a pusher stopped.
pub(super) enum Stop {
    /// The consumer went away.
    Gone,
    /// A partition cannot be read; the consumer gets this message.
    Failed(String),
}

/// Pushes deliveries from a set of partitions, each at its cursor, under
/// the consumer's credit, taking turns between partitions.
pub(super) struct Pusher {
    cursors: Vec<(Arc<Partition>, u64)>,
    max_delivery: u64,
    used_messages: u64,
    used_bytes: u64,
    turn: usize,
}

impl Pusher {
    pub(super) fn new(cursors: Vec<(Arc<Partition>, u64)>, max_delivery: u64) -> Pusher {
        Pusher {
            cursors,
            max_delivery,
            used_messages: 0,
            used_bytes: 0,
            turn: 0,
        }
    }

    /// Replaces the partitions and cursors; the credit account goes on.
    pub(super) fn reassign(&mut self, cursors: Vec<(Arc<Partition>, u64)>) {
        self.cursors = cursors;
        self.turn = 0;
    }

    /// Where each partition stands.
    pub(super) fn cursors(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.cursors.iter().map(|(p, o)| (p.index, *o))
    }

    /// Sends at most one delivery if credit and data allow; true if it did.
    pub(super) async fn push(
        &mut self,
        send: &mut quinn::SendStream,
        (granted_messages, granted_bytes): (u64, u64),
    ) -> Result<bool, Stop> {
        let messages_left = granted_messages.saturating_sub(self.used_messages);
        let bytes_left = granted_bytes.saturating_sub(self.used_bytes);
        if messages_left == 0 || bytes_left == 0 {
            return Ok(false);
        }
        let n = self.cursors.len();
        for k in 0..n {
            let i = (self.turn + k) % n;
            let (p, cursor) = &mut self.cursors[i];
            if *cursor >= p.visible_end() {
                continue;
            }
            match next_delivery(p, *cursor, messages_left, bytes_left.min(self.max_delivery)) {
                Ok(Some((frame, records, bytes, next))) => {
                    if let Err(e) = write_frame(send, &frame).await {
                        tracing::debug!(error = %e, "consumer went away");
                        return Err(Stop::Gone);
                    }
                    *cursor = next;
                    self.used_messages += records;
                    self.used_bytes += bytes;
                    self.turn = i + 1;
                    return Ok(true);
                }
                Ok(None) => {}
                // Retention deleted what the cursor pointed at: go on from
                // the new start, as a consumer that fell behind would.
                Err(Moved(start)) if start > *cursor => *cursor = start,
                Err(Moved(start)) => {
                    return Err(Stop::Failed(format!(
                        "partition {} cannot be read from {cursor} (start {start})",
                        p.index
                    )));
                }
                Err(Failed(message)) => return Err(Stop::Failed(message)),
            }
        }
        Ok(false)
    }
}

enum NoDelivery {
    /// Retention moved the partition's start past the cursor.
    Moved(u64),
    Failed(String),
}
use NoDelivery::{Failed, Moved};

/// The partitions a subscription reads and the offset each starts at.
type Resolved = (Vec<Arc<Partition>>, Vec<u64>);

/// Where a subscription starts, as its first frame put it.
enum Start {
    /// `subscribe`: one partition or all, from one position.
    At {
        partition: Option<u32>,
        from: StartAt,
    },
    /// `subscribe-at`: the listed partitions, each from its offset.
    Positions(Vec<(u32, u64)>),
}

impl Start {
    /// The partitions to read and the offset each starts at, or the error
    /// to answer with.
    fn resolve(self, t: &Topic) -> Result<Resolved, (ErrorCode, String)> {
        let partition = |p: u32| {
            t.partitions.get(p as usize).cloned().ok_or_else(|| {
                let message = format!(
                    "partition {p} does not exist; topic {:?} has {}",
                    t.spec.name, t.spec.partitions
                );
                (ErrorCode::NotFound, message)
            })
        };
        match self {
            Start::At { partition: p, from } => {
                let partitions = match p {
                    Some(p) => vec![partition(p)?],
                    None => t.partitions.clone(),
                };
                // An offset given for a whole topic is clamped to each
                // partition's end; for one partition, an offset past its
                // end is an error.
                let clamp = p.is_none();
                let cursors = partitions
                    .iter()
                    .map(|p| start_offset(p, from, clamp))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|message| (ErrorCode::InvalidArgument, message))?;
                Ok((partitions, cursors))
            }
            Start::Positions(positions) => {
                if positions.is_empty() {
                    return Err((
                        ErrorCode::InvalidArgument,
                        "subscribe-at lists no partitions".to_string(),
                    ));
                }
                let mut partitions = Vec::with_capacity(positions.len());
                let mut cursors = Vec::with_capacity(positions.len());
                let mut seen = std::collections::HashSet::with_capacity(positions.len());
                for &(p, offset) in &positions {
                    if !seen.insert(p) {
                        return Err((
                            ErrorCode::InvalidArgument,
                            format!("subscribe-at lists partition {p} twice"),
                        ));
                    }
                    let p = partition(p)?;
                    // Past the end is an error here too: a resuming client
                    // that is ahead of the log was told of messages the
                    // node no longer has, and must hear so.
                    let cursor = start_offset(&p, StartAt::Offset(offset), false)
                        .map_err(|message| (ErrorCode::InvalidArgument, message))?;
                    partitions.push(p);
                    cursors.push(cursor);
                }
                Ok((partitions, cursors))
            }
        }
    }
}

pub(super) fn start_offset(p: &Partition, from: StartAt, clamp: bool) -> Result<u64, String> {
    let stats = p.log.stats();
    let end = p.visible_end();
    Ok(match from {
        StartAt::Earliest => stats.start_offset,
        StartAt::Latest => end,
        StartAt::Offset(o) if o > end && clamp => end,
        StartAt::Offset(o) if o > end => {
            return Err(format!(
                "offset {o} is past the end ({end}) of partition {}",
                p.index
            ));
        }
        StartAt::Offset(o) => o.max(stats.start_offset),
        StartAt::Timestamp(ts) => match p.log.offset_for_timestamp(ts) {
            Ok(Some(o)) => o.min(end),
            Ok(None) => end,
            Err(e) => return Err(format!("partition {}: {e}", p.index)),
        },
    })
}

/// Reads whole batches from `offset`, trimmed to the message credit (one
/// batch at least). Returns the frame, its records, its bytes and where
/// the cursor moves.
fn next_delivery(
    p: &Partition,
    offset: u64,
    messages_left: u64,
    bytes_left: u64,
) -> Result<Option<(Frame, u64, u64, u64)>, NoDelivery> {
    let fetched = match p.log.read(offset, bytes_left as usize) {
        Ok(f) => f,
        Err(LogError::OffsetOutOfRange { start, .. }) => return Err(Moved(start)),
        Err(e) => return Err(Failed(format!("partition {}: {e}", p.index))),
    };
    if fetched.batches.is_empty() {
        return Ok(None);
    }
    let (mut cut, mut records, mut next) = (0usize, 0u64, offset);
    while cut < fetched.batches.len() {
        let Ok(h) = BatchHeader::parse(&fetched.batches[cut..]) else {
            break;
        };
        let count = u64::from(h.record_count);
        if cut > 0 && records + count > messages_left {
            break;
        }
        records += count;
        cut += h.batch_len as usize;
        next = h.next_offset();
    }
    if cut == 0 {
        return Err(Failed(format!(
            "partition {}: a stored batch at offset {offset} does not parse",
            p.index
        )));
    }
    let batches = fetched.batches.slice(..cut.min(fetched.batches.len()));
    let bytes = batches.len() as u64;
    let frame = Frame::Delivery {
        partition: p.index,
        next_offset: next,
        end_offset: fetched.end_offset,
        batches,
    };
    Ok(Some((frame, records, bytes, next)))
}

/// Sums the consumer's credit frames; ends the subscription when the
/// consumer finishes its side or sends anything else.
async fn read_credit(mut recv: quinn::RecvStream, credit: watch::Sender<Granted>) {
    loop {
        match read_frame(&mut recv).await {
            Ok(Some(Frame::Credit { messages, bytes })) => {
                credit.send_modify(|c| {
                    if let Some((m, b)) = c {
                        *m = m.saturating_add(messages.into());
                        *b = b.saturating_add(bytes.into());
                    }
                });
            }
            Ok(Some(other)) => {
                tracing::debug!(
                    kind = other.kind().name(),
                    "consumer sent a frame other than credit; ending"
                );
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "consumer stream failed");
                break;
            }
        }
    }
    credit.send_replace(None);
}
