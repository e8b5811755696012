//! `weir serve`: runs a node until ctrl-c or SIGTERM, then shuts it down
//! gracefully. It never runs a node without printing how to trust it.

use anyhow::Context;
use weir_node::{Node, NodeConfig};

use crate::args::ServeArgs;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::from_toml_file(path)?,
        None => NodeConfig::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let data_dir = config.data_dir.clone();
    let node = Node::start(config).await.context("cannot start the node")?;
    println!("weir: listening on {}", node.local_addr());
    println!("weir: data directory {}", data_dir.display());
    println!("weir: certificate fingerprint (sha256) {}", node.fingerprint());
    wait_for_signal().await?;
    eprintln!("weir: shutting down");
    node.shutdown().await.context("shutdown failed")?;
    eprintln!("weir: stopped");
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("cannot watch ctrl-c")
}
