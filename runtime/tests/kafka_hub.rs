//! Kafka as the hub, against the real broker from `tests/services/up`:
//! datagen → Kafka → file sink in one worker, `kill -9` at several moments,
//! restart; afterwards the topic and the file hold every sequence number
//! (duplicates allowed and counted), source offsets sit in the offsets topic
//! under Connect's keys, and the sink's group `connect-<name>` committed
//! exactly what it wrote.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const PARTITIONS: u64 = 4;
const PER_PARTITION: u64 = 15_000;

fn bootstrap() -> String {
    std::env::var("WHARF_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// (partition, key, value) of one message.
type Msg = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every message of a topic, read from the beginning to the end as of now.
fn read_topic(topic: &str) -> Vec<Msg> {
    let c = consumer("wharf-test-reader");
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in meta.topics()[0].partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("tpl");
            ends.insert(p.id(), high);
        }
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while !ends.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "reading {topic} timed out"
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("message");
        out.push((
            m.partition(),
            m.key().map(<[u8]>::to_vec),
            m.payload().map(<[u8]>::to_vec),
        ));
        if ends
            .get(&m.partition())
            .is_some_and(|h| m.offset() + 1 >= *h)
        {
            ends.remove(&m.partition());
        }
    }
    out
}

fn seqs_in_topic(topic: &str) -> BTreeMap<u64, Vec<u64>> {
    let mut got = BTreeMap::<u64, Vec<u64>>::new();
    for (kafka_partition, _, value) in read_topic(topic) {
        let v: serde_json::Value =
            serde_json::from_slice(&value.expect("value")).expect("json value");
        let p = v["partition"].as_u64().expect("partition");
        assert_eq!(
            p, kafka_partition as u64,
            "datagen partition maps to Kafka's"
        );
        got.entry(p)
            .or_default()
            .push(v["seq"].as_u64().expect("seq"));
    }
    got
}

/// Asserts every sequence number is present; returns the duplicates.
fn assert_complete(what: &str, got: &BTreeMap<u64, Vec<u64>>) -> usize {
    assert_eq!(got.len() as u64, PARTITIONS, "{what}: partitions {got:?}");
    let mut dups = 0;
    for (p, seqs) in got {
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        let missing: Vec<u64> = (0..PER_PARTITION)
            .filter(|s| !distinct.contains(s))
            .take(10)
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: partition {p} misses {missing:?}"
        );
        dups += seqs.len() - distinct.len();
    }
    dups
}

#[test]
fn kill_9_loses_nothing_through_kafka() {
    let dir = tempdir("kafka");
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("x")
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let topic = format!("hub-{id}");
    let offsets_topic = format!("offsets-{id}");
    let (source, sink) = (format!("src-{id}"), format!("sink-{id}"));
    std::fs::write(
        dir.join("worker.yaml"),
        format!(
            "bootstrap.servers: {}\noffset.storage: kafka\noffset.storage.topic: {offsets_topic}\n\
             offset.storage.partitions: 3\n",
            bootstrap()
        ),
    )
    .expect("worker.yaml");
    std::fs::write(
        dir.join("pipeline.yaml"),
        format!(
            "name: {source}\nconfig:\n  connector.class: datagen\n  tasks.max: 2\n  topic: {topic}\n  \
             partitions: {PARTITIONS}\n  rate: 12000\n  max.records: {PER_PARTITION}\n  \
             offset.flush.interval.ms: 200\n  topic.creation.default.partitions: {PARTITIONS}\n  \
             topic.creation.default.replication.factor: 1\n---\n\
             name: {sink}\nconfig:\n  connector.class: file-sink\n  tasks.max: 2\n  topics: {topic}\n  \
             file: out.jsonl\n"
        ),
    )
    .expect("pipeline.yaml");
    let out = dir.join("out.jsonl");
    let args = [
        "run",
        "--worker",
        "worker.yaml",
        "pipeline.yaml",
        "--progress",
        "0",
    ];

    // Three crashes at different depths into the stream.
    for target in [4_000, 17_000, 33_000] {
        let mut child = spawn(&dir, &args);
        wait_for_lines(&out, target, Duration::from_secs(90));
        signal(&child, "-KILL");
        child.wait().expect("wait");
    }
    let mut child = spawn(&dir, &args);
    let start = Instant::now();
    loop {
        let got = read_output(&out);
        let done = got.len() as u64 == PARTITIONS
            && got
                .values()
                .all(|s| s.iter().copied().collect::<BTreeSet<_>>().len() as u64 == PER_PARTITION);
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the pipeline never completed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );

    let topic_dups = assert_complete("topic", &seqs_in_topic(&topic));
    let file_dups = assert_complete("file", &read_output(&out));

    // Source offsets: Connect's key layout, the last sequence of each partition.
    let mut stored = BTreeMap::new();
    for (_, key, value) in read_topic(&offsets_topic) {
        let key = String::from_utf8(key.expect("key")).expect("utf8 key");
        stored.insert(key, value.map(|v| String::from_utf8(v).expect("utf8")));
    }
    for p in 0..PARTITIONS {
        let key = format!("[\"{source}\",{{\"partition\":{p}}}]");
        assert_eq!(
            stored.get(&key).cloned().flatten().as_deref(),
            Some(format!("{{\"seq\":{}}}", PER_PARTITION - 1).as_str()),
            "offset for {key}; stored: {stored:?}"
        );
    }

    // The sink's group committed up to the end of every partition.
    let c = consumer(&format!("connect-{sink}"));
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition(&topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    for e in committed.elements() {
        let (_, high) = c
            .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            e.offset(),
            Offset::Offset(high),
            "group connect-{sink} partition {}",
            e.partition()
        );
    }
    eprintln!(
        "3 x kill -9: no gap in {PARTITIONS} x {PER_PARTITION} records; duplicates: topic {topic_dups}, file {file_dups}"
    );
}
