//! One connection: the hello, then a task per stream and one for
//! datagrams, until the peer leaves or the node shuts down.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use weir_proto::frame::{Acks, ErrorCode, Frame, PROTOCOL_VERSION};

use super::io::{fail, read_frame, write_frame};
use super::{admin, close, group, produce, subscribe};
use crate::auth::{self, Grant, Right};
use crate::state::{Shared, now_ms};

/// How long a client has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let span = tracing::info_span!("connection", %remote);
    async move {
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "handshake failed");
                return;
            }
        };
        let Some(grant) = hello(&conn, &shared).await else {
            return;
        };
        tracing::debug!("connection ready");
        serve(conn, shared, Arc::new(grant), shutdown).await;
    }
    .instrument(span)
    .await;
}

async fn hello(conn: &quinn::Connection, shared: &Shared) -> Option<Grant> {
    let (mut send, mut recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "closed before hello");
            return None;
        }
        Err(_) => {
            conn.close(close::PROTOCOL.into(), b"no hello within 10 s");
            return None;
        }
    };
    let frame = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut recv)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => {
            conn.close(close::PROTOCOL.into(), b"stream ended before hello");
            return None;
        }
        Ok(Err(e)) => {
            refuse(
                conn,
                &mut send,
                ErrorCode::Malformed,
                close::PROTOCOL,
                format!("bad hello: {e}"),
            )
            .await;
            return None;
        }
        Err(_) => {
            conn.close(close::PROTOCOL.into(), b"no hello within 10 s");
            return None;
        }
    };
    let Frame::Hello {
        version,
        token,
        client,
    } = frame
    else {
        let message = format!("the first frame must be hello, not {}", frame.kind().name());
        refuse(
            conn,
            &mut send,
            ErrorCode::Malformed,
            close::PROTOCOL,
            message,
        )
        .await;
        return None;
    };
    if version != PROTOCOL_VERSION {
        let message =
            format!("this node speaks protocol version {PROTOCOL_VERSION}, the client {version}");
        refuse(
            conn,
            &mut send,
            ErrorCode::VersionMismatch,
            close::VERSION,
            message,
        )
        .await;
        return None;
    }
    let Some(grant) = auth::authenticate(&shared.config.tokens, token.as_deref()) else {
        let message = if token.is_some() {
            "the token is not valid"
        } else {
            "this node requires a token"
        };
        tracing::info!(%client, "refused: {message}");
        refuse(
            conn,
            &mut send,
            ErrorCode::Unauthenticated,
            close::UNAUTHENTICATED,
            message.to_string(),
        )
        .await;
        return None;
    };
    let server = format!("weir {}", env!("CARGO_PKG_VERSION"));
    if write_frame(
        &mut send,
        &Frame::HelloOk {
            version: PROTOCOL_VERSION,
            server,
        },
    )
    .await
    .is_err()
    {
        return None;
    }
    let _ = send.finish();
    tracing::debug!(%client, "hello accepted");
    Some(grant)
}

/// Answers a refused hello with an error frame, gives the client a moment
/// to read it (closing at once would discard it), then closes.
async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    close_code: u32,
    message: String,
) {
    fail(send, code, &message).await;
    let _ = tokio::time::timeout(REFUSAL_LINGER, send.stopped()).await;
    conn.close(close_code.into(), message.as_bytes());
}

/// How long a refused client gets to read why.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

async fn serve(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut streams = JoinSet::new();
    streams.spawn(datagrams(
        conn.clone(),
        shared.clone(),
        grant.clone(),
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let span = tracing::debug_span!("stream", id = %send.id());
                    streams.spawn(stream(send, recv, shared.clone(), grant.clone(), shutdown.clone()).instrument(span));
                }
                Err(e) => {
                    tracing::debug!(reason = %e, "connection closed");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // In-flight requests finish; the stream tasks watch for shutdown too.
    while streams.join_next().await.is_some() {}
    if *shutdown.borrow() {
        conn.close(close::SHUTTING_DOWN.into(), b"node shutting down");
    } else {
        conn.close(close::NORMAL.into(), b"");
    }
}

async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
    shutdown: watch::Receiver<bool>,
) {
    let first = match read_frame(&mut recv).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            fail(&mut send, ErrorCode::Malformed, e.to_string()).await;
            let _ = recv.stop(close::PROTOCOL.into());
            return;
        }
    };
    match first {
        Frame::Produce { .. } => produce::run(first, send, recv, shared, grant, shutdown).await,
        Frame::Subscribe { .. } | Frame::SubscribeAt { .. } => {
            subscribe::run(first, send, recv, shared, grant, shutdown).await
        }
        Frame::JoinGroup { .. } => group::run(first, send, recv, shared, grant, shutdown).await,
        Frame::Hello { .. } => {
            fail(
                &mut send,
                ErrorCode::Malformed,
                "hello is only valid once, on the first stream",
            )
            .await
        }
        other => admin::handle(other, send, shared, grant).await,
    }
}

/// Fire-and-forget produces carried in datagrams. Anything else, or
/// anything that does not decode, is ignored: a datagram has no one to
/// answer to.
async fn datagrams(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let datagram: Bytes = tokio::select! {
            d = conn.read_datagram() => match d {
                Ok(d) => d,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let frame = match Frame::decode_from(&datagram) {
            Ok(Some((frame, used))) if used == datagram.len() => frame,
            other => {
                tracing::debug!(
                    len = datagram.len(),
                    ?other,
                    "ignored a datagram that is not one whole frame"
                );
                continue;
            }
        };
        let Frame::Produce {
            topic,
            acks: Acks::None,
            partition,
            batch,
            ..
        } = frame
        else {
            tracing::debug!(
                kind = frame.kind().name(),
                "ignored a datagram that is not a produce with acks none"
            );
            continue;
        };
        if !grant.allows(Right::Produce, Some(&topic)) {
            tracing::debug!(%topic, "ignored a datagram produce without the right");
            continue;
        }
        let Ok(t) = shared.topic(&topic) else {
            tracing::debug!(%topic, "ignored a datagram produce to a missing topic");
            continue;
        };
        let shared = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let result = crate::ingest::ingest(&shared, &t, &batch, partition, now_ms());
            if let Ok(ingested) = &result {
                produce::settle_in_background(&ingested.written);
            }
            result
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::debug!(%topic, error = %e.message, "datagram produce failed");
        }
    }
}
