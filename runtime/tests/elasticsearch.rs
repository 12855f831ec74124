//! The `elasticsearch-sink` plugin against the real OpenSearch and Kafka from
//! `tests/services/up`: a topic lands in an index with ids from the keys and a
//! replay changes nothing; Debezium change events through `unwrap` become
//! upserts and deletes; documents the engine refuses reach the dead letter
//! topic with the reason, and the group still commits to the end.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::search::*;
use common::*;
use elasticsearch::http::Method;
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

fn start_sink(dir: &Path, name: &str, topic: &str, extra: &str) -> Child {
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    let file = format!("{name}.yaml");
    std::fs::write(
        dir.join(&file),
        format!(
            "name: {name}\nconfig:\n  connector.class: elasticsearch-sink\n  topics: {topic}\n  \
             connection.url: {}\n  offset.flush.interval.ms: 500\n{extra}",
            url()
        ),
    )
    .expect("sink yaml");
    spawn(
        dir,
        &["run", "--worker", "worker.yaml", &file, "--progress", "0"],
    )
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

    // A second connector (a new group) re-reads the whole topic into the same index.
    let replay = format!("es-replay-{id}");
    let mut child = start_sink(&dir, &replay, &topic, "  batch.size: 700\n");
    wait_committed(&mut child, &replay, &topic, 3000, Duration::from_secs(90));
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
