//! Hostile plugins against the real host: each fault is a typed error that
//! names the limit, the host survives it, and the next batch runs on a fresh
//! instance.

use std::time::{Duration, Instant};

use crate::common::{attach, context, host_with, payload, plugin_bytes};
use weir_plugin::{Limits, PluginError, PluginHost, Verdict};

fn limits() -> Limits {
    Limits {
        call_timeout: Duration::from_millis(100),
        init_timeout: Duration::from_millis(200),
        memory_bytes_max: 16 << 20,
        ..Limits::default()
    }
}

/// Runs `bad` then a good batch; returns the error and checks recovery.
fn fault_then_recover(host: &PluginHost, bad: &str) -> PluginError {
    let attachment = attach(host, "test-hostile", "");
    let error = attachment
        .run_batch(&context(4), &[payload("ok"), payload(bad)])
        .expect_err("the batch must fail");
    let verdicts = attachment
        .run_batch(&context(4), &[payload("ok")])
        .expect("the next batch runs");
    assert!(matches!(verdicts.as_slice(), [Verdict::Pass]));
    let counters = attachment.counters();
    assert_eq!(counters.errors, 1);
    assert_eq!(
        counters.instances,
        if error.discards_instance() { 2 } else { 1 },
        "{error}"
    );
    error
}

#[test]
fn infinite_loop_times_out_within_the_deadline() {
    let host = host_with(limits());
    let started = Instant::now();
    let error = fault_then_recover(&host, "loop");
    assert!(matches!(error, PluginError::Timeout { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("test-hostile") && error.to_string().contains("100ms"),
        "{error}"
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "oom");
    match &error {
        PluginError::MemoryLimit {
            limit_bytes,
            requested_bytes,
            ..
        } => {
            assert_eq!(*limit_bytes, 16 << 20);
            assert!(requested_bytes > limit_bytes);
        }
        other => panic!("expected a memory limit error, got {other}"),
    }
}

#[test]
fn deep_recursion_overflows_the_wasm_stack_not_the_host() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "recurse");
    assert!(
        matches!(error, PluginError::StackOverflow { limit_bytes, .. } if limit_bytes == 512 << 10),
        "{error}"
    );
}

#[test]
fn shadow_stack_overflow_is_a_trap() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "recurse-shadow");
    assert!(
        matches!(&error, PluginError::Trap { trap, .. } if trap.contains("out of bounds")),
        "{error}"
    );
}

#[test]
fn panic_is_a_trap_that_quotes_the_guest() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "panic");
    match &error {
        PluginError::Trap {
            guest_message: Some(message),
            ..
        } => {
            assert!(
                message.contains("hostile plugin panicked on purpose"),
                "{message}"
            );
        }
        other => panic!("expected a trap with the panic message, got {other}"),
    }
}

#[test]
fn too_many_verdicts_is_invalid_output() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "flood");
    assert!(
        error
            .to_string()
            .contains("returned 3 verdicts for 2 messages"),
        "{error}"
    );
}

#[test]
fn oversized_header_is_invalid_output() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "big-header");
    assert!(
        error
            .to_string()
            .contains("header value of 1048576 exceeds the limit"),
        "{error}"
    );
}

#[test]
fn partition_outside_the_topic_is_invalid_output() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "bad-partition");
    assert!(
        error.to_string().contains("partition 4 out of range"),
        "{error}"
    );
}

#[test]
fn guest_error_keeps_the_instance() {
    let host = host_with(limits());
    let error = fault_then_recover(&host, "error");
    assert!(
        matches!(&error, PluginError::Guest { message, .. } if message == "guest refused the batch"),
        "{error}"
    );
}

#[test]
fn init_error_refuses_the_attachment() {
    let host = host_with(limits());
    let plugin = host
        .compile("test-hostile", &plugin_bytes("test-hostile"))
        .expect("compiles");
    let error = host
        .attach(plugin, "fail", Default::default())
        .expect_err("init must fail");
    assert!(
        error
            .to_string()
            .contains("init refused the config: config says fail"),
        "{error}"
    );
}

#[test]
fn unknown_contract_version_is_refused() {
    let host = host_with(limits());
    let error = host
        .compile("future", &plugin_bytes("test-future-contract"))
        .expect_err("must be refused");
    match &error {
        PluginError::UnsupportedContract {
            found, supported, ..
        } => {
            assert_eq!(found, "9.0.0");
            assert_eq!(*supported, "0.1.0");
        }
        other => panic!("expected an unsupported contract error, got {other}"),
    }
}

#[test]
fn core_modules_and_garbage_are_refused() {
    let host = host_with(limits());
    let error = host
        .compile("core", b"\0asm\x01\0\0\0")
        .expect_err("core module");
    assert!(
        error.to_string().contains("not a WebAssembly component"),
        "{error}"
    );
    assert!(host.compile("junk", b"\0asm\x0d\0\x01\0garbage").is_err());
}

#[test]
fn one_hostile_instance_does_not_disturb_another() {
    let host = host_with(limits());
    let bad = attach(&host, "test-hostile", "");
    let good = attach(&host, "test-hostile", "");
    assert!(bad.run_batch(&context(1), &[payload("panic")]).is_err());
    assert!(good.run_batch(&context(1), &[payload("ok")]).is_ok());
    assert_eq!(good.counters().instances, 1);
}

#[test]
fn init_that_never_returns_times_out() {
    let host = host_with(limits());
    let plugin = host
        .compile("test-hostile", &plugin_bytes("test-hostile"))
        .expect("compiles");
    let started = Instant::now();
    let error = host
        .attach(plugin, "init-loop", Default::default())
        .expect_err("init must time out");
    assert!(
        matches!(error, PluginError::Timeout { deadline, .. } if deadline == Duration::from_millis(200)),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn log_flood_is_capped_not_fatal() {
    let host = host_with(Limits {
        call_timeout: Duration::from_secs(5),
        ..limits()
    });
    let attachment = attach(&host, "test-hostile", "");
    let verdicts = attachment
        .run_batch(&context(1), &[payload("log-flood")])
        .expect("logging never fails a call");
    assert!(matches!(verdicts.as_slice(), [Verdict::Pass]));
}

#[test]
fn guest_sees_an_empty_deterministic_world() {
    let host = host_with(limits());
    let probe = || {
        let attachment = attach(&host, "test-hostile", "");
        match attachment
            .run_batch(&context(1), &[payload("probe")])
            .expect("probe runs")
            .remove(0)
        {
            Verdict::Patch(patch) => patch
                .add_headers
                .into_iter()
                .map(|h| (h.name, String::from_utf8_lossy(&h.value).into_owned()))
                .collect::<Vec<_>>(),
            other => panic!("expected a patch, got {other:?}"),
        }
    };
    let first = probe();
    let get = |name: &str| {
        first
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("now-ns"), Some("0"), "wall clock frozen");
    assert_eq!(get("env"), Some("0"), "no environment");
    assert_eq!(get("args"), Some("0"), "no arguments");
    assert_eq!(get("files"), Some("none"), "no preopened directories");
    assert_eq!(
        probe(),
        first,
        "randomness is seeded, so a fresh instance sees the same"
    );
}

#[test]
fn oversized_component_and_config_are_refused_before_running() {
    let host = host_with(Limits {
        component_bytes_max: 1024,
        config_bytes_max: 8,
        ..limits()
    });
    let error = host
        .compile("noop", &plugin_bytes("noop"))
        .expect_err("component too large");
    assert!(
        matches!(
            error,
            PluginError::TooLarge {
                what: "component",
                limit: 1024,
                ..
            }
        ),
        "{error}"
    );

    let host = host_with(Limits {
        config_bytes_max: 8,
        ..limits()
    });
    let plugin = host
        .compile("noop", &plugin_bytes("noop"))
        .expect("compiles");
    let error = host
        .attach(plugin, "123456789", Default::default())
        .expect_err("config too large");
    assert!(
        error
            .to_string()
            .contains("config of 9 bytes exceeds the limit of 8 bytes"),
        "{error}"
    );
}

#[test]
fn a_batch_larger_than_the_memory_cap_fails_alone() {
    let host = host_with(limits());
    let attachment = attach(&host, "noop", "");
    let huge: Vec<_> = (0..20).map(|_| payload(&"x".repeat(1 << 20))).collect();
    let error = attachment
        .run_batch(&context(1), &huge)
        .expect_err("20 MiB cannot enter a 16 MiB guest");
    assert!(matches!(error, PluginError::MemoryLimit { .. }), "{error}");
    assert!(
        attachment
            .run_batch(&context(1), &[payload("small")])
            .is_ok()
    );
}
