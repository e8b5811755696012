//! One live plugin instance: its store, its bindings and the calls into it.
//! Owns turning wasmtime's errors into [`PluginError`]s that name the limit
//! that was hit; must never return a guest's output that failed [`decode`]
//! or [`check_verdicts`], and never reuse a store after a trap.

use std::time::Duration;

use wasmtime::{Store, Trap};

use crate::PluginError;
use crate::bindings::{Batch, BatchContext, Plugin, Verdict};
use crate::host::CompiledPlugin;
use crate::limits::{Limits, check_verdicts};
use crate::state::{GuestState, truncate};
use crate::verdicts::decode;

pub(crate) struct Instance {
    store: Store<GuestState>,
    bindings: Plugin,
}

impl Instance {
    /// Instantiates the plugin and runs its init with `config`.
    pub(crate) fn start(
        plugin: &CompiledPlugin,
        limits: &Limits,
        config: &str,
    ) -> Result<Self, PluginError> {
        let engine = plugin.pre.engine();
        let mut store = Store::new(engine, GuestState::new(&plugin.name, limits));
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(limits.ticks(limits.init_timeout));
        let bindings = match plugin.pre.instantiate(&mut store) {
            Ok(bindings) => bindings,
            Err(e) => {
                return Err(classify(
                    &plugin.name,
                    &store,
                    limits,
                    limits.init_timeout,
                    e,
                    "instantiate",
                ));
            }
        };
        let mut instance = Instance { store, bindings };
        instance.store.data_mut().start_call();
        let result = instance
            .bindings
            .weir_plugin_guest()
            .call_init(&mut instance.store, config);
        instance.store.data_mut().end_call();
        match result {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(message)) => Err(PluginError::Init {
                plugin: plugin.name.clone(),
                message: bounded(message, limits),
            }),
            Err(e) => Err(classify(
                &plugin.name,
                &instance.store,
                limits,
                limits.init_timeout,
                e,
                "init",
            )),
        }
    }

    /// Runs one batch. On `Err` the caller must drop this instance unless
    /// [`PluginError::discards_instance`] says otherwise.
    pub(crate) fn call_batch(
        &mut self,
        plugin: &str,
        limits: &Limits,
        context: &BatchContext,
        batch: &Batch,
    ) -> Result<Vec<Verdict>, PluginError> {
        self.store
            .set_epoch_deadline(limits.ticks(limits.call_timeout));
        self.store.data_mut().start_call();
        let result =
            self.bindings
                .weir_plugin_guest()
                .call_on_batch(&mut self.store, context, batch);
        self.store.data_mut().end_call();
        match result {
            Ok(Ok(bytes)) => {
                let messages = batch.timestamps.len();
                decode(&bytes, messages, limits)
                    .and_then(|verdicts| {
                        check_verdicts(&verdicts, messages, context.partitions, limits)?;
                        Ok(verdicts)
                    })
                    .map_err(|detail| PluginError::InvalidOutput {
                        plugin: plugin.to_string(),
                        detail,
                    })
            }
            Ok(Err(message)) => Err(PluginError::Guest {
                plugin: plugin.to_string(),
                message: bounded(message, limits),
            }),
            Err(e) => Err(classify(
                plugin,
                &self.store,
                limits,
                limits.call_timeout,
                e,
                "on-batch",
            )),
        }
    }
}

/// A guest's error text, cut to the reason limit so a guest cannot flood
/// the node's logs or a producer's error through it.
fn bounded(mut message: String, limits: &Limits) -> String {
    let end = truncate(&message, limits.reason_bytes_max).len();
    message.truncate(end);
    message
}

/// Names the limit behind a failed call. The limiter's record comes first:
/// a refused `memory.grow` usually surfaces as the allocator aborting.
fn classify(
    plugin: &str,
    store: &Store<GuestState>,
    limits: &Limits,
    deadline: Duration,
    error: wasmtime::Error,
    stage: &'static str,
) -> PluginError {
    let plugin = plugin.to_string();
    if let Some(requested_bytes) = store.data().limiter.refused_bytes {
        return PluginError::MemoryLimit {
            plugin,
            limit_bytes: limits.memory_bytes_max,
            requested_bytes,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout { plugin, deadline },
        Some(Trap::StackOverflow) => PluginError::StackOverflow {
            plugin,
            limit_bytes: limits.wasm_stack_bytes_max,
        },
        Some(_) => PluginError::Trap {
            plugin,
            trap: format!("{error:?}"),
            guest_message: store.data().last_error_line(),
        },
        None if stage == "instantiate" => PluginError::Compile {
            plugin,
            stage,
            detail: format!("{error:#}"),
        },
        None => PluginError::Trap {
            plugin,
            trap: format!("{error:#}"),
            guest_message: store.data().last_error_line(),
        },
    }
}
