//! The compiled-artefact cache: a second load is a cache hit, a damaged
//! file is recompiled rather than trusted.

use crate::common::plugin_bytes;
use weir_plugin::{HostConfig, LoadSource, PluginHost};

fn host(dir: &std::path::Path) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..HostConfig::default()
    })
    .expect("host starts")
}

fn cached_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn second_load_is_a_cache_hit_even_in_a_new_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = plugin_bytes("noop");
    let first = host(dir.path()).compile("noop", &bytes).expect("compiles");
    assert_eq!(first.source(), LoadSource::Compiled);
    assert_eq!(cached_files(dir.path()).len(), 1);

    let restarted = host(dir.path());
    let second = restarted.compile("noop", &bytes).expect("loads");
    assert_eq!(second.source(), LoadSource::Cache);
    assert_eq!(second.digest(), first.digest());
    // The cached artefact is a working plugin.
    restarted
        .attach(second, "", Default::default())
        .expect("attaches from cache");
}

#[test]
fn damaged_cache_file_is_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = plugin_bytes("noop");
    host(dir.path()).compile("noop", &bytes).expect("compiles");
    let file = cached_files(dir.path()).remove(0);
    let mut artefact = std::fs::read(&file).expect("read");
    let middle = artefact.len() / 2;
    artefact[middle] ^= 0xff;
    std::fs::write(&file, artefact).expect("write");

    let again = host(dir.path())
        .compile("noop", &bytes)
        .expect("recompiles");
    assert_eq!(again.source(), LoadSource::Compiled);
    assert_eq!(
        host(dir.path())
            .compile("noop", &bytes)
            .expect("loads")
            .source(),
        LoadSource::Cache
    );
}

#[test]
fn different_components_get_different_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(dir.path());
    host.compile("noop", &plugin_bytes("noop"))
        .expect("compiles");
    host.compile("fanout", &plugin_bytes("fanout"))
        .expect("compiles");
    assert_eq!(cached_files(dir.path()).len(), 2);
}

#[test]
fn hosts_compiling_the_same_plugin_at_once_leave_a_good_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = plugin_bytes("noop");
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| host(dir.path()).compile("noop", &bytes).expect("compiles"));
        }
    });
    assert_eq!(
        cached_files(dir.path()).len(),
        1,
        "no temporary files left behind"
    );
    assert_eq!(
        host(dir.path())
            .compile("noop", &bytes)
            .expect("loads")
            .source(),
        LoadSource::Cache
    );
}
