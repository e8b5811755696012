//! Consumer groups, the member's side: [`GroupMember`] joins a group on a
//! topic and is a stream of [`GroupMessage`]s; [`Acker`] (and the member
//! itself) acks, nacks and commits them. In stream mode the node assigns
//! partitions and the member commits offsets; in queue mode every member
//! may get any message and acks each one. The background task in
//! [`driver`] owns the stream; assignment bookkeeping lives in
//! [`assignment`] and ack coalescing in [`outbox`], both without I/O. A
//! member must never hand the application a message of a partition the
//! node has since taken away or restarted, nor one whose ack the node
//! would ignore.

pub(crate) mod assignment;
mod config;
mod driver;
pub(crate) mod outbox;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};
use weir_proto::frame::{Frame, FrameType, GroupMode, MAX_PARTITIONS};

pub use config::{AckMode, GroupConfig};

use crate::consumer::credit::CreditWindow;
use crate::{ClientError, ConsumedMessage};
use assignment::Assignment;
use driver::{Command, Delivered, Driver, Shared, State, lock};
use outbox::{Outbox, OutboxLimits, Settle};

/// A message handed to a group member: the message, which delivery of it
/// this is, and the generation it was delivered under (which its ack or
/// commit carries). Derefs to the [`ConsumedMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    /// The message.
    pub message: ConsumedMessage,
    /// Queue mode: 1 for the first delivery, more for redeliveries.
    /// Stream mode: always 1.
    pub attempt: u32,
    /// The group's generation when the message was delivered.
    pub generation: u64,
}

impl std::ops::Deref for GroupMessage {
    type Target = ConsumedMessage;

    fn deref(&self) -> &ConsumedMessage {
        &self.message
    }
}

/// A member of a consumer group: a stream of the messages the node gives
/// it, in offset order per partition. Dropping it leaves the group (after
/// sending what it owes); [`GroupMember::close`] does so and waits.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::ClientError> {
/// use futures_util::StreamExt;
/// use weir_client::{GroupConfig, GroupMode};
///
/// let config = GroupConfig::new("billing", "orders").with_mode(GroupMode::Queue);
/// let mut member = client.join_group(config).await?;
/// while let Some(message) = member.next().await {
///     let message = message?;
///     if message.payload.is_empty() {
///         member.nack(&message, None, "empty order")?;
///     } else {
///         member.ack(&message)?;
///     }
/// }
/// member.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GroupMember {
    acker: Acker,
    member: String,
    ack: AckMode,
    rx: mpsc::UnboundedReceiver<Result<Delivered, ClientError>>,
    current: Option<Delivered>,
    done: bool,
}

impl GroupMember {
    /// Joins on a new stream and waits for the first `assignment`.
    pub(crate) async fn join(
        client: crate::Client,
        config: GroupConfig,
    ) -> Result<GroupMember, ClientError> {
        let member = config.checked_member(client.client_name())?;
        let request = Frame::JoinGroup {
            group: config.group.clone(),
            topic: config.topic.clone(),
            member: member.clone(),
            prefetch: config.prefetch,
            options: config.options.clone(),
        };
        let (send, recv, assignment) = open_member(&client, &request).await?;
        let mode = assignment.mode();
        tracing::debug!(group = %config.group, topic = %config.topic, %member,
            mode = mode.name(), generation = assignment.generation(), "joined");
        let topic: Arc<str> = config.topic.as_str().into();
        let shared: Shared = Arc::new(std::sync::Mutex::new(State {
            assignment,
            ended: None,
            membership: 0,
        }));
        let (window, max_delivery_bytes) = match mode {
            GroupMode::Stream => (
                Some(CreditWindow::new(
                    config.window.window_messages,
                    config.window.window_bytes,
                )),
                (config.window.window_bytes as usize).max(weir_proto::limits::MAX_BATCH_BYTES)
                    + 1024,
            ),
            GroupMode::Queue => (None, FrameType::QueueDelivery.max_body_bytes()),
        };
        let (out, rx) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            client,
            group: config.group.clone(),
            topic: topic.clone(),
            member: member.clone(),
            shared: shared.clone(),
            window,
            max_delivery_bytes,
            outbox: Outbox::new(OutboxLimits::for_prefetch(config.prefetch)),
            join: request,
            window_config: config.window,
            prefetch: config.prefetch,
        };
        tokio::spawn(driver.run(send, recv, out, commands_rx));
        Ok(GroupMember {
            acker: Acker {
                commands,
                shared,
                group: config.group.as_str().into(),
                topic,
                mode,
            },
            member,
            ack: config.ack,
            rx,
            current: None,
            done: false,
        })
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.acker.group
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.acker.topic
    }

    /// The name this member joined with.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The group's mode, as the node assigned.
    pub fn mode(&self) -> GroupMode {
        self.acker.mode
    }

    /// The generation of the latest assignment (or queue delivery).
    pub fn generation(&self) -> u64 {
        lock(&self.acker.shared).assignment.generation()
    }

    /// The latest assignment as the node listed it: in stream mode the
    /// partitions this member holds and the offset each started at; in
    /// queue mode every partition and its ack floor.
    pub fn assignment(&self) -> Vec<(u32, u64)> {
        lock(&self.acker.shared).assignment.listed().to_vec()
    }

    /// A handle that acks, nacks and commits this member's messages from
    /// other tasks while the member is being polled.
    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }

    /// Queue mode: `message` is done. See [`Acker::ack`].
    pub fn ack(&self, message: &GroupMessage) -> Result<(), ClientError> {
        self.acker.ack(message)
    }

    /// Queue mode: these messages are done. See [`Acker::ack_many`].
    pub fn ack_many(&self, messages: &[GroupMessage]) -> Result<(), ClientError> {
        self.acker.ack_many(messages)
    }

    /// Queue mode: `message` failed. See [`Acker::nack`].
    pub fn nack(
        &self,
        message: &GroupMessage,
        delay: Option<Duration>,
        error: &str,
    ) -> Result<(), ClientError> {
        self.acker.nack(message, delay, error)
    }

    /// Stream mode: commit past `message`. See [`Acker::commit`].
    pub fn commit(&self, message: &GroupMessage) -> Result<(), ClientError> {
        self.acker.commit(message)
    }

    /// Stream mode: commit offsets. See [`Acker::commit_offsets`].
    pub fn commit_offsets(
        &self,
        generation: u64,
        offsets: &[(u32, u64)],
    ) -> Result<(), ClientError> {
        self.acker.commit_offsets(generation, offsets)
    }

    /// Ack (queue mode) or commit past (stream mode). See [`Acker::done`].
    pub fn done(&self, message: &GroupMessage) -> Result<(), ClientError> {
        self.acker.done(message)
    }

    /// Sends every pending ack and commit now. See [`Acker::flush`].
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.acker.flush().await
    }

    /// Leaves the group: sends every pending ack and commit (automatic
    /// ones included), finishes the stream and waits until the node has
    /// received it all. Messages delivered but not handed out are then
    /// the node's to give to another member.
    pub async fn close(self) -> Result<(), ClientError> {
        let (answer, done) = oneshot::channel();
        if self.acker.commands.send(Command::Close(answer)).is_err() {
            return Err(self.acker.ended());
        }
        done.await.unwrap_or_else(|_| Err(self.acker.ended()))
    }
}

/// Sends `join-group` on a new stream of the client's connection (dialling
/// again if that is closed) and waits for the first `assignment`; checks
/// that the mode is the one the join stated, if it stated one.
pub(super) async fn open_member(
    client: &crate::Client,
    request: &Frame,
) -> Result<(quinn::SendStream, quinn::RecvStream, Assignment), ClientError> {
    let Frame::JoinGroup {
        group,
        topic,
        options,
        ..
    } = request
    else {
        return Err(ClientError::Invalid(format!(
            "a member joins with join-group, not {}",
            request.kind().name()
        )));
    };
    let (_, send, recv, answer) = client.open_stream(request, FrameType::Assignment).await?;
    let Frame::Assignment {
        generation,
        mode,
        partitions,
    } = answer
    else {
        return Err(ClientError::Protocol(format!(
            "expected assignment for group {group:?} on {topic:?}, got {}",
            answer.kind().name()
        )));
    };
    let assignment = Assignment::new(generation, mode, partitions)
        .map_err(|e| ClientError::Protocol(format!("bad assignment: {e}")))?;
    if let Some(asked) = options.mode.filter(|m| *m != assignment.mode()) {
        return Err(ClientError::Protocol(format!(
            "joined group {group:?} in {} mode, but the node assigned in {} mode",
            asked.name(),
            assignment.mode().name()
        )));
    }
    Ok((send, recv, assignment))
}

impl Stream for GroupMember {
    type Item = Result<GroupMessage, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(current) = &mut this.current {
                let (membership, is_current) = {
                    let state = lock(&this.acker.shared);
                    let is_current = current
                        .messages
                        .front()
                        .is_some_and(|m| state.assignment.is_current(m.partition, m.generation));
                    (state.membership, is_current)
                };
                if current.membership != membership {
                    // Delivered before the member joined again: the node
                    // delivers these again to whoever holds them now.
                    tracing::debug!(
                        messages = current.messages.len(),
                        "dropped messages delivered before the member joined again"
                    );
                    this.current = None;
                    continue;
                }
                let next = current.messages.pop_front();
                if current.messages.is_empty() {
                    // The whole delivery is consumed: its credit comes back.
                    if current.records > 0 || current.bytes > 0 {
                        let _ = this.acker.commands.send(Command::Consumed {
                            records: current.records,
                            bytes: current.bytes,
                            membership,
                        });
                    }
                    this.current = None;
                }
                let Some(message) = next else { continue };
                if !is_current {
                    tracing::debug!(
                        partition = message.partition,
                        offset = message.offset,
                        generation = message.generation,
                        "dropped a message delivered before the latest assignment"
                    );
                    continue;
                }
                if this.ack == AckMode::Auto {
                    let _ = this
                        .acker
                        .commands
                        .send(Command::Settle(auto_settle(this.acker.mode, &message)));
                }
                return Poll::Ready(Some(Ok(message)));
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(delivered))) => this.current = Some(delivered),
                Poll::Ready(Some(Err(err))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// What [`AckMode::Auto`] sends for a message handed out.
fn auto_settle(mode: GroupMode, message: &GroupMessage) -> Settle {
    match mode {
        GroupMode::Queue => Settle::Ack {
            generation: message.generation,
            partition: message.partition,
            offset: message.offset,
        },
        GroupMode::Stream => Settle::Commit {
            generation: message.generation,
            partition: message.partition,
            offset: message.offset.saturating_add(1),
        },
    }
}

/// Acks, nacks and commits for one member, usable from any task. Items
/// leave in the order they were given, coalesced: acks and commits wait
/// up to 200 ms (or until 1000, or half the prefetch, are waiting) to
/// share a frame; a nack sends what is pending and itself at once. None
/// of these calls waits for the network; [`Acker::flush`] does.
#[derive(Debug, Clone)]
pub struct Acker {
    commands: mpsc::UnboundedSender<Command>,
    shared: Shared,
    group: Arc<str>,
    topic: Arc<str>,
    mode: GroupMode,
}

impl Acker {
    /// Queue mode: `message` is done; the node will not deliver it again.
    /// With [`AckMode::Auto`] the member already acked it.
    pub fn ack(&self, message: &GroupMessage) -> Result<(), ClientError> {
        self.check(GroupMode::Queue, "ack", message)?;
        self.send(Settle::Ack {
            generation: message.generation,
            partition: message.partition,
            offset: message.offset,
        })
    }

    /// Queue mode: acks each message, in order.
    pub fn ack_many(&self, messages: &[GroupMessage]) -> Result<(), ClientError> {
        for m in messages {
            self.check(GroupMode::Queue, "ack", m)?;
        }
        messages.iter().try_for_each(|m| self.ack(m))
    }

    /// Queue mode: `message` failed. The node redelivers it after `delay`,
    /// or after the group's backoff step for its attempt when `None`, and
    /// dead-letters it instead once it has had the group's max deliveries;
    /// `error` (cut to 4096 bytes) goes into the dead letter's headers.
    /// Needs [`AckMode::Manual`]: an auto-acked message cannot be nacked.
    pub fn nack(
        &self,
        message: &GroupMessage,
        delay: Option<Duration>,
        error: &str,
    ) -> Result<(), ClientError> {
        self.check(GroupMode::Queue, "nack", message)?;
        self.send(Settle::Nack {
            generation: message.generation,
            partition: message.partition,
            offset: message.offset,
            delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            error: error.to_owned(),
        })
    }

    /// Stream mode: commits the offset after `message` on its partition,
    /// under the generation it was delivered in (the node ignores the
    /// commit if the partition has since been reassigned). Within a
    /// generation a commit never moves a partition back.
    pub fn commit(&self, message: &GroupMessage) -> Result<(), ClientError> {
        self.check(GroupMode::Stream, "commit", message)?;
        self.send(Settle::Commit {
            generation: message.generation,
            partition: message.partition,
            offset: message.offset.saturating_add(1),
        })
    }

    /// Stream mode: commits `(partition, next offset to consume)` pairs
    /// under `generation` (that of the messages consumed, see
    /// [`GroupMessage::generation`]).
    pub fn commit_offsets(
        &self,
        generation: u64,
        offsets: &[(u32, u64)],
    ) -> Result<(), ClientError> {
        self.check_mode(GroupMode::Stream, "commit")?;
        if let Some((p, _)) = offsets.iter().find(|(p, _)| *p >= MAX_PARTITIONS) {
            return Err(ClientError::Invalid(format!(
                "cannot commit partition {p}: topics have at most {MAX_PARTITIONS} partitions"
            )));
        }
        offsets.iter().try_for_each(|(partition, offset)| {
            self.send(Settle::Commit {
                generation,
                partition: *partition,
                offset: *offset,
            })
        })
    }

    /// The message is finished with: [`ack`](Acker::ack) in queue mode,
    /// [`commit`](Acker::commit) in stream mode.
    pub fn done(&self, message: &GroupMessage) -> Result<(), ClientError> {
        match self.mode {
            GroupMode::Queue => self.ack(message),
            GroupMode::Stream => self.commit(message),
        }
    }

    /// Sends every pending ack and commit now, and returns once they are
    /// written to the stream (not once the node has them: see
    /// [`GroupMember::close`]).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (answer, done) = oneshot::channel();
        self.commands
            .send(Command::Flush(answer))
            .map_err(|_| self.ended())?;
        done.await.unwrap_or_else(|_| Err(self.ended()))
    }

    fn check(
        &self,
        mode: GroupMode,
        what: &str,
        message: &GroupMessage,
    ) -> Result<(), ClientError> {
        self.check_mode(mode, what)?;
        if *message.topic != *self.topic {
            return Err(ClientError::Invalid(format!(
                "cannot {what} a message of topic {:?}: this member of group {:?} consumes {:?}",
                message.topic, self.group, self.topic
            )));
        }
        Ok(())
    }

    fn check_mode(&self, mode: GroupMode, what: &str) -> Result<(), ClientError> {
        if mode == self.mode {
            return Ok(());
        }
        let instead = match self.mode {
            GroupMode::Stream => "commit",
            GroupMode::Queue => "ack or nack",
        };
        Err(ClientError::Invalid(format!(
            "cannot {what} in group {:?}: it is in {} mode ({instead} instead)",
            self.group,
            self.mode.name()
        )))
    }

    fn send(&self, item: Settle) -> Result<(), ClientError> {
        self.commands
            .send(Command::Settle(item))
            .map_err(|_| self.ended())
    }

    /// Why the member's stream is gone.
    fn ended(&self) -> ClientError {
        lock(&self.shared)
            .ended
            .clone()
            .unwrap_or(ClientError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(partition: u32, offset: u64, generation: u64) -> GroupMessage {
        GroupMessage {
            message: ConsumedMessage {
                topic: "t".into(),
                partition,
                offset,
                timestamp_ms: 0,
                key: None,
                id: None,
                headers: Vec::new(),
                payload: Bytes::from_static(b"x"),
            },
            attempt: 1,
            generation,
        }
    }

    fn acker(mode: GroupMode) -> (Acker, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let assignment = Assignment::new(1, mode, vec![(0, 0)]).expect("assignment");
        let acker = Acker {
            commands,
            shared: Arc::new(std::sync::Mutex::new(State {
                assignment,
                ended: None,
                membership: 0,
            })),
            group: "g".into(),
            topic: "t".into(),
            mode,
        };
        (acker, rx)
    }

    fn settled(rx: &mut mpsc::UnboundedReceiver<Command>) -> Vec<Settle> {
        let mut out = Vec::new();
        while let Ok(Command::Settle(s)) = rx.try_recv() {
            out.push(s);
        }
        out
    }

    #[test]
    fn auto_mode_acks_or_commits_past_the_message() {
        assert_eq!(
            auto_settle(GroupMode::Stream, &message(2, 41, 7)),
            Settle::Commit {
                generation: 7,
                partition: 2,
                offset: 42
            }
        );
        assert_eq!(
            auto_settle(GroupMode::Queue, &message(2, 41, 7)),
            Settle::Ack {
                generation: 7,
                partition: 2,
                offset: 41
            }
        );
    }

    #[test]
    fn calls_keep_their_order_and_their_generation() {
        let (a, mut rx) = acker(GroupMode::Queue);
        a.ack(&message(0, 1, 1)).expect("ack");
        a.nack(&message(0, 2, 1), Some(Duration::from_millis(1500)), "boom")
            .expect("nack");
        a.done(&message(0, 3, 2)).expect("done acks");
        assert_eq!(
            settled(&mut rx),
            vec![
                Settle::Ack {
                    generation: 1,
                    partition: 0,
                    offset: 1
                },
                Settle::Nack {
                    generation: 1,
                    partition: 0,
                    offset: 2,
                    delay_ms: Some(1500),
                    error: "boom".into()
                },
                Settle::Ack {
                    generation: 2,
                    partition: 0,
                    offset: 3
                },
            ]
        );
    }

    #[test]
    fn refuses_the_other_modes_calls_and_foreign_messages() {
        let (q, _rx) = acker(GroupMode::Queue);
        let err = q
            .commit(&message(0, 1, 1))
            .expect_err("commit in queue mode");
        assert!(
            err.to_string().contains("queue mode (ack or nack instead)"),
            "{err}"
        );
        let (s, mut rx) = acker(GroupMode::Stream);
        let err = s.ack(&message(0, 1, 1)).expect_err("ack in stream mode");
        assert!(
            err.to_string().contains("stream mode (commit instead)"),
            "{err}"
        );
        assert!(s.nack(&message(0, 1, 1), None, "x").is_err());
        let mut foreign = message(0, 1, 1);
        foreign.message.topic = "other".into();
        let err = s.commit(&foreign).expect_err("other topic");
        assert!(err.to_string().contains("\"other\""), "{err}");
        assert!(s.commit_offsets(1, &[(5000, 1)]).is_err());
        s.commit_offsets(3, &[(0, 10), (1, 20)])
            .expect("commit offsets");
        assert_eq!(settled(&mut rx).len(), 2);
    }

    #[test]
    fn calls_after_the_end_say_why() {
        let (a, rx) = acker(GroupMode::Queue);
        drop(rx);
        assert!(matches!(a.ack(&message(0, 1, 1)), Err(ClientError::Closed)));
        lock(&a.shared).ended = Some(ClientError::ConnectionLost("gone".into()));
        let err = a.ack(&message(0, 1, 1)).expect_err("ended");
        assert_eq!(err.to_string(), "connection lost: gone");
    }
}
