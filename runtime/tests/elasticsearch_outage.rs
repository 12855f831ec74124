//! The engine goes away for 30 s mid-stream (OpenSearch stopped by the
//! project's own service script, then started again): the sink keeps
//! retrying, commits nothing it has not indexed, and afterwards the index
//! holds every record exactly once. Ids are topic+partition+offset, so the
//! index alone would hide a record written twice; the sink's own counts from
//! `/metrics` show every action it sent and what became of it: the resends
//! the outage forced, and that the engine took no record twice (a resend of
//! a write that had landed is a version conflict, by the offset versioning).
//! A test binary of its own, since it stops the engine other tests use.

mod common;

use std::time::Duration;

use common::kafka::*;
use common::rest::{wait_for_address, Api};
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

/// A plugin counter of the connector's tasks from `/metrics`, summed over
/// tasks (0 when not reported yet).
fn plugin_metric(api: &Api, connector: &str, name: &str) -> u64 {
    let reply = api.get("/metrics");
    assert_eq!(reply.status, 200, "/metrics: {}", reply.body);
    let text = reply.body.as_str().unwrap_or_default().to_string();
    let prefix = format!("wharf_plugin_{name}{{connector=\"{connector}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

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
    // Everything settled: committed to the end means flushed, nothing in flight.
    let group = format!("connect-es-{id}");
    let start = std::time::Instant::now();
    while committed(&group, &topic, 0) != Some(20_000) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{group} at {:?}, waited for 20000",
            committed(&group, &topic, 0)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let api = Api::new(&wait_for_address(&dir.join("wharf.log")));
    let sink = format!("es-{id}");
    let m = |name: &str| plugin_metric(&api, &sink, name);
    let (sent, indexed, replays, retried, rejected) = (
        m("documents_sent"),
        m("documents_indexed"),
        m("version_conflicts"),
        m("documents_retried"),
        m("documents_rejected"),
    );
    let counts = format!(
        "sent {sent}, indexed {indexed}, version conflicts {replays}, retried {retried}, rejected {rejected}"
    );
    let restarts = api
        .get("/metrics")
        .body
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(&format!("wharf_task_restarts_total{{connector=\"{sink}\",")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(
        restarts,
        Some(0.0),
        "the task rode out the outage (the counts cover its whole run)"
    );
    assert!(retried > 0, "the outage forced resends: {counts}");
    assert_eq!(rejected, 0, "{counts}");
    // Each record settled exactly once: written, or found already written
    // (a resend of a bulk that had landed before its answer was lost).
    assert_eq!(
        indexed + replays,
        20_000,
        "each record settled once, none lost or taken twice: {counts}"
    );
    assert_eq!(
        sent,
        20_000 + retried,
        "every action sent once, plus one per resend: {counts}"
    );
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
