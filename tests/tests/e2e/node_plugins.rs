//! Routing plugins end to end: a real node, real QUIC, the real example
//! plugins. Routing by pattern, filtering, partitioning by key, a hot swap
//! under continuous produce, a restart, and a hostile plugin that must not
//! stall another topic.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use weir_client::{
    Attach, Client, FlushMode, Message, Outcome, ProducerConfig, StartAt, TopicSpec,
};
use weir_tests::{TestNode, connect, plugin_bytes, take, topic as spec};

/// Every payload of a topic, by reading it to its current end.
async fn all_payloads(client: &Client, topic: &str) -> Vec<String> {
    let info = client.describe_topic(topic).await.expect("describe");
    let total: u64 = info
        .partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum();
    let mut sub = client
        .subscribe(topic, None, StartAt::Earliest)
        .await
        .expect("subscribe");
    take(&mut sub, total as usize)
        .await
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

fn stored_topics(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Stored(places) => {
            let mut t: Vec<String> = places.iter().map(|p| p.topic.clone()).collect();
            t.sort();
            t
        }
        other => panic!("expected stored, got {other:?}"),
    }
}

#[tokio::test]
async fn topic_exchange_filter_and_partitioner_shape_one_stream() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    for (name, partitions) in [
        ("orders", 1),
        ("eu-orders", 1),
        ("all-orders", 1),
        ("logs", 4),
    ] {
        client
            .create_topic(spec(name, partitions))
            .await
            .expect("create");
    }
    for plugin in ["topic-exchange", "json-filter", "kafka-partitioner"] {
        let info = client
            .put_plugin(plugin, Bytes::from(plugin_bytes(plugin)))
            .await
            .expect("upload");
        assert_eq!(info.version, 1);
    }
    let bindings = r#"{"routing_key": {"header": "rk"}, "bindings": [
        {"pattern": "orders.*.eu", "topic": "eu-orders"}, {"pattern": "orders.#", "topic": "all-orders"}]}"#;
    client
        .attach(Attach {
            config: bindings.into(),
            ..Attach::new("orders", "topic-exchange")
        })
        .await
        .expect("attach");

    let producer = client
        .producer("orders", ProducerConfig::default())
        .expect("producer");
    let sends: Vec<_> = [
        ("orders.new.eu", "o1"),
        ("orders.paid.us", "o2"),
        ("orders.new.eu", "o3"),
        ("billing.x", "o4"),
    ]
    .into_iter()
    .map(|(rk, payload)| producer.send(Message::new(payload).with_header("rk", rk)))
    .collect();
    producer.flush().await;
    let mut outcomes = Vec::new();
    for s in sends {
        outcomes.push(s.await.expect("answer"));
    }
    assert_eq!(stored_topics(&outcomes[0]), ["all-orders", "eu-orders"]);
    assert_eq!(stored_topics(&outcomes[1]), ["all-orders"]);
    assert!(
        matches!(outcomes[3], Outcome::Dropped(_)),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(all_payloads(&client, "eu-orders").await, ["o1", "o3"]);
    assert_eq!(
        all_payloads(&client, "all-orders").await,
        ["o1", "o2", "o3"]
    );
    assert!(all_payloads(&client, "orders").await.is_empty());

    let filter = r#"{"keep": "all", "where": [{"field": "/level", "op": "in", "value": ["warn", "error"]}]}"#;
    client
        .attach(Attach {
            config: filter.into(),
            ..Attach::new("logs", "json-filter")
        })
        .await
        .expect("attach filter");
    client
        .attach(Attach::new("logs", "kafka-partitioner"))
        .await
        .expect("attach partitioner");
    let producer = client
        .producer("logs", ProducerConfig::default())
        .expect("producer");
    let mut sends = Vec::new();
    for i in 0..60 {
        let level = ["debug", "warn", "error"][i % 3];
        let service = format!("svc-{}", i % 5);
        let body = format!(r#"{{"level": "{level}", "i": {i}}}"#);
        sends.push((
            level,
            service.clone(),
            producer.send(Message::new(body).with_key(service)),
        ));
    }
    producer.flush().await;
    let mut partition_of: BTreeMap<String, HashSet<u32>> = BTreeMap::new();
    for (level, service, send) in sends {
        match send.await.expect("answer") {
            Outcome::Dropped(_) => assert_eq!(level, "debug"),
            Outcome::Stored(places) => {
                assert_ne!(level, "debug");
                partition_of
                    .entry(service)
                    .or_default()
                    .insert(places[0].partition);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for (service, partitions) in &partition_of {
        assert_eq!(partitions.len(), 1, "{service} landed in {partitions:?}");
        let expected = weir_proto::partition::kafka_partition(service.as_bytes(), 4);
        assert!(
            partitions.contains(&expected),
            "{service}: Kafka would pick {expected}"
        );
    }
    let kept = all_payloads(&client, "logs").await;
    assert_eq!(kept.len(), 40);
    assert!(kept.iter().all(|p| !p.contains("debug")));
}

#[tokio::test]
async fn a_hot_swap_under_continuous_produce_stores_every_acked_message_once() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(spec("src", 2)).await.expect("create");
    client
        .create_topic(spec("copied", 1))
        .await
        .expect("create");
    // Version 1 copies everything to "copied"; version 2 (a plugin that
    // passes everything and ignores the config) leaves messages in "src".
    client
        .put_plugin("router", Bytes::from(plugin_bytes("fanout")))
        .await
        .expect("v1");
    client
        .attach(Attach {
            config: r#"{"topics": ["copied"]}"#.into(),
            ..Attach::new("src", "router")
        })
        .await
        .expect("attach");

    // The producer keeps going until ten rounds after the swap, so the swap
    // lands in the middle of the stream however long it takes.
    let swapped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = {
        let client = connect(&node).await;
        let swapped = swapped.clone();
        tokio::spawn(async move {
            let producer = client
                .producer(
                    "src",
                    ProducerConfig {
                        linger: Duration::from_millis(1),
                        ..ProducerConfig::default()
                    },
                )
                .expect("producer");
            let mut outcomes = Vec::new();
            let mut rounds_after_swap = 0;
            for round in 0..5_000 {
                if swapped.load(std::sync::atomic::Ordering::Acquire) {
                    rounds_after_swap += 1;
                    if rounds_after_swap > 10 {
                        break;
                    }
                }
                let sends: Vec<_> = (0..20)
                    .map(|i| {
                        producer
                            .send(Message::new(format!("m-{round}-{i}")).with_key(format!("k{i}")))
                    })
                    .collect();
                producer.flush().await;
                for s in sends {
                    outcomes.push(s.await.expect("answer"));
                }
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let v2 = client
        .put_plugin("router", Bytes::from(plugin_bytes("test-hostile")))
        .await
        .expect("v2");
    assert_eq!(v2.version, 2);
    swapped.store(true, std::sync::atomic::Ordering::Release);
    let outcomes = producing.await.expect("producer task");
    let sent = outcomes.len();

    let mut acked: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        for t in stored_topics(o) {
            *acked.entry(t).or_default() += 1;
        }
    }
    let in_src = all_payloads(&client, "src").await;
    let in_copied = all_payloads(&client, "copied").await;
    assert_eq!(
        in_src.len() + in_copied.len(),
        sent,
        "every acked message is stored"
    );
    let unique: HashSet<&String> = in_src.iter().chain(&in_copied).collect();
    assert_eq!(unique.len(), sent, "and stored once");
    assert_eq!(acked.get("src").copied().unwrap_or(0), in_src.len());
    assert_eq!(acked.get("copied").copied().unwrap_or(0), in_copied.len());
    assert!(!in_copied.is_empty(), "version 1 routed the first messages");
    assert!(!in_src.is_empty(), "version 2 took over while producing");
    assert_eq!(
        client.describe_topic("src").await.expect("describe").chain[0].version,
        2
    );
}

#[tokio::test]
async fn a_restart_keeps_topics_messages_plugins_and_attachments() {
    let mut node = TestNode::start(|_| {}).await;
    {
        let client = connect(&node).await;
        client
            .create_topic(TopicSpec {
                flush: FlushMode::Durable,
                ..spec("in", 2)
            })
            .await
            .expect("create");
        client.create_topic(spec("out", 1)).await.expect("create");
        client
            .put_plugin("fanout", Bytes::from(plugin_bytes("fanout")))
            .await
            .expect("upload");
        client
            .attach(Attach {
                config: r#"{"topics": ["out", "in"]}"#.into(),
                ..Attach::new("in", "fanout")
            })
            .await
            .expect("attach");
        let producer = client
            .producer("in", ProducerConfig::default())
            .expect("producer");
        let sends: Vec<_> = (0..30)
            .map(|i| producer.send(Message::new(format!("before-{i}"))))
            .collect();
        producer.flush().await;
        for s in sends {
            assert_eq!(stored_topics(&s.await.expect("answer")), ["in", "out"]);
        }
        client.close().await;
    }
    node.stop().await;
    let node = TestNode::start_in(&node.data_dir.clone(), |_| {}).await;
    let client = connect(&node).await;
    let topics: Vec<String> = client
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.spec.name)
        .collect();
    assert_eq!(topics, ["in", "out"]);
    let described = client.describe_topic("in").await.expect("describe");
    assert_eq!(described.spec.flush, FlushMode::Durable);
    assert_eq!(described.chain[0].plugin, "fanout");
    assert_eq!(
        client.list_plugins().await.expect("plugins")[0].name,
        "fanout"
    );
    let producer = client
        .producer("in", ProducerConfig::default())
        .expect("producer");
    let after = producer.send(Message::new("after")).await.expect("answer");
    assert_eq!(
        stored_topics(&after),
        ["in", "out"],
        "the attachment routes after the restart"
    );
    let mut out = all_payloads(&client, "out").await;
    assert_eq!(out.len(), 31);
    out.sort();
    assert_eq!(out.last().map(String::as_str), Some("before-9"));
    assert_eq!(all_payloads(&client, "in").await.len(), 31);
}

#[tokio::test]
async fn a_hostile_plugin_on_one_topic_does_not_stall_another() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(spec("tarpit", 1))
        .await
        .expect("create");
    client
        .create_topic(spec("healthy", 1))
        .await
        .expect("create");
    client
        .put_plugin("hostile", Bytes::from(plugin_bytes("test-hostile")))
        .await
        .expect("upload");
    client
        .attach(Attach::new("tarpit", "hostile"))
        .await
        .expect("attach");

    // Every tarpit batch spins until the plugin's CPU deadline.
    let tarpit = {
        let client = connect(&node).await;
        tokio::spawn(async move {
            let producer = client
                .producer("tarpit", ProducerConfig::default())
                .expect("producer");
            let mut outcomes = Vec::new();
            for _ in 0..10 {
                outcomes.push(producer.send(Message::new("loop")).await.expect("answer"));
            }
            outcomes
        })
    };
    let healthy = client
        .producer("healthy", ProducerConfig::default())
        .expect("producer");
    for i in 0..50 {
        let outcome = healthy
            .send(Message::new(format!("h{i}")))
            .await
            .expect("answer");
        assert_eq!(stored_topics(&outcome), ["healthy"]);
    }
    assert!(
        !tarpit.is_finished(),
        "the healthy topic finished while the tarpit still spins"
    );
    for outcome in tarpit.await.expect("tarpit task") {
        match outcome {
            Outcome::Rejected(reason) => assert!(reason.contains("hostile"), "{reason}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    // The tarpit topic still works for messages its plugin passes.
    let fine = client
        .producer("tarpit", ProducerConfig::default())
        .expect("producer");
    assert_eq!(
        stored_topics(&fine.send(Message::new("fine")).await.expect("answer")),
        ["tarpit"]
    );
}
