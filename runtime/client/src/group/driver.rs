//! The background task of a group member. It alone writes the member's
//! stream, so acks, nacks and commits leave in the order they were asked
//! for; it reads `assignment`, `delivery` and `queue-delivery` frames,
//! turns deliveries into messages for the application, grants credit
//! (stream mode) as they are consumed and sends what the [`Outbox`] holds
//! when it is due. Decisions live in [`assignment`](super::assignment),
//! [`outbox`](super::outbox) and the credit window; this task must never
//! read a frame larger than the mode allows nor flush acks after the node
//! has ended the membership.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weir_proto::frame::{Frame, FrameType, GroupMode};

use super::GroupMessage;
use super::assignment::{Assignment, pick_listed};
use super::outbox::{Outbox, OutboxLimits, Settle};
use crate::consumer::Resumption;
use crate::consumer::credit::CreditWindow;
use crate::consumer::delivery::parse_delivery;
use crate::{ClientError, ConsumerConfig, io};

/// What the member and its ackers ask of the task, in order.
#[derive(Debug)]
pub(super) enum Command {
    Settle(Settle),
    /// Stream mode: a delivery was handed out (or dropped) whole.
    Consumed {
        records: u32,
        bytes: u32,
        /// The membership it was delivered in: credit of an earlier one
        /// belongs to a stream that is gone.
        membership: u64,
    },
    /// Send everything pending; answer once written.
    Flush(oneshot::Sender<Result<(), ClientError>>),
    /// Flush, finish the stream, and answer once the node has it all.
    Close(oneshot::Sender<Result<(), ClientError>>),
}

/// One delivery's messages, and its credit (zero in queue mode).
pub(super) struct Delivered {
    pub(super) messages: VecDeque<GroupMessage>,
    pub(super) records: u32,
    pub(super) bytes: u32,
    /// Which join of the member it came under (see [`State::membership`]).
    pub(super) membership: u64,
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivered({} messages left)", self.messages.len())
    }
}

/// What the task and the member share: the assignment, and why the task
/// ended.
#[derive(Debug)]
pub(super) struct State {
    pub(super) assignment: Assignment,
    pub(super) ended: Option<ClientError>,
    /// How many times the member joined again after losing its stream.
    /// Messages delivered under an earlier membership are not handed out:
    /// generations of different memberships do not compare (a restarted
    /// node counts them afresh).
    pub(super) membership: u64,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // The state is updated in single assignments, so a panic elsewhere
    // cannot leave it half-written.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) type Out = mpsc::UnboundedSender<Result<Delivered, ClientError>>;

/// How long `close` waits for the node to acknowledge the last frames.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long a member whose stream the node ended waits to learn whether
/// the whole connection is closing (and why).
const CLOSE_REASON_WAIT: Duration = Duration::from_millis(500);

pub(super) struct Driver {
    /// Keeps the connection open while the member lives.
    pub(super) client: crate::Client,
    pub(super) group: String,
    pub(super) topic: Arc<str>,
    pub(super) member: String,
    pub(super) shared: Shared,
    /// Stream mode only.
    pub(super) window: Option<CreditWindow>,
    pub(super) max_delivery_bytes: usize,
    pub(super) outbox: Outbox,
    /// The `join-group` to send again after a lost stream.
    pub(super) join: Frame,
    /// The window (stream mode) and how long to try joining again.
    pub(super) window_config: ConsumerConfig,
    pub(super) prefetch: u32,
}

/// How the loop ended without an error.
enum End {
    /// `close` was called.
    Close(oneshot::Sender<Result<(), ClientError>>),
    /// The application dropped the member.
    Dropped,
}

/// How an attempt to join again ended without an error.
enum Rejoin {
    /// On a new stream.
    Joined(quinn::SendStream, quinn::RecvStream),
    /// The application closed or dropped the member meanwhile.
    Stopped,
}

impl Driver {
    #[tracing::instrument(name = "group", skip_all,
        fields(group = %self.group, topic = %self.topic, member = %self.member))]
    pub(super) async fn run(
        mut self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        out: Out,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        loop {
            let result = self.serve(&mut send, recv, &out, &mut commands).await;
            let err = match result {
                Ok(End::Close(answer)) => {
                    let closed = self.close(&mut send, &mut commands).await;
                    if let Err(err) = &closed {
                        lock(&self.shared).ended = Some(err.clone());
                    }
                    let _ = answer.send(closed);
                    return;
                }
                Ok(End::Dropped) => {
                    if let Err(err) = self.close(&mut send, &mut commands).await {
                        tracing::debug!(%err, "member dropped; its last acks may not have arrived");
                    }
                    return;
                }
                Err(err) => err,
            };
            // This membership is over: acks on it would be ignored, and the
            // node redelivers what this member did not ack.
            let _ = send.reset(quinn::VarInt::from_u32(0));
            let err = if err.is_transient() && !self.window_config.resume_for.is_zero() {
                match self.rejoin(err, &out, &mut commands).await {
                    Ok(Rejoin::Joined(s, r)) => {
                        (send, recv) = (s, r);
                        continue;
                    }
                    Ok(Rejoin::Stopped) => return,
                    Err(err) => err,
                }
            } else {
                err
            };
            tracing::debug!(%err, "group membership ended");
            lock(&self.shared).ended = Some(err.clone());
            let _ = out.send(Err(err));
            return;
        }
    }

    /// Moves frames between one stream and the application until the
    /// member is closed or dropped (`Ok`) or the stream fails.
    async fn serve(
        &mut self,
        send: &mut quinn::SendStream,
        recv: quinn::RecvStream,
        out: &Out,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<End, ClientError> {
        let mode = lock(&self.shared).assignment.mode();
        let delivery = match mode {
            GroupMode::Stream => FrameType::Delivery,
            GroupMode::Queue => FrameType::QueueDelivery,
        };
        let (tx, mut frames) = mpsc::channel(4);
        let conn = self.client.connection().clone();
        let reader = tokio::spawn(read_frames(
            conn,
            recv,
            tx,
            [FrameType::Assignment, delivery, FrameType::Error],
            self.max_delivery_bytes,
        ));
        let result: Result<End, ClientError> = async {
            self.grant(send).await?;
            loop {
                let deadline = self.outbox.deadline().map(Instant::from_std);
                let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    frame = frames.recv() => {
                        let frame = frame.unwrap_or_else(|| {
                            Err(ClientError::ConnectionLost("group reader ended".into()))
                        })?;
                        self.on_frame(frame, out, send).await?;
                    }
                    command = commands.recv() => match command {
                        Some(Command::Settle(item)) => {
                            for frame in self.outbox.push(item, std::time::Instant::now()) {
                                write(send, &frame).await?;
                            }
                        }
                        Some(Command::Consumed { records, bytes, membership }) => {
                            if membership == lock(&self.shared).membership
                                && let Some(window) = &mut self.window
                            {
                                window.on_consumed(records, bytes);
                            }
                            self.grant(send).await?;
                        }
                        Some(Command::Flush(answer)) => {
                            let flushed = self.flush(send).await;
                            let _ = answer.send(flushed.clone());
                            flushed?;
                        }
                        Some(Command::Close(answer)) => return Ok(End::Close(answer)),
                        None => return Ok(End::Dropped),
                    },
                    () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                        if let Some(frame) = self.outbox.due(std::time::Instant::now()) {
                            write(send, &frame).await?;
                        }
                    }
                    () = out.closed() => return Ok(End::Dropped),
                }
            }
        }
        .await;
        reader.abort();
        result
    }

    /// After `lost`, joins again with backoff on a new stream (dialling
    /// again if the connection is gone), for at most `resume_for`. Acks
    /// and commits asked for meanwhile are dropped (the node ignores those
    /// of a membership it ended, and delivers their messages again); a
    /// flush or close answers with the loss. `Err` with the loss and the
    /// last failure when time ran out, or at once with a definite refusal.
    async fn rejoin(
        &mut self,
        lost: ClientError,
        out: &Out,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<Rejoin, ClientError> {
        tracing::warn!(err = %lost, "group member lost its stream; joining again");
        let mut resumption = Resumption::new(
            lost.clone(),
            self.window_config.resume_for,
            "the member could not join again",
        );
        loop {
            let due = resumption.next_due()?;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => break,
                    () = out.closed() => return Ok(Rejoin::Stopped),
                    command = commands.recv() => match command {
                        None => return Ok(Rejoin::Stopped),
                        Some(Command::Close(answer)) => {
                            let _ = answer.send(Err(lost.clone()));
                            return Ok(Rejoin::Stopped);
                        }
                        Some(Command::Flush(answer)) => {
                            let _ = answer.send(Err(lost.clone()));
                        }
                        Some(Command::Settle(_) | Command::Consumed { .. }) => {}
                    },
                }
            }
            let opened = tokio::select! {
                opened = tokio::time::timeout_at(resumption.deadline(), super::open_member(&self.client, &self.join)) => opened,
                () = out.closed() => return Ok(Rejoin::Stopped),
            };
            match opened {
                Ok(Ok((send, recv, assignment))) => {
                    let mode = lock(&self.shared).assignment.mode();
                    if assignment.mode() != mode {
                        return Err(ClientError::Protocol(format!(
                            "joined again in {} mode, the member was in {} mode",
                            assignment.mode().name(),
                            mode.name()
                        )));
                    }
                    tracing::info!(
                        attempts = resumption.attempts(),
                        generation = assignment.generation(),
                        "member joined again"
                    );
                    {
                        let mut state = lock(&self.shared);
                        state.assignment = assignment;
                        state.membership += 1;
                    }
                    if self.window.is_some() {
                        self.window = Some(CreditWindow::new(
                            self.window_config.window_messages,
                            self.window_config.window_bytes,
                        ));
                    }
                    self.outbox = Outbox::new(OutboxLimits::for_prefetch(self.prefetch));
                    return Ok(Rejoin::Joined(send, recv));
                }
                Ok(Err(err)) => resumption.failed(err)?,
                Err(_elapsed) => return Err(resumption.gave_up()),
            }
        }
    }

    /// Takes what is still queued, flushes, finishes the stream and waits
    /// until the node has received all of it.
    async fn close(
        &mut self,
        send: &mut quinn::SendStream,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), ClientError> {
        commands.close();
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Settle(item) => {
                    for frame in self.outbox.push(item, std::time::Instant::now()) {
                        write(send, &frame).await?;
                    }
                }
                Command::Flush(answer) | Command::Close(answer) => {
                    let _ = answer.send(Err(ClientError::Closed));
                }
                Command::Consumed { .. } => {}
            }
        }
        self.flush(send).await?;
        send.finish()?;
        match tokio::time::timeout(CLOSE_WAIT, send.stopped()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(quinn::StoppedError::ConnectionLost(e))) => Err(ClientError::from(e)),
            Ok(Err(other)) => Err(ClientError::ConnectionLost(format!(
                "closing the group stream: {other}"
            ))),
            Err(_) => Err(ClientError::ConnectionLost(format!(
                "the node did not confirm the member's last frames within {CLOSE_WAIT:?}"
            ))),
        }
    }

    async fn flush(&mut self, send: &mut quinn::SendStream) -> Result<(), ClientError> {
        if let Some(frame) = self.outbox.flush() {
            write(send, &frame).await?;
        }
        Ok(())
    }

    async fn grant(&mut self, send: &mut quinn::SendStream) -> Result<(), ClientError> {
        if let Some((messages, bytes)) = self.window.as_mut().and_then(CreditWindow::grant) {
            write(send, &Frame::Credit { messages, bytes }).await?;
        }
        Ok(())
    }

    async fn on_frame(
        &mut self,
        frame: Frame,
        out: &Out,
        send: &mut quinn::SendStream,
    ) -> Result<(), ClientError> {
        match frame {
            Frame::Assignment {
                generation,
                mode,
                partitions,
            } => {
                tracing::debug!(generation, ?partitions, "assignment");
                lock(&self.shared)
                    .assignment
                    .apply(generation, mode, partitions)
                    .map_err(|e| ClientError::Protocol(format!("bad assignment: {e}")))
            }
            Frame::Delivery {
                partition, batches, ..
            } => {
                let Some(window) = &mut self.window else {
                    return Err(ClientError::Protocol(
                        "delivery frame in a queue-mode group".into(),
                    ));
                };
                let (expected, generation) = {
                    let state = lock(&self.shared);
                    (
                        state.assignment.expected(partition),
                        state.assignment.generation(),
                    )
                };
                let parsed =
                    parse_delivery(&self.topic, partition, &batches, expected.unwrap_or(0))
                        .map_err(|e| ClientError::Protocol(format!("bad delivery: {e}")))?;
                let bytes = u32::try_from(batches.len()).unwrap_or(u32::MAX);
                window
                    .on_delivery(parsed.records, bytes, parsed.batches)
                    .map_err(|e| ClientError::Protocol(format!("credit exceeded: {e}")))?;
                if expected.is_none() {
                    tracing::warn!(
                        partition,
                        "delivery for a partition not assigned to this member; ignored"
                    );
                }
                if expected.is_none() || parsed.messages.is_empty() {
                    window.on_consumed(parsed.records, bytes);
                    return self.grant(send).await;
                }
                lock(&self.shared)
                    .assignment
                    .advance(partition, parsed.next_offset);
                let messages = parsed
                    .messages
                    .into_iter()
                    .map(|message| GroupMessage {
                        message,
                        attempt: 1,
                        generation,
                    })
                    .collect();
                let membership = lock(&self.shared).membership;
                let _ = out.send(Ok(Delivered {
                    messages,
                    records: parsed.records,
                    bytes,
                    membership,
                }));
                Ok(())
            }
            Frame::QueueDelivery {
                generation,
                partition,
                messages,
                batches,
            } => {
                lock(&self.shared).assignment.on_queue_delivery(generation);
                let Some(from) = messages.iter().map(|(offset, _)| *offset).min() else {
                    return Ok(());
                };
                let parsed = parse_delivery(&self.topic, partition, &batches, from)
                    .map_err(|e| ClientError::Protocol(format!("bad queue-delivery: {e}")))?;
                let picked = pick_listed(partition, parsed.messages, &messages)
                    .map_err(ClientError::Protocol)?;
                let messages = picked
                    .into_iter()
                    .map(|(message, attempt)| GroupMessage {
                        message,
                        attempt,
                        generation,
                    })
                    .collect();
                let membership = lock(&self.shared).membership;
                let _ = out.send(Ok(Delivered {
                    messages,
                    records: 0,
                    bytes: 0,
                    membership,
                }));
                Ok(())
            }
            Frame::Error { code, message } => Err(ClientError::from_node(code, message)),
            other => Err(ClientError::Protocol(format!(
                "unexpected {} frame on a group stream",
                other.kind().name()
            ))),
        }
    }
}

async fn write(send: &mut quinn::SendStream, frame: &Frame) -> Result<(), ClientError> {
    io::write_frame(send, &io::encode(frame)?).await
}

async fn read_frames(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Result<Frame, ClientError>>,
    allowed: [FrameType; 3],
    max_bytes: usize,
) {
    loop {
        let item = match io::read_frame(&mut recv, &allowed, max_bytes).await {
            Ok(Some(frame)) => Ok(frame),
            // A node that shuts down may end the stream before it closes
            // the connection; the close code says more than the end does.
            Ok(None) => Err(
                match tokio::time::timeout(CLOSE_REASON_WAIT, conn.closed()).await {
                    Ok(reason) => ClientError::from(reason),
                    Err(_) => {
                        ClientError::ConnectionLost("the node ended the group membership".into())
                    }
                },
            ),
            Err(err) => Err(err),
        };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}
