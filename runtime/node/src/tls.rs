//! TLS for the node: load the configured certificate or generate a
//! self-signed one into the data directory on first start, and build the
//! QUIC server configuration (TLS 1.3 only, ALPN `weir/1`, no 0-RTT,
//! optional client certificates). Never writes a key anywhere but the data
//! directory, and never with permissions wider than the owner's.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::NodeError;
use crate::config::{LimitsConfig, TlsConfig};

/// File names of the generated certificate and key in the data directory.
pub const GENERATED_CERT: &str = "cert.pem";
const GENERATED_KEY: &str = "key.pem";

/// The node's certificate chain and key.
pub(crate) struct TlsMaterial {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where the certificate came from, for the start-up log.
    pub(crate) cert_path: PathBuf,
}

impl TlsMaterial {
    /// Lowercase hex SHA-256 of the leaf certificate's DER bytes.
    pub(crate) fn fingerprint(&self) -> String {
        self.certs
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }
}

/// Lowercase hex SHA-256 of `der`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tls_err(what: String) -> NodeError {
    NodeError::Tls(what)
}

/// Loads the configured files, or the generated pair in `data_dir`,
/// generating it on first start.
pub(crate) fn load_or_generate(
    config: &TlsConfig,
    data_dir: &Path,
) -> Result<TlsMaterial, NodeError> {
    let (cert_path, key_path) = match (&config.cert, &config.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k) = (data_dir.join(GENERATED_CERT), data_dir.join(GENERATED_KEY));
            if !c.exists() || !k.exists() {
                generate(&c, &k)?;
            }
            (c, k)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| {
            tls_err(format!(
                "cannot read certificate {}: {e}",
                cert_path.display()
            ))
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            tls_err(format!(
                "bad certificate PEM in {}: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(tls_err(format!(
            "no certificate in {}",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        tls_err(format!(
            "cannot read private key {}: {e}",
            key_path.display()
        ))
    })?;
    Ok(TlsMaterial {
        certs,
        key,
        cert_path,
    })
}

fn generate(cert_path: &Path, key_path: &Path) -> Result<(), NodeError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| tls_err(format!("cannot generate a certificate: {e}")))?;
    write_private(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    write_private(cert_path, generated.cert.pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let io = |e: std::io::Error| tls_err(format!("cannot write {}: {e}", path.display()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The QUIC server configuration.
pub(crate) fn server_config(
    material: &TlsMaterial,
    client_ca: Option<&Path>,
    limits: &LimitsConfig,
) -> Result<quinn::ServerConfig, NodeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(format!("TLS 1.3 unavailable: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("cannot read client CA {}: {e}", path.display())))?
            {
                let cert = cert.map_err(|e| {
                    tls_err(format!("bad client CA PEM in {}: {e}", path.display()))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("bad client CA in {}: {e}", path.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| tls_err(format!("client CA {}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder
        .with_single_cert(material.certs.clone(), material.key.clone_key())
        .map_err(|e| {
            tls_err(format!(
                "certificate {} and its key do not fit: {e}",
                material.cert_path.display()
            ))
        })?;
    tls.alpn_protocols = vec![weir_proto::ALPN.to_vec()];
    // 0-RTT data could be replayed; no weir request is accepted early.
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| tls_err(format!("TLS config unusable for QUIC: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.idle_timeout)
                .map_err(|e| NodeError::Config(format!("idle timeout: {e}")))?,
        ))
        .keep_alive_interval(None)
        .receive_window(limits.connection_receive_window.into())
        .stream_receive_window(limits.stream_receive_window.into())
        .send_window(u64::from(limits.connection_receive_window))
        .max_concurrent_bidi_streams(limits.max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .datagram_receive_buffer_size(Some(1 << 20));
    server.transport_config(Arc::new(transport));
    Ok(server)
}
