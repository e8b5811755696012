//! The connection to a node: QUIC setup, the hello exchange and the admin
//! requests, one stream each. This module owns the connection's lifecycle;
//! it must never open a stream before `hello-ok` and never trust an answer
//! it has not matched to its request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use weir_proto::NewRecord;
use weir_proto::frame::{
    FailurePolicy, Frame, FrameType, GroupInfo, MAX_CONTROL_FRAME_BYTES, PROTOCOL_VERSION,
    PluginInfo, StartAt, TopicInfo, TopicSpec, validate_name,
};

use crate::consumer::Start;
use crate::consumer::delivery::parse_delivery;
use crate::error::close;
use crate::{
    ClientConfig, ClientError, ConsumedMessage, ConsumerConfig, GroupConfig, GroupMember, Message,
    Producer, ProducerConfig, Subscription, io, tls,
};

/// A plugin attachment to make with [`Client::attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// The topic whose chain gets the plugin.
    pub topic: String,
    /// The plugin (its newest version is attached).
    pub plugin: String,
    /// Config string passed to the plugin's `init`.
    pub config: String,
    /// What happens to a batch when the plugin fails.
    pub on_error: FailurePolicy,
    /// Position in the chain (0 = first); the end when `None`.
    pub position: Option<u32>,
}

impl Attach {
    /// An attachment at the end of the chain, with no config and the
    /// reject policy.
    pub fn new(topic: impl Into<String>, plugin: impl Into<String>) -> Attach {
        Attach {
            topic: topic.into(),
            plugin: plugin.into(),
            config: String::new(),
            on_error: FailurePolicy::Reject,
            position: None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    endpoint: quinn::Endpoint,
    /// Everything needed to dial the node again.
    dial: Dial,
    /// The current connection; replaced by a redial once it is closed.
    conn: Mutex<quinn::Connection>,
    /// Held while redialling, so that concurrent callers dial once.
    redial: tokio::sync::Mutex<()>,
    /// Set by [`Client::close`]: no more redials.
    closed: AtomicBool,
    /// The name the node gave in the first `hello-ok`.
    node: String,
    /// The name this client gave in `hello`.
    client_name: String,
}

/// What a connection attempt needs, kept for redials: the same address,
/// TLS configuration and hello as the first connection.
#[derive(Debug)]
struct Dial {
    config: ClientConfig,
    addr: SocketAddr,
    quic: quinn::ClientConfig,
    observed: Arc<tls::Observed>,
}

/// A connection to a weir node. Cheap to clone; clones share the
/// connection, which closes when the last clone, producer and
/// subscription are dropped (or at once with [`Client::close`]).
///
/// When the connection is lost (the node restarted, the network dropped
/// it, it idled out), the next admin request and every producer dial a new
/// one with the same configuration and say hello again; subscriptions and
/// group members on the old connection end with the error and are not
/// resumed.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, ClientConfig, Trust};
///
/// let trust = Trust::Fingerprint("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".parse()?);
/// let client = Client::connect(ClientConfig::new("127.0.0.1:7400", trust)).await?;
/// for topic in client.list_topics().await? {
///     println!("{} ({} partitions)", topic.spec.name, topic.spec.partitions);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(conn) = self.conn.lock() {
            conn.close(
                quinn::VarInt::from_u64(close::NORMAL).unwrap_or_default(),
                b"client done",
            );
        }
    }
}

impl Client {
    /// Connects, verifies the node's certificate as `config.trust` says,
    /// and exchanges hello.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let addr = resolve(&config.server).await?;
        let (tls, observed) = tls::rustls_config(&config)?;
        let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Config(format!("TLS setup: {e}")))?;
        let mut quic = quinn::ClientConfig::new(Arc::new(quic_tls));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(config.idle_timeout)
                    .map_err(|e| ClientError::Config(format!("idle timeout: {e}")))?,
            ))
            .keep_alive_interval(Some(config.idle_timeout / 3))
            .max_concurrent_uni_streams(0u32.into());
        quic.transport_config(Arc::new(transport));

        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|e| ClientError::Config(format!("bind address: {e}")))?;
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect {
            addr: config.server.clone(),
            reason: format!("no UDP socket: {e}"),
        })?;
        let dial = Dial {
            config,
            addr,
            quic,
            observed,
        };
        let (conn, node) = dial.connect(&endpoint).await?;
        tracing::debug!(%addr, node = %node, "connected");
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                client_name: dial.config.client_name.clone(),
                dial,
                conn: Mutex::new(conn),
                redial: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
                node,
            }),
        })
    }

    /// The current QUIC connection, open or not, for subscriptions and
    /// group members (which hold a clone of the client so that the
    /// connection outlives them, and end when it is lost).
    pub(crate) fn connection(&self) -> quinn::Connection {
        match self.inner.conn.lock() {
            Ok(conn) => conn.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current connection if it is open, else a new one: dialled with
    /// the same address, TLS configuration and hello as the first. Fails
    /// with [`ClientError::Closed`] after [`Client::close`], and with the
    /// dial's error when the node cannot be reached (nothing is retried
    /// here; producers retry on their own schedule).
    pub(crate) async fn live_connection(&self) -> Result<quinn::Connection, ClientError> {
        let current = self.connection();
        if current.close_reason().is_none() {
            return Ok(current);
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let _dialling = self.inner.redial.lock().await;
        // Another caller may have redialled while this one waited.
        let current = self.connection();
        if current.close_reason().is_none() {
            return Ok(current);
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let lost = current.close_reason().map(ClientError::from);
        tracing::info!(addr = %self.inner.dial.addr, lost = ?lost.map(|e| e.to_string()), "reconnecting");
        let (conn, node) = self.inner.dial.connect(&self.inner.endpoint).await?;
        tracing::info!(addr = %self.inner.dial.addr, node = %node, "reconnected");
        match self.inner.conn.lock() {
            Ok(mut slot) => *slot = conn.clone(),
            Err(poisoned) => *poisoned.into_inner() = conn.clone(),
        }
        Ok(conn)
    }

    /// Opens a long-lived stream (a subscription, a group membership): sends
    /// `request` on a new stream of a live connection and reads the first
    /// answer, which must be of type `answer`; the node's `error` becomes
    /// [`ClientError::Node`]. The stream stays open for the caller.
    pub(crate) async fn open_stream(
        &self,
        request: &Frame,
        answer: FrameType,
    ) -> Result<
        (
            quinn::Connection,
            quinn::SendStream,
            quinn::RecvStream,
            Frame,
        ),
        ClientError,
    > {
        let bytes = io::encode(request)?;
        let conn = self.live_connection().await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        io::write_frame(&mut send, &bytes).await?;
        let first = io::read_frame(
            &mut recv,
            &[answer, FrameType::Error],
            weir_proto::frame::MAX_CONTROL_FRAME_BYTES,
        )
        .await?;
        match first {
            Some(Frame::Error { code, message }) => Err(ClientError::from_node(code, message)),
            Some(frame) => Ok((conn, send, recv, frame)),
            None => Err(ClientError::Protocol(format!(
                "the node ended the stream before answering {} with {}",
                request.kind().name(),
                answer.name()
            ))),
        }
    }

    /// Dials the node again if the connection is closed (the node
    /// restarted, the network dropped it, it idled out); does nothing while
    /// it is open. Admin requests and producers do this on their own; this
    /// is for an application that wants to know the node is back.
    /// Subscriptions and group members resume on their own (see
    /// [`ConsumerConfig::resume_for`]).
    pub async fn reconnect_if_closed(&self) -> Result<(), ClientError> {
        self.live_connection().await.map(drop)
    }

    /// The name this client gave the node in `hello`.
    pub(crate) fn client_name(&self) -> &str {
        &self.inner.client_name
    }

    /// The name the node gave in `hello-ok`.
    pub fn node_name(&self) -> &str {
        &self.inner.node
    }

    /// The node's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.dial.addr
    }

    /// Closes the connection and waits (briefly) for the node to learn of
    /// it. The client does not dial again afterwards: requests and
    /// producers fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.connection().close(
            quinn::VarInt::from_u64(close::NORMAL).unwrap_or_default(),
            b"client done",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Creates a topic.
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<(), ClientError> {
        self.request(&Frame::CreateTopic(spec), FrameType::Ok)
            .await
            .map(drop)
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.request(&Frame::DeleteTopic { name: name.into() }, FrameType::Ok)
            .await
            .map(drop)
    }

    /// Lists every topic.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        match self
            .request(&Frame::ListTopics, FrameType::TopicList)
            .await?
        {
            Frame::TopicList(topics) => Ok(topics),
            other => Err(unexpected(&other)),
        }
    }

    /// Describes one topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        match self
            .request(
                &Frame::DescribeTopic { name: name.into() },
                FrameType::TopicList,
            )
            .await?
        {
            Frame::TopicList(mut topics) if topics.len() == 1 => {
                topics.pop().ok_or_else(|| unexpected(&Frame::Ok))
            }
            Frame::TopicList(topics) => Err(ClientError::Protocol(format!(
                "describe-topic answered with {} topics, not 1",
                topics.len()
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// Uploads a new version of a plugin (a WebAssembly component).
    pub async fn put_plugin(&self, name: &str, wasm: Bytes) -> Result<PluginInfo, ClientError> {
        match self
            .request(
                &Frame::PutPlugin {
                    name: name.into(),
                    wasm,
                },
                FrameType::PluginStored,
            )
            .await?
        {
            Frame::PluginStored(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// Lists uploaded plugins (their newest versions).
    pub async fn list_plugins(&self) -> Result<Vec<PluginInfo>, ClientError> {
        match self
            .request(&Frame::ListPlugins, FrameType::PluginList)
            .await?
        {
            Frame::PluginList(plugins) => Ok(plugins),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a plugin, every version of it.
    pub async fn delete_plugin(&self, name: &str) -> Result<(), ClientError> {
        self.request(&Frame::DeletePlugin { name: name.into() }, FrameType::Ok)
            .await
            .map(drop)
    }

    /// Attaches a plugin to a topic's chain.
    pub async fn attach(&self, attach: Attach) -> Result<(), ClientError> {
        let frame = Frame::Attach {
            topic: attach.topic,
            plugin: attach.plugin,
            config: attach.config,
            on_error: attach.on_error,
            position: attach.position,
        };
        self.request(&frame, FrameType::Ok).await.map(drop)
    }

    /// Detaches a plugin from a topic's chain.
    pub async fn detach(&self, topic: &str, plugin: &str) -> Result<(), ClientError> {
        self.request(
            &Frame::Detach {
                topic: topic.into(),
                plugin: plugin.into(),
            },
            FrameType::Ok,
        )
        .await
        .map(drop)
    }

    /// Looks a stored message up by its producer id or the dedup key a
    /// plugin gave it. The node answers from the topic's dedup window, or
    /// scans the topic's partitions (up to its `lookup_scan_bytes_max`); of
    /// several matches it returns the most recent. A miss is a
    /// [`ClientError::Node`] with [`ErrorCode::NotFound`](crate::ErrorCode::NotFound).
    pub async fn get_message(
        &self,
        topic: &str,
        id: impl Into<Bytes>,
    ) -> Result<ConsumedMessage, ClientError> {
        let frame = Frame::GetMessage {
            topic: topic.into(),
            key: id.into(),
        };
        let answer = FrameType::MessageFound;
        match self
            .request_limited(&frame, answer, answer.max_body_bytes())
            .await?
        {
            Frame::MessageFound {
                partition,
                offset,
                batch,
            } => {
                let topic: Arc<str> = topic.into();
                let parsed = parse_delivery(&topic, partition, &batch, offset)
                    .map_err(ClientError::Protocol)?;
                parsed.messages.into_iter().find(|m| m.offset == offset).ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "message-found names offset {offset} of partition {partition}, but its batch does not hold it"
                    ))
                })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// A producer for `topic`, with its own stream and background task.
    pub fn producer(&self, topic: &str, config: ProducerConfig) -> Result<Producer, ClientError> {
        validate_name("topic name", topic).map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(Producer::start(self.clone(), topic.to_owned(), config))
    }

    /// Sends one message as a QUIC datagram with acks none: no answer, and
    /// it may be lost. Fails if the frame does not fit a datagram.
    pub fn send_datagram(&self, topic: &str, message: &Message) -> Result<(), ClientError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let batch = message.with_record(now_ms, |record: &NewRecord<'_>| {
            let mut builder = weir_proto::BatchBuilder::with_capacity(0);
            builder.push(record)?;
            builder.finish()
        });
        let batch = batch.map_err(|e| ClientError::Invalid(e.to_string()))?;
        let frame = Frame::Produce {
            seq: 0,
            topic: topic.to_owned(),
            acks: weir_proto::frame::Acks::None,
            partition: None,
            batch: Bytes::from(batch),
        };
        let bytes = Bytes::from(io::encode(&frame)?.to_vec());
        let conn = self.connection();
        let max = conn.max_datagram_size().unwrap_or(0);
        if bytes.len() > max {
            return Err(ClientError::DatagramTooLarge {
                len: bytes.len(),
                max,
            });
        }
        conn.send_datagram(bytes).map_err(|e| match e {
            quinn::SendDatagramError::ConnectionLost(c) => ClientError::from(c),
            quinn::SendDatagramError::TooLarge => ClientError::DatagramTooLarge {
                len: frame_len(&frame),
                max,
            },
            other => ClientError::Invalid(format!("datagram: {other}")),
        })
    }

    /// Subscribes to `topic` (one partition or all), starting at `from`,
    /// with the default credit window.
    pub async fn subscribe(
        &self,
        topic: &str,
        partition: Option<u32>,
        from: StartAt,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_with(topic, partition, from, ConsumerConfig::default())
            .await
    }

    /// Subscribes with an explicit credit window.
    pub async fn subscribe_with(
        &self,
        topic: &str,
        partition: Option<u32>,
        from: StartAt,
        config: ConsumerConfig,
    ) -> Result<Subscription, ClientError> {
        let start = Start::At { partition, from };
        Subscription::open(self.clone(), topic, start, config).await
    }

    /// Subscribes to the listed partitions of `topic`, each from its own
    /// offset: for an application that stores its positions itself (the
    /// offset after the last message it handled, per partition). An offset
    /// before a partition's first held message starts at that message; one
    /// past its end is refused, naming the partition.
    pub async fn subscribe_at(
        &self,
        topic: &str,
        positions: &[(u32, u64)],
        config: ConsumerConfig,
    ) -> Result<Subscription, ClientError> {
        let start = Start::Positions(positions.to_vec());
        Subscription::open(self.clone(), topic, start, config).await
    }

    /// Joins a consumer group on a topic and waits for the first
    /// assignment. A node that refuses the join (an option stated with
    /// another value than the group's, no consume right, no such topic)
    /// answers with an error naming what was wrong.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::ClientError> {
    /// use futures_util::StreamExt;
    /// use weir_client::{AckMode, GroupConfig};
    ///
    /// let mut member = client
    ///     .join_group(GroupConfig::new("audit", "orders").with_ack(AckMode::Auto))
    ///     .await?;
    /// while let Some(message) = member.next().await {
    ///     let message = message?;
    ///     println!("{}@{}: {:?}", message.partition, message.offset, message.payload);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn join_group(&self, config: GroupConfig) -> Result<GroupMember, ClientError> {
        GroupMember::join(self.clone(), config).await
    }

    /// Lists every consumer group with its state on each topic.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        match self
            .request(&Frame::ListGroups, FrameType::GroupList)
            .await?
        {
            Frame::GroupList(groups) => Ok(groups),
            other => Err(unexpected(&other)),
        }
    }

    /// Describes one consumer group: its options, and per topic its
    /// members and its progress on each partition. An unknown group is a
    /// [`ClientError::Node`] with [`ErrorCode::NotFound`](crate::ErrorCode::NotFound).
    pub async fn describe_group(&self, group: &str) -> Result<GroupInfo, ClientError> {
        let frame = Frame::DescribeGroup {
            group: group.into(),
        };
        match self.request(&frame, FrameType::GroupList).await? {
            Frame::GroupList(mut groups) if groups.len() == 1 => {
                groups.pop().ok_or_else(|| unexpected(&Frame::Ok))
            }
            Frame::GroupList(groups) => Err(ClientError::Protocol(format!(
                "describe-group answered with {} groups, not 1",
                groups.len()
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// Moves a group's position on every partition of `topic`: in stream
    /// mode its committed offsets (members holding those partitions are
    /// reassigned there), in queue mode its ack floor (what is in flight
    /// is forgotten).
    pub async fn seek_group(
        &self,
        group: &str,
        topic: &str,
        to: StartAt,
    ) -> Result<(), ClientError> {
        let frame = Frame::SeekGroup {
            group: group.into(),
            topic: topic.into(),
            to,
        };
        self.request(&frame, FrameType::Ok).await.map(drop)
    }

    /// One request on its own stream and its one answer.
    async fn request(&self, frame: &Frame, answer: FrameType) -> Result<Frame, ClientError> {
        self.request_limited(frame, answer, MAX_CONTROL_FRAME_BYTES)
            .await
    }

    /// A request whose answer may be larger than a control frame.
    async fn request_limited(
        &self,
        frame: &Frame,
        answer: FrameType,
        max_body_bytes: usize,
    ) -> Result<Frame, ClientError> {
        let encoded = io::encode(frame)?;
        let (mut send, mut recv) = match self.live_connection().await?.open_bi().await {
            Ok(stream) => stream,
            // Nothing was sent on a connection that could not open a
            // stream, so one redial and a second try are safe for any
            // request.
            Err(err) => {
                tracing::debug!(%err, "connection lost before a request; redialling");
                self.live_connection().await?.open_bi().await?
            }
        };
        io::write_frame(&mut send, &encoded).await?;
        send.finish()?;
        match io::read_frame(&mut recv, &[answer, FrameType::Error], max_body_bytes).await? {
            Some(Frame::Error { code, message }) => Err(ClientError::from_node(code, message)),
            Some(reply) => Ok(reply),
            None => Err(ClientError::Protocol(format!(
                "the node ended the stream without answering {}",
                frame.kind().name()
            ))),
        }
    }
}

impl Dial {
    /// One connection attempt: QUIC and TLS handshake and hello, within
    /// the connect timeout.
    async fn connect(
        &self,
        endpoint: &quinn::Endpoint,
    ) -> Result<(quinn::Connection, String), ClientError> {
        let config = &self.config;
        let failed = |reason: String| ClientError::Connect {
            addr: config.server.clone(),
            reason,
        };
        // A mismatch seen by an earlier attempt says nothing about this one.
        if let Ok(mut slot) = self.observed.mismatch.lock() {
            *slot = None;
        }
        let connecting = endpoint
            .connect_with(self.quic.clone(), self.addr, &config.server_name)
            .map_err(|e| failed(e.to_string()))?;
        let handshake = async {
            let conn = match connecting.await {
                Ok(conn) => conn,
                Err(err) => {
                    if let Some((expected, presented)) =
                        self.observed.mismatch.lock().ok().and_then(|m| *m)
                    {
                        return Err(ClientError::FingerprintMismatch {
                            expected: expected.to_string(),
                            presented: presented.to_string(),
                        });
                    }
                    return Err(match err {
                        quinn::ConnectionError::ApplicationClosed(_) => ClientError::from(err),
                        other => failed(other.to_string()),
                    });
                }
            };
            // TLS 1.3 lets the client finish its handshake before the node
            // has checked a client certificate, so a refusal can surface
            // only now; it is still a failure to connect.
            let node = hello(&conn, config).await.map_err(|e| match e {
                ClientError::ConnectionLost(reason) => failed(reason),
                other => other,
            })?;
            Ok((conn, node))
        };
        tokio::time::timeout(config.connect_timeout, handshake)
            .await
            .map_err(|_| {
                failed(format!(
                    "no answer within {:?} (is a node listening there?)",
                    config.connect_timeout
                ))
            })?
    }
}

fn frame_len(frame: &Frame) -> usize {
    frame.encode().map_or(0, |e| e.head.len() + e.bulk.len())
}

fn unexpected(frame: &Frame) -> ClientError {
    ClientError::Protocol(format!("unexpected {} frame", frame.kind().name()))
}

async fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let mut addrs = tokio::net::lookup_host(server)
        .await
        .map_err(|e| ClientError::Config(format!("cannot resolve {server:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| ClientError::Config(format!("{server:?} resolves to no address")))
}

/// The hello exchange on the connection's first stream.
async fn hello(conn: &quinn::Connection, config: &ClientConfig) -> Result<String, ClientError> {
    let frame = io::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        token: config.token.clone(),
        client: config.client_name.clone(),
    })?;
    let (mut send, mut recv) = conn.open_bi().await?;
    io::write_frame(&mut send, &frame).await?;
    send.finish()?;
    let answer = io::read_frame(
        &mut recv,
        &[FrameType::HelloOk, FrameType::Error],
        MAX_CONTROL_FRAME_BYTES,
    )
    .await;
    match answer {
        Ok(Some(Frame::HelloOk { version, server })) if version == PROTOCOL_VERSION => Ok(server),
        Ok(Some(Frame::HelloOk { version, .. })) => Err(ClientError::VersionMismatch {
            node: version,
            client: PROTOCOL_VERSION,
        }),
        Ok(Some(Frame::Error { code, message })) => Err(ClientError::from_node(code, message)),
        Ok(Some(other)) => Err(unexpected(&other)),
        Ok(None) => Err(ClientError::Protocol(
            "the node ended the hello stream without answering".into(),
        )),
        // The node may close the connection with a code that says more than
        // the stream error does.
        Err(err) => Err(conn.close_reason().map_or(err, ClientError::from)),
    }
}
