//! The glue between the generated `guest` export and a [`Plugin`] value kept
//! in a thread-local slot. Owns the call order rules (init before batches);
//! must never let a plugin's panic escape as anything but a trap the host can
//! attribute, which the panic hook below makes readable.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::bindings::weir::plugin::types::Batch;
use crate::encode::encode;
use crate::message::unpack;
use crate::{BatchContext, Plugin};

/// Handles `init` for the exported plugin type `P`.
pub fn init<P: Plugin>(
    slot: &'static LocalKey<RefCell<Option<P>>>,
    config: String,
) -> Result<(), String> {
    install_panic_hook();
    let plugin = P::init(&config)?;
    slot.with(|cell| *cell.borrow_mut() = Some(plugin));
    Ok(())
}

/// Handles `on-batch` for the exported plugin type `P`: the verdicts come
/// back encoded as the contract's byte list.
pub fn batch<P: Plugin>(
    slot: &'static LocalKey<RefCell<Option<P>>>,
    context: BatchContext,
    batch: Batch,
) -> Result<Vec<u8>, String> {
    let messages = unpack(&batch)?;
    slot.with(|cell| match cell.borrow_mut().as_mut() {
        Some(plugin) => plugin
            .on_batch(&context, &messages)
            .map(|verdicts| encode(&verdicts)),
        None => Err("on-batch called before init".to_string()),
    })
}

/// Sends the panic message to the host log before the trap, so the host's
/// error can say what the guest was complaining about.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        crate::log::error(&format!("panic: {info}"));
    }));
}

/// Exports a [`Plugin`] implementation as the component's `guest` interface.
/// Use it once per plugin crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            ::std::thread_local! {
                static WEIR_PLUGIN: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            // Only referenced by the wasm export below.
            #[allow(dead_code)]
            struct WeirGuest;

            impl $crate::__private::Guest for WeirGuest {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>(&WEIR_PLUGIN, config)
                }

                fn on_batch(
                    context: $crate::BatchContext,
                    batch: $crate::__private::Batch,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<::std::primitive::u8>,
                    ::std::string::String,
                > {
                    $crate::__private::batch::<$plugin>(&WEIR_PLUGIN, context, batch)
                }
            }

            // The export names (`weir:plugin/guest@0.1.0#on-batch`) mean
            // nothing off wasm and break native linkers' symbol lists, so a
            // plugin crate built for the host (its unit tests) exports nothing.
            #[cfg(target_arch = "wasm32")]
            $crate::__export_plugin_impl! { WeirGuest with_types_in $crate::__private::bindings }
        };
    };
}
