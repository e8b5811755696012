//! The QUIC server: accepts connections, runs the hello, and hands each
//! stream to its handler by the first frame on it. Every task here only
//! moves bytes between the network and the blocking core (`state`,
//! `ingest`, the logs); nothing in it decides what a byte means.

mod admin;
mod connection;
mod group;
mod io;
mod produce;
mod subscribe;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::state::Shared;

/// Close codes on the connection (docs/protocol.md).
pub(crate) mod close {
    pub(crate) const NORMAL: u32 = 0;
    pub(crate) const PROTOCOL: u32 = 1;
    pub(crate) const UNAUTHENTICATED: u32 = 2;
    pub(crate) const VERSION: u32 = 3;
    pub(crate) const SHUTTING_DOWN: u32 = 4;
}

/// Accepts connections until `shutdown` turns true, then waits for the
/// connections to wind down (they stop taking new streams and finish what
/// they hold) for at most the configured grace.
pub(crate) async fn accept_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                connections.spawn(connection::run(incoming, shared, shutdown));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    let grace = shared.config.limits.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "connections still open after the shutdown grace; closing them"
        );
        connections.abort_all();
    }
    endpoint.close(close::SHUTTING_DOWN.into(), b"shutting down");
    // Let the close frames leave before the socket goes, so clients learn
    // of the shutdown now rather than at their idle timeout.
    if tokio::time::timeout(CLOSE_FLUSH, endpoint.wait_idle())
        .await
        .is_err()
    {
        tracing::debug!("connections still draining after {CLOSE_FLUSH:?}");
    }
}

/// How long a node that shuts down waits for its close frames to be sent.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);
