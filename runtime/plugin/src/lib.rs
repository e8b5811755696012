//! The wasmtime host for weir's plugin contract: compile, limit, cache and
//! call user-uploaded WebAssembly components at ingest.
//!
//! This crate owns everything between a batch of messages and the per-message
//! outcomes of a plugin chain: compiling components once (with an on-disk
//! cache), instantiating them under CPU, memory and stack limits, calling
//! them once per batch, validating what they return and applying patches in
//! chain order. It must never know the network or the log, and a plugin must
//! never be able to take the node down with it: every fault becomes a typed
//! [`PluginError`] and a fresh instance for the next batch.
//!
//! The contract itself lives in `guest-sdk/wit/plugin.wit`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use weir_plugin::{Attachment, BatchContext, Chain, FailurePolicy, HostConfig, Message, PluginHost};
//!
//! # fn main() -> Result<(), weir_plugin::PluginError> {
//! let host = PluginHost::new(HostConfig::default())?;
//! let wasm = std::fs::read("fanout.wasm").map_err(|e| weir_plugin::PluginError::io("read", e))?;
//! let plugin = host.compile("fanout", &wasm)?;
//! let attachment = host.attach(plugin, r#"{"topics": ["a", "b"]}"#, FailurePolicy::Reject)?;
//! let chain = Chain::new(vec![Arc::new(attachment)]);
//! let context = BatchContext { topic: "in".into(), partitions: 4 };
//! let messages = vec![Message { key: None, headers: vec![], payload: b"hi".to_vec(), timestamp_ms: 0 }];
//! let run = chain.run(&context, &messages);
//! assert_eq!(run.outcomes.len(), 1);
//! # Ok(())
//! # }
//! ```

mod attachment;
mod bindings;
mod cache;
mod chain;
mod counters;
mod error;
mod host;
mod instance;
mod limits;
mod message;
mod outcome;
mod state;
mod ticker;
mod verdicts;

pub use attachment::{Attachment, FailurePolicy};
pub use bindings::{BatchContext, Header, Partition, Patch, Verdict};
pub use chain::{Chain, ChainRun};
pub use counters::CountersSnapshot;
pub use error::PluginError;
pub use host::{CompiledPlugin, HostConfig, LoadSource, PluginHost};
pub use limits::Limits;
pub use message::{Message, MessageRef};
pub use outcome::{Outcome, Routing};

/// The contract version this host speaks (`weir:plugin@0.1.0`).
pub const CONTRACT_VERSION: &str = "0.1.0";
