//! Async Rust client for weir nodes, over QUIC.
//!
//! The client depends on `weir-proto` for the wire format and never on the
//! plugin host: a producer on a phone or gateway carries no WebAssembly
//! runtime.

pub use weir_proto::ALPN;
