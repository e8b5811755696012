//! A running node: the QUIC endpoint, the shared state, and the background
//! work (interval fsyncs, retention), with a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_plugin::{HostConfig, PluginHost};

use crate::config::NodeConfig;
use crate::state::{Shared, now_ms};
use crate::{DataDir, NodeError, server, tls};

/// How often partitions with an interval flush policy are checked.
const FLUSH_TICK: Duration = Duration::from_millis(10);
/// How often consumer groups' journals are fsynced (acks and commits are
/// in the page cache as soon as they are taken).
const GROUP_SYNC_TICK: Duration = Duration::from_millis(100);

/// A running node.
///
/// ```no_run
/// # async fn run() -> Result<(), weir_node::NodeError> {
/// let node = weir_node::Node::start(weir_node::NodeConfig::default()).await?;
/// println!("listening on {}, certificate {}", node.local_addr(), node.fingerprint());
/// node.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct Node {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    fingerprint: String,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    _data_dir: DataDir,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the data directory, loads topics and plugins, and starts
    /// listening.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate().map_err(NodeError::Config)?;
        let data_dir = DataDir::open(&config.data_dir)?;
        let material = tls::load_or_generate(&config.tls, data_dir.path())?;
        let fingerprint = material.fingerprint();
        let server_config =
            tls::server_config(&material, config.tls.client_ca.as_deref(), &config.limits)?;

        let host_config = HostConfig {
            cache_dir: Some(config.data_dir.join("plugin-cache")),
            ..HostConfig::default()
        };
        let shared = tokio::task::spawn_blocking(move || -> Result<Shared, NodeError> {
            let host = PluginHost::new(host_config)?;
            Shared::open(config, host)
        })
        .await
        .map_err(|e| NodeError::Internal(format!("start-up task: {e}")))??;
        let shared = Arc::new(shared);

        let endpoint =
            quinn::Endpoint::server(server_config, shared.config.listen).map_err(|e| {
                NodeError::Transport(format!("cannot listen on {}: {e}", shared.config.listen))
            })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| NodeError::Transport(e.to_string()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept = tokio::spawn(server::accept_loop(
            endpoint,
            shared.clone(),
            shutdown_rx.clone(),
        ));
        let maintenance = tokio::spawn(maintain(shared.clone(), shutdown_rx));
        tracing::info!(listen = %local_addr, %fingerprint, cert = %material.cert_path.display(), "node started");
        Ok(Node {
            shared,
            local_addr,
            fingerprint,
            shutdown,
            accept,
            maintenance,
            _data_dir: data_dir,
        })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Lowercase hex SHA-256 of the node's certificate (DER), for clients
    /// that pin it.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Stops accepting, lets in-flight batches finish (up to the configured
    /// grace), closes connections and fsyncs every partition.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        tracing::info!("shutting down");
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
        let _ = self.maintenance.await;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.sync_all())
            .await
            .map_err(|e| NodeError::Internal(format!("final fsync task: {e}")))??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Interval fsyncs and retention, until shutdown.
async fn maintain(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(FLUSH_TICK);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut retention = tokio::time::interval(shared.config.limits.retention_check);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut groups = tokio::time::interval(GROUP_SYNC_TICK);
    groups.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = flush.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || tick_all(&s)).await;
            }
            _ = groups.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.groups.sync_all()).await;
            }
            _ = retention.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || retain_all(&s)).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn tick_all(shared: &Shared) {
    let now = now_ms();
    let topics: Vec<_> = shared.topics.read().values().cloned().collect();
    for topic in topics {
        for p in &topic.partitions {
            if let weir_log::FlushPolicy::Interval { .. } = p.log.flush_policy()
                && let Err(e) = p.log.tick(now)
            {
                tracing::error!(topic = %topic.spec.name, partition = p.index, error = %e, "interval fsync failed");
            }
        }
    }
}

fn retain_all(shared: &Shared) {
    let now = now_ms();
    let topics: Vec<_> = shared.topics.read().values().cloned().collect();
    for topic in topics {
        for p in &topic.partitions {
            match p.log.apply_retention(now) {
                Ok(r) if !r.deleted_segments.is_empty() => {
                    tracing::info!(topic = %topic.spec.name, partition = p.index, segments = r.deleted_segments.len(),
                        bytes = r.deleted_bytes, start = r.start_offset, "retention");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %topic.spec.name, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }
}
