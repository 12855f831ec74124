//! The `elasticsearch-sink` plugin against the real OpenSearch and Kafka from
//! `tests/services/up`: a topic lands in an index with ids from the keys and a
//! replay changes nothing (its version conflicts counted, not failed);
//! Debezium change events through `unwrap` become upserts and deletes;
//! documents the engine refuses reach the dead letter topic with the reason,
//! and the group still commits to the end; upserts of one document land in
//! record order across a retry; a version conflict that is not a replay
//! follows `behavior.on.version.conflict`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::rest::{wait_for_address, Api};
use common::search::*;
use common::*;
use elasticsearch::http::Method;
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

fn start_sink(dir: &Path, name: &str, topic: &str, extra: &str) -> Child {
    start_sinks(dir, &[(name, topic, extra)])
}

/// One worker running several sink connectors (one REST API, one log).
fn start_sinks(dir: &Path, sinks: &[(&str, &str, &str)]) -> Child {
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    let mut args = vec![
        "run".to_string(),
        "--worker".to_string(),
        "worker.yaml".to_string(),
    ];
    for (name, topic, extra) in sinks {
        let file = format!("{name}.yaml");
        // Tests that time the flushes set their own interval.
        let flush = if extra.contains("offset.flush.interval.ms") {
            ""
        } else {
            "  offset.flush.interval.ms: 500\n"
        };
        std::fs::write(
            dir.join(&file),
            format!(
                "name: {name}\nconfig:\n  connector.class: elasticsearch-sink\n  topics: {topic}\n  \
                 connection.url: {}\n{flush}{extra}",
                url()
            ),
        )
        .expect("sink yaml");
        args.push(file);
    }
    args.extend(["--progress".to_string(), "0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn(dir, &args)
}

/// A metric of the connector's tasks from `/metrics`, summed over tasks (0
/// when not reported yet, as a plugin's counter before its first count).
fn metric(api: &Api, connector: &str, name: &str) -> f64 {
    let reply = api.get("/metrics");
    assert_eq!(reply.status, 200, "/metrics: {}", reply.body);
    let text = reply.body.as_str().unwrap_or_default().to_string();
    let prefix = format!("{name}{{connector=\"{connector}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn stop(mut child: Child) {
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );
}

/// Waits until the group `connect-<sink>` has committed `end` on partition 0.
fn wait_committed(child: &mut Child, sink: &str, topic: &str, end: i64, limit: Duration) {
    let c = consumer(&format!("connect-{sink}"));
    let start = Instant::now();
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let at = c
            .committed_offsets(tpl, Duration::from_secs(10))
            .ok()
            .and_then(|t| t.find_partition(topic, 0).map(|p| p.offset()));
        if at == Some(Offset::Offset(end)) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "group connect-{sink} at {at:?}, waited for {end}; see wharf.log in the test's directory"
        );
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the worker exited ({status}) before connect-{sink} reached {end}; see its log in the test's directory");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn topic_lands_in_an_index_and_a_replay_changes_nothing() {
    let dir = tempdir("es-index");
    let id = unique_id(&dir);
    let topic = format!("Orders-{id}");
    let index = topic.to_ascii_lowercase();
    let records: Vec<_> = (0..3000)
        .map(|i| {
            let k = i % 1000;
            (
                Some(format!("\"k{k}\"")),
                Some(json!({"n": i, "k": k, "note": "x".repeat(k as usize % 50)}).to_string()),
            )
        })
        .collect();
    produce(&topic, &records);

    let sink = format!("es-{id}");
    let mut child = start_sink(&dir, &sink, &topic, "  batch.size: 400\n");
    wait_committed(&mut child, &sink, &topic, 3000, Duration::from_secs(90));
    stop(child);
    assert_eq!(
        stats(&index, "n"),
        (1000, (2000..3000).sum(), 2000, 2999),
        "latest write per key"
    );
    let doc = get(&index, "k5").expect("k5 indexed");
    assert_eq!(doc["n"], 2005);
    let (_, raw) = call(Method::Get, &format!("/{index}/_doc/k5"), None);
    assert_eq!(raw["_version"], 2005, "external version = Kafka offset");

    // A second connector (a new group) re-reads the whole topic into the
    // same index. Every write is older than (or as old as) the stored one:
    // each is a version conflict, counted as such, and none is a failure.
    let replay = format!("es-replay-{id}");
    let replay_dir = dir.join("replay");
    std::fs::create_dir_all(&replay_dir).expect("replay dir");
    let mut child = start_sink(&replay_dir, &replay, &topic, "  batch.size: 700\n");
    let api = Api::new(&wait_for_address(&replay_dir.join("wharf.log")));
    wait_committed(&mut child, &replay, &topic, 3000, Duration::from_secs(90));
    let m = |name: &str| metric(&api, &replay, &format!("wharf_plugin_{name}"));
    assert_eq!(
        m("version_conflicts"),
        3000.0,
        "every replayed write is a conflict"
    );
    assert_eq!(m("documents_indexed"), 0.0, "no replayed write landed");
    assert_eq!(m("documents_rejected"), 0.0, "a replay is no failure");
    assert_eq!(
        m("documents_sent"),
        3000.0 + m("documents_retried"),
        "each write sent once, plus retries"
    );
    stop(child);
    assert_eq!(
        stats(&index, "n"),
        (1000, (2000..3000).sum(), 2000, 2999),
        "replay changed nothing"
    );
    let (_, raw) = call(Method::Get, &format!("/{index}/_doc/k5"), None);
    assert_eq!(raw["_version"], 2005, "no rewrite on replay");
}

#[test]
fn debezium_events_through_unwrap_become_upserts_and_deletes() {
    let dir = tempdir("es-cdc");
    let id = unique_id(&dir);
    let topic = format!("shop.public.items-{id}");
    let event = |op: &str, before: Option<serde_json::Value>, after: Option<serde_json::Value>| {
        json!({
            "before": before, "after": after, "op": op, "ts_ms": 1_700_000_000_000i64,
            "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": "items", "lsn": 1}
        })
        .to_string()
    };
    let row = |i: u64, qty: u64| json!({"id": i, "name": format!("item-{i}"), "qty": qty});
    let key = |i: u64| Some(json!({"id": i}).to_string());
    let mut records = Vec::new();
    for i in 1..=20 {
        records.push((key(i), Some(event("c", None, Some(row(i, 1))))));
    }
    for i in 1..=10 {
        records.push((key(i), Some(event("u", Some(row(i, 1)), Some(row(i, 2))))));
    }
    for i in 15..=20 {
        records.push((key(i), Some(event("d", Some(row(i, 1)), None))));
        records.push((key(i), None));
    }
    produce(&topic, &records);

    let sink = format!("es-cdc-{id}");
    let mut child = start_sink(
        &dir,
        &sink,
        &topic,
        "  write.method: upsert\n  behavior.on.null.values: delete\n  \
         transforms: unwrap\n  transforms.unwrap.type: unwrap\n  \
         transforms.unwrap.drop.tombstones: false\n  transforms.unwrap.add.fields: op,table\n",
    );
    wait_committed(
        &mut child,
        &sink,
        &topic,
        records.len() as i64,
        Duration::from_secs(90),
    );
    stop(child);
    let index = topic.to_ascii_lowercase();
    assert_eq!(count(&index), 14, "20 created, 6 deleted");
    for i in 1..=20u64 {
        let doc = get(&index, &i.to_string());
        match i {
            1..=10 => {
                let d = doc.expect("updated row");
                assert_eq!(d["qty"], 2, "row {i}: {d}");
                assert_eq!(d["__op"], "u");
                assert_eq!(d["__table"], "items");
            }
            11..=14 => assert_eq!(doc.expect("row")["qty"], 1, "row {i}"),
            _ => assert!(doc.is_none(), "row {i} should be deleted"),
        }
    }
}

#[test]
fn refused_documents_go_to_the_dead_letter_topic_with_the_reason() {
    let dir = tempdir("es-dlq");
    let id = unique_id(&dir);
    let (topic, dlq) = (format!("docs-{id}"), format!("docs-dlq-{id}"));
    let index = topic.to_ascii_lowercase();
    let (status, body) = call(
        Method::Put,
        &format!("/{index}"),
        Some(json!({"mappings": {"properties": {"n": {"type": "integer"}}}})),
    );
    assert!(status < 300, "create index: {body}");
    let records: Vec<_> = (0..50)
        .map(|i| {
            let value = match i {
                7 => "this is not json".to_string(),
                _ if i % 10 == 3 => json!({"n": format!("oops-{i}")}).to_string(),
                _ => json!({"n": i}).to_string(),
            };
            (None, Some(value))
        })
        .collect();
    produce(&topic, &records);

    let sink = format!("es-dlq-{id}");
    let mut child = start_sink(
        &dir,
        &sink,
        &topic,
        &format!(
            "  key.ignore: true\n  errors.tolerance: all\n  \
             errors.deadletterqueue.topic.name: {dlq}\n  \
             errors.deadletterqueue.context.headers.enable: true\n"
        ),
    );
    wait_committed(&mut child, &sink, &topic, 50, Duration::from_secs(90));
    stop(child);
    assert_eq!(count(&index), 44, "every good document indexed");
    let dead = read_topic(&dlq);
    let mut reasons = BTreeMap::new();
    for m in &dead {
        let headers: BTreeMap<String, String> = m
            .headers()
            .expect("headers")
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        let h = |k: &str| headers[&format!("__connect.errors.{k}")].clone();
        assert_eq!(h("stage"), "TASK_PUT");
        assert_eq!(h("class.name"), "elasticsearch-sink");
        assert_eq!(h("topic"), topic);
        reasons.insert(
            h("offset").parse::<i64>().expect("offset"),
            h("exception.message"),
        );
    }
    assert_eq!(
        reasons.keys().copied().collect::<Vec<_>>(),
        vec![3, 7, 13, 23, 33, 43],
        "{reasons:?}"
    );
    assert!(reasons[&7].contains("not JSON"), "{}", reasons[&7]);
    assert!(
        reasons[&3].contains("mapper_parsing_exception"),
        "{}",
        reasons[&3]
    );
}

/// The danger: a write refused retriably is retried after a newer write of
/// the same document was sent (and landed), and overwrites it. Each round
/// blocks the index, lets the sink send v1 of one key (refused), lifts the
/// block and sends v2..v5 at once. A sink that sends the newer versions then
/// (they would land) and retries v1 later ends with v1. The worker flushes
/// at least every second, and a flush that falls between v1 and v2 retries
/// v1 first anyway, so one round catches such a sink most of the time, not
/// always; three rounds nearly always. The plugin's unit tests check the
/// order deterministically; here the engine is real.
#[test]
fn upserts_of_one_document_land_in_record_order_across_a_retry() {
    let dir = tempdir("es-order");
    let id = unique_id(&dir);
    let topic = format!("order-{id}");
    let index = topic.to_ascii_lowercase();
    let (status, body) = call(Method::Put, &format!("/{index}"), None);
    assert!(status < 300, "create index: {body}");
    // A write block makes the engine refuse every write to the index with a
    // retriable cluster_block_exception, until it is lifted.
    let block = |on: bool| {
        let (status, body) = call(
            Method::Put,
            &format!("/{index}/_settings"),
            Some(json!({"index.blocks.write": on})),
        );
        assert!(status < 300, "index.blocks.write={on}: {body}");
    };
    let rec = |k: &str, v: u64| {
        (
            Some(format!("\"{k}\"")),
            Some(json!({"k": k, "v": v}).to_string()),
        )
    };
    // One document per bulk, several bulks in flight, every put sends what
    // it may at once (linger.ms 0), and a slow retry round, so newer writes
    // have every chance to go before the retry.
    let sink = format!("es-order-{id}");
    let child = start_sink(
        &dir,
        &sink,
        &topic,
        "  write.method: upsert\n  batch.size: 1\n  max.in.flight.requests: 5\n  linger.ms: 0\n  \
         retry.backoff.ms: 1000\n  max.retries: 20\n",
    );
    let api = Api::new(&wait_for_address(&dir.join("wharf.log")));
    let group = format!("connect-{sink}");
    let wait_commit = |end: i64| {
        let start = Instant::now();
        while committed(&group, &topic, 0) != Some(end) {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{group} did not commit {end}; see wharf.log in {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let sent = || metric(&api, &sink, "wharf_plugin_documents_sent");
    let keys = ["a", "b", "c"];
    for (round, k) in keys.iter().enumerate() {
        // The last round is settled (committed): nothing is sent meanwhile.
        let before = sent();
        block(true);
        produce(&topic, &[rec(k, 1)]);
        // Sent, and refused at once by the engine (the sink reads the
        // answer later).
        let start = Instant::now();
        while sent() < before + 1.0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: v1 of {k} not sent"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        block(false);
        produce(&topic, &(2..=5).map(|v| rec(k, v)).collect::<Vec<_>>());
        wait_commit(((round + 1) * 5) as i64);
    }
    let m = |name: &str| metric(&api, &sink, &format!("wharf_plugin_{name}"));
    assert!(
        m("documents_retried") >= keys.len() as f64,
        "every v1 was refused and retried: {}",
        m("documents_retried")
    );
    assert_eq!(m("documents_rejected"), 0.0);
    stop(child);
    for k in keys {
        let doc = get(&index, k).unwrap_or_else(|| panic!("{k} indexed"));
        assert_eq!(doc["v"], 5, "{k} holds its newest write: {doc}");
    }
    assert_eq!(count(&index), keys.len() as u64);
}

#[test]
fn version_conflicts_that_are_not_replays_follow_behavior_on_version_conflict() {
    let dir = tempdir("es-conflict");
    let id = unique_id(&dir);
    let topic = format!("conflicts-{id}");
    // Keyed creates into a data stream: a second record with a key already
    // there conflicts, and no version says it is older (offsets 2 and 4).
    let records: Vec<_> = [("k1", 0), ("k2", 1), ("k1", 2), ("k3", 3), ("k2", 4)]
        .iter()
        .map(|(k, n)| (Some(format!("\"{k}\"")), Some(json!({"n": n}).to_string())))
        .collect();
    produce(&topic, &records);
    let stream = |dataset: &str| format!("logs-{dataset}-{topic}").to_ascii_lowercase();
    let dlq = format!("conflicts-dlq-{id}");
    let (fail, dead, warn) = (
        format!("es-vc-fail-{id}"),
        format!("es-vc-dlq-{id}"),
        format!("es-vc-warn-{id}"),
    );
    // One bulk at a time: which of two racing creates of k1 wins is not the question.
    let ds = |dataset: &str| {
        format!(
            "  data.stream.type: logs\n  data.stream.dataset: {dataset}\n  linger.ms: 0\n  \
             max.in.flight.requests: 1\n"
        )
    };
    let mut child = start_sinks(
        &dir,
        &[
            // The default (fail), no tolerance: the task fails.
            (
                &fail,
                &topic,
                &format!("{}  task.restart.enable: false\n", ds("fail")),
            ),
            // The default with a dead letter queue: the record goes there.
            (
                &dead,
                &topic,
                &format!(
                    "{}  errors.tolerance: all\n  errors.deadletterqueue.topic.name: {dlq}\n  \
                     errors.deadletterqueue.context.headers.enable: true\n",
                    ds("dlq")
                ),
            ),
            // warn: skipped with a warning, the task goes on.
            (
                &warn,
                &topic,
                &format!("{}  behavior.on.version.conflict: warn\n", ds("warn")),
            ),
        ],
    );
    let log = dir.join("wharf.log");
    let api = Api::new(&wait_for_address(&log));
    wait_committed(&mut child, &dead, &topic, 5, Duration::from_secs(90));
    wait_committed(&mut child, &warn, &topic, 5, Duration::from_secs(90));
    let status = api.wait_until(
        &format!("/connectors/{fail}/status"),
        "the fail connector's task to fail",
        |s| s["tasks"][0]["state"] == "FAILED",
    );
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("version_conflict_engine_exception"),
        "trace names the conflict: {trace}"
    );
    assert_ne!(
        committed(&format!("connect-{fail}"), &topic, 0),
        Some(5),
        "a failed write is not committed"
    );
    for (name, refused) in [(&dead, 2.0), (&warn, 2.0)] {
        let m = |n: &str| metric(&api, name, &format!("wharf_plugin_{n}"));
        assert_eq!(m("documents_rejected"), refused, "{name}");
        assert_eq!(m("version_conflicts"), 0.0, "{name}: no replay here");
        assert_eq!(m("documents_indexed"), 3.0, "{name}");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("skipping version conflict on"),
        "warn logs the skipped record"
    );
    drop(child);
    assert_eq!(count(&stream("dlq")), 3);
    assert_eq!(count(&stream("warn")), 3);

    let dead_letters = read_topic(&dlq);
    let mut reasons = BTreeMap::new();
    for m in &dead_letters {
        let headers: BTreeMap<String, String> = m
            .headers()
            .expect("headers")
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        let h = |k: &str| headers[&format!("__connect.errors.{k}")].clone();
        reasons.insert(
            h("offset").parse::<i64>().expect("offset"),
            h("exception.message"),
        );
    }
    assert_eq!(
        reasons.keys().copied().collect::<Vec<_>>(),
        vec![2, 4],
        "{reasons:?}"
    );
    for r in reasons.values() {
        assert!(r.contains("version_conflict_engine_exception"), "{r}");
    }
}
