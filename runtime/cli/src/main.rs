//! The `weir` command.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// weir: a WebAssembly-pluggable stream router.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        /// Data directory (created on first start).
        #[arg(long, default_value = "./weir-data")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: SocketAddr,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = run(Cli::parse()) {
        eprintln!("weir: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { data_dir, listen } => {
            let dir = weir_node::DataDir::open(&data_dir)
                .with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
            println!(
                "weir: data directory {} {} (would listen on {listen}; the QUIC listener is not built yet)",
                dir.path().display(),
                if dir.created() { "created" } else { "opened" },
            );
            Ok(())
        }
    }
}
