//! Kafka as the hub, against the real broker from `tests/services/up`:
//! datagen → Kafka → file sink in one worker, `kill -9` at several moments,
//! restart; afterwards the topic and the file hold every sequence number.
//! Lines are counted before they are deduplicated: every duplicate must come
//! from a restart (the source replays from its stored offset, the sink from
//! its group's committed offset), none from a run on its own, and under
//! exactly-once the topic holds none at all. Source offsets sit in the
//! offsets topic under Connect's keys, and the sink's group `connect-<name>`
//! committed exactly what it wrote.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const PARTITIONS: u64 = 4;
const PER_PARTITION: u64 = 15_000;
/// Lines in the file at which the worker is killed (one restart each).
const KILLS: [usize; 3] = [4_000, 17_000, 33_000];

/// (datagen partition, seq) of every whole line of the sink's file, in file
/// order, duplicates kept. A last line without its newline is still being
/// written (or was torn by a kill, and the next run cuts it), and is skipped.
fn file_lines(path: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            (
                v["partition"].as_u64().expect("partition"),
                v["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}

/// Per partition, the (Kafka offset, seq) of every committed record of the
/// topic in log order.
fn topic_log(messages: &[OwnedMessage]) -> BTreeMap<u64, Vec<(i64, u64)>> {
    let mut log = BTreeMap::<u64, Vec<(i64, u64)>>::new();
    for m in messages {
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("json value");
        let p = v["partition"].as_u64().expect("partition");
        assert_eq!(p, m.partition() as u64, "datagen partition maps to Kafka's");
        log.entry(p)
            .or_default()
            .push((m.offset(), v["seq"].as_u64().expect("seq")));
    }
    for l in log.values_mut() {
        l.sort_by_key(|(offset, _)| *offset);
    }
    log
}

/// Checks each partition of the topic: every seq from 0 to the last, in
/// order, except that a restart may replay a run of earlier seqs (a jump
/// back); a jump forward is a loss. Returns (duplicates, jumps back).
fn check_topic(log: &BTreeMap<u64, Vec<(i64, u64)>>, max_replays: usize) -> (usize, usize) {
    assert_eq!(
        log.keys().copied().collect::<Vec<_>>(),
        (0..PARTITIONS).collect::<Vec<_>>(),
        "topic: partitions"
    );
    let (mut dups, mut replays) = (0, 0);
    for (p, records) in log {
        let seqs: Vec<u64> = records.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            seqs.first(),
            Some(&0),
            "topic partition {p} starts at seq 0"
        );
        let mut high = 0;
        let mut jumps = Vec::new();
        for (i, w) in seqs.windows(2).enumerate() {
            let (prev, next) = (w[0], w[1]);
            if next == prev + 1 {
                high = high.max(next);
                continue;
            }
            assert!(
                next <= high,
                "topic partition {p}: seq {next} follows {prev} at offset {} (highest so far {high}): a gap",
                records[i + 1].0
            );
            jumps.push((records[i + 1].0, prev, next));
        }
        assert!(
            jumps.len() <= max_replays,
            "topic partition {p}: {} replays (offset, from seq, back to seq) {jumps:?} but only {max_replays} restarts",
            jumps.len()
        );
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            (distinct.len() as u64, high),
            (PER_PARTITION, PER_PARTITION - 1),
            "topic partition {p}: distinct seqs and the highest"
        );
        dups += seqs.len() - distinct.len();
        replays += jumps.len();
    }
    (dups, replays)
}

/// Checks that the file is, per partition and per run of the worker, one
/// contiguous stretch of the topic's log that starts where the previous run
/// left its group's commit (at or after the offset read after the kill, at or
/// before the end of what it had written: no gap), and that the last run ends
/// at the log's end. `bounds[r]` is the file's line count when run `r` was
/// killed, `commits[r]` the group's committed offsets read then. Returns the
/// lines written again by a restarted run (the sink's duplicates).
fn check_file(
    lines: &[(u64, u64)],
    bounds: &[usize],
    commits: &[BTreeMap<u64, i64>],
    log: &BTreeMap<u64, Vec<(i64, u64)>>,
) -> usize {
    let mut redelivered = 0;
    for (p, records) in log {
        let seqs: Vec<u64> = records.iter().map(|(_, s)| *s).collect();
        // Index in the log just past what the runs so far wrote.
        let mut end = 0;
        for run in 0..=bounds.len() {
            let from = if run == 0 { 0 } else { bounds[run - 1] };
            let to = bounds.get(run).copied().unwrap_or(lines.len());
            let written: Vec<u64> = lines[from..to]
                .iter()
                .filter(|(lp, _)| lp == p)
                .map(|(_, s)| *s)
                .collect();
            // The first index this run may start at: the committed offset.
            let lowest = if run == 0 {
                0
            } else {
                let at = commits[run - 1].get(p).copied().unwrap_or(0);
                records.partition_point(|(offset, _)| *offset < at)
            };
            assert!(
                lowest <= end,
                "partition {p}: after run {run} the group committed past what the file holds \
                 (log index {lowest} > {end})"
            );
            if written.is_empty() {
                continue;
            }
            let start = (lowest..=end)
                .find(|&i| seqs.get(i..i + written.len()) == Some(&written[..]))
                .unwrap_or_else(|| {
                    panic!(
                        "partition {p}, run {run}: the {} lines written (seqs {:?}..{:?}) are no \
                         contiguous stretch of the log starting between index {lowest} and {end} \
                         (log seqs there: {:?})",
                        written.len(),
                        &written[..written.len().min(5)],
                        &written[written.len().saturating_sub(5)..],
                        &seqs[lowest..(end + 5).min(seqs.len())]
                    )
                });
            redelivered += end - start;
            end = start + written.len();
        }
        assert_eq!(
            end,
            seqs.len(),
            "partition {p}: the file ends at log index {end} of {}",
            seqs.len()
        );
    }
    redelivered
}

#[test]
fn kill_9_loses_nothing_through_kafka() {
    let c = crash_three_times(false);
    eprintln!(
        "3 x kill -9: no gap in {PARTITIONS} x {PER_PARTITION} records; duplicates: topic {} \
         ({} source replays), file {} ({} sink re-deliveries at restarts)",
        c.topic_dups, c.topic_replays, c.file_dups, c.redelivered
    );
}

#[test]
fn exactly_once_source_has_no_gap_and_no_duplicate_after_kill_9() {
    let c = crash_three_times(true);
    assert_eq!(
        c.topic_dups, 0,
        "duplicates in the topic under exactly-once"
    );
    assert_eq!(
        c.topic_replays, 0,
        "replays in the topic under exactly-once"
    );
    eprintln!(
        "exactly-once, 3 x kill -9: no gap, no duplicate in the topic; file (at-least-once sink) \
         duplicates: {}, all re-deliveries at restarts",
        c.file_dups
    );
}

struct Counts {
    topic_dups: usize,
    topic_replays: usize,
    file_dups: usize,
    redelivered: usize,
}

/// datagen → Kafka → file sink with three crashes; asserts no gap in the
/// topic (read_committed) or the file, and that every duplicate comes from a
/// restart (none at all in the topic under exactly-once).
fn crash_three_times(exactly_once: bool) -> Counts {
    let dir = tempdir(if exactly_once { "eos" } else { "kafka" });
    let id = unique_id(&dir);
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
    let eos = if exactly_once {
        "  exactly.once.support: required\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("pipeline.yaml"),
        format!(
            "name: {source}\nconfig:\n  connector.class: datagen\n  tasks.max: 2\n  topic: {topic}\n  \
             partitions: {PARTITIONS}\n  rate: 12000\n  max.records: {PER_PARTITION}\n  \
             offset.flush.interval.ms: 200\n  topic.creation.default.partitions: {PARTITIONS}\n  \
             topic.creation.default.replication.factor: 1\n  batch.max.records: 500\n{eos}---\n\
             name: {sink}\nconfig:\n  connector.class: file-sink\n  tasks.max: 2\n  topics: {topic}\n  \
             file: out.jsonl\n  offset.flush.interval.ms: 200\n"
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
    let group = format!("connect-{sink}");

    // Three crashes at different depths into the stream (lines counted with
    // their duplicates). After each: where the file ends, and what the
    // sink's group had committed.
    let mut bounds = Vec::new();
    let mut commits = Vec::new();
    for target in KILLS {
        let mut child = spawn(&dir, &args);
        wait_for_lines(&out, target, Duration::from_secs(90));
        signal(&child, "-KILL");
        child.wait().expect("wait");
        bounds.push(file_lines(&out).len());
        commits.push(
            (0..PARTITIONS)
                .filter_map(|p| committed(&group, &topic, p as i32).map(|at| (p, at)))
                .collect::<BTreeMap<u64, i64>>(),
        );
    }
    let mut child = spawn(&dir, &args);
    let start = Instant::now();
    loop {
        let mut distinct = BTreeMap::<u64, BTreeSet<u64>>::new();
        for (p, s) in file_lines(&out) {
            distinct.entry(p).or_default().insert(s);
        }
        let done = distinct.len() as u64 == PARTITIONS
            && distinct.values().all(|s| s.len() as u64 == PER_PARTITION);
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the pipeline never completed; see wharf.log in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );

    let messages = read_topic(&topic);
    let log = topic_log(&messages);
    let max_replays = if exactly_once { 0 } else { KILLS.len() };
    let (topic_dups, topic_replays) = check_topic(&log, max_replays);
    let lines = file_lines(&out);
    let redelivered = check_file(&lines, &bounds, &commits, &log);
    let distinct: BTreeSet<(u64, u64)> = lines.iter().copied().collect();
    assert_eq!(
        distinct.len() as u64,
        PARTITIONS * PER_PARTITION,
        "file: every seq of every partition"
    );
    let file_dups = lines.len() - distinct.len();
    assert_eq!(
        file_dups,
        topic_dups + redelivered,
        "file duplicates: the topic's, plus the sink's re-deliveries at restarts, and no other"
    );

    // Source offsets: Connect's key layout, the last sequence of each partition.
    let mut stored = BTreeMap::new();
    for m in read_topic(&offsets_topic) {
        let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf8 key");
        let value = m
            .payload()
            .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
        stored.insert(key, value);
    }
    for p in 0..PARTITIONS {
        let key = format!("[\"{source}\",{{\"partition\":{p}}}]");
        assert_eq!(
            stored.get(&key).cloned().flatten().as_deref(),
            Some(format!("{{\"seq\":{}}}", PER_PARTITION - 1).as_str()),
            "offset for {key}; stored: {stored:?}"
        );
    }

    assert_group_at_end(&sink, &topic, &messages);
    Counts {
        topic_dups,
        topic_replays,
        file_dups,
        redelivered,
    }
}

#[test]
fn refused_records_go_to_the_dead_letter_topic_with_context_headers() {
    let dir = tempdir("dlq");
    let id = unique_id(&dir);
    let (topic, dlq, sink) = (
        format!("in-{id}"),
        format!("dlq-{id}"),
        format!("picky-{id}"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    rt.block_on(async {
        for i in 0..100 {
            let value = if i % 10 == 3 {
                format!("{{\"n\":{i},\"poison\":true}}")
            } else {
                format!("{{\"n\":{i}}}")
            };
            let key = format!("k{i}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
        }
    });
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    std::fs::write(
        dir.join("sink.yaml"),
        format!(
            "name: {sink}\nconfig:\n  connector.class: {}/wharf_picky.wasm\n  topics: {topic}\n  \
             file: out.jsonl\n  errors.tolerance: all\n  errors.log.enable: true\n  \
             errors.deadletterqueue.topic.name: {dlq}\n  \
             errors.deadletterqueue.context.headers.enable: true\n",
            wharf::plugin::TEST_PLUGIN_DIR
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
    wait_for_lines(&dir.join("out.jsonl"), 90, Duration::from_secs(60));
    // Give the flush and commit a moment, then stop gracefully.
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );

    let written = std::fs::read_to_string(dir.join("out.jsonl")).expect("out");
    assert!(!written.contains("poison"), "a refused record was written");
    assert_eq!(
        written.lines().collect::<BTreeSet<_>>().len(),
        90,
        "every good record written"
    );
    let dead = read_topic(&dlq);
    assert_eq!(dead.len(), 10, "one dead letter per refused record");
    for m in &dead {
        let value = std::str::from_utf8(m.payload().expect("value")).expect("utf8");
        assert!(value.contains("poison"), "{value}");
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
        let n: i64 = serde_json::from_str::<serde_json::Value>(value).expect("json")["n"]
            .as_i64()
            .expect("n");
        assert_eq!(
            m.key(),
            Some(format!("k{n}").as_bytes()),
            "original key kept"
        );
        let get = |k: &str| headers.get(&format!("__connect.errors.{k}")).cloned();
        assert_eq!(get("topic"), Some(topic.clone()));
        assert_eq!(get("partition").as_deref(), Some("0"));
        assert_eq!(
            get("offset"),
            Some(n.to_string()),
            "offset of the refused record"
        );
        assert_eq!(get("connector.name"), Some(sink.clone()));
        assert_eq!(get("task.id").as_deref(), Some("0"));
        assert_eq!(get("stage").as_deref(), Some("TASK_PUT"));
        assert_eq!(get("class.name").as_deref(), Some("picky"));
        assert!(get("exception.class.name").is_some());
        assert!(
            get("exception.message").is_some_and(|m| m.contains("reject marker")),
            "{headers:?}"
        );
        assert!(get("exception.stacktrace").is_some());
    }
    assert_group_at_end(&sink, &topic, &read_topic(&topic));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_slow_sink_keeps_memory_flat() {
    let dir = tempdir("slow");
    let id = unique_id(&dir);
    let topic = format!("flood-{id}");
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    // A source four times faster than its sink: 8,000 records of 1 KiB per
    // second against a sink that spends 100 ms on every batch of at most 200.
    std::fs::write(
        dir.join("flood.yaml"),
        format!(
            "name: flood-{id}\nconfig:\n  connector.class: datagen\n  topic: {topic}\n  rate: 8000\n  \
             record.size: 1024\n  partitions: 2\n  topic.creation.default.partitions: 2\n  \
             topic.creation.default.replication.factor: 1\n---\n\
             name: slow-{id}\nconfig:\n  connector.class: {}/wharf_slow.wasm\n  topics: {topic}\n  \
             delay.ms: 100\n  batch.max.records: 200\n",
            wharf::plugin::TEST_PLUGIN_DIR
        ),
    )
    .expect("flood.yaml");
    let mut child = spawn(
        &dir,
        &[
            "run",
            "--worker",
            "worker.yaml",
            "flood.yaml",
            "--progress",
            "0",
        ],
    );
    let mut samples = Vec::new();
    for _ in 0..25 {
        std::thread::sleep(Duration::from_secs(1));
        samples.push(rss_kib(child.id()));
    }
    let produced: u64 = {
        let c = consumer("wharf-test-watermarks");
        (0..2)
            .map(|p| {
                c.fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .map(|(_, h)| h as u64)
                    .unwrap_or(0)
            })
            .sum()
    };
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );
    let early = samples[..8].iter().copied().max().unwrap_or(0);
    let late = samples[8..].iter().copied().max().unwrap_or(0);
    eprintln!(
        "slow sink: {produced} records of 1 KiB produced meanwhile; worker RSS (MiB) per second: {:?}",
        samples.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    assert!(
        produced > 100_000,
        "the source should have raced ahead of the sink ({produced} records)"
    );
    // The backlog sits in Kafka, not in the worker: memory stays bounded.
    assert!(
        late <= early + 96 * 1024,
        "RSS grew from {early} KiB to {late} KiB while the sink lagged"
    );
}

/// A sink whose store stays "unavailable" (retriable errors) is retried with
/// backoff for `errors.retry.timeout`, then fails its task with the reason,
/// and the group commits nothing past what was written.
#[test]
fn retriable_put_failures_are_retried_until_errors_retry_timeout() {
    let dir = tempdir("retry");
    let id = unique_id(&dir);
    let (topic, sink) = (format!("in-{id}"), format!("down-{id}"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    rt.block_on(async {
        for value in ["{\"n\":0}", "{\"n\":1,\"poison\":true}"] {
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic).payload(value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
        }
    });
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
    std::fs::write(
        dir.join("sink.yaml"),
        format!(
            "name: {sink}\nconfig:\n  connector.class: {}/wharf_picky.wasm\n  topics: {topic}\n  \
             file: out.jsonl\n  failure: retriable\n  errors.retry.timeout: 2000\n  \
             errors.retry.delay.max.ms: 400\n  task.restart.enable: false\n",
            wharf::plugin::TEST_PLUGIN_DIR
        ),
    )
    .expect("sink.yaml");
    let started = Instant::now();
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
    // A task left FAILED stays so (restartable over REST) until the worker stops.
    let log_path = dir.join("wharf.log");
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("sink task FAILED")
    {
        assert!(started.elapsed() < Duration::from_secs(60), "never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    signal(&child, "-TERM");
    let exit = child.wait().expect("wait");
    assert!(
        !exit.success(),
        "a worker with a FAILED task exits non-zero"
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let retries = log.matches("put failed, retrying").count();
    assert!(retries >= 3, "only {retries} retries:\n{log}");
    assert!(
        log.contains("sink task FAILED") && log.contains("store unavailable"),
        "no failure with the reason:\n{log}"
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert!(
        !std::fs::read_to_string(dir.join("out.jsonl"))
            .unwrap_or_default()
            .contains("poison"),
        "the refused batch was written"
    );
    let c = consumer(&format!("connect-{sink}"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed");
    let at = committed
        .find_partition(&topic, 0)
        .map(|p| p.offset())
        .expect("partition");
    assert!(
        !matches!(at, Offset::Offset(n) if n >= 2),
        "committed past the failed batch: {at:?}"
    );
}
