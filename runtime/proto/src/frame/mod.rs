//! The frames of the weir protocol (`weir/1`), as `docs/protocol.md`
//! describes them.
//!
//! A frame is a 5-byte prefix (body length `u32`, frame type `u8`) and a
//! body. [`FrameHeader::parse`] bounds the length by the frame type before
//! a reader allocates anything; [`Frame::decode`] then checks every field.
//! Bulk data (a record batch, a plugin's wasm) is always the last field of
//! its frame and is handed out as a `Bytes` slice of the body, so the node
//! appends a produced batch and sends a stored one without copying it.

mod group;
mod types;
mod wire;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use group::{
    GroupInfo, GroupMode, GroupOptions, GroupPartitionInfo, GroupTopicInfo, MAX_BACKOFF_STEPS,
    MAX_MEMBER_BYTES, MemberInfo,
};
pub use types::{
    Acks, AttachmentInfo, ErrorCode, FailurePolicy, FlushMode, MessageOutcome, Outcomes,
    PartitionInfo, Placement, PluginInfo, StartAt, TopicInfo, TopicSpec, validate_name,
};
use wire::{Reader, Writer};

/// The protocol version a hello carries.
pub const PROTOCOL_VERSION: u16 = 1;
/// Length of the frame prefix: body length (u32 LE) and frame type (u8).
pub const FRAME_PREFIX_LEN: usize = 5;
/// Largest uploaded plugin component.
pub const MAX_PLUGIN_BYTES: usize = 32 * 1024 * 1024;
/// Largest body of a frame that carries no bulk data.
pub const MAX_CONTROL_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Longest topic or plugin name.
pub const MAX_NAME_BYTES: usize = 249;
/// Longest bearer token.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest error message or drop/reject reason.
pub const MAX_REASON_BYTES: usize = 4096;
/// Longest attachment config string.
pub const MAX_CONFIG_BYTES: usize = 65_535;
/// Most partitions in a topic.
pub const MAX_PARTITIONS: u32 = 4096;
/// Most items in a list in any frame.
pub const MAX_LIST_ITEMS: usize = 100_000;

/// Room for the fixed fields in front of a frame's bulk data.
const BULK_OVERHEAD: usize = 1024;

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame type byte is not one this version knows.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// The body is longer than its frame type allows.
    #[error("{kind} frame of {len} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// The frame type.
        kind: &'static str,
        /// The length in the prefix.
        len: u64,
        /// The limit for that type.
        limit: u64,
    },
    /// A field runs past the end of the body.
    #[error("truncated {what}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A string is longer than its field allows.
    #[error("{what} is {len} bytes, limit {limit}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Its bound.
        limit: usize,
    },
    /// A list has more items than its field allows.
    #[error("{what} has {count} items, limit {limit}")]
    TooMany {
        /// The field.
        what: &'static str,
        /// The count.
        count: usize,
        /// Its bound.
        limit: usize,
    },
    /// A string is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// The field.
        what: &'static str,
    },
    /// An enum or option tag has no meaning.
    #[error("{what} has unknown tag {tag}")]
    BadTag {
        /// The field.
        what: &'static str,
        /// The tag.
        tag: u8,
    },
    /// Bytes are left after the last field.
    #[error("{kind} frame has {extra} bytes after its last field")]
    TrailingBytes {
        /// The frame type.
        kind: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A field's value is outside what it may hold.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

macro_rules! frame_types {
    ($($variant:ident = $code:literal, $name:literal, $limit:expr;)*) => {
        /// The type byte of a frame.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum FrameType {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant = $code,
            )*
        }

        impl FrameType {
            /// The type for a type byte.
            pub fn from_u8(byte: u8) -> Result<FrameType, FrameError> {
                match byte {
                    $($code => Ok(FrameType::$variant),)*
                    other => Err(FrameError::UnknownType(other)),
                }
            }

            /// The frame type's name, as `docs/protocol.md` spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $(FrameType::$variant => $name,)*
                }
            }

            /// Largest body this frame type may have.
            pub fn max_body_bytes(self) -> usize {
                match self {
                    $(FrameType::$variant => $limit,)*
                }
            }
        }
    };
}

frame_types! {
    Hello = 0x01, "hello", MAX_CONTROL_FRAME_BYTES;
    HelloOk = 0x02, "hello-ok", MAX_CONTROL_FRAME_BYTES;
    Error = 0x03, "error", MAX_CONTROL_FRAME_BYTES;
    Ok = 0x04, "ok", MAX_CONTROL_FRAME_BYTES;
    CreateTopic = 0x10, "create-topic", MAX_CONTROL_FRAME_BYTES;
    DeleteTopic = 0x11, "delete-topic", MAX_CONTROL_FRAME_BYTES;
    ListTopics = 0x12, "list-topics", MAX_CONTROL_FRAME_BYTES;
    DescribeTopic = 0x13, "describe-topic", MAX_CONTROL_FRAME_BYTES;
    TopicList = 0x14, "topic-list", MAX_CONTROL_FRAME_BYTES;
    PutPlugin = 0x20, "put-plugin", MAX_PLUGIN_BYTES + BULK_OVERHEAD;
    PluginStored = 0x21, "plugin-stored", MAX_CONTROL_FRAME_BYTES;
    ListPlugins = 0x22, "list-plugins", MAX_CONTROL_FRAME_BYTES;
    PluginList = 0x23, "plugin-list", MAX_CONTROL_FRAME_BYTES;
    DeletePlugin = 0x24, "delete-plugin", MAX_CONTROL_FRAME_BYTES;
    Attach = 0x25, "attach", MAX_CONTROL_FRAME_BYTES;
    Detach = 0x26, "detach", MAX_CONTROL_FRAME_BYTES;
    Produce = 0x30, "produce", crate::limits::MAX_BATCH_BYTES + BULK_OVERHEAD;
    ProduceAck = 0x31, "produce-ack", MAX_CONTROL_FRAME_BYTES;
    ProduceError = 0x32, "produce-error", MAX_CONTROL_FRAME_BYTES;
    Subscribe = 0x40, "subscribe", MAX_CONTROL_FRAME_BYTES;
    Subscribed = 0x41, "subscribed", MAX_CONTROL_FRAME_BYTES;
    Credit = 0x42, "credit", MAX_CONTROL_FRAME_BYTES;
    Delivery = 0x43, "delivery", crate::limits::MAX_BATCH_BYTES * 4 + BULK_OVERHEAD;
    SubscribeAt = 0x44, "subscribe-at", MAX_CONTROL_FRAME_BYTES;
    GetMessage = 0x50, "get-message", MAX_CONTROL_FRAME_BYTES;
    MessageFound = 0x51, "message-found", crate::limits::MAX_BATCH_BYTES + BULK_OVERHEAD;
    JoinGroup = 0x60, "join-group", MAX_CONTROL_FRAME_BYTES;
    Assignment = 0x61, "assignment", MAX_CONTROL_FRAME_BYTES;
    Commit = 0x62, "commit", MAX_CONTROL_FRAME_BYTES;
    Ack = 0x63, "ack", MAX_CONTROL_FRAME_BYTES;
    Nack = 0x64, "nack", MAX_CONTROL_FRAME_BYTES;
    QueueDelivery = 0x65, "queue-delivery", crate::limits::MAX_BATCH_BYTES * 4 + MAX_CONTROL_FRAME_BYTES;
    ListGroups = 0x66, "list-groups", MAX_CONTROL_FRAME_BYTES;
    DescribeGroup = 0x67, "describe-group", MAX_CONTROL_FRAME_BYTES;
    GroupList = 0x68, "group-list", MAX_CONTROL_FRAME_BYTES;
    SeekGroup = 0x69, "seek-group", MAX_CONTROL_FRAME_BYTES;
}

/// The 5-byte prefix of a frame, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub kind: FrameType,
    /// Length of the body that follows.
    pub body_len: usize,
}

impl FrameHeader {
    /// Parses a prefix and bounds its length by the frame type, before the
    /// caller reads (and allocates for) the body.
    pub fn parse(prefix: [u8; FRAME_PREFIX_LEN]) -> Result<FrameHeader, FrameError> {
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let kind = FrameType::from_u8(prefix[4])?;
        if len > kind.max_body_bytes() {
            return Err(FrameError::FrameTooLarge {
                kind: kind.name(),
                len: len as u64,
                limit: kind.max_body_bytes() as u64,
            });
        }
        Ok(FrameHeader {
            kind,
            body_len: len,
        })
    }
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Client → node, first frame of the first stream.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
        /// Bearer token, if the client has one.
        token: Option<String>,
        /// Free-form client name for the node's logs.
        client: String,
    },
    /// Node → client: the hello is accepted.
    HelloOk {
        /// Protocol version the node speaks.
        version: u16,
        /// The node's name and version.
        server: String,
    },
    /// A request failed, or the peer sent something wrong.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// What was wrong, for a person.
        message: String,
    },
    /// A request without a result succeeded.
    Ok,
    /// Create a topic.
    CreateTopic(TopicSpec),
    /// Delete a topic and its data.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// List every topic.
    ListTopics,
    /// Describe one topic.
    DescribeTopic {
        /// The topic.
        name: String,
    },
    /// Answer to `ListTopics` and `DescribeTopic`.
    TopicList(Vec<TopicInfo>),
    /// Upload a new version of a plugin.
    PutPlugin {
        /// The plugin's name.
        name: String,
        /// The component's bytes.
        wasm: Bytes,
    },
    /// Answer to `PutPlugin`.
    PluginStored(PluginInfo),
    /// List plugins.
    ListPlugins,
    /// Answer to `ListPlugins`.
    PluginList(Vec<PluginInfo>),
    /// Delete a plugin (every version).
    DeletePlugin {
        /// The plugin.
        name: String,
    },
    /// Attach a plugin to a topic's chain.
    Attach {
        /// The topic.
        topic: String,
        /// The plugin (its newest version).
        plugin: String,
        /// Config string for the plugin's `init`.
        config: String,
        /// What happens to a batch when the plugin fails.
        on_error: FailurePolicy,
        /// Position in the chain (0 = first); the end when absent.
        position: Option<u32>,
    },
    /// Detach a plugin from a topic's chain.
    Detach {
        /// The topic.
        topic: String,
        /// The plugin.
        plugin: String,
    },
    /// Publish a batch.
    Produce {
        /// Client-chosen sequence number, echoed in the ack.
        seq: u64,
        /// The topic.
        topic: String,
        /// When the node acknowledges.
        acks: Acks,
        /// A partition, or the node/plugins choose.
        partition: Option<u32>,
        /// An encoded record batch (`docs/storage.md`).
        batch: Bytes,
    },
    /// Per-message results of a `Produce`.
    ProduceAck {
        /// The produce's sequence number.
        seq: u64,
        /// One outcome per message, in order.
        outcomes: Outcomes,
    },
    /// A `Produce` failed as a whole; the stream stays open.
    ProduceError {
        /// The produce's sequence number.
        seq: u64,
        /// What kind of failure.
        code: ErrorCode,
        /// What was wrong.
        message: String,
    },
    /// Start a consumer stream.
    Subscribe {
        /// The topic.
        topic: String,
        /// One partition, or all of them.
        partition: Option<u32>,
        /// Where to start.
        from: StartAt,
    },
    /// Start a consumer stream on the listed partitions, each at its own
    /// offset: how a client resumes a subscription on a new connection
    /// where the old one stopped, or starts from positions it stored.
    /// Answered with `Subscribed`, then used like a `Subscribe` stream.
    SubscribeAt {
        /// The topic.
        topic: String,
        /// (partition, first offset to deliver), each partition once.
        positions: Vec<(u32, u64)>,
    },
    /// Answer to `Subscribe` and `SubscribeAt`: the partitions and the
    /// offsets delivery starts at.
    Subscribed {
        /// (partition, first offset delivered).
        partitions: Vec<(u32, u64)>,
    },
    /// Consumer → node: grant more credit (added to what is left).
    Credit {
        /// Messages the node may push.
        messages: u32,
        /// Bytes of batches the node may push.
        bytes: u32,
    },
    /// Node → consumer: stored batches of one partition.
    Delivery {
        /// The partition.
        partition: u32,
        /// Offset after the last batch: where this subscription continues.
        next_offset: u64,
        /// The partition's end offset when the batches were read.
        end_offset: u64,
        /// Whole record batches; the first may start before the offset the
        /// consumer asked for.
        batches: Bytes,
    },
    /// Look a stored message up by its id or dedup key.
    GetMessage {
        /// The topic.
        topic: String,
        /// The producer's message id or a plugin's dedup key, at most
        /// `limits::MAX_ID_BYTES`.
        key: Bytes,
    },
    /// Answer to `GetMessage`: where the message is, and the stored batch
    /// that holds it.
    MessageFound {
        /// The partition.
        partition: u32,
        /// The message's offset; the batch may hold other records too.
        offset: u64,
        /// The one encoded record batch holding `offset`.
        batch: Bytes,
    },
    /// Client → node: join a consumer group on a topic; the stream then
    /// carries the member's deliveries.
    JoinGroup {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// A name for this member in `describe-group`.
        member: String,
        /// Queue mode: most messages delivered to this member and not yet
        /// acked (0: the node's default).
        prefetch: u32,
        /// The group's settings as this member states them.
        options: GroupOptions,
    },
    /// Node → member: the group's mode and what this member consumes from
    /// now on. Sent after `join-group` and after every rebalance or seek.
    Assignment {
        /// The group's generation on the topic.
        generation: u64,
        /// The group's mode.
        mode: GroupMode,
        /// Stream mode: the partitions assigned and the offset delivery
        /// starts at. Queue mode: every partition and its ack floor.
        partitions: Vec<(u32, u64)>,
    },
    /// Stream-mode member → node: commit offsets (the next offset to
    /// consume, per partition).
    Commit {
        /// The generation the messages were delivered in; stale commits are
        /// ignored.
        generation: u64,
        /// (partition, offset).
        offsets: Vec<(u32, u64)>,
    },
    /// Queue-mode member → node: these messages are done.
    Ack {
        /// The generation of their delivery.
        generation: u64,
        /// (partition, offset).
        messages: Vec<(u32, u64)>,
    },
    /// Queue-mode member → node: this message failed; redeliver it later.
    Nack {
        /// The generation of its delivery.
        generation: u64,
        /// The partition.
        partition: u32,
        /// The offset.
        offset: u64,
        /// Redeliver after this delay instead of the backoff schedule's.
        delay_ms: Option<u64>,
        /// Why it failed, kept for the dead-letter headers.
        error: String,
    },
    /// Node → queue-mode member: messages to process, with the batches that
    /// hold them (which may hold other records too).
    QueueDelivery {
        /// The generation.
        generation: u64,
        /// The partition.
        partition: u32,
        /// (offset, delivery attempt counting from 1) of each message for
        /// this member.
        messages: Vec<(u64, u32)>,
        /// Whole record batches covering those offsets.
        batches: Bytes,
    },
    /// List consumer groups.
    ListGroups,
    /// Describe one consumer group.
    DescribeGroup {
        /// The group.
        group: String,
    },
    /// Answer to `ListGroups` and `DescribeGroup`.
    GroupList(Vec<GroupInfo>),
    /// Move a group's position on a topic.
    SeekGroup {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// Where every partition goes.
        to: StartAt,
    },
}

/// An encoded frame: the prefix and fixed fields, then bulk data that is
/// sent as it is (a slice of a mapped segment, say) without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Prefix and fixed fields.
    pub head: Vec<u8>,
    /// Bulk data following the head; empty for most frames.
    pub bulk: Bytes,
}

impl EncodedFrame {
    /// Head and bulk in one buffer (copies the bulk).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.bulk.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.bulk);
        out
    }
}

impl Frame {
    /// The frame's type.
    pub fn kind(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::HelloOk { .. } => FrameType::HelloOk,
            Frame::Error { .. } => FrameType::Error,
            Frame::Ok => FrameType::Ok,
            Frame::CreateTopic(_) => FrameType::CreateTopic,
            Frame::DeleteTopic { .. } => FrameType::DeleteTopic,
            Frame::ListTopics => FrameType::ListTopics,
            Frame::DescribeTopic { .. } => FrameType::DescribeTopic,
            Frame::TopicList(_) => FrameType::TopicList,
            Frame::PutPlugin { .. } => FrameType::PutPlugin,
            Frame::PluginStored(_) => FrameType::PluginStored,
            Frame::ListPlugins => FrameType::ListPlugins,
            Frame::PluginList(_) => FrameType::PluginList,
            Frame::DeletePlugin { .. } => FrameType::DeletePlugin,
            Frame::Attach { .. } => FrameType::Attach,
            Frame::Detach { .. } => FrameType::Detach,
            Frame::Produce { .. } => FrameType::Produce,
            Frame::ProduceAck { .. } => FrameType::ProduceAck,
            Frame::ProduceError { .. } => FrameType::ProduceError,
            Frame::Subscribe { .. } => FrameType::Subscribe,
            Frame::SubscribeAt { .. } => FrameType::SubscribeAt,
            Frame::Subscribed { .. } => FrameType::Subscribed,
            Frame::Credit { .. } => FrameType::Credit,
            Frame::Delivery { .. } => FrameType::Delivery,
            Frame::GetMessage { .. } => FrameType::GetMessage,
            Frame::MessageFound { .. } => FrameType::MessageFound,
            Frame::JoinGroup { .. } => FrameType::JoinGroup,
            Frame::Assignment { .. } => FrameType::Assignment,
            Frame::Commit { .. } => FrameType::Commit,
            Frame::Ack { .. } => FrameType::Ack,
            Frame::Nack { .. } => FrameType::Nack,
            Frame::QueueDelivery { .. } => FrameType::QueueDelivery,
            Frame::ListGroups => FrameType::ListGroups,
            Frame::DescribeGroup { .. } => FrameType::DescribeGroup,
            Frame::GroupList(_) => FrameType::GroupList,
            Frame::SeekGroup { .. } => FrameType::SeekGroup,
        }
    }

    /// Encodes the frame. Fails only if a field breaks a limit, so a node or
    /// client never sends a frame its peer must refuse.
    pub fn encode(&self) -> Result<EncodedFrame, FrameError> {
        let mut w = Writer {
            buf: vec![0; FRAME_PREFIX_LEN],
        };
        let bulk = types::encode_body(self, &mut w)?;
        let kind = self.kind();
        let body_len = w.buf.len() - FRAME_PREFIX_LEN + bulk.len();
        if body_len > kind.max_body_bytes() {
            return Err(FrameError::FrameTooLarge {
                kind: kind.name(),
                len: body_len as u64,
                limit: kind.max_body_bytes() as u64,
            });
        }
        w.buf[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        w.buf[4] = kind as u8;
        Ok(EncodedFrame { head: w.buf, bulk })
    }

    /// Decodes a body of the given type. Bulk fields are slices of `body`.
    pub fn decode(kind: FrameType, body: Bytes) -> Result<Frame, FrameError> {
        if body.len() > kind.max_body_bytes() {
            return Err(FrameError::FrameTooLarge {
                kind: kind.name(),
                len: body.len() as u64,
                limit: kind.max_body_bytes() as u64,
            });
        }
        let mut r = Reader::new(body);
        let frame = types::decode_body(kind, &mut r)?;
        r.finish(kind.name())?;
        Ok(frame)
    }

    /// Decodes one whole frame (prefix and body) from `buf`; returns it and
    /// the bytes it took. `Ok(None)` if `buf` holds only part of a frame.
    pub fn decode_from(buf: &Bytes) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(prefix) = buf.get(..FRAME_PREFIX_LEN) else {
            return Ok(None);
        };
        let mut p = [0u8; FRAME_PREFIX_LEN];
        p.copy_from_slice(prefix);
        let header = FrameHeader::parse(p)?;
        let end = FRAME_PREFIX_LEN + header.body_len;
        if buf.len() < end {
            return Ok(None);
        }
        let frame = Frame::decode(header.kind, buf.slice(FRAME_PREFIX_LEN..end))?;
        Ok(Some((frame, end)))
    }
}
