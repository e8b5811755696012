//! An attachment: one plugin version bound to one config and failure policy,
//! with the single live instance that serves it. Owns the instance's life
//! (created on demand, discarded after a fault) and the counters; must never
//! run two batches in one instance at once, since guest state is not
//! thread-safe.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bindings::{Batch, BatchContext, Verdict};
use crate::counters::{Counters, CountersSnapshot, Tally};
use crate::host::{CompiledPlugin, PluginHost};
use crate::instance::Instance;
use crate::message::{Message, pack};
use crate::{Limits, PluginError};

/// What happens to a batch when the plugin fails on it (trap, timeout,
/// limit, guest error, invalid output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Every message of the batch is rejected; producers see the error.
    #[default]
    Reject,
    /// Every message of the batch is handed to the node's dead-letter topic.
    DeadLetter,
    /// The plugin is skipped for this batch, as if it had passed everything.
    Bypass,
}

/// A plugin attached with a config. Create with [`PluginHost::attach`].
pub struct Attachment {
    plugin: Arc<CompiledPlugin>,
    config: String,
    policy: FailurePolicy,
    limits: Arc<Limits>,
    counters: Arc<Counters>,
    live: Mutex<Option<Instance>>,
}

impl Attachment {
    pub(crate) fn new(
        host: &PluginHost,
        plugin: Arc<CompiledPlugin>,
        config: &str,
        policy: FailurePolicy,
    ) -> Result<Self, PluginError> {
        let counters = Arc::new(Counters::default());
        Self::with_counters(Arc::clone(&host.limits), plugin, config, policy, counters)
    }

    fn with_counters(
        limits: Arc<Limits>,
        plugin: Arc<CompiledPlugin>,
        config: &str,
        policy: FailurePolicy,
        counters: Arc<Counters>,
    ) -> Result<Self, PluginError> {
        if config.len() > limits.config_bytes_max {
            return Err(PluginError::TooLarge {
                plugin: plugin.name().to_string(),
                what: "config",
                bytes: config.len(),
                limit: limits.config_bytes_max,
            });
        }
        let instance = Instance::start(&plugin, &limits, config)?;
        counters.instance();
        Ok(Attachment {
            plugin,
            config: config.to_string(),
            policy,
            limits,
            counters,
            live: Mutex::new(Some(instance)),
        })
    }

    /// The same config, policy and counters on another plugin version, for
    /// [`crate::Chain::swap`]. Runs the new version's init now.
    pub fn upgrade(&self, plugin: Arc<CompiledPlugin>) -> Result<Attachment, PluginError> {
        Self::with_counters(
            Arc::clone(&self.limits),
            plugin,
            &self.config,
            self.policy,
            Arc::clone(&self.counters),
        )
    }

    /// The plugin's name.
    pub fn plugin_name(&self) -> &str {
        self.plugin.name()
    }

    /// The plugin version this attachment runs.
    pub fn plugin(&self) -> &Arc<CompiledPlugin> {
        &self.plugin
    }

    /// The config given to init.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The failure policy.
    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// Counters since the attachment was created.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// Runs one batch through this plugin alone: one validated verdict per
    /// message, or the error. After a fault the instance is discarded and the
    /// next call starts a fresh one (running init again).
    pub fn run_batch(
        &self,
        context: &BatchContext,
        messages: &[Message],
    ) -> Result<Vec<Verdict>, PluginError> {
        let batch = pack(messages).map_err(|bytes| self.too_large(bytes))?;
        self.run_packed(context, &batch)
    }

    /// A batch over the contract's 4 GiB of keys, headers and payloads.
    pub(crate) fn too_large(&self, bytes: usize) -> PluginError {
        PluginError::TooLarge {
            plugin: self.plugin.name().to_string(),
            what: "batch",
            bytes,
            limit: u32::MAX as usize,
        }
    }

    /// [`Attachment::run_batch`] on a batch already laid out, so a chain
    /// lays it out once for all its plugins.
    pub(crate) fn run_packed(
        &self,
        context: &BatchContext,
        batch: &Batch,
    ) -> Result<Vec<Verdict>, PluginError> {
        let messages = batch.timestamps.len();
        let started = Instant::now();
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = self.call(&mut live, context, batch);
        drop(live);
        self.counters.batch(messages, started.elapsed());
        match &result {
            Ok(verdicts) => {
                let mut tally = Tally::default();
                for verdict in verdicts {
                    match verdict {
                        Verdict::Pass => tally.passes += 1,
                        Verdict::Patch(_) => tally.patches += 1,
                        Verdict::Drop(_) => tally.drops += 1,
                        Verdict::Reject(_) => tally.rejects += 1,
                    }
                }
                self.counters.verdicts(&tally);
            }
            Err(error) => {
                self.counters.error();
                tracing::warn!(plugin = self.plugin.name(), %error, policy = ?self.policy, "plugin failed on a batch");
            }
        }
        result
    }

    fn call(
        &self,
        live: &mut Option<Instance>,
        context: &BatchContext,
        batch: &Batch,
    ) -> Result<Vec<Verdict>, PluginError> {
        let instance = match live {
            Some(instance) => instance,
            None => {
                let fresh = Instance::start(&self.plugin, &self.limits, &self.config)?;
                self.counters.instance();
                live.insert(fresh)
            }
        };
        let result = instance.call_batch(self.plugin.name(), &self.limits, context, batch);
        if let Err(error) = &result
            && error.discards_instance()
        {
            *live = None;
        }
        result
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("plugin", &self.plugin.name())
            .field("config", &self.config)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
