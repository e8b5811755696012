//! Consumers across lost connections: a subscription whose node restarts
//! resumes every partition where it stopped, so the application sees each
//! message once and in offset order; a group member joins its group again
//! and gets every message at least once; `subscribe_at` starts partitions at
//! stored positions and refuses positions the node cannot serve, naming the
//! partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use weir_client::{
    AckMode, Client, ClientError, ConsumedMessage, ConsumerConfig, ErrorCode, GroupConfig,
    GroupMode, Message, ProducerConfig, StartAt, Subscription,
};
use weir_tests::{
    Relay, TestNode, WAIT, connect, connect_impatient, next_of, port_free, take, topic,
};

/// Produces `range` as messages `m{i}` keyed `k{i}` (so they spread over
/// the partitions) and waits until all are stored.
async fn produce(client: &Client, name: &str, range: std::ops::Range<usize>) {
    let producer = client
        .producer(name, ProducerConfig::default())
        .expect("producer");
    let handles: Vec<_> = range
        .map(|i| producer.send(Message::new(format!("m{i}")).with_key(format!("k{i}"))))
        .collect();
    producer.flush().await;
    for h in handles {
        tokio::time::timeout(WAIT, h)
            .await
            .expect("answered in time")
            .expect("stored");
    }
}

/// Per partition, the offsets seen, in the order they came.
fn offsets_by_partition(messages: &[ConsumedMessage]) -> BTreeMap<u32, Vec<u64>> {
    let mut by = BTreeMap::<u32, Vec<u64>>::new();
    for m in messages {
        by.entry(m.partition).or_default().push(m.offset);
    }
    by
}

/// Each partition's offsets are 0, 1, 2, ... with no gap or repeat, and
/// together they number `total`.
fn assert_each_once_in_order(messages: &[ConsumedMessage], total: usize) {
    let by = offsets_by_partition(messages);
    for (p, offsets) in &by {
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(
            offsets, &expected,
            "partition {p}: each offset once, in order"
        );
    }
    assert_eq!(messages.len(), total, "every message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_across_a_node_restart_with_each_message_once_in_order() {
    let mut node = TestNode::start(|_| {}).await;
    let addr = node.addr;
    let client = connect_impatient(&node, Duration::from_secs(1)).await;
    client
        .create_topic(topic("resume", 3))
        .await
        .expect("create");
    produce(&client, "resume", 0..600).await;

    // A small window, so most messages are still on the node when it stops.
    let window = ConsumerConfig {
        window_messages: 50,
        window_bytes: 64 * 1024,
        ..ConsumerConfig::default()
    };
    let mut sub = client
        .subscribe_with("resume", None, StartAt::Earliest, window)
        .await
        .expect("subscribe");
    let mut got = take(&mut sub, 150).await;

    node.stop().await;
    port_free(addr).await;
    // The application keeps reading what was delivered before the stop,
    // then waits while the node is down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = TestNode::start_in(&node.data_dir.clone(), |c| c.listen = addr).await;
    assert_eq!(restarted.addr, addr);
    // Messages stored after the restart arrive on the resumed stream too.
    produce(&client, "resume", 600..700).await;

    got.extend(take(&mut sub, 550).await);
    assert_each_once_in_order(&got, 700);
    let mut payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort_unstable_by_key(|p| p[1..].parse::<usize>().unwrap_or(usize::MAX));
    let expected: Vec<String> = (0..700).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, expected, "every payload once");
    // Nothing more: no message was delivered twice.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "no message beyond the 700"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_after_the_network_loses_its_connection() {
    let node = TestNode::start(|_| {}).await;
    let relay = Relay::start(node.addr).await;
    let client = relay.connect(&node).await;
    client.create_topic(topic("cut", 2)).await.expect("create");
    produce(&client, "cut", 0..400).await;
    let window = ConsumerConfig {
        window_messages: 40,
        window_bytes: 64 * 1024,
        ..ConsumerConfig::default()
    };
    let mut sub = client
        .subscribe_with("cut", None, StartAt::Earliest, window)
        .await
        .expect("subscribe");
    let mut got = take(&mut sub, 100).await;

    // Nothing from the node arrives until the client's idle timeout has
    // ended the connection; then the redial gets through.
    relay.cut.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    relay.cut.store(false, Ordering::Release);

    got.extend(take(&mut sub, 300).await);
    assert_each_once_in_order(&got, 400);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resume_off_a_subscription_ends_at_the_first_lost_connection() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("once", 1)).await.expect("create");
    produce(&client, "once", 0..10).await;
    let config = ConsumerConfig {
        resume_for: Duration::ZERO,
        ..ConsumerConfig::default()
    };
    let mut sub = client
        .subscribe_with("once", None, StartAt::Earliest, config)
        .await
        .expect("subscribe");
    take(&mut sub, 10).await;
    node.stop().await;
    let err = final_error(&mut sub).await;
    assert!(err.is_transient(), "a lost connection, got {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_whose_node_stays_away_gives_up_after_resume_for() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect_impatient(&node, Duration::from_millis(300)).await;
    client.create_topic(topic("away", 1)).await.expect("create");
    let config = ConsumerConfig {
        resume_for: Duration::from_secs(1),
        ..ConsumerConfig::default()
    };
    let mut sub = client
        .subscribe_with("away", None, StartAt::Earliest, config)
        .await
        .expect("subscribe");
    let stopped = Instant::now();
    node.stop().await;
    let err = final_error(&mut sub).await;
    let waited = stopped.elapsed();
    assert!(err.is_transient(), "a lost connection, got {err}");
    let text = err.to_string();
    assert!(
        text.contains("shutting down") && text.contains("could not resume within 1s"),
        "says what was lost and that resuming failed: {text}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "kept trying for resume_for, gave up after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_at_starts_each_listed_partition_at_its_offset() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("at", 3)).await.expect("create");
    produce(&client, "at", 0..300).await;
    let info = client.describe_topic("at").await.expect("describe");
    let ends: BTreeMap<u32, u64> = info
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, p.end_offset))
        .collect();
    assert!(
        ends.values().all(|&e| e >= 10),
        "each partition has data: {ends:?}"
    );

    // Partition 2 from offset 5 and partition 0 from its end; not 1.
    let positions = [(2, 5), (0, ends[&0])];
    let mut sub = client
        .subscribe_at("at", &positions, ConsumerConfig::default())
        .await
        .expect("subscribe-at");
    let mut answered = sub.partitions().to_vec();
    answered.sort_unstable();
    assert_eq!(answered, vec![(0, ends[&0]), (2, 5)]);
    let wanted = (ends[&2] - 5) as usize;
    let got = take(&mut sub, wanted).await;
    let by = offsets_by_partition(&got);
    assert_eq!(by.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(by[&2], (5..ends[&2]).collect::<Vec<_>>());

    // New messages on partition 0 arrive; partition 1 stays unread.
    produce(&client, "at", 300..330).await;
    let info = client.describe_topic("at").await.expect("describe");
    let grown = info.partitions[0].end_offset - ends[&0] + info.partitions[2].end_offset - ends[&2];
    let more = take(&mut sub, grown as usize).await;
    assert!(
        more.iter().all(|m| m.partition != 1),
        "partition 1 is not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_at_refuses_what_it_cannot_serve_naming_the_partition() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("bad", 2)).await.expect("create");
    produce(&client, "bad", 0..20).await;
    let refusal = |positions: Vec<(u32, u64)>| {
        let client = client.clone();
        async move {
            client
                .subscribe_at("bad", &positions, ConsumerConfig::default())
                .await
                .expect_err("refused")
        }
    };

    let err = refusal(vec![(0, 1_000)]).await;
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("partition 0"), "{err}");
    assert!(err.to_string().contains("1000"), "{err}");

    let err = refusal(vec![(5, 0)]).await;
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    assert!(err.to_string().contains("partition 5"), "{err}");

    let err = refusal(vec![(1, 0), (1, 3)]).await;
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("partition 1 twice"), "{err}");

    let err = refusal(vec![]).await;
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("no partitions"), "{err}");
}

/// The error the subscription ends with, within [`WAIT`], skipping the
/// messages before it; the stream must end right after it.
async fn final_error(sub: &mut Subscription) -> ClientError {
    let err = loop {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(Err(err))) => break err,
            Ok(Some(Ok(_))) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(_) => panic!("no error within {WAIT:?}"),
        }
    };
    let after = tokio::time::timeout(WAIT, sub.next()).await;
    assert!(
        matches!(after, Ok(None)),
        "the stream ends after its error, got {after:?}"
    );
    err
}

/// Restarts `node` on its address and data, with the clients still
/// connected to the old one.
async fn restart(node: &mut TestNode) -> TestNode {
    let addr = node.addr;
    node.stop().await;
    port_free(addr).await;
    let restarted = TestNode::start_in(&node.data_dir.clone(), |c| c.listen = addr).await;
    assert_eq!(restarted.addr, addr);
    restarted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_member_joins_again_across_a_node_restart_and_gets_every_message() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect_impatient(&node, Duration::from_secs(1)).await;
    client.create_topic(topic("jobs", 2)).await.expect("create");
    produce(&client, "jobs", 0..300).await;
    let config = GroupConfig::new("workers", "jobs")
        .with_mode(GroupMode::Queue)
        .with_prefetch(50);
    let mut member = client.join_group(config).await.expect("join");
    let mut done = BTreeSet::new();
    for _ in 0..100 {
        let m = next_of(&mut member).await;
        member.ack(&m).expect("ack");
        done.insert((m.partition, m.offset));
    }
    member.flush().await.expect("flush");

    let _restarted = restart(&mut node).await;
    // The same member goes on: it joins again and gets the rest, the
    // messages it held unacked among them.
    let mut redelivered = 0;
    while done.len() < 300 {
        let m = next_of(&mut member).await;
        if m.attempt > 1 {
            redelivered += 1;
        }
        member.ack(&m).expect("ack");
        done.insert((m.partition, m.offset));
    }
    eprintln!("{redelivered} messages came again after the restart");
    member.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_member_joins_again_across_a_node_restart_and_goes_on_in_order() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect_impatient(&node, Duration::from_secs(1)).await;
    client.create_topic(topic("feed", 3)).await.expect("create");
    produce(&client, "feed", 0..300).await;
    let config = GroupConfig::new("readers", "feed")
        .with_mode(GroupMode::Stream)
        .with_ack(AckMode::Auto);
    let mut member = client.join_group(config).await.expect("join");
    let mut seen = BTreeSet::new();
    for _ in 0..120 {
        let m = next_of(&mut member).await;
        seen.insert((m.partition, m.offset));
    }
    member.flush().await.expect("flush");

    let _restarted = restart(&mut node).await;
    produce(&client, "feed", 300..400).await;
    // The member first hands out what it still holds from before the
    // restart, then each partition starts again from its committed offset
    // (so some messages come twice): per partition, offsets go up except
    // for that one step back, and every message comes.
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut back_steps: BTreeMap<u32, u32> = BTreeMap::new();
    while seen.len() < 400 {
        let m = next_of(&mut member).await;
        if let Some(prev) = last.insert(m.partition, m.offset)
            && m.offset <= prev
        {
            let steps = back_steps.entry(m.partition).or_default();
            *steps += 1;
            assert_eq!(
                *steps, 1,
                "partition {}: {} after {prev}, a second step back",
                m.partition, m.offset
            );
        }
        seen.insert((m.partition, m.offset));
    }
    member.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resume_off_a_member_ends_at_the_first_lost_connection() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("brief", 1))
        .await
        .expect("create");
    let mut config = GroupConfig::new("g", "brief");
    config.window.resume_for = Duration::ZERO;
    let mut member = client.join_group(config).await.expect("join");
    node.stop().await;
    let end = tokio::time::timeout(WAIT, member.next())
        .await
        .expect("the member ends");
    match end {
        Some(Err(err)) => assert!(err.to_string().contains("shutting down"), "{err}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(member.next().await.is_none(), "an ended member stays ended");
}
