//! The `weir` command: run a node, administer topics and plugins, produce
//! and consume. This file owns the command line's shape; each command's
//! work lives in `cmd/`. Errors reach a person as one line, `weir: ...`,
//! with a non-zero exit code; nothing here panics on user input.

mod args;
mod cmd;
mod connect;

use clap::Parser;

use args::{Cli, Command};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("weir: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    if let Err(err) = result {
        eprintln!("weir: {}", one_line(&err));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, without repeating a cause that
/// the outer message already quotes.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args).await,
        Command::Topic { conn, command } => cmd::topic::run(&conn, command).await,
        Command::Plugin { conn, command } => cmd::plugin::run(&conn, command).await,
        Command::Produce(args) => cmd::produce::run(args).await,
        Command::Consume(args) => cmd::consume::run(args).await,
    }
}
