//! The weir node: it composes the log, the plugin host and the QUIC
//! transport into a running server.
//!
//! Decisions about bytes live in the crates below it (`weir-proto`,
//! `weir-log`, `weir-plugin`). Here, `state` and `ingest` are blocking,
//! socket-free code that tests drive directly; `server` is the thin async
//! shell that moves frames between QUIC streams and them.

mod auth;
mod config;
mod data_dir;
mod dedup;
mod error;
mod group;
mod ingest;
mod lookup;
mod meta;
mod node;
mod server;
mod state;
mod tls;
mod topic;

pub use config::{LimitsConfig, NodeConfig, TlsConfig, TokenConfig};
pub use data_dir::{DataDir, DataDirError};
pub use error::NodeError;
pub use node::Node;
pub use tls::{GENERATED_CERT, fingerprint};
