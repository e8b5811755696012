//! The smallest useful plugin: it has no opinion on any message. It is the
//! baseline for plugin size and per-message call cost, and must stay
//! trivial so those figures mean something.

use weir_guest::{Plugin, export_plugin};

/// Passes everything.
pub struct Noop;

impl Plugin for Noop {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(Noop)
    }
}

export_plugin!(Noop);
