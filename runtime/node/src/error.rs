//! The node's errors, each naming what failed and with which value.

use std::io;
use std::path::{Path, PathBuf};

use weir_proto::frame::ErrorCode;

/// Why the node could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// TLS material is missing or unusable.
    #[error("tls: {0}")]
    Tls(String),
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
    /// The data directory could not be opened.
    #[error(transparent)]
    DataDir(#[from] crate::DataDirError),
    /// Stored metadata is damaged.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A log failed.
    #[error(transparent)]
    Log(#[from] weir_log::LogError),
    /// A plugin failed to compile or attach.
    #[error(transparent)]
    Plugin(#[from] weir_plugin::PluginError),
    /// A request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request creates something that exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A request has a value the node refuses.
    #[error("{0}")]
    Invalid(String),
    /// The QUIC endpoint failed.
    #[error("transport: {0}")]
    Transport(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> NodeError {
        NodeError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The protocol error code a client gets for this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            NodeError::NotFound(_) => ErrorCode::NotFound,
            NodeError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            NodeError::Invalid(_) => ErrorCode::InvalidArgument,
            NodeError::Plugin(_) => ErrorCode::InvalidArgument,
            NodeError::Log(weir_log::LogError::Fenced { .. }) => ErrorCode::Unavailable,
            NodeError::Log(weir_log::LogError::InvalidBatch(_)) => ErrorCode::Malformed,
            _ => ErrorCode::Internal,
        }
    }
}
