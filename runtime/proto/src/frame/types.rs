//! The structured fields of frames and the body encoding of each frame
//! type. Field order here is the order on the wire.

use bytes::Bytes;

use super::group::{self as g, GroupMode};
use super::wire::{Reader, Writer};
use super::{
    Frame, FrameError, FrameType, MAX_CONFIG_BYTES, MAX_LIST_ITEMS, MAX_NAME_BYTES, MAX_PARTITIONS,
    MAX_PLUGIN_BYTES, MAX_REASON_BYTES, MAX_TOKEN_BYTES,
};
use crate::limits::{MAX_BATCH_BYTES, MAX_ID_BYTES};

/// Checks a topic or plugin name: 1 to 249 bytes of `[A-Za-z0-9._-]`.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), FrameError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(FrameError::Invalid {
            what,
            detail: format!("{:?} must be 1 to {MAX_NAME_BYTES} bytes", name),
        });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(FrameError::Invalid {
            what,
            detail: format!("{name:?} contains {c:?}; allowed are A-Z a-z 0-9 . _ -"),
        });
    }
    Ok(())
}

macro_rules! tagged_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $tag:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            fn tag(self) -> u8 {
                match self {
                    $($name::$variant => $tag,)*
                }
            }

            fn from_tag(tag: u8) -> Result<$name, FrameError> {
                match tag {
                    $($tag => Ok($name::$variant),)*
                    tag => Err(FrameError::BadTag { what: $what, tag }),
                }
            }
        }
    };
}

tagged_enum! {
    /// When the node acknowledges a produce.
    Acks, "acks" {
        /// Never: fire and forget.
        None = 0,
        /// After the batch is written to the log (page cache).
        Stored = 1,
        /// After the batch is fsynced.
        Durable = 2,
    }
}

tagged_enum! {
    /// What happens to a batch when a plugin in the chain fails.
    FailurePolicy, "failure policy" {
        /// The producer gets an error for every message of the batch.
        Reject = 0,
        /// The batch goes to `<topic>.dlq` unchanged.
        DeadLetter = 1,
        /// The plugin is skipped for this batch.
        Bypass = 2,
    }
}

/// A protocol error's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The peer sent a frame that does not decode.
    Malformed,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// No valid token.
    Unauthenticated,
    /// The token lacks the right for this topic.
    Forbidden,
    /// The topic, plugin or partition does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// A field has a value the node refuses.
    InvalidArgument,
    /// Too big for a limit.
    TooLarge,
    /// The node cannot do it now (a fenced partition, shutting down).
    Unavailable,
    /// A plugin failed and the attachment's policy is reject.
    PluginFailed,
    /// A bug or an unexpected failure in the node.
    Internal,
    /// A code this version does not know (sent by a newer peer).
    Unknown(u16),
}

impl ErrorCode {
    /// The code on the wire.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::VersionMismatch => 2,
            ErrorCode::Unauthenticated => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::NotFound => 5,
            ErrorCode::AlreadyExists => 6,
            ErrorCode::InvalidArgument => 7,
            ErrorCode::TooLarge => 8,
            ErrorCode::Unavailable => 9,
            ErrorCode::PluginFailed => 10,
            ErrorCode::Internal => 11,
            ErrorCode::Unknown(c) => c,
        }
    }

    /// The code for a wire value.
    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::VersionMismatch,
            3 => ErrorCode::Unauthenticated,
            4 => ErrorCode::Forbidden,
            5 => ErrorCode::NotFound,
            6 => ErrorCode::AlreadyExists,
            7 => ErrorCode::InvalidArgument,
            8 => ErrorCode::TooLarge,
            9 => ErrorCode::Unavailable,
            10 => ErrorCode::PluginFailed,
            11 => ErrorCode::Internal,
            c => ErrorCode::Unknown(c),
        }
    }
}

/// When a topic's partitions fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Every append, group-committed.
    Durable,
    /// Every `interval_ms`.
    Interval {
        /// The interval.
        interval_ms: u64,
    },
    /// Page cache only (sealed segments are still fsynced).
    None,
}

/// What a topic is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// Number of partitions, 1 to 4096.
    pub partitions: u32,
    /// Delete sealed segments older than this.
    pub retention_ms: Option<u64>,
    /// Delete oldest sealed segments while a partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// When partitions fsync.
    pub flush: FlushMode,
    /// How long a dedup key is remembered (0 = no dedup).
    pub dedup_window_ms: u64,
}

/// One partition's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// First offset held.
    pub start_offset: u64,
    /// Offset the next message gets.
    pub end_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// A plugin attached to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// The plugin.
    pub plugin: String,
    /// The version in use.
    pub version: u32,
    /// Its config string.
    pub config: String,
    /// Its failure policy.
    pub on_error: FailurePolicy,
}

/// A topic's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// What the topic is.
    pub spec: TopicSpec,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionInfo>,
    /// Its plugin chain, in order.
    pub chain: Vec<AttachmentInfo>,
}

/// An uploaded plugin (its newest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// Its newest version (1, 2, ...).
    pub version: u32,
    /// Size of that version's component.
    pub bytes: u64,
    /// SHA-256 of that version's component.
    pub sha256: [u8; 32],
}

/// Where a consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first offset held.
    Earliest,
    /// The next message to arrive.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first message at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// Where a message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
}

/// What became of one produced message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Stored at these places (more than one when a plugin fanned it out).
    Stored(Vec<Placement>),
    /// Filtered out by a plugin; the reason it gave.
    Dropped(String),
    /// Refused; the reason (a plugin's, or the node's).
    Rejected(String),
    /// Already stored within the dedup window, at this place.
    Duplicate(Placement),
}

/// The outcomes of a produced batch, one per message in order, held
/// compactly: a run of messages stored one after another at consecutive
/// offsets of one partition (the usual answer) is a single entry, in memory
/// and on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcomes {
    entries: Vec<OutcomeEntry>,
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OutcomeEntry {
    /// `count` messages, each stored at one place: `first`, then the
    /// following offsets of the same partition.
    Run { first: Placement, count: u32 },
    /// One message.
    One(MessageOutcome),
}

impl Outcomes {
    /// No outcomes.
    pub fn new() -> Outcomes {
        Outcomes::default()
    }

    /// Messages answered for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the next message's outcome.
    pub fn push(&mut self, outcome: MessageOutcome) {
        match outcome {
            MessageOutcome::Stored(mut places) if places.len() == 1 => {
                if let Some(place) = places.pop() {
                    self.push_stored(place);
                }
            }
            other => {
                self.len += 1;
                self.entries.push(OutcomeEntry::One(other));
            }
        }
    }

    /// Adds the next message, stored once at `place`.
    pub fn push_stored(&mut self, place: Placement) {
        self.len += 1;
        if let Some(OutcomeEntry::Run { first, count }) = self.entries.last_mut()
            && *count < u32::MAX
            && first.partition == place.partition
            && first.offset.checked_add(u64::from(*count)) == Some(place.offset)
            && first.topic == place.topic
        {
            *count += 1;
            return;
        }
        self.entries.push(OutcomeEntry::Run {
            first: place,
            count: 1,
        });
    }

    /// Adds the next message, stored once at `offset` of `topic`'s
    /// `partition`; allocates only when it starts a new run.
    pub fn push_stored_at(&mut self, topic: &str, partition: u32, offset: u64) {
        if let Some(OutcomeEntry::Run { first, count }) = self.entries.last_mut()
            && *count < u32::MAX
            && first.partition == partition
            && first.offset.checked_add(u64::from(*count)) == Some(offset)
            && first.topic == topic
        {
            self.len += 1;
            *count += 1;
            return;
        }
        self.push_stored(Placement {
            topic: topic.to_string(),
            partition,
            offset,
        });
    }

    /// Each message's outcome, in order.
    pub fn iter(&self) -> impl Iterator<Item = MessageOutcome> + '_ {
        self.entries.iter().flat_map(|entry| {
            let (first, count, one) = match entry {
                OutcomeEntry::Run { first, count } => (Some(first), u64::from(*count), None),
                OutcomeEntry::One(outcome) => (None, 1, Some(outcome)),
            };
            (0..count).map(move |i| match (first, one) {
                (Some(first), _) => MessageOutcome::Stored(vec![Placement {
                    topic: first.topic.clone(),
                    partition: first.partition,
                    offset: first.offset + i,
                }]),
                (None, Some(one)) => one.clone(),
                (None, None) => MessageOutcome::Stored(Vec::new()),
            })
        })
    }

    /// Entries on the wire (runs count once).
    pub(super) fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl FromIterator<MessageOutcome> for Outcomes {
    fn from_iter<I: IntoIterator<Item = MessageOutcome>>(iter: I) -> Outcomes {
        let mut outcomes = Outcomes::new();
        for outcome in iter {
            outcomes.push(outcome);
        }
        outcomes
    }
}

impl From<Vec<MessageOutcome>> for Outcomes {
    fn from(outcomes: Vec<MessageOutcome>) -> Outcomes {
        outcomes.into_iter().collect()
    }
}

fn put_outcomes(w: &mut Writer, outcomes: &Outcomes) -> Result<(), FrameError> {
    if outcomes.len() > crate::limits::MAX_RECORDS_PER_BATCH as usize {
        return Err(FrameError::TooMany {
            what: "outcomes",
            count: outcomes.len(),
            limit: crate::limits::MAX_RECORDS_PER_BATCH as usize,
        });
    }
    put_count(w, "outcome entries", outcomes.entry_count())?;
    for entry in &outcomes.entries {
        match entry {
            OutcomeEntry::Run { first, count } => {
                w.u8(4);
                w.u32(*count);
                put_placement(w, first)?;
            }
            OutcomeEntry::One(MessageOutcome::Stored(places)) => {
                w.u8(0);
                put_count(w, "placements", places.len())?;
                for p in places {
                    put_placement(w, p)?;
                }
            }
            OutcomeEntry::One(MessageOutcome::Dropped(reason)) => {
                w.u8(1);
                put_reason(w, reason);
            }
            OutcomeEntry::One(MessageOutcome::Rejected(reason)) => {
                w.u8(2);
                put_reason(w, reason);
            }
            OutcomeEntry::One(MessageOutcome::Duplicate(p)) => {
                w.u8(3);
                put_placement(w, p)?;
            }
        }
    }
    Ok(())
}

fn get_outcomes(r: &mut Reader) -> Result<Outcomes, FrameError> {
    let limit = crate::limits::MAX_RECORDS_PER_BATCH as usize;
    let n = r.count(limit, 3, "outcome entries")?;
    let mut outcomes = Outcomes {
        entries: Vec::with_capacity(n),
        len: 0,
    };
    for _ in 0..n {
        let (entry, count) = match r.u8("outcome")? {
            0 => {
                let np = r.count(MAX_LIST_ITEMS, 15, "placements")?;
                let mut places = Vec::with_capacity(np);
                for _ in 0..np {
                    places.push(get_placement(r)?);
                }
                (OutcomeEntry::One(MessageOutcome::Stored(places)), 1)
            }
            1 => (
                OutcomeEntry::One(MessageOutcome::Dropped(
                    r.str(MAX_REASON_BYTES, "drop reason")?,
                )),
                1,
            ),
            2 => (
                OutcomeEntry::One(MessageOutcome::Rejected(
                    r.str(MAX_REASON_BYTES, "reject reason")?,
                )),
                1,
            ),
            3 => (
                OutcomeEntry::One(MessageOutcome::Duplicate(get_placement(r)?)),
                1,
            ),
            4 => {
                let count = r.u32("run length")?;
                let first = get_placement(r)?;
                if count == 0 || first.offset.checked_add(u64::from(count)).is_none() {
                    return Err(FrameError::Invalid {
                        what: "stored run",
                        detail: format!(
                            "{count} messages from offset {} is not a run",
                            first.offset
                        ),
                    });
                }
                (OutcomeEntry::Run { first, count }, count as usize)
            }
            tag => {
                return Err(FrameError::BadTag {
                    what: "outcome",
                    tag,
                });
            }
        };
        outcomes.len += count;
        if outcomes.len > limit {
            return Err(FrameError::TooMany {
                what: "outcomes",
                count: outcomes.len,
                limit,
            });
        }
        outcomes.entries.push(entry);
    }
    Ok(outcomes)
}

fn put_spec(w: &mut Writer, s: &TopicSpec) -> Result<(), FrameError> {
    validate_name("topic name", &s.name)?;
    w.str(&s.name);
    w.u32(s.partitions);
    w.opt_u64(s.retention_ms);
    w.opt_u64(s.retention_bytes);
    match s.flush {
        FlushMode::Durable => w.u8(0),
        FlushMode::Interval { interval_ms } => {
            w.u8(1);
            w.u64(interval_ms);
        }
        FlushMode::None => w.u8(2),
    }
    w.u64(s.dedup_window_ms);
    Ok(())
}

fn get_spec(r: &mut Reader) -> Result<TopicSpec, FrameError> {
    let name = get_name(r, "topic name")?;
    let partitions = r.u32("partitions")?;
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(FrameError::Invalid {
            what: "partitions",
            detail: format!("{partitions} is outside 1..={MAX_PARTITIONS}"),
        });
    }
    let retention_ms = r.opt_u64("retention ms")?;
    let retention_bytes = r.opt_u64("retention bytes")?;
    let flush = match r.u8("flush")? {
        0 => FlushMode::Durable,
        1 => FlushMode::Interval {
            interval_ms: r.u64("flush interval")?,
        },
        2 => FlushMode::None,
        tag => return Err(FrameError::BadTag { what: "flush", tag }),
    };
    let dedup_window_ms = r.u64("dedup window")?;
    Ok(TopicSpec {
        name,
        partitions,
        retention_ms,
        retention_bytes,
        flush,
        dedup_window_ms,
    })
}

pub(super) fn get_name(r: &mut Reader, what: &'static str) -> Result<String, FrameError> {
    let name = r.str(MAX_NAME_BYTES, what)?;
    validate_name(what, &name)?;
    Ok(name)
}

pub(super) fn put_name(w: &mut Writer, what: &'static str, name: &str) -> Result<(), FrameError> {
    validate_name(what, name)?;
    w.str(name);
    Ok(())
}

fn put_bounded(
    w: &mut Writer,
    what: &'static str,
    s: &str,
    limit: usize,
) -> Result<(), FrameError> {
    if s.len() > limit {
        return Err(FrameError::TooLong {
            what,
            len: s.len(),
            limit,
        });
    }
    w.str(s);
    Ok(())
}

/// Reasons and error messages are cut to their limit rather than refused:
/// they are for people, and an over-long one must not turn an answer into
/// a failure.
pub(super) fn put_reason(w: &mut Writer, s: &str) {
    let mut end = s.len().min(MAX_REASON_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    w.str(&s[..end]);
}

fn put_placement(w: &mut Writer, p: &Placement) -> Result<(), FrameError> {
    put_name(w, "topic name", &p.topic)?;
    w.u32(p.partition);
    w.u64(p.offset);
    Ok(())
}

fn get_placement(r: &mut Reader) -> Result<Placement, FrameError> {
    Ok(Placement {
        topic: get_name(r, "topic name")?,
        partition: r.u32("partition")?,
        offset: r.u64("offset")?,
    })
}

pub(super) fn put_count(w: &mut Writer, what: &'static str, n: usize) -> Result<(), FrameError> {
    if n > MAX_LIST_ITEMS {
        return Err(FrameError::TooMany {
            what,
            count: n,
            limit: MAX_LIST_ITEMS,
        });
    }
    w.u32(n as u32);
    Ok(())
}

pub(super) fn put_start(w: &mut Writer, from: StartAt) {
    match from {
        StartAt::Earliest => w.u8(0),
        StartAt::Latest => w.u8(1),
        StartAt::Offset(o) => {
            w.u8(2);
            w.u64(o);
        }
        StartAt::Timestamp(t) => {
            w.u8(3);
            w.i64(t);
        }
    }
}

/// A list of (partition, offset) pairs, as `subscribe-at` and
/// `subscribed` carry them.
fn put_positions(w: &mut Writer, positions: &[(u32, u64)]) -> Result<(), FrameError> {
    put_count(w, "partitions", positions.len())?;
    for (p, o) in positions {
        w.u32(*p);
        w.u64(*o);
    }
    Ok(())
}

fn get_positions(r: &mut Reader) -> Result<Vec<(u32, u64)>, FrameError> {
    let n = r.count(MAX_PARTITIONS as usize, 12, "partitions")?;
    let mut positions = Vec::with_capacity(n);
    for _ in 0..n {
        positions.push((r.u32("partition")?, r.u64("offset")?));
    }
    Ok(positions)
}

pub(super) fn get_start(r: &mut Reader) -> Result<StartAt, FrameError> {
    Ok(match r.u8("start")? {
        0 => StartAt::Earliest,
        1 => StartAt::Latest,
        2 => StartAt::Offset(r.u64("start offset")?),
        3 => StartAt::Timestamp(r.i64("start timestamp")?),
        tag => return Err(FrameError::BadTag { what: "start", tag }),
    })
}

/// Writes the fields of `frame` after the prefix; returns its bulk data.
pub(super) fn encode_body(frame: &Frame, w: &mut Writer) -> Result<Bytes, FrameError> {
    match frame {
        Frame::Hello {
            version,
            token,
            client,
        } => {
            w.u16(*version);
            if let Some(t) = token
                && t.len() > MAX_TOKEN_BYTES
            {
                return Err(FrameError::TooLong {
                    what: "token",
                    len: t.len(),
                    limit: MAX_TOKEN_BYTES,
                });
            }
            w.opt_str(token.as_deref());
            put_bounded(w, "client name", client, MAX_REASON_BYTES)?;
        }
        Frame::HelloOk { version, server } => {
            w.u16(*version);
            put_bounded(w, "server name", server, MAX_REASON_BYTES)?;
        }
        Frame::Error { code, message } => {
            w.u16(code.code());
            put_reason(w, message);
        }
        Frame::Ok | Frame::ListTopics | Frame::ListPlugins => {}
        Frame::CreateTopic(spec) => put_spec(w, spec)?,
        Frame::DeleteTopic { name } | Frame::DescribeTopic { name } => {
            put_name(w, "topic name", name)?
        }
        Frame::TopicList(topics) => {
            put_count(w, "topics", topics.len())?;
            for t in topics {
                put_spec(w, &t.spec)?;
                put_count(w, "partitions", t.partitions.len())?;
                for p in &t.partitions {
                    w.u64(p.start_offset);
                    w.u64(p.end_offset);
                    w.u64(p.bytes);
                }
                put_count(w, "chain", t.chain.len())?;
                for a in &t.chain {
                    put_name(w, "plugin name", &a.plugin)?;
                    w.u32(a.version);
                    put_bounded(w, "config", &a.config, MAX_CONFIG_BYTES)?;
                    w.u8(a.on_error.tag());
                }
            }
        }
        Frame::PutPlugin { name, wasm } => {
            put_name(w, "plugin name", name)?;
            if wasm.len() > MAX_PLUGIN_BYTES {
                return Err(FrameError::TooLong {
                    what: "plugin",
                    len: wasm.len(),
                    limit: MAX_PLUGIN_BYTES,
                });
            }
            return Ok(wasm.clone());
        }
        Frame::PluginStored(p) => put_plugin(w, p)?,
        Frame::PluginList(plugins) => {
            put_count(w, "plugins", plugins.len())?;
            for p in plugins {
                put_plugin(w, p)?;
            }
        }
        Frame::DeletePlugin { name } => put_name(w, "plugin name", name)?,
        Frame::Attach {
            topic,
            plugin,
            config,
            on_error,
            position,
        } => {
            put_name(w, "topic name", topic)?;
            put_name(w, "plugin name", plugin)?;
            put_bounded(w, "config", config, MAX_CONFIG_BYTES)?;
            w.u8(on_error.tag());
            w.opt_u32(*position);
        }
        Frame::Detach { topic, plugin } => {
            put_name(w, "topic name", topic)?;
            put_name(w, "plugin name", plugin)?;
        }
        Frame::Produce {
            seq,
            topic,
            acks,
            partition,
            batch,
        } => {
            w.u64(*seq);
            put_name(w, "topic name", topic)?;
            w.u8(acks.tag());
            w.opt_u32(*partition);
            return Ok(batch.clone());
        }
        Frame::ProduceAck { seq, outcomes } => {
            w.u64(*seq);
            put_outcomes(w, outcomes)?;
        }
        Frame::ProduceError { seq, code, message } => {
            w.u64(*seq);
            w.u16(code.code());
            put_reason(w, message);
        }
        Frame::Subscribe {
            topic,
            partition,
            from,
        } => {
            put_name(w, "topic name", topic)?;
            w.opt_u32(*partition);
            put_start(w, *from);
        }
        Frame::SubscribeAt { topic, positions } => {
            put_name(w, "topic name", topic)?;
            put_positions(w, positions)?;
        }
        Frame::Subscribed { partitions } => put_positions(w, partitions)?,
        Frame::Credit { messages, bytes } => {
            w.u32(*messages);
            w.u32(*bytes);
        }
        Frame::Delivery {
            partition,
            next_offset,
            end_offset,
            batches,
        } => {
            w.u32(*partition);
            w.u64(*next_offset);
            w.u64(*end_offset);
            return Ok(batches.clone());
        }
        Frame::GetMessage { topic, key } => {
            put_name(w, "topic name", topic)?;
            put_lookup_key(w, key)?;
        }
        Frame::MessageFound {
            partition,
            offset,
            batch,
        } => {
            w.u32(*partition);
            w.u64(*offset);
            if batch.len() > MAX_BATCH_BYTES {
                return Err(FrameError::TooLong {
                    what: "found batch",
                    len: batch.len(),
                    limit: MAX_BATCH_BYTES,
                });
            }
            return Ok(batch.clone());
        }
        Frame::JoinGroup {
            group,
            topic,
            member,
            prefetch,
            options,
        } => {
            put_name(w, "group name", group)?;
            put_name(w, "topic name", topic)?;
            g::put_member(w, member)?;
            w.u32(*prefetch);
            g::put_options(w, options)?;
        }
        Frame::Assignment {
            generation,
            mode,
            partitions,
        } => {
            w.u64(*generation);
            w.u8(mode.tag());
            g::put_offsets(w, partitions)?;
        }
        Frame::Commit {
            generation,
            offsets,
        } => {
            w.u64(*generation);
            g::put_offsets(w, offsets)?;
        }
        Frame::Ack {
            generation,
            messages,
        } => {
            w.u64(*generation);
            g::put_acks(w, messages)?;
        }
        Frame::Nack {
            generation,
            partition,
            offset,
            delay_ms,
            error,
        } => {
            w.u64(*generation);
            w.u32(*partition);
            w.u64(*offset);
            w.opt_u64(*delay_ms);
            g::put_error_text(w, error);
        }
        Frame::QueueDelivery {
            generation,
            partition,
            messages,
            batches,
        } => {
            w.u64(*generation);
            w.u32(*partition);
            g::put_attempts(w, messages)?;
            return Ok(batches.clone());
        }
        Frame::ListGroups => {}
        Frame::DescribeGroup { group } => put_name(w, "group name", group)?,
        Frame::GroupList(groups) => g::put_groups(w, groups)?,
        Frame::SeekGroup { group, topic, to } => {
            put_name(w, "group name", group)?;
            put_name(w, "topic name", topic)?;
            put_start(w, *to);
        }
    }
    Ok(Bytes::new())
}

/// A lookup key is 1 to `MAX_ID_BYTES` bytes: an empty one would match
/// every record without an id.
fn put_lookup_key(w: &mut Writer, key: &[u8]) -> Result<(), FrameError> {
    if key.is_empty() || key.len() > MAX_ID_BYTES {
        return Err(FrameError::Invalid {
            what: "message id",
            detail: format!("{} bytes; must be 1 to {MAX_ID_BYTES}", key.len()),
        });
    }
    w.u16(key.len() as u16);
    w.buf.extend_from_slice(key);
    Ok(())
}

fn get_lookup_key(r: &mut Reader) -> Result<Bytes, FrameError> {
    let len = usize::from(r.u16("message id length")?);
    if len == 0 || len > MAX_ID_BYTES {
        let detail = format!("{len} bytes; must be 1 to {MAX_ID_BYTES}");
        return Err(FrameError::Invalid {
            what: "message id",
            detail,
        });
    }
    r.slice(len, "message id")
}

fn put_plugin(w: &mut Writer, p: &PluginInfo) -> Result<(), FrameError> {
    put_name(w, "plugin name", &p.name)?;
    w.u32(p.version);
    w.u64(p.bytes);
    w.buf.extend_from_slice(&p.sha256);
    Ok(())
}

fn get_plugin(r: &mut Reader) -> Result<PluginInfo, FrameError> {
    Ok(PluginInfo {
        name: get_name(r, "plugin name")?,
        version: r.u32("plugin version")?,
        bytes: r.u64("plugin bytes")?,
        sha256: r.bytes32("plugin sha256")?,
    })
}

/// Reads the fields of a frame of type `kind`.
pub(super) fn decode_body(kind: FrameType, r: &mut Reader) -> Result<Frame, FrameError> {
    Ok(match kind {
        FrameType::Hello => Frame::Hello {
            version: r.u16("version")?,
            token: r.opt_str(MAX_TOKEN_BYTES, "token")?,
            client: r.str(MAX_REASON_BYTES, "client name")?,
        },
        FrameType::HelloOk => Frame::HelloOk {
            version: r.u16("version")?,
            server: r.str(MAX_REASON_BYTES, "server name")?,
        },
        FrameType::Error => Frame::Error {
            code: ErrorCode::from_code(r.u16("error code")?),
            message: r.str(MAX_REASON_BYTES, "error message")?,
        },
        FrameType::Ok => Frame::Ok,
        FrameType::CreateTopic => Frame::CreateTopic(get_spec(r)?),
        FrameType::DeleteTopic => Frame::DeleteTopic {
            name: get_name(r, "topic name")?,
        },
        FrameType::ListTopics => Frame::ListTopics,
        FrameType::DescribeTopic => Frame::DescribeTopic {
            name: get_name(r, "topic name")?,
        },
        FrameType::TopicList => {
            let n = r.count(MAX_LIST_ITEMS, 40, "topics")?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let spec = get_spec(r)?;
                let np = r.count(MAX_PARTITIONS as usize, 24, "partitions")?;
                let mut partitions = Vec::with_capacity(np);
                for _ in 0..np {
                    partitions.push(PartitionInfo {
                        start_offset: r.u64("start offset")?,
                        end_offset: r.u64("end offset")?,
                        bytes: r.u64("partition bytes")?,
                    });
                }
                let nc = r.count(MAX_LIST_ITEMS, 10, "chain")?;
                let mut chain = Vec::with_capacity(nc);
                for _ in 0..nc {
                    chain.push(AttachmentInfo {
                        plugin: get_name(r, "plugin name")?,
                        version: r.u32("plugin version")?,
                        config: r.str(MAX_CONFIG_BYTES, "config")?,
                        on_error: FailurePolicy::from_tag(r.u8("failure policy")?)?,
                    });
                }
                topics.push(TopicInfo {
                    spec,
                    partitions,
                    chain,
                });
            }
            Frame::TopicList(topics)
        }
        FrameType::PutPlugin => {
            let name = get_name(r, "plugin name")?;
            let wasm = r.rest();
            if wasm.len() > MAX_PLUGIN_BYTES {
                return Err(FrameError::TooLong {
                    what: "plugin",
                    len: wasm.len(),
                    limit: MAX_PLUGIN_BYTES,
                });
            }
            Frame::PutPlugin { name, wasm }
        }
        FrameType::PluginStored => Frame::PluginStored(get_plugin(r)?),
        FrameType::ListPlugins => Frame::ListPlugins,
        FrameType::PluginList => {
            let n = r.count(MAX_LIST_ITEMS, 47, "plugins")?;
            let mut plugins = Vec::with_capacity(n);
            for _ in 0..n {
                plugins.push(get_plugin(r)?);
            }
            Frame::PluginList(plugins)
        }
        FrameType::DeletePlugin => Frame::DeletePlugin {
            name: get_name(r, "plugin name")?,
        },
        FrameType::Attach => Frame::Attach {
            topic: get_name(r, "topic name")?,
            plugin: get_name(r, "plugin name")?,
            config: r.str(MAX_CONFIG_BYTES, "config")?,
            on_error: FailurePolicy::from_tag(r.u8("failure policy")?)?,
            position: r.opt_u32("position")?,
        },
        FrameType::Detach => Frame::Detach {
            topic: get_name(r, "topic name")?,
            plugin: get_name(r, "plugin name")?,
        },
        FrameType::Produce => Frame::Produce {
            seq: r.u64("seq")?,
            topic: get_name(r, "topic name")?,
            acks: Acks::from_tag(r.u8("acks")?)?,
            partition: r.opt_u32("partition")?,
            batch: r.rest(),
        },
        FrameType::ProduceAck => Frame::ProduceAck {
            seq: r.u64("seq")?,
            outcomes: get_outcomes(r)?,
        },
        FrameType::ProduceError => Frame::ProduceError {
            seq: r.u64("seq")?,
            code: ErrorCode::from_code(r.u16("error code")?),
            message: r.str(MAX_REASON_BYTES, "error message")?,
        },
        FrameType::Subscribe => Frame::Subscribe {
            topic: get_name(r, "topic name")?,
            partition: r.opt_u32("partition")?,
            from: get_start(r)?,
        },
        FrameType::SubscribeAt => Frame::SubscribeAt {
            topic: get_name(r, "topic name")?,
            positions: get_positions(r)?,
        },
        FrameType::Subscribed => Frame::Subscribed {
            partitions: get_positions(r)?,
        },
        FrameType::Credit => Frame::Credit {
            messages: r.u32("credit messages")?,
            bytes: r.u32("credit bytes")?,
        },
        FrameType::Delivery => Frame::Delivery {
            partition: r.u32("partition")?,
            next_offset: r.u64("next offset")?,
            end_offset: r.u64("end offset")?,
            batches: r.rest(),
        },
        FrameType::GetMessage => Frame::GetMessage {
            topic: get_name(r, "topic name")?,
            key: get_lookup_key(r)?,
        },
        FrameType::MessageFound => {
            let partition = r.u32("partition")?;
            let offset = r.u64("offset")?;
            let batch = r.rest();
            if batch.len() > MAX_BATCH_BYTES {
                return Err(FrameError::TooLong {
                    what: "found batch",
                    len: batch.len(),
                    limit: MAX_BATCH_BYTES,
                });
            }
            Frame::MessageFound {
                partition,
                offset,
                batch,
            }
        }
        FrameType::JoinGroup => Frame::JoinGroup {
            group: get_name(r, "group name")?,
            topic: get_name(r, "topic name")?,
            member: g::get_member(r)?,
            prefetch: r.u32("prefetch")?,
            options: g::get_options(r)?,
        },
        FrameType::Assignment => Frame::Assignment {
            generation: r.u64("generation")?,
            mode: GroupMode::from_tag(r.u8("group mode")?)?,
            partitions: g::get_offsets(r)?,
        },
        FrameType::Commit => Frame::Commit {
            generation: r.u64("generation")?,
            offsets: g::get_offsets(r)?,
        },
        FrameType::Ack => Frame::Ack {
            generation: r.u64("generation")?,
            messages: g::get_acks(r)?,
        },
        FrameType::Nack => Frame::Nack {
            generation: r.u64("generation")?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
            delay_ms: r.opt_u64("nack delay")?,
            error: g::get_error_text(r)?,
        },
        FrameType::QueueDelivery => Frame::QueueDelivery {
            generation: r.u64("generation")?,
            partition: r.u32("partition")?,
            messages: g::get_attempts(r)?,
            batches: r.rest(),
        },
        FrameType::ListGroups => Frame::ListGroups,
        FrameType::DescribeGroup => Frame::DescribeGroup {
            group: get_name(r, "group name")?,
        },
        FrameType::GroupList => Frame::GroupList(g::get_groups(r)?),
        FrameType::SeekGroup => Frame::SeekGroup {
            group: get_name(r, "group name")?,
            topic: get_name(r, "topic name")?,
            to: get_start(r)?,
        },
    })
}
