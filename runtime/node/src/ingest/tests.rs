//! Ingest driven directly, without sockets, with the real example plugins
//! that `scripts/build-plugins` builds.

use std::path::{Path, PathBuf};

use weir_plugin::{HostConfig, PluginHost};
use weir_proto::frame::{FailurePolicy, FlushMode, MessageOutcome, Placement, TopicSpec};
use weir_proto::{BatchBuilder, BatchView, NewRecord};

use super::*;
use crate::config::NodeConfig;

fn plugin_bytes(name: &str) -> Vec<u8> {
    let dir = std::env::var("WEIR_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
                .join("plugins")
        });
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run scripts/build-plugins first to build the example plugins",
            path.display()
        )
    })
}

fn open(dir: &Path) -> Shared {
    std::fs::create_dir_all(dir).expect("mkdir");
    let config = NodeConfig {
        data_dir: dir.to_path_buf(),
        ..NodeConfig::default()
    };
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(dir.join("plugin-cache")),
        ..HostConfig::default()
    })
    .expect("host");
    Shared::open(config, host).expect("open")
}

fn topic(shared: &Shared, name: &str, partitions: u32) -> Arc<Topic> {
    dedup_topic(shared, name, partitions, 0)
}

fn dedup_topic(shared: &Shared, name: &str, partitions: u32, window_ms: u64) -> Arc<Topic> {
    shared
        .create_topic(TopicSpec {
            name: name.into(),
            partitions,
            retention_ms: None,
            retention_bytes: None,
            flush: FlushMode::None,
            dedup_window_ms: window_ms,
        })
        .expect("create");
    shared.topic(name).expect("exists")
}

struct Msg<'a> {
    key: Option<&'a str>,
    headers: Vec<(&'a str, &'a [u8])>,
    payload: &'a str,
}

fn msg(payload: &str) -> Msg<'_> {
    Msg {
        key: None,
        headers: vec![],
        payload,
    }
}

fn batch(messages: &[Msg<'_>]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for m in messages {
        b.push(&NewRecord {
            timestamp_ms: 1_000,
            key: m.key.map(str::as_bytes),
            headers: &m.headers,
            payload: m.payload.as_bytes(),
            ..NewRecord::default()
        })
        .expect("push");
    }
    b.finish().expect("finish")
}

fn stored(outcome: &MessageOutcome) -> Vec<(String, u32)> {
    match outcome {
        MessageOutcome::Stored(places) => places
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect(),
        other => panic!("expected stored, got {other:?}"),
    }
}

fn payloads(t: &Topic, partition: usize) -> Vec<String> {
    let log = &t.partitions[partition].log;
    let mut out = Vec::new();
    let fetched = log.read(0, 1 << 20).expect("read");
    let mut buf = &fetched.batches[..];
    while !buf.is_empty() {
        let view = BatchView::parse(buf).expect("batch");
        for r in view.records() {
            out.push(String::from_utf8_lossy(r.expect("record").payload).into_owned());
        }
        buf = &buf[view.header().batch_len as usize..];
    }
    out
}

#[test]
fn without_a_chain_keys_hash_like_kafka_and_unchanged_batches_are_stored_verbatim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = open(dir.path());
    let t = topic(&shared, "plain", 4);
    let bytes = batch(&[
        Msg {
            key: Some("foobar"),
            headers: vec![],
            payload: "a",
        },
        Msg {
            key: Some("foobar"),
            headers: vec![],
            payload: "b",
        },
    ]);
    let done = ingest(&shared, &t, &bytes, None, 0).expect("ingest");
    // toPositive(murmur2("foobar")) % 4 = 1357151166 % 4 = 2.
    assert_eq!(stored(&done.each()[0]), [("plain".to_string(), 2)]);
    assert_eq!(
        done.each()[1],
        MessageOutcome::Stored(vec![Placement {
            topic: "plain".into(),
            partition: 2,
            offset: 1
        }])
    );
    let fetched = t.partitions[2].log.read(0, 1 << 20).expect("read");
    assert_eq!(
        &fetched.batches[weir_proto::BATCH_HEADER_LEN..],
        &bytes[weir_proto::BATCH_HEADER_LEN..],
        "records not re-encoded"
    );

    // Keyless records of one batch stick to one partition; an explicit
    // partition wins over the key.
    let done = ingest(
        &shared,
        &t,
        &batch(&[msg("x"), msg("y"), msg("z")]),
        None,
        0,
    )
    .expect("ingest");
    let first = stored(&done.each()[0]);
    assert!(done.each().iter().all(|o| stored(o) == first));
    let done = ingest(
        &shared,
        &t,
        &batch(&[Msg {
            key: Some("foobar"),
            headers: vec![],
            payload: "p",
        }]),
        Some(3),
        0,
    )
    .expect("ingest");
    assert_eq!(stored(&done.each()[0]), [("plain".to_string(), 3)]);

    let err = ingest(&shared, &t, &bytes, Some(4), 0).expect_err("no partition 4");
    assert!(
        err.message.contains("partition 4 does not exist"),
        "{}",
        err.message
    );
    let mut broken = bytes.clone();
    broken.truncate(bytes.len() - 1);
    let err = ingest(&shared, &t, &broken, None, 0).expect_err("malformed");
    assert_eq!(err.code, ErrorCode::Malformed);
}

#[test]
fn topic_exchange_fans_a_stream_out_by_pattern() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = open(dir.path());
    let input = topic(&shared, "orders", 1);
    let eu = topic(&shared, "eu-orders", 1);
    let all = topic(&shared, "all-orders", 2);
    shared
        .put_plugin("topic-exchange", &plugin_bytes("topic-exchange"))
        .expect("upload");
    let config = r#"{"routing_key": {"header": "rk"}, "bindings": [
        {"pattern": "orders.*.eu", "topic": "eu-orders"}, {"pattern": "orders.#", "topic": "all-orders"}]}"#;
    shared
        .attach(
            "orders",
            "topic-exchange",
            config,
            FailurePolicy::Reject,
            None,
        )
        .expect("attach");

    let bytes = batch(&[
        Msg {
            key: None,
            headers: vec![("rk", b"orders.new.eu")],
            payload: "1",
        },
        Msg {
            key: None,
            headers: vec![("rk", b"orders.new.us")],
            payload: "2",
        },
        Msg {
            key: None,
            headers: vec![("rk", b"invoices.x")],
            payload: "3",
        },
    ]);
    let done = ingest(&shared, &input, &bytes, None, 0).expect("ingest");
    let mut first = stored(&done.each()[0]);
    first.sort();
    assert_eq!(
        first.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["all-orders", "eu-orders"]
    );
    assert_eq!(
        stored(&done.each()[1])
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>(),
        ["all-orders"]
    );
    assert!(
        matches!(done.each()[2], MessageOutcome::Dropped(_)),
        "{:?}",
        done.each()[2]
    );
    assert_eq!(payloads(&eu, 0), ["1"]);
    let mut in_all: Vec<String> = (0..2).flat_map(|p| payloads(&all, p)).collect();
    in_all.sort();
    assert_eq!(in_all, ["1", "2"]);
    assert!(
        payloads(&input, 0).is_empty(),
        "routed messages do not stay in the input topic"
    );
}

#[test]
fn json_filter_drops_and_kafka_partitioner_groups_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = open(dir.path());
    let logs = topic(&shared, "logs", 3);
    shared
        .put_plugin("json-filter", &plugin_bytes("json-filter"))
        .expect("upload");
    shared
        .put_plugin("kafka-partitioner", &plugin_bytes("kafka-partitioner"))
        .expect("upload");
    let filter = r#"{"keep": "all", "where": [{"field": "/level", "op": "in", "value": ["warn", "error"]}]}"#;
    shared
        .attach("logs", "json-filter", filter, FailurePolicy::Reject, None)
        .expect("attach");
    shared
        .attach("logs", "kafka-partitioner", "", FailurePolicy::Reject, None)
        .expect("attach");

    let messages: Vec<Msg<'_>> = [
        ("svc-a", r#"{"level":"warn"}"#),
        ("svc-b", r#"{"level":"debug"}"#),
        ("svc-a", r#"{"level":"error"}"#),
    ]
    .into_iter()
    .map(|(k, p)| Msg {
        key: Some(k),
        headers: vec![],
        payload: p,
    })
    .collect();
    let done = ingest(&shared, &logs, &batch(&messages), None, 0).expect("ingest");
    assert!(matches!(done.each()[1], MessageOutcome::Dropped(_)));
    let a = stored(&done.each()[0]);
    assert_eq!(a, stored(&done.each()[2]), "equal keys share a partition");
    assert_eq!(a[0].1, weir_proto::partition::kafka_partition(b"svc-a", 3));
}

#[test]
fn a_failing_plugin_dead_letters_and_routing_to_nowhere_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = open(dir.path());
    let t = topic(&shared, "risky", 1);
    shared
        .put_plugin("test-hostile", &plugin_bytes("test-hostile"))
        .expect("upload");
    shared
        .attach("risky", "test-hostile", "", FailurePolicy::DeadLetter, None)
        .expect("attach");
    let done = ingest(&shared, &t, &batch(&[msg("ok"), msg("panic")]), None, 0).expect("ingest");
    for o in &done.each() {
        assert_eq!(stored(o), [("risky.dlq".to_string(), 0)]);
    }
    assert_eq!(
        payloads(&shared.topic("risky.dlq").expect("dlq"), 0),
        ["ok", "panic"]
    );
    // The next batch gets a fresh instance.
    let done = ingest(&shared, &t, &batch(&[msg("fine")]), None, 0).expect("ingest");
    assert_eq!(stored(&done.each()[0]), [("risky".to_string(), 0)]);

    let fan = topic(&shared, "fan", 1);
    shared
        .put_plugin("fanout", &plugin_bytes("fanout"))
        .expect("upload");
    shared
        .attach(
            "fan",
            "fanout",
            r#"{"topics": ["missing"]}"#,
            FailurePolicy::Reject,
            None,
        )
        .expect("attach");
    let done = ingest(&shared, &fan, &batch(&[msg("m")]), None, 0).expect("ingest");
    assert!(
        matches!(&done.each()[0], MessageOutcome::Rejected(r) if r.contains("\"missing\"")),
        "{:?}",
        done.each()[0]
    );
}

#[test]
fn new_plugin_versions_swap_in_and_everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let shared = open(dir.path());
        let t = topic(&shared, "src", 1);
        topic(&shared, "a", 1);
        topic(&shared, "b", 1);
        shared
            .put_plugin("router", &plugin_bytes("fanout"))
            .expect("v1");
        shared
            .attach(
                "src",
                "router",
                r#"{"topics": ["a"]}"#,
                FailurePolicy::Reject,
                Some(0),
            )
            .expect("attach");
        ingest(&shared, &t, &batch(&[msg("1")]), None, 0).expect("ingest");
        // Version 2 is a different component: the topic exchange, whose
        // config the fanout config is not; the swap is refused whole.
        let err = shared
            .put_plugin("router", &plugin_bytes("topic-exchange"))
            .expect_err("config does not fit");
        assert!(err.to_string().contains("refuses its config"), "{err}");
        assert_eq!(shared.list_plugins()[0].version, 1);
        // Uploading the same bytes again is not a new version.
        assert_eq!(
            shared
                .put_plugin("router", &plugin_bytes("fanout"))
                .expect("same")
                .version,
            1
        );
        assert!(
            shared
                .delete_plugin("router")
                .expect_err("attached")
                .to_string()
                .contains("detach it first")
        );
    }
    let shared = open(dir.path());
    let described = shared.describe(Some("src")).expect("describe");
    assert_eq!(described[0].chain[0].plugin, "router");
    let t = shared.topic("src").expect("src");
    ingest(&shared, &t, &batch(&[msg("2")]), None, 0).expect("ingest after reopen");
    assert_eq!(payloads(&shared.topic("a").expect("a"), 0), ["1", "2"]);
    shared.detach("src", "router").expect("detach");
    shared.delete_plugin("router").expect("delete");
    assert!(shared.list_plugins().is_empty());
    shared.delete_topic("b").expect("delete topic");
    assert!(shared.topic("b").is_err());
    drop(shared);
    let shared = open(dir.path());
    assert!(shared.topic("b").is_err());
    assert!(
        shared
            .topic("src")
            .expect("src")
            .chain
            .attachments()
            .is_empty()
    );
}

#[test]
fn a_new_version_takes_over_the_next_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = open(dir.path());
    let src = topic(&shared, "src", 1);
    let a = topic(&shared, "a", 1);
    // v1 passes everything (it ignores this config); v2 is the fanout.
    shared
        .put_plugin("router", &plugin_bytes("test-hostile"))
        .expect("v1");
    shared
        .attach(
            "src",
            "router",
            r#"{"topics": ["a"]}"#,
            FailurePolicy::Reject,
            None,
        )
        .expect("attach");
    ingest(&shared, &src, &batch(&[msg("before")]), None, 0).expect("ingest");
    let in_flight = src.chain.attachments();
    assert_eq!(
        shared
            .put_plugin("router", &plugin_bytes("fanout"))
            .expect("v2")
            .version,
        2
    );
    ingest(&shared, &src, &batch(&[msg("after")]), None, 0).expect("ingest");
    assert_eq!(payloads(&src, 0), ["before"]);
    assert_eq!(payloads(&a, 0), ["after"]);
    assert_eq!(
        shared.describe(Some("src")).expect("describe")[0].chain[0].version,
        2
    );
    // A batch that loaded the chain before the swap still holds version 1.
    assert_eq!(in_flight.len(), 1);
    assert_ne!(
        in_flight[0].plugin().digest(),
        src.chain.attachments()[0].plugin().digest()
    );
}

/// Records with producer ids, all at timestamp `ts`.
fn with_ids(ids: &[&str], ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for id in ids {
        let payload = format!("payload of {id}");
        b.push(&NewRecord {
            timestamp_ms: ts,
            id: Some(id.as_bytes()),
            payload: payload.as_bytes(),
            ..NewRecord::default()
        })
        .expect("push");
    }
    b.finish().expect("finish")
}

fn placement(o: &MessageOutcome) -> Placement {
    match o {
        MessageOutcome::Stored(places) => places[0].clone(),
        MessageOutcome::Duplicate(p) => p.clone(),
        other => panic!("expected stored or duplicate, got {other:?}"),
    }
}

#[test]
fn producer_ids_are_stored_once_within_the_window_even_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = crate::state::now_ms();
    let ids: Vec<String> = (0..100).map(|i| format!("id-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let first = {
        let shared = open(dir.path());
        let t = dedup_topic(&shared, "orders", 3, 120_000);
        let first = ingest(&shared, &t, &with_ids(&ids, now), None, now).expect("ingest");
        assert!(
            first
                .each()
                .iter()
                .all(|o| matches!(o, MessageOutcome::Stored(_)))
        );
        let again = ingest(&shared, &t, &with_ids(&ids, now), None, now + 1_000).expect("ingest");
        for (a, b) in first.each().iter().zip(&again.each()) {
            assert!(matches!(b, MessageOutcome::Duplicate(_)), "{b:?}");
            assert_eq!(placement(a), placement(b), "a duplicate names the original");
        }
        // Repeats inside one batch: the first is stored, the rest point at it.
        let mixed = ingest(
            &shared,
            &t,
            &with_ids(&["new-1", "new-1", "id-5", "new-2"], now),
            None,
            now,
        )
        .expect("ingest");
        assert!(matches!(mixed.each()[0], MessageOutcome::Stored(_)));
        assert_eq!(
            mixed.each()[1],
            MessageOutcome::Duplicate(placement(&mixed.each()[0]))
        );
        assert_eq!(placement(&mixed.each()[2]), placement(&first.each()[5]));
        assert!(matches!(mixed.each()[3], MessageOutcome::Stored(_)));
        let stored: u64 = t.partitions.iter().map(|p| p.log.end_offset()).sum();
        assert_eq!(stored, 102);
        first
    };
    // The window is rebuilt from the records after a restart.
    let shared = open(dir.path());
    let t = shared.topic("orders").expect("orders");
    let after = ingest(&shared, &t, &with_ids(&ids, now), None, now + 2_000).expect("ingest");
    for (a, b) in first.each().iter().zip(&after.each()) {
        assert_eq!(*b, MessageOutcome::Duplicate(placement(a)));
    }
    // Past the window the same id is new again.
    let late = now + 120_001;
    let expired = ingest(&shared, &t, &with_ids(&["id-1"], late), None, late).expect("ingest");
    assert!(matches!(expired.each()[0], MessageOutcome::Stored(_)));
}

#[test]
fn a_plugin_chosen_business_key_deduplicates_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = crate::state::now_ms();
    let orders = |ids: &[(&str, &str)]| {
        let mut b = BatchBuilder::new();
        for (id, order) in ids {
            let payload = format!(r#"{{"order_id": "{order}"}}"#);
            b.push(&NewRecord {
                timestamp_ms: now,
                id: Some(id.as_bytes()),
                payload: payload.as_bytes(),
                ..NewRecord::default()
            })
            .expect("push");
        }
        b.finish().expect("finish")
    };
    {
        let shared = open(dir.path());
        let t = dedup_topic(&shared, "payments", 2, 60_000);
        shared
            .put_plugin("dedup-by-field", &plugin_bytes("dedup-by-field"))
            .expect("upload");
        shared
            .attach(
                "payments",
                "dedup-by-field",
                r#"{"field": "/order_id"}"#,
                FailurePolicy::Reject,
                None,
            )
            .expect("attach");
        // Two producer ids, one business id: the second is a duplicate.
        let done = ingest(
            &shared,
            &t,
            &orders(&[("a", "o-1"), ("b", "o-1"), ("c", "o-2")]),
            None,
            now,
        )
        .expect("ingest");
        assert!(matches!(done.each()[0], MessageOutcome::Stored(_)));
        assert_eq!(
            done.each()[1],
            MessageOutcome::Duplicate(placement(&done.each()[0]))
        );
        assert!(matches!(done.each()[2], MessageOutcome::Stored(_)));
        let p = placement(&done.each()[0]);
        let fetched = t.partitions[p.partition as usize]
            .log
            .read(p.offset, 1 << 20)
            .expect("read");
        let view = BatchView::parse(&fetched.batches).expect("batch");
        let stored = view
            .records()
            .flatten()
            .find(|r| r.offset == p.offset)
            .expect("record");
        assert_eq!(
            stored.dedup_key,
            Some(&b"o-1"[..]),
            "the key is stored with the record"
        );
    }
    let shared = open(dir.path());
    let t = shared.topic("payments").expect("payments");
    let done = ingest(&shared, &t, &orders(&[("z", "o-2")]), None, now + 10).expect("ingest");
    assert!(
        matches!(done.each()[0], MessageOutcome::Duplicate(_)),
        "{:?}",
        done.each()[0]
    );
}

#[test]
fn topics_without_a_window_store_every_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = open(dir.path());
    let t = dedup_topic(&shared, "raw", 1, 0);
    ingest(&shared, &t, &with_ids(&["x", "x"], 0), None, 0).expect("ingest");
    ingest(&shared, &t, &with_ids(&["x"], 0), None, 0).expect("ingest");
    assert_eq!(t.partitions[0].log.end_offset(), 3);
}
