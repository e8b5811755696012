//! The consumer: a subscription stream whose background task reads
//! `delivery` frames, turns them into messages and grants credit as the
//! application consumes them, so the node never holds more for this
//! client than the window. Credit decisions live in [`credit`], parsing in
//! [`delivery`]; this module only moves frames and must never read a
//! delivery larger than the window allows.

pub(crate) mod credit;
pub(crate) mod delivery;

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
use weir_proto::frame::{Frame, FrameType};

use crate::{ClientError, io};
use credit::CreditWindow;
pub use delivery::ConsumedMessage;

/// How much a subscription lets the node push ahead of the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Most messages delivered and not yet consumed.
    pub window_messages: u32,
    /// Most bytes of batches delivered and not yet consumed (one larger
    /// batch is still accepted alone).
    pub window_bytes: u32,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            window_messages: 10_000,
            window_bytes: 8 * 1024 * 1024,
        }
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
        partition: Option<u32>,
        from: weir_proto::frame::StartAt,
        config: ConsumerConfig,
    ) -> Result<Subscription, ClientError> {
        let request = io::encode(&Frame::Subscribe {
            topic: topic.to_owned(),
            partition,
            from,
        })?;
        let (mut send, mut recv) = client.connection().open_bi().await?;
        io::write_frame(&mut send, &request).await?;
        let answer = io::read_frame(
            &mut recv,
            &[FrameType::Subscribed, FrameType::Error],
            weir_proto::frame::MAX_CONTROL_FRAME_BYTES,
        )
        .await?;
        let partitions = match answer {
            Some(Frame::Subscribed { partitions }) => partitions,
            Some(Frame::Error { code, message }) => {
                return Err(ClientError::from_node(code, message));
            }
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected subscribed, got {}",
                    other.kind().name()
                )));
            }
            None => {
                return Err(ClientError::Protocol(
                    "the node ended the stream before subscribed".into(),
                ));
            }
        };
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
        };
        tokio::spawn(driver.run(send, recv, out, consumed_rx));
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

struct Driver {
    /// Keeps the connection open while this subscription lives.
    client: crate::Client,
    topic: Arc<str>,
    expected: HashMap<u32, u64>,
    window: CreditWindow,
    max_delivery_bytes: usize,
}

type Out = mpsc::UnboundedSender<Result<Delivered, ClientError>>;

impl Driver {
    #[tracing::instrument(name = "subscription", skip_all, fields(topic = %self.topic))]
    async fn run(
        mut self,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
        out: Out,
        mut consumed: mpsc::UnboundedReceiver<(u32, u32)>,
    ) {
        let (tx, mut frames) = mpsc::channel(4);
        let conn = self.client.connection().clone();
        let reader = tokio::spawn(read_deliveries(conn, recv, tx, self.max_delivery_bytes));
        let result: Result<(), ClientError> = async {
            self.grant(&mut send).await?;
            loop {
                tokio::select! {
                    frame = frames.recv() => {
                        let frame = frame.unwrap_or_else(|| Err(ClientError::ConnectionLost("subscription reader ended".into())))?;
                        if !self.on_frame(frame, &out)? {
                            return Ok(());
                        }
                    }
                    c = consumed.recv() => match c {
                        Some((messages, bytes)) => {
                            self.window.on_consumed(messages, bytes);
                            self.grant(&mut send).await?;
                        }
                        None => return Ok(()),
                    },
                }
            }
        }
        .await;
        reader.abort();
        if let Err(err) = result {
            tracing::debug!(%err, "subscription ended");
            let _ = out.send(Err(err));
        }
        let _ = send.finish();
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
