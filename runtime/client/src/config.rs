//! How a client finds and trusts a node. This module owns the plain
//! configuration values; it does no I/O and never offers a way to skip
//! certificate verification.

use std::path::PathBuf;
use std::time::Duration;

use crate::Fingerprint;

/// How the client decides that the node's certificate is the right one.
/// There is deliberately no variant that trusts any certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 fingerprint (the
    /// TLS handshake signature is still verified against it).
    Fingerprint(Fingerprint),
    /// Verify the node's certificate chain against the CA certificates in
    /// this PEM file, for the configured server name.
    CaFile(PathBuf),
}

/// A client certificate for mutual TLS: PEM files of the certificate chain
/// and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Everything [`Client::connect`](crate::Client::connect) needs.
///
/// ```
/// use weir_client::{ClientConfig, Fingerprint, Trust};
///
/// let fp: Fingerprint = "ab".repeat(32).parse()?;
/// let config = ClientConfig::new("127.0.0.1:7400", Trust::Fingerprint(fp)).with_token("s3cret");
/// assert_eq!(config.server_name, "localhost");
/// # Ok::<(), weir_client::ClientError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The node's address, `host:port`.
    pub server: String,
    /// The name the certificate must carry (CA trust only); "localhost"
    /// unless set.
    pub server_name: String,
    /// How the node's certificate is verified.
    pub trust: Trust,
    /// A client certificate, for a node that requires mutual TLS.
    pub identity: Option<ClientIdentity>,
    /// Bearer token sent in `hello`.
    pub token: Option<String>,
    /// The name the node logs for this client.
    pub client_name: String,
    /// Longest wait for the handshake and `hello-ok`.
    pub connect_timeout: Duration,
    /// A connection silent for this long is dropped (keep-alives are sent
    /// at a third of it).
    pub idle_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with defaults: server name "localhost", no token,
    /// no client certificate, 10 s connect timeout, 30 s idle timeout.
    pub fn new(server: impl Into<String>, trust: Trust) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            server_name: "localhost".into(),
            trust,
            identity: None,
            token: None,
            client_name: concat!("weir-client/", env!("CARGO_PKG_VERSION")).into(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }

    /// Sets the server name checked against a CA-verified certificate.
    pub fn with_server_name(mut self, name: impl Into<String>) -> ClientConfig {
        self.server_name = name.into();
        self
    }

    /// Sets a client certificate for mutual TLS.
    pub fn with_identity(mut self, identity: ClientIdentity) -> ClientConfig {
        self.identity = Some(identity);
        self
    }
}
