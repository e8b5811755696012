//! The `weir` command: run a node, administer topics and plugins, produce
//! and consume. This file owns the command line's shape; each command's
//! work lives in `cmd/`. Errors reach a person as one line, `weir: ...`,
//! with a non-zero exit code; nothing here panics on user input.

mod args;
mod cmd;
mod connect;

use clap::Parser;

use args::{Cli, Command, PluginCommand};

/// mimalloc rather than the system allocator: the node's hot paths make and
/// free many small objects (frames, answers, per-message outcomes) next to
/// 1 MiB batch buffers, a mix glibc's malloc serves with costly
/// consolidation. docs/benchmarks.md has the figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // `weir plugin test` prints a plugin's failures itself (reject lines and
    // one error line), so the host's own warning about them would say it
    // twice; the plugin's log lines still show.
    let default_filter = match &cli.command {
        Command::Plugin {
            command: PluginCommand::Test(_),
            ..
        } => "warn,weir_plugin::attachment=error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    // The plugin host needs at least 1 MiB of stack on the threads that call
    // it (`weir plugin test` uses blocking threads); this is tokio's current
    // default, stated so that it cannot shrink under us.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(2 << 20)
        .enable_all()
        .build()
    {
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
        Command::Message { conn, command } => cmd::message::run(&conn, command).await,
        Command::Group { conn, command } => cmd::group::run(&conn, command).await,
        Command::Bench(args) => cmd::bench::run(args).await,
    }
}
