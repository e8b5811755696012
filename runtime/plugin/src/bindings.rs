//! Host bindings generated from the same WIT files the guest SDK uses, so the
//! two sides cannot drift. Owns no logic; must never be edited by hand.

#![allow(missing_docs, unreachable_pub)]

wasmtime::component::bindgen!({
    path: "../../guest-sdk/wit",
    world: "plugin",
    additional_derives: [PartialEq, Eq],
});

pub(crate) use weir::plugin::host::Level;
pub(crate) use weir::plugin::types::Batch;
pub use weir::plugin::types::{BatchContext, Header, Partition, Patch, Verdict};
