//! The engine goes away for 30 s mid-stream (OpenSearch stopped by the
//! project's own service script, then started again): the sink keeps
//! retrying, commits nothing it has not indexed, and afterwards the index
//! holds every record exactly once. A test binary of its own, since it stops
//! the engine other tests use.

mod common;

use std::time::Duration;

use common::kafka::*;
use common::search::*;
use common::*;
use serde_json::json;

fn service(action: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join(format!("tests/services/{action}")))
        .arg("opensearch")
        .status()
        .expect("service script");
    assert!(
        status.success(),
        "tests/services/{action} opensearch failed"
    );
}

use std::path::Path;

#[test]
fn nothing_lost_or_doubled_when_the_engine_is_down_for_30_seconds() {
    let dir = tempdir("es-outage");
    let id = unique_id(&dir);
    let topic = format!("outage-{id}");
    let batch = |from: u64| -> Vec<(Option<String>, Option<String>)> {
        (from..from + 10_000)
            .map(|i| {
                (
                    None,
                    Some(json!({"n": i, "pad": "p".repeat(200)}).to_string()),
                )
            })
            .collect()
    };
    produce(&topic, &batch(0));
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    std::fs::write(
        dir.join("sink.yaml"),
        format!(
            "name: es-{id}\nconfig:\n  connector.class: elasticsearch-sink\n  topics: {topic}\n  \
             connection.url: {}\n  key.ignore: true\n  batch.size: 500\n  \
             max.in.flight.requests: 2\n  read.timeout.ms: 2000\n  offset.flush.interval.ms: 500\n",
            url()
        ),
    )
    .expect("sink.yaml");
    let mut child = spawn(
        &dir,
        &[
            "run",
            "--worker",
            "worker.yaml",
            "sink.yaml",
            "--progress",
            "0",
        ],
    );
    wait_for_count(&topic, 10_000, Duration::from_secs(90));

    service("down");
    let down = std::time::Instant::now();
    produce(&topic, &batch(10_000));
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the worker died while the engine was down"
    );
    service("up");

    wait_for_count(&topic, 20_000, Duration::from_secs(180));
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );
    assert_eq!(
        stats(&topic, "n"),
        (20_000, 19_999 * 20_000 / 2, 0, 19_999),
        "every record exactly once"
    );
}
