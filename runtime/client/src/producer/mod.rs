//! The producer: messages are batched by a background task and sent as
//! pipelined `produce` frames on one long-lived stream, and each message's
//! handle resolves when the answer for its batch arrives. When the stream
//! or the connection fails without a definite answer, or a batch goes
//! unanswered past the request timeout, an idempotent producer keeps the
//! unanswered batches (encoded, so with their ids), backs off, opens a new
//! stream (dialling the node again if needed) and resends them in order.
//! Batching decisions live in [`accumulator`] and resend timing in
//! [`retry`]; this module only moves messages, frames and answers, and must
//! never hold more than its configured bounds (buffered bytes, batches in
//! flight or waiting to be resent) nor drop a message without resolving its
//! handle.

pub(crate) mod accumulator;
mod retry;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use weir_proto::NewRecord;
use weir_proto::frame::{
    Acks, Frame, FrameType, MAX_CONTROL_FRAME_BYTES, MessageOutcome, Placement,
};

use crate::{ClientError, io};
use accumulator::{Accumulator, BatchLimits};
use retry::Retry;
pub use retry::RetryConfig;

/// How a producer batches and acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// When the node answers: none (handles resolve once written), stored,
    /// or durable.
    pub acks: Acks,
    /// How long a batch waits for more messages before it is sent.
    pub linger: Duration,
    /// Encoded batch size at which a batch is sent (at most 16 MiB).
    pub max_batch_bytes: usize,
    /// Messages at which a batch is sent (at most 65536).
    pub max_batch_records: u32,
    /// Most `produce` frames sent and not yet answered (the node holds at
    /// most 64 per stream).
    pub max_in_flight: usize,
    /// Send every batch to this partition (plugins may still route).
    pub partition: Option<u32>,
    /// Most bytes of messages accepted by `send` and not yet written;
    /// past it `send` fails with [`ClientError::BufferFull`]. Apart from
    /// this, a producer keeps the buffers of up to 8 MiB of answered
    /// batches to encode new ones into.
    pub max_buffered_bytes: usize,
    /// Give every message without an id one (a random prefix per producer
    /// and a sequence number), and resend unanswered batches after a lost
    /// connection, a reset stream or a request timeout, with the same ids,
    /// so that the topic's dedup window stores each message once. Off,
    /// such a batch's handles fail with the error and the application
    /// decides (a resend could store them twice); batches never written
    /// are still sent on a new connection.
    pub idempotent: bool,
    /// Longest wait for the answer to a batch once written; past it the
    /// stream is abandoned like a lost one (and, when idempotent, the
    /// batch is resent on a new stream).
    pub request_timeout: Duration,
    /// When and for how long an idempotent producer resends.
    pub retry: RetryConfig,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::Stored,
            linger: Duration::from_millis(5),
            max_batch_bytes: 1024 * 1024,
            max_batch_records: 10_000,
            max_in_flight: 16,
            partition: None,
            max_buffered_bytes: 32 * 1024 * 1024,
            idempotent: true,
            request_timeout: Duration::from_secs(30),
            retry: RetryConfig::default(),
        }
    }
}

/// A message to produce.
///
/// ```
/// use weir_client::Message;
///
/// let m = Message::new("hello").with_key("user-7").with_header("tenant", "acme").with_id("msg-1");
/// assert_eq!(&m.payload[..], b"hello");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Producer-assigned id (used by dedup).
    pub id: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
    /// The payload.
    pub payload: Bytes,
    /// Timestamp in ms since the Unix epoch; the time of `send` if unset.
    pub timestamp_ms: Option<i64>,
}

impl Message {
    /// A message with this payload and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Message {
        Message {
            payload: payload.into(),
            ..Message::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Message {
        self.key = Some(key.into());
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<Bytes>) -> Message {
        self.id = Some(id.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Message {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Message {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Roughly the bytes this message takes in a batch, for buffer bounds.
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum();
        self.payload.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.id.as_ref().map_or(0, Bytes::len)
            + headers
            + 8
    }

    /// Encodes the message into `with`, borrowing its fields.
    pub(crate) fn with_record<R>(&self, now_ms: i64, with: impl FnOnce(&NewRecord<'_>) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), &v[..]))
            .collect();
        with(&NewRecord {
            timestamp_ms: self.timestamp_ms.unwrap_or(now_ms),
            key: self.key.as_deref(),
            id: self.id.as_deref(),
            dedup_key: None,
            headers: &headers,
            payload: &self.payload,
        })
    }
}

/// What became of a produced message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Written to the node with acks none; nothing more is known.
    Sent,
    /// Stored at these places (more than one when a plugin fanned it out).
    Stored(Vec<Placement>),
    /// Filtered out by a plugin, for this reason.
    Dropped(String),
    /// Refused by a plugin or the node, for this reason.
    Rejected(String),
    /// Already stored within the topic's dedup window, here.
    Duplicate(Placement),
}

impl From<MessageOutcome> for Outcome {
    fn from(o: MessageOutcome) -> Outcome {
        match o {
            MessageOutcome::Stored(p) => Outcome::Stored(p),
            MessageOutcome::Dropped(r) => Outcome::Dropped(r),
            MessageOutcome::Rejected(r) => Outcome::Rejected(r),
            MessageOutcome::Duplicate(p) => Outcome::Duplicate(p),
        }
    }
}

/// How long a producer whose stream the node ended waits to learn whether
/// the whole connection is closing (and why).
const CLOSE_REASON_WAIT: Duration = Duration::from_millis(500);

/// The node holds at most this many unanswered produce frames per stream.
const MAX_IN_FLIGHT: usize = 64;

/// Most commands the driver takes from its queue before it looks at the
/// clock, its timers and its stream again.
const COMMANDS_PER_WAKE: usize = 256;

type Reply = oneshot::Sender<Result<Outcome, ClientError>>;

/// A message's pending answer: a future that resolves when the node has
/// answered for the message's batch (or at once with acks none, when it
/// is written).
#[derive(Debug)]
#[must_use = "a send handle does nothing unless awaited; dropping it does not cancel the send"]
pub struct SendHandle {
    rx: Result<oneshot::Receiver<Result<Outcome, ClientError>>, Option<ClientError>>,
}

impl Future for SendHandle {
    type Output = Result<Outcome, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().rx {
            Ok(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(ClientError::Closed))),
            Err(err) => Poll::Ready(Err(err.take().unwrap_or(ClientError::Closed))),
        }
    }
}

enum Command {
    Send {
        message: Message,
        reply: Reply,
        size: usize,
    },
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Shared {
    buffered_bytes: AtomicUsize,
    space: Notify,
    limit_bytes: usize,
    /// Source of message ids, when the producer is idempotent.
    ids: Option<Ids>,
}

/// Message ids `PREFIX-N`: a random prefix per producer (96 bits from the
/// TLS provider's secure generator) and a counter.
#[derive(Debug)]
struct Ids {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        let mut bytes = [0u8; 12];
        let random = rustls::crypto::ring::default_provider().secure_random;
        let prefix = match random.fill(&mut bytes) {
            Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            // Without randomness, the time still tells producers apart.
            Err(_) => format!(
                "t{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
        };
        Ids {
            prefix,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn next(&self) -> Bytes {
        Bytes::from(format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

/// A producer for one topic. Cheap to clone; the background task ends,
/// after sending everything buffered, when the last clone is dropped.
///
/// By default it is idempotent: every message gets an id, and a batch left
/// unanswered by a lost connection, a reset stream or the request timeout
/// is resent with the same ids after a backoff, on a new connection if
/// need be, until its deadline ([`RetryConfig`]); the topic's dedup window
/// stores it once. Definite answers from the node are never resent.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::ClientError> {
/// use weir_client::{Message, Outcome, ProducerConfig};
///
/// let producer = client.producer("events", ProducerConfig::default())?;
/// let handle = producer.send(Message::new("hello").with_key("k"));
/// producer.flush().await;
/// if let Outcome::Stored(places) = handle.await? {
///     println!("stored at offset {}", places[0].offset);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Send { size, .. } => write!(f, "Send({size} bytes)"),
            Command::Flush(_) => f.write_str("Flush"),
            Command::Close(_) => f.write_str("Close"),
        }
    }
}

impl Producer {
    pub(crate) fn start(client: crate::Client, topic: String, config: ProducerConfig) -> Producer {
        let shared = Arc::new(Shared {
            buffered_bytes: AtomicUsize::new(0),
            space: Notify::new(),
            limit_bytes: config.max_buffered_bytes.max(1),
            ids: config.idempotent.then(Ids::new),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let limits = BatchLimits {
            linger: config.linger,
            max_bytes: config
                .max_batch_bytes
                .clamp(1, weir_proto::limits::MAX_BATCH_BYTES),
            max_records: config
                .max_batch_records
                .clamp(1, weir_proto::limits::MAX_RECORDS_PER_BATCH),
        };
        let driver = Driver {
            client,
            topic,
            acks: config.acks,
            partition: config.partition,
            max_in_flight: config.max_in_flight.clamp(1, MAX_IN_FLIGHT),
            request_timeout: config.request_timeout.max(Duration::from_millis(1)),
            resend: config.idempotent,
            retry: Retry::new(config.retry),
            acc: Accumulator::new(limits),
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_seq: 0,
            stream: None,
            rx,
            shared: shared.clone(),
            enqueued: 0,
            resolved: 0,
            flushes: Vec::new(),
        };
        tokio::spawn(driver.run());
        Producer { tx, shared }
    }

    /// Queues a message and returns a handle to its answer. Messages are
    /// sent in the order of `send` calls. Fails at once (through the
    /// handle) when the buffer is full; [`Producer::ready`] waits for room.
    pub fn send(&self, mut message: Message) -> SendHandle {
        if message.id.is_none()
            && let Some(ids) = &self.shared.ids
        {
            message.id = Some(ids.next());
        }
        let size = message.size();
        let buffered = self.shared.buffered_bytes.load(Ordering::Acquire);
        if buffered > 0 && buffered + size > self.shared.limit_bytes {
            return SendHandle {
                rx: Err(Some(ClientError::BufferFull {
                    buffered_bytes: buffered,
                    limit_bytes: self.shared.limit_bytes,
                })),
            };
        }
        self.shared.buffered_bytes.fetch_add(size, Ordering::AcqRel);
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Send {
                message,
                reply,
                size,
            })
            .is_err()
        {
            self.shared.buffered_bytes.fetch_sub(size, Ordering::AcqRel);
            return SendHandle {
                rx: Err(Some(ClientError::Closed)),
            };
        }
        SendHandle { rx: Ok(rx) }
    }

    /// Waits until the buffer has room for a message of `bytes` bytes.
    pub async fn ready(&self, bytes: usize) {
        loop {
            let notified = self.shared.space.notified();
            let buffered = self.shared.buffered_bytes.load(Ordering::Acquire);
            if buffered == 0 || buffered + bytes <= self.shared.limit_bytes {
                return;
            }
            notified.await;
        }
    }

    /// Sends everything queued so far at once and waits until each of
    /// those messages has its answer (their handles say how each went).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends everything queued, waits for every answer, then ends the
    /// produce stream and waits until the node has received all of it
    /// (with acks none, the only way to know the messages left this
    /// process). Sends through other clones fail afterwards.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Waiter {
    reply: Reply,
    /// Bytes counted against the buffer until the batch is first written.
    size: usize,
    /// When `send` handed the message over: its resend deadline counts
    /// from here.
    accepted: StdInstant,
}

/// A sealed batch on its way: waiting to be (re)sent, or written and
/// waiting for its answer. The encoded records keep their ids, so a resend
/// is recognised by the topic's dedup window.
struct Batch {
    records: Bytes,
    waiters: Vec<Waiter>,
    /// The oldest message's `accepted`.
    accepted: StdInstant,
    /// Times written to the node.
    attempts: u32,
    /// Its `seq` on the current stream, once written.
    seq: u64,
    written_at: Instant,
}

impl Batch {
    fn new(records: Bytes, waiters: Vec<Waiter>, now: Instant) -> Batch {
        let accepted = waiters
            .first()
            .map_or(now.into_std(), |w: &Waiter| w.accepted);
        Batch {
            records,
            waiters,
            accepted,
            attempts: 0,
            seq: 0,
            written_at: now,
        }
    }
}

type Answers = mpsc::Receiver<Result<Frame, ClientError>>;

struct Stream {
    conn: quinn::Connection,
    send: quinn::SendStream,
    answers: Answers,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Where a failure came from, which decides what it takes down with it.
enum Failed {
    /// Opening a stream (or dialling the node): nothing was written.
    Opening,
    /// The stream: every batch written on it is unanswered, and `batch`
    /// was being written when it failed.
    Stream(Option<Batch>),
}

struct Driver {
    /// Keeps the connection open while this producer lives, and dials a
    /// new one when it is lost.
    client: crate::Client,
    topic: String,
    acks: Acks,
    partition: Option<u32>,
    max_in_flight: usize,
    request_timeout: Duration,
    /// Resend batches that were written but not answered.
    resend: bool,
    retry: Retry,
    acc: Accumulator<Waiter>,
    /// Sealed batches not yet written on the current stream, in order:
    /// resends first, then batches from the accumulator.
    unsent: VecDeque<Batch>,
    /// Written on the current stream and waiting for their answers, in
    /// order; `unsent` and `in_flight` together hold at most
    /// `max_in_flight` batches.
    in_flight: VecDeque<Batch>,
    next_seq: u64,
    stream: Option<Stream>,
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    /// Messages taken from `rx`, and messages whose handle was resolved;
    /// both in send order, so a flush waits for `resolved` to reach the
    /// `enqueued` it saw.
    enqueued: u64,
    resolved: u64,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Driver {
    #[tracing::instrument(name = "producer", skip_all, fields(topic = %self.topic))]
    async fn run(mut self) {
        let mut closing = false;
        let mut closed: Option<oneshot::Sender<()>> = None;
        loop {
            let now = Instant::now();
            while self.in_flight.len() + self.unsent.len() < self.max_in_flight {
                let Some(sealed) = self.acc.poll(now.into_std()) else {
                    break;
                };
                self.unsent
                    .push_back(Batch::new(sealed.batch, sealed.waiters, now));
            }
            self.expire(now);
            if !self.unsent.is_empty() && self.retry.due(now.into_std()).is_none() {
                self.send_unsent().await;
            }
            self.finish_flushes();
            if closing && self.acc.is_empty() && self.in_flight.is_empty() && self.unsent.is_empty()
            {
                break;
            }
            let now = Instant::now();
            let room = self.in_flight.len() + self.unsent.len() < self.max_in_flight;
            let blocked = self.acc.has_sealed() && !room;
            // With every slot taken a lingered batch could not go out
            // anyway: wait for an answer rather than spin on a past deadline.
            let linger = if room {
                self.acc.deadline().map(Instant::from_std)
            } else {
                None
            };
            let resume = if self.unsent.is_empty() {
                None
            } else {
                self.retry.due(now.into_std()).map(Instant::from_std)
            };
            let answer_by = self
                .in_flight
                .front()
                .map(|b| b.written_at + self.request_timeout);
            tokio::select! {
                cmd = self.rx.recv(), if !closing && !blocked => {
                    // Take what else is queued too, up to a bound, so the
                    // loop's bookkeeping (clock, timers, select) is paid
                    // per run of messages rather than per message. A sealed
                    // batch ends the run: it may be sent before the rest.
                    let mut next = cmd;
                    let mut taken = 0;
                    let clock = (StdInstant::now(), now_ms());
                    loop {
                        match next {
                            None => {
                                closing = true;
                                self.acc.seal();
                                break;
                            }
                            Some(Command::Send { message, reply, size }) => {
                                self.accept(message, reply, size, clock);
                            }
                            Some(Command::Close(done)) => {
                                closing = true;
                                closed = Some(done);
                                self.acc.seal();
                                break;
                            }
                            Some(Command::Flush(done)) => {
                                self.acc.seal();
                                self.flushes.push((self.enqueued, done));
                                break;
                            }
                        }
                        taken += 1;
                        if taken >= COMMANDS_PER_WAKE || self.acc.has_sealed() {
                            break;
                        }
                        match self.rx.try_recv() {
                            Ok(cmd) => next = Some(cmd),
                            Err(_) => break,
                        }
                    }
                }
                answer = recv_answer(&mut self.stream), if !self.in_flight.is_empty() => self.on_answer(answer),
                () = sleep_until(linger), if linger.is_some() && !blocked => {}
                () = sleep_until(resume), if resume.is_some() => {}
                () = sleep_until(answer_by), if answer_by.is_some() => self.on_timeout(),
            }
        }
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.send.finish();
            // Bounded: a node that never acknowledges is dropped at the
            // idle timeout, which ends this wait too.
            let _ = stream.send.stopped().await;
        }
        // Messages sent after the close was taken fail as closed.
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            if let Command::Send { reply, size, .. } = cmd {
                self.release(size);
                let _ = reply.send(Err(ClientError::Closed));
            }
        }
        if let Some(done) = closed {
            let _ = done.send(());
        }
    }

    /// Takes a message into the open batch; `clock` is the time it was
    /// taken (monotonic, and ms since the epoch for its timestamp).
    fn accept(&mut self, message: Message, reply: Reply, size: usize, clock: (StdInstant, i64)) {
        self.enqueued += 1;
        let (now, now_ms) = clock;
        let waiter = Waiter {
            reply,
            size,
            accepted: now,
        };
        let pushed = message.with_record(now_ms, |record| self.acc.push(now, record, waiter));
        if let Err((waiter, err)) = pushed {
            self.resolve(waiter, Err(ClientError::Invalid(err.to_string())));
        }
    }

    fn resolve(&mut self, mut waiter: Waiter, result: Result<Outcome, ClientError>) {
        self.release(std::mem::take(&mut waiter.size));
        let _ = waiter.reply.send(result);
        self.resolved += 1;
    }

    fn resolve_all(&mut self, batch: Batch, result: &Result<Outcome, ClientError>) {
        for w in batch.waiters {
            self.resolve(w, result.clone());
        }
    }

    fn release(&self, size: usize) {
        if size > 0 {
            self.shared.buffered_bytes.fetch_sub(size, Ordering::AcqRel);
            self.shared.space.notify_waiters();
        }
    }

    fn finish_flushes(&mut self) {
        let resolved = self.resolved;
        self.flushes.retain(|(target, _)| *target > resolved);
        // Dropping a flush's sender wakes it; the retained ones wait on.
    }

    /// Fails the batches waiting to be resent whose deadline has passed.
    /// Batches are in send order, so the oldest come first.
    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.unsent.front() {
            let Some(err) = self
                .retry
                .expired(front.accepted, front.attempts, now.into_std())
            else {
                return;
            };
            tracing::warn!(%err, messages = front.waiters.len(), "giving up on a batch");
            if let Some(batch) = self.unsent.pop_front() {
                self.resolve_all(batch, &Err(err));
            }
        }
    }

    /// Writes the waiting batches, in order, on the current stream (opening
    /// one first if needed), until they are all written or one fails.
    async fn send_unsent(&mut self) {
        // A stream on a connection known to be closed (the node restarted
        // while this producer was idle) is replaced before anything is
        // written on it, so that nothing needs resending.
        if self.in_flight.is_empty()
            && let Some(stream) = &self.stream
            && stream.conn.close_reason().is_some()
        {
            self.stream = None;
        }
        if self.stream.is_none()
            && let Err(err) = self.open_stream().await
        {
            self.on_failure(err, Failed::Opening);
            return;
        }
        while let Some(mut batch) = self.unsent.pop_front() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let frame = Frame::Produce {
                seq,
                topic: self.topic.clone(),
                acks: self.acks,
                partition: self.partition,
                batch: batch.records.clone(),
            };
            let encoded = match io::encode(&frame) {
                Ok(encoded) => encoded,
                // Nothing about this batch will change on a resend.
                Err(err) => {
                    self.resolve_all(batch, &Err(err));
                    continue;
                }
            };
            let written = match self.stream.as_mut() {
                Some(stream) => io::write_frame(&mut stream.send, &encoded).await,
                None => Err(ClientError::ConnectionLost("no produce stream".into())),
            };
            batch.attempts += 1;
            batch.seq = seq;
            batch.written_at = Instant::now();
            // Written (or failed): the bytes no longer count against the
            // buffer; the batch's own copy is bounded by `max_in_flight`.
            let written_bytes = batch
                .waiters
                .iter_mut()
                .map(|w| std::mem::take(&mut w.size))
                .sum();
            self.release(written_bytes);
            match written {
                Err(err) => {
                    self.on_failure(err, Failed::Stream(Some(batch)));
                    return;
                }
                Ok(()) if self.acks == Acks::None => self.resolve_all(batch, &Ok(Outcome::Sent)),
                Ok(()) => self.in_flight.push_back(batch),
            }
        }
    }

    async fn open_stream(&mut self) -> Result<(), ClientError> {
        let conn = self.client.live_connection().await?;
        let (send, recv) = conn.open_bi().await?;
        let (tx, answers) = mpsc::channel(16);
        let reader = tokio::spawn(read_answers(conn.clone(), recv, tx));
        self.stream = Some(Stream {
            conn,
            send,
            answers,
            reader,
        });
        Ok(())
    }

    /// The stream or the connection failed with `err`. A transient failure
    /// puts every unanswered batch back in front of the waiting ones, to be
    /// resent with the same ids after a backoff (when the producer is
    /// idempotent; otherwise they fail, since a resend could store them
    /// twice). A definite one fails them.
    fn on_failure(&mut self, err: ClientError, failed: Failed) {
        if let Some(mut stream) = self.stream.take() {
            // The node need not process the rest of an abandoned stream.
            let _ = stream.send.reset(quinn::VarInt::from_u32(0));
        }
        let transient = err.is_transient();
        let mut unanswered: Vec<Batch> = self.in_flight.drain(..).collect();
        let opening = match failed {
            Failed::Opening => true,
            Failed::Stream(batch) => {
                unanswered.extend(batch);
                false
            }
        };
        let n = unanswered.len();
        if transient && self.resend {
            for batch in unanswered.into_iter().rev() {
                self.unsent.push_front(batch);
            }
        } else {
            let result = Err(err.clone());
            for batch in unanswered {
                self.resolve_all(batch, &result);
            }
        }
        if transient {
            let now = Instant::now();
            let due = self.retry.failed(now.into_std(), err.clone());
            tracing::warn!(
                %err,
                unanswered = n,
                waiting = self.unsent.len(),
                resend = self.resend,
                failures = self.retry.failures(),
                backoff = ?due.saturating_duration_since(now.into_std()),
                "produce stream failed"
            );
            self.expire(now);
        } else {
            tracing::warn!(%err, failed = n, "produce stream failed");
            // A dial that failed for good (a refused token, a closed
            // client) fails every batch that needed it; after an error on
            // the stream, the waiting batches go on a new one.
            if opening {
                let result = Err(err);
                while let Some(batch) = self.unsent.pop_front() {
                    self.resolve_all(batch, &result);
                }
            }
        }
    }

    /// The oldest batch in flight has had no answer within the request
    /// timeout: the stream is abandoned as if it had failed.
    fn on_timeout(&mut self) {
        let seq = self.in_flight.front().map_or(0, |b| b.seq);
        let err = ClientError::Timeout {
            what: format!("produce {seq} to topic {:?}", self.topic),
            after: self.request_timeout,
        };
        self.on_failure(err, Failed::Stream(None));
    }

    fn on_answer(&mut self, answer: Result<Frame, ClientError>) {
        let expected = self.in_flight.front().map(|b| b.seq);
        let result = match answer {
            Ok(Frame::ProduceAck { seq, outcomes }) if Some(seq) == expected => {
                self.retry.answered();
                self.take_front(|messages| {
                    if outcomes.len() == messages {
                        Ok(outcomes.iter().map(|o| Ok(Outcome::from(o))))
                    } else {
                        Err(ClientError::Protocol(format!(
                            "produce-ack {seq} carries {} outcomes for {messages} messages",
                            outcomes.len(),
                        )))
                    }
                })
            }
            // A definite answer about this batch: not resent.
            Ok(Frame::ProduceError { seq, code, message }) if Some(seq) == expected => {
                self.retry.answered();
                let err = ClientError::from_node(code, message);
                self.take_front(|messages| Ok(std::iter::repeat_n(Err(err), messages)))
            }
            Ok(Frame::ProduceAck { seq, .. } | Frame::ProduceError { seq, .. }) => {
                Err(ClientError::Protocol(format!(
                    "answer for produce {seq} while produce {} was next",
                    expected.map_or("none".into(), |s| s.to_string())
                )))
            }
            Ok(Frame::Error { code, message }) => Err(ClientError::from_node(code, message)),
            Ok(other) => Err(ClientError::Protocol(format!(
                "unexpected {} frame on a produce stream",
                other.kind().name()
            ))),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            self.on_failure(err, Failed::Stream(None));
        }
    }

    /// Resolves the oldest batch in flight with `outcomes`, given its
    /// message count: one result per message, or an error for all of them
    /// (which also fails the stream).
    fn take_front<I>(
        &mut self,
        outcomes: impl FnOnce(usize) -> Result<I, ClientError>,
    ) -> Result<(), ClientError>
    where
        I: Iterator<Item = Result<Outcome, ClientError>>,
    {
        let Some(batch) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match outcomes(batch.waiters.len()) {
            Ok(results) => {
                for (w, r) in batch.waiters.into_iter().zip(results) {
                    self.resolve(w, r);
                }
                self.acc.recycle(batch.records);
                Ok(())
            }
            Err(err) => {
                self.resolve_all(batch, &Err(err.clone()));
                Err(err)
            }
        }
    }
}

async fn recv_answer(stream: &mut Option<Stream>) -> Result<Frame, ClientError> {
    match stream {
        Some(s) => s
            .answers
            .recv()
            .await
            .unwrap_or(Err(ClientError::ConnectionLost(
                "produce stream ended".into(),
            ))),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Reads answers off a produce stream until it ends or fails; the last
/// item sent is the failure, if any.
async fn read_answers(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Result<Frame, ClientError>>,
) {
    const ANSWERS: &[FrameType] = &[
        FrameType::ProduceAck,
        FrameType::ProduceError,
        FrameType::Error,
    ];
    loop {
        let item = match io::read_frame(&mut recv, ANSWERS, MAX_CONTROL_FRAME_BYTES).await {
            Ok(Some(frame)) => Ok(frame),
            // A node that shuts down may end the stream before it closes
            // the connection; the close code says more than the end does.
            Ok(None) => Err(
                match tokio::time::timeout(CLOSE_REASON_WAIT, conn.closed()).await {
                    Ok(reason) => ClientError::from(reason),
                    Err(_) => {
                        ClientError::ConnectionLost("the node ended the produce stream".into())
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
