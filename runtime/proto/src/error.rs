//! What can be wrong with a record batch.

/// A record batch that cannot be encoded or decoded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the named field does.
    #[error("truncated {what}: needs {needed} bytes, {available} available")]
    Truncated {
        /// The field or structure being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The batch was written by a format this code does not know.
    #[error("unknown batch format (magic {found}, expected {expected})")]
    BadMagic {
        /// The magic byte found.
        found: u8,
        /// The magic byte this code writes.
        expected: u8,
    },
    /// Attribute or reserved bits are set that this format does not define.
    #[error("unsupported {what} bits {bits:#x}")]
    UnsupportedBits {
        /// Which field carries them.
        what: &'static str,
        /// The offending bits.
        bits: u32,
    },
    /// The header checksum does not match the header.
    #[error("batch header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// The body checksum does not match the records.
    #[error("batch body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BodyChecksum {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// A length or count is past its bound.
    #[error("{what} is {value}, limit is {limit}")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Its bound.
        limit: u64,
    },
    /// A length or count is below its minimum.
    #[error("{what} is {value}, minimum is {minimum}")]
    TooSmall {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Its minimum.
        minimum: u64,
    },
    /// A varint is longer than its type allows.
    #[error("varint for {field} is longer than 10 bytes or overflows 64 bits")]
    VarintOverflow {
        /// The field.
        field: &'static str,
    },
    /// A record's offset delta is not its position in the batch.
    #[error("record {index} has offset delta {found}; offsets in a batch are dense")]
    OffsetDelta {
        /// Position of the record in the batch.
        index: u32,
        /// The delta it carries.
        found: u64,
    },
    /// A record's declared length disagrees with its fields.
    #[error("record {index} declares {declared} bytes but its fields take {actual}")]
    RecordLength {
        /// Position of the record in the batch.
        index: u32,
        /// Length in the record's prefix.
        declared: u64,
        /// Length its fields took.
        actual: u64,
    },
    /// The header's record count disagrees with the records in the body.
    #[error("batch declares {declared} records but its body holds {actual}")]
    RecordCount {
        /// Count in the header.
        declared: u32,
        /// Records found.
        actual: u32,
    },
    /// A header name is not UTF-8.
    #[error("record {index}: header name is not UTF-8")]
    HeaderName {
        /// Position of the record in the batch.
        index: u32,
    },
    /// A timestamp cannot be represented.
    #[error("record timestamp {timestamp_ms} is outside the batch's range")]
    Timestamp {
        /// The timestamp (ms).
        timestamp_ms: i64,
    },
    /// The builder was finished with no record in it.
    #[error("a batch holds at least one record")]
    Empty,
}
