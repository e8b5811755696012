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
    // Watch for signals before saying that the node is up, so that a
    // SIGTERM sent right after the banner already means a graceful stop.
    let signals = Signals::new()?;
    let node = Node::start(config).await.context("cannot start the node")?;
    println!("weir: listening on {}", node.local_addr());
    println!("weir: data directory {}", data_dir.display());
    println!(
        "weir: certificate fingerprint (sha256) {}",
        node.fingerprint()
    );
    signals.wait().await?;
    eprintln!("weir: shutting down");
    node.shutdown().await.context("shutdown failed")?;
    eprintln!("weir: stopped");
    Ok(())
}

/// ctrl-c, and SIGTERM where there is one.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch ctrl-c")?,
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .context("cannot watch ctrl-c")?;
        Ok(())
    }
}
