//! `kill -9` of the worker while `s3-sink` is in the middle of a multipart
//! upload, against the real S3 server and Kafka, twice: during the first
//! file, then (after a restart) during the second, once the first may be
//! written and committed. The unfinished object never becomes visible, the
//! restarted worker writes the same files again (same names, so no duplicate
//! object), nothing is lost or doubled, and no unfinished upload is left
//! behind.

mod common;

use std::time::{Duration, Instant};

use common::kafka::*;
use common::s3::*;
use common::*;
use serde_json::json;

const RECORDS: usize = 60_000;
const FLUSH_SIZE: usize = 20_000;

fn file_key(topic: &str, file: usize) -> String {
    format!(
        "topics/{topic}/partition=0/{topic}+0+{:010}.json",
        file * FLUSH_SIZE
    )
}

/// Waits until `key` is being uploaded and at most two of its parts are
/// there (so its completion cannot be on its way), then kills the worker.
fn kill_during_upload(s3: &S3, mut child: Child, key: &str, dir: &std::path::Path) {
    let start = Instant::now();
    loop {
        if s3.parts(key).iter().any(|&n| n <= 2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no multipart upload of {key} seen; see wharf.log in {}",
            dir.display()
        );
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "the worker exited ({status}); see wharf.log in {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-KILL");
    let _ = child.wait();
    assert!(
        !s3.keys().contains(&key.to_string()),
        "{key} is visible although its upload never completed"
    );
}

#[test]
fn kill_during_a_multipart_upload_loses_nothing_and_leaves_no_orphan() {
    let dir = tempdir("s3-crash");
    let id = unique_id(&dir);
    let s3 = S3::new(&format!("crash-{id}").to_ascii_lowercase());
    let topic = format!("crash-{id}");
    let sink = format!("sink-{topic}");
    let group = format!("connect-{sink}");
    let pad = "x".repeat(1000);
    let records: Vec<Rec> = (0..RECORDS)
        .map(|i| Rec {
            value: Some(json!({"n": i, "pad": pad}).to_string()),
            ..Default::default()
        })
        .collect();
    produce_records(&topic, &records);
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    // ~20 MB files in 5 MiB parts, one part in flight at a time: each file
    // spends a while as an unfinished multipart upload.
    std::fs::write(
        dir.join("sink.yaml"),
        format!(
            "name: {sink}\nconfig:\n  connector.class: s3-sink\n  topics: {topic}\n  \
             flush.size: {FLUSH_SIZE}\n  s3.part.size: 5242880\n  s3.part.upload.concurrency: 1\n  \
             offset.flush.interval.ms: 500\n{}",
            connection_yaml(&s3.bucket)
        ),
    )
    .expect("sink.yaml");
    let args = [
        "run",
        "--worker",
        "worker.yaml",
        "sink.yaml",
        "--progress",
        "0",
    ];
    let expected: Vec<String> = (0..RECORDS / FLUSH_SIZE)
        .map(|f| file_key(&topic, f))
        .collect();

    // During the first file; then, restarted, during the second.
    kill_during_upload(&s3, spawn(&dir, &args), &expected[0], &dir);
    kill_during_upload(&s3, spawn(&dir, &args), &expected[1], &dir);
    let after_kills = (s3.keys(), committed(&group, &topic, 0));

    let mut child = spawn(&dir, &args);
    let start = Instant::now();
    loop {
        let (at, keys) = (committed(&group, &topic, 0), s3.keys());
        if at == Some(RECORDS as i64) && keys.len() >= expected.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "group at {at:?}, objects {keys:?}; see wharf.log in {}",
            dir.display()
        );
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "the restarted worker exited ({status}); see wharf.log in {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );

    let keys = s3.keys();
    assert_eq!(
        keys, expected,
        "one object per file, no duplicate, nothing partial (after the kills: objects and \
         commit {after_kills:?})"
    );
    let mut seen = Vec::with_capacity(RECORDS);
    for key in &keys {
        seen.extend(s3.lines(key).iter().map(|v| v["n"].as_u64().expect("n")));
    }
    assert_eq!(seen.len(), RECORDS, "records in the objects");
    assert_eq!(
        seen,
        (0..RECORDS as u64).collect::<Vec<_>>(),
        "every record exactly once, in order"
    );
    assert_eq!(
        s3.uploads(),
        Vec::<String>::new(),
        "no unfinished upload left behind"
    );
}
