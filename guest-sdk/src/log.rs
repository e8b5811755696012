//! Logging into the node's `tracing` output through the `host.log` import.
//! The host tags each line with the plugin's name and caps its length and
//! count; this module must never buffer or drop lines itself.

use crate::bindings::weir::plugin::host::{self, Level};

/// Logs at trace level.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Logs at error level. The host keeps the last error line of a call and
/// quotes it when that call fails.
pub fn error(message: &str) {
    write(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    host::log(level, message);
}

// Off wasm (unit tests of plugin logic) there is no host to call.
#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    let _ = (level, message, host::log as fn(Level, &str));
}
