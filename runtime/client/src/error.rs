//! What can go wrong talking to a node. This module owns the client's one
//! error type and the mapping from QUIC and protocol failures onto it; it
//! must never hide which value was wrong behind a generic message.

use weir_proto::frame::{ErrorCode, FrameError};

/// A failure of a client call, saying what went wrong and with which value.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration cannot be used (a bad fingerprint, an unreadable
    /// certificate file, an invalid name).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The node presented a certificate other than the pinned one.
    #[error("certificate fingerprint mismatch: expected {expected}, node presented {presented}")]
    FingerprintMismatch {
        /// The pinned fingerprint (lowercase hex).
        expected: String,
        /// The fingerprint of the certificate the node presented.
        presented: String,
    },
    /// The QUIC connection could not be set up or was lost.
    #[error("connection to {addr} failed: {reason}")]
    Connect {
        /// The node's address.
        addr: String,
        /// What went wrong, as QUIC or TLS reported it.
        reason: String,
    },
    /// The node refused the token (or its absence).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The node speaks another protocol version.
    #[error("node speaks protocol version {node}, this client speaks {client}")]
    VersionMismatch {
        /// The node's version.
        node: u16,
        /// This client's version.
        client: u16,
    },
    /// The node answered a request with an error.
    #[error("{}: {message}", code_name(*.code))]
    Node {
        /// The error's category.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The node sent something this client cannot accept.
    #[error("protocol violation by the node: {0}")]
    Protocol(String),
    /// The connection or stream ended (closed by either side, timed out,
    /// or the node is shutting down).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// A message or batch breaks a limit of the protocol.
    #[error("message refused before sending: {0}")]
    Invalid(String),
    /// The producer's buffer is full; wait with `Producer::ready` first.
    #[error("producer buffer is full ({buffered_bytes} bytes buffered, limit {limit_bytes})")]
    BufferFull {
        /// Bytes waiting to be sent.
        buffered_bytes: usize,
        /// The configured bound.
        limit_bytes: usize,
    },
    /// A datagram does not fit what the path allows.
    #[error("datagram of {len} bytes does not fit (the connection allows {max})")]
    DatagramTooLarge {
        /// The encoded frame's length.
        len: usize,
        /// The largest datagram the connection allows now (0: none).
        max: usize,
    },
    /// The producer or subscription was closed before the answer arrived.
    #[error("closed before an answer arrived")]
    Closed,
    /// The node did not answer a request within its time limit.
    #[error("no answer to {what} within {after:?}")]
    Timeout {
        /// What was waiting for an answer.
        what: String,
        /// The time limit.
        after: std::time::Duration,
    },
    /// A producer resent a message after transient failures until its
    /// deadline (`RetryConfig::max_elapsed`) passed without an answer; the
    /// message may or may not be stored.
    #[error(
        "gave up on the message after {attempts} attempts over {elapsed:?} (deadline {deadline:?}); last error: {last}"
    )]
    GaveUp {
        /// How many times its batch was written to the node.
        attempts: u32,
        /// How long since the message was accepted by `send`.
        elapsed: std::time::Duration,
        /// The configured deadline.
        deadline: std::time::Duration,
        /// The failure that led to the last resend.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The node's error code, when the node refused a request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Node { code, .. } => Some(*code),
            ClientError::Unauthenticated(_) => Some(ErrorCode::Unauthenticated),
            ClientError::VersionMismatch { .. } => Some(ErrorCode::VersionMismatch),
            _ => None,
        }
    }

    /// Maps an `error` frame from the node.
    pub(crate) fn from_node(code: ErrorCode, message: String) -> ClientError {
        match code {
            ErrorCode::Unauthenticated => ClientError::Unauthenticated(message),
            _ => ClientError::Node { code, message },
        }
    }

    /// Whether the failure says nothing about the request itself (the
    /// connection or stream was lost, the node did not answer in time, or
    /// it is unavailable), so that the same request may succeed if sent
    /// again. Definite answers (an error about the request, a refused
    /// token or certificate, a protocol violation) are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::ConnectionLost(_)
            | ClientError::Connect { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::Node { code, .. } => *code == ErrorCode::Unavailable,
            _ => false,
        }
    }

    pub(crate) fn protocol(err: FrameError) -> ClientError {
        ClientError::Protocol(err.to_string())
    }
}

/// The name `docs/protocol.md` gives an error code.
pub(crate) fn code_name(code: ErrorCode) -> String {
    match code {
        ErrorCode::Malformed => "malformed".into(),
        ErrorCode::VersionMismatch => "version mismatch".into(),
        ErrorCode::Unauthenticated => "unauthenticated".into(),
        ErrorCode::Forbidden => "forbidden".into(),
        ErrorCode::NotFound => "not found".into(),
        ErrorCode::AlreadyExists => "already exists".into(),
        ErrorCode::InvalidArgument => "invalid argument".into(),
        ErrorCode::TooLarge => "too large".into(),
        ErrorCode::Unavailable => "unavailable".into(),
        ErrorCode::PluginFailed => "plugin failed".into(),
        ErrorCode::Internal => "internal error".into(),
        other => format!("error {}", other.code()),
    }
}

/// Connection close codes from `docs/protocol.md`.
pub(crate) mod close {
    pub(crate) const NORMAL: u64 = 0;
    pub(crate) const PROTOCOL: u64 = 1;
    pub(crate) const UNAUTHENTICATED: u64 = 2;
    pub(crate) const VERSION: u64 = 3;
    pub(crate) const SHUTTING_DOWN: u64 = 4;
}

/// Maps a lost connection onto the error a person should see.
pub(crate) fn connection_error(err: &quinn::ConnectionError) -> ClientError {
    match err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            match c.error_code.into_inner() {
                close::UNAUTHENTICATED => ClientError::Unauthenticated(if reason.is_empty() {
                    "the node closed the connection".into()
                } else {
                    reason
                }),
                close::VERSION => {
                    ClientError::ConnectionLost(with_reason("protocol version mismatch", &reason))
                }
                close::SHUTTING_DOWN => {
                    ClientError::ConnectionLost("the node is shutting down".into())
                }
                close::PROTOCOL => ClientError::ConnectionLost(with_reason(
                    "the node saw a protocol violation",
                    &reason,
                )),
                code => ClientError::ConnectionLost(with_reason(
                    &format!("closed by the node (code {code})"),
                    &reason,
                )),
            }
        }
        other => ClientError::ConnectionLost(other.to_string()),
    }
}

fn with_reason(what: &str, reason: &str) -> String {
    if reason.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {reason}")
    }
}

impl From<quinn::ConnectionError> for ClientError {
    fn from(err: quinn::ConnectionError) -> ClientError {
        connection_error(&err)
    }
}

impl From<quinn::WriteError> for ClientError {
    fn from(err: quinn::WriteError) -> ClientError {
        match err {
            quinn::WriteError::ConnectionLost(c) => connection_error(&c),
            other => ClientError::ConnectionLost(format!("stream write failed: {other}")),
        }
    }
}

impl From<quinn::ReadError> for ClientError {
    fn from(err: quinn::ReadError) -> ClientError {
        match err {
            quinn::ReadError::ConnectionLost(c) => connection_error(&c),
            other => ClientError::ConnectionLost(format!("stream read failed: {other}")),
        }
    }
}

impl From<quinn::ClosedStream> for ClientError {
    fn from(err: quinn::ClosedStream) -> ClientError {
        ClientError::ConnectionLost(format!("stream closed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u64, reason: &'static [u8]) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u64(code).expect("small"),
            reason: bytes::Bytes::from_static(reason),
        })
    }

    #[test]
    fn close_codes_say_what_happened() {
        let e = connection_error(&closed(
            close::UNAUTHENTICATED,
            b"this node requires a token",
        ));
        assert_eq!(e.to_string(), "unauthenticated: this node requires a token");
        let e = connection_error(&closed(close::SHUTTING_DOWN, b"node shutting down"));
        assert_eq!(e.to_string(), "connection lost: the node is shutting down");
        let e = connection_error(&closed(close::PROTOCOL, b""));
        assert_eq!(
            e.to_string(),
            "connection lost: the node saw a protocol violation"
        );
        let e = connection_error(&closed(77, b"why"));
        assert_eq!(
            e.to_string(),
            "connection lost: closed by the node (code 77): why"
        );
    }

    #[test]
    fn node_errors_name_their_code() {
        let e = ClientError::from_node(ErrorCode::NotFound, "no topic \"x\"".into());
        assert_eq!(e.to_string(), "not found: no topic \"x\"");
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        let e = ClientError::from_node(ErrorCode::Unknown(99), "new".into());
        assert_eq!(e.to_string(), "error 99: new");
    }
}
