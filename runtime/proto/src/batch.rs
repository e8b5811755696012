//! The record batch: one encoding for the wire and the disk.
//!
//! A batch is a fixed 44-byte header followed by its records. The header has
//! its own checksum so that a reader can trust `batch_len` (and so find the
//! next batch) without reading the body; the body has another, which does not
//! cover `base_offset`, so the log can stamp offsets on a producer's batch
//! without touching the records. `docs/storage.md` describes every byte.

use crate::BatchError;
use crate::limits::{
    MAX_BATCH_BYTES, MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES, MAX_HEADERS_PER_RECORD,
    MAX_ID_BYTES, MAX_KEY_BYTES, MAX_RECORDS_PER_BATCH,
};
use crate::varint;

/// Length of the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 44;
/// The format version this code reads and writes.
pub const BATCH_MAGIC: u8 = 1;

const HEADER_CRC_COVERS: usize = 40;

const ATTR_HAS_KEY: u8 = 1 << 0;
const ATTR_HAS_ID: u8 = 1 << 1;
const ATTR_HAS_DEDUP_KEY: u8 = 1 << 2;
const RECORD_ATTR_KNOWN: u8 = ATTR_HAS_KEY | ATTR_HAS_ID | ATTR_HAS_DEDUP_KEY;

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record; the others follow densely.
    pub base_offset: u64,
    /// Length of the whole batch, header included.
    pub batch_len: u32,
    /// Batch attributes (no bits are defined yet; all must be zero).
    pub attributes: u8,
    /// Number of records, at least one.
    pub record_count: u32,
    /// Timestamp of the first record, in ms since the Unix epoch.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp_ms: i64,
    /// CRC32C of the body (bytes after the header).
    pub body_crc: u32,
}

impl BatchHeader {
    /// Decodes and checks the header at the front of `buf`: its checksum,
    /// magic, reserved bits and the bounds of every length. The body is not
    /// read.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let Some(h) = buf.get(..BATCH_HEADER_LEN) else {
            return Err(BatchError::Truncated {
                what: "batch header",
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        };
        let stored = le_u32(h, 40);
        let computed = crc32c::crc32c(&h[..HEADER_CRC_COVERS]);
        if stored != computed {
            return Err(BatchError::HeaderChecksum { stored, computed });
        }
        let magic = h[12];
        if magic != BATCH_MAGIC {
            return Err(BatchError::BadMagic {
                found: magic,
                expected: BATCH_MAGIC,
            });
        }
        let attributes = h[13];
        if attributes != 0 {
            return Err(BatchError::UnsupportedBits {
                what: "batch attribute",
                bits: attributes.into(),
            });
        }
        let reserved = u16::from_le_bytes([h[14], h[15]]);
        if reserved != 0 {
            return Err(BatchError::UnsupportedBits {
                what: "batch reserved",
                bits: reserved.into(),
            });
        }
        let header = BatchHeader {
            base_offset: le_u64(h, 0),
            batch_len: le_u32(h, 8),
            attributes,
            record_count: le_u32(h, 16),
            first_timestamp_ms: le_u64(h, 20) as i64,
            max_timestamp_ms: le_u64(h, 28) as i64,
            body_crc: le_u32(h, 36),
        };
        header.check_bounds()?;
        Ok(header)
    }

    fn check_bounds(&self) -> Result<(), BatchError> {
        let len = self.batch_len as usize;
        if len < BATCH_HEADER_LEN + MIN_RECORD_BYTES {
            return Err(BatchError::TooSmall {
                what: "batch length",
                value: len as u64,
                minimum: (BATCH_HEADER_LEN + MIN_RECORD_BYTES) as u64,
            });
        }
        if len > MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge {
                what: "batch length",
                value: len as u64,
                limit: MAX_BATCH_BYTES as u64,
            });
        }
        if self.record_count == 0 {
            return Err(BatchError::TooSmall {
                what: "record count",
                value: 0,
                minimum: 1,
            });
        }
        if self.record_count > MAX_RECORDS_PER_BATCH {
            return Err(BatchError::TooLarge {
                what: "record count",
                value: self.record_count.into(),
                limit: MAX_RECORDS_PER_BATCH.into(),
            });
        }
        let body = (len - BATCH_HEADER_LEN) as u64;
        if u64::from(self.record_count) * MIN_RECORD_BYTES as u64 > body {
            return Err(BatchError::TooLarge {
                what: "record count",
                value: self.record_count.into(),
                limit: body / MIN_RECORD_BYTES as u64,
            });
        }
        if self
            .base_offset
            .checked_add(u64::from(self.record_count))
            .is_none()
        {
            return Err(BatchError::TooLarge {
                what: "base offset",
                value: self.base_offset,
                limit: u64::MAX - u64::from(self.record_count),
            });
        }
        if self.max_timestamp_ms < self.first_timestamp_ms {
            return Err(BatchError::Timestamp {
                timestamp_ms: self.max_timestamp_ms,
            });
        }
        Ok(())
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count) - 1
    }

    /// Offset that follows this batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// Smallest possible record: length, attributes, offset delta, timestamp
/// delta, header count and payload length, one byte each.
const MIN_RECORD_BYTES: usize = 6;

/// Writes `base_offset` into an encoded batch and reseals its header
/// checksum. The records are untouched; their checksum does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if base_offset
        .checked_add(u64::from(header.record_count))
        .is_none()
    {
        return Err(BatchError::TooLarge {
            what: "base offset",
            value: base_offset,
            limit: u64::MAX - u64::from(header.record_count),
        });
    }
    batch[0..8].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&batch[..HEADER_CRC_COVERS]);
    batch[40..44].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A whole, checksummed batch borrowed from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Decodes the batch at the front of `buf` and verifies both checksums.
    /// The records are decoded (and checked) as they are iterated; use
    /// [`BatchView::validate`] to check them all at once.
    pub fn parse(buf: &'a [u8]) -> Result<BatchView<'a>, BatchError> {
        let header = BatchHeader::parse(buf)?;
        let len = header.batch_len as usize;
        let Some(bytes) = buf.get(..len) else {
            return Err(BatchError::Truncated {
                what: "batch body",
                needed: len,
                available: buf.len(),
            });
        };
        let computed = crc32c::crc32c(&bytes[BATCH_HEADER_LEN..]);
        if computed != header.body_crc {
            return Err(BatchError::BodyChecksum {
                stored: header.body_crc,
                computed,
            });
        }
        Ok(BatchView { header, bytes })
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The encoded batch, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records, decoded lazily. Each item is checked against the limits;
    /// an error ends the iteration.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            body: &self.bytes[BATCH_HEADER_LEN..],
            pos: 0,
            index: 0,
            header: self.header,
            failed: false,
        }
    }

    /// Decodes every record and checks that the body holds exactly the
    /// declared number of them.
    pub fn validate(&self) -> Result<(), BatchError> {
        for record in self.records() {
            record?;
        }
        Ok(())
    }

    /// Validates the batch whole, returning the proof of it.
    pub fn check(self) -> Result<CheckedBatch<'a>, BatchError> {
        self.validate()?;
        Ok(CheckedBatch { view: self })
    }

    /// Validates the batch whole and returns its records with the proof,
    /// decoding each record once.
    pub fn check_records(self) -> Result<(CheckedBatch<'a>, Vec<RecordView<'a>>), BatchError> {
        let mut records = Vec::with_capacity(self.header.record_count as usize);
        for record in self.records() {
            records.push(record?);
        }
        Ok((CheckedBatch { view: self }, records))
    }
}

/// A batch whose checksums and every record have been verified: what a
/// log may store without looking at it again. Made only by
/// [`BatchView::check`], [`BatchView::check_records`] and
/// [`BuiltBatch::checked`].
#[derive(Debug, Clone, Copy)]
pub struct CheckedBatch<'a> {
    view: BatchView<'a>,
}

impl<'a> CheckedBatch<'a> {
    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.view.header
    }

    /// The encoded batch, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.view.bytes
    }

    /// The header as it is stored at `base_offset`: the base offset set and
    /// the header checksum recomputed; the body is unchanged.
    pub fn header_at(&self, base_offset: u64) -> Result<[u8; BATCH_HEADER_LEN], BatchError> {
        let mut header = [0u8; BATCH_HEADER_LEN];
        header.copy_from_slice(&self.view.bytes[..BATCH_HEADER_LEN]);
        set_base_offset(&mut header, base_offset)?;
        Ok(header)
    }
}

/// One record, borrowed from its batch. Turn a field into `bytes::Bytes`
/// without copying with `Bytes::slice_ref` on the batch's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset in the partition.
    pub offset: u64,
    /// Timestamp in ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: Option<&'a [u8]>,
    /// Producer-assigned message id.
    pub id: Option<&'a [u8]>,
    /// The key under which dedup recorded this message.
    pub dedup_key: Option<&'a [u8]>,
    /// Headers as stored; iterate with [`RecordView::headers`].
    headers_raw: &'a [u8],
    header_count: usize,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record's headers in the order they were written.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            cursor: Cursor {
                buf: self.headers_raw,
                pos: 0,
            },
            left: self.header_count,
        }
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Iterator over a record's headers.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    cursor: Cursor<'a>,
    left: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The headers were validated when the record was decoded, so these
        // reads cannot fail; if they somehow did, the iteration just ends.
        let name_len = self.cursor.varint("header name length").ok()?;
        let name =
            std::str::from_utf8(self.cursor.take(name_len as usize, "header name").ok()?).ok()?;
        let value_len = self.cursor.varint("header value length").ok()?;
        let value = self.cursor.take(value_len as usize, "header value").ok()?;
        Some((name, value))
    }
}

/// Iterator over the records of a batch.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    body: &'a [u8],
    pos: usize,
    index: u32,
    header: BatchHeader,
    failed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = if self.index == self.header.record_count {
            if self.pos == self.body.len() {
                return None;
            }
            Err(BatchError::RecordLength {
                index: self.index,
                declared: 0,
                actual: (self.body.len() - self.pos) as u64,
            })
        } else if self.pos == self.body.len() {
            Err(BatchError::RecordCount {
                declared: self.header.record_count,
                actual: self.index,
            })
        } else {
            self.decode_one()
        };
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> RecordIter<'a> {
    fn decode_one(&mut self) -> Result<RecordView<'a>, BatchError> {
        let index = self.index;
        let mut outer = Cursor {
            buf: self.body,
            pos: self.pos,
        };
        let declared = outer.varint("record length")?;
        let record = outer.take_u64(declared, "record")?;
        let mut c = Cursor {
            buf: record,
            pos: 0,
        };

        let attributes = c.byte("record attributes")?;
        if attributes & !RECORD_ATTR_KNOWN != 0 {
            return Err(BatchError::UnsupportedBits {
                what: "record attribute",
                bits: attributes.into(),
            });
        }
        let offset_delta = c.varint("offset delta")?;
        if offset_delta != u64::from(index) {
            return Err(BatchError::OffsetDelta {
                index,
                found: offset_delta,
            });
        }
        let timestamp_delta = c.signed("timestamp delta")?;
        let timestamp_ms = self
            .header
            .first_timestamp_ms
            .checked_add(timestamp_delta)
            .filter(|ts| *ts <= self.header.max_timestamp_ms)
            .ok_or(BatchError::Timestamp {
                timestamp_ms: timestamp_delta,
            })?;

        let key = c.optional(attributes & ATTR_HAS_KEY != 0, MAX_KEY_BYTES, "key")?;
        let id = c.optional(attributes & ATTR_HAS_ID != 0, MAX_ID_BYTES, "message id")?;
        let dedup_key = c.optional(
            attributes & ATTR_HAS_DEDUP_KEY != 0,
            MAX_ID_BYTES,
            "dedup key",
        )?;

        let header_count = c.varint("header count")?;
        if header_count > MAX_HEADERS_PER_RECORD as u64 {
            return Err(BatchError::TooLarge {
                what: "header count",
                value: header_count,
                limit: MAX_HEADERS_PER_RECORD as u64,
            });
        }
        let headers_start = c.pos;
        for _ in 0..header_count {
            let name = c.bounded(MAX_HEADER_NAME_BYTES, "header name")?;
            if std::str::from_utf8(name).is_err() {
                return Err(BatchError::HeaderName { index });
            }
            c.bounded(MAX_HEADER_VALUE_BYTES, "header value")?;
        }
        let headers_raw = &record[headers_start..c.pos];
        let payload = c.bounded(MAX_BATCH_BYTES, "payload")?;
        if c.pos != record.len() {
            return Err(BatchError::RecordLength {
                index,
                declared,
                actual: c.pos as u64,
            });
        }

        self.pos = outer.pos;
        self.index += 1;
        Ok(RecordView {
            offset: self.header.base_offset + u64::from(index),
            timestamp_ms,
            key,
            id,
            dedup_key,
            headers_raw,
            header_count: header_count as usize,
            payload,
        })
    }
}

/// A bounds-checked reader over a slice.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, BatchError> {
        let b = *self.rest().first().ok_or(BatchError::Truncated {
            what,
            needed: 1,
            available: 0,
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, BatchError> {
        let (v, n) = varint::get_u64(self.rest(), what)?;
        self.pos += n;
        Ok(v)
    }

    fn signed(&mut self, what: &'static str) -> Result<i64, BatchError> {
        let (v, n) = varint::get_i64(self.rest(), what)?;
        self.pos += n;
        Ok(v)
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], BatchError> {
        let rest = self.rest();
        let out = rest.get(..len).ok_or(BatchError::Truncated {
            what,
            needed: len,
            available: rest.len(),
        })?;
        self.pos += len;
        Ok(out)
    }

    fn take_u64(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], BatchError> {
        let available = self.rest().len();
        if len > available as u64 {
            return Err(BatchError::Truncated {
                what,
                needed: usize::try_from(len).unwrap_or(usize::MAX),
                available,
            });
        }
        self.take(len as usize, what)
    }

    /// A varint length, checked against `limit`, then that many bytes.
    fn bounded(&mut self, limit: usize, what: &'static str) -> Result<&'a [u8], BatchError> {
        let len = self.varint(what)?;
        if len > limit as u64 {
            return Err(BatchError::TooLarge {
                what,
                value: len,
                limit: limit as u64,
            });
        }
        self.take_u64(len, what)
    }

    fn optional(
        &mut self,
        present: bool,
        limit: usize,
        what: &'static str,
    ) -> Result<Option<&'a [u8]>, BatchError> {
        if present {
            self.bounded(limit, what).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A record to be encoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRecord<'a> {
    /// Timestamp in ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: Option<&'a [u8]>,
    /// Producer-assigned message id.
    pub id: Option<&'a [u8]>,
    /// Dedup key chosen at ingest.
    pub dedup_key: Option<&'a [u8]>,
    /// Headers, in order; names are UTF-8.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The payload.
    pub payload: &'a [u8],
}

/// Encodes records into a batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> BatchBuilder {
        BatchBuilder::with_capacity(4096)
    }

    /// An empty builder whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        BatchBuilder::reusing(Vec::with_capacity(
            bytes.clamp(BATCH_HEADER_LEN, MAX_BATCH_BYTES),
        ))
    }

    /// A builder that writes into `buf`, a buffer from an earlier batch:
    /// its contents are discarded and its capacity kept, so a producer
    /// that recycles its buffers does not allocate (nor fault in fresh
    /// pages) per batch.
    pub fn reusing(mut buf: Vec<u8>) -> BatchBuilder {
        buf.clear();
        buf.resize(BATCH_HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            first_timestamp_ms: 0,
            max_timestamp_ms: i64::MIN,
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would take if finished now.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `record` would add to the batch, or why it cannot be encoded.
    pub fn record_len(&self, record: &NewRecord<'_>) -> Result<usize, BatchError> {
        check_len(record.key.map_or(0, <[u8]>::len), MAX_KEY_BYTES, "key")?;
        check_len(record.id.map_or(0, <[u8]>::len), MAX_ID_BYTES, "message id")?;
        check_len(
            record.dedup_key.map_or(0, <[u8]>::len),
            MAX_ID_BYTES,
            "dedup key",
        )?;
        check_len(record.headers.len(), MAX_HEADERS_PER_RECORD, "header count")?;
        let body = self.record_body_len(record)?;
        Ok(varint::len_u64(body as u64) + body)
    }

    fn record_body_len(&self, record: &NewRecord<'_>) -> Result<usize, BatchError> {
        let field = |b: &[u8]| varint::len_u64(b.len() as u64) + b.len();
        let delta = self.timestamp_delta(record.timestamp_ms)?;
        let mut len = 1 + varint::len_u64(u64::from(self.count)) + zigzag_len(delta);
        len += record.key.map_or(0, field)
            + record.id.map_or(0, field)
            + record.dedup_key.map_or(0, field);
        len += varint::len_u64(record.headers.len() as u64);
        for (name, value) in record.headers {
            check_len(name.len(), MAX_HEADER_NAME_BYTES, "header name")?;
            check_len(value.len(), MAX_HEADER_VALUE_BYTES, "header value")?;
            len += field(name.as_bytes()) + field(value);
        }
        Ok(len + field(record.payload))
    }

    fn timestamp_delta(&self, timestamp_ms: i64) -> Result<i64, BatchError> {
        if self.count == 0 {
            return Ok(0);
        }
        timestamp_ms
            .checked_sub(self.first_timestamp_ms)
            .ok_or(BatchError::Timestamp { timestamp_ms })
    }

    /// Appends a record. On error the builder is unchanged: the record would
    /// break a limit, or the batch is full (`TooLarge` on the batch length or
    /// record count), in which case finish this batch and start another.
    pub fn push(&mut self, record: &NewRecord<'_>) -> Result<(), BatchError> {
        let add = self.record_len(record)?;
        if self.count >= MAX_RECORDS_PER_BATCH {
            return Err(BatchError::TooLarge {
                what: "record count",
                value: u64::from(self.count) + 1,
                limit: MAX_RECORDS_PER_BATCH.into(),
            });
        }
        if self.buf.len() + add > MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge {
                what: "batch length",
                value: (self.buf.len() + add) as u64,
                limit: MAX_BATCH_BYTES as u64,
            });
        }
        let delta = self.timestamp_delta(record.timestamp_ms)?;
        let body_len = self.record_body_len(record)?;
        if self.count == 0 {
            self.first_timestamp_ms = record.timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(record.timestamp_ms);

        let out = &mut self.buf;
        varint::put_u64(out, body_len as u64);
        let mut attributes = 0;
        if record.key.is_some() {
            attributes |= ATTR_HAS_KEY;
        }
        if record.id.is_some() {
            attributes |= ATTR_HAS_ID;
        }
        if record.dedup_key.is_some() {
            attributes |= ATTR_HAS_DEDUP_KEY;
        }
        out.push(attributes);
        varint::put_u64(out, u64::from(self.count));
        varint::put_i64(out, delta);
        for field in [record.key, record.id, record.dedup_key]
            .into_iter()
            .flatten()
        {
            put_bytes(out, field);
        }
        varint::put_u64(out, record.headers.len() as u64);
        for (name, value) in record.headers {
            put_bytes(out, name.as_bytes());
            put_bytes(out, value);
        }
        put_bytes(out, record.payload);
        self.count += 1;
        Ok(())
    }

    /// Seals the batch with base offset 0 (the log stamps the real one).
    pub fn finish(mut self) -> Result<Vec<u8>, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Empty);
        }
        let len = self.buf.len() as u32;
        let body_crc = crc32c::crc32c(&self.buf[BATCH_HEADER_LEN..]);
        let h = &mut self.buf[..BATCH_HEADER_LEN];
        h[0..8].copy_from_slice(&0u64.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12] = BATCH_MAGIC;
        h[13] = 0;
        h[14..16].copy_from_slice(&0u16.to_le_bytes());
        h[16..20].copy_from_slice(&self.count.to_le_bytes());
        h[20..28].copy_from_slice(&self.first_timestamp_ms.to_le_bytes());
        h[28..36].copy_from_slice(&self.max_timestamp_ms.to_le_bytes());
        h[36..40].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&h[..HEADER_CRC_COVERS]);
        h[40..44].copy_from_slice(&header_crc.to_le_bytes());
        Ok(self.buf)
    }

    /// Finishes the batch like [`BatchBuilder::finish`], keeping the
    /// knowledge that it is valid: every record went through `push`'s
    /// checks, so the batch can be stored without being read again.
    pub fn finish_built(self) -> Result<BuiltBatch, BatchError> {
        let bytes = self.finish()?;
        let header = BatchHeader::parse(&bytes)?;
        debug_assert!(
            BatchView::parse(&bytes).and_then(|v| v.validate()).is_ok(),
            "a built batch reads back"
        );
        Ok(BuiltBatch { header, bytes })
    }
}

/// A batch this process encoded with [`BatchBuilder`], valid by
/// construction.
#[derive(Debug, Clone)]
pub struct BuiltBatch {
    header: BatchHeader,
    bytes: Vec<u8>,
}

impl BuiltBatch {
    /// The batch as one a log may store without reading it again.
    pub fn checked(&self) -> CheckedBatch<'_> {
        CheckedBatch {
            view: BatchView {
                header: self.header,
                bytes: &self.bytes,
            },
        }
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint::put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn zigzag_len(v: i64) -> usize {
    varint::len_u64(((v << 1) ^ (v >> 63)) as u64)
}

fn check_len(len: usize, limit: usize, what: &'static str) -> Result<(), BatchError> {
    if len > limit {
        return Err(BatchError::TooLarge {
            what,
            value: len as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests;
