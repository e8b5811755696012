//! The durable record of a group's progress on one topic: an append-only
//! file of events (commits, deliveries, acks, retries, dead letters), each
//! framed as `len u32, crc32c u32, body` (little-endian).
//!
//! Events are written with one `write` call each, so they survive the node
//! process dying; they reach stable storage at the next [`Journal::sync`],
//! which the node runs every few milliseconds and at shutdown. On open the
//! file is replayed; a record that is cut short or fails its checksum ends
//! the replay and the file is truncated there (what was lost is at most
//! the last events before a power loss: acks not recorded are redelivered,
//! which at-least-once delivery allows). When the file outgrows its
//! snapshot it is rewritten as a snapshot of the current state (write a new
//! file, fsync, rename over, fsync the directory).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::NodeError;

/// Longest event body accepted at replay.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// The file is rewritten once it is this much larger than its last snapshot.
const COMPACT_SLACK_BYTES: u64 = 4 * 1024 * 1024;

/// One change to a group's state on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Stream mode: the committed offset. Queue mode: a seek (or, in a
    /// snapshot, the ack floor): everything below is done and the state
    /// above is forgotten.
    Position { partition: u32, offset: u64 },
    /// Stream mode: a member committed.
    Commit { partition: u32, offset: u64 },
    /// Queue mode: these offsets were delivered once more each.
    Delivered { partition: u32, offsets: Vec<u64> },
    /// Queue mode: these offsets are done (acked).
    Acked { partition: u32, offsets: Vec<u64> },
    /// Queue mode: this offset went to the dead-letter topic.
    Dead { partition: u32, offset: u64 },
    /// Queue mode: a delivery failed; redeliver at `due_ms`.
    Failed {
        partition: u32,
        offset: u64,
        due_ms: i64,
        error: String,
    },
    /// Snapshot only: attempts so far of an unfinished message.
    Attempts {
        partition: u32,
        offset: u64,
        attempts: u32,
    },
    /// Snapshot only: the running counters of a partition.
    Counters {
        partition: u32,
        redelivered: u64,
        dead_lettered: u64,
    },
}

impl Event {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        match self {
            Event::Position { partition, offset } => {
                out.push(1);
                put_u32(out, *partition);
                put_u64(out, *offset);
            }
            Event::Commit { partition, offset } => {
                out.push(2);
                put_u32(out, *partition);
                put_u64(out, *offset);
            }
            Event::Delivered { partition, offsets } => {
                out.push(3);
                put_u32(out, *partition);
                put_offsets(out, offsets);
            }
            Event::Acked { partition, offsets } => {
                out.push(4);
                put_u32(out, *partition);
                put_offsets(out, offsets);
            }
            Event::Dead { partition, offset } => {
                out.push(5);
                put_u32(out, *partition);
                put_u64(out, *offset);
            }
            Event::Failed {
                partition,
                offset,
                due_ms,
                error,
            } => {
                out.push(6);
                put_u32(out, *partition);
                put_u64(out, *offset);
                out.extend_from_slice(&due_ms.to_le_bytes());
                let error = &error.as_bytes()[..error.len().min(4096)];
                put_u32(out, error.len() as u32);
                out.extend_from_slice(error);
            }
            Event::Attempts {
                partition,
                offset,
                attempts,
            } => {
                out.push(7);
                put_u32(out, *partition);
                put_u64(out, *offset);
                put_u32(out, *attempts);
            }
            Event::Counters {
                partition,
                redelivered,
                dead_lettered,
            } => {
                out.push(8);
                put_u32(out, *partition);
                put_u64(out, *redelivered);
                put_u64(out, *dead_lettered);
            }
        }
        let body_len = (out.len() - start - 8) as u32;
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Result<Event, String> {
        let mut r = Cursor { buf: body, pos: 0 };
        let event = match r.u8()? {
            1 => Event::Position {
                partition: r.u32()?,
                offset: r.u64()?,
            },
            2 => Event::Commit {
                partition: r.u32()?,
                offset: r.u64()?,
            },
            3 => Event::Delivered {
                partition: r.u32()?,
                offsets: r.offsets()?,
            },
            4 => Event::Acked {
                partition: r.u32()?,
                offsets: r.offsets()?,
            },
            5 => Event::Dead {
                partition: r.u32()?,
                offset: r.u64()?,
            },
            6 => {
                let partition = r.u32()?;
                let offset = r.u64()?;
                let due_ms = r.u64()? as i64;
                let len = r.u32()? as usize;
                let error = String::from_utf8_lossy(r.take(len)?).into_owned();
                Event::Failed {
                    partition,
                    offset,
                    due_ms,
                    error,
                }
            }
            7 => Event::Attempts {
                partition: r.u32()?,
                offset: r.u64()?,
                attempts: r.u32()?,
            },
            8 => Event::Counters {
                partition: r.u32()?,
                redelivered: r.u64()?,
                dead_lettered: r.u64()?,
            },
            tag => return Err(format!("unknown event tag {tag}")),
        };
        if r.pos != body.len() {
            return Err(format!("{} bytes after the event", body.len() - r.pos));
        }
        Ok(event)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_offsets(out: &mut Vec<u8>, offsets: &[u64]) {
    put_u32(out, offsets.len() as u32);
    for o in offsets {
        put_u64(out, *o);
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| format!("event cut short: {n} bytes needed at byte {}", self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn offsets(&mut self) -> Result<Vec<u64>, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(8) > self.buf.len() - self.pos {
            return Err(format!("{n} offsets do not fit in the event"));
        }
        (0..n).map(|_| self.u64()).collect()
    }
}

/// An open journal file.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    /// Size of the last snapshot; the file is compacted when it grows past
    /// this plus the slack.
    snapshot_len: u64,
    dirty: bool,
    scratch: Vec<u8>,
}

impl Journal {
    /// Opens (creating) the journal at `path` and returns it with the
    /// events it holds, in order.
    pub(crate) fn open(path: &Path) -> Result<(Journal, Vec<Event>), NodeError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NodeError::io("create", dir, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| NodeError::io("open", path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| NodeError::io("read", path, e))?;
        let (events, good) = replay(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                at = good,
                lost = bytes.len() - good,
                "group journal ends in a damaged or partial event; truncated there"
            );
            file.set_len(good as u64)
                .map_err(|e| NodeError::io("truncate", path, e))?;
            file.sync_all()
                .map_err(|e| NodeError::io("fsync", path, e))?;
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                len: good as u64,
                snapshot_len: good as u64,
                dirty: false,
                scratch: Vec::new(),
            },
            events,
        ))
    }

    /// Appends events with one write.
    pub(crate) fn append(&mut self, events: &[Event]) -> Result<(), NodeError> {
        if events.is_empty() {
            return Ok(());
        }
        self.scratch.clear();
        for e in events {
            e.encode(&mut self.scratch);
        }
        self.file
            .write_all(&self.scratch)
            .map_err(|e| NodeError::io("write", &self.path, e))?;
        self.len += self.scratch.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Whether the file has grown enough past its snapshot to rewrite.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.len > self.snapshot_len.saturating_mul(2) + COMPACT_SLACK_BYTES
    }

    /// Replaces the file with `snapshot`, atomically.
    pub(crate) fn compact(&mut self, snapshot: &[Event]) -> Result<(), NodeError> {
        let mut bytes = Vec::new();
        for e in snapshot {
            e.encode(&mut bytes);
        }
        let tmp = self.path.with_extension("journal.tmp");
        let mut f = File::create(&tmp).map_err(|e| NodeError::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| NodeError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| NodeError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| NodeError::io("rename", &self.path, e))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| NodeError::io("fsync", dir, e))?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| NodeError::io("open", &self.path, e))?;
        self.len = bytes.len() as u64;
        self.snapshot_len = self.len;
        self.dirty = false;
        Ok(())
    }

    /// Fsyncs what was appended since the last sync.
    pub(crate) fn sync(&mut self) -> Result<(), NodeError> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| NodeError::io("fsync", &self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Decodes events from the start of `bytes`; returns them and how many
/// bytes held whole, valid events.
fn replay(bytes: &[u8]) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= 8 {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        if len == 0 || len > MAX_EVENT_BYTES || bytes.len() - pos - 8 < len {
            break;
        }
        let body = &bytes[pos + 8..pos + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        match Event::decode(body) {
            Ok(e) => events.push(e),
            Err(reason) => {
                tracing::warn!(at = pos, %reason, "group journal event does not decode");
                break;
            }
        }
        pos += 8 + len;
    }
    (events, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        vec![
            Event::Position {
                partition: 0,
                offset: 5,
            },
            Event::Commit {
                partition: 1,
                offset: 9,
            },
            Event::Delivered {
                partition: 0,
                offsets: vec![5, 6, 7],
            },
            Event::Acked {
                partition: 0,
                offsets: vec![6],
            },
            Event::Dead {
                partition: 0,
                offset: 5,
            },
            Event::Failed {
                partition: 0,
                offset: 7,
                due_ms: 1_700_000_000_000,
                error: "db down".into(),
            },
            Event::Attempts {
                partition: 2,
                offset: 1,
                attempts: 3,
            },
            Event::Counters {
                partition: 2,
                redelivered: 4,
                dead_lettered: 1,
            },
        ]
    }

    #[test]
    fn events_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g").join("t.journal");
        let (mut j, events) = Journal::open(&path).expect("open");
        assert!(events.is_empty());
        j.append(&sample()).expect("append");
        j.sync().expect("sync");
        drop(j);
        let (mut j, events) = Journal::open(&path).expect("reopen");
        assert_eq!(events, sample());
        j.compact(&sample()[..2]).expect("compact");
        j.append(&sample()[2..3]).expect("append after compaction");
        drop(j);
        let (_, events) = Journal::open(&path).expect("reopen");
        assert_eq!(events, sample()[..3].to_vec());
    }

    #[test]
    fn a_damaged_tail_is_cut_at_every_byte() {
        let mut bytes = Vec::new();
        for e in sample() {
            e.encode(&mut bytes);
        }
        let mut whole = Vec::new();
        sample()[..7].iter().for_each(|e| e.encode(&mut whole));
        for cut in whole.len()..bytes.len() {
            let (events, good) = replay(&bytes[..cut]);
            assert_eq!(events.len(), 7, "cut at {cut}");
            assert_eq!(good, whole.len());
        }
        for flip in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x10;
            let (events, good) = replay(&damaged);
            assert!(good <= flip, "flip at {flip} kept byte {good}");
            assert_eq!(events, sample()[..events.len()].to_vec(), "flip at {flip}");
        }
    }
}
