//! What can go wrong in a log.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use weir_proto::BatchError;

/// Why a log refuses writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceReason {
    /// Data before the tail fails its checksum or is out of place: this is
    /// damage, not an interrupted write, so nothing is truncated.
    #[error("corruption in {} at byte {position} (offset {offset}): {detail}", file.display())]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte position of the damaged batch.
        position: u64,
        /// Offset the damaged batch should have started with.
        offset: u64,
        /// What is wrong there.
        detail: String,
    },
    /// An fsync failed. The kernel may have dropped the dirty pages, so a
    /// retry could report success over lost data: the log stops writing.
    #[error("fsync of {} failed: {error}", file.display())]
    SyncFailed {
        /// The file.
        file: PathBuf,
        /// The error.
        error: String,
    },
    /// A failed append could not be undone, so the tail is in doubt.
    #[error("write to {} failed and its tail could not be restored: {error}", file.display())]
    WriteFailed {
        /// The file.
        file: PathBuf,
        /// The error.
        error: String,
    },
}

/// An error from a log operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The log is fenced and refuses writes.
    #[error("log {} is fenced: {reason}", dir.display())]
    Fenced {
        /// The log's directory.
        dir: PathBuf,
        /// Why.
        reason: Arc<FenceReason>,
    },
    /// The batch given to append is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The requested offset is not in the log.
    #[error("offset {requested} is out of range [{start}, {end})")]
    OffsetOutOfRange {
        /// What was asked for.
        requested: u64,
        /// First offset the log holds.
        start: u64,
        /// Offset the next append will get.
        end: u64,
    },
    /// A read met damaged data.
    #[error("corruption in {} at byte {position}: {detail}", file.display())]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte position.
        position: u64,
        /// What is wrong.
        detail: String,
    },
    /// The configuration is not usable.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> LogError {
    let path = path.into();
    move |source| LogError::Io { op, path, source }
}
