//! The idempotent producer resends on its own: across a node restart at
//! the same address and across a connection the network killed, every
//! message is answered and stored exactly once; a definite refusal is not
//! resent; a message that cannot be delivered before its deadline fails
//! with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weir_client::{
    Client, ClientError, ErrorCode, FlushMode, Message, Outcome, Producer, ProducerConfig,
    RetryConfig, SendHandle, TopicSpec,
};
use weir_tests::{Relay, TestNode, connect_impatient, pinned, port_free};

const MESSAGES: usize = 5_000;

fn deduped(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions: 2,
        retention_ms: None,
        retention_bytes: None,
        flush: FlushMode::None,
        dedup_window_ms: 120_000,
    }
}

/// Small batches, so that many are in flight when the connection goes.
fn small_batches() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(1),
        max_batch_records: 50,
        ..ProducerConfig::default()
    }
}

async fn stored_count(client: &Client, topic: &str) -> u64 {
    let info = client.describe_topic(topic).await.expect("describe");
    info.partitions.iter().map(|p| p.end_offset).sum()
}

/// Sends `MESSAGES` messages (no ids of their own) at a steady pace,
/// counting them in `sent`, and returns their handles.
fn send_paced(
    producer: Producer,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<SendHandle>> {
    tokio::spawn(async move {
        let mut handles = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            producer.ready(64).await;
            handles.push(producer.send(Message::new(format!("m{i}"))));
            sent.store(i + 1, Ordering::Release);
            if i % 25 == 24 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        handles
    })
}

async fn wait_for(sent: &AtomicUsize, n: usize) {
    let start = Instant::now();
    while sent.load(Ordering::Acquire) < n {
        assert!(start.elapsed() < Duration::from_secs(60), "sending stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every handle resolves to stored or duplicate, within a bound; returns
/// how many were duplicates.
async fn all_stored(handles: Vec<SendHandle>) -> usize {
    let mut duplicates = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .unwrap_or_else(|_| panic!("message {i} answered in time"));
        match outcome {
            Ok(Outcome::Stored(_)) => {}
            Ok(Outcome::Duplicate(_)) => duplicates += 1,
            other => panic!("message {i}: {other:?}"),
        }
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_resends_across_a_node_restart_and_each_message_is_stored_once() {
    let mut node = TestNode::start(|_| {}).await;
    let addr = node.addr;
    let client = connect_impatient(&node, Duration::from_secs(1)).await;
    client
        .create_topic(deduped("orders"))
        .await
        .expect("create");
    let producer = client
        .producer("orders", small_batches())
        .expect("producer");

    let sent = Arc::new(AtomicUsize::new(0));
    let sending = send_paced(producer.clone(), sent.clone());
    wait_for(&sent, MESSAGES / 3).await;
    node.stop().await;
    port_free(addr).await;
    // Sending goes on while the node is down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = TestNode::start_in(&node.data_dir.clone(), |c| c.listen = addr).await;
    assert_eq!(restarted.addr, addr);

    let handles = sending.await.expect("sender");
    producer.flush().await;
    let duplicates = all_stored(handles).await;
    eprintln!("{duplicates} resent messages were already stored");
    // The admin client survived the restart too.
    assert_eq!(
        stored_count(&client, "orders").await,
        MESSAGES as u64,
        "each message stored exactly once"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_in_the_network_is_redialled_and_each_message_is_stored_once() {
    let node = TestNode::start(|_| {}).await;
    let relay = Relay::start(node.addr).await;
    let client = relay.connect(&node).await;
    client
        .create_topic(deduped("events"))
        .await
        .expect("create");
    let producer = client
        .producer(
            "events",
            ProducerConfig {
                request_timeout: Duration::from_millis(500),
                ..small_batches()
            },
        )
        .expect("producer");

    let sent = Arc::new(AtomicUsize::new(0));
    let sending = send_paced(producer.clone(), sent.clone());
    wait_for(&sent, MESSAGES / 3).await;
    // Batches in flight are stored but lose their answers; the request
    // timeout and then the idle timeout take the stream and the connection
    // down, and the redial waits until the node is heard again.
    relay.cut.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    relay.cut.store(false, Ordering::Release);

    let handles = sending.await.expect("sender");
    producer.flush().await;
    let duplicates = all_stored(handles).await;
    eprintln!("{duplicates} resent messages were already stored");
    assert!(
        duplicates > 0,
        "batches stored without an answer were resent with their ids"
    );
    assert_eq!(
        stored_count(&client, "events").await,
        MESSAGES as u64,
        "each message stored exactly once"
    );
    client.close().await;
}

#[tokio::test]
async fn a_definite_refusal_is_not_resent() {
    let node = TestNode::start(|_| {}).await;
    let client = Client::connect(pinned(&node)).await.expect("connect");
    let producer = client
        .producer("no-such-topic", ProducerConfig::default())
        .expect("producer");
    let start = Instant::now();
    let handles: Vec<_> = (0..10)
        .map(|i| producer.send(Message::new(format!("m{i}"))))
        .collect();
    for h in handles {
        let err = h.await.expect_err("no such topic");
        assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
        assert!(!err.is_transient());
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "answered at once, not after resends: {:?}",
        start.elapsed()
    );
    client.close().await;
}

#[tokio::test]
async fn a_message_that_cannot_be_delivered_in_time_fails_naming_why() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect_impatient(&node, Duration::from_millis(300)).await;
    client.create_topic(deduped("gone")).await.expect("create");
    let producer = client
        .producer(
            "gone",
            ProducerConfig {
                retry: RetryConfig {
                    max_elapsed: Duration::from_secs(2),
                    ..RetryConfig::default()
                },
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
    assert!(matches!(
        producer.send(Message::new("before")).await,
        Ok(Outcome::Stored(_))
    ));
    node.stop().await;

    let start = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        producer.send(Message::new("after")),
    )
    .await
    .expect("the handle fails in time")
    .expect_err("nobody to deliver to");
    let elapsed = start.elapsed();
    assert!(
        matches!(err, ClientError::GaveUp { .. }),
        "gave up, naming the last error: {err}"
    );
    assert!(err.to_string().contains("last error:"), "{err}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_unanswered_batches_fail_and_are_not_resent() {
    let node = TestNode::start(|_| {}).await;
    let relay = Relay::start(node.addr).await;
    let client = relay.connect(&node).await;
    client.create_topic(deduped("plain")).await.expect("create");
    let producer = client
        .producer(
            "plain",
            ProducerConfig {
                idempotent: false,
                request_timeout: Duration::from_millis(500),
                ..small_batches()
            },
        )
        .expect("producer");

    let sent = Arc::new(AtomicUsize::new(0));
    let sending = send_paced(producer.clone(), sent.clone());
    wait_for(&sent, MESSAGES / 3).await;
    relay.cut.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    relay.cut.store(false, Ordering::Release);

    let handles = sending.await.expect("sender");
    producer.flush().await;
    let (mut stored, mut failed) = (0u64, 0u64);
    for (i, h) in handles.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("answered in time")
        {
            Ok(Outcome::Stored(_)) => stored += 1,
            // The application decides; the producer does not resend.
            Err(err) => {
                assert!(err.is_transient(), "message {i}: {err}");
                assert!(!matches!(err, ClientError::GaveUp { .. }), "{err}");
                failed += 1;
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
    eprintln!("{stored} stored, {failed} failed with the lost connection");
    assert!(failed > 0, "batches in flight failed");
    let on_disk = stored_count(&client, "plain").await;
    assert!(
        (stored..=stored + failed).contains(&on_disk),
        "{on_disk} on disk, {stored} acknowledged, {failed} failed"
    );
    // The producer went on over a new connection.
    assert!(matches!(
        producer.send(Message::new("again")).await,
        Ok(Outcome::Stored(_))
    ));
    client.close().await;
}
