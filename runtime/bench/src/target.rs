//! The node under measurement: one the bench starts in a temporary data
//! directory on a loopback port (the default), or a running one named by
//! `--server`. This module owns connecting to it, the bench's topics
//! (unique `bench-*` names, deleted afterwards) and uploading the plugin
//! chain (as `bench-NAME`, deleted afterwards from a `--server` node). It
//! never connects without verifying the node's certificate.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tokio::sync::Mutex;
use weir_client::{
    Attach, Client, ClientConfig, FailurePolicy, Fingerprint, FlushMode, TopicSpec, Trust,
};
use weir_node::{Node, NodeConfig};

use crate::BenchError;
use crate::args::TargetArgs;
use crate::payload::default_plugin_config;

/// Where `weir serve` keeps its certificate, pinned for `--server` when no
/// other trust is given (as the rest of the CLI does).
const DEFAULT_CERT: &str = "weir-data/cert.pem";

/// Dedup window of the bench topics: what `weir topic create` gives.
const DEDUP_WINDOW_MS: u64 = 120_000;

/// The node a run measures.
#[derive(Debug)]
pub(crate) struct Target {
    node: Option<Node>,
    config: ClientConfig,
    /// The bench's working directory (the own node's data lives below it).
    work_dir: tempfile::TempDir,
    plugins_dir: Option<PathBuf>,
    next_topic: AtomicU32,
    /// Plugins uploaded in this run (each once).
    uploaded: Mutex<HashSet<String>>,
    topics: Mutex<Vec<String>>,
}

impl Target {
    /// Starts a node, or prepares to reach `--server`.
    pub(crate) async fn start(args: &TargetArgs) -> Result<Target, BenchError> {
        let base = bench_dir(args.dir.as_deref());
        std::fs::create_dir_all(&base).map_err(BenchError::io(&base))?;
        let work_dir = tempfile::Builder::new()
            .prefix("weir-bench-")
            .tempdir_in(&base)
            .map_err(BenchError::io(&base))?;
        let (node, config) = match &args.server {
            Some(server) => {
                let mut config = ClientConfig::new(server.clone(), trust(args)?)
                    .with_server_name(args.server_name.clone());
                config.token = args.token.clone();
                (None, config)
            }
            None => {
                let node = Node::start(NodeConfig {
                    data_dir: work_dir.path().join("node"),
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..NodeConfig::default()
                })
                .await?;
                let fp = Fingerprint::parse(&node.fingerprint()).map_err(|e| {
                    BenchError::Invalid(format!("the bench node's fingerprint: {e}"))
                })?;
                let config =
                    ClientConfig::new(node.local_addr().to_string(), Trust::Fingerprint(fp));
                (Some(node), config)
            }
        };
        let mut config = config;
        config.client_name = concat!("weir-bench/", env!("CARGO_PKG_VERSION")).into();
        Ok(Target {
            node,
            config,
            work_dir,
            plugins_dir: args.plugins.clone(),
            next_topic: AtomicU32::new(0),
            uploaded: Mutex::new(HashSet::new()),
            topics: Mutex::new(Vec::new()),
        })
    }

    /// A new connection to the node.
    pub(crate) async fn connect(&self) -> Result<Client, BenchError> {
        Client::connect(self.config.clone())
            .await
            .map_err(BenchError::client(format!(
                "cannot connect to {}",
                self.config.server
            )))
    }

    /// A directory for files of this run, on the disk the bench's own node
    /// writes to.
    pub(crate) fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    /// Whether the bench started the node itself.
    pub(crate) fn is_own_node(&self) -> bool {
        self.node.is_some()
    }

    /// Creates a new topic for one run; `what` goes into its name.
    pub(crate) async fn create_topic(
        &self,
        client: &Client,
        what: &str,
        partitions: u32,
        durable: bool,
    ) -> Result<String, BenchError> {
        let n = self.next_topic.fetch_add(1, Ordering::Relaxed);
        let name = format!("bench-{}-{n}-{what}", std::process::id());
        client
            .create_topic(TopicSpec {
                name: name.clone(),
                partitions,
                retention_ms: None,
                retention_bytes: None,
                flush: if durable {
                    FlushMode::Durable
                } else {
                    FlushMode::None
                },
                dedup_window_ms: DEDUP_WINDOW_MS,
            })
            .await
            .map_err(BenchError::client(format!("cannot create topic {name}")))?;
        self.topics.lock().await.push(name.clone());
        Ok(name)
    }

    /// Deletes a topic of this run, freeing its disk space.
    pub(crate) async fn delete_topic(&self, client: &Client, name: &str) -> Result<(), BenchError> {
        client
            .delete_topic(name)
            .await
            .map_err(BenchError::client(format!("cannot delete topic {name}")))?;
        self.topics.lock().await.retain(|t| t != name);
        Ok(())
    }

    /// Uploads the plugins of `chain` (once per run) and attaches them to
    /// `topic` in order.
    pub(crate) async fn attach_chain(
        &self,
        client: &Client,
        topic: &str,
        chain: &[String],
        configs: &[(String, String)],
    ) -> Result<(), BenchError> {
        for plugin in chain {
            let uploaded_as = format!("bench-{plugin}");
            let mut uploaded = self.uploaded.lock().await;
            if !uploaded.contains(plugin) {
                let path = self.plugin_path(plugin)?;
                let wasm = std::fs::read(&path).map_err(BenchError::io(&path))?;
                client
                    .put_plugin(&uploaded_as, Bytes::from(wasm))
                    .await
                    .map_err(BenchError::client(format!(
                        "cannot upload {}",
                        path.display()
                    )))?;
                uploaded.insert(plugin.clone());
            }
            drop(uploaded);
            let config = configs
                .iter()
                .rev()
                .find(|(name, _)| name == plugin)
                .map_or_else(
                    || default_plugin_config(plugin).to_owned(),
                    |(_, c)| c.clone(),
                );
            client
                .attach(Attach {
                    config,
                    on_error: FailurePolicy::Reject,
                    ..Attach::new(topic, &uploaded_as)
                })
                .await
                .map_err(BenchError::client(format!(
                    "cannot attach {plugin} to {topic}"
                )))?;
        }
        Ok(())
    }

    /// Where plugin `name`'s component is.
    pub(crate) fn plugin_path(&self, name: &str) -> Result<PathBuf, BenchError> {
        let file = format!("{name}.wasm");
        let candidates = plugin_dirs(self.plugins_dir.as_deref());
        candidates
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                BenchError::Invalid(format!(
                    "plugin {name}: no {file} in {} (run scripts/build-plugins, or pass --plugins DIR)",
                    candidates
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Deletes the run's topics that are left and stops the bench's own node.
    pub(crate) async fn shutdown(self) -> Result<(), BenchError> {
        let left: Vec<String> = self.topics.lock().await.clone();
        let uploaded: Vec<String> = self.uploaded.lock().await.iter().cloned().collect();
        if (!left.is_empty() || !uploaded.is_empty())
            && let Ok(client) = self.connect().await
        {
            for topic in &left {
                if let Err(err) = client.delete_topic(topic).await {
                    tracing::warn!(%topic, %err, "cannot delete a bench topic");
                }
            }
            // Only on a node the bench did not start: its own goes away.
            if self.node.is_none() {
                for plugin in &uploaded {
                    let name = format!("bench-{plugin}");
                    if let Err(err) = client.delete_plugin(&name).await {
                        tracing::warn!(plugin = %name, %err, "cannot delete a bench plugin");
                    }
                }
            }
            client.close().await;
        }
        if let Some(node) = self.node {
            node.shutdown().await?;
        }
        Ok(())
    }
}

/// The directory under which the bench makes its working directory.
pub(crate) fn bench_dir(arg: Option<&Path>) -> PathBuf {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WEIR_BENCH_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir)
}

/// Directories searched for plugin components, in order.
fn plugin_dirs(arg: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = arg {
        return vec![dir.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("WEIR_PLUGINS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(d).join("plugins"));
    }
    dirs.push(PathBuf::from("target/plugins"));
    // target/release/weir and target/debug/deps/test-binary both have
    // target/plugins among their ancestors' children.
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1).take(3) {
            dirs.push(ancestor.join("plugins"));
        }
    }
    dirs
}

fn trust(args: &TargetArgs) -> Result<Trust, BenchError> {
    if let Some(fp) = &args.fingerprint {
        let fp = Fingerprint::parse(fp)
            .map_err(|e| BenchError::Invalid(format!("--fingerprint: {e}")))?;
        return Ok(Trust::Fingerprint(fp));
    }
    if let Some(cert) = &args.cert {
        return Ok(Trust::CaFile(cert.clone()));
    }
    let default = Path::new(DEFAULT_CERT);
    if default.exists() {
        let fp = weir_client::fingerprint_of_pem_file(default).map_err(BenchError::client(
            format!("cannot pin the node certificate {}", default.display()),
        ))?;
        return Ok(Trust::Fingerprint(fp));
    }
    Err(BenchError::Invalid(format!(
        "no way to verify the node at {}: pass --fingerprint SHA256 (printed by `weir serve`) or --cert FILE, \
         or run where ./{DEFAULT_CERT} exists",
        args.server.as_deref().unwrap_or("?")
    )))
}
