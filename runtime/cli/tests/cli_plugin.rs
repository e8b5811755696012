//! `weir plugin test` and `weir plugin new` as a plugin author uses them,
//! with no node: the example plugins built by `scripts/build-plugins` run in
//! the real host on sample messages, and a scaffolded crate builds for
//! wasm32-wasip2 and runs the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// An example plugin's component. Fails (never skips) when it is missing.
fn plugin(name: &str) -> PathBuf {
    let dir = std::env::var("WEIR_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
                .join("plugins")
        });
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing; run scripts/build-plugins first to build the example plugins",
        path.display()
    );
    path
}

/// Runs `weir` with `stdin` and returns its output.
fn weir(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(WEIR)
        .args(args)
        .env_remove("WEIR_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("weir finishes")
}

fn plugin_test(plugin: &Path, extra: &[&str], stdin: &str) -> Output {
    let mut args = vec!["plugin", "test", plugin.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    weir(&args, stdin)
}

/// stdout as JSON lines.
fn outcomes(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one `weir: ...` line a failed command prints.
fn error_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let err = stderr(output);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("weir: ")).collect();
    assert_eq!(lines.len(), 1, "one error line, got: {err}");
    lines[0].to_string()
}

const LEVELS: &str =
    r#"{"keep": "all", "where": [{"field": "/level", "op": "in", "value": ["warn", "error"]}]}"#;

#[test]
fn json_filter_keeps_and_drops_per_config() {
    let input = "{\"payload\": {\"level\": \"error\", \"msg\": \"disk full\"}}\n\
                 {\"payload\": {\"level\": \"info\"}}\n\
                 \n\
                 {\"key\": \"k\", \"headers\": {\"h\": \"v\"}, \"payload\": \"not json\"}\n\
                 {\"payload\": \"{\\\"level\\\": \\\"warn\\\"}\"}\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, input).expect("write input");

    let from_file = plugin_test(
        &plugin("json-filter"),
        &["--config", LEVELS, "--input", file.to_str().expect("utf-8")],
        "",
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    let from_stdin = plugin_test(&plugin("json-filter"), &["--config", LEVELS], input);
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert_eq!(
        from_file.stdout, from_stdin.stdout,
        "--input and stdin read the same"
    );

    let lines = outcomes(&from_file);
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|l| l["verdict"].as_str().expect("verdict"))
        .collect();
    assert_eq!(verdicts, ["accept", "drop", "drop", "accept"], "{lines:?}");
    let indices: Vec<u64> = lines
        .iter()
        .map(|l| l["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indices, [0, 1, 2, 3], "blank lines are not messages");
    assert_eq!(lines[0]["topics"], serde_json::json!(["test"]));
    assert_eq!(lines[0]["reason"], Value::Null);
    assert!(
        lines[1]["reason"]
            .as_str()
            .expect("reason")
            .contains("/level"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2]["reason"]
            .as_str()
            .expect("reason")
            .contains("not JSON"),
        "{}",
        lines[2]
    );

    // Another config, another verdict on the same messages.
    let info = r#"{"keep": "all", "where": [{"field": "/level", "op": "==", "value": "info"}]}"#;
    let lines = outcomes(&plugin_test(
        &plugin("json-filter"),
        &["--config", info],
        input,
    ));
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|l| l["verdict"].as_str().expect("verdict"))
        .collect();
    assert_eq!(verdicts, ["drop", "accept", "drop", "drop"]);
}

#[test]
fn topic_exchange_prints_topics() {
    let config = r#"{"routing_key": "key", "bindings": [
        {"pattern": "orders.*.eu", "topic": "eu-orders"},
        {"pattern": "orders.#", "topic": "all-orders"}]}"#;
    let input = "{\"key\": \"orders.new.eu\", \"payload\": \"a\"}\n\
                 {\"key\": \"orders.paid\", \"payload\": \"b\"}\n\
                 {\"key\": \"stock.low\", \"payload\": \"c\"}\n";
    let output = plugin_test(
        &plugin("topic-exchange"),
        &["--config", config, "--topic", "orders", "--partitions", "3"],
        input,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = outcomes(&output);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["verdict"], "accept");
    assert_eq!(
        lines[0]["topics"],
        serde_json::json!(["eu-orders", "all-orders"])
    );
    assert_eq!(lines[1]["topics"], serde_json::json!(["all-orders"]));
    assert_eq!(lines[2]["verdict"], "drop", "unroutable: {}", lines[2]);
    assert_eq!(lines[2]["topics"], serde_json::json!([]));
}

#[test]
fn kafka_partitioner_prints_partitions() {
    let input = "{\"key\": \"a\", \"payload\": \"x\"}\n{\"key\": \"b\", \"payload\": \"y\"}\n";
    let output = plugin_test(&plugin("kafka-partitioner"), &["--partitions", "4"], input);
    assert!(output.status.success(), "{}", stderr(&output));
    for line in outcomes(&output) {
        let partition = line["partition"]
            .as_u64()
            .unwrap_or_else(|| panic!("a partition: {line}"));
        assert!(partition < 4, "{line}");
    }
}

#[test]
fn a_hostile_plugin_gives_reject_lines_and_one_error() {
    // One message per batch: the looping batch is rejected, the next one
    // runs on a fresh instance.
    let input = "{\"payload\": \"loop\"}\n{\"payload\": \"fine\"}\n";
    let output = plugin_test(&plugin("test-hostile"), &["--batch", "1"], input);
    let error = error_line(&output);
    assert!(error.contains("1 of 2 messages were rejected"), "{error}");
    assert!(error.contains("time limit"), "{error}");
    let lines = outcomes(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["verdict"], "reject");
    assert!(
        lines[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("time limit"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["verdict"], "accept");

    // In one batch, the whole batch is rejected: the chain's failure
    // policy is reject.
    let output = plugin_test(&plugin("test-hostile"), &[], input);
    error_line(&output);
    let verdicts: Vec<Value> = outcomes(&output)
        .into_iter()
        .map(|l| l["verdict"].clone())
        .collect();
    assert_eq!(verdicts, ["reject", "reject"]);

    // A panic: the guest's message, without the wasm backtrace.
    let output = plugin_test(&plugin("test-hostile"), &[], "{\"payload\": \"panic\"}\n");
    let error = error_line(&output);
    assert!(
        error.contains("panicked on purpose") && !error.contains("<wasm function"),
        "{error}"
    );
}

#[test]
fn bad_configs_inputs_and_files_are_one_line_errors() {
    let output = plugin_test(
        &plugin("json-filter"),
        &["--config", "{not json"],
        "{\"payload\": 1}\n",
    );
    let error = error_line(&output);
    assert!(
        error.starts_with("weir: plugin json-filter: init refused the config"),
        "{error}"
    );
    assert!(output.stdout.is_empty());

    let output = plugin_test(&plugin("test-hostile"), &["--config", "fail"], "");
    assert!(error_line(&output).contains("config says fail"));

    let output = plugin_test(
        &plugin("json-filter"),
        &["--config", LEVELS],
        "{\"payload\": 1}\nnot json\n",
    );
    let error = error_line(&output);
    assert!(
        error.contains("standard input: line 2: not JSON"),
        "{error}"
    );

    let output = plugin_test(&plugin("noop"), &["--topic", "no spaces"], "");
    assert!(error_line(&output).contains("topic name"));

    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").expect("write");
    let error = error_line(&plugin_test(&junk, &[], ""));
    assert!(error.contains("not a WebAssembly component"), "{error}");
    let error = error_line(&plugin_test(&dir.path().join("missing.wasm"), &[], ""));
    assert!(error.contains("cannot read"), "{error}");

    let error = error_line(&plugin_test(&plugin("test-future-contract"), &[], ""));
    assert!(error.contains("contract"), "{error}");
}

#[test]
fn help_describes_both_commands() {
    let help = weir(&["plugin", "test", "--help"], "");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("\"verdict\"") && text.contains("--partitions"),
        "{text}"
    );
    let help = weir(&["plugin", "new", "--help"], "");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("cargo build --release --target wasm32-wasip2"),
        "{text}"
    );
}

#[test]
fn new_refuses_bad_names_and_used_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("p");
    let target = target.to_str().expect("utf-8");
    let error = error_line(&weir(&["plugin", "new", "bad name", "--dir", target], ""));
    assert!(error.contains("allowed are"), "{error}");
    let long = "x".repeat(250);
    assert!(error_line(&weir(&["plugin", "new", &long, "--dir", target], "")).contains("249"));
    assert!(
        !Path::new(target).exists(),
        "nothing written for a bad name"
    );

    std::fs::create_dir(target).expect("mkdir");
    std::fs::write(Path::new(target).join("keep.txt"), b"mine").expect("write");
    let error = error_line(&weir(&["plugin", "new", "ok", "--dir", target], ""));
    assert!(error.contains("not empty"), "{error}");
    assert_eq!(
        std::fs::read_dir(target).expect("read").count(),
        1,
        "nothing added"
    );
}

/// Where the scaffold is built: one directory under target/ shared by every
/// run, so only the first run compiles the SDK.
fn scaffold_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-scaffold")
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {} failed in {}:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_scaffold_builds_for_wasm_and_runs_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crate_dir = dir.path().join("audit");
    let output = weir(
        &[
            "plugin",
            "new",
            "acme.audit",
            "--dir",
            crate_dir.to_str().expect("utf-8"),
        ],
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("guest-sdk\" }"),
        "depends on this checkout's SDK by path:\n{manifest}"
    );
    for file in ["README.md", "src/lib.rs", "samples.jsonl", ".gitignore"] {
        assert!(crate_dir.join(file).exists(), "{file}");
    }
    // Pin the SDK's dependencies to the versions this workspace tests.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .expect("copy Cargo.lock");

    // Exactly the README's commands.
    cargo(
        &crate_dir,
        &[
            "build",
            "-j2",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
    );
    cargo(&crate_dir, &["test", "-j2", "--quiet"]);

    let wasm = scaffold_target_dir().join("wasm32-wasip2/release/acme_audit.wasm");
    assert!(
        wasm.exists(),
        "the build leaves a component at {}",
        wasm.display()
    );
    let samples = crate_dir.join("samples.jsonl");
    let output = plugin_test(
        &wasm,
        &[
            "--config",
            "10",
            "--input",
            samples.to_str().expect("utf-8"),
        ],
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = outcomes(&output);
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|l| l["verdict"].as_str().expect("verdict"))
        .collect();
    assert_eq!(verdicts, ["accept", "drop", "reject"], "{lines:?}");
    assert_eq!(
        lines[0]["headers"],
        serde_json::json!({"checked-by": "acme.audit"})
    );

    let error = error_line(&plugin_test(&wasm, &["--config", "lots"], ""));
    assert!(
        error.contains("init refused the config") && error.contains("\"lots\""),
        "{error}"
    );
}
