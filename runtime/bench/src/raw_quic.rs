//! The ceiling: bytes over one QUIC stream between two quinn endpoints in
//! this process, with what weir uses on the wire (TLS 1.3 with the ring
//! provider, a verified self-signed certificate, the node's transport
//! windows on the server and quinn's defaults on the client, as
//! weir-client has them) and nothing of weir on top. Writes hand quinn
//! shared buffers and reads take quinn's chunks, so no payload byte is
//! copied by this code: what is left is the transport's own cost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::BenchError;
use crate::args::Direction;
use crate::progress::{Goal, Progress};
use crate::report::{CpuClock, Measurement};

const ALPN: &[u8] = b"weir-bench-raw";

/// One direction of raw QUIC: `size`-byte messages, `batch` per write, for
/// `duration`.
pub(crate) async fn run(
    direction: Direction,
    size: usize,
    batch: u32,
    duration: Duration,
) -> Result<Measurement, BenchError> {
    let q = |e: &dyn std::fmt::Display| BenchError::Quic(e.to_string());
    let (server_config, client_config) = configs()?;
    let server = quinn::Endpoint::server(server_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| q(&e))?;
    let server_addr = server.local_addr().map_err(|e| q(&e))?;
    let mut client =
        quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0))).map_err(|e| q(&e))?;
    client.set_default_client_config(client_config);

    let chunk = Bytes::from(
        (0..size * batch as usize)
            .map(|i| (i.wrapping_mul(31) >> 3) as u8)
            .collect::<Vec<u8>>(),
    );
    let received = Arc::new(AtomicU64::new(0));
    let name = match direction {
        Direction::Down => "raw-quic download",
        _ => "raw-quic upload",
    };
    let serve = {
        let chunk = chunk.clone();
        let received = received.clone();
        tokio::spawn(async move { serve(server, direction, chunk, received, duration).await })
    };
    let conn = client
        .connect(server_addr, "localhost")
        .map_err(|e| q(&e))?
        .await
        .map_err(|e| q(&e))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| q(&e))?;

    let progress_count = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        name,
        progress_count.clone(),
        Goal {
            messages: None,
            duration: Some(duration),
        },
    );
    let counter = {
        let received = received.clone();
        let out = progress_count.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                out.store(
                    received.load(Ordering::Relaxed) / size as u64,
                    Ordering::Relaxed,
                );
            }
        })
    };
    let cpu = CpuClock::start();
    let start = Instant::now();
    let bytes = match direction {
        Direction::Down => {
            // The request: "send to me"; the server writes for `duration`.
            send.write_all(b"down").await.map_err(|e| q(&e))?;
            send.finish().map_err(|e| q(&e))?;
            let mut total = 0u64;
            while let Some(c) = recv.read_chunk(usize::MAX, true).await.map_err(|e| q(&e))? {
                total += c.bytes.len() as u64;
                received.fetch_add(c.bytes.len() as u64, Ordering::Relaxed);
            }
            total
        }
        _ => {
            send.write_all(b"up  ").await.map_err(|e| q(&e))?;
            while start.elapsed() < duration {
                send.write_chunk(chunk.clone()).await.map_err(|e| q(&e))?;
            }
            send.finish().map_err(|e| q(&e))?;
            // The server answers with what it read once the stream ends.
            let mut answer = [0u8; 8];
            recv.read_exact(&mut answer).await.map_err(|e| q(&e))?;
            u64::from_le_bytes(answer)
        }
    };
    let elapsed = start.elapsed();
    counter.abort();
    progress.finish();
    let cpu = cpu.cores();
    conn.close(0u32.into(), b"done");
    serve.await??;
    let _ = tokio::time::timeout(Duration::from_secs(1), client.wait_idle()).await;

    let mut m = Measurement::new(
        format!("{name} ({} KiB writes)", size * batch as usize / 1024),
        bytes / size as u64,
        size as u64,
        bytes,
        elapsed,
    );
    m.cpu = cpu;
    Ok(m)
}

/// The server side: one connection, one stream, either direction.
async fn serve(
    endpoint: quinn::Endpoint,
    direction: Direction,
    chunk: Bytes,
    received: Arc<AtomicU64>,
    duration: Duration,
) -> Result<(), BenchError> {
    let q = |e: &dyn std::fmt::Display| BenchError::Quic(format!("server: {e}"));
    let incoming = endpoint
        .accept()
        .await
        .ok_or_else(|| BenchError::Quic("server: endpoint closed".into()))?;
    let conn = incoming.await.map_err(|e| q(&e))?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| q(&e))?;
    let mut request = [0u8; 4];
    recv.read_exact(&mut request).await.map_err(|e| q(&e))?;
    match (&request, direction) {
        (b"down", Direction::Down) => {
            let start = Instant::now();
            while start.elapsed() < duration {
                send.write_chunk(chunk.clone()).await.map_err(|e| q(&e))?;
            }
            send.finish().map_err(|e| q(&e))?;
            let _ = send.stopped().await;
        }
        (b"up  ", Direction::Up | Direction::Both) => {
            let mut total = 0u64;
            while let Some(c) = recv.read_chunk(usize::MAX, true).await.map_err(|e| q(&e))? {
                total += c.bytes.len() as u64;
                received.fetch_add(c.bytes.len() as u64, Ordering::Relaxed);
            }
            send.write_all(&total.to_le_bytes())
                .await
                .map_err(|e| q(&e))?;
            send.finish().map_err(|e| q(&e))?;
            let _ = send.stopped().await;
        }
        _ => {
            return Err(BenchError::Quic(format!(
                "server: unexpected request {request:?}"
            )));
        }
    }
    let _ = conn.closed().await;
    endpoint.close(0u32.into(), b"done");
    Ok(())
}

/// Server and client configs: a fresh self-signed certificate that the
/// client verifies, TLS 1.3, and the node's transport windows.
fn configs() -> Result<(quinn::ServerConfig, quinn::ClientConfig), BenchError> {
    let q = |e: &dyn std::fmt::Display| BenchError::Quic(format!("TLS setup: {e}"));
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(|e| q(&e))?;
    let cert = CertificateDer::from(generated.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| q(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(|e| q(&e))?;
    server_tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).map_err(|e| q(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let limits = weir_node::LimitsConfig::default();
    let mut transport = quinn::TransportConfig::default();
    transport
        .receive_window(limits.connection_receive_window.into())
        .stream_receive_window(limits.stream_receive_window.into())
        .send_window(u64::from(limits.connection_receive_window))
        .max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| q(&e))?;
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| q(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(|e| q(&e))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(0u32.into());
    client.transport_config(Arc::new(transport));
    Ok((server, client))
}
