//! The one error type of the bench: what failed, with the value or the
//! cause that says why. The CLI prints it as one line.

use std::path::PathBuf;

/// Why a benchmark could not run or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments do not describe a run that can be made.
    #[error("{0}")]
    Invalid(String),
    /// The node the bench starts for itself did not start or stop cleanly.
    #[error("bench node: {0}")]
    Node(#[from] weir_node::NodeError),
    /// A client call to the node failed.
    #[error("{what}: {source}")]
    Client {
        /// What the bench was doing.
        what: String,
        /// The client's error.
        #[source]
        source: weir_client::ClientError,
    },
    /// Some messages were not stored (rejected, failed, or never delivered).
    #[error("{0}")]
    Lost(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The raw QUIC benchmark failed.
    #[error("raw-quic: {0}")]
    Quic(String),
    /// The NATS JetStream run failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The chart could not be drawn or written.
    #[error("chart: {0}")]
    Chart(String),
    /// A task of the bench panicked or was cancelled.
    #[error("bench task failed: {0}")]
    Task(String),
}

impl BenchError {
    /// A client error while doing `what`.
    pub(crate) fn client(
        what: impl Into<String>,
    ) -> impl FnOnce(weir_client::ClientError) -> BenchError {
        let what = what.into();
        move |source| BenchError::Client { what, source }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BenchError {
        let path = path.into();
        move |source| BenchError::Io { path, source }
    }
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> BenchError {
        BenchError::Task(e.to_string())
    }
}
