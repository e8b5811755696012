//! The plugin host's tests: real components from `plugins/`, compiled and run
//! by wasmtime. One test binary holds every module, so wasmtime is linked
//! once; run one part with its module path, e.g.
//! `cargo test -p weir-plugin --test host hostile::`.

mod cache;
mod chain;
mod common;
mod examples;
mod hostile;
