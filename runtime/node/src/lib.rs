//! The weir node: it composes the log, the plugin host and the QUIC
//! transport into a running server.
//!
//! Decisions live in the crates below it (`weir-proto`, `weir-log`,
//! `weir-plugin`); this crate wires them together and owns the data
//! directory. It never parses bytes itself.

mod data_dir;

pub use data_dir::{DataDir, DataDirError};
