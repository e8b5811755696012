//! The one error type of the plugin host. Owns the wording an operator sees
//! when a plugin misbehaves: every variant names the plugin and, where there
//! is one, the limit that was hit and what the guest said. Must never carry
//! a wasmtime type, so callers need not depend on wasmtime.

use std::time::Duration;

/// What went wrong with a plugin, compiling or running it.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are a core module or not wasm at all.
    #[error("plugin {plugin}: not a WebAssembly component ({detail}); build it for wasm32-wasip2")]
    NotAComponent {
        /// Plugin name.
        plugin: String,
        /// What the header looked like.
        detail: String,
    },
    /// The component exports the contract at a version this host does not speak.
    #[error(
        "plugin {plugin}: built for contract weir:plugin@{found}, this host speaks weir:plugin@{supported}"
    )]
    UnsupportedContract {
        /// Plugin name.
        plugin: String,
        /// The version the component was built for.
        found: String,
        /// The version the host speaks.
        supported: &'static str,
    },
    /// The component does not export `weir:plugin/guest` at all.
    #[error("plugin {plugin}: does not export weir:plugin/guest (exports: {exports})")]
    NotAPlugin {
        /// Plugin name.
        plugin: String,
        /// What it does export, comma separated.
        exports: String,
    },
    /// wasmtime refused to compile or link the component.
    #[error("plugin {plugin}: cannot {stage}: {detail}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// compile, link or instantiate.
        stage: &'static str,
        /// wasmtime's explanation.
        detail: String,
    },
    /// The plugin's init refused the attachment's config.
    #[error("plugin {plugin}: init refused the config: {message}")]
    Init {
        /// Plugin name.
        plugin: String,
        /// The guest's error.
        message: String,
    },
    /// The plugin returned an error for the batch.
    #[error("plugin {plugin}: on-batch failed: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// The guest's error.
        message: String,
    },
    /// The call ran past its epoch deadline.
    #[error("plugin {plugin}: exceeded its time limit of {deadline:?} per call")]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// The configured deadline.
        deadline: Duration,
    },
    /// The instance tried to grow its memory past the cap.
    #[error(
        "plugin {plugin}: memory limit of {limit_bytes} bytes hit (asked for {requested_bytes} bytes)"
    )]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// The cap.
        limit_bytes: usize,
        /// What the guest asked for.
        requested_bytes: usize,
    },
    /// The guest overflowed its wasm stack.
    #[error("plugin {plugin}: wasm stack limit of {limit_bytes} bytes exceeded")]
    StackOverflow {
        /// Plugin name.
        plugin: String,
        /// The configured `max_wasm_stack`.
        limit_bytes: usize,
    },
    /// The guest trapped (panic, unreachable, bad memory access...).
    #[error("plugin {plugin}: trapped{}: {trap}", guest_message.as_deref().map(|m| format!(" (guest said: {m})")).unwrap_or_default())]
    Trap {
        /// Plugin name.
        plugin: String,
        /// wasmtime's description of the trap, with the wasm backtrace.
        trap: String,
        /// The last error line the guest logged before trapping (a panic
        /// message when built with weir-guest).
        guest_message: Option<String>,
    },
    /// An input the host was given is over its limit.
    #[error("plugin {plugin}: {what} of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Plugin name.
        plugin: String,
        /// The component or the config.
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The guest's output broke a bound of the contract.
    #[error("plugin {plugin}: invalid output: {detail}")]
    InvalidOutput {
        /// Plugin name.
        plugin: String,
        /// Which bound and which value.
        detail: String,
    },
    /// Disk access for the compiled-artefact cache failed.
    #[error("plugin cache: cannot {action}: {source}")]
    Io {
        /// What the host was doing.
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The host itself could not be set up.
    #[error("plugin host: {0}")]
    Host(String),
}

impl PluginError {
    /// An I/O error while doing `action`.
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        PluginError::Io {
            action: action.into(),
            source,
        }
    }

    /// Whether this fault discarded the plugin instance (the next batch runs
    /// on a fresh one).
    pub fn discards_instance(&self) -> bool {
        matches!(
            self,
            PluginError::Timeout { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::StackOverflow { .. }
                | PluginError::Trap { .. }
                | PluginError::InvalidOutput { .. }
                | PluginError::Init { .. }
        )
    }
}
