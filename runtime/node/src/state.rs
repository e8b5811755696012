//! The node's shared state and its administrative operations: topics,
//! uploaded plugins, attachments. Every change is written to the metadata
//! file before it takes effect in memory, under one lock, so concurrent
//! admin requests apply one at a time and a crash never leaves memory ahead
//! of disk. These methods block (file I/O, compiling); the server calls
//! them from blocking tasks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use weir_plugin::{Attachment, CompiledPlugin, PluginHost};
use weir_proto::frame::{
    AttachmentInfo, FailurePolicy, GroupInfo, GroupOptions, MAX_PARTITIONS, PluginInfo, TopicInfo,
    TopicSpec, validate_name,
};

use crate::NodeError;
use crate::config::NodeConfig;
use crate::group::{GroupSettings, GroupTopic, Groups};
use crate::meta::{self, AttachmentMeta, Metadata, PluginVersionMeta, TopicMeta};
use crate::topic::Topic;

/// Suffix of the dead-letter topic of a topic.
pub(crate) const DLQ_SUFFIX: &str = ".dlq";

/// One compiled version of an uploaded plugin.
pub(crate) struct PluginVersion {
    version: u32,
    compiled: Arc<CompiledPlugin>,
}

/// Everything the connections of a node share.
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) host: PluginHost,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    plugins: RwLock<BTreeMap<String, Vec<PluginVersion>>>,
    /// The durable copy; its lock serialises administrative changes.
    meta: Mutex<Metadata>,
    /// Consumer groups' progress, opened as they are used.
    pub(crate) groups: Groups,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Shared {
    /// Loads metadata, compiles the plugins it names, opens every topic.
    pub(crate) fn open(config: NodeConfig, host: PluginHost) -> Result<Shared, NodeError> {
        let meta = meta::load(&config.data_dir)?;
        let config_groups_dir = config.data_dir.join("groups");
        let shared = Shared {
            config,
            host,
            topics: RwLock::new(BTreeMap::new()),
            plugins: RwLock::new(BTreeMap::new()),
            meta: Mutex::new(meta.clone()),
            groups: Groups::new(config_groups_dir),
        };
        for (name, plugin) in &meta.plugins {
            let mut versions = Vec::new();
            for v in &plugin.versions {
                let wasm = std::fs::read(shared.wasm_path(name, v.version))
                    .map_err(|e| NodeError::io("read", shared.wasm_path(name, v.version), e))?;
                let compiled = shared.host.compile(name, &wasm)?;
                versions.push(PluginVersion {
                    version: v.version,
                    compiled,
                });
            }
            shared.plugins.write().insert(name.clone(), versions);
        }
        let now = now_ms();
        for (name, topic) in &meta.topics {
            let chain = topic
                .chain
                .iter()
                .map(|a| {
                    shared
                        .instantiate(&a.plugin, a.version, &a.config, a.on_error.into())
                        .map(Arc::new)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let opened = Topic::open(
                &shared.topic_dir(name),
                topic.spec(name),
                shared.config.limits.segment_bytes,
                chain,
                shared.config.limits.dedup_max_entries,
                now,
            )?;
            shared.topics.write().insert(name.clone(), Arc::new(opened));
        }
        tracing::info!(
            topics = meta.topics.len(),
            plugins = meta.plugins.len(),
            "metadata loaded"
        );
        Ok(shared)
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.config.data_dir.join("topics").join(name)
    }

    fn wasm_path(&self, name: &str, version: u32) -> PathBuf {
        self.config
            .data_dir
            .join("plugins")
            .join(name)
            .join(format!("{version}.wasm"))
    }

    /// A topic by name.
    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, NodeError> {
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| NodeError::NotFound(format!("no topic {name:?}")))
    }

    fn instantiate(
        &self,
        plugin: &str,
        version: u32,
        config: &str,
        policy: weir_plugin::FailurePolicy,
    ) -> Result<Attachment, NodeError> {
        let compiled = self
            .plugins
            .read()
            .get(plugin)
            .and_then(|vs| vs.iter().find(|v| v.version == version))
            .map(|v| v.compiled.clone())
            .ok_or_else(|| {
                NodeError::NotFound(format!("no plugin {plugin:?} version {version}"))
            })?;
        Ok(self.host.attach(compiled, config, policy)?)
    }

    /// Creates a topic.
    pub(crate) fn create_topic(&self, spec: TopicSpec) -> Result<(), NodeError> {
        validate_name("topic name", &spec.name).map_err(|e| NodeError::Invalid(e.to_string()))?;
        if !(1..=MAX_PARTITIONS).contains(&spec.partitions) {
            return Err(NodeError::Invalid(format!(
                "partitions must be 1 to {MAX_PARTITIONS}, not {}",
                spec.partitions
            )));
        }
        let mut meta = self.meta.lock();
        if meta.topics.contains_key(&spec.name) {
            return Err(NodeError::AlreadyExists(format!(
                "topic {:?} exists",
                spec.name
            )));
        }
        let dir = self.topic_dir(&spec.name);
        // Leftovers of a topic deleted before a crash must not reappear.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| NodeError::io("remove", &dir, e))?;
        }
        let limits = &self.config.limits;
        let topic = Topic::open(
            &dir,
            spec.clone(),
            limits.segment_bytes,
            Vec::new(),
            limits.dedup_max_entries,
            now_ms(),
        )?;
        let mut next = meta.clone();
        next.topics
            .insert(spec.name.clone(), TopicMeta::from_spec(&spec));
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        self.topics
            .write()
            .insert(spec.name.clone(), Arc::new(topic));
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "topic created");
        Ok(())
    }

    /// The dead-letter topic of `topic`, created on first use.
    pub(crate) fn dead_letter_topic(&self, topic: &Topic) -> Result<Arc<Topic>, NodeError> {
        self.dead_letter_topic_named(&format!("{}{DLQ_SUFFIX}", topic.spec.name), topic)
    }

    /// A dead-letter topic for messages of `topic`, created on first use
    /// with one partition and `topic`'s flush and retention.
    pub(crate) fn dead_letter_topic_named(
        &self,
        name: &str,
        topic: &Topic,
    ) -> Result<Arc<Topic>, NodeError> {
        let name = name.to_string();
        if let Ok(t) = self.topic(&name) {
            return Ok(t);
        }
        let spec = TopicSpec {
            name: name.clone(),
            partitions: 1,
            dedup_window_ms: 0,
            ..topic.spec.clone()
        };
        match self.create_topic(spec) {
            Ok(()) | Err(NodeError::AlreadyExists(_)) => self.topic(&name),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic and its data.
    pub(crate) fn delete_topic(&self, name: &str) -> Result<(), NodeError> {
        let mut meta = self.meta.lock();
        if !meta.topics.contains_key(name) {
            return Err(NodeError::NotFound(format!("no topic {name:?}")));
        }
        let mut next = meta.clone();
        next.topics.remove(name);
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        let removed = self.topics.write().remove(name);
        if let Some(topic) = removed {
            // Readers holding slices keep their mappings; the files go now.
            std::fs::remove_dir_all(&topic.dir)
                .map_err(|e| NodeError::io("remove", &topic.dir, e))?;
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Every topic, or one.
    pub(crate) fn describe(&self, only: Option<&str>) -> Result<Vec<TopicInfo>, NodeError> {
        let meta = self.meta.lock().clone();
        let topics = self.topics.read().clone();
        let mut out = Vec::new();
        for (name, topic) in &topics {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let chain = meta
                .topics
                .get(name)
                .map(|t| t.chain.clone())
                .unwrap_or_default();
            out.push(TopicInfo {
                spec: topic.spec.clone(),
                partitions: topic.partitions.iter().map(|p| p.info()).collect(),
                chain: chain
                    .into_iter()
                    .map(|a| AttachmentInfo {
                        plugin: a.plugin,
                        version: a.version,
                        config: a.config,
                        on_error: a.on_error.into(),
                    })
                    .collect(),
            });
        }
        if let Some(name) = only
            && out.is_empty()
        {
            return Err(NodeError::NotFound(format!("no topic {name:?}")));
        }
        Ok(out)
    }

    /// Stores a new version of a plugin and moves every attachment of it to
    /// the new version. Either all of that happens or none: if the new
    /// version refuses any attachment's config, nothing changes.
    pub(crate) fn put_plugin(&self, name: &str, wasm: &[u8]) -> Result<PluginInfo, NodeError> {
        validate_name("plugin name", name).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let sha256: [u8; 32] = Sha256::digest(wasm).into();
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        let mut meta = self.meta.lock();
        let existing = meta.plugins.get(name).cloned().unwrap_or_default();
        if let Some(last) = existing.versions.last()
            && last.sha256 == hex
        {
            return Ok(PluginInfo {
                name: name.into(),
                version: last.version,
                bytes: last.bytes,
                sha256,
            });
        }
        let version = existing.versions.last().map_or(1, |v| v.version + 1);
        let compiled = self.host.compile(name, wasm)?;

        // Re-initialise every attachment on the new version before anything
        // is committed.
        let mut swaps = Vec::new();
        let topics = self.topics.read().clone();
        for (topic_name, topic_meta) in &meta.topics {
            if !topic_meta.chain.iter().any(|a| a.plugin == name) {
                continue;
            }
            let Some(topic) = topics.get(topic_name) else {
                continue;
            };
            let current = topic.chain.attachments();
            let mut next = Vec::with_capacity(current.len());
            for a in current.iter() {
                if a.plugin_name() == name {
                    let upgraded = a.upgrade(compiled.clone()).map_err(|e| {
                        NodeError::Invalid(format!("version {version} of {name:?} refuses its config on topic {topic_name:?}: {e}"))
                    })?;
                    next.push(Arc::new(upgraded));
                } else {
                    next.push(a.clone());
                }
            }
            swaps.push((topic.clone(), topic_name.clone(), next));
        }

        let path = self.wasm_path(name, version);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NodeError::io("create", dir, e))?;
        }
        write_synced(&path, wasm)?;
        let mut next = meta.clone();
        next.plugins
            .entry(name.to_string())
            .or_default()
            .versions
            .push(PluginVersionMeta {
                version,
                sha256: hex,
                bytes: wasm.len() as u64,
            });
        for (_, topic_name, _) in &swaps {
            if let Some(t) = next.topics.get_mut(topic_name) {
                for a in t.chain.iter_mut().filter(|a| a.plugin == name) {
                    a.version = version;
                }
            }
        }
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        self.plugins
            .write()
            .entry(name.to_string())
            .or_default()
            .push(PluginVersion { version, compiled });
        for (topic, topic_name, chain) in swaps {
            // Batches already running finish on the chain they loaded.
            topic.chain.swap(chain);
            tracing::info!(topic = %topic_name, plugin = name, version, "plugin swapped");
        }
        tracing::info!(plugin = name, version, bytes = wasm.len(), "plugin stored");
        Ok(PluginInfo {
            name: name.into(),
            version,
            bytes: wasm.len() as u64,
            sha256,
        })
    }

    /// Every plugin's newest version.
    pub(crate) fn list_plugins(&self) -> Vec<PluginInfo> {
        let meta = self.meta.lock();
        meta.plugins
            .iter()
            .filter_map(|(name, p)| {
                let v = p.versions.last()?;
                Some(PluginInfo {
                    name: name.clone(),
                    version: v.version,
                    bytes: v.bytes,
                    sha256: parse_hex(&v.sha256),
                })
            })
            .collect()
    }

    /// Deletes a plugin that no topic uses.
    pub(crate) fn delete_plugin(&self, name: &str) -> Result<(), NodeError> {
        let mut meta = self.meta.lock();
        if !meta.plugins.contains_key(name) {
            return Err(NodeError::NotFound(format!("no plugin {name:?}")));
        }
        let users: Vec<&str> = meta
            .topics
            .iter()
            .filter(|(_, t)| t.chain.iter().any(|a| a.plugin == name))
            .map(|(n, _)| n.as_str())
            .collect();
        if !users.is_empty() {
            return Err(NodeError::Invalid(format!(
                "plugin {name:?} is attached to {}; detach it first",
                users.join(", ")
            )));
        }
        let mut next = meta.clone();
        next.plugins.remove(name);
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        self.plugins.write().remove(name);
        let dir = self.config.data_dir.join("plugins").join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| NodeError::io("remove", &dir, e))?;
        tracing::info!(plugin = name, "plugin deleted");
        Ok(())
    }

    /// Attaches the newest version of a plugin to a topic's chain.
    pub(crate) fn attach(
        &self,
        topic_name: &str,
        plugin: &str,
        config: &str,
        on_error: FailurePolicy,
        position: Option<u32>,
    ) -> Result<(), NodeError> {
        let mut meta = self.meta.lock();
        let topic = self.topic(topic_name)?;
        let version = meta
            .plugins
            .get(plugin)
            .and_then(|p| p.versions.last())
            .map(|v| v.version)
            .ok_or_else(|| NodeError::NotFound(format!("no plugin {plugin:?}")))?;
        let Some(topic_meta) = meta.topics.get(topic_name) else {
            return Err(NodeError::NotFound(format!("no topic {topic_name:?}")));
        };
        if topic_meta.chain.iter().any(|a| a.plugin == plugin) {
            return Err(NodeError::AlreadyExists(format!(
                "{plugin:?} is already attached to {topic_name:?}"
            )));
        }
        let len = topic_meta.chain.len();
        let at = position.map_or(len, |p| p as usize);
        if at > len {
            return Err(NodeError::Invalid(format!(
                "position {at} is past the end of a chain of {len}"
            )));
        }
        let policy = crate::meta::PolicyMeta::from(on_error);
        let attachment = self.instantiate(plugin, version, config, policy.into())?;
        let mut chain: Vec<Arc<Attachment>> = topic.chain.attachments().iter().cloned().collect();
        chain.insert(at, Arc::new(attachment));
        let mut next = meta.clone();
        if let Some(t) = next.topics.get_mut(topic_name) {
            t.chain.insert(
                at,
                AttachmentMeta {
                    plugin: plugin.into(),
                    version,
                    config: config.into(),
                    on_error: policy,
                },
            );
        }
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        topic.chain.swap(chain);
        tracing::info!(
            topic = topic_name,
            plugin,
            version,
            position = at,
            "plugin attached"
        );
        Ok(())
    }

    /// Removes a plugin from a topic's chain.
    pub(crate) fn detach(&self, topic_name: &str, plugin: &str) -> Result<(), NodeError> {
        let mut meta = self.meta.lock();
        let topic = self.topic(topic_name)?;
        let mut next = meta.clone();
        let Some(t) = next.topics.get_mut(topic_name) else {
            return Err(NodeError::NotFound(format!("no topic {topic_name:?}")));
        };
        let before = t.chain.len();
        t.chain.retain(|a| a.plugin != plugin);
        if t.chain.len() == before {
            return Err(NodeError::NotFound(format!(
                "{plugin:?} is not attached to {topic_name:?}"
            )));
        }
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        let chain: Vec<Arc<Attachment>> = topic
            .chain
            .attachments()
            .iter()
            .filter(|a| a.plugin_name() != plugin)
            .cloned()
            .collect();
        topic.chain.swap(chain);
        tracing::info!(topic = topic_name, plugin, "plugin detached");
        Ok(())
    }

    /// A group's settings: those stored, checked against what a joining
    /// member states, or a new group's, stored first. Blocks.
    pub(crate) fn group_settings(
        &self,
        group: &str,
        options: &GroupOptions,
    ) -> Result<GroupSettings, NodeError> {
        validate_name("group name", group).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let mut meta = self.meta.lock();
        if let Some(stored) = meta.groups.get(group) {
            let settings = GroupSettings::from_meta(stored)?;
            settings.check(group, options)?;
            return Ok(settings);
        }
        let settings = GroupSettings::new(options)?;
        let mut next = meta.clone();
        next.groups.insert(group.to_string(), settings.to_meta());
        meta::store(&self.config.data_dir, &next)?;
        *meta = next;
        tracing::info!(group, mode = settings.mode.name(), "group created");
        Ok(settings)
    }

    /// A group's state on a topic, for a member or an admin request.
    pub(crate) fn group_topic(
        &self,
        group: &str,
        topic: &Topic,
    ) -> Result<Arc<GroupTopic>, NodeError> {
        let settings = self.stored_group(group)?;
        self.groups.open(group, topic, &settings)
    }

    fn stored_group(&self, group: &str) -> Result<GroupSettings, NodeError> {
        let meta = self.meta.lock();
        let stored = meta
            .groups
            .get(group)
            .ok_or_else(|| NodeError::NotFound(format!("no group {group:?}")))?;
        GroupSettings::from_meta(stored)
    }

    /// Every group, or one, with its state on each topic it consumed.
    pub(crate) fn describe_groups(&self, only: Option<&str>) -> Result<Vec<GroupInfo>, NodeError> {
        let names: Vec<String> = match only {
            Some(g) => {
                self.stored_group(g)?;
                vec![g.to_string()]
            }
            None => self.meta.lock().groups.keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let settings = self.stored_group(&name)?;
            let mut topics = Vec::new();
            for topic_name in self.groups.topics_of(&name) {
                let Ok(topic) = self.topic(&topic_name) else {
                    continue;
                };
                let gt = self.groups.open(&name, &topic, &settings)?;
                topics.push(gt.describe(&topic));
            }
            out.push(settings.info(&name, topics));
        }
        Ok(out)
    }

    /// Fsyncs every partition and group journal, for shutdown.
    pub(crate) fn sync_all(&self) -> Result<(), NodeError> {
        self.groups.sync_all();
        for topic in self.topics.read().values() {
            for p in &topic.partitions {
                if p.log.fenced().is_none() {
                    p.log.sync_to(p.log.end_offset())?;
                }
            }
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| NodeError::io("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| NodeError::io("write", path, e))?;
    f.sync_all().map_err(|e| NodeError::io("fsync", path, e))
}

fn parse_hex(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    out
}
