//! The weir workloads, through the real client: produce (as fast as acks
//! come back), consume (a filled topic read back by whole partitions) and
//! e2e (a paced producer and a live consumer). Each returns a
//! [`Measurement`]; a run in which any message was rejected, failed or
//! never arrived is an error, not a figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use weir_client::{
    Acks, Client, ClientError, Message, Outcome, ProducerConfig, SendHandle, StartAt,
};

use crate::BenchError;
use crate::payload::Payloads;
use crate::progress::{Goal, Progress};
use crate::report::{CpuClock, Measurement, Recorder};
use crate::target::Target;

/// How long a consumer waits for the next message before it calls the run
/// stalled.
const STALL: Duration = Duration::from_secs(30);

/// Answers a producer may have outstanding in the bench's own queue (the
/// client bounds what it buffers; this bounds the handles).
const HANDLE_QUEUE: usize = 65_536;

/// What a produce run does.
#[derive(Debug, Clone)]
pub(crate) struct ProduceSpec {
    pub(crate) goal: Goal,
    pub(crate) size: usize,
    pub(crate) batch: u32,
    pub(crate) producers: u32,
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
}

impl ProduceSpec {
    fn producer_config(&self) -> ProducerConfig {
        // Room for a whole batch of this size, within the protocol's limit.
        let batch_bytes = (self.size + 256).saturating_mul(self.batch as usize);
        ProducerConfig {
            acks: self.acks,
            linger: self.linger,
            max_batch_records: self.batch,
            max_batch_bytes: batch_bytes.clamp(1 << 20, weir_proto::limits::MAX_BATCH_BYTES),
            // Two batches waiting behind those in flight: enough to keep the
            // stream busy, little enough that send-to-ack latency is the
            // pipeline's, not a deep queue's.
            max_buffered_bytes: (2 * batch_bytes).max(1 << 20),
            // Like NATS publishes without a message id: no ids, so the
            // figures are of storing, not of deduplicating.
            idempotent: false,
            ..ProducerConfig::default()
        }
    }
}

/// What became of the messages of a run.
#[derive(Debug)]
struct Tally {
    stored: u64,
    dropped: u64,
    duplicate: u64,
    rejected: u64,
    failed: u64,
    first_problem: Option<String>,
    latency: Recorder,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            stored: 0,
            dropped: 0,
            duplicate: 0,
            rejected: 0,
            failed: 0,
            first_problem: None,
            latency: Recorder::new(),
        }
    }

    fn count(&mut self, outcome: Result<Outcome, ClientError>) {
        match outcome {
            Ok(Outcome::Dropped(_)) => self.dropped += 1,
            Ok(Outcome::Duplicate(_)) => self.duplicate += 1,
            Ok(Outcome::Rejected(reason)) => {
                self.rejected += 1;
                self.first_problem
                    .get_or_insert_with(|| format!("rejected: {reason}"));
            }
            Err(err) => {
                self.failed += 1;
                self.first_problem.get_or_insert_with(|| err.to_string());
            }
            Ok(_) => self.stored += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.stored += other.stored;
        self.dropped += other.dropped;
        self.duplicate += other.duplicate;
        self.rejected += other.rejected;
        self.failed += other.failed;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
        self.latency.merge(&other.latency);
    }

    /// Messages the node handled (stored, filtered or recognised).
    fn handled(&self) -> u64 {
        self.stored + self.dropped + self.duplicate
    }

    fn check(&self) -> Result<(), BenchError> {
        if self.rejected + self.failed == 0 {
            return Ok(());
        }
        Err(BenchError::Lost(format!(
            "{} of {} messages were not stored ({} rejected, {} failed); first: {}",
            self.rejected + self.failed,
            self.handled() + self.rejected + self.failed,
            self.rejected,
            self.failed,
            self.first_problem.as_deref().unwrap_or("?")
        )))
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.dropped > 0 {
            notes.push(format!("{} messages dropped by a plugin", self.dropped));
        }
        if self.duplicate > 0 {
            notes.push(format!("{} messages were duplicates", self.duplicate));
        }
        notes
    }
}

/// Produces into `topic` as fast as the node takes it; latency is from
/// `send` to the answer (with acks none, to the write).
pub(crate) async fn produce(
    target: &Target,
    topic: &str,
    spec: &ProduceSpec,
    name: &str,
) -> Result<Measurement, BenchError> {
    let payloads = Arc::new(Payloads::new(spec.size));
    let next_seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::with_capacity(spec.producers as usize);
    for _ in 0..spec.producers {
        clients.push(target.connect().await?);
    }
    let progress = Progress::start(name, done.clone(), spec.goal);
    let cpu = CpuClock::start();
    let start = Instant::now();
    let deadline = spec.goal.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let run = ProducerRun {
            topic: topic.to_owned(),
            config: spec.producer_config(),
            payloads: payloads.clone(),
            next_seq: next_seq.clone(),
            done: done.clone(),
            max_messages: spec.goal.messages,
            deadline,
        };
        tasks.push(tokio::spawn(run.run(client)));
    }
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await??);
    }
    let elapsed = start.elapsed();
    progress.finish();
    tally.check()?;
    let messages = tally.handled();
    let mut m = Measurement::new(
        name,
        messages,
        spec.size as u64,
        messages * spec.size as u64,
        elapsed,
    );
    m.latency = tally.latency.latency(if spec.acks == Acks::None {
        "produce: send to written (acks none)"
    } else {
        "produce: send to ack"
    });
    m.cpu = cpu.cores();
    m.notes = tally.notes();
    Ok(m)
}

struct ProducerRun {
    topic: String,
    config: ProducerConfig,
    payloads: Arc<Payloads>,
    next_seq: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    max_messages: Option<u64>,
    deadline: Option<Instant>,
}

impl ProducerRun {
    async fn run(self, client: Client) -> Result<Tally, BenchError> {
        let producer = client
            .producer(&self.topic, self.config.clone())
            .map_err(BenchError::client("cannot start a producer"))?;
        let (tx, rx) = mpsc::channel::<(Instant, SendHandle)>(HANDLE_QUEUE);
        let collector = tokio::spawn(collect(rx, self.done.clone()));
        let size = self.payloads.size();
        let mut n = 0u64;
        loop {
            // The clock is read every 64 messages: often enough for a
            // duration, rarely enough to cost nothing.
            if n.is_multiple_of(64) && self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            n += 1;
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            if self.max_messages.is_some_and(|m| seq >= m) {
                break;
            }
            let message = Message {
                key: Some(self.payloads.key(seq)),
                payload: self.payloads.make(seq, 0),
                ..Message::default()
            };
            producer.ready(size).await;
            if tx
                .send((Instant::now(), producer.send(message)))
                .await
                .is_err()
            {
                break;
            }
        }
        drop(tx);
        producer.close().await;
        let tally = collector.await?;
        client.close().await;
        Ok(tally)
    }
}

/// Awaits answers in send order (they arrive in that order) and times them.
async fn collect(mut rx: mpsc::Receiver<(Instant, SendHandle)>, done: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::new();
    while let Some((sent, handle)) = rx.recv().await {
        let outcome = handle.await;
        tally.latency.record(sent.elapsed());
        tally.count(outcome);
        done.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Reads every message `topic` holds now with `consumers` connections,
/// each subscribed to whole partitions (partition p to consumer p mod C).
pub(crate) async fn consume(
    target: &Target,
    topic: &str,
    consumers: u32,
    name: &str,
) -> Result<Measurement, BenchError> {
    let admin = target.connect().await?;
    let info = admin
        .describe_topic(topic)
        .await
        .map_err(BenchError::client(format!("cannot describe {topic}")))?;
    admin.close().await;
    let partitions: Vec<(u32, u64)> = info
        .partitions
        .iter()
        .enumerate()
        .map(|(p, part)| (p as u32, part.end_offset.saturating_sub(part.start_offset)))
        .collect();
    if consumers as usize > partitions.len() {
        return Err(BenchError::Invalid(format!(
            "{consumers} consumers for {} partitions: each consumer reads whole partitions, so pass --partitions {consumers} or more",
            partitions.len()
        )));
    }
    let total: u64 = partitions.iter().map(|(_, n)| n).sum();
    let mut clients = Vec::with_capacity(consumers as usize);
    for _ in 0..consumers {
        clients.push(target.connect().await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        name,
        done.clone(),
        Goal {
            messages: Some(total),
            duration: None,
        },
    );
    let cpu = CpuClock::start();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let mine: Vec<(u32, u64)> = partitions
            .iter()
            .copied()
            .filter(|(p, _)| *p as usize % consumers as usize == c)
            .collect();
        // One consumer reading everything takes the whole topic on one
        // subscription, as an application would.
        let subscriptions: Vec<(Option<u32>, u64)> = if consumers == 1 {
            vec![(None, total)]
        } else {
            mine.into_iter().map(|(p, n)| (Some(p), n)).collect()
        };
        for (partition, expected) in subscriptions {
            let client = client.clone();
            let topic = topic.to_owned();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                read_all(&client, &topic, partition, expected, &done).await
            }));
        }
        drop(client);
    }
    let mut messages = 0;
    let mut bytes = 0;
    for task in tasks {
        let (m, b) = task.await??;
        messages += m;
        bytes += b;
    }
    let elapsed = start.elapsed();
    progress.finish();
    let size = bytes.checked_div(messages).unwrap_or(0);
    let mut m = Measurement::new(name, messages, size, bytes, elapsed);
    m.cpu = cpu.cores();
    Ok(m)
}

/// Reads `expected` messages from the start of a partition (or the topic).
async fn read_all(
    client: &Client,
    topic: &str,
    partition: Option<u32>,
    expected: u64,
    done: &AtomicU64,
) -> Result<(u64, u64), BenchError> {
    let mut sub = client
        .subscribe(topic, partition, StartAt::Earliest)
        .await
        .map_err(BenchError::client(format!("cannot subscribe to {topic}")))?;
    let mut messages = 0u64;
    let mut bytes = 0u64;
    while messages < expected {
        let next = tokio::time::timeout(STALL, sub.next()).await;
        match next {
            Ok(Some(Ok(m))) => {
                messages += 1;
                bytes += m.payload.len() as u64;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Err(err))) => {
                return Err(BenchError::client(format!(
                    "consuming {topic} after {messages} messages"
                ))(err));
            }
            Ok(None) => {
                return Err(BenchError::Lost(format!(
                    "the subscription to {topic} ended after {messages} of {expected} messages"
                )));
            }
            Err(_) => {
                return Err(BenchError::Lost(format!(
                    "no message from {topic} for {STALL:?} after {messages} of {expected}"
                )));
            }
        }
    }
    Ok((messages, bytes))
}

/// What an e2e run does.
#[derive(Debug, Clone)]
pub(crate) struct E2eSpec {
    pub(crate) produce: ProduceSpec,
    /// Messages per second across all producers.
    pub(crate) rate: u64,
}

/// Produces at a fixed rate while a consumer reads the topic live;
/// latency is from making a message to the consumer having it.
pub(crate) async fn e2e(
    target: &Target,
    topic: &str,
    spec: &E2eSpec,
    name: &str,
) -> Result<Measurement, BenchError> {
    let payloads = Arc::new(Payloads::new(spec.produce.size));
    let consumer_client = target.connect().await?;
    let sub = consumer_client
        .subscribe(topic, None, StartAt::Latest)
        .await
        .map_err(BenchError::client(format!("cannot subscribe to {topic}")))?;
    let mut producers = Vec::new();
    for _ in 0..spec.produce.producers {
        producers.push(target.connect().await?);
    }
    let received = Arc::new(AtomicU64::new(0));
    // The consumer learns how many messages to wait for once the
    // producers are done.
    let (expect_tx, expect_rx) = tokio::sync::watch::channel(None::<u64>);
    let base = Instant::now();
    let consumer = tokio::spawn(consume_timed(
        sub,
        payloads.clone(),
        base,
        received.clone(),
        expect_rx,
    ));
    let progress = Progress::start(name, received.clone(), spec.produce.goal);
    let cpu = CpuClock::start();
    let start = Instant::now();
    let producers_n = spec.produce.producers as u64;
    let mut tasks = Vec::new();
    for (p, client) in producers.into_iter().enumerate() {
        let producer = client
            .producer(topic, spec.produce.producer_config())
            .map_err(BenchError::client("cannot start a producer"))?;
        let (tx, rx) = mpsc::channel::<(Instant, SendHandle)>(HANDLE_QUEUE);
        let collector = tokio::spawn(collect(rx, Arc::new(AtomicU64::new(0))));
        let pacer = Pacer {
            first: p as u64,
            step: producers_n,
            rate: spec.rate,
            goal: spec.produce.goal,
            base,
            start,
        };
        let payloads = payloads.clone();
        let sender = producer.clone();
        // A thread, not a task: std's sleep is precise to tens of µs,
        // tokio's timer to a millisecond, which would send in bursts.
        let thread = std::thread::Builder::new()
            .name(format!("bench-pacer-{p}"))
            .spawn(move || pacer.run(&sender, &payloads, &tx))
            .map_err(|e| BenchError::Task(format!("cannot start a pacing thread: {e}")))?;
        tasks.push((thread, producer, collector, client));
    }
    let mut tally = Tally::new();
    let mut sent = 0u64;
    for (thread, producer, collector, client) in tasks {
        let n = tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| BenchError::Task("a pacing thread panicked".into()))?;
        sent += n;
        producer.close().await;
        tally.merge(collector.await?);
        client.close().await;
    }
    tally.check()?;
    let _ = expect_tx.send(Some(tally.stored));
    let (latency, count, consumed_bytes) = consumer.await??;
    let elapsed = start.elapsed();
    progress.finish();
    consumer_client.close().await;
    let mut m = Measurement::new(
        name,
        count,
        spec.produce.size as u64,
        consumed_bytes,
        elapsed,
    );
    m.latency = latency.latency("e2e: produce to consume");
    m.cpu = cpu.cores();
    m.notes = tally.notes();
    let planned = (spec.rate as f64 * elapsed.as_secs_f64()) as u64;
    if sent + sent / 20 < planned.min(spec.produce.goal.messages.unwrap_or(u64::MAX)) {
        m.notes.push(format!(
            "the producers fell behind the rate: {sent} messages sent"
        ));
    }
    Ok(m)
}

/// Sends messages `first`, `first + step`, ... each at its time on the
/// schedule `base + seq / rate`.
struct Pacer {
    first: u64,
    step: u64,
    rate: u64,
    goal: Goal,
    base: Instant,
    start: Instant,
}

impl Pacer {
    fn run(
        &self,
        producer: &weir_client::Producer,
        payloads: &Payloads,
        tx: &mpsc::Sender<(Instant, SendHandle)>,
    ) -> u64 {
        let mut sent = 0;
        let mut seq = self.first;
        loop {
            if self.goal.messages.is_some_and(|m| seq >= m) {
                break;
            }
            let due = self.start + Duration::from_secs_f64(seq as f64 / self.rate as f64);
            if self.goal.duration.is_some_and(|d| due >= self.start + d) {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let made = Instant::now();
            let t_ns = u64::try_from(made.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
            let message = Message {
                key: Some(payloads.key(seq)),
                payload: payloads.make(seq, t_ns),
                ..Message::default()
            };
            if tx.blocking_send((made, producer.send(message))).is_err() {
                break;
            }
            sent += 1;
            seq += self.step;
        }
        sent
    }
}

/// Reads the live topic and times each message against the time it
/// carries; returns once it has as many as the producers stored.
async fn consume_timed(
    mut sub: weir_client::Subscription,
    payloads: Arc<Payloads>,
    base: Instant,
    received: Arc<AtomicU64>,
    mut expect: tokio::sync::watch::Receiver<Option<u64>>,
) -> Result<(Recorder, u64, u64), BenchError> {
    let mut latency = Recorder::new();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut unreadable = 0u64;
    let mut watching = true;
    loop {
        let expected = *expect.borrow();
        if expected.is_some_and(|e| count >= e) {
            break;
        }
        let next = tokio::select! {
            next = tokio::time::timeout(STALL, sub.next()) => next,
            changed = expect.changed(), if watching => {
                if changed.is_err() {
                    if expect.borrow().is_none() {
                        return Err(BenchError::Task("the e2e producers stopped".into()));
                    }
                    watching = false;
                }
                continue;
            }
        };
        match next {
            Ok(Some(Ok(m))) => {
                let now = base.elapsed();
                match payloads.time_ns(&m.payload) {
                    Some(t) => latency.record(now.saturating_sub(Duration::from_nanos(t))),
                    None => unreadable += 1,
                }
                count += 1;
                bytes += m.payload.len() as u64;
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Err(err))) => {
                return Err(BenchError::client("e2e consumer")(err));
            }
            Ok(None) => {
                return Err(BenchError::Lost(format!(
                    "the e2e subscription ended after {count} messages"
                )));
            }
            Err(_) => {
                return Err(BenchError::Lost(format!(
                    "e2e: no message for {STALL:?} after {count}{}",
                    expected.map_or(String::new(), |e| format!(" of {e}"))
                )));
            }
        }
    }
    if unreadable > 0 {
        return Err(BenchError::Lost(format!(
            "e2e: {unreadable} consumed messages did not carry a bench timestamp"
        )));
    }
    debug_assert_eq!(latency.len(), count);
    Ok((latency, count, bytes))
}
