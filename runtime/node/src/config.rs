//! The node's configuration: defaults that run a node on loopback with no
//! file at all, and a TOML file for everything else (`docs/operations.md`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::NodeError;

/// Everything a node needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Data directory: logs, plugins, metadata, the generated certificate.
    pub data_dir: PathBuf,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// TLS material; a self-signed certificate is generated when absent.
    pub tls: TlsConfig,
    /// Bearer tokens; when empty, every client may do everything.
    pub tokens: Vec<TokenConfig>,
    /// Transport and resource limits.
    pub limits: LimitsConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./weir-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            tls: TlsConfig::default(),
            tokens: Vec::new(),
            limits: LimitsConfig::default(),
        }
    }
}

/// Certificate, key and client CA files (PEM).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain.
    pub cert: Option<PathBuf>,
    /// The node's private key.
    pub key: Option<PathBuf>,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// A bearer token and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret a client sends in its hello.
    pub token: String,
    /// Topic patterns it may produce to (`*` matches any run of characters).
    #[serde(default)]
    pub produce: Vec<String>,
    /// Topic patterns it may consume from.
    #[serde(default)]
    pub consume: Vec<String>,
    /// Topic patterns it may administer (create, delete, attach); `*` also
    /// covers plugin uploads.
    #[serde(default)]
    pub admin: Vec<String>,
}

/// Limits with a stated bound for every queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// QUIC idle timeout.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Bytes a connection may have in flight towards the node.
    pub connection_receive_window: u32,
    /// Bytes one stream may have in flight towards the node.
    pub stream_receive_window: u32,
    /// Concurrent bidirectional streams a client may open.
    pub max_streams: u32,
    /// Unanswered produce frames per stream before the node stops reading it.
    pub max_pending_produces: usize,
    /// Largest delivery the node sends in one frame.
    pub max_delivery_bytes: usize,
    /// Segment size of new partitions.
    pub segment_bytes: u64,
    /// Most keys a topic's dedup window remembers; past it the oldest go.
    pub dedup_max_entries: usize,
    /// Most bytes of stored batches one message lookup reads before it
    /// gives up (a lookup outside the dedup window scans the partitions).
    pub lookup_scan_bytes_max: u64,
    /// How often retention runs.
    #[serde(with = "duration")]
    pub retention_check: Duration,
    /// How long a graceful shutdown waits for connections to finish.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            idle_timeout: Duration::from_secs(30),
            connection_receive_window: 64 << 20,
            stream_receive_window: 16 << 20,
            max_streams: 256,
            max_pending_produces: 64,
            max_delivery_bytes: 1 << 20,
            segment_bytes: 1 << 30,
            dedup_max_entries: 1_000_000,
            lookup_scan_bytes_max: 1 << 30,
            retention_check: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl NodeConfig {
    /// Reads a TOML file; fields it leaves out keep their defaults.
    pub fn from_toml_file(path: &Path) -> Result<NodeConfig, NodeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NodeError::Config(format!("cannot read {}: {e}", path.display())))?;
        NodeConfig::from_toml(&text)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<NodeConfig, String> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err("tls.cert and tls.key go together".into());
        }
        for t in &self.tokens {
            if t.token.len() < 16 {
                return Err("a token must be at least 16 characters".into());
            }
        }
        let l = &self.limits;
        if l.max_pending_produces == 0 || l.max_streams == 0 || l.max_delivery_bytes == 0 {
            return Err("limits must be at least 1".into());
        }
        if l.max_delivery_bytes > weir_proto::limits::MAX_BATCH_BYTES * 4 {
            return Err(format!(
                "limits.max_delivery_bytes is at most {}",
                weir_proto::limits::MAX_BATCH_BYTES * 4
            ));
        }
        Ok(())
    }
}

/// Durations in TOML as humantime strings: "30s", "10m", "7d".
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults_and_fields_override() {
        let c = NodeConfig::from_toml("").expect("empty");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 7400)));
        let c = NodeConfig::from_toml(
            r#"
            data_dir = "/var/lib/weir"
            listen = "0.0.0.0:7401"
            [limits]
            idle_timeout = "1m"
            [[tokens]]
            token = "0123456789abcdef"
            produce = ["orders.*"]
            "#,
        )
        .expect("valid");
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.tokens[0].produce, ["orders.*"]);
        assert!(
            NodeConfig::from_toml("lsiten = \"x\"")
                .expect_err("typo")
                .contains("unknown field")
        );
        assert!(
            NodeConfig::from_toml("[tls]\ncert = \"c.pem\"")
                .expect_err("no key")
                .contains("go together")
        );
    }
}
