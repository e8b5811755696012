//! A producer's long-lived stream: frames are read and ingested in order by
//! one task, and answered in order by another, which waits for fsyncs where
//! the ack level asks for them. The next batch is therefore written while
//! this one's fsync runs, and many batches share it. At most
//! `max_pending_produces` answers wait; past that the reader stops reading
//! and QUIC flow control holds the producer back.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use weir_proto::frame::{Acks, ErrorCode, Frame};

use super::io::{fail, read_frame, write_frame};
use crate::auth::{Grant, Right};
use crate::ingest::{self, Ingested};
use crate::state::{Shared, now_ms};
use crate::topic::Partition;

enum Pending {
    Ack {
        seq: u64,
        acks: Acks,
        ingested: Ingested,
    },
    Failed {
        seq: u64,
        acks: Acks,
        code: ErrorCode,
        message: String,
    },
    Fatal {
        code: ErrorCode,
        message: String,
    },
}

pub(super) async fn run(
    first: Frame,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(shared.config.limits.max_pending_produces);
    let acker = tokio::spawn(answer(send, rx));
    let mut next = Some(first);
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => tokio::select! {
                read = read_frame(&mut recv) => match read {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Pending::Fatal { code: ErrorCode::Malformed, message: e.to_string() }).await;
                        let _ = recv.stop(super::close::PROTOCOL.into());
                        break;
                    }
                },
                // Stop taking new batches; those read are still answered.
                _ = shutdown.changed() => break,
            },
        };
        let Frame::Produce {
            seq,
            topic,
            acks,
            partition,
            batch,
        } = frame
        else {
            let message = format!(
                "a produce stream carries produce frames only, not {}",
                frame.kind().name()
            );
            let _ = tx
                .send(Pending::Fatal {
                    code: ErrorCode::Malformed,
                    message,
                })
                .await;
            break;
        };
        let pending = if !grant.allows(Right::Produce, Some(&topic)) {
            let message = format!("the token lacks the produce right on topic {topic:?}");
            Pending::Failed {
                seq,
                acks,
                code: ErrorCode::Forbidden,
                message,
            }
        } else {
            match shared.topic(&topic) {
                Err(e) => Pending::Failed {
                    seq,
                    acks,
                    code: ErrorCode::NotFound,
                    message: e.to_string(),
                },
                Ok(t) => {
                    let s = shared.clone();
                    let span = tracing::debug_span!("produce", topic = %topic, seq);
                    let result = tokio::task::spawn_blocking(move || {
                        let _entered = span.enter();
                        ingest::ingest(&s, &t, &batch, partition, now_ms())
                    })
                    .await;
                    match result {
                        Ok(Ok(ingested)) => {
                            for (p, _) in &ingested.written {
                                if !p.is_durable() {
                                    p.publish();
                                }
                            }
                            Pending::Ack {
                                seq,
                                acks,
                                ingested,
                            }
                        }
                        Ok(Err(e)) => Pending::Failed {
                            seq,
                            acks,
                            code: e.code,
                            message: e.message,
                        },
                        Err(e) => Pending::Failed {
                            seq,
                            acks,
                            code: ErrorCode::Internal,
                            message: format!("ingest failed: {e}"),
                        },
                    }
                }
            }
        };
        if tx.send(pending).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = acker.await;
}

async fn answer(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Pending>) {
    while let Some(pending) = rx.recv().await {
        let frame = match pending {
            Pending::Ack {
                seq,
                acks,
                ingested,
            } => match acks {
                Acks::Durable => {
                    let written = ingested.written.clone();
                    match tokio::task::spawn_blocking(move || settle(&written)).await {
                        Ok(Ok(())) => Some(Frame::ProduceAck {
                            seq,
                            outcomes: ingested.outcomes,
                        }),
                        Ok(Err(message)) => Some(Frame::ProduceError {
                            seq,
                            code: ErrorCode::Unavailable,
                            message,
                        }),
                        Err(e) => Some(Frame::ProduceError {
                            seq,
                            code: ErrorCode::Internal,
                            message: e.to_string(),
                        }),
                    }
                }
                Acks::Stored => {
                    settle_in_background(&ingested.written);
                    Some(Frame::ProduceAck {
                        seq,
                        outcomes: ingested.outcomes,
                    })
                }
                Acks::None => {
                    settle_in_background(&ingested.written);
                    None
                }
            },
            Pending::Failed {
                seq,
                acks,
                code,
                message,
            } => {
                tracing::debug!(seq, ?code, %message, "produce failed");
                (acks != Acks::None).then_some(Frame::ProduceError { seq, code, message })
            }
            Pending::Fatal { code, message } => {
                fail(&mut send, code, message).await;
                return;
            }
        };
        if let Some(frame) = frame
            && let Err(e) = write_frame(&mut send, &frame).await
        {
            tracing::debug!(error = %e, "producer went away");
            return;
        }
    }
    let _ = send.finish();
}

/// Fsyncs every partition a batch was written to, then lets consumers see
/// it. Blocks.
pub(super) fn settle(written: &[(Arc<Partition>, u64)]) -> Result<(), String> {
    for (partition, end) in written {
        partition.log.sync_to(*end).map_err(|e| {
            format!(
                "partition {} could not make the batch durable: {e}",
                partition.index
            )
        })?;
        partition.publish();
    }
    Ok(())
}

/// On durable topics a batch must be fsynced before consumers see it even
/// when its producer did not wait for that.
pub(super) fn settle_in_background(written: &[(Arc<Partition>, u64)]) {
    let durable: Vec<(Arc<Partition>, u64)> = written
        .iter()
        .filter(|(p, _)| p.is_durable())
        .cloned()
        .collect();
    if durable.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = settle(&durable) {
            tracing::error!(error = %e, "background fsync failed");
        }
    });
}
