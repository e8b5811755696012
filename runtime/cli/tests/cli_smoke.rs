//! The `weir` binary as a person or script uses it: a node started by
//! `weir serve`, then `topic create`, `produce`, `consume --count`, trust
//! by the default `./weir-data/cert.pem`, and one-line errors.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// A `weir serve` child in a temporary directory; killed when dropped.
struct Serve {
    child: Child,
    addr: String,
    fingerprint: String,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(WEIR)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let (mut addr, mut fingerprint) = (String::new(), String::new());
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("serve output");
        if let Some(a) = line.strip_prefix("weir: listening on ") {
            addr = a.trim().to_string();
        }
        if let Some(f) = line.strip_prefix("weir: certificate fingerprint (sha256) ") {
            fingerprint = f.trim().to_string();
            break;
        }
    }
    assert!(
        !addr.is_empty() && fingerprint.len() == 64,
        "serve printed its address and fingerprint"
    );
    Serve {
        child,
        addr,
        fingerprint,
        dir,
    }
}

fn weir(dir: &Path, server: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(WEIR)
        .args(args)
        .current_dir(dir)
        .env("WEIR_SERVER", server)
        .env_remove("WEIR_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("weir exits")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got {:?}",
        out.status
    );
    let stderr = String::from_utf8(out.stderr.clone()).expect("utf-8 stderr");
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("weir: "), "one clear line: {stderr}");
    last
}

#[test]
fn topic_create_produce_and_consume() {
    let node = serve();
    let dir = node.dir.path();
    let s = node.addr.as_str();

    let created = ok(&weir(
        dir,
        s,
        &[
            "topic",
            "create",
            "smoke",
            "--partitions",
            "2",
            "--retention",
            "7d",
        ],
        "",
    ));
    assert!(created.contains("created topic smoke"), "{created}");
    let listed = ok(&weir(dir, s, &["topic", "list"], ""));
    assert!(listed.lines().any(|l| l.starts_with("smoke ")), "{listed}");

    ok(&weir(
        dir,
        s,
        &["produce", "smoke", "--key", "same", "--header", "src=cli"],
        "one\ntwo\nthree\n",
    ));
    ok(&weir(
        dir,
        s,
        &["produce", "smoke", "--format", "json"],
        "{\"key\":\"same\",\"payload\":\"four\",\"id\":\"m4\"}\n",
    ));

    let raw = ok(&weir(dir, s, &["consume", "smoke", "--count", "4"], ""));
    assert_eq!(
        raw.lines().collect::<Vec<_>>(),
        vec!["one", "two", "three", "four"],
        "one key: one partition, in order"
    );

    let json = ok(&weir(
        dir,
        s,
        &["consume", "smoke", "--count", "4", "--format", "json"],
        "",
    ));
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 4, "{json}");
    for field in [
        "\"topic\":\"smoke\"",
        "\"offset\":1",
        "\"key\":\"same\"",
        "\"headers\":{\"src\":\"cli\"}",
        "\"payload\":\"two\"",
        "\"timestamp\":\"20",
    ] {
        assert!(lines[1].contains(field), "{field} in {}", lines[1]);
    }
    assert!(lines[3].contains("\"id\":\"m4\""), "{}", lines[3]);
    let partition = if lines[0].contains("\"partition\":0") {
        "0"
    } else {
        "1"
    };
    let from_offset = ok(&weir(
        dir,
        s,
        &[
            "consume",
            "smoke",
            "--partition",
            partition,
            "--from",
            "offset:2",
            "--count",
            "1",
        ],
        "",
    ));
    assert_eq!(from_offset, "three\n");

    // Acks none: nothing is confirmed, but closing waits until the node
    // has the messages.
    ok(&weir(
        dir,
        s,
        &["topic", "create", "fire", "--flush", "none"],
        "",
    ));
    ok(&weir(
        dir,
        s,
        &["produce", "fire", "--acks", "none"],
        "a\nb\n",
    ));
    let fired = ok(&weir(dir, s, &["consume", "fire", "--count", "2"], ""));
    assert_eq!(fired, "a\nb\n");

    // Trust by explicit fingerprint or certificate works from anywhere.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let cert = dir.join("weir-data/cert.pem");
    ok(&weir(
        elsewhere.path(),
        s,
        &[
            "topic",
            "describe",
            "smoke",
            "--fingerprint",
            &node.fingerprint,
        ],
        "",
    ));
    ok(&weir(
        elsewhere.path(),
        s,
        &[
            "topic",
            "list",
            "--cert",
            cert.to_str().expect("utf-8 path"),
        ],
        "",
    ));
}

#[test]
fn message_get_finds_by_id_or_fails_on_one_line() {
    let node = serve();
    let dir = node.dir.path();
    let s = node.addr.as_str();

    ok(&weir(
        dir,
        s,
        &["topic", "create", "lookups", "--partitions", "2"],
        "",
    ));
    ok(&weir(
        dir,
        s,
        &["produce", "lookups", "--format", "json"],
        "{\"payload\":\"first\",\"id\":\"a-1\"}\n{\"key\":\"k\",\"payload\":\"second\",\"id\":\"a-2\"}\n",
    ));
    let raw = ok(&weir(
        dir,
        s,
        &["message", "get", "lookups", "--id", "a-2"],
        "",
    ));
    assert_eq!(raw, "second\n");
    let json = ok(&weir(
        dir,
        s,
        &[
            "message", "get", "lookups", "--id", "a-1", "--format", "json",
        ],
        "",
    ));
    for field in [
        "\"topic\":\"lookups\"",
        "\"payload\":\"first\"",
        "\"id\":\"a-1\"",
        "\"offset\":",
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }
    assert_eq!(json.lines().count(), 1, "{json}");

    let out = weir(dir, s, &["message", "get", "lookups", "--id", "nope"], "");
    let line = failed(&out);
    assert!(
        line.starts_with("weir: not found: no message with id \"nope\" in topic \"lookups\""),
        "{line}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout for a miss");
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let node = serve();
    let dir = node.dir.path();
    let s = node.addr.as_str();

    let line = failed(&weir(dir, s, &["topic", "describe", "missing"], ""));
    assert!(line.starts_with("weir: not found"), "{line}");

    let wrong = "00".repeat(32);
    let line = failed(&weir(
        dir,
        s,
        &["topic", "list", "--fingerprint", &wrong],
        "",
    ));
    assert!(
        line.starts_with("weir: certificate fingerprint mismatch: expected 0000"),
        "{line}"
    );
    assert!(line.contains(&node.fingerprint), "{line}");

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let line = failed(&weir(elsewhere.path(), s, &["topic", "list"], ""));
    assert!(
        line.contains("--fingerprint"),
        "says how to trust the node: {line}"
    );

    let line = failed(&weir(dir, s, &["produce", "missing"], "x\n"));
    assert!(line.contains("not stored"), "{line}");

    for help in [
        &["--help"][..],
        &["topic", "create", "--help"],
        &["consume", "--help"],
        &["message", "get", "--help"],
        &["serve", "--help"],
    ] {
        ok(&weir(dir, s, help, ""));
    }
}

#[cfg(unix)]
#[test]
fn serve_stops_gracefully_on_sigterm() {
    let mut node = serve();
    let pid = node.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = node.child.wait().expect("serve exits");
    assert!(
        exit.success(),
        "serve exits cleanly after SIGTERM: {exit:?}"
    );
}
