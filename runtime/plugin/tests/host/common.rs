//! Shared helpers for the host's tests: finding the compiled plugins that
//! `scripts/build-plugins` produced, and building messages.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use weir_plugin::{
    Attachment, BatchContext, FailurePolicy, Header, HostConfig, Limits, Message, PluginHost,
};

/// Where `scripts/build-plugins` copies the components.
pub fn plugins_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("WEIR_PLUGINS_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("plugins")
}

/// The bytes of a compiled plugin. Fails (never skips) when it is missing.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugins_dir().join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => panic!(
            "cannot read {} ({e}); run scripts/build-plugins first to build the example plugins for wasm32-wasip2",
            path.display()
        ),
    }
}

pub fn host() -> PluginHost {
    host_with(Limits::default())
}

pub fn host_with(limits: Limits) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: None,
        limits,
    })
    .expect("host starts")
}

pub fn attach(host: &PluginHost, name: &str, config: &str) -> Arc<Attachment> {
    attach_with(host, name, config, FailurePolicy::Reject)
}

pub fn attach_with(
    host: &PluginHost,
    name: &str,
    config: &str,
    policy: FailurePolicy,
) -> Arc<Attachment> {
    let plugin = host
        .compile(name, &plugin_bytes(name))
        .expect("plugin compiles");
    Arc::new(
        host.attach(plugin, config, policy)
            .expect("plugin attaches"),
    )
}

pub fn context(partitions: u32) -> BatchContext {
    BatchContext {
        topic: "in".to_string(),
        partitions,
    }
}

pub fn payload(payload: &str) -> Message {
    Message {
        key: None,
        headers: vec![],
        payload: payload.as_bytes().to_vec(),
        timestamp_ms: 0,
    }
}

pub fn keyed(key: &str) -> Message {
    Message {
        key: Some(key.as_bytes().to_vec()),
        headers: vec![],
        payload: b"{}".to_vec(),
        timestamp_ms: 0,
    }
}

pub fn with_headers(headers: &[(&str, &str)]) -> Message {
    let headers = headers
        .iter()
        .map(|(n, v)| Header {
            name: n.to_string(),
            value: v.as_bytes().to_vec(),
        })
        .collect();
    Message {
        key: None,
        headers,
        payload: vec![],
        timestamp_ms: 0,
    }
}
