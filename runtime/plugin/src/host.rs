//! The plugin host: one wasmtime engine, its linker and epoch ticker, and
//! the compile step (with the disk cache and the contract-version check).
//! Owns engine configuration; must never create a store without the limits
//! in [`Limits`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::attachment::{Attachment, FailurePolicy};
use crate::bindings::PluginPre;
use crate::cache::{self, DiskCache};
use crate::state::GuestState;
use crate::ticker::Ticker;
use crate::{CONTRACT_VERSION, Limits, PluginError};

const GUEST_EXPORT: &str = "weir:plugin/guest";
const HOST_IMPORT: &str = "weir:plugin/host";

/// How to build a [`PluginHost`].
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Where compiled artefacts are kept; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Limits for every instance.
    pub limits: Limits,
}

/// Compiles plugins and attaches them. One per node; cheap to share behind
/// an `Arc`.
pub struct PluginHost {
    pub(crate) engine: Engine,
    linker: Linker<GuestState>,
    pub(crate) limits: Arc<Limits>,
    cache: Option<DiskCache>,
    ticker: Arc<Ticker>,
}

/// Where a compiled plugin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the component's bytes just now.
    Compiled,
    /// Loaded from the disk cache without compiling.
    Cache,
}

/// A component compiled, checked against the contract and linked, ready to
/// instantiate. Shared by every attachment of the same plugin version.
pub struct CompiledPlugin {
    pub(crate) name: String,
    pub(crate) pre: PluginPre<GuestState>,
    digest: String,
    source: LoadSource,
    load_time: Duration,
    // Deadlines only fire while the epoch advances, so every plugin keeps
    // the ticker alive even if the host is dropped first.
    _ticker: Arc<Ticker>,
}

impl CompiledPlugin {
    /// The plugin's name, used in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hex SHA-256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether this came from the cache or the compiler.
    pub fn source(&self) -> LoadSource {
        self.source
    }

    /// How long compiling or loading took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Builds the engine, links the contract and WASI, starts the ticker.
    pub fn new(config: HostConfig) -> Result<Self, PluginError> {
        let limits = config.limits;
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .max_wasm_stack(limits.wasm_stack_bytes_max)
            .wasm_component_model(true);
        let engine =
            Engine::new(&wasm).map_err(|e| PluginError::Host(format!("wasmtime engine: {e}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Host(format!("link WASI: {e}")))?;
        crate::bindings::Plugin::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| PluginError::Host(format!("link the contract: {e}")))?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = Ticker::start(engine.clone(), limits.tick)?;
        Ok(PluginHost {
            engine,
            linker,
            limits: Arc::new(limits),
            cache,
            ticker: Arc::new(ticker),
        })
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component (or loads it from the cache), checks that it
    /// speaks this host's contract version and links it. Compiling takes
    /// up to a few hundred milliseconds of CPU: call it off the async
    /// runtime.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<Arc<CompiledPlugin>, PluginError> {
        let started = Instant::now();
        if wasm.len() > self.limits.component_bytes_max {
            return Err(PluginError::TooLarge {
                plugin: name.to_string(),
                what: "component",
                bytes: wasm.len(),
                limit: self.limits.component_bytes_max,
            });
        }
        check_header(name, wasm)?;
        let digest = cache::digest(wasm);
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &digest));
        let (component, source) = match cached {
            Some(component) => (component, LoadSource::Cache),
            None => {
                let component =
                    Component::new(&self.engine, wasm).map_err(|e| PluginError::Compile {
                        plugin: name.to_string(),
                        stage: "compile",
                        detail: format!("{e:#}"),
                    })?;
                (component, LoadSource::Compiled)
            }
        };
        check_contract(name, &self.engine, &component)?;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::Compile {
                    plugin: name.to_string(),
                    stage: "link",
                    detail: format!("{e:#}"),
                })?;
        let pre = PluginPre::new(instance_pre).map_err(|e| PluginError::Compile {
            plugin: name.to_string(),
            stage: "link",
            detail: format!("{e:#}"),
        })?;
        // Only a component that passed every check is worth caching.
        if let (Some(cache), LoadSource::Compiled) = (&self.cache, source) {
            cache.store(&digest, &component)?;
        }
        let load_time = started.elapsed();
        tracing::debug!(plugin = name, ?source, ?load_time, "plugin loaded");
        Ok(Arc::new(CompiledPlugin {
            name: name.to_string(),
            pre,
            digest,
            source,
            load_time,
            _ticker: Arc::clone(&self.ticker),
        }))
    }

    /// Attaches a compiled plugin with a config: instantiates it and runs
    /// its init, so a bad config fails here rather than on the first batch.
    pub fn attach(
        &self,
        plugin: Arc<CompiledPlugin>,
        config: &str,
        policy: FailurePolicy,
    ) -> Result<Attachment, PluginError> {
        Attachment::new(self, plugin, config, policy)
    }
}

fn check_header(name: &str, wasm: &[u8]) -> Result<(), PluginError> {
    let not = |detail: &str| PluginError::NotAComponent {
        plugin: name.to_string(),
        detail: detail.to_string(),
    };
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(not("no wasm magic number"));
    }
    // Bytes 6..8 are the layer: 0 for core modules, 1 for components.
    match [wasm[6], wasm[7]] {
        [1, 0] => Ok(()),
        [0, 0] => Err(not("it is a core module")),
        _ => Err(not("unknown wasm layer")),
    }
}

/// Refuses a component that exports or imports the contract at another
/// version, with the version it was built for in the message.
fn check_contract(name: &str, engine: &Engine, component: &Component) -> Result<(), PluginError> {
    let ty = component.component_type();
    let mut found_guest = false;
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string());
    for (item, is_export) in exports
        .iter()
        .cloned()
        .map(|n| (n, true))
        .chain(imports.map(|n| (n, false)))
    {
        let (interface, version) = item.split_once('@').unwrap_or((item.as_str(), ""));
        let ours = if is_export { GUEST_EXPORT } else { HOST_IMPORT };
        if interface != ours {
            continue;
        }
        if version != CONTRACT_VERSION {
            return Err(PluginError::UnsupportedContract {
                plugin: name.to_string(),
                found: if version.is_empty() {
                    "(unversioned)".to_string()
                } else {
                    version.to_string()
                },
                supported: CONTRACT_VERSION,
            });
        }
        found_guest |= is_export;
    }
    if !found_guest {
        return Err(PluginError::NotAPlugin {
            plugin: name.to_string(),
            exports: exports.join(", "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_header;

    #[test]
    fn core_modules_and_garbage_are_refused() {
        let core = b"\0asm\x01\0\0\0";
        let err = check_header("p", core)
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("core module"), "{err}");
        assert!(check_header("p", b"hello world").is_err());
        assert!(check_header("p", b"\0asm\x0d\0\x01\0").is_ok());
    }
}
