//! `weir plugin ...`: upload, list and delete routing plugins on a node; and
//! two commands that need no node, `new` (in `scaffold`) and `test` (in
//! `offline`). A file is checked against the protocol's size limit before
//! it is read.

mod offline;
mod scaffold;

use std::path::Path;

use anyhow::{Context, bail};
use weir_client::PluginInfo;

use crate::args::{ConnArgs, PluginCommand};
use crate::connect::connect;

/// Largest plugin the protocol carries.
const MAX_PLUGIN_BYTES: u64 = 32 * 1024 * 1024;

pub(crate) async fn run(conn: &ConnArgs, command: PluginCommand) -> anyhow::Result<()> {
    // Read the file before connecting, so a wrong path fails fast.
    let upload = match command {
        PluginCommand::New { name, dir } => return scaffold::run(&name, dir.as_deref()),
        PluginCommand::Test(args) => return offline::run(args).await,
        PluginCommand::Put { ref file, .. } => Some(read_component(file)?),
        _ => None,
    };
    let client = connect(conn).await?;
    match command {
        PluginCommand::Put { name, .. } => {
            let info = client
                .put_plugin(&name, upload.unwrap_or_default().into())
                .await?;
            println!(
                "stored plugin {} version {} ({} bytes, sha256 {})",
                info.name,
                info.version,
                info.bytes,
                hex(&info.sha256)
            );
        }
        PluginCommand::List => {
            let plugins = client.list_plugins().await?;
            if plugins.is_empty() {
                println!("no plugins");
            } else {
                println!("{:<32} {:>8} {:>12}  SHA256", "PLUGIN", "VERSION", "BYTES");
                for PluginInfo {
                    name,
                    version,
                    bytes,
                    sha256,
                } in &plugins
                {
                    println!("{name:<32} {version:>8} {bytes:>12}  {}", hex(sha256));
                }
            }
        }
        PluginCommand::Delete { name } => {
            client.delete_plugin(&name).await?;
            println!("deleted plugin {name}");
        }
        // Returned above: they need no node.
        PluginCommand::New { .. } | PluginCommand::Test(_) => {}
    }
    client.close().await;
    Ok(())
}

/// A component file, refused before it is read when it is larger than the
/// protocol carries.
fn read_component(file: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if len > MAX_PLUGIN_BYTES {
        bail!(
            "{} is {len} bytes; a plugin may be at most {MAX_PLUGIN_BYTES}",
            file.display()
        );
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
