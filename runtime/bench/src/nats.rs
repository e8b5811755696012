//! NATS JetStream on the same workload, for `compare`: a nats-server from
//! the system (Debian's package, installed with apt-get when it is missing
//! and that is possible) on a free loopback port with JetStream's file
//! storage in the bench's directory, one replica; async publishes with a
//! window of outstanding acks; an ordered consumer reading the stream
//! back. The server is a child process that is killed when this is
//! dropped, so no run leaves one behind.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream::StorageType};
use futures_util::StreamExt;

use crate::BenchError;
use crate::payload::Payloads;
use crate::progress::{Goal, Progress};
use crate::report::{CpuClock, Measurement, Recorder};

/// How long the server may take to accept connections.
const START_WAIT: Duration = Duration::from_secs(15);
/// How long a consumer waits for the next message.
const STALL: Duration = Duration::from_secs(30);

/// nats-server on PATH, if there is one.
pub(crate) fn find_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// nats-server, installed with `apt-get install -y nats-server` when it is
/// missing; the error says why there is none.
pub(crate) async fn ensure_server() -> Result<PathBuf, String> {
    if let Some(p) = find_server() {
        return Ok(p);
    }
    let apt = |args: &'static [&'static str]| async move {
        tokio::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .await
    };
    let mut install = apt(&["install", "-y", "-q", "nats-server"]).await;
    if install.as_ref().is_ok_and(|o| !o.status.success()) {
        // The package lists may be missing or stale on a fresh machine.
        let _ = apt(&["update", "-q"]).await;
        install = apt(&["install", "-y", "-q", "nats-server"]).await;
    }
    match install {
        Err(e) => Err(format!(
            "nats-server is not on PATH and apt-get could not run ({e})"
        )),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "nats-server is not on PATH and `apt-get install -y nats-server` failed: {}",
                last.trim()
            ))
        }
        Ok(_) => find_server()
            .ok_or_else(|| "apt-get installed nats-server, but it is not on PATH".to_string()),
    }
}

/// A nats-server with JetStream, running until dropped.
#[derive(Debug)]
pub(crate) struct NatsServer {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
    pub(crate) version: String,
    next_stream: u32,
}

impl NatsServer {
    /// Starts `binary` with its JetStream store in a new directory under
    /// `dir`, on a free loopback port.
    pub(crate) async fn start(binary: &Path, dir: &Path) -> Result<NatsServer, BenchError> {
        let store = dir.join("nats");
        std::fs::create_dir_all(&store).map_err(BenchError::io(&store))?;
        let version = std::process::Command::new(binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let port = free_port()?;
        let log = dir.join("nats-server.log");
        let log_file = std::fs::File::create(&log).map_err(BenchError::io(&log))?;
        let log_err = log_file.try_clone().map_err(BenchError::io(&log))?;
        let child = tokio::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .args(["-n", "weir-bench"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Nats(format!("cannot start {}: {e}", binary.display())))?;
        let mut server = NatsServer {
            child,
            url: format!("127.0.0.1:{port}"),
            log,
            version,
            next_stream: 0,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), BenchError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Nats(format!(
                    "nats-server exited ({status}): {}",
                    self.log_tail()
                )));
            }
            // The server listens only once JetStream is set up. (Its
            // account info is no readiness probe: async-nats cannot parse
            // what nats-server 2.9 answers there.)
            let last_error = match async_nats::connect(&self.url).await {
                Ok(client) => match client.flush().await {
                    Ok(()) => return Ok(()),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if start.elapsed() > START_WAIT {
                return Err(BenchError::Nats(format!(
                    "nats-server at {} not ready within {START_WAIT:?} ({last_error}); its log ends: {}",
                    self.url,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }

    /// CPU seconds the server has used so far.
    fn cpu(&self) -> Option<Duration> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are the 14th and 15th fields.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (ticks > 0).then(|| Duration::from_secs_f64((utime + stime) as f64 / ticks as f64))
    }

    async fn jetstream(&self) -> Result<jetstream::Context, BenchError> {
        let client = async_nats::connect(&self.url)
            .await
            .map_err(|e| BenchError::Nats(format!("cannot connect to {}: {e}", self.url)))?;
        Ok(jetstream::new(client))
    }

    /// Creates a new file-stored, single-replica stream and returns its
    /// name and subject.
    pub(crate) async fn create_stream(&mut self) -> Result<(String, String), BenchError> {
        self.next_stream += 1;
        let name = format!("BENCH_{}", self.next_stream);
        let subject = format!("bench.{}", self.next_stream);
        let js = self.jetstream().await?;
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| BenchError::Nats(format!("cannot create stream {name}: {e}")))?;
        Ok((name, subject))
    }

    /// Deletes a stream, freeing its disk space.
    pub(crate) async fn delete_stream(&self, name: &str) -> Result<(), BenchError> {
        let js = self.jetstream().await?;
        js.delete_stream(name)
            .await
            .map_err(|e| BenchError::Nats(format!("cannot delete stream {name}: {e}")))?;
        Ok(())
    }

    /// Publishes to `subject` with at most `window` acks outstanding;
    /// latency is from publish to ack.
    pub(crate) async fn publish(
        &self,
        subject: &str,
        goal: Goal,
        size: usize,
        window: usize,
        name: &str,
    ) -> Result<Measurement, BenchError> {
        let js = self.jetstream().await?;
        let payloads = Payloads::new(size);
        let done = Arc::new(AtomicU64::new(0));
        let progress = Progress::start(name, done.clone(), goal);
        let server_cpu = self.cpu();
        let cpu = CpuClock::start();
        let start = Instant::now();
        let mut pending = VecDeque::with_capacity(window);
        let mut latency = Recorder::new();
        let mut seq = 0u64;
        let ack = |r: Result<_, async_nats::jetstream::context::PublishError>| {
            r.map_err(|e| BenchError::Nats(format!("publish not acknowledged: {e}")))
        };
        loop {
            if goal.messages.is_some_and(|m| seq >= m)
                || (seq.is_multiple_of(64) && goal.duration.is_some_and(|d| start.elapsed() >= d))
            {
                break;
            }
            if pending.len() >= window.max(1)
                && let Some((sent, fut)) = pending.pop_front()
            {
                let sent: Instant = sent;
                let fut: jetstream::context::PublishAckFuture = fut;
                ack(fut.await)?;
                latency.record(sent.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            let sent = Instant::now();
            let fut = js
                .publish(subject.to_owned(), payloads.make(seq, 0))
                .await
                .map_err(|e| BenchError::Nats(format!("publish failed: {e}")))?;
            pending.push_back((sent, fut));
            seq += 1;
        }
        while let Some((sent, fut)) = pending.pop_front() {
            ack(fut.await)?;
            latency.record(sent.elapsed());
            done.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = start.elapsed();
        progress.finish();
        let mut m = Measurement::new(name, seq, size as u64, seq * size as u64, elapsed);
        m.latency = latency.latency("NATS publish: publish to ack");
        m.cpu = cpu.cores();
        m.server_cpu = self.server_cores(server_cpu, elapsed);
        Ok(m)
    }

    /// Reads `expected` messages of `stream` with an ordered consumer.
    pub(crate) async fn consume(
        &self,
        stream: &str,
        expected: u64,
        name: &str,
    ) -> Result<Measurement, BenchError> {
        let js = self.jetstream().await?;
        let done = Arc::new(AtomicU64::new(0));
        let progress = Progress::start(
            name,
            done.clone(),
            Goal {
                messages: Some(expected),
                duration: None,
            },
        );
        let server_cpu = self.cpu();
        let cpu = CpuClock::start();
        let start = Instant::now();
        let stream_handle = js
            .get_stream(stream)
            .await
            .map_err(|e| BenchError::Nats(format!("cannot find stream {stream}: {e}")))?;
        let consumer = stream_handle
            .create_consumer(OrderedConfig::default())
            .await
            .map_err(|e| BenchError::Nats(format!("cannot create an ordered consumer: {e}")))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| BenchError::Nats(format!("cannot read the ordered consumer: {e}")))?;
        let mut count = 0u64;
        let mut bytes = 0u64;
        while count < expected {
            match tokio::time::timeout(STALL, messages.next()).await {
                Ok(Some(Ok(m))) => {
                    count += 1;
                    bytes += m.payload.len() as u64;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Err(e))) => {
                    return Err(BenchError::Nats(format!(
                        "ordered consumer failed after {count} messages: {e}"
                    )));
                }
                Ok(None) => {
                    return Err(BenchError::Nats(format!(
                        "ordered consumer ended after {count} of {expected} messages"
                    )));
                }
                Err(_) => {
                    return Err(BenchError::Nats(format!(
                        "no message for {STALL:?} after {count} of {expected}"
                    )));
                }
            }
        }
        let elapsed = start.elapsed();
        progress.finish();
        let size = bytes.checked_div(count).unwrap_or(0);
        let mut m = Measurement::new(name, count, size, bytes, elapsed);
        m.cpu = cpu.cores();
        m.server_cpu = self.server_cores(server_cpu, elapsed);
        Ok(m)
    }

    fn server_cores(&self, before: Option<Duration>, wall: Duration) -> Option<f64> {
        let used = self.cpu()?.checked_sub(before?)?;
        Some(used.as_secs_f64() / wall.as_secs_f64().max(1e-9))
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A loopback TCP port that was free a moment ago.
fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| BenchError::Nats(format!("no free loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Nats(format!("no free loopback port: {e}")))
}
