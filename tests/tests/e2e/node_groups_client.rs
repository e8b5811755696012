//! The group member client against a real node: what it does on its own
//! side of the protocol. A rebalance or a seek takes buffered messages of
//! a lost or moved partition away from the application; commits (manual
//! and automatic) reach the node by `close` and a rejoin resumes after
//! them; nacks with a delay and acks from another task while the member
//! is polled; admin calls that name what is missing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_client::{
    AckMode, Client, ErrorCode, GroupConfig, GroupMember, GroupMessage, GroupMode, Message,
    ProducerConfig, StartAt,
};
use weir_tests::{TestNode, WAIT, connect, drain, next_of, topic};

/// Produces `n` messages (payload `p{partition}-{i}`) to one partition.
async fn produce_to(client: &Client, name: &str, partition: u32, n: usize) {
    let producer = client
        .producer(
            name,
            ProducerConfig {
                partition: Some(partition),
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
    let handles: Vec<_> = (0..n)
        .map(|i| producer.send(Message::new(format!("p{partition}-{i}"))))
        .collect();
    producer.flush().await;
    for h in handles {
        h.await.expect("produce acked");
    }
}

/// The next `n` messages.
async fn take(member: &mut GroupMember, n: usize) -> Vec<GroupMessage> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_of(member).await);
    }
    out
}

/// Waits until `done` holds, failing the test after [`WAIT`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_rebalance_takes_buffered_messages_of_a_lost_partition_away() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("rb", 2)).await.expect("create");
    produce_to(&client, "rb", 0, 100).await;
    produce_to(&client, "rb", 1, 100).await;

    // A holds both partitions and takes one message; the node pushes the
    // rest into its window, where they wait.
    let mut a = client
        .join_group(GroupConfig::new("rb-g", "rb").with_member("a"))
        .await
        .expect("join a");
    assert_eq!(a.mode(), GroupMode::Stream);
    assert_eq!(a.assignment(), vec![(0, 0), (1, 0)]);
    let first = next_of(&mut a).await;
    let before = a.generation();

    let other = connect(&node).await;
    let mut b = other
        .join_group(GroupConfig::new("rb-g", "rb").with_member("b"))
        .await
        .expect("join b");
    eventually("a's new assignment", || a.assignment().len() == 1).await;
    assert!(a.generation() > before);
    let kept = a.assignment()[0].0;
    assert_eq!(b.assignment().len(), 1);
    let lost = b.assignment()[0].0;
    assert_ne!(kept, lost);
    assert_eq!(b.assignment()[0].1, 0, "nothing was committed");

    let left = if first.partition == kept { 99 } else { 100 };
    let mut rest = take(&mut a, left).await;
    rest.extend(drain(&mut a, Duration::from_millis(300)).await);
    assert!(
        rest.iter().all(|m| m.partition == kept),
        "a handed out a message of partition {lost} after losing it"
    );
    // The kept partition went on where it stood: each message once.
    let mut kept_offsets: Vec<u64> = rest.iter().map(|m| m.offset).collect();
    if first.partition == kept {
        kept_offsets.insert(0, first.offset);
    }
    assert_eq!(kept_offsets, (0..100).collect::<Vec<u64>>());
    // The lost partition starts over at b from the committed offset.
    let mut theirs = take(&mut b, 100).await;
    theirs.extend(drain(&mut b, Duration::from_millis(300)).await);
    let theirs: Vec<u64> = theirs
        .iter()
        .map(|m| {
            assert_eq!(m.partition, lost);
            m.offset
        })
        .collect();
    assert_eq!(theirs, (0..100).collect::<Vec<u64>>());
}

#[tokio::test]
async fn commits_reach_the_node_by_close_and_a_rejoin_resumes_after_them() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("cm", 1)).await.expect("create");
    produce_to(&client, "cm", 0, 100).await;

    // Manual: only what the application commits counts.
    let mut m = client
        .join_group(GroupConfig::new("cm-g", "cm"))
        .await
        .expect("join");
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(next_of(&mut m).await);
    }
    m.commit(&held[29]).expect("commit");
    let err = m.ack(&held[30]).expect_err("no acks in stream mode");
    assert!(err.to_string().contains("commit instead"), "{err}");
    m.close().await.expect("close");
    let info = client.describe_group("cm-g").await.expect("describe");
    let p = info.topics[0].partitions[0];
    assert_eq!((p.committed, p.end, p.lag), (30, 100, 70));

    // Auto: everything handed out is committed, the last ones by close.
    let mut m = client
        .join_group(GroupConfig::new("cm-g", "cm").with_ack(AckMode::Auto))
        .await
        .expect("rejoin");
    assert_eq!(m.assignment(), vec![(0, 30)]);
    let mut offsets = Vec::with_capacity(70);
    for _ in 0..70 {
        offsets.push(next_of(&mut m).await.offset);
    }
    assert_eq!(offsets, (30..100).collect::<Vec<u64>>());
    m.close().await.expect("close");
    let info = client.describe_group("cm-g").await.expect("describe");
    let p = info.topics[0].partitions[0];
    assert_eq!((p.committed, p.lag), (100, 0));

    let mut m = client
        .join_group(GroupConfig::new("cm-g", "cm"))
        .await
        .expect("third join");
    assert!(
        drain(&mut m, Duration::from_millis(500)).await.is_empty(),
        "everything was committed"
    );
}

#[tokio::test]
async fn nacks_with_a_delay_and_acks_from_another_task() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("nk", 1)).await.expect("create");
    produce_to(&client, "nk", 0, 20).await;

    let mut m = client
        .join_group(
            GroupConfig::new("nk-g", "nk")
                .with_mode(GroupMode::Queue)
                .with_prefetch(20),
        )
        .await
        .expect("join");
    assert_eq!(m.mode(), GroupMode::Queue);
    let err = m
        .commit_offsets(m.generation(), &[(0, 1)])
        .expect_err("no commits in queue mode");
    assert!(err.to_string().contains("ack or nack instead"), "{err}");

    // Even offsets are acked by a worker task while the member is polled;
    // odd ones are nacked for 300 ms.
    let acker = m.acker();
    let (work, mut jobs) = tokio::sync::mpsc::unbounded_channel::<GroupMessage>();
    let worker = tokio::spawn(async move {
        let mut n = 0;
        while let Some(job) = jobs.recv().await {
            acker.ack(&job).expect("ack from the worker");
            n += 1;
        }
        acker.flush().await.expect("flush");
        n
    });
    let delay = Duration::from_millis(300);
    let mut nacked_at = Instant::now();
    for _ in 0..20 {
        let msg = next_of(&mut m).await;
        assert_eq!(msg.attempt, 1);
        if msg.offset % 2 == 0 {
            work.send(msg).expect("worker alive");
        } else {
            m.nack(&msg, Some(delay), "try later").expect("nack");
            nacked_at = Instant::now();
        }
    }
    drop(work);
    assert_eq!(worker.await.expect("worker"), 10);

    let mut again = BTreeSet::new();
    for _ in 0..10 {
        let msg = next_of(&mut m).await;
        assert_eq!((msg.offset % 2, msg.attempt), (1, 2), "{msg:?}");
        again.insert(msg.offset);
        m.ack(&msg).expect("ack");
    }
    assert!(
        nacked_at.elapsed() + Duration::from_millis(5) >= delay,
        "redelivered before the nack's delay"
    );
    assert_eq!(again, (1..20).step_by(2).collect::<BTreeSet<u64>>());
    m.close().await.expect("close");
    let info = client.describe_group("nk-g").await.expect("describe");
    let p = info.topics[0].partitions[0];
    assert_eq!(
        (p.committed, p.lag, p.in_flight, p.redelivered),
        (20, 0, 0, 10)
    );
}

#[tokio::test]
async fn a_seek_restarts_a_live_member_without_what_it_had_buffered() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("sk", 1)).await.expect("create");
    produce_to(&client, "sk", 0, 100).await;

    let mut m = client
        .join_group(GroupConfig::new("sk-g", "sk").with_ack(AckMode::Auto))
        .await
        .expect("join");
    for i in 0..10 {
        assert_eq!(next_of(&mut m).await.offset, i);
    }
    let before = m.generation();
    client
        .seek_group("sk-g", "sk", StartAt::Offset(5))
        .await
        .expect("seek");
    eventually("the seek's assignment", || m.generation() > before).await;
    assert_eq!(m.assignment(), vec![(0, 5)]);
    let mut replayed = take(&mut m, 95).await;
    replayed.extend(drain(&mut m, Duration::from_millis(300)).await);
    let offsets: Vec<u64> = replayed.iter().map(|m| m.offset).collect();
    assert_eq!(
        offsets,
        (5..100).collect::<Vec<u64>>(),
        "the replay starts at the seek, with nothing buffered before it"
    );
    m.close().await.expect("close");
    let info = client.describe_group("sk-g").await.expect("describe");
    assert_eq!(info.topics[0].partitions[0].committed, 100);
}

#[tokio::test]
async fn admin_calls_name_what_is_missing() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("ad", 3)).await.expect("create");
    assert!(client.list_groups().await.expect("list").is_empty());

    let err = client
        .describe_group("nobody")
        .await
        .expect_err("no such group");
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    assert!(err.to_string().contains("nobody"), "{err}");
    let err = client
        .join_group(GroupConfig::new("ad-g", "missing-topic"))
        .await
        .expect_err("no such topic");
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = client
        .join_group(GroupConfig::new("bad group", "ad"))
        .await
        .expect_err("invalid name");
    assert!(err.to_string().contains("group name"), "{err}");

    let m = client
        .join_group(GroupConfig::new("ad-g", "ad").with_member("only"))
        .await
        .expect("join");
    let groups = client.list_groups().await.expect("list");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "ad-g");
    let t = &groups[0].topics[0];
    assert_eq!(t.topic, "ad");
    assert_eq!(t.members.len(), 1);
    assert_eq!(t.members[0].name, "only");
    assert_eq!(t.members[0].partitions, vec![0, 1, 2]);
    m.close().await.expect("close");
}
