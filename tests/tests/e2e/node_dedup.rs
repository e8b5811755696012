//! Idempotent ingest over real QUIC: ids sent twice, resent after a
//! dropped connection, and again after a restart, are stored once; every
//! duplicate's ack names where the original is.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use weir_client::{
    Client, FlushMode, Message, Outcome, Placement, Producer, ProducerConfig, StartAt, TopicSpec,
};
use weir_tests::{TestNode, connect};

/// Sends `ids` (payload = id) and returns each one's outcome.
async fn send_ids(producer: &Producer, ids: std::ops::Range<u32>) -> Vec<(u32, Outcome)> {
    let handles: Vec<_> = ids
        .map(|i| {
            (
                i,
                producer.send(Message::new(format!("order-{i}")).with_id(format!("order-{i}"))),
            )
        })
        .collect();
    producer.flush().await;
    let mut out = Vec::with_capacity(handles.len());
    for (i, h) in handles {
        out.push((i, h.await.expect("answer")));
    }
    out
}

fn place(o: &Outcome) -> Placement {
    match o {
        Outcome::Stored(p) => p[0].clone(),
        Outcome::Duplicate(p) => p.clone(),
        other => panic!("expected stored or duplicate, got {other:?}"),
    }
}

async fn stored_count(client: &Client) -> u64 {
    let info = client.describe_topic("payments").await.expect("describe");
    info.partitions.iter().map(|p| p.end_offset).sum()
}

#[tokio::test]
async fn ten_thousand_ids_sent_twice_and_resent_are_stored_once() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    let spec = TopicSpec {
        name: "payments".into(),
        partitions: 4,
        retention_ms: None,
        retention_bytes: None,
        flush: FlushMode::Interval { interval_ms: 10 },
        dedup_window_ms: 120_000,
    };
    client.create_topic(spec).await.expect("create");

    let producer = client
        .producer("payments", ProducerConfig::default())
        .expect("producer");
    let first: HashMap<u32, Placement> = send_ids(&producer, 0..10_000)
        .await
        .into_iter()
        .map(|(i, o)| {
            assert!(matches!(o, Outcome::Stored(_)), "{o:?}");
            (i, place(&o))
        })
        .collect();
    for (i, o) in send_ids(&producer, 0..10_000).await {
        assert!(matches!(o, Outcome::Duplicate(_)), "id {i}: {o:?}");
        assert_eq!(place(&o), first[&i], "a duplicate's ack names the original");
    }
    assert_eq!(stored_count(&client).await, 10_000);

    // A producer whose connection drops with sends in flight; its
    // application resends everything on a new connection.
    {
        let lost = connect(&node).await;
        let p = lost
            .producer("payments", ProducerConfig::default())
            .expect("producer");
        for i in 10_000..15_000 {
            drop(p.send(Message::new(format!("order-{i}")).with_id(format!("order-{i}"))));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        lost.close().await;
    }
    let retry = connect(&node).await;
    let p = retry
        .producer("payments", ProducerConfig::default())
        .expect("producer");
    for (_, o) in send_ids(&p, 10_000..15_000).await {
        assert!(
            matches!(o, Outcome::Stored(_) | Outcome::Duplicate(_)),
            "{o:?}"
        );
    }
    assert_eq!(
        stored_count(&client).await,
        15_000,
        "each message stored exactly once"
    );

    // The window is rebuilt from the log after a restart.
    client.close().await;
    retry.close().await;
    node.stop().await;
    let node = TestNode::start_in(&node.data_dir.clone(), |_| {}).await;
    let client = connect(&node).await;
    let producer = client
        .producer("payments", ProducerConfig::default())
        .expect("producer");
    for (i, o) in send_ids(&producer, 0..10_000).await {
        assert_eq!(
            o,
            Outcome::Duplicate(first[&i].clone()),
            "id {i} after the restart"
        );
    }
    assert_eq!(stored_count(&client).await, 15_000);
}

#[tokio::test]
async fn the_client_gives_every_message_an_id_by_default() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    let spec = TopicSpec {
        name: "ids".into(),
        partitions: 1,
        retention_ms: None,
        retention_bytes: None,
        flush: FlushMode::None,
        dedup_window_ms: 60_000,
    };
    client.create_topic(spec).await.expect("create");
    let a = client
        .producer("ids", ProducerConfig::default())
        .expect("producer");
    let b = client
        .producer("ids", ProducerConfig::default())
        .expect("producer");
    for p in [&a, &b] {
        for _ in 0..3 {
            assert!(matches!(
                p.send(Message::new("same payload")).await.expect("answer"),
                Outcome::Stored(_)
            ));
        }
    }
    let mut sub = client
        .subscribe("ids", None, StartAt::Earliest)
        .await
        .expect("subscribe");
    let mut ids = std::collections::HashSet::new();
    for _ in 0..6 {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("message");
        ids.insert(m.id.expect("an id was given"));
    }
    assert_eq!(ids.len(), 6, "ids are unique across producers");
    let plain = client
        .producer(
            "ids",
            ProducerConfig {
                idempotent: false,
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
    plain.send(Message::new("no id")).await.expect("answer");
    let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("message");
    assert_eq!(m.id, None);
}
