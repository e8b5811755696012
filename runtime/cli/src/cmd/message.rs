//! `weir message get TOPIC --id ID`: looks one stored message up by its
//! producer id or dedup key and prints it as `weir consume` would. A miss
//! is an error (one line, non-zero exit), never an empty success.

use anyhow::Context;

use crate::args::{ConnArgs, MessageCommand};
use crate::cmd::consume::print;
use crate::connect::connect;

pub(crate) async fn run(conn: &ConnArgs, command: MessageCommand) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    match command {
        MessageCommand::Get { topic, id, format } => {
            let found = client.get_message(&topic, id.into_bytes()).await;
            client.close().await;
            let message = found?;
            let stdout = std::io::stdout();
            match print(&mut stdout.lock(), format, &message) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e).context("cannot write to standard output"),
            }
        }
    }
    Ok(())
}
