//! A plugin built against `weir:plugin@9.0.0`, a contract version no host
//! speaks yet, so the host's tests can check that it is refused with a clear
//! error. Must never be built against the real contract.

#[allow(missing_docs, unreachable_pub)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });
}

use bindings::exports::weir::plugin::guest::{Batch, BatchContext, Guest, Verdict};

struct Future;

impl Guest for Future {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_batch(_context: BatchContext, batch: Batch) -> Result<Vec<Verdict>, String> {
        Ok(batch.messages.iter().map(|_| Verdict::Pass).collect())
    }
}

bindings::export!(Future with_types_in bindings);
