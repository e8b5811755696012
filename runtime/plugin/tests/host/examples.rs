//! Every example plugin, compiled for wasm32-wasip2, on real batches through
//! the real host.

use crate::common::{attach, context, host, keyed, payload, with_headers};
use weir_plugin::{Chain, Message, Outcome, Partition, Routing};

fn run(plugin: &str, config: &str, partitions: u32, messages: &[Message]) -> Vec<Outcome> {
    let host = host();
    let chain = Chain::new(vec![attach(&host, plugin, config)]);
    let run = chain.run(&context(partitions), messages);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    run.outcomes
}

fn topics(outcome: &Outcome) -> Option<Vec<&str>> {
    match outcome {
        Outcome::Accept(Routing {
            topics: Some(t), ..
        }) => Some(t.iter().map(String::as_str).collect()),
        _ => None,
    }
}

fn dropped(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Drop { .. })
}

#[test]
fn kafka_partitioner_matches_kafkas_default_partitioner() {
    // Hashes from Kafka's UtilsTest.testMurmur2; partition = toPositive(hash) % n.
    let vectors: [(&str, i32); 4] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("abc", 479_470_107),
    ];
    for partitions in [1u32, 3, 12, 50] {
        let messages: Vec<Message> = vectors.iter().map(|(k, _)| keyed(k)).collect();
        let outcomes = run("kafka-partitioner", "", partitions, &messages);
        for ((key, hash), outcome) in vectors.iter().zip(&outcomes) {
            let want = (*hash as u32 & 0x7fff_ffff) % partitions;
            match outcome {
                Outcome::Accept(Routing {
                    partition: Some(Partition::Index(p)),
                    ..
                }) => {
                    assert_eq!(*p, want, "key {key} over {partitions} partitions")
                }
                other => panic!("key {key}: {other:?}"),
            }
        }
    }
    let unkeyed = run("kafka-partitioner", "", 3, &[payload("x")]);
    assert_eq!(unkeyed, vec![Outcome::Accept(Routing::default())]);
}

#[test]
fn topic_exchange_routes_by_pattern_with_fan_out() {
    let config = r##"{"routing_key": {"header": "rk"}, "bindings": [
        {"pattern": "orders.*.eu", "topic": "eu-orders"},
        {"pattern": "orders.#", "topic": "all-orders"}]}"##;
    let outcomes = run(
        "topic-exchange",
        config,
        1,
        &[
            with_headers(&[("rk", "orders.new.eu")]),
            with_headers(&[("rk", "orders.us")]),
            with_headers(&[("rk", "x")]),
        ],
    );
    assert_eq!(topics(&outcomes[0]), Some(vec!["eu-orders", "all-orders"]));
    assert_eq!(topics(&outcomes[1]), Some(vec!["all-orders"]));
    assert!(dropped(&outcomes[2]));

    let by_key = run(
        "topic-exchange",
        r#"{"routing_key": "key", "bindings": [{"pattern": "*.eu", "topic": "eu"}]}"#,
        1,
        &[keyed("de.eu"), keyed("de.us")],
    );
    assert_eq!(topics(&by_key[0]), Some(vec!["eu"]));
    assert!(dropped(&by_key[1]));
}

#[test]
fn headers_exchange_matches_all_or_any() {
    let config = r#"{"bindings": [
        {"match": "all", "headers": {"format": "pdf", "type": "report"}, "topic": "reports"},
        {"match": "any", "headers": {"format": "pdf"}, "topic": "pdfs"}]}"#;
    let outcomes = run(
        "headers-exchange",
        config,
        1,
        &[
            with_headers(&[("format", "pdf"), ("type", "report")]),
            with_headers(&[("format", "pdf")]),
            with_headers(&[("format", "zip")]),
        ],
    );
    assert_eq!(topics(&outcomes[0]), Some(vec!["reports", "pdfs"]));
    assert_eq!(topics(&outcomes[1]), Some(vec!["pdfs"]));
    assert!(dropped(&outcomes[2]));
}

#[test]
fn fanout_copies_to_every_topic() {
    let outcomes = run(
        "fanout",
        r#"{"topics": ["a", "b", "c"]}"#,
        1,
        &[payload("x"), payload("y")],
    );
    for outcome in &outcomes {
        assert_eq!(topics(outcome), Some(vec!["a", "b", "c"]));
    }
}

#[test]
fn json_filter_keeps_matching_payloads() {
    let config = r#"{"keep": "all", "where": [
        {"field": "/level", "op": "in", "value": ["warn", "error"]},
        {"field": "/latency_ms", "op": ">", "value": 100},
        {"field": "/user", "op": "exists"}]}"#;
    let outcomes = run(
        "json-filter",
        config,
        1,
        &[
            payload(r#"{"level": "error", "latency_ms": 101, "user": "u1"}"#),
            payload(r#"{"level": "info", "latency_ms": 500, "user": "u1"}"#),
            payload("not json"),
        ],
    );
    assert_eq!(outcomes[0], Outcome::Accept(Routing::default()));
    assert!(dropped(&outcomes[1]));
    assert!(dropped(&outcomes[2]));
}

#[test]
fn json_filter_config_errors_reach_the_host() {
    let host = host();
    let plugin = host
        .compile("json-filter", &crate::common::plugin_bytes("json-filter"))
        .expect("compiles");
    let config = r#"{"where": [{"field": "/a", "op": "like", "value": 1}]}"#;
    let error = host
        .attach(plugin, config, Default::default())
        .expect_err("unknown op");
    assert!(
        error
            .to_string()
            .contains("where[0].op: unknown op \"like\""),
        "{error}"
    );
}

#[test]
fn tag_filter_keeps_listed_tags() {
    let outcomes = run(
        "tag-filter",
        r#"{"header": "tags", "expression": "TagA || TagB"}"#,
        1,
        &[
            with_headers(&[("tags", "TagA")]),
            with_headers(&[("tags", "TagC")]),
            with_headers(&[]),
        ],
    );
    assert_eq!(outcomes[0], Outcome::Accept(Routing::default()));
    assert!(dropped(&outcomes[1]));
    assert!(dropped(&outcomes[2]));
}

#[test]
fn dedup_by_field_sets_the_business_id() {
    let outcomes = run(
        "dedup-by-field",
        r#"{"field": "/order_id"}"#,
        1,
        &[
            payload(r#"{"order_id": "o-1"}"#),
            payload(r#"{"other": 1}"#),
        ],
    );
    assert_eq!(
        outcomes[0],
        Outcome::Accept(Routing {
            dedup_key: Some(b"o-1".to_vec()),
            ..Routing::default()
        })
    );
    assert_eq!(outcomes[1], Outcome::Accept(Routing::default()));
}

#[test]
fn noop_passes_everything() {
    let outcomes = run("noop", "", 1, &[payload("a"), keyed("b")]);
    assert_eq!(outcomes, vec![Outcome::Accept(Routing::default()); 2]);
}
