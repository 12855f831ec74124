//! Three workers in one group on the real broker: a connector created
//! through one worker is seen through the others, its tasks spread over the
//! group, and when one worker is killed (-9) its tasks run elsewhere within
//! 30 s and the data continues with no gap; pause, resume and stop round
//! trip through different workers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::{bootstrap, read_topic, unique_id};
use common::rest::{all_in, wait_for_address, Api};
use common::{signal, spawn_with_env, tempdir, Child};
use rdkafka::Message;
use serde_json::{json, Value};

const PARTITIONS: u64 = 6;
const PER_PARTITION: u64 = 3000;

fn start_worker(dir: &Path, name: &str, group: &str) -> (Child, Api) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("worker dir");
    std::fs::write(
        d.join("worker.yaml"),
        format!(
            "bootstrap.servers: {}\ngroup.id: {group}\nconfig.storage.topic: {group}-configs\n\
             status.storage.topic: {group}-status\noffset.storage.topic: {group}-offsets\n\
             offset.storage.partitions: 3\ntask.slots: 12\n",
            bootstrap()
        ),
    )
    .expect("worker.yaml");
    // Offsets resumed and committed are logged at debug: a gap, should one
    // ever show, can then be traced to the incarnation that made it.
    let child = spawn_with_env(
        &d,
        &["worker", "--config", "worker.yaml"],
        &[("WHARF_LOG", "info,wharf::worker::source_task=debug")],
    );
    let addr = wait_for_address(&d.join("wharf.log"));
    (child, Api::new(&addr))
}

/// Sequence numbers seen per datagen partition.
fn seqs(topic: &str) -> BTreeMap<u64, BTreeSet<u64>> {
    let mut out: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for m in read_topic(topic) {
        let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        else {
            continue;
        };
        if let (Some(p), Some(s)) = (v["partition"].as_u64(), v["seq"].as_u64()) {
            out.entry(p).or_default().insert(s);
        }
    }
    out
}

fn total(topic: &str) -> usize {
    seqs(topic).values().map(BTreeSet::len).sum()
}

/// Sequence numbers below `PER_PARTITION` that are absent, as ranges.
fn missing_ranges(got: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in (0..PER_PARTITION).filter(|s| !got.contains(s)) {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// What a failed no-gap check needs to be diagnosed from CI output alone:
/// the gaps, the status as each survivor sees it, and every worker's log
/// lines about task starts, stops, offsets and trouble.
fn diagnosis(dir: &Path, got: &BTreeMap<u64, BTreeSet<u64>>, apis: &[&Api]) -> String {
    let mut out = String::new();
    for p in 0..PARTITIONS {
        let seen = got.get(&p).cloned().unwrap_or_default();
        let extra = seen.iter().filter(|s| **s >= PER_PARTITION).count();
        out += &format!(
            "partition {p}: {} seen, missing {:?}, beyond max {extra}\n",
            seen.len(),
            missing_ranges(&seen)
        );
    }
    for api in apis {
        out += &format!(
            "status via {}: {}\n",
            api.base,
            api.get("/connectors/gen/status").body
        );
    }
    for name in ["a", "b", "c"] {
        let log = std::fs::read_to_string(dir.join(name).join("wharf.log")).unwrap_or_default();
        out += &format!("--- worker {name} ---\n");
        for l in log.lines().filter(|l| {
            l.contains("WARN")
                || l.contains("ERROR")
                || l.contains("slots")
                || l.contains("source task")
                || l.contains("resumed from")
                || (l.contains("offsets committed") && l.contains("task=0"))
        }) {
            out += l;
            out.push('\n');
        }
    }
    out
}

fn task_workers(status: &Value) -> Vec<String> {
    status["tasks"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["worker_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_workers_tasks_move_and_the_data_continues() {
    let dir = tempdir("group");
    let id = unique_id(&dir);
    let group = format!("g-{id}");
    let topic = format!("dist-{id}");
    // Worker a alone first: the connector's three tasks all start there.
    let mut workers: Vec<(Child, Api)> = vec![start_worker(&dir, "a", &group)];

    let config = json!({
        "connector.class": "datagen",
        "tasks.max": "3",
        "topic": topic,
        "partitions": PARTITIONS.to_string(),
        "rate": "300",
        "max.records": PER_PARTITION.to_string(),
        "offset.flush.interval.ms": "300",
        "topic.creation.default.partitions": PARTITIONS.to_string(),
        "topic.creation.default.replication.factor": "1",
    });
    let r = workers[0].1.call(
        "POST",
        "/connectors",
        Some(&json!({"name": "gen", "config": config})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["tasks"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r.body
    );
    workers[0]
        .1
        .wait_until("/connectors/gen/status", "3 tasks RUNNING on a", |s| {
            all_in(s, "RUNNING") && s["tasks"].as_array().map(Vec::len) == Some(3)
        });

    // b and c join and take their share of the slots.
    for name in ["b", "c"] {
        workers.push(start_worker(&dir, name, &group));
    }
    let ids: Vec<String> = workers
        .iter()
        .map(|(_, api)| api.base.trim_start_matches("http://").to_string())
        .collect();
    for name in ["b", "c"] {
        let log = dir.join(name).join("wharf.log");
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("task slots assigned") && !l.contains("slots=0"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} got no slots"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let again = workers[2].1.call(
        "POST",
        "/connectors",
        Some(&json!({"name": "gen", "config": config})),
    );
    assert_eq!(again.status, 409, "a second create through another worker");

    // Read through worker b: every task RUNNING, each on a member of the group.
    let status = workers[1]
        .1
        .wait_until("/connectors/gen/status", "3 tasks RUNNING", |s| {
            all_in(s, "RUNNING")
                && s["tasks"].as_array().map(Vec::len) == Some(3)
                && task_workers(s).iter().all(|w| ids.contains(w))
        });
    let placed = task_workers(&status);
    assert_eq!(workers[2].1.get("/connectors").body, json!(["gen"]));
    // Joins moved some tasks, but no task was restarted where it stayed:
    // each task started at most once on each worker.
    for name in ["a", "b", "c"] {
        let log = std::fs::read_to_string(dir.join(name).join("wharf.log")).unwrap_or_default();
        for t in 0..3 {
            let starts = log
                .lines()
                .filter(|l| {
                    l.contains("source task running")
                        && l.contains(&format!("connector=gen task={t} "))
                })
                .count();
            assert!(starts <= 1, "task {t} started {starts} times on {name}");
        }
    }

    // Kill -9 the worker running task 0, mid-stream.
    let start = Instant::now();
    while total(&topic) < 1500 {
        assert!(start.elapsed() < Duration::from_secs(60), "no data flowing");
        std::thread::sleep(Duration::from_millis(300));
    }
    let victim = ids
        .iter()
        .position(|w| *w == placed[0])
        .expect("task 0's worker");
    let (mut dead, _) = workers.remove(victim);
    let dead_id = ids[victim].clone();
    signal(&dead, "-KILL");
    dead.wait().expect("wait");
    let killed = Instant::now();

    // Its tasks run elsewhere within 30 s, as both survivors report.
    for (_, api) in &workers {
        let moved = api.wait_until(
            "/connectors/gen/status",
            "tasks moved off the dead worker",
            |s| all_in(s, "RUNNING") && !task_workers(s).contains(&dead_id),
        );
        assert!(
            task_workers(&moved)
                .iter()
                .all(|w| ids.contains(w) && *w != dead_id),
            "{moved}"
        );
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "tasks moved after {took:?}");
    eprintln!("tasks moved {took:?} after the kill");

    // No gap: every sequence number of every partition arrives.
    let start = Instant::now();
    loop {
        let got = seqs(&topic);
        let complete = got.len() as u64 == PARTITIONS
            && got
                .values()
                .all(|s| s.len() as u64 == PER_PARTITION && s.iter().copied().eq(0..PER_PARTITION));
        if complete {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let apis: Vec<&Api> = workers.iter().map(|(_, a)| a).collect();
            panic!("records missing:\n{}", diagnosis(&dir, &got, &apis));
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    // Pause through one survivor, seen through the other; resume; stop.
    let (a, b) = (&workers[0].1, &workers[1].1);
    assert_eq!(a.call("PUT", "/connectors/gen/pause", None).status, 202);
    b.wait_until("/connectors/gen/status", "PAUSED everywhere", |s| {
        all_in(s, "PAUSED")
    });
    assert_eq!(b.call("PUT", "/connectors/gen/resume", None).status, 202);
    a.wait_until("/connectors/gen/status", "RUNNING again", |s| {
        all_in(s, "RUNNING")
    });
    assert_eq!(a.call("PUT", "/connectors/gen/stop", None).status, 204);
    let stopped = b.wait_until("/connectors/gen/status", "STOPPED", |s| {
        s["connector"]["state"] == "STOPPED"
    });
    assert_eq!(stopped["tasks"], json!([]), "{stopped}");
    let offsets = b.get("/connectors/gen/offsets").body;
    assert_eq!(
        offsets["offsets"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{offsets}"
    );
    assert_eq!(b.call("DELETE", "/connectors/gen", None).status, 204);
    a.wait_until("/connectors", "the delete seen by the other worker", |c| {
        *c == json!([])
    });

    for (child, _) in &mut workers {
        signal(child, "-TERM");
        child.wait().expect("wait");
    }
}
