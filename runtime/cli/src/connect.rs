//! From `--server`, `--cert`, `--fingerprint` and `--token` to a connected
//! client. This module owns the CLI's trust decision: a pinned fingerprint,
//! a CA file, or the node's own certificate in `./weir-data`; it never
//! connects without one of them.

use std::path::Path;

use anyhow::{Context, bail};
use weir_client::{Client, ClientConfig, ClientIdentity, Fingerprint, Trust};

use crate::args::ConnArgs;

/// Where `weir serve` keeps its generated certificate by default.
const DEFAULT_CERT: &str = "weir-data/cert.pem";

/// How the node will be trusted, from the command line.
pub(crate) fn trust(args: &ConnArgs) -> anyhow::Result<Trust> {
    if let Some(fp) = &args.fingerprint {
        return Ok(Trust::Fingerprint(Fingerprint::parse(fp)?));
    }
    if let Some(cert) = &args.cert {
        return Ok(Trust::CaFile(cert.clone()));
    }
    let default = Path::new(DEFAULT_CERT);
    if default.exists() {
        let fp = weir_client::fingerprint_of_pem_file(default)
            .with_context(|| format!("cannot pin the node certificate {}", default.display()))?;
        return Ok(Trust::Fingerprint(fp));
    }
    bail!(
        "no way to verify the node at {}: pass --fingerprint SHA256 (printed by `weir serve`) or --cert FILE, \
         or run where ./{DEFAULT_CERT} exists",
        args.server
    )
}

/// Connects as the arguments say.
pub(crate) async fn connect(args: &ConnArgs) -> anyhow::Result<Client> {
    let mut config = ClientConfig::new(args.server.clone(), trust(args)?)
        .with_server_name(args.server_name.clone());
    config.token = args.token.clone();
    config.client_name = concat!("weir-cli/", env!("CARGO_PKG_VERSION")).into();
    if let (Some(cert_file), Some(key_file)) = (&args.client_cert, &args.client_key) {
        config.identity = Some(ClientIdentity {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        });
    }
    Ok(Client::connect(config).await?)
}
