//! weir's segmented append-only log: the storage of one partition.
//!
//! A [`Log`] is a directory of segments named by base offset
//! (`{base:020}.log`), each with a sparse offset index and a time index
//! beside it once sealed. Batches are stored in the encoding of
//! [`weir_proto`], so an append writes the producer's bytes and a read
//! returns a slice of a memory-mapped segment without copying.
//!
//! This crate does no networking, no async and no WebAssembly; every file
//! access goes through [`fs::Fs`] so tests can inject faults, and every
//! method that depends on time takes `now_ms`. `docs/storage.md` describes
//! the format byte by byte and the recovery rules.

mod config;
mod error;
pub mod fs;
mod index;
mod log;
mod segment;

pub use config::{FlushPolicy, LogConfig};
pub use error::{FenceReason, LogError};
pub use log::{Appended, Fetched, Log, LogStats, Retained};
