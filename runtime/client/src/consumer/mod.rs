//! The consumer: a subscription stream whose background task reads
//! `delivery` frames, turns them into messages and grants credit as the
//! application consumes them, so the node never holds more for this
//! client than the window. When the connection is lost, the task dials
//! again and resumes every partition at the offset after the last one it
//! passed on, so the application sees each message once and in order.
//! Credit decisions live in [`credit`], parsing in [`delivery`]; this
//! module only moves frames and must never read a delivery larger than
//! the window allows.

pub(crate) mod credit;
pub(crate) mod delivery;

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use weir_proto::frame::{Frame, FrameType, StartAt};

use crate::{ClientError, io};
use credit::CreditWindow;
pub use delivery::ConsumedMessage;

/// How much a subscription lets the node push ahead of the application,
/// and how long it tries to resume after losing its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Most messages delivered and not yet consumed.
    pub window_messages: u32,
    /// Most bytes of batches delivered and not yet consumed (one larger
    /// batch is still accepted alone).
    pub window_bytes: u32,
    /// After a transient failure (the connection lost, the node restarting
    /// or unavailable), how long the subscription keeps dialling the node
    /// again, waiting 50 ms after the first attempt and doubling up to 2 s
    /// between attempts, before the stream yields the last failure and
    /// ends. Each attempt resumes every partition at the offset after the
    /// last message passed to the application. Zero ends the stream at the
    /// first failure. A group member (whose [`GroupConfig::window`] this
    /// is) joins its group again instead, under the same name and options;
    /// messages it was given and had not handed out are dropped, and the
    /// node delivers them again.
    ///
    /// [`GroupConfig::window`]: crate::GroupConfig::window
    pub resume_for: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            window_messages: 10_000,
            window_bytes: 8 * 1024 * 1024,
            resume_for: Duration::from_secs(120),
        }
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// One partition or all, from one position (`subscribe`).
    At {
        partition: Option<u32>,
        from: StartAt,
    },
    /// The listed partitions, each from its offset (`subscribe-at`).
    Positions(Vec<(u32, u64)>),
}

/// The wait before resume attempt `attempt` (from 1).
fn resume_backoff(attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(50);
    const MOST: Duration = Duration::from_secs(2);
    FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MOST)
}

/// The attempts to resume after a lost stream, for subscriptions and group
/// members alike: spaced by [`resume_backoff`], within `resume_for` of the
/// loss. No I/O; the caller makes each attempt.
pub(crate) struct Resumption {
    /// What failed to happen, for the final error ("the subscription could
    /// not resume").
    what: &'static str,
    lost: ClientError,
    last: ClientError,
    resume_for: Duration,
    deadline: tokio::time::Instant,
    attempts: u32,
}

impl Resumption {
    pub(crate) fn new(lost: ClientError, resume_for: Duration, what: &'static str) -> Resumption {
        Resumption {
            what,
            last: lost.clone(),
            lost,
            resume_for,
            deadline: tokio::time::Instant::now() + resume_for,
            attempts: 0,
        }
    }

    /// When the next attempt may start, or the final error if that would
    /// be past the deadline.
    pub(crate) fn next_due(&mut self) -> Result<tokio::time::Instant, ClientError> {
        let due = tokio::time::Instant::now() + resume_backoff(self.attempts + 1);
        if due > self.deadline {
            return Err(self.gave_up());
        }
        self.attempts += 1;
        Ok(due)
    }

    /// When the last attempt must be answered by.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.deadline
    }

    /// Attempts made so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// An attempt failed: a transient failure is tried again, a definite
    /// one ends the resumption with itself.
    pub(crate) fn failed(&mut self, err: ClientError) -> Result<(), ClientError> {
        if !err.is_transient() {
            return Err(err);
        }
        self.last = err;
        Ok(())
    }

    /// Time ran out: the error names what was lost and why it stayed lost.
    pub(crate) fn gave_up(&self) -> ClientError {
        ClientError::ConnectionLost(format!(
            "{}; {} within {:?} ({} attempts, last: {})",
            self.lost, self.what, self.resume_for, self.attempts, self.last
        ))
    }
}

struct Delivered {
    messages: VecDeque<ConsumedMessage>,
    records: u32,
    bytes: u32,
}

/// A stream of messages from a topic, in offset order per partition.
/// Dropping it ends the subscription.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::ClientError> {
/// use futures_util::StreamExt;
/// use weir_client::StartAt;
///
/// let mut sub = client.subscribe("events", None, StartAt::Earliest).await?;
/// while let Some(message) = sub.next().await {
///     let message = message?;
///     println!("{}/{}@{}: {:?}", message.topic, message.partition, message.offset, message.payload);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscription {
    partitions: Vec<(u32, u64)>,
    rx: mpsc::UnboundedReceiver<Result<Delivered, ClientError>>,
    consumed: mpsc::UnboundedSender<(u32, u32)>,
    current: Option<Delivered>,
    done: bool,
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivered({} messages left)", self.messages.len())
    }
}

impl Subscription {
    /// Opens the subscription on a new stream and waits for `subscribed`.
    pub(crate) async fn open(
        client: crate::Client,
        topic: &str,
        start: Start,
        config: ConsumerConfig,
    ) -> Result<Subscription, ClientError> {
        let request = match start {
            Start::At { partition, from } => Frame::Subscribe {
                topic: topic.to_owned(),
                partition,
                from,
            },
            Start::Positions(positions) => Frame::SubscribeAt {
                topic: topic.to_owned(),
                positions,
            },
        };
        let stream = open_stream(&client, &request).await?;
        let partitions = stream.partitions.clone();
        let (out, rx) = mpsc::unbounded_channel();
        let (consumed, consumed_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            client,
            topic: topic.into(),
            expected: partitions.iter().copied().collect(),
            window: CreditWindow::new(config.window_messages, config.window_bytes),
            max_delivery_bytes: (config.window_bytes as usize)
                .max(weir_proto::limits::MAX_BATCH_BYTES)
                + 1024,
            resume_for: config.resume_for,
        };
        tokio::spawn(driver.run(stream, out, consumed_rx));
        Ok(Subscription {
            partitions,
            rx,
            consumed,
            current: None,
            done: false,
        })
    }

    /// The partitions this subscription reads and the offset each starts at.
    pub fn partitions(&self) -> &[(u32, u64)] {
        &self.partitions
    }
}

impl Stream for Subscription {
    type Item = Result<ConsumedMessage, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(current) = &mut this.current {
                let next = current.messages.pop_front();
                if current.messages.is_empty() {
                    // The whole delivery is consumed: its credit comes back.
                    let _ = this.consumed.send((current.records, current.bytes));
                    this.current = None;
                }
                if let Some(message) = next {
                    return Poll::Ready(Some(Ok(message)));
                }
                continue;
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

/// A subscription's stream on one connection, after `subscribed`.
struct OpenStream {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// (partition, first offset the node will deliver).
    partitions: Vec<(u32, u64)>,
}

/// Sends `request` (`subscribe` or `subscribe-at`) on a new stream of the
/// client's connection, dialling again if that is closed, and waits for
/// `subscribed`.
async fn open_stream(client: &crate::Client, request: &Frame) -> Result<OpenStream, ClientError> {
    let (conn, send, recv, answer) = client.open_stream(request, FrameType::Subscribed).await?;
    let Frame::Subscribed { partitions } = answer else {
        return Err(ClientError::Protocol(format!(
            "expected subscribed, got {}",
            answer.kind().name()
        )));
    };
    Ok(OpenStream {
        conn,
        send,
        recv,
        partitions,
    })
}

struct Driver {
    /// Keeps the connection open while this subscription lives, and dials
    /// again to resume.
    client: crate::Client,
    topic: Arc<str>,
    /// Per partition, the offset after the last message passed on: where
    /// a resumed stream starts.
    expected: HashMap<u32, u64>,
    window: CreditWindow,
    max_delivery_bytes: usize,
    resume_for: Duration,
}

type Out = mpsc::UnboundedSender<Result<Delivered, ClientError>>;

impl Driver {
    #[tracing::instrument(name = "subscription", skip_all, fields(topic = %self.topic))]
    async fn run(
        mut self,
        mut stream: OpenStream,
        out: Out,
        mut consumed: mpsc::UnboundedReceiver<(u32, u32)>,
    ) {
        loop {
            let mut send = stream.send;
            let result = self
                .serve(stream.conn, &mut send, stream.recv, &out, &mut consumed)
                .await;
            let _ = send.finish();
            let err = match result {
                Ok(()) => return,
                Err(err) => err,
            };
            if !err.is_transient() || self.resume_for.is_zero() {
                tracing::debug!(%err, "subscription ended");
                let _ = out.send(Err(err));
                return;
            }
            match self.resume(err, &out).await {
                Ok(Some(resumed)) => stream = resumed,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(%err, "subscription could not resume");
                    let _ = out.send(Err(err));
                    return;
                }
            }
        }
    }

    /// Moves deliveries from one stream to the application and credit
    /// back, until the application goes away (`Ok`) or the stream fails.
    async fn serve(
        &mut self,
        conn: quinn::Connection,
        send: &mut quinn::SendStream,
        recv: quinn::RecvStream,
        out: &Out,
        consumed: &mut mpsc::UnboundedReceiver<(u32, u32)>,
    ) -> Result<(), ClientError> {
        let (tx, mut frames) = mpsc::channel(4);
        let reader = tokio::spawn(read_deliveries(conn, recv, tx, self.max_delivery_bytes));
        let result = async {
            // What the application consumed while no stream was open.
            while let Ok((messages, bytes)) = consumed.try_recv() {
                self.window.on_consumed(messages, bytes);
            }
            self.grant(send).await?;
            loop {
                tokio::select! {
                    frame = frames.recv() => {
                        let frame = frame.unwrap_or_else(|| Err(ClientError::ConnectionLost("subscription reader ended".into())))?;
                        if !self.on_frame(frame, out)? {
                            return Ok(());
                        }
                    }
                    c = consumed.recv() => match c {
                        Some((messages, bytes)) => {
                            self.window.on_consumed(messages, bytes);
                            self.grant(send).await?;
                        }
                        None => return Ok(()),
                    },
                }
            }
        }
        .await;
        reader.abort();
        result
    }

    /// After `lost`, dials again with backoff until a `subscribe-at` for
    /// every partition's next offset is answered, for at most
    /// `resume_for`. `Ok(None)` when the application went away meanwhile;
    /// `Err` with the last failure when time ran out, or at once with a
    /// definite refusal.
    async fn resume(
        &mut self,
        lost: ClientError,
        out: &Out,
    ) -> Result<Option<OpenStream>, ClientError> {
        tracing::warn!(err = %lost, "subscription lost its stream; resuming");
        let mut resumption =
            Resumption::new(lost, self.resume_for, "the subscription could not resume");
        loop {
            let due = resumption.next_due()?;
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = out.closed() => return Ok(None),
            }
            let mut positions: Vec<(u32, u64)> =
                self.expected.iter().map(|(&p, &o)| (p, o)).collect();
            positions.sort_unstable();
            let request = Frame::SubscribeAt {
                topic: self.topic.to_string(),
                positions,
            };
            let opened = tokio::select! {
                opened = tokio::time::timeout_at(resumption.deadline(), open_stream(&self.client, &request)) => opened,
                _ = out.closed() => return Ok(None),
            };
            match opened {
                Ok(Ok(stream)) => {
                    self.on_resumed(&stream.partitions)?;
                    tracing::info!(attempts = resumption.attempts(), "subscription resumed");
                    return Ok(Some(stream));
                }
                Ok(Err(err)) => resumption.failed(err)?,
                Err(_elapsed) => return Err(resumption.gave_up()),
            }
        }
    }

    /// Checks the node's `subscribed` against what was asked, and starts a
    /// new credit account: the node counts credit per stream.
    fn on_resumed(&mut self, partitions: &[(u32, u64)]) -> Result<(), ClientError> {
        if partitions.len() != self.expected.len() {
            return Err(ClientError::Protocol(format!(
                "resumed {} partitions, asked for {}",
                partitions.len(),
                self.expected.len()
            )));
        }
        for &(p, from) in partitions {
            let Some(next) = self.expected.get_mut(&p) else {
                return Err(ClientError::Protocol(format!(
                    "resumed partition {p}, which this subscription does not read"
                )));
            };
            if from > *next {
                // Retention removed them while the connection was down.
                tracing::warn!(
                    partition = p,
                    missed = from - *next,
                    "messages expired before the subscription resumed"
                );
            }
            *next = from;
        }
        self.window.on_new_stream();
        Ok(())
    }

    async fn grant(&mut self, send: &mut quinn::SendStream) -> Result<(), ClientError> {
        if let Some((messages, bytes)) = self.window.grant() {
            io::write_frame(send, &io::encode(&Frame::Credit { messages, bytes })?).await?;
        }
        Ok(())
    }

    /// Handles one frame from the node; `Ok(false)` when the application
    /// has gone away.
    fn on_frame(&mut self, frame: Frame, out: &Out) -> Result<bool, ClientError> {
        match frame {
            Frame::Delivery {
                partition, batches, ..
            } => {
                let Some(expected) = self.expected.get_mut(&partition) else {
                    return Err(ClientError::Protocol(format!(
                        "delivery for partition {partition}, which this subscription does not read"
                    )));
                };
                let parsed = delivery::parse_delivery(&self.topic, partition, &batches, *expected)
                    .map_err(|e| ClientError::Protocol(format!("bad delivery: {e}")))?;
                let bytes = u32::try_from(batches.len()).unwrap_or(u32::MAX);
                self.window
                    .on_delivery(parsed.records, bytes, parsed.batches)
                    .map_err(|e| ClientError::Protocol(format!("credit exceeded: {e}")))?;
                *expected = parsed.next_offset;
                let delivered = Delivered {
                    messages: parsed.messages.into(),
                    records: parsed.records,
                    bytes,
                };
                Ok(out.send(Ok(delivered)).is_ok())
            }
            Frame::Error { code, message } => Err(ClientError::from_node(code, message)),
            other => Err(ClientError::Protocol(format!(
                "unexpected {} frame on a subscription",
                other.kind().name()
            ))),
        }
    }
}

/// How long a subscription whose stream the node ended waits to learn
/// whether the whole connection is closing (and why).
const CLOSE_REASON_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

async fn read_deliveries(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Result<Frame, ClientError>>,
    max_bytes: usize,
) {
    loop {
        let item = match io::read_frame(
            &mut recv,
            &[FrameType::Delivery, FrameType::Error],
            max_bytes,
        )
        .await
        {
            Ok(Some(frame)) => Ok(frame),
            // A node that shuts down may end the stream before it closes
            // the connection; the close code says more than the end does.
            Ok(None) => Err(
                match tokio::time::timeout(CLOSE_REASON_WAIT, conn.closed()).await {
                    Ok(reason) => ClientError::from(reason),
                    Err(_) => ClientError::ConnectionLost("the node ended the subscription".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_backoff_doubles_from_50ms_up_to_2s() {
        let waits: Vec<u128> = (1..=8).map(|a| resume_backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(resume_backoff(u32::MAX), Duration::from_secs(2));
    }
}
