//! Async Rust client for weir nodes, over QUIC.
//!
//! [`Client::connect`] opens a QUIC connection (TLS 1.3, ALPN `weir/1`),
//! verifies the node's certificate by a pinned fingerprint or a CA file,
//! and exchanges hello. From a client come admin calls (topics, plugins,
//! attachments), [`Producer`]s that batch and pipeline,
//! [`Subscription`]s, streams of messages under credit-based flow control,
//! and [`GroupMember`]s of consumer groups, which share a topic's messages
//! by partition (stream mode, with committed offsets) or one by one (queue
//! mode, with acks, retries and dead letters).
//!
//! A lost connection (a node restart, a network failure) is dialled again
//! by the next admin request and by producers; an idempotent producer
//! (the default) resends what was left unanswered with the same message
//! ids, so that a topic with a dedup window stores each message once (see
//! [`ProducerConfig::idempotent`] and [`RetryConfig`]). Subscriptions and
//! group members end with the connection.
//!
//! The client depends on `weir-proto` for the wire format and never on the
//! plugin host: a producer on a phone or gateway carries no WebAssembly
//! runtime. It never offers a way to skip certificate verification.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_client::ClientError> {
//! use futures_util::StreamExt;
//! use weir_client::{Client, ClientConfig, Message, ProducerConfig, StartAt, Trust};
//!
//! let trust = Trust::Fingerprint("ab".repeat(32).parse()?);
//! let client = Client::connect(ClientConfig::new("127.0.0.1:7400", trust)).await?;
//! let producer = client.producer("events", ProducerConfig::default())?;
//! let outcome = producer.send(Message::new("hello").with_key("user-1")).await?;
//! println!("{outcome:?}");
//! let mut sub = client.subscribe("events", None, StartAt::Earliest).await?;
//! if let Some(message) = sub.next().await {
//!     println!("{:?}", message?.payload);
//! }
//! # Ok(()) }
//! ```

mod client;
mod config;
mod consumer;
mod error;
mod fingerprint;
mod group;
mod io;
mod producer;
mod tls;

pub use client::{Attach, Client};
pub use config::{ClientConfig, ClientIdentity, Trust};
pub use consumer::{ConsumedMessage, ConsumerConfig, Subscription};
pub use error::ClientError;
pub use fingerprint::Fingerprint;
pub use group::{AckMode, Acker, GroupConfig, GroupMember, GroupMessage};
pub use producer::{Message, Outcome, Producer, ProducerConfig, RetryConfig, SendHandle};
pub use tls::fingerprint_of_pem_file;
pub use weir_proto::ALPN;
pub use weir_proto::frame::{
    Acks, AttachmentInfo, ErrorCode, FailurePolicy, FlushMode, GroupInfo, GroupMode, GroupOptions,
    GroupPartitionInfo, GroupTopicInfo, MemberInfo, PartitionInfo, Placement, PluginInfo, StartAt,
    TopicInfo, TopicSpec,
};
