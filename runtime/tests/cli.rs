//! The `wharf` binary end to end, without external services: config errors
//! are reported before anything starts, a restart resumes from stored
//! offsets (no gap after SIGINT or kill -9), and the plugin scaffold builds.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::*;

#[test]
fn bad_configs_are_reported_by_file_and_key_and_start_nothing() {
    let dir = tempdir("bad");
    let cases: &[(&str, &str, &[&str])] = &[
        ("syntax.yaml", "name: [unclosed\n", &["syntax.yaml", "invalid YAML"]),
        ("noclass.yaml", "name: a\nconfig:\n  tasks.max: 1\n", &["noclass.yaml", "'connector.class'", "required"]),
        ("unknown.yaml", "name: b\nconfig:\n  connector.class: nope\n", &["unknown.yaml", "'nope' is neither a built-in plugin"]),
        ("rate.yaml", "name: c\nconfig:\n  connector.class: datagen\n  rate: -5\n", &["rate.yaml", "key 'rate'", "at least 0"]),
        ("tasks.yaml", "name: d\nconfig:\n  connector.class: datagen\n  tasks.max: zero\n", &["tasks.yaml", "key 'tasks.max'", "expected an integer"]),
        (
            "transform.yaml",
            "name: e\nconfig:\n  connector.class: datagen\n  transforms: x\n",
            &["transform.yaml", "key 'transforms.x.type'", "required"],
        ),
        (
            "route.yaml",
            "name: f\nconfig:\n  connector.class: datagen\n  transforms: r\n  transforms.r.type: route\n  transforms.r.regex: '('\n  transforms.r.replacement: x\n",
            &["route.yaml", "key 'transforms.r.regex'", "invalid regex"],
        ),
        (
            "secret.yaml",
            "name: g\nconfig:\n  connector.class: datagen\n  topic: ${env:WHARF_CLI_TEST_UNSET}\n",
            &["secret.yaml", "key 'topic'", "WHARF_CLI_TEST_UNSET"],
        ),
        ("sink.yaml", "name: h\nconfig:\n  connector.class: file-sink\n  file: out.jsonl\n", &["sink.yaml", "key 'topics'", "required"]),
    ];
    for (file, text, expect) in cases {
        std::fs::write(dir.join(file), text).expect("write config");
        for cmd in ["run", "validate"] {
            let out = wharf(&dir, &[cmd, file]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} {file} should fail");
            for e in *expect {
                assert!(
                    stderr.contains(e),
                    "{cmd} {file}: stderr lacks '{e}':\n{stderr}"
                );
            }
        }
        assert!(
            !dir.join(".wharf").exists(),
            "{file}: something was started"
        );
        assert!(
            !dir.join("out.jsonl").exists(),
            "{file}: the sink was opened"
        );
    }
    // A good config validates.
    std::fs::write(
        dir.join("good.yaml"),
        "name: ok\nconfig:\n  connector.class: datagen\n",
    )
    .expect("write");
    let out = wharf(&dir, &["validate", "good.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connector 'ok' (datagen source) is valid")
    );
}

const PIPELINE: &str = "name: gen
config:
  connector.class: datagen
  tasks.max: 2
  partitions: 4
  rate: 20000
  max.records: 6000
  offset.flush.interval.ms: 200
  topic: seq
---
name: out
config:
  connector.class: file-sink
  topics: seq
  file: out.jsonl
";

#[test]
fn restart_resumes_from_stored_offsets_without_gaps() {
    let dir = tempdir("resume");
    std::fs::write(dir.join("p.yaml"), PIPELINE).expect("write");
    let out = dir.join("out.jsonl");

    // Crash twice mid-stream (kill -9), then stop gracefully (SIGINT) twice.
    // Each round waits for lines written by its own process (a killed one may
    // have written past any fixed mark), so every signal lands mid-stream.
    for sig in ["-KILL", "-KILL", "-INT", "-INT"] {
        let target = lines(&out) + 3000;
        let mut child = spawn(&dir, &["run", "p.yaml", "--progress", "0"]);
        wait_for_lines(&out, target, Duration::from_secs(60));
        signal(&child, sig);
        let status = child.wait().expect("wait");
        if sig == "-INT" {
            assert!(status.success(), "graceful stop failed: {status:?}");
        }
    }
    // Finish the run.
    let mut child = spawn(&dir, &["run", "p.yaml", "--progress", "0"]);
    let start = Instant::now();
    loop {
        let got = read_output(&out);
        let done = got.len() == 4 && got.values().all(|s| s.contains(&5999));
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "-INT");
    assert!(child.wait().expect("wait").success());

    let got = read_output(&out);
    let mut duplicates = 0;
    for (p, seqs) in &got {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted,
            (0..6000).collect::<Vec<_>>(),
            "partition {p} has a gap"
        );
        duplicates += seqs.len() - sorted.len();
        // Per partition, the file is in order apart from replays after a crash.
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1 || w[1] <= w[0]),
            "partition {p} out of order"
        );
    }
    eprintln!("no gaps in 4 partitions x 6000 records; {duplicates} duplicates after 2 crashes");
}

#[test]
fn scaffolded_plugin_builds_and_inspects() {
    let dir = tempdir("scaffold");
    let out = wharf(&dir, &["plugin", "new", "shout", "--kind", "transform"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Share one target dir across runs so the SDK's dependencies compile once.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("wharf-scaffold-target"))
        .join("scaffold");
    let built = Command::new(WHARF)
        .args(["plugin", "build", "shout"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(wasm.ends_with("shout.wasm"), "{wasm}");
    let inspected = wharf(&dir, &["plugin", "inspect", &wasm]);
    let text = String::from_utf8_lossy(&inspected.stdout);
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    assert!(text.contains("plugin:      shout"), "{text}");
    assert!(
        text.contains("world:       wharf:connector/transform@0.1.0"),
        "{text}"
    );
    assert!(text.contains("topic"), "{text}");
    // And the built plugin works as a transform in a real run.
    std::fs::write(
        dir.join("use.yaml"),
        format!("name: g\nconfig:\n  connector.class: datagen\n  transforms: s\n  transforms.s.type: {wasm}\n  transforms.s.topic: loud\n"),
    )
    .expect("write");
    let v = wharf(&dir, &["validate", "use.yaml"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}
