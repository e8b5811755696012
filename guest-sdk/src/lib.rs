//! The SDK that weir plugin authors depend on: implement [`Plugin`], export
//! it with [`export_plugin!`], build for `wasm32-wasip2`.
//!
//! This crate owns the guest side of the contract in `wit/plugin.wit` and the
//! helpers a router needs (header and key access, Kafka's murmur2 partition
//! hash, AMQP topic patterns, optional JSON access). It must never reach for
//! anything the contract does not give a guest: no files, no clocks, no
//! randomness, no environment.
//!
//! ```no_run
//! use weir_guest::{BatchContext, Message, Plugin, Verdict, export_plugin};
//!
//! struct DropEmpty;
//!
//! impl Plugin for DropEmpty {
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(DropEmpty)
//!     }
//!
//!     fn on_message(&mut self, _ctx: &BatchContext, message: &Message<'_>) -> Verdict {
//!         if message.payload.is_empty() {
//!             Verdict::Drop("empty payload".into())
//!         } else {
//!             Verdict::Pass
//!         }
//!     }
//! }
//!
//! export_plugin!(DropEmpty);
//! ```

extern crate self as weir_guest;

mod encode;
mod export;
#[cfg(feature = "json")]
mod json;
pub mod log;
mod message;
mod pattern;

#[doc(hidden)]
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        runtime_path: "::weir_guest::__private::wit_bindgen::rt",
        pub_export_macro: true,
        default_bindings_module: "::weir_guest::__private::bindings",
        // `verdict` and its parts travel encoded as bytes, so no function
        // names them; plugins still build them.
        generate_unused_types: true,
    });
}

pub use bindings::weir::plugin::types::{BatchContext, Header, Partition, Patch, Verdict};
#[cfg(feature = "json")]
pub use json::JsonFields;
pub use message::Message;
// One implementation of Kafka's partitioner serves the node and plugins.
pub use pattern::{TopicPattern, topic_matches};
pub use weir_proto::partition::{kafka_partition, murmur2};

/// The contract version this SDK builds plugins for.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A weir plugin. One value lives per attachment: the host calls
/// [`Plugin::init`] once with the attachment's config, then
/// [`Plugin::on_batch`] for every batch, so fields may carry state between
/// batches (it is lost when the host discards the instance after a fault).
pub trait Plugin: Sized + 'static {
    /// Parse the attachment's config. An error refuses the attachment; say
    /// which part of the config is wrong.
    fn init(config: &str) -> Result<Self, String>;

    /// Decide about one message. The default has no opinion.
    fn on_message(&mut self, context: &BatchContext, message: &Message<'_>) -> Verdict {
        let _ = (context, message);
        Verdict::Pass
    }

    /// Decide about a whole batch; must return one verdict per message, in
    /// order. The default calls [`Plugin::on_message`] for each message;
    /// override it when a decision depends on several messages.
    fn on_batch(
        &mut self,
        context: &BatchContext,
        messages: &[Message<'_>],
    ) -> Result<Vec<Verdict>, String> {
        Ok(messages
            .iter()
            .map(|m| self.on_message(context, m))
            .collect())
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::exports::weir::plugin::guest::Guest;
    pub use crate::bindings::weir::plugin::types::Batch;
    pub use crate::export::{batch, init};
    pub use wit_bindgen;
}
