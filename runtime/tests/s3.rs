//! The `s3-sink` and `s3-source` plugins against the real S3 server (MinIO)
//! and Kafka from `tests/services/up`: files rotate by count, by record time
//! and on a wall-clock schedule, named as Confluent names them; time-based
//! directories; Parquet that pyarrow reads; a topic goes to S3 and back into
//! a new topic record for record.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::s3::*;
use common::*;
use rdkafka::message::Headers;
use rdkafka::Message;
use serde_json::{json, Value};

fn write_worker(dir: &Path) {
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n", bootstrap()),
    )
    .expect("worker.yaml");
}

/// Writes `<name>.yaml` for an s3 connector and returns its file name.
fn connector(dir: &Path, name: &str, class: &str, bucket: &str, extra: &str) -> String {
    let file = format!("{name}.yaml");
    std::fs::write(
        dir.join(&file),
        format!(
            "name: {name}\nconfig:\n  connector.class: {class}\n  offset.flush.interval.ms: 500\n{}{extra}",
            connection_yaml(bucket)
        ),
    )
    .expect("connector yaml");
    file
}

fn run(dir: &Path, files: &[&str]) -> Child {
    let mut args = vec!["run", "--worker", "worker.yaml", "--progress", "0"];
    args.extend_from_slice(files);
    spawn(dir, &args)
}

fn stop(mut child: Child) {
    signal(&child, "-INT");
    assert!(
        child.wait().expect("wait").success(),
        "graceful stop failed"
    );
}

fn wait_committed(
    child: &mut Child,
    group: &str,
    topic: &str,
    partition: i32,
    at: i64,
    limit: Duration,
) {
    let start = Instant::now();
    loop {
        let c = committed(group, topic, partition);
        if c == Some(at) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{group} on {topic}-{partition} at {c:?}, waited for {at}; see wharf.log in the test's directory"
        );
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the worker exited ({status}); see its log in the test's directory");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn numbered(n: usize, ts: impl Fn(usize) -> Option<i64>) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            value: Some(json!({"n": i}).to_string()),
            timestamp: ts(i),
            ..Default::default()
        })
        .collect()
}

fn ns(s3: &S3, key: &str) -> Vec<u64> {
    s3.lines(key)
        .iter()
        .map(|v| v["n"].as_u64().expect("n"))
        .collect()
}

#[test]
fn files_rotate_by_count_record_time_and_schedule() {
    let dir = tempdir("s3-rotate");
    let id = unique_id(&dir);
    let s3 = S3::new(&format!("rotate-{id}").to_ascii_lowercase());
    write_worker(&dir);
    let (by_count, by_time, by_clock) = (
        format!("count-{id}"),
        format!("time-{id}"),
        format!("clock-{id}"),
    );
    let count = connector(
        &dir,
        &format!("sink-{by_count}"),
        "s3-sink",
        &s3.bucket,
        &format!("  topics: {by_count}\n  flush.size: 10\n"),
    );
    let time = connector(
        &dir,
        &format!("sink-{by_time}"),
        "s3-sink",
        &s3.bucket,
        &format!(
            "  topics: {by_time}\n  flush.size: 1000\n  rotate.interval.ms: 60000\n  \
             timestamp.extractor: Record\n  s3.compression.type: gzip\n"
        ),
    );
    let clock = connector(
        &dir,
        &format!("sink-{by_clock}"),
        "s3-sink",
        &s3.bucket,
        &format!("  topics: {by_clock}\n  flush.size: 1000\n  rotate.schedule.interval.ms: 2000\n"),
    );
    produce_records(&by_count, &numbered(25, |_| None));
    // Record times: a new file when one is 60 s past its file's first.
    // Recent times: the broker's retention would delete older records at once.
    let t0 = now_ms() - 600_000;
    let secs = [0, 10, 30, 70, 80, 140];
    produce_records(
        &by_time,
        &numbered(secs.len(), |i| Some(t0 + secs[i] * 1000)),
    );
    produce_records(&by_clock, &numbered(5, |_| None));

    let mut child = run(&dir, &[&count, &time, &clock]);
    let limit = Duration::from_secs(90);
    // flush.size=10: two files written, the last five records held (not committed).
    wait_committed(
        &mut child,
        &format!("connect-sink-{by_count}"),
        &by_count,
        0,
        20,
        limit,
    );
    // rotate.interval.ms: files at 0 (0..2) and 3 (3..4); record 5 held.
    wait_committed(
        &mut child,
        &format!("connect-sink-{by_time}"),
        &by_time,
        0,
        5,
        limit,
    );
    // rotate.schedule.interval.ms: all five written at the next 2 s boundary.
    wait_committed(
        &mut child,
        &format!("connect-sink-{by_clock}"),
        &by_clock,
        0,
        5,
        limit,
    );
    stop(child);

    let keys = s3.keys();
    let dir_of = |t: &str| format!("topics/{t}/partition=0/{t}+0+");
    let mine = |t: &str| -> Vec<String> {
        keys.iter()
            .filter(|k| k.starts_with(&dir_of(t)))
            .cloned()
            .collect()
    };
    assert_eq!(
        mine(&by_count),
        [
            format!("{}0000000000.json", dir_of(&by_count)),
            format!("{}0000000010.json", dir_of(&by_count))
        ],
        "a graceful stop writes no partial file"
    );
    assert_eq!(ns(&s3, &mine(&by_count)[0]), (0..10).collect::<Vec<_>>());
    assert_eq!(ns(&s3, &mine(&by_count)[1]), (10..20).collect::<Vec<_>>());
    assert_eq!(
        committed(&format!("connect-sink-{by_count}"), &by_count, 0),
        Some(20)
    );

    let timed = mine(&by_time);
    assert_eq!(
        timed,
        [
            format!("{}0000000000.json.gz", dir_of(&by_time)),
            format!("{}0000000003.json.gz", dir_of(&by_time))
        ]
    );
    let gunzip = |key: &str| -> Vec<u64> {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&s3.get(key)[..]),
            &mut text,
        )
        .expect("gzip");
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("json")["n"]
                    .as_u64()
                    .expect("n")
            })
            .collect()
    };
    assert_eq!(gunzip(&timed[0]), [0, 1, 2]);
    assert_eq!(gunzip(&timed[1]), [3, 4]);

    let clocked = mine(&by_clock);
    assert_eq!(clocked, [format!("{}0000000000.json", dir_of(&by_clock))]);
    assert_eq!(ns(&s3, &clocked[0]), [0, 1, 2, 3, 4]);
}

/// A Python with pyarrow from PyPI, in a venv cached under ~/.cache/wharf.
fn pyarrow_python() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = Path::new(&home).join(".cache/wharf/pyarrow-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pyarrow.parquet"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv {} failed", venv.display());
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "pyarrow"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && ready(&python), "pip install pyarrow failed");
    }
    python
}

#[test]
fn time_based_directories_and_parquet_that_pyarrow_reads() {
    let dir = tempdir("s3-parquet");
    let id = unique_id(&dir);
    let s3 = S3::new(&format!("parquet-{id}").to_ascii_lowercase());
    write_worker(&dir);
    let (hourly, pq) = (format!("hourly-{id}"), format!("pq-{id}"));
    let time = connector(
        &dir,
        &format!("sink-{hourly}"),
        "s3-sink",
        &s3.bucket,
        &format!(
            "  topics: {hourly}\n  flush.size: 4\n  \
             partitioner.class: io.confluent.connect.storage.partitioner.TimeBasedPartitioner\n  \
             path.format: \"'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH\"\n  \
             partition.duration.ms: 3600000\n  timezone: UTC\n  \
             timestamp.extractor: RecordField\n  timestamp.field: at\n"
        ),
    );
    let parquet = connector(
        &dir,
        &format!("sink-{pq}"),
        "s3-sink",
        &s3.bucket,
        &format!(
            "  topics: {pq}\n  flush.size: 50\n  \
             format.class: io.confluent.connect.s3.format.parquet.ParquetFormat\n"
        ),
    );
    let at = [
        "2026-11-24T09:15:00Z",
        "2026-11-24T09:59:59Z",
        "2026-11-24T10:00:00Z",
        "2026-11-24T10:30:00Z",
    ];
    let timed: Vec<Rec> = at
        .iter()
        .enumerate()
        .map(|(i, t)| Rec {
            value: Some(json!({"n": i, "at": t}).to_string()),
            ..Default::default()
        })
        .collect();
    produce_records(&hourly, &timed);
    let rows: Vec<Value> = (0..100)
        .map(|i| json!({"id": i, "name": format!("item-{i}"), "price": 0.5 + i as f64, "ok": i % 3 == 0}))
        .collect();
    let recs: Vec<Rec> = rows
        .iter()
        .map(|r| Rec {
            value: Some(r.to_string()),
            ..Default::default()
        })
        .collect();
    produce_records(&pq, &recs);

    let mut child = run(&dir, &[&time, &parquet]);
    let limit = Duration::from_secs(90);
    wait_committed(
        &mut child,
        &format!("connect-sink-{hourly}"),
        &hourly,
        0,
        4,
        limit,
    );
    wait_committed(
        &mut child,
        &format!("connect-sink-{pq}"),
        &pq,
        0,
        100,
        limit,
    );
    stop(child);

    let keys = s3.keys();
    let hours: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(&format!("/{hourly}/")))
        .collect();
    assert_eq!(
        hours,
        [
            &format!(
                "topics/{hourly}/year=2026/month=11/day=24/hour=09/{hourly}+0+0000000000.json"
            ),
            &format!(
                "topics/{hourly}/year=2026/month=11/day=24/hour=10/{hourly}+0+0000000002.json"
            ),
        ]
    );
    assert_eq!(ns(&s3, hours[0]), [0, 1]);
    assert_eq!(ns(&s3, hours[1]), [2, 3]);

    let files: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(&format!("/{pq}/")))
        .collect();
    assert_eq!(
        files,
        [
            &format!("topics/{pq}/partition=0/{pq}+0+0000000000.snappy.parquet"),
            &format!("topics/{pq}/partition=0/{pq}+0+0000000050.snappy.parquet"),
        ]
    );
    let python = pyarrow_python();
    let mut read_back = Vec::new();
    for key in files {
        let local = dir.join(key.rsplit('/').next().expect("name"));
        std::fs::write(&local, s3.get(key)).expect("download");
        let out = Command::new(&python)
            .args([
                "-c",
                "import sys, json, pyarrow.parquet as pq\n\
                 t = pq.read_table(sys.argv[1])\n\
                 print(json.dumps({'schema': {f.name: str(f.type) for f in t.schema}, 'rows': t.to_pylist()}))",
            ])
            .arg(&local)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "pyarrow: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json from python");
        assert_eq!(
            v["schema"],
            json!({"id": "int64", "name": "string", "ok": "bool", "price": "double"})
        );
        read_back.extend(v["rows"].as_array().expect("rows").iter().cloned());
    }
    assert_eq!(
        read_back, rows,
        "pyarrow reads every row, in order, with its values"
    );
}

/// (Kafka partition, start offset) of a values file `s3-sink` wrote.
fn values_file(key: &str) -> Option<(i64, i64)> {
    let name = key.rsplit('/').next()?;
    let mut fields = name.splitn(3, '+');
    let (_, p, rest) = (fields.next()?, fields.next()?, fields.next()?);
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    if rest[digits..].starts_with(".keys") || rest[digits..].starts_with(".headers") {
        return None;
    }
    Some((p.parse().ok()?, rest[..digits].parse().ok()?))
}

/// The offsets a standalone worker in `dir` stored for `connector`, by
/// source partition (original topic, Kafka partition).
fn source_offsets(dir: &Path, connector: &str) -> BTreeMap<(String, i64), Value> {
    let text = std::fs::read_to_string(dir.join(".wharf/standalone.offsets.json"))
        .unwrap_or_else(|_| "{}".into());
    let stored: BTreeMap<String, Value> = serde_json::from_str(&text).expect("offsets file");
    stored
        .into_iter()
        .filter_map(|(k, v)| {
            let k: Value = serde_json::from_str(&k).ok()?;
            if k[0].as_str() != Some(connector) {
                return None;
            }
            let tp = (
                k[1]["topic"].as_str()?.to_string(),
                k[1]["partition"].as_i64()?,
            );
            Some((tp, v))
        })
        .collect()
}

#[test]
fn topic_to_s3_and_back_to_a_new_topic_record_for_record() {
    let dir = tempdir("s3-roundtrip");
    let id = unique_id(&dir);
    let s3 = S3::new(&format!("roundtrip-{id}").to_ascii_lowercase());
    write_worker(&dir);
    let (original, restored) = (format!("orig-{id}"), format!("restored-{id}"));
    create_topic(&original, 3);
    create_topic(&restored, 3);
    let t0 = now_ms() - 600_000;
    let records: Vec<Rec> = (0..300)
        .map(|i| Rec {
            partition: i % 3,
            key: Some(format!("key-{}", i % 17)),
            value: Some(json!({"n": i, "text": format!("value {i}")}).to_string()),
            timestamp: Some(t0 + i as i64),
            headers: vec![
                ("trace".into(), format!("t-{i}")),
                ("kind".into(), "test".into()),
            ],
        })
        .collect();
    produce_records(&original, &records);

    let sink = connector(
        &dir,
        &format!("sink-{original}"),
        "s3-sink",
        &s3.bucket,
        &format!(
            "  topics: {original}\n  tasks.max: 2\n  flush.size: 40\n  rotate.schedule.interval.ms: 1000\n  \
             store.kafka.keys: true\n  store.kafka.headers: true\n  s3.compression.type: zstd\n"
        ),
    );
    let mut child = run(&dir, &[&sink]);
    for p in 0..3 {
        wait_committed(
            &mut child,
            &format!("connect-sink-{original}"),
            &original,
            p,
            100,
            Duration::from_secs(90),
        );
    }
    stop(child);
    let keys = s3.keys();
    assert!(keys.iter().all(|k| k.ends_with(".json.zst")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.contains(".keys.")) && keys.iter().any(|k| k.contains(".headers."))
    );

    let source = connector(
        &dir,
        &format!("restore-{original}"),
        "s3-source",
        &s3.bucket,
        &format!(
            "  tasks.max: 2\n  topics: {original}\n  store.kafka.keys: true\n  store.kafka.headers: true\n  \
             s3.poll.interval.ms: 1000\n  \
             transforms: rename\n  transforms.rename.type: route\n  \
             transforms.rename.regex: \"orig-(.*)\"\n  transforms.rename.replacement: \"restored-$1\"\n"
        ),
    );
    // The last file of each original partition: once the source's stored
    // offset marks it read to its end, every record it emitted was
    // acknowledged by Kafka and it has nothing more to send.
    let mut last_file: BTreeMap<i64, String> = BTreeMap::new();
    for key in &keys {
        let Some((p, start)) = values_file(key) else {
            continue;
        };
        let e = last_file.entry(p).or_insert_with(|| key.clone());
        if values_file(e).is_some_and(|(_, s)| s < start) {
            *e = key.clone();
        }
    }
    assert_eq!(last_file.len(), 3, "values files per partition: {keys:?}");
    let restore = format!("restore-{original}");
    let mut child = run(&dir, &[&source]);
    let start = Instant::now();
    loop {
        let offsets = source_offsets(&dir, &restore);
        let all_read = last_file.iter().all(|(p, key)| {
            offsets.get(&(original.clone(), *p)).is_some_and(|o| {
                o["object"].as_str() == Some(key.as_str()) && o["done"] == json!(true)
            })
        });
        let have = common::cdc::topic_len(&restored);
        if all_read && have >= records.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{have} of {} records restored, stored offsets {offsets:?}, last files {last_file:?}; \
             see wharf.log in {}",
            records.len(),
            dir.display()
        );
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "the worker exited ({status}); see wharf.log in {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(child);
    let back = read_topic(&restored);
    let original_back = read_topic(&original);
    let shape = |m: &rdkafka::message::OwnedMessage| {
        let headers: Vec<(String, String)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (
            m.partition(),
            m.offset(),
            m.key().map(<[u8]>::to_vec),
            m.payload().map(<[u8]>::to_vec),
            m.timestamp().to_millis(),
            headers,
        )
    };
    let by_partition = |ms: Vec<rdkafka::message::OwnedMessage>| {
        let mut out: BTreeMap<i32, Vec<_>> = BTreeMap::new();
        for m in &ms {
            out.entry(m.partition()).or_default().push(shape(m));
        }
        out
    };
    let (want, got) = (by_partition(original_back), by_partition(back));
    assert_eq!(
        got.values().map(Vec::len).sum::<usize>(),
        300,
        "every record once"
    );
    assert_eq!(
        want, got,
        "same partition, offset, key, value, timestamp and headers"
    );
}

/// An upload completes in the background while the plugin goes on; when the
/// completion fails, waiting for it (as a sink's flush does before its
/// offsets are committed) fails with the reason and nothing is visible. Here
/// the upload is aborted behind the host's back between its part and its
/// completion, the host capability driven directly.
#[test]
fn a_failed_background_completion_fails_the_wait_and_shows_nothing() {
    use std::sync::Arc;
    use wharf::plugin::bindings::s3::Host;
    use wharf::plugin::bindings::types::PluginError;
    use wharf::plugin::s3::S3Grant;
    use wharf::plugin::{HostState, Limits, PluginMetrics, TaskId};

    let bucket = format!("wharf-complete-{}", std::process::id());
    let s3 = S3::new(&bucket);
    let (access, secret) = credentials();
    let config: BTreeMap<&str, String> = BTreeMap::from([
        ("s3.bucket.name", bucket.clone()),
        ("store.url", endpoint()),
        ("aws.access.key.id", access),
        ("aws.secret.access.key", secret),
    ]);
    let grant = S3Grant::from_config(|k| config.get(k).cloned())
        .expect("grant")
        .expect("a bucket is named");
    let limits = Limits {
        s3: Some(Arc::new(grant)),
        ..Limits::default()
    };
    let id = TaskId {
        connector: "complete".into(),
        task: 0,
    };
    let mut host = HostState::new(id, &limits, Arc::new(PluginMetrics::default())).expect("host");
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // A completion that succeeds: visible once waited for.
    rt.block_on(async {
        let up = host.upload_start("ok/a.json".into()).await.expect("start");
        host.upload_part(up, b"{\"a\":1}\n".to_vec())
            .await
            .expect("part");
        host.upload_complete(up).await.expect("complete");
        host.s3_settled().await.expect("settled");
    });
    assert_eq!(s3.get("ok/a.json"), b"{\"a\":1}\n");

    let up = rt.block_on(async {
        let up = host
            .upload_start("lost/b.json".into())
            .await
            .expect("start");
        host.upload_part(up, vec![b'x'; 1 << 20])
            .await
            .expect("part");
        up
    });
    assert_eq!(s3.abort_uploads(), 1, "one upload open");
    let err = rt.block_on(async {
        // Returns at once: the completion runs in the background.
        host.upload_complete(up).await.expect("complete starts");
        host.s3_settled().await.expect_err("the completion failed")
    });
    let PluginError::Fatal(reason) = err else {
        panic!("a failed completion must be fatal, got {err:?}");
    };
    assert!(
        reason.contains("completing the upload of lost/b.json failed"),
        "{reason}"
    );
    assert!(
        !s3.keys().iter().any(|k| k.starts_with("lost/")),
        "{:?}",
        s3.keys()
    );
    assert!(s3.uploads().is_empty(), "{:?}", s3.uploads());
    // Waiting again finds nothing left to wait for.
    rt.block_on(host.s3_settled()).expect("nothing pending");
}
