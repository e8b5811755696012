//! TLS for the client: the rustls configuration (ring, TLS 1.3 only, ALPN
//! `weir/1`) and the pinned-fingerprint verifier. This module owns every
//! trust decision; it must never accept a certificate it has not checked,
//! and the pinned verifier still checks the handshake signature so that a
//! peer cannot present a pinned certificate without holding its key.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::{ClientConfig, ClientError, Fingerprint, Trust};

/// What the pinned verifier saw, so that a failed handshake can be
/// reported as a fingerprint mismatch with both values.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub(crate) mismatch: Mutex<Option<(Fingerprint, Fingerprint)>>,
}

#[derive(Debug)]
struct PinnedVerifier {
    expected: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
    observed: Arc<Observed>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity.as_ref());
        if presented == self.expected {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut slot) = self.observed.mismatch.lock() {
            *slot = Some((self.expected, presented));
        }
        Err(rustls::Error::General(format!(
            "certificate fingerprint mismatch: expected {}, node presented {presented}",
            self.expected
        )))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered, so a TLS 1.2 signature is never valid.
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the rustls configuration for `config`; the returned `Observed`
/// is filled by the pinned verifier when it refuses a certificate.
pub(crate) fn rustls_config(
    config: &ClientConfig,
) -> Result<(rustls::ClientConfig, Arc<Observed>), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let observed = Arc::new(Observed::default());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(format!("TLS setup: {e}")))?;
    let builder = match &config.trust {
        Trust::Fingerprint(expected) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    expected: *expected,
                    algorithms: signature_algorithms(&provider),
                    observed: observed.clone(),
                }))
        }
        Trust::CaFile(path) => builder.with_root_certificates(root_store(path)?),
    };
    let mut tls = match &config.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let certs = read_certs(&id.cert_file)?;
            let key = PrivateKeyDer::from_pem_file(&id.key_file).map_err(|e| {
                ClientError::Config(format!("client key {}: {e}", id.key_file.display()))
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ClientError::Config(format!(
                    "client certificate {}: {e}",
                    id.cert_file.display()
                ))
            })?
        }
    };
    tls.alpn_protocols = vec![weir_proto::ALPN.to_vec()];
    tls.enable_early_data = false;
    Ok((tls, observed))
}

fn signature_algorithms(provider: &CryptoProvider) -> WebPkiSupportedAlgorithms {
    provider.signature_verification_algorithms
}

/// Reads every certificate in a PEM file; at least one.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bad = |e: String| ClientError::Config(format!("certificate file {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

fn root_store(path: &Path) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| ClientError::Config(format!("CA file {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The fingerprint of the first certificate in a PEM file: how the CLI pins
/// a node's own `cert.pem`.
pub fn fingerprint_of_pem_file(path: &Path) -> Result<Fingerprint, ClientError> {
    let certs = read_certs(path)?;
    Ok(Fingerprint::of_der(certs[0].as_ref()))
}
