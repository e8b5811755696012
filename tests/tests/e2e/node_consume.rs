//! Consuming: from a timestamp in the middle of a partition, and push to a
//! subscriber that is already waiting when messages arrive.

use futures_util::StreamExt;
use weir_client::{FlushMode, Message, ProducerConfig, StartAt, TopicSpec};
use weir_tests::{TestNode, WAIT, connect};

#[tokio::test]
async fn consume_from_a_timestamp_starts_at_the_first_message_at_or_after_it() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    let spec = TopicSpec {
        name: "ticks".into(),
        partitions: 1,
        retention_ms: None,
        retention_bytes: None,
        flush: FlushMode::Interval { interval_ms: 5 },
        dedup_window_ms: 0,
    };
    client.create_topic(spec).await.expect("create");
    let producer = client
        .producer("ticks", ProducerConfig::default())
        .expect("producer");
    // Timestamps 1000, 1010, ... in batches of 10.
    for batch in 0..10i64 {
        let sends: Vec<_> = (0..10i64)
            .map(|i| {
                let ts = 1_000 + (batch * 10 + i) * 10;
                producer.send(Message::new(format!("t{ts}")).with_timestamp_ms(ts))
            })
            .collect();
        producer.flush().await;
        for s in sends {
            s.await.expect("answer");
        }
    }
    for (from, first_offset) in [(0, 0), (1_000, 0), (1_005, 1), (1_500, 50), (1_990, 99)] {
        let mut sub = client
            .subscribe("ticks", None, StartAt::Timestamp(from))
            .await
            .expect("subscribe");
        assert_eq!(sub.partitions(), &[(0, first_offset)], "from {from}");
        let first = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("message");
        assert_eq!(first.offset, first_offset);
        assert!(first.timestamp_ms >= from);
    }
}

#[tokio::test]
async fn a_waiting_subscriber_is_pushed_new_messages_on_every_partition() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    let spec = TopicSpec {
        name: "live".into(),
        partitions: 3,
        retention_ms: None,
        retention_bytes: None,
        flush: FlushMode::Durable,
        dedup_window_ms: 0,
    };
    client.create_topic(spec).await.expect("create");
    let mut sub = client
        .subscribe("live", None, StartAt::Latest)
        .await
        .expect("subscribe");
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 30 {
            let m = tokio::time::timeout(WAIT, sub.next())
                .await
                .expect("pushed in time")
                .expect("open")
                .expect("message");
            got.push((
                m.partition,
                String::from_utf8_lossy(&m.payload).into_owned(),
            ));
        }
        got
    });
    let producer = client
        .producer("live", ProducerConfig::default())
        .expect("producer");
    for i in 0..30 {
        // One at a time: each must be pushed, not found by a later poll.
        producer
            .send(Message::new(format!("m{i}")).with_key(format!("k{i}")))
            .await
            .expect("answer");
    }
    let got = consumer.await.expect("consumer");
    let partitions: std::collections::HashSet<u32> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 3, "messages came from every partition");
    let mut payloads: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
    payloads.sort_by_key(|p| p[1..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(
        payloads,
        (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_offset_for_a_whole_topic_is_clamped_per_partition_but_refused_for_one() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    let spec = TopicSpec {
        name: "uneven".into(),
        partitions: 2,
        retention_ms: None,
        retention_bytes: None,
        flush: FlushMode::None,
        dedup_window_ms: 0,
    };
    client.create_topic(spec).await.expect("create");
    let producer = client
        .producer(
            "uneven",
            ProducerConfig {
                partition: Some(0),
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
    for i in 0..10 {
        producer
            .send(Message::new(format!("m{i}")))
            .await
            .expect("answer");
    }
    let sub = client
        .subscribe("uneven", None, StartAt::Offset(5))
        .await
        .expect("subscribe");
    assert_eq!(sub.partitions(), &[(0, 5), (1, 0)]);
    let err = client
        .subscribe("uneven", Some(1), StartAt::Offset(5))
        .await
        .expect_err("past the end");
    assert!(err.to_string().contains("past the end"), "{err}");
}
