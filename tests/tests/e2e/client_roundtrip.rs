//! The Rust client against a real node over real QUIC: produce and consume
//! round trips, start positions, credit flow control, ack levels,
//! datagrams, trust (pinned fingerprint, CA file, a wrong fingerprint) and
//! tokens.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use weir_client::{
    Acks, Client, ClientConfig, ClientError, ConsumerConfig, ErrorCode, Fingerprint, FlushMode,
    Message, Outcome, ProducerConfig, StartAt, TopicSpec, Trust,
};
use weir_tests::{TestNode, WAIT, connect, pinned, take, topic as spec};

#[tokio::test]
async fn produce_and_consume_round_trip() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(spec("events", 3))
        .await
        .expect("create");

    let producer = client
        .producer("events", ProducerConfig::default())
        .expect("producer");
    let handles: Vec<_> = (0..200)
        .map(|i| {
            producer.send(
                Message::new(format!("payload-{i}"))
                    .with_key(format!("key-{}", i % 7))
                    .with_header("n", i.to_string())
                    .with_id(format!("id-{i}")),
            )
        })
        .collect();
    producer.flush().await;
    let mut placed = HashMap::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.expect("answer") {
            Outcome::Stored(places) => {
                assert_eq!(places.len(), 1);
                assert_eq!(places[0].topic, "events");
                placed.insert((places[0].partition, places[0].offset), i);
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert_eq!(placed.len(), 200, "every message has its own place");

    let mut sub = client
        .subscribe("events", None, StartAt::Earliest)
        .await
        .expect("subscribe");
    assert_eq!(sub.partitions().len(), 3);
    let got = take(&mut sub, 200).await;
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    let mut key_partition: HashMap<Vec<u8>, u32> = HashMap::new();
    for m in &got {
        let i = placed[&(m.partition, m.offset)];
        assert_eq!(&*m.topic, "events");
        assert_eq!(m.payload, format!("payload-{i}").as_bytes());
        assert_eq!(m.key.as_deref(), Some(format!("key-{}", i % 7).as_bytes()));
        assert_eq!(m.id.as_deref(), Some(format!("id-{i}").as_bytes()));
        assert_eq!(
            m.headers,
            vec![("n".to_string(), bytes::Bytes::from(i.to_string()))]
        );
        if let Some(prev) = last_offset.insert(m.partition, m.offset) {
            assert!(m.offset > prev, "offsets rise within a partition");
        }
        let p = *key_partition
            .entry(m.key.as_deref().map(<[u8]>::to_vec).unwrap_or_default())
            .or_insert(m.partition);
        assert_eq!(p, m.partition, "equal keys share a partition");
    }

    // Pushed as it is stored, with no polling: a new message arrives on the
    // open subscription.
    let handle = producer.send(Message::new("late").with_key("key-0"));
    let late = take(&mut sub, 1).await;
    assert_eq!(&late[0].payload[..], b"late");
    assert!(matches!(handle.await, Ok(Outcome::Stored(_))));
    client.close().await;
}

#[tokio::test]
async fn start_positions_and_small_credit_windows() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(spec("log", 1)).await.expect("create");
    // One batch of 50: a subscription from offset 20 gets that batch whole
    // and must skip its first 20 records.
    let producer = client
        .producer(
            "log",
            ProducerConfig {
                linger: Duration::from_secs(60),
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
    let handles: Vec<_> = (0..50)
        .map(|i| producer.send(Message::new(format!("m{i}"))))
        .collect();
    producer.flush().await;
    for h in handles {
        assert!(matches!(h.await, Ok(Outcome::Stored(_))));
    }

    let mut from_offset = client
        .subscribe("log", Some(0), StartAt::Offset(20))
        .await
        .expect("subscribe");
    assert_eq!(from_offset.partitions(), &[(0, 20)]);
    let got = take(&mut from_offset, 30).await;
    assert_eq!(got.first().map(|m| m.offset), Some(20));
    assert_eq!(got.last().map(|m| &m.payload[..]), Some(&b"m49"[..]));

    // A window of 3 messages and 1 KiB forces many credit grants.
    let tiny = ConsumerConfig {
        window_messages: 3,
        window_bytes: 1024,
        ..ConsumerConfig::default()
    };
    for i in 50..120 {
        drop(producer.send(Message::new(format!("m{i}"))));
        if i % 10 == 0 {
            producer.flush().await;
        }
    }
    producer.flush().await;
    let mut slow = client
        .subscribe_with("log", None, StartAt::Earliest, tiny)
        .await
        .expect("subscribe");
    let got = take(&mut slow, 120).await;
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (0..120).collect::<Vec<_>>());

    let mut latest = client
        .subscribe("log", None, StartAt::Latest)
        .await
        .expect("subscribe");
    assert_eq!(latest.partitions(), &[(0, 120)]);
    drop(producer.send(Message::new("after")));
    producer.flush().await;
    assert_eq!(take(&mut latest, 1).await[0].offset, 120);

    let mut by_time = client
        .subscribe("log", None, StartAt::Timestamp(i64::MAX / 2))
        .await
        .expect("subscribe");
    assert_eq!(
        by_time.partitions(),
        &[(0, 121)],
        "a time after every message starts at the end"
    );
    drop(producer.send(Message::new("future")));
    producer.flush().await;
    assert_eq!(take(&mut by_time, 1).await[0].offset, 121);
}

#[tokio::test]
async fn ack_levels_and_datagrams() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(TopicSpec {
            flush: FlushMode::Durable,
            ..spec("acks", 1)
        })
        .await
        .expect("create");

    let durable = client.producer(
        "acks",
        ProducerConfig {
            acks: Acks::Durable,
            ..ProducerConfig::default()
        },
    );
    let outcome = durable
        .expect("producer")
        .send(Message::new("durable"))
        .await
        .expect("answer");
    assert!(matches!(outcome, Outcome::Stored(_)), "{outcome:?}");

    let none = client
        .producer(
            "acks",
            ProducerConfig {
                acks: Acks::None,
                ..ProducerConfig::default()
            },
        )
        .expect("producer");
    assert_eq!(
        none.send(Message::new("fire")).await.expect("written"),
        Outcome::Sent
    );
    none.flush().await;

    client
        .send_datagram("acks", &Message::new("gram"))
        .expect("datagram fits");
    let mut sub = client
        .subscribe("acks", None, StartAt::Earliest)
        .await
        .expect("subscribe");
    let mut payloads: Vec<Vec<u8>> = take(&mut sub, 3)
        .await
        .into_iter()
        .map(|m| m.payload.to_vec())
        .collect();
    payloads.sort();
    assert_eq!(
        payloads,
        vec![b"durable".to_vec(), b"fire".to_vec(), b"gram".to_vec()]
    );

    let big = Message::new(vec![0u8; 64 * 1024]);
    assert!(matches!(
        client.send_datagram("acks", &big),
        Err(ClientError::DatagramTooLarge { .. })
    ));
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_with_both_values() {
    let node = TestNode::start(|_| {}).await;
    let wrong = Fingerprint::parse(&"00".repeat(32)).expect("parse");
    let config = ClientConfig::new(node.addr.to_string(), Trust::Fingerprint(wrong));
    let err = Client::connect(config).await.expect_err("must not connect");
    match &err {
        ClientError::FingerprintMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, &"00".repeat(32));
            assert_eq!(presented, &node.fingerprint);
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("certificate fingerprint mismatch: expected 0000"),
        "{text}"
    );

    // The node goes on serving clients that do verify it, by pin or by CA.
    connect(&node)
        .await
        .list_topics()
        .await
        .expect("pinned client works");
    let by_ca = ClientConfig::new(node.addr.to_string(), Trust::CaFile(node.cert_path()));
    Client::connect(by_ca)
        .await
        .expect("CA-verified client connects")
        .list_topics()
        .await
        .expect("list");
    let wrong_name = ClientConfig::new(node.addr.to_string(), Trust::CaFile(node.cert_path()))
        .with_server_name("example.org");
    let err = Client::connect(wrong_name)
        .await
        .expect_err("name not in the certificate");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn admin_errors_and_tokens_are_typed() {
    let token = "producer-token-0123456789".to_string();
    let admin = "admin-token-0123456789".to_string();
    let node = TestNode::start(|c| {
        c.tokens = vec![
            weir_tests::token(&admin, &["*"], &["*"], &["*"]),
            weir_tests::token(&token, &["t*"], &[], &[]),
        ];
    })
    .await;

    let err = Client::connect(pinned(&node)).await.expect_err("no token");
    assert!(matches!(err, ClientError::Unauthenticated(_)), "{err:?}");
    assert!(err.to_string().starts_with("unauthenticated: "), "{err}");
    let err = Client::connect(pinned(&node).with_token("not-a-valid-token-at-all"))
        .await
        .expect_err("bad token");
    assert!(matches!(err, ClientError::Unauthenticated(_)), "{err:?}");

    let root = Client::connect(pinned(&node).with_token(admin))
        .await
        .expect("admin connects");
    root.create_topic(spec("topic", 1)).await.expect("create");
    let err = root
        .create_topic(spec("topic", 1))
        .await
        .expect_err("exists");
    assert_eq!(err.code(), Some(ErrorCode::AlreadyExists), "{err}");
    let err = root.describe_topic("missing").await.expect_err("missing");
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    assert!(err.to_string().starts_with("not found: "), "{err}");

    let limited = Client::connect(pinned(&node).with_token(token))
        .await
        .expect("producer connects");
    let err = limited
        .create_topic(spec("other", 1))
        .await
        .expect_err("no admin right");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let outcome = limited
        .producer("topic", ProducerConfig::default())
        .expect("producer")
        .send(Message::new("ok"))
        .await;
    assert!(matches!(outcome, Ok(Outcome::Stored(_))), "{outcome:?}");
    let err = limited
        .subscribe("topic", None, StartAt::Earliest)
        .await
        .expect_err("no consume right");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = root
        .producer("missing", ProducerConfig::default())
        .expect("producer")
        .send(Message::new("x"))
        .await;
    assert_eq!(
        err.expect_err("no such topic").code(),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    use weir_client::ClientIdentity;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");

    let mut params =
        CertificateParams::new(vec!["weir-test-client".to_string()]).expect("client params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("client key");
    let cert = params.signed_by(&key, &ca).expect("client cert");
    let identity = ClientIdentity {
        cert_file: dir.path().join("client.pem"),
        key_file: dir.path().join("client.key"),
    };
    std::fs::write(&identity.cert_file, cert.pem()).expect("write cert");
    std::fs::write(&identity.key_file, key.serialize_pem()).expect("write key");

    let node = TestNode::start(|c| c.tls.client_ca = Some(ca_file.clone())).await;
    let anonymous = Client::connect(pinned(&node)).await;
    let refused = match anonymous {
        Err(err) => err,
        // TLS 1.3 may complete the client's side before the node checks the
        // certificate; then the first request fails instead.
        Ok(client) => client
            .list_topics()
            .await
            .expect_err("a client without a certificate is refused"),
    };
    assert!(
        matches!(
            refused,
            ClientError::Connect { .. } | ClientError::ConnectionLost(_)
        ),
        "{refused:?}"
    );

    let client = Client::connect(pinned(&node).with_identity(identity))
        .await
        .expect("client with a certificate");
    client.list_topics().await.expect("served");
}

#[tokio::test]
async fn bounded_pipelining_keeps_send_order() {
    let node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client
        .create_topic(spec("ordered", 1))
        .await
        .expect("create");
    for max_in_flight in [1, 4] {
        let config = ProducerConfig {
            linger: Duration::from_millis(1),
            max_batch_records: 10,
            max_in_flight,
            ..ProducerConfig::default()
        };
        let producer = client.producer("ordered", config).expect("producer");
        let handles: Vec<_> = (0..300)
            .map(|i| producer.send(Message::new(format!("{i}"))))
            .collect();
        let mut offsets = Vec::new();
        for h in handles {
            match h.await.expect("answer") {
                Outcome::Stored(places) => offsets.push(places[0].offset),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "stored in send order, densely"
        );
        producer.close().await;
    }
}

#[tokio::test]
async fn node_shutdown_ends_a_subscription_without_resume_with_a_clear_error() {
    let mut node = TestNode::start(|_| {}).await;
    let client = connect(&node).await;
    client.create_topic(spec("brief", 1)).await.expect("create");
    let no_resume = ConsumerConfig {
        resume_for: Duration::ZERO,
        ..ConsumerConfig::default()
    };
    let mut sub = client
        .subscribe_with("brief", None, StartAt::Latest, no_resume)
        .await
        .expect("subscribe");
    node.stop().await;
    let end = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("the subscription ends");
    match end {
        Some(Err(err)) => assert!(err.to_string().contains("shutting down"), "{err}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        sub.next().await.is_none(),
        "a failed subscription stays ended"
    );
}
