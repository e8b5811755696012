//! End-to-end tests for weir: they start real nodes and talk to them over
//! real QUIC. The tests live in `tests/tests/e2e/`; this library holds what
//! they share: a node in a temporary directory, a raw protocol connection
//! for feeding a node bad input, and the compiled example plugins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use weir_node::{Node, NodeConfig};
use weir_proto::frame::{FRAME_PREFIX_LEN, Frame, FrameHeader, PROTOCOL_VERSION};

/// With `WEIR_TEST_LOG` set (a filter such as `weir_client=debug`), the
/// node's and the client's logs go to each test's captured output, which
/// the test harness prints when the test fails.
fn log_if_asked() {
    if let Ok(filter) = std::env::var("WEIR_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A node running in a temporary data directory on an ephemeral port.
pub struct TestNode {
    /// The running node (taken by [`TestNode::stop`]).
    pub node: Option<Node>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its certificate fingerprint.
    pub fingerprint: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node with default settings; `tune` may change the config.
    pub async fn start(tune: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = TestNode::start_in(&dir.path().join("data"), tune).await;
        node._dir = Some(dir);
        node
    }

    /// Starts a node on an existing data directory (for restarts).
    pub async fn start_in(data_dir: &Path, tune: impl FnOnce(&mut NodeConfig)) -> TestNode {
        log_if_asked();
        let mut config = NodeConfig {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..NodeConfig::default()
        };
        tune(&mut config);
        let node = Node::start(config).await.expect("node starts");
        TestNode {
            addr: node.local_addr(),
            fingerprint: node.fingerprint(),
            node: Some(node),
            data_dir: data_dir.to_path_buf(),
            _dir: None,
        }
    }

    /// The generated certificate's path.
    pub fn cert_path(&self) -> PathBuf {
        self.data_dir.join(weir_node::GENERATED_CERT)
    }

    /// Shuts the node down gracefully; keeps the data directory.
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}

/// A QUIC connection that trusts the node's generated certificate and
/// offers `alpn`.
pub async fn raw_connect(node: &TestNode, alpn: &[u8]) -> Result<quinn::Connection, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_file(node.cert_path()).map_err(|e| e.to_string())?;
    roots.add(cert).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint
        .connect(node.addr, "localhost")
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// Sends a hello and returns the node's answer.
pub async fn raw_hello(
    conn: &quinn::Connection,
    version: u16,
    token: Option<&str>,
) -> Result<Frame, String> {
    let hello = Frame::Hello {
        version,
        token: token.map(str::to_string),
        client: "weir-tests".into(),
    };
    request(conn, &hello.encode().map_err(|e| e.to_string())?.to_vec()).await
}

/// A connection that has said hello to an open node.
pub async fn raw_session(node: &TestNode) -> quinn::Connection {
    let conn = raw_connect(node, weir_proto::ALPN).await.expect("connect");
    let answer = raw_hello(&conn, PROTOCOL_VERSION, None)
        .await
        .expect("hello");
    assert!(matches!(answer, Frame::HelloOk { .. }), "{answer:?}");
    conn
}

/// Opens a stream, writes `bytes`, finishes, and reads one frame back.
pub async fn request(conn: &quinn::Connection, bytes: &[u8]) -> Result<Frame, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    read_frame(&mut recv).await
}

/// Reads one frame, bounding its length before reading the body.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Frame, String> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| e.to_string())?;
    let header = FrameHeader::parse(prefix).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; header.body_len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Frame::decode(header.kind, Bytes::from(body)).map_err(|e| e.to_string())
}

/// The bytes of an example plugin built by `scripts/build-plugins`. Fails
/// (never skips) when it is missing.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let dir = std::env::var("WEIR_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("plugins")
        });
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run scripts/build-plugins first to build the example plugins",
            path.display()
        )
    })
}

/// Waits until `addr`'s UDP port can be bound again (after a node on it
/// stopped), so a restarted node can listen where clients dial.
pub async fn port_free(addr: SocketAddr) {
    let start = std::time::Instant::now();
    while std::net::UdpSocket::bind(addr).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "port {addr} not released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A UDP relay between client and node that can drop every packet from
/// the node for a while: the node gets the batches and stores them, the
/// client never hears back, as when a network loses a connection after the
/// node took the data.
pub struct Relay {
    /// Where clients dial.
    pub addr: SocketAddr,
    /// While set, nothing from the node reaches the clients.
    pub cut: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind relay"),
        );
        let addr = front.local_addr().expect("relay addr");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let (front, cut) = (front.clone(), cut.clone());
            tokio::spawn(async move {
                let mut peers: std::collections::HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> =
                    std::collections::HashMap::new();
                let mut buf = vec![0u8; 65_536];
                loop {
                    let Ok((n, from)) = front.recv_from(&mut buf).await else {
                        return;
                    };
                    let back = match peers.get(&from) {
                        Some(s) => s.clone(),
                        None => {
                            let s = Arc::new(
                                tokio::net::UdpSocket::bind("127.0.0.1:0")
                                    .await
                                    .expect("bind"),
                            );
                            s.connect(upstream).await.expect("connect upstream");
                            let (s2, front, cut) = (s.clone(), front.clone(), cut.clone());
                            tokio::spawn(async move {
                                let mut buf = vec![0u8; 65_536];
                                while let Ok(n) = s2.recv(&mut buf).await {
                                    if !cut.load(std::sync::atomic::Ordering::Acquire) {
                                        let _ = front.send_to(&buf[..n], from).await;
                                    }
                                }
                            });
                            peers.insert(from, s.clone());
                            s
                        }
                    };
                    let _ = back.send(&buf[..n]).await;
                }
            })
        };
        Relay { addr, cut, task }
    }
}

impl Relay {
    /// A client of `node` that dials through this relay and counts its
    /// connection lost after a second of silence.
    pub async fn connect(&self, node: &TestNode) -> weir_client::Client {
        let config = weir_client::ClientConfig {
            server: self.addr.to_string(),
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            ..pinned(node)
        };
        weir_client::Client::connect(config)
            .await
            .expect("connect through the relay")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client configuration that pins the node's certificate fingerprint.
pub fn pinned(node: &TestNode) -> weir_client::ClientConfig {
    let fingerprint =
        weir_client::Fingerprint::parse(&node.fingerprint).expect("node fingerprint parses");
    weir_client::ClientConfig::new(
        node.addr.to_string(),
        weir_client::Trust::Fingerprint(fingerprint),
    )
}

/// A client connected to `node`, trusting it by fingerprint.
pub async fn connect(node: &TestNode) -> weir_client::Client {
    weir_client::Client::connect(pinned(node))
        .await
        .expect("client connects")
}

/// A client of `node` that gives up each dial after `connect_timeout`, for
/// tests that stop the node and watch the client dial again.
pub async fn connect_impatient(
    node: &TestNode,
    connect_timeout: std::time::Duration,
) -> weir_client::Client {
    let config = weir_client::ClientConfig {
        connect_timeout,
        ..pinned(node)
    };
    weir_client::Client::connect(config)
        .await
        .expect("client connects")
}

/// A topic spec with no retention, flush `none` and no dedup window.
pub fn topic(name: &str, partitions: u32) -> weir_client::TopicSpec {
    weir_client::TopicSpec {
        name: name.into(),
        partitions,
        retention_ms: None,
        retention_bytes: None,
        flush: weir_client::FlushMode::None,
        dedup_window_ms: 0,
    }
}

/// How long a test waits for a message it expects.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The next `n` messages of a subscription; fails the test if one does not
/// come within [`WAIT`].
pub async fn take(
    sub: &mut weir_client::Subscription,
    n: usize,
) -> Vec<weir_client::ConsumedMessage> {
    use futures_util::StreamExt;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("message within the deadline");
        out.push(next.expect("subscription open").expect("message"));
    }
    out
}

/// A group member's next message; fails the test if none comes within
/// [`WAIT`].
pub async fn next_of(member: &mut weir_client::GroupMember) -> weir_client::GroupMessage {
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, member.next())
        .await
        .expect("a message within the deadline")
        .expect("member open")
        .expect("message")
}

/// A group member's messages until none came for `quiet`.
pub async fn drain(
    member: &mut weir_client::GroupMember,
    quiet: std::time::Duration,
) -> Vec<weir_client::GroupMessage> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, member.next()).await {
        out.push(m.expect("message"));
    }
    out
}

/// A bearer token with rights on topic patterns (`*` matches any run).
pub fn token(
    secret: &str,
    produce: &[&str],
    consume: &[&str],
    admin: &[&str],
) -> weir_node::TokenConfig {
    let patterns = |p: &[&str]| p.iter().map(|s| s.to_string()).collect();
    weir_node::TokenConfig {
        token: secret.to_string(),
        produce: patterns(produce),
        consume: patterns(consume),
        admin: patterns(admin),
    }
}
