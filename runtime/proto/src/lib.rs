//! weir's wire and disk format.
//!
//! This crate owns the bytes that weir exchanges and stores: the record batch
//! (the unit a producer sends, the log appends and a consumer receives, in
//! one encoding) and the [`frame`]s of the QUIC protocol. It does no I/O,
//! has no async and knows nothing of files or sockets, so every decision about
//! a byte can be tested on a slice.
//!
//! Every length read from a buffer is checked against the buffer and against
//! the limits in [`limits`] before it is used; decoding never allocates from a
//! length it has not bounded, and never panics on any input.
//!
//! ```
//! use weir_proto::{BatchBuilder, BatchView, NewRecord};
//!
//! let mut builder = BatchBuilder::new();
//! builder.push(&NewRecord {
//!     timestamp_ms: 1_700_000_000_000,
//!     key: Some(b"order-7"),
//!     headers: &[("tenant", b"acme")],
//!     payload: b"{\"total\": 42}",
//!     ..NewRecord::default()
//! })?;
//! let mut bytes = builder.finish()?;
//! weir_proto::set_base_offset(&mut bytes, 100)?;
//!
//! let batch = BatchView::parse(&bytes)?;
//! assert_eq!(batch.header().base_offset, 100);
//! let record = batch.records().next().unwrap()?;
//! assert_eq!(record.offset, 100);
//! assert_eq!(record.key, Some(&b"order-7"[..]));
//! # Ok::<(), weir_proto::BatchError>(())
//! ```

mod batch;
mod error;
pub mod frame;
pub mod partition;
mod varint;

pub use batch::{
    BATCH_HEADER_LEN, BATCH_MAGIC, BatchBuilder, BatchHeader, BatchView, BuiltBatch, CheckedBatch,
    HeaderIter, NewRecord, RecordIter, RecordView, set_base_offset,
};
pub use error::BatchError;

/// The ALPN protocol name a weir node and its clients agree on.
pub const ALPN: &[u8] = b"weir/1";

/// Bounds on every length in a record batch. A value past one of these is an
/// error, whatever the buffer holds.
pub mod limits {
    /// Largest encoded batch, header included.
    pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
    /// Most records in one batch.
    pub const MAX_RECORDS_PER_BATCH: u32 = 65_536;
    /// Longest record key.
    pub const MAX_KEY_BYTES: usize = 64 * 1024;
    /// Longest producer message id, and longest dedup key.
    pub const MAX_ID_BYTES: usize = 256;
    /// Most headers on one record.
    pub const MAX_HEADERS_PER_RECORD: usize = 64;
    /// Longest header name.
    pub const MAX_HEADER_NAME_BYTES: usize = 256;
    /// Longest header value.
    pub const MAX_HEADER_VALUE_BYTES: usize = 64 * 1024;
}
