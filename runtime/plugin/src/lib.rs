//! The wasmtime host for weir's plugin contract: compile, limit, cache and
//! call user-uploaded WebAssembly components at ingest.
//!
//! This crate knows neither the network nor the log; it turns a batch of
//! messages into per-message verdicts. The contract itself lives in
//! `guest-sdk/wit/`.
