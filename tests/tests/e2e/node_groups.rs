//! Consumer groups over real QUIC: broadcast between groups and sharing
//! within one, members dying with messages in hand, poison messages on the
//! retry schedule and into the dead-letter topic, per-key order with
//! competing consumers, seeks and lag, and a node restart with messages in
//! flight.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use weir_client::{
    AckMode, Client, GroupConfig, GroupMessage, GroupMode, Message, ProducerConfig, StartAt,
};
use weir_tests::{TestNode, WAIT, connect, drain, next_of, take, topic};

/// Produces `n` messages (payload `m{i}`, key `k{i % keys}`) and waits for
/// every ack.
async fn produce(client: &Client, name: &str, n: usize, keys: usize) {
    let producer = client
        .producer(name, ProducerConfig::default())
        .expect("producer");
    let handles: Vec<_> = (0..n)
        .map(|i| {
            producer.send(Message::new(format!("m{i}")).with_key(format!("k{}", i % keys.max(1))))
        })
        .collect();
    producer.flush().await;
    for h in handles {
        h.await.expect("produce acked");
    }
}

fn queue(group: &str, name: &str) -> GroupConfig {
    GroupConfig::new(group, name).with_mode(GroupMode::Queue)
}

async fn lag_of(client: &Client, group: &str) -> (u64, u64) {
    let info = client.describe_group(group).await.expect("describe");
    let t = &info.topics[0];
    (
        t.partitions.iter().map(|p| p.lag).sum(),
        t.partitions.iter().map(|p| p.committed).sum(),
    )
}

#[tokio::test]
async fn groups_each_get_everything_and_members_share_it() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("orders", 4))
        .await
        .expect("create");

    // A stream group of four: join first, so that the partitions are
    // dealt once and no rebalance happens while messages flow.
    let mut stream_members = Vec::new();
    for i in 0..4 {
        let c = connect(&node).await;
        let m = c
            .join_group(
                GroupConfig::new("audit", "orders")
                    .with_member(format!("audit-{i}"))
                    .with_ack(AckMode::Auto),
            )
            .await
            .expect("join");
        stream_members.push((c, m));
    }
    let info = client.describe_group("audit").await.expect("describe");
    let dealt: Vec<Vec<u32>> = info.topics[0]
        .members
        .iter()
        .map(|m| m.partitions.clone())
        .collect();
    assert_eq!(dealt, vec![vec![0], vec![1], vec![2], vec![3]]);

    // A second member with other settings than the group's is refused.
    let refused = client
        .join_group(GroupConfig::new("audit", "orders").with_mode(GroupMode::Queue))
        .await
        .expect_err("mode differs");
    assert!(refused.to_string().contains("mode"), "{refused}");

    produce(&client, "orders", 2000, 50).await;

    // One member alone in its group gets every message.
    let mut solo = client
        .join_group(GroupConfig::new("billing", "orders").with_ack(AckMode::Auto))
        .await
        .expect("join");
    let mut seen = BTreeSet::new();
    while seen.len() < 2000 {
        let m = next_of(&mut solo).await;
        assert!(
            seen.insert((m.partition, m.offset)),
            "billing got {m:?} twice"
        );
    }

    // Four stream members together get each message once.
    let mut got = Vec::new();
    for (_, m) in &mut stream_members {
        let mine = drain(m, Duration::from_millis(1500)).await;
        assert!(!mine.is_empty(), "every member has a partition with data");
        let parts: HashSet<u32> = mine.iter().map(|m| m.partition).collect();
        assert_eq!(parts.len(), 1, "a member reads only its partition");
        got.extend(mine.into_iter().map(|m| (m.partition, m.offset)));
    }
    let unique: BTreeSet<_> = got.iter().copied().collect();
    assert_eq!((got.len(), unique.len()), (2000, 2000));

    // Four queue members together get each message once.
    let counts = Arc::new(Mutex::new(BTreeMap::<(u32, u64), u32>::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = connect(&node).await;
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = c
                .join_group(
                    queue("workers", "orders")
                        .with_member(format!("w{i}"))
                        .with_prefetch(64)
                        .with_ack(AckMode::Auto),
                )
                .await
                .expect("join");
            let mine = drain(&mut m, Duration::from_millis(2000)).await;
            for msg in &mine {
                *counts
                    .lock()
                    .expect("lock")
                    .entry((msg.partition, msg.offset))
                    .or_default() += 1;
            }
            m.close().await.expect("close");
            mine.len()
        }));
    }
    let mut per_member = Vec::new();
    for t in tasks {
        per_member.push(t.await.expect("member task"));
    }
    let counts = counts.lock().expect("lock").clone();
    assert_eq!(counts.len(), 2000, "every message reached a worker");
    assert!(counts.values().all(|c| *c == 1), "no message twice");
    assert!(
        per_member.iter().filter(|n| **n > 0).count() >= 2,
        "the work was shared: {per_member:?}"
    );
    let (lag, _) = lag_of(&client, "workers").await;
    assert_eq!(lag, 0);
}

#[tokio::test]
async fn a_member_that_dies_mid_batch_hands_its_messages_on() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(topic("jobs", 2)).await.expect("create");
    produce(&client, "jobs", 300, 10).await;

    // The doomed member takes a prefetch of messages, acks a few and
    // dies with the rest in hand.
    let doomed_client = connect(&node).await;
    let mut doomed = doomed_client
        .join_group(queue("crunch", "jobs").with_prefetch(100))
        .await
        .expect("join");
    let held: Vec<GroupMessage> = {
        let mut v = Vec::new();
        for _ in 0..100 {
            v.push(next_of(&mut doomed).await);
        }
        v
    };
    let acked: BTreeSet<(u32, u64)> = held[..20].iter().map(|m| (m.partition, m.offset)).collect();
    doomed.ack_many(&held[..20]).expect("ack");
    doomed.flush().await.expect("flush");
    // Wait until the node has the acks, then kill the connection.
    let deadline = Instant::now() + WAIT;
    while lag_of(&client, "crunch").await.0 != 280 {
        assert!(Instant::now() < deadline, "acks did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed_client.close().await;
    drop(doomed);

    let mut survivor = client
        .join_group(queue("crunch", "jobs").with_prefetch(1000))
        .await
        .expect("join");
    // What it held unacked comes back as second attempts: the 80 it
    // had, and those that refilled its prefetch after its acks.
    let unacked: BTreeSet<(u32, u64)> =
        held[20..].iter().map(|m| (m.partition, m.offset)).collect();
    let mut got = BTreeSet::new();
    let mut again = BTreeSet::new();
    while got.len() < 280 {
        let m = next_of(&mut survivor).await;
        let k = (m.partition, m.offset);
        assert!(!acked.contains(&k), "acked {m:?} came back");
        if m.attempt > 1 {
            assert_eq!(m.attempt, 2, "{m:?}");
            again.insert(k);
        }
        survivor.ack(&m).expect("ack");
        assert!(got.insert(k), "{m:?} twice");
    }
    assert!(
        unacked.is_subset(&again),
        "every message the member held came back"
    );
    assert!(
        again.len() <= 100,
        "only the member's prefetch: {}",
        again.len()
    );
    survivor.flush().await.expect("flush");
    let deadline = Instant::now() + WAIT;
    while lag_of(&client, "crunch").await.0 != 0 {
        assert!(Instant::now() < deadline, "lag did not reach 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_poison_message_is_retried_on_schedule_then_dead_lettered() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("payments", 1))
        .await
        .expect("create");
    produce(&client, "payments", 1, 1).await;

    let mut member = client
        .join_group(
            queue("settle", "payments")
                .with_ack_wait(Duration::from_millis(300))
                .with_backoff(&[
                    Duration::from_millis(200),
                    Duration::from_millis(400),
                    Duration::from_millis(800),
                ])
                .with_max_deliveries(4),
        )
        .await
        .expect("join");
    let mut times = Vec::new();
    // Delivery 1 is neither acked nor nacked: the ack wait sends it again.
    let first = next_of(&mut member).await;
    times.push(Instant::now());
    assert_eq!(first.attempt, 1);
    for attempt in 2..=4 {
        let m = next_of(&mut member).await;
        times.push(Instant::now());
        assert_eq!((m.offset, m.attempt), (first.offset, attempt));
        member
            .nack(&m, None, &format!("card declined #{attempt}"))
            .expect("nack");
    }
    // Attempt 2 came after the ack wait, 3 after backoff step 2 (400 ms),
    // 4 after step 3 (800 ms). A little slack for the clock granularity.
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    for (gap, least) in gaps.iter().zip([300u128, 400, 800]) {
        assert!(*gap + 5 >= least, "gaps {gaps:?}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), member.next())
            .await
            .is_err(),
        "no fifth delivery"
    );

    let mut dlq = client
        .subscribe("settle.dlq", None, StartAt::Earliest)
        .await
        .expect("the group's dead-letter topic exists");
    let dead = take(&mut dlq, 1).await.remove(0);
    assert_eq!(dead.payload, "m0");
    let header = |name: &str| {
        dead.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("header {name} missing: {:?}", dead.headers))
    };
    assert_eq!(header("weir-dlq-topic"), "payments");
    assert_eq!(header("weir-dlq-partition"), "0");
    assert_eq!(header("weir-dlq-offset"), first.offset.to_string());
    assert_eq!(header("weir-dlq-attempts"), "4");
    assert_eq!(header("weir-dlq-error"), "card declined #4");

    let info = client.describe_group("settle").await.expect("describe");
    let p = info.topics[0].partitions[0];
    assert_eq!(
        (p.dead_lettered, p.redelivered, p.lag, p.committed),
        (1, 3, 0, 1)
    );
}

#[tokio::test]
async fn ordered_groups_keep_per_key_order_across_four_consumers() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("ledger", 2))
        .await
        .expect("create");
    const KEYS: usize = 16;
    const N: usize = 800;
    produce(&client, "ledger", N, KEYS).await;

    // Each worker records when it starts and ends a message; a key must
    // never be in two hands at once, and its messages must start in order.
    let busy = Arc::new(Mutex::new(HashSet::<String>::new()));
    let started = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let c = connect(&node).await;
        let (busy, started) = (busy.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let mut m = c
                .join_group(
                    queue("posting", "ledger")
                        .with_ordered(true)
                        .with_member(format!("p{i}"))
                        .with_prefetch(8),
                )
                .await
                .expect("join");
            let mut n = 0;
            while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), m.next()).await {
                let msg = msg.expect("message");
                let key =
                    String::from_utf8_lossy(msg.key.as_deref().unwrap_or_default()).into_owned();
                let seq: u64 = std::str::from_utf8(&msg.payload[1..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("payload m<seq>");
                {
                    assert!(
                        busy.lock().expect("lock").insert(key.clone()),
                        "key {key} in two hands"
                    );
                    started.lock().expect("lock").push((key.clone(), seq));
                }
                tokio::time::sleep(Duration::from_micros(200 * ((seq + i) % 7))).await;
                busy.lock().expect("lock").remove(&key);
                m.ack(&msg).expect("ack");
                n += 1;
            }
            m.close().await.expect("close");
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    assert_eq!(total, N, "each message once");
    let started = started.lock().expect("lock").clone();
    let mut last: HashMap<String, u64> = HashMap::new();
    for (key, seq) in started {
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert!(seq > prev, "key {key}: {seq} started after {prev}");
        }
    }
    assert_eq!(last.len(), KEYS);
}

#[tokio::test]
async fn seek_by_time_replays_from_the_right_message_and_lag_is_exact() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("ticks", 1))
        .await
        .expect("create");
    let t0 = 1_700_000_000_000i64;
    let producer = client
        .producer("ticks", ProducerConfig::default())
        .expect("producer");
    let handles: Vec<_> = (0..100)
        .map(|i| producer.send(Message::new(format!("t{i}")).with_timestamp_ms(t0 + i * 1000)))
        .collect();
    producer.flush().await;
    for h in handles {
        h.await.expect("acked");
    }

    let mut member = client
        .join_group(GroupConfig::new("charts", "ticks"))
        .await
        .expect("join");
    let mut last = None;
    for _ in 0..70 {
        last = Some(next_of(&mut member).await);
    }
    member.commit(&last.expect("70 messages")).expect("commit");
    member.close().await.expect("close");
    assert_eq!(lag_of(&client, "charts").await, (30, 70));

    // 40.5 s after the first tick: the first message at or after it is 41.
    client
        .seek_group("charts", "ticks", StartAt::Timestamp(t0 + 40_500))
        .await
        .expect("seek");
    assert_eq!(lag_of(&client, "charts").await, (59, 41));
    let mut member = client
        .join_group(GroupConfig::new("charts", "ticks"))
        .await
        .expect("join");
    let m = next_of(&mut member).await;
    assert_eq!(
        (m.offset, m.timestamp_ms, &m.payload[..]),
        (41, t0 + 41_000, &b"t41"[..])
    );

    // A seek while a member is connected restarts its delivery there.
    client
        .seek_group("charts", "ticks", StartAt::Offset(95))
        .await
        .expect("seek");
    let mut offsets = Vec::new();
    while offsets.last() != Some(&99) {
        offsets.push(next_of(&mut member).await.offset);
    }
    assert!(offsets.contains(&95), "{offsets:?}");
    client
        .seek_group("charts", "ticks", StartAt::Latest)
        .await
        .expect("seek");
    assert_eq!(lag_of(&client, "charts").await, (0, 100));
    client
        .seek_group("charts", "ticks", StartAt::Earliest)
        .await
        .expect("seek");
    assert_eq!(lag_of(&client, "charts").await, (100, 0));
    let missing = client
        .seek_group("nobody", "ticks", StartAt::Earliest)
        .await
        .expect_err("no such group");
    assert!(missing.to_string().contains("nobody"), "{missing}");
}

#[tokio::test]
async fn a_restart_with_messages_in_flight_keeps_acks_and_loses_nothing() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("events", 2))
        .await
        .expect("create");
    produce(&client, "events", 1000, 20).await;

    // Queue mode: 600 handed out, 400 of them acked, 200 still in flight.
    let mut member = client
        .join_group(queue("index", "events").with_prefetch(600))
        .await
        .expect("join");
    let mut held = Vec::new();
    for _ in 0..600 {
        held.push(next_of(&mut member).await);
    }
    let acked: BTreeSet<(u32, u64)> = held
        .iter()
        .filter(|m| m.offset % 3 != 0)
        .take(400)
        .map(|m| (m.partition, m.offset))
        .collect();
    for m in held
        .iter()
        .filter(|m| acked.contains(&(m.partition, m.offset)))
    {
        member.ack(m).expect("ack");
    }
    member.flush().await.expect("flush");
    // Stream mode alongside: commit at 250 of partition 0.
    let mut reader = client
        .join_group(GroupConfig::new("archive", "events"))
        .await
        .expect("join");
    let mut commit_at = None;
    while commit_at.is_none() {
        let m = next_of(&mut reader).await;
        if m.partition == 0 && m.offset == 249 {
            commit_at = Some(m);
        }
    }
    reader
        .commit(&commit_at.expect("offset 249"))
        .expect("commit");
    reader.flush().await.expect("flush");
    let deadline = Instant::now() + WAIT;
    while lag_of(&client, "index").await.0 != 600 {
        assert!(Instant::now() < deadline, "acks did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = client.describe_group("archive").await.expect("describe");
    assert_eq!(before.topics[0].partitions[0].committed, 250);
    // The node stops with the member connected and 200 messages in its
    // hands.
    node.stop().await;
    drop(member);
    drop(reader);
    drop(client);
    let node2 = TestNode::start_in(&node.data_dir.clone(), |_| {}).await;
    let client = connect(&node2).await;
    assert_eq!(lag_of(&client, "index").await.0, 600, "acks survived");
    let after = client.describe_group("archive").await.expect("describe");
    assert_eq!(
        after.topics[0].partitions[0].committed, 250,
        "commit survived"
    );

    let mut member = client
        .join_group(queue("index", "events").with_prefetch(1000))
        .await
        .expect("join");
    let in_flight: BTreeSet<(u32, u64)> = held
        .iter()
        .map(|m| (m.partition, m.offset))
        .filter(|k| !acked.contains(k))
        .collect();
    let mut got = BTreeSet::new();
    while got.len() < 600 {
        let m = next_of(&mut member).await;
        let k = (m.partition, m.offset);
        assert!(!acked.contains(&k), "acked {k:?} came back");
        // Held messages were delivered once before the restart; so may
        // others have been, to refill the member's prefetch after its acks.
        if in_flight.contains(&k) {
            assert_eq!(m.attempt, 2, "{k:?}");
        } else {
            assert!(m.attempt <= 2, "{k:?}: attempt {}", m.attempt);
        }
        assert!(got.insert(k), "{k:?} twice");
        member.ack(&m).expect("ack");
    }
    assert!(in_flight.is_subset(&got), "nothing unacked was lost");

    let mut reader = client
        .join_group(GroupConfig::new("archive", "events"))
        .await
        .expect("join");
    let assigned: BTreeMap<u32, u64> = reader.assignment().into_iter().collect();
    assert_eq!(assigned.get(&0), Some(&250));
    let first_p0 = loop {
        let m = next_of(&mut reader).await;
        if m.partition == 0 {
            break m.offset;
        }
    };
    assert_eq!(first_p0, 250);
}

#[tokio::test]
async fn a_stream_member_that_dies_hands_its_partitions_over_at_the_commit() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(topic("clicks", 2))
        .await
        .expect("create");
    produce(&client, "clicks", 400, 40).await;

    let doomed_client = connect(&node).await;
    let mut doomed = doomed_client
        .join_group(GroupConfig::new("sessions", "clicks").with_member("doomed"))
        .await
        .expect("join");
    let mut survivor = client
        .join_group(GroupConfig::new("sessions", "clicks").with_member("survivor"))
        .await
        .expect("join");
    // The first member to join keeps partition 0 after the second joins.
    let deadline = Instant::now() + WAIT;
    let mine = loop {
        let info = client.describe_group("sessions").await.expect("describe");
        let dealt: Vec<Vec<u32>> = info.topics[0]
            .members
            .iter()
            .map(|m| m.partitions.clone())
            .collect();
        if dealt.len() == 2 && dealt.iter().all(|p| p.len() == 1) {
            break dealt[0][0];
        }
        assert!(Instant::now() < deadline, "partitions not dealt: {dealt:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The doomed member reads 50 of its partition, commits 30, dies.
    let mut read = Vec::new();
    while read.len() < 50 {
        let m = next_of(&mut doomed).await;
        if m.partition == mine {
            read.push(m);
        }
    }
    doomed.commit(&read[29]).expect("commit");
    doomed.flush().await.expect("flush");
    let committed = read[29].offset + 1;
    let deadline = Instant::now() + WAIT;
    loop {
        let info = client.describe_group("sessions").await.expect("describe");
        if info.topics[0].partitions[mine as usize].committed == committed {
            break;
        }
        assert!(Instant::now() < deadline, "the commit did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed_client.close().await;
    drop(doomed);

    // The survivor gets the partition from the commit on: what was read
    // and not committed comes again, nothing is skipped.
    let end = client
        .describe_topic("clicks")
        .await
        .expect("describe")
        .partitions[mine as usize]
        .end_offset;
    let mut offsets = Vec::new();
    while offsets.last().is_none_or(|o| o + 1 < end) {
        let m = next_of(&mut survivor).await;
        if m.partition == mine {
            offsets.push(m.offset);
        }
    }
    assert_eq!(offsets, (committed..end).collect::<Vec<_>>());
    assert!(survivor.assignment().iter().any(|(p, _)| *p == mine));
}
