use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn spec() -> TopicSpec {
    TopicSpec {
        name: "orders.eu".into(),
        partitions: 8,
        retention_ms: Some(86_400_000),
        retention_bytes: None,
        flush: FlushMode::Interval { interval_ms: 50 },
        dedup_window_ms: 120_000,
    }
}

fn placement() -> Placement {
    Placement {
        topic: "eu-orders".into(),
        partition: 3,
        offset: 1 << 40,
    }
}

/// One of every frame type.
fn samples() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            token: Some("s3cret".into()),
            client: "weir-cli/0.1".into(),
        },
        Frame::Hello {
            version: 9,
            token: None,
            client: String::new(),
        },
        Frame::HelloOk {
            version: 1,
            server: "weir 0.1.0".into(),
        },
        Frame::Error {
            code: ErrorCode::Forbidden,
            message: "token may not produce to orders".into(),
        },
        Frame::Error {
            code: ErrorCode::Unknown(999),
            message: String::new(),
        },
        Frame::Ok,
        Frame::CreateTopic(spec()),
        Frame::CreateTopic(TopicSpec {
            flush: FlushMode::Durable,
            retention_bytes: Some(1 << 30),
            ..spec()
        }),
        Frame::DeleteTopic { name: "t".into() },
        Frame::ListTopics,
        Frame::DescribeTopic {
            name: "a-b_c.d".into(),
        },
        Frame::TopicList(vec![TopicInfo {
            spec: TopicSpec {
                flush: FlushMode::None,
                ..spec()
            },
            partitions: vec![
                PartitionInfo {
                    start_offset: 5,
                    end_offset: 10,
                    bytes: 4096
                };
                3
            ],
            chain: vec![AttachmentInfo {
                plugin: "topic-exchange".into(),
                version: 2,
                config: r#"{"bindings": []}"#.into(),
                on_error: FailurePolicy::DeadLetter,
            }],
        }]),
        Frame::PutPlugin {
            name: "fanout".into(),
            wasm: Bytes::from_static(b"\0asm\x0d\0\x01\0"),
        },
        Frame::PluginStored(PluginInfo {
            name: "fanout".into(),
            version: 3,
            bytes: 8,
            sha256: [7; 32],
        }),
        Frame::ListPlugins,
        Frame::PluginList(vec![PluginInfo {
            name: "x".into(),
            version: 1,
            bytes: 1,
            sha256: [0; 32],
        }]),
        Frame::DeletePlugin { name: "x".into() },
        Frame::Attach {
            topic: "in".into(),
            plugin: "json-filter".into(),
            config: "{}".into(),
            on_error: FailurePolicy::Bypass,
            position: Some(0),
        },
        Frame::Detach {
            topic: "in".into(),
            plugin: "json-filter".into(),
        },
        Frame::Produce {
            seq: 42,
            topic: "in".into(),
            acks: Acks::Durable,
            partition: None,
            batch: Bytes::from_static(b"batch bytes"),
        },
        Frame::ProduceAck {
            seq: 42,
            outcomes: vec![
                MessageOutcome::Stored(vec![
                    placement(),
                    Placement {
                        partition: 0,
                        ..placement()
                    },
                ]),
                MessageOutcome::Dropped("level is debug".into()),
                MessageOutcome::Rejected("no route".into()),
                MessageOutcome::Duplicate(placement()),
                // Three in a row: one run.
                MessageOutcome::Stored(vec![placement()]),
                MessageOutcome::Stored(vec![Placement {
                    offset: (1 << 40) + 1,
                    ..placement()
                }]),
                MessageOutcome::Stored(vec![Placement {
                    offset: (1 << 40) + 2,
                    ..placement()
                }]),
            ]
            .into(),
        },
        Frame::ProduceError {
            seq: 7,
            code: ErrorCode::NotFound,
            message: "no topic nope".into(),
        },
        Frame::Subscribe {
            topic: "in".into(),
            partition: Some(2),
            from: StartAt::Timestamp(-5),
        },
        Frame::Subscribe {
            topic: "in".into(),
            partition: None,
            from: StartAt::Offset(9),
        },
        Frame::Subscribe {
            topic: "in".into(),
            partition: None,
            from: StartAt::Earliest,
        },
        Frame::Subscribe {
            topic: "in".into(),
            partition: None,
            from: StartAt::Latest,
        },
        Frame::SubscribeAt {
            topic: "in".into(),
            positions: vec![(3, 0), (0, u64::MAX)],
        },
        Frame::Subscribed {
            partitions: vec![(0, 10), (1, 0)],
        },
        Frame::Credit {
            messages: 1000,
            bytes: 1 << 20,
        },
        Frame::Delivery {
            partition: 1,
            next_offset: 77,
            end_offset: 80,
            batches: Bytes::from_static(b"stored"),
        },
        Frame::GetMessage {
            topic: "orders".into(),
            key: Bytes::from_static(b"order-4711"),
        },
        Frame::MessageFound {
            partition: 2,
            offset: 1 << 33,
            batch: Bytes::from_static(b"one batch"),
        },
        Frame::JoinGroup {
            group: "billing".into(),
            topic: "orders".into(),
            member: "worker-1 on host-a".into(),
            prefetch: 100,
            options: GroupOptions {
                mode: Some(GroupMode::Queue),
                start: Some(StartAt::Timestamp(1_700_000_000_000)),
                ack_wait_ms: Some(30_000),
                max_deliveries: Some(16),
                backoff_ms: Some(vec![1000, 5000]),
                ordered: Some(true),
            },
        },
        Frame::JoinGroup {
            group: "g".into(),
            topic: "t".into(),
            member: String::new(),
            prefetch: 0,
            options: GroupOptions::default(),
        },
        Frame::Assignment {
            generation: 3,
            mode: GroupMode::Stream,
            partitions: vec![(0, 5), (2, 9)],
        },
        Frame::Commit {
            generation: 3,
            offsets: vec![(2, 10)],
        },
        Frame::Ack {
            generation: 1,
            messages: vec![(0, 1), (0, 2), (3, 1 << 40)],
        },
        Frame::Nack {
            generation: 1,
            partition: 0,
            offset: 4,
            delay_ms: Some(250),
            error: "database down".into(),
        },
        Frame::QueueDelivery {
            generation: 1,
            partition: 0,
            messages: vec![(4, 2), (7, 1)],
            batches: Bytes::from_static(b"stored"),
        },
        Frame::ListGroups,
        Frame::DescribeGroup {
            group: "billing".into(),
        },
        Frame::GroupList(vec![GroupInfo {
            name: "billing".into(),
            mode: GroupMode::Queue,
            ack_wait_ms: 30_000,
            max_deliveries: 16,
            backoff_ms: vec![1000, 5000],
            ordered: false,
            topics: vec![GroupTopicInfo {
                topic: "orders".into(),
                generation: 2,
                members: vec![MemberInfo {
                    name: "w1".into(),
                    partitions: vec![0, 1],
                    in_flight: 3,
                }],
                partitions: vec![GroupPartitionInfo {
                    partition: 0,
                    committed: 10,
                    end: 20,
                    lag: 9,
                    in_flight: 3,
                    redelivered: 4,
                    dead_lettered: 1,
                }],
            }],
        }]),
        Frame::SeekGroup {
            group: "billing".into(),
            topic: "orders".into(),
            to: StartAt::Offset(42),
        },
    ]
}

#[test]
fn every_frame_type_round_trips() {
    let mut seen = std::collections::HashSet::new();
    for frame in samples() {
        let encoded = frame.encode().expect("valid frame encodes");
        let bytes = Bytes::from(encoded.to_vec());
        let (back, used) = Frame::decode_from(&bytes).expect("decodes").expect("whole");
        assert_eq!(used, bytes.len());
        assert_eq!(back, frame);
        seen.insert(frame.kind());
        // Any strict prefix is incomplete, never an error or a panic.
        for cut in 0..bytes.len() {
            assert_eq!(
                Frame::decode_from(&bytes.slice(..cut)),
                Ok(None),
                "{:?} cut at {cut}",
                frame.kind()
            );
        }
    }
    assert_eq!(seen.len(), 36, "a sample of every frame type");
}

#[test]
fn bulk_fields_are_slices_of_the_body() {
    let frame = Frame::Produce {
        seq: 1,
        topic: "t".into(),
        acks: Acks::Stored,
        partition: None,
        batch: Bytes::from(vec![9u8; 1000]),
    };
    let bytes = Bytes::from(frame.encode().expect("encode").to_vec());
    let Some((Frame::Produce { batch, .. }, _)) = Frame::decode_from(&bytes).expect("decode")
    else {
        panic!("not a produce");
    };
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(
        range.contains(&(batch.as_ptr() as usize)),
        "the batch was copied"
    );
}

#[test]
fn lengths_are_bounded_by_frame_type_before_reading() {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    prefix[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    prefix[4] = FrameType::Credit as u8;
    assert!(matches!(
        FrameHeader::parse(prefix),
        Err(FrameError::FrameTooLarge { kind: "credit", .. })
    ));
    prefix[4] = FrameType::Produce as u8;
    assert!(matches!(
        FrameHeader::parse(prefix),
        Err(FrameError::FrameTooLarge {
            kind: "produce",
            ..
        })
    ));
    prefix[..4].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(FrameHeader::parse(prefix).expect("fits").body_len, 1000);
    prefix[4] = 0xee;
    assert_eq!(
        FrameHeader::parse(prefix),
        Err(FrameError::UnknownType(0xee))
    );
}

#[test]
fn consecutive_stored_outcomes_travel_as_one_run() {
    let at = |partition: u32, offset: u64| {
        MessageOutcome::Stored(vec![Placement {
            topic: "t".into(),
            partition,
            offset,
        }])
    };
    let each = vec![
        at(0, 5),
        at(0, 6),
        at(0, 7),
        // A gap, another partition, then something else: new entries.
        at(0, 9),
        at(1, 10),
        MessageOutcome::Dropped("no".into()),
        at(1, 11),
        at(1, 12),
    ];
    let outcomes = Outcomes::from(each.clone());
    assert_eq!(outcomes.len(), 8);
    assert_eq!(outcomes.iter().collect::<Vec<_>>(), each);
    let frame = Frame::ProduceAck { seq: 1, outcomes };
    let encoded = frame.encode().expect("encode");
    // Runs of 3, 1, 1, one drop and a run of 2: five entries, not eight.
    let body = Bytes::from(encoded.head[FRAME_PREFIX_LEN..].to_vec());
    assert_eq!(
        u32::from_le_bytes([body[8], body[9], body[10], body[11]]),
        5
    );
    let Frame::ProduceAck { outcomes, .. } =
        Frame::decode(FrameType::ProduceAck, body).expect("decode")
    else {
        panic!("not a produce-ack");
    };
    assert_eq!(outcomes.iter().collect::<Vec<_>>(), each);
}

#[test]
fn hostile_runs_are_refused() {
    let run = |count: u32, offset: u64| {
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend(1u32.to_le_bytes());
        body.push(4);
        body.extend(count.to_le_bytes());
        body.extend(1u16.to_le_bytes());
        body.push(b't');
        body.extend(0u32.to_le_bytes());
        body.extend(offset.to_le_bytes());
        Frame::decode(FrameType::ProduceAck, Bytes::from(body))
    };
    assert!(run(3, 7).is_ok());
    // An empty run, one past the last offset, one longer than a batch.
    assert!(matches!(run(0, 7), Err(FrameError::Invalid { .. })));
    assert!(matches!(run(2, u64::MAX), Err(FrameError::Invalid { .. })));
    assert!(matches!(run(u32::MAX, 0), Err(FrameError::TooMany { .. })));
}

#[test]
fn list_counts_cannot_outgrow_the_frame() {
    // A topic list claiming 100 000 topics in a 4-byte body.
    let body = Bytes::from(100_000u32.to_le_bytes().to_vec());
    assert!(matches!(
        Frame::decode(FrameType::TopicList, body),
        Err(FrameError::Truncated { what: "topics", .. })
    ));
    let body = Bytes::from(u32::MAX.to_le_bytes().to_vec());
    assert!(matches!(
        Frame::decode(FrameType::PluginList, body),
        Err(FrameError::TooMany { .. })
    ));
}

#[test]
fn names_and_fields_are_validated_both_ways() {
    for bad in ["", "has space", "slash/y", "ünï", &"x".repeat(250)] {
        let frame = Frame::DeleteTopic {
            name: bad.to_string(),
        };
        assert!(frame.encode().is_err(), "encoded {bad:?}");
        let mut w = wire::Writer::default();
        w.str(bad);
        assert!(
            Frame::decode(FrameType::DeleteTopic, Bytes::from(w.buf)).is_err(),
            "decoded {bad:?}"
        );
    }
    let zero_partitions = Frame::CreateTopic(TopicSpec {
        partitions: 0,
        ..spec()
    });
    let bytes = Bytes::from(
        zero_partitions
            .encode()
            .expect("encoder does not judge counts")
            .to_vec(),
    );
    assert!(matches!(
        Frame::decode_from(&bytes),
        Err(FrameError::Invalid {
            what: "partitions",
            ..
        })
    ));
    let mut trailing = Frame::Ok.encode().expect("ok").to_vec();
    trailing.push(0);
    trailing[0] = 1;
    assert!(matches!(
        Frame::decode_from(&Bytes::from(trailing)),
        Err(FrameError::TrailingBytes {
            kind: "ok",
            extra: 1
        })
    ));
}

#[test]
fn lookup_keys_are_bounded_both_ways() {
    use crate::limits::MAX_ID_BYTES;
    let longest = Frame::GetMessage {
        topic: "t".into(),
        key: Bytes::from(vec![b'k'; MAX_ID_BYTES]),
    };
    assert!(longest.encode().is_ok());
    for bad in [Bytes::new(), Bytes::from(vec![b'k'; MAX_ID_BYTES + 1])] {
        let frame = Frame::GetMessage {
            topic: "t".into(),
            key: bad.clone(),
        };
        let encoded = frame.encode();
        assert!(
            matches!(
                encoded,
                Err(FrameError::Invalid {
                    what: "message id",
                    ..
                })
            ),
            "encoded {} bytes",
            bad.len()
        );
        let mut w = wire::Writer::default();
        w.str("t");
        w.u16(bad.len() as u16);
        w.buf.extend_from_slice(&bad);
        assert!(
            Frame::decode(FrameType::GetMessage, Bytes::from(w.buf)).is_err(),
            "decoded {} bytes",
            bad.len()
        );
    }
    // A length that runs past the body.
    let mut w = wire::Writer::default();
    w.str("t");
    w.u16(10);
    w.buf.extend_from_slice(b"abc");
    assert!(matches!(
        Frame::decode(FrameType::GetMessage, Bytes::from(w.buf)),
        Err(FrameError::Truncated { .. })
    ));
}

#[test]
fn long_reasons_are_cut_not_refused() {
    let frame = Frame::Error {
        code: ErrorCode::Internal,
        message: "é".repeat(MAX_REASON_BYTES),
    };
    let bytes = Bytes::from(frame.encode().expect("encodes").to_vec());
    let Some((Frame::Error { message, .. }, _)) = Frame::decode_from(&bytes).expect("decodes")
    else {
        panic!("not an error frame");
    };
    assert!(message.len() <= MAX_REASON_BYTES && message.chars().all(|c| c == 'é'));
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(kind in 0u8..=0x5f, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(kind) = FrameType::from_u8(kind) {
            let _ = Frame::decode(kind, Bytes::from(body));
        }
    }

    #[test]
    fn damaged_frames_never_panic(index in 0usize..31, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let frame = &samples()[index];
        let mut bytes = frame.encode().map_err(|e| TestCaseError::fail(e.to_string()))?.to_vec();
        let body_len = bytes.len() - FRAME_PREFIX_LEN;
        if body_len > 0 {
            for (at, value) in edits {
                bytes[FRAME_PREFIX_LEN + at.index(body_len)] = value;
            }
        }
        let _ = Frame::decode_from(&Bytes::from(bytes));
    }
}
