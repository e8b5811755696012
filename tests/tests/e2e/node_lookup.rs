//! Looking a stored message up by id or dedup key over real QUIC: by a
//! scan on a topic without a dedup window, from the window by producer id
//! and by a plugin's dedup key, a miss, the scan limit, and the consume
//! right it needs.

use std::time::Duration;

use bytes::Bytes;
use weir_client::{
    Attach, Client, ClientError, ErrorCode, Message, Outcome, Placement, ProducerConfig, TopicSpec,
};
use weir_tests::{TestNode, connect, pinned, plugin_bytes, topic as spec};

async fn stored(client: &Client, topic: &str, message: Message) -> Placement {
    let producer = client
        .producer(topic, ProducerConfig::default())
        .expect("producer");
    match producer.send(message).await.expect("answer") {
        Outcome::Stored(places) => places[0].clone(),
        other => panic!("expected stored, got {other:?}"),
    }
}

fn not_found(result: Result<weir_client::ConsumedMessage, ClientError>) -> String {
    let err = result.expect_err("lookup should miss");
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    err.to_string()
}

#[tokio::test]
async fn finds_by_producer_id_by_scanning_a_topic_without_a_window() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(spec("plain", 3)).await.expect("create");
    let producer = client
        .producer("plain", ProducerConfig::default())
        .expect("producer");
    let handles: Vec<_> = (0..300)
        .map(|i| producer.send(Message::new(format!("payload-{i}")).with_id(format!("m-{i}"))))
        .collect();
    producer.flush().await;
    let mut places = Vec::new();
    for h in handles {
        match h.await.expect("answer") {
            Outcome::Stored(p) => places.push(p[0].clone()),
            other => panic!("{other:?}"),
        }
    }

    let m = client.get_message("plain", "m-137").await.expect("found");
    assert_eq!(&m.payload[..], b"payload-137");
    assert_eq!(m.id.as_deref(), Some(&b"m-137"[..]));
    assert_eq!(
        (m.partition, m.offset),
        (places[137].partition, places[137].offset)
    );
    assert_eq!(&*m.topic, "plain");

    // Without a window an id may be stored twice: the newest one answers.
    stored(
        &client,
        "plain",
        Message::new("first").with_id("twice").with_key("k"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = stored(
        &client,
        "plain",
        Message::new("second").with_id("twice").with_key("k"),
    )
    .await;
    let m = client
        .get_message("plain", Bytes::from_static(b"twice"))
        .await
        .expect("found");
    assert_eq!(&m.payload[..], b"second");
    assert_eq!((m.partition, m.offset), (second.partition, second.offset));

    let message = not_found(client.get_message("plain", "m-300").await);
    assert!(
        message.contains("no message with id \"m-300\" in topic \"plain\" (searched 3 partitions)"),
        "{message}"
    );
    let err = client
        .get_message("missing", "m-1")
        .await
        .expect_err("no topic");
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = client
        .get_message("plain", Bytes::new())
        .await
        .expect_err("empty id");
    assert!(matches!(err, ClientError::Invalid(_)), "{err:?}");
    client.close().await;
}

#[tokio::test]
async fn finds_by_id_and_by_plugin_dedup_key_within_the_window() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    let topic = TopicSpec {
        dedup_window_ms: 120_000,
        ..spec("orders", 2)
    };
    client.create_topic(topic).await.expect("create");
    client
        .put_plugin(
            "dedup-by-field",
            Bytes::from(plugin_bytes("dedup-by-field")),
        )
        .await
        .expect("upload");
    client
        .attach(Attach {
            config: r#"{"field": "/order_id"}"#.into(),
            ..Attach::new("orders", "dedup-by-field")
        })
        .await
        .expect("attach");

    let order = stored(
        &client,
        "orders",
        Message::new(r#"{"order_id": "o-42", "n": 1}"#).with_id("msg-1"),
    )
    .await;
    let plain = stored(&client, "orders", Message::new("not json").with_id("msg-2")).await;
    for i in 0..50 {
        stored(
            &client,
            "orders",
            Message::new(format!(r#"{{"order_id": "o-{i}x"}}"#)),
        )
        .await;
    }

    // The plugin's key is in the window.
    let m = client
        .get_message("orders", "o-42")
        .await
        .expect("by dedup key");
    assert_eq!((m.partition, m.offset), (order.partition, order.offset));
    assert_eq!(&m.payload[..], br#"{"order_id": "o-42", "n": 1}"#);
    // The window holds the plugin's key, so the producer id is found by the scan.
    let m = client.get_message("orders", "msg-1").await.expect("by id");
    assert_eq!((m.partition, m.offset), (order.partition, order.offset));
    // A message the plugin gave no key is in the window under its id.
    let m = client
        .get_message("orders", "msg-2")
        .await
        .expect("by id in window");
    assert_eq!(
        (m.partition, m.offset, &m.payload[..]),
        (plain.partition, plain.offset, &b"not json"[..])
    );

    let message = not_found(client.get_message("orders", "o-43").await);
    assert!(message.contains("(searched 2 partitions)"), "{message}");
    client.close().await;
}

#[tokio::test]
async fn a_scan_stops_at_its_byte_limit() {
    let node = TestNode::start(|c| c.limits.lookup_scan_bytes_max = 1).await;
    let client = connect(&node).await;
    client.create_topic(spec("big", 2)).await.expect("create");
    for i in 0..20 {
        stored(
            &client,
            "big",
            Message::new(format!("m{i}")).with_key(format!("key-{i}")),
        )
        .await;
    }
    let info = client.describe_topic("big").await.expect("describe");
    assert!(
        info.partitions.iter().all(|p| p.end_offset > 0),
        "both partitions hold messages: {info:?}"
    );
    let message = not_found(client.get_message("big", "absent").await);
    assert!(message.contains("scan limit"), "{message}");
    client.close().await;
}

#[tokio::test]
async fn a_token_without_consume_is_forbidden() {
    let admin = "admin-token-0123456789".to_string();
    let producer_only = "produce-token-0123456789".to_string();
    let node = TestNode::start(|c| {
        c.tokens = vec![
            weir_tests::token(&admin, &["*"], &["*"], &["*"]),
            weir_tests::token(&producer_only, &["*"], &[], &[]),
        ];
    })
    .await;
    let root = Client::connect(pinned(&node).with_token(admin))
        .await
        .expect("admin connects");
    root.create_topic(spec("secret", 1)).await.expect("create");
    stored(&root, "secret", Message::new("x").with_id("s-1")).await;
    root.get_message("secret", "s-1")
        .await
        .expect("admin may consume");

    let limited = Client::connect(pinned(&node).with_token(producer_only))
        .await
        .expect("connects");
    let err = limited
        .get_message("secret", "s-1")
        .await
        .expect_err("no consume right");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    limited.close().await;
    root.close().await;
}
