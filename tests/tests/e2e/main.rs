//! The end-to-end suite: real nodes and real clients over QUIC on loopback.
//!
//! One test binary holds every module, so the suite links wasmtime and the
//! node once rather than once per file; run one part with its module path,
//! e.g. `cargo test -p weir-tests node_groups::`.

mod client_resend;
mod client_roundtrip;
mod consumer_resume;
mod node_bad_input;
mod node_consume;
mod node_dedup;
mod node_groups;
mod node_groups_client;
mod node_lookup;
mod node_plugins;
