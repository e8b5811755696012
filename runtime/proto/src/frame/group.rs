//! The fields of the consumer-group frames: joining a group, assignments,
//! commits, acks and nacks, queue deliveries, and the group descriptions
//! `describe-group` answers with.

use super::types::{get_name, get_start, put_count, put_name, put_reason, put_start};
use super::wire::{Reader, Writer};
use super::{FrameError, MAX_LIST_ITEMS, MAX_PARTITIONS, MAX_REASON_BYTES, StartAt};

/// Longest member name a client gives when it joins.
pub const MAX_MEMBER_BYTES: usize = 255;
/// Most steps in a retry backoff schedule.
pub const MAX_BACKOFF_STEPS: usize = 64;

/// How the members of a group share a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupMode {
    /// Partitions are assigned to members; members commit offsets.
    Stream,
    /// Messages are handed out one by one; each is acked or nacked.
    Queue,
}

impl GroupMode {
    pub(super) fn tag(self) -> u8 {
        match self {
            GroupMode::Stream => 0,
            GroupMode::Queue => 1,
        }
    }

    pub(super) fn from_tag(tag: u8) -> Result<GroupMode, FrameError> {
        match tag {
            0 => Ok(GroupMode::Stream),
            1 => Ok(GroupMode::Queue),
            tag => Err(FrameError::BadTag {
                what: "group mode",
                tag,
            }),
        }
    }

    /// `stream` or `queue`.
    pub fn name(self) -> &'static str {
        match self {
            GroupMode::Stream => "stream",
            GroupMode::Queue => "queue",
        }
    }
}

/// A group's settings as a joining member states them. Each absent field
/// takes the group's stored value, or the default for a new group; a
/// present field that differs from a stored one is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupOptions {
    /// Stream or queue.
    pub mode: Option<GroupMode>,
    /// Where a new group starts on each partition.
    pub start: Option<StartAt>,
    /// Queue mode: how long a delivered message may stay unacked.
    pub ack_wait_ms: Option<u64>,
    /// Queue mode: deliveries before a message is dead-lettered.
    pub max_deliveries: Option<u32>,
    /// Queue mode: the delay before the n-th redelivery after a nack (the
    /// last step repeats).
    pub backoff_ms: Option<Vec<u64>>,
    /// Queue mode: no two messages with the same key in flight at once.
    pub ordered: Option<bool>,
}

/// One group as `describe-group` and `list-groups` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub name: String,
    /// Its mode.
    pub mode: GroupMode,
    /// Queue mode: ack wait.
    pub ack_wait_ms: u64,
    /// Queue mode: deliveries before dead-lettering.
    pub max_deliveries: u32,
    /// Queue mode: the backoff schedule.
    pub backoff_ms: Vec<u64>,
    /// Queue mode: ordered by key.
    pub ordered: bool,
    /// The topics the group has consumed.
    pub topics: Vec<GroupTopicInfo>,
}

/// A group's state on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTopicInfo {
    /// The topic.
    pub topic: String,
    /// Bumped by every rebalance and seek.
    pub generation: u64,
    /// The members connected now.
    pub members: Vec<MemberInfo>,
    /// Per partition, by index.
    pub partitions: Vec<GroupPartitionInfo>,
}

/// A connected member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The name it joined with.
    pub name: String,
    /// Stream mode: the partitions assigned to it.
    pub partitions: Vec<u32>,
    /// Queue mode: messages delivered to it and not yet acked.
    pub in_flight: u32,
}

/// A group's progress on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPartitionInfo {
    /// The partition.
    pub partition: u32,
    /// Stream mode: the committed offset. Queue mode: the ack floor (every
    /// message below it is acked or dead-lettered).
    pub committed: u64,
    /// The partition's end offset.
    pub end: u64,
    /// Messages the group has not finished: `end - committed` in stream
    /// mode; in queue mode the messages from the floor on that are neither
    /// acked nor dead-lettered.
    pub lag: u64,
    /// Queue mode: delivered and not yet acked.
    pub in_flight: u32,
    /// Queue mode: deliveries after the first, ever.
    pub redelivered: u64,
    /// Queue mode: messages sent to the dead-letter topic, ever.
    pub dead_lettered: u64,
}

fn put_opt<T>(w: &mut Writer, v: Option<T>, f: impl FnOnce(&mut Writer, T)) {
    match v {
        Some(v) => {
            w.u8(1);
            f(w, v);
        }
        None => w.u8(0),
    }
}

pub(super) fn put_options(w: &mut Writer, o: &GroupOptions) -> Result<(), FrameError> {
    put_opt(w, o.mode, |w, m| w.u8(m.tag()));
    put_opt(w, o.start, put_start);
    w.opt_u64(o.ack_wait_ms);
    w.opt_u32(o.max_deliveries);
    match &o.backoff_ms {
        Some(steps) => {
            w.u8(1);
            put_backoff(w, steps)?;
        }
        None => w.u8(0),
    }
    put_opt(w, o.ordered, |w, b| w.u8(u8::from(b)));
    Ok(())
}

pub(super) fn get_options(r: &mut Reader) -> Result<GroupOptions, FrameError> {
    let mode = match r.present("group mode")? {
        true => Some(GroupMode::from_tag(r.u8("group mode")?)?),
        false => None,
    };
    let start = match r.present("group start")? {
        true => Some(get_start(r)?),
        false => None,
    };
    let ack_wait_ms = r.opt_u64("ack wait")?;
    let max_deliveries = r.opt_u32("max deliveries")?;
    let backoff_ms = match r.present("backoff")? {
        true => Some(get_backoff(r)?),
        false => None,
    };
    let ordered = match r.present("ordered")? {
        true => Some(get_bool(r, "ordered")?),
        false => None,
    };
    Ok(GroupOptions {
        mode,
        start,
        ack_wait_ms,
        max_deliveries,
        backoff_ms,
        ordered,
    })
}

fn put_backoff(w: &mut Writer, steps: &[u64]) -> Result<(), FrameError> {
    if steps.len() > MAX_BACKOFF_STEPS {
        return Err(FrameError::TooMany {
            what: "backoff steps",
            count: steps.len(),
            limit: MAX_BACKOFF_STEPS,
        });
    }
    w.u32(steps.len() as u32);
    for s in steps {
        w.u64(*s);
    }
    Ok(())
}

fn get_backoff(r: &mut Reader) -> Result<Vec<u64>, FrameError> {
    let n = r.count(MAX_BACKOFF_STEPS, 8, "backoff steps")?;
    (0..n).map(|_| r.u64("backoff step")).collect()
}

fn get_bool(r: &mut Reader, what: &'static str) -> Result<bool, FrameError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(FrameError::BadTag { what, tag }),
    }
}

pub(super) fn put_member(w: &mut Writer, member: &str) -> Result<(), FrameError> {
    if member.len() > MAX_MEMBER_BYTES {
        return Err(FrameError::TooLong {
            what: "member name",
            len: member.len(),
            limit: MAX_MEMBER_BYTES,
        });
    }
    w.str(member);
    Ok(())
}

pub(super) fn get_member(r: &mut Reader) -> Result<String, FrameError> {
    r.str(MAX_MEMBER_BYTES, "member name")
}

/// `list<(partition u32, offset u64)>`, at most one entry per partition.
pub(super) fn put_offsets(w: &mut Writer, offsets: &[(u32, u64)]) -> Result<(), FrameError> {
    if offsets.len() > MAX_PARTITIONS as usize {
        return Err(FrameError::TooMany {
            what: "partition offsets",
            count: offsets.len(),
            limit: MAX_PARTITIONS as usize,
        });
    }
    w.u32(offsets.len() as u32);
    for (p, o) in offsets {
        w.u32(*p);
        w.u64(*o);
    }
    Ok(())
}

pub(super) fn get_offsets(r: &mut Reader) -> Result<Vec<(u32, u64)>, FrameError> {
    let n = r.count(MAX_PARTITIONS as usize, 12, "partition offsets")?;
    (0..n)
        .map(|_| Ok((r.u32("partition")?, r.u64("offset")?)))
        .collect()
}

/// `list<(partition u32, offset u64)>` of acked messages.
pub(super) fn put_acks(w: &mut Writer, acks: &[(u32, u64)]) -> Result<(), FrameError> {
    put_count(w, "acked messages", acks.len())?;
    for (p, o) in acks {
        w.u32(*p);
        w.u64(*o);
    }
    Ok(())
}

pub(super) fn get_acks(r: &mut Reader) -> Result<Vec<(u32, u64)>, FrameError> {
    let n = r.count(MAX_LIST_ITEMS, 12, "acked messages")?;
    (0..n)
        .map(|_| Ok((r.u32("partition")?, r.u64("offset")?)))
        .collect()
}

/// `list<(offset u64, attempt u32)>` of a queue delivery.
pub(super) fn put_attempts(w: &mut Writer, messages: &[(u64, u32)]) -> Result<(), FrameError> {
    put_count(w, "delivered messages", messages.len())?;
    for (o, a) in messages {
        w.u64(*o);
        w.u32(*a);
    }
    Ok(())
}

pub(super) fn get_attempts(r: &mut Reader) -> Result<Vec<(u64, u32)>, FrameError> {
    let n = r.count(MAX_LIST_ITEMS, 12, "delivered messages")?;
    (0..n)
        .map(|_| Ok((r.u64("offset")?, r.u32("attempt")?)))
        .collect()
}

pub(super) fn put_error_text(w: &mut Writer, s: &str) {
    put_reason(w, s);
}

pub(super) fn get_error_text(r: &mut Reader) -> Result<String, FrameError> {
    r.str(MAX_REASON_BYTES, "nack error")
}

pub(super) fn put_groups(w: &mut Writer, groups: &[GroupInfo]) -> Result<(), FrameError> {
    put_count(w, "groups", groups.len())?;
    for g in groups {
        put_name(w, "group name", &g.name)?;
        w.u8(g.mode.tag());
        w.u64(g.ack_wait_ms);
        w.u32(g.max_deliveries);
        put_backoff(w, &g.backoff_ms)?;
        w.u8(u8::from(g.ordered));
        put_count(w, "group topics", g.topics.len())?;
        for t in &g.topics {
            put_name(w, "topic name", &t.topic)?;
            w.u64(t.generation);
            put_count(w, "members", t.members.len())?;
            for m in &t.members {
                put_member(w, &m.name)?;
                put_count(w, "member partitions", m.partitions.len())?;
                for p in &m.partitions {
                    w.u32(*p);
                }
                w.u32(m.in_flight);
            }
            put_count(w, "group partitions", t.partitions.len())?;
            for p in &t.partitions {
                w.u32(p.partition);
                w.u64(p.committed);
                w.u64(p.end);
                w.u64(p.lag);
                w.u32(p.in_flight);
                w.u64(p.redelivered);
                w.u64(p.dead_lettered);
            }
        }
    }
    Ok(())
}

pub(super) fn get_groups(r: &mut Reader) -> Result<Vec<GroupInfo>, FrameError> {
    let n = r.count(MAX_LIST_ITEMS, 20, "groups")?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        let name = get_name(r, "group name")?;
        let mode = GroupMode::from_tag(r.u8("group mode")?)?;
        let ack_wait_ms = r.u64("ack wait")?;
        let max_deliveries = r.u32("max deliveries")?;
        let backoff_ms = get_backoff(r)?;
        let ordered = get_bool(r, "ordered")?;
        let nt = r.count(MAX_LIST_ITEMS, 18, "group topics")?;
        let mut topics = Vec::with_capacity(nt);
        for _ in 0..nt {
            let topic = get_name(r, "topic name")?;
            let generation = r.u64("generation")?;
            let nm = r.count(MAX_LIST_ITEMS, 10, "members")?;
            let mut members = Vec::with_capacity(nm);
            for _ in 0..nm {
                let name = get_member(r)?;
                let np = r.count(MAX_PARTITIONS as usize, 4, "member partitions")?;
                let partitions = (0..np)
                    .map(|_| r.u32("partition"))
                    .collect::<Result<_, _>>()?;
                members.push(MemberInfo {
                    name,
                    partitions,
                    in_flight: r.u32("in flight")?,
                });
            }
            let np = r.count(MAX_PARTITIONS as usize, 48, "group partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(GroupPartitionInfo {
                    partition: r.u32("partition")?,
                    committed: r.u64("committed")?,
                    end: r.u64("end")?,
                    lag: r.u64("lag")?,
                    in_flight: r.u32("in flight")?,
                    redelivered: r.u64("redelivered")?,
                    dead_lettered: r.u64("dead lettered")?,
                });
            }
            topics.push(GroupTopicInfo {
                topic,
                generation,
                members,
                partitions,
            });
        }
        groups.push(GroupInfo {
            name,
            mode,
            ack_wait_ms,
            max_deliveries,
            backoff_ms,
            ordered,
            topics,
        });
    }
    Ok(groups)
}
