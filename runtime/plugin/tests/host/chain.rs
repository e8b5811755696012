//! Chain semantics with real plugins: patch order, drop and reject
//! short-circuit, failure policies, hot swap with a batch in flight.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{attach, attach_with, context, host, host_with, keyed, payload};
use weir_plugin::{Chain, FailurePolicy, Limits, Outcome, Partition, Routing};

#[test]
fn patches_apply_in_order_and_later_plugins_see_added_headers() {
    let host = host();
    let chain = Chain::new(vec![
        attach(&host, "fanout", r#"{"topics": ["first"]}"#),
        // Adds `tags: TagA` to messages whose payload is `tag:TagA`.
        attach(&host, "test-hostile", ""),
        attach(&host, "tag-filter", r#"{"expression": "TagA"}"#),
        attach(&host, "fanout", r#"{"topics": ["second", "third"]}"#),
    ]);
    let run = chain.run(&context(1), &[payload("tag:TagA"), payload("tag:TagB")]);
    assert!(run.errors.is_empty());
    match &run.outcomes[0] {
        Outcome::Accept(routing) => {
            assert_eq!(
                routing.topics,
                Some(vec!["second".to_string(), "third".to_string()])
            );
            assert_eq!(routing.added_headers.len(), 1);
            assert_eq!(routing.added_headers[0].value, b"TagA");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&run.outcomes[1], Outcome::Drop { plugin, .. } if plugin == "tag-filter"));
}

#[test]
fn drop_stops_the_chain_for_that_message() {
    let host = host();
    let filter = attach(
        &host,
        "json-filter",
        r#"{"where": [{"field": "/keep", "op": "==", "value": true}]}"#,
    );
    let dedup = attach(&host, "dedup-by-field", r#"{"field": "/id"}"#);
    let partitioner = attach(&host, "kafka-partitioner", "");
    let chain = Chain::new(vec![
        Arc::clone(&filter),
        Arc::clone(&dedup),
        Arc::clone(&partitioner),
    ]);
    let mut kept = keyed("foobar");
    kept.payload = br#"{"keep": true, "id": "a"}"#.to_vec();
    let run = chain.run(
        &context(50),
        &[kept, payload(r#"{"keep": false, "id": "b"}"#)],
    );
    assert_eq!(
        run.outcomes[0],
        Outcome::Accept(Routing {
            partition: Some(Partition::Index(16)),
            dedup_key: Some(b"a".to_vec()),
            ..Routing::default()
        })
    );
    assert!(matches!(run.outcomes[1], Outcome::Drop { .. }));
    // The dropped message never reached the later plugins.
    assert_eq!(filter.counters().messages, 2);
    assert_eq!(dedup.counters().messages, 1);
    assert_eq!(partitioner.counters().messages, 1);
    assert_eq!(filter.counters().drops, 1);
}

#[test]
fn failure_policies_decide_the_batch() {
    let host = host();
    let tail = || attach(&host, "fanout", r#"{"topics": ["after"]}"#);
    let messages = [payload("ok"), payload("panic")];

    let reject = Chain::new(vec![
        attach_with(&host, "test-hostile", "", FailurePolicy::Reject),
        tail(),
    ]);
    let run = reject.run(&context(1), &messages);
    assert_eq!(run.errors.len(), 1);
    assert!(
        run.outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Reject { plugin, .. } if plugin == "test-hostile"))
    );

    let dead_letter = Chain::new(vec![
        attach_with(&host, "test-hostile", "", FailurePolicy::DeadLetter),
        tail(),
    ]);
    let run = dead_letter.run(&context(1), &messages);
    assert!(
        run.outcomes
            .iter()
            .all(|o| matches!(o, Outcome::DeadLetter { error, .. } if error.contains("panicked")))
    );

    let bypass = Chain::new(vec![
        attach_with(&host, "test-hostile", "", FailurePolicy::Bypass),
        tail(),
    ]);
    let run = bypass.run(&context(1), &messages);
    assert_eq!(run.errors.len(), 1);
    for outcome in &run.outcomes {
        assert!(
            matches!(outcome, Outcome::Accept(Routing { topics: Some(t), .. }) if t == &["after".to_string()])
        );
    }
}

#[test]
fn swap_is_atomic_and_batches_in_flight_finish_on_the_old_chain() {
    let host = host_with(Limits {
        call_timeout: Duration::from_secs(20),
        ..Limits::default()
    });
    let old = attach(&host, "test-hostile", "");
    let chain = Arc::new(Chain::new(vec![Arc::clone(&old)]));
    let snapshot = chain.attachments();
    let baseline = Arc::strong_count(&snapshot);

    let runner = {
        let chain = Arc::clone(&chain);
        std::thread::spawn(move || chain.run(&context(1), &[payload("slow")]))
    };
    // The runner holds the chain it loaded; wait until it has.
    while Arc::strong_count(&snapshot) == baseline {
        std::thread::yield_now();
    }
    let new = attach(&host, "fanout", r#"{"topics": ["v2"]}"#);
    chain.swap(vec![Arc::clone(&new)]);

    let in_flight = runner.join().expect("runner thread");
    assert_eq!(
        in_flight.outcomes,
        vec![Outcome::Accept(Routing::default())],
        "finished on the old chain"
    );
    let after = chain.run(&context(1), &[payload("x")]);
    assert!(
        matches!(&after.outcomes[0], Outcome::Accept(Routing { topics: Some(t), .. }) if t == &["v2".to_string()])
    );
    assert_eq!(old.counters().batches, 1);
    assert_eq!(new.counters().batches, 1);
}

#[test]
fn upgrade_keeps_config_policy_and_counters() {
    let host = host();
    let v1 = attach_with(
        &host,
        "fanout",
        r#"{"topics": ["a"]}"#,
        FailurePolicy::DeadLetter,
    );
    let chain = Chain::new(vec![Arc::clone(&v1)]);
    chain.run(&context(1), &[payload("x")]);
    let v2_plugin = host
        .compile("fanout-v2", &crate::common::plugin_bytes("fanout"))
        .expect("compiles");
    let v2 = Arc::new(v1.upgrade(v2_plugin).expect("init runs"));
    chain.swap(vec![Arc::clone(&v2)]);
    chain.run(&context(1), &[payload("y")]);
    assert_eq!(v2.plugin_name(), "fanout-v2");
    assert_eq!(v2.policy(), FailurePolicy::DeadLetter);
    assert_eq!(v2.config(), r#"{"topics": ["a"]}"#);
    assert_eq!(v2.counters().batches, 2);
}

#[test]
fn counters_add_up() {
    let host = host();
    let filter = attach(&host, "tag-filter", r#"{"expression": "A"}"#);
    let chain = Chain::new(vec![Arc::clone(&filter)]);
    let a = crate::common::with_headers(&[("tags", "A")]);
    let b = crate::common::with_headers(&[("tags", "B")]);
    chain.run(&context(1), &[a.clone(), b.clone(), a]);
    chain.run(&context(1), &[b]);
    let c = filter.counters();
    assert_eq!(
        (
            c.batches, c.messages, c.passes, c.drops, c.rejects, c.errors
        ),
        (2, 4, 2, 2, 0, 0)
    );
    assert!(c.busy_ns > 0);
}

#[test]
fn chains_and_attachments_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Chain>();
    assert_send_sync::<weir_plugin::Attachment>();
    assert_send_sync::<weir_plugin::PluginHost>();
    assert_send_sync::<weir_plugin::CompiledPlugin>();
}
