//! Bad input gets a clear error and the node keeps serving: garbage bytes,
//! oversized lengths, a wrong ALPN, wrong versions, missing or wrong tokens.

use weir_proto::frame::{ErrorCode, FRAME_PREFIX_LEN, Frame, FrameType, PROTOCOL_VERSION};
use weir_tests::{TestNode, raw_connect, raw_hello, raw_session, request};

async fn still_serving(node: &TestNode) {
    let conn = raw_session(node).await;
    let answer = request(&conn, &Frame::ListTopics.encode().expect("encode").to_vec())
        .await
        .expect("answer");
    assert!(matches!(answer, Frame::TopicList(_)), "{answer:?}");
}

fn error_of(frame: Frame) -> (ErrorCode, String) {
    match frame {
        Frame::Error { code, message } => (code, message),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_and_oversized_frames_get_named_errors_and_the_node_lives() {
    let node = TestNode::start(|_| {}).await;
    let conn = raw_session(&node).await;

    let (code, message) = error_of(
        request(&conn, b"\x05\0\0\0\xeeGARBAGE")
            .await
            .expect("answer"),
    );
    assert_eq!(code, ErrorCode::Malformed);
    assert!(message.contains("unknown frame type 0xee"), "{message}");

    let mut huge = Vec::from(u32::MAX.to_le_bytes());
    huge.push(FrameType::Produce as u8);
    let (code, message) = error_of(request(&conn, &huge).await.expect("answer"));
    assert_eq!(code, ErrorCode::Malformed);
    assert!(
        message.contains("produce frame of 4294967295 bytes exceeds"),
        "{message}"
    );

    // A body that lies about its strings.
    let mut lying = vec![0u8; FRAME_PREFIX_LEN];
    lying.extend_from_slice(&500u16.to_le_bytes());
    lying.extend_from_slice(b"short");
    let len = (lying.len() - FRAME_PREFIX_LEN) as u32;
    lying[..4].copy_from_slice(&len.to_le_bytes());
    lying[4] = FrameType::DeleteTopic as u8;
    let (code, message) = error_of(request(&conn, &lying).await.expect("answer"));
    assert_eq!(code, ErrorCode::Malformed);
    assert!(
        message.contains("topic name is 500 bytes, limit 249"),
        "{message}"
    );

    // A produce whose batch is not a batch.
    let produce = Frame::Produce {
        seq: 1,
        topic: "nope".into(),
        acks: weir_proto::frame::Acks::Stored,
        partition: None,
        batch: bytes::Bytes::from_static(b"not a batch"),
    };
    let answer = request(&conn, &produce.encode().expect("encode").to_vec())
        .await
        .expect("answer");
    assert!(
        matches!(
            answer,
            Frame::ProduceError {
                seq: 1,
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{answer:?}"
    );

    // A second hello is refused on its stream, not by closing the connection.
    let (code, _) = error_of(
        raw_hello(&conn, PROTOCOL_VERSION, None)
            .await
            .expect("answer"),
    );
    assert_eq!(code, ErrorCode::Malformed);
    still_serving(&node).await;
}

#[tokio::test]
async fn a_wrong_alpn_or_version_is_refused_at_the_door() {
    let node = TestNode::start(|_| {}).await;
    let err = raw_connect(&node, b"http/1.1")
        .await
        .expect_err("wrong ALPN");
    assert!(
        err.to_lowercase().contains("protocol") || err.contains("120"),
        "{err}"
    );

    let conn = raw_connect(&node, weir_proto::ALPN).await.expect("connect");
    let (code, message) = error_of(raw_hello(&conn, 9, None).await.expect("answer"));
    assert_eq!(code, ErrorCode::VersionMismatch);
    assert!(
        message.contains("version 1") && message.contains('9'),
        "{message}"
    );

    let conn = raw_connect(&node, weir_proto::ALPN).await.expect("connect");
    let answer = request(&conn, &Frame::ListTopics.encode().expect("encode").to_vec())
        .await
        .expect("answer");
    let (code, message) = error_of(answer);
    assert_eq!(code, ErrorCode::Malformed);
    assert!(message.contains("first frame must be hello"), "{message}");
    still_serving(&node).await;
}

#[tokio::test]
async fn tokens_are_required_and_rights_are_enforced() {
    let node = TestNode::start(|c| {
        c.tokens = vec![
            weir_tests::token("producer-token-0123", &["orders.*"], &[], &[]),
            weir_tests::token("admin-token-0123456", &[], &[], &["*"]),
        ]
    })
    .await;
    for token in [None, Some("guessed-token-01234")] {
        let conn = raw_connect(&node, weir_proto::ALPN).await.expect("connect");
        let (code, _) = error_of(
            raw_hello(&conn, PROTOCOL_VERSION, token)
                .await
                .expect("answer"),
        );
        assert_eq!(code, ErrorCode::Unauthenticated);
        let closed = conn.closed().await;
        assert!(closed.to_string().contains("2"), "{closed}");
    }
    let conn = raw_connect(&node, weir_proto::ALPN).await.expect("connect");
    let hello = raw_hello(&conn, PROTOCOL_VERSION, Some("producer-token-0123"))
        .await
        .expect("answer");
    assert!(matches!(hello, Frame::HelloOk { .. }), "{hello:?}");
    let create = Frame::CreateTopic(weir_proto::frame::TopicSpec {
        name: "orders.eu".into(),
        partitions: 1,
        retention_ms: None,
        retention_bytes: None,
        flush: weir_proto::frame::FlushMode::None,
        dedup_window_ms: 0,
    });
    let (code, message) = error_of(
        request(&conn, &create.encode().expect("encode").to_vec())
            .await
            .expect("answer"),
    );
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(
        message.contains("admin right on topic \"orders.eu\""),
        "{message}"
    );

    let admin = raw_connect(&node, weir_proto::ALPN).await.expect("connect");
    assert!(matches!(
        raw_hello(&admin, PROTOCOL_VERSION, Some("admin-token-0123456")).await,
        Ok(Frame::HelloOk { .. })
    ));
    assert_eq!(
        request(&admin, &create.encode().expect("encode").to_vec()).await,
        Ok(Frame::Ok)
    );
}
