//! Issue 18, "nothing lost at the edges": a steady load of inserts, updates
//! and deletes on a Postgres table while one worker running the whole
//! pipeline is killed with `kill -9` at random moments, again and again, and
//! restarted each time:
//!
//! ```text
//! Postgres ─► postgres-cdc ─► Kafka topic ─┬─► s3-sink (exactly-once files)  ─► MinIO
//!                                          └─► unwrap ─► elasticsearch-sink ─► OpenSearch
//! ```
//!
//! After the last restart the worker catches up and is stopped gracefully;
//! then every committed change and every row of the table is compared with
//! the topic (at least once: duplicates are counted, never missing), the S3
//! objects (each Kafka record exactly once: no gap, no overlapping object,
//! each line equal to its Kafka record) and the OpenSearch index (one
//! document per live row, equal to it; no deleted row left).
//!
//! The kill schedule and the load come from one seeded generator: the seed is
//! printed, and `WHARF_CHAOS_SEED=<seed>` replays the same schedule and the
//! same statements (`WHARF_CHAOS_KILLS` changes the number of kills, 24 by
//! default). Everything the worker logged, across all its lives, is in
//! `wharf.log` of the test's directory, the kill times in `chaos.log`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elasticsearch::http::Method;
use rdkafka::consumer::Consumer;
use rdkafka::Message;
use serde_json::{json, Value};
use tokio_postgres::Client;

use common::cdc::Cdc;
use common::kafka::*;
use common::s3::*;
use common::*;

/// Rows in the table before the connector starts (read by the snapshot).
const INITIAL_ROWS: i64 = 1000;
/// Records per S3 file. Files rotate on this count alone (no wall-clock
/// rotation), so a replay after a crash cuts the same files with the same
/// names: Confluent's deterministic, exactly-once setting.
const FLUSH_SIZE: i64 = 250;
const DEFAULT_KILLS: usize = 24;
/// Each worker lives this long (ms, uniformly drawn) before its `kill -9`.
const LIFE_MS: (u64, u64) = (500, 4000);

/// SplitMix64: small, seedable, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A change whose transaction committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Change {
    /// Row `id` written with version `v` (0 = inserted, then +1 per update).
    Write(i64, i64),
    Delete(i64),
}

/// What the load generator committed, and so what the table must hold.
#[derive(Default)]
struct Model {
    rows: HashMap<i64, (i64, String)>,
    live: Vec<i64>,
    next_id: i64,
    log: Vec<Change>,
    transactions: u64,
}

fn payload(rng: &mut Rng, id: i64, v: i64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut p = format!("r{id}v{v}-");
    for _ in 0..rng.between(8, 64) {
        p.push(ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char);
    }
    p
}

impl Model {
    /// One transaction: `inserts` new rows, then updates and deletes of
    /// distinct rows that were live before it. Applied to the model only
    /// once COMMIT returned.
    async fn transaction(
        &mut self,
        db: &Client,
        table: &str,
        rng: &mut Rng,
        inserts: u64,
        updates: u64,
        deletes: u64,
    ) {
        let want = ((updates + deletes) as usize).min(self.live.len());
        let mut targets: Vec<i64> = Vec::with_capacity(want);
        let mut tries = 0;
        while targets.len() < want && tries < 20 * want {
            let id = self.live[rng.below(self.live.len() as u64) as usize];
            if !targets.contains(&id) {
                targets.push(id);
            }
            tries += 1;
        }
        let mut sql = String::from("BEGIN;");
        let mut changes: Vec<(Change, String)> = Vec::new();
        if inserts > 0 {
            let _ = write!(sql, "INSERT INTO {table} (id, v, payload) VALUES ");
            for i in 0..inserts {
                let id = self.next_id + i as i64;
                let p = payload(rng, id, 0);
                let _ = write!(sql, "{}({id}, 0, '{p}')", if i > 0 { "," } else { "" });
                changes.push((Change::Write(id, 0), p));
            }
            sql.push(';');
        }
        let mut deleted = Vec::new();
        for (i, id) in targets.iter().enumerate() {
            if (i as u64) < deletes {
                deleted.push(id.to_string());
                changes.push((Change::Delete(*id), String::new()));
            } else {
                let v = self.rows[id].0 + 1;
                let p = payload(rng, *id, v);
                let _ = write!(
                    sql,
                    "UPDATE {table} SET v = {v}, payload = '{p}' WHERE id = {id};"
                );
                changes.push((Change::Write(*id, v), p));
            }
        }
        if !deleted.is_empty() {
            let _ = write!(
                sql,
                "DELETE FROM {table} WHERE id IN ({});",
                deleted.join(",")
            );
        }
        sql.push_str("COMMIT;");
        db.batch_execute(&sql).await.expect("load transaction");
        self.next_id += inserts as i64;
        self.transactions += 1;
        for (c, p) in changes {
            match c {
                Change::Write(id, v) => {
                    if v == 0 {
                        self.live.push(id);
                    }
                    self.rows.insert(id, (v, p));
                }
                Change::Delete(id) => {
                    self.rows.remove(&id);
                    let at = self.live.iter().position(|x| *x == id).expect("live row");
                    self.live.swap_remove(at);
                }
            }
            self.log.push(c);
        }
    }
}

/// The steady load: small transactions every 10-30 ms, and every 40th a
/// large one (150 inserts, 30 updates, 10 deletes), until `stop`.
async fn load(
    db: Client,
    table: String,
    mut model: Model,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> Model {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (ins, upd, del) = if n.is_multiple_of(40) {
            (150, 30, 10)
        } else {
            (
                rng.between(1, 4),
                rng.between(0, 3),
                u64::from(rng.chance(40)),
            )
        };
        model
            .transaction(&db, &table, &mut rng, ins, upd, del)
            .await;
        tokio::time::sleep(Duration::from_millis(rng.between(10, 30))).await;
    }
    model
}

/// What one Kafka record (or S3 line) says happened to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Event {
    Change(Change),
    /// The tombstone after a delete (its key; S3 keeps no keys).
    Tombstone(Option<i64>),
    Other,
}

fn event(key: Option<&Value>, value: Option<&Value>) -> Event {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Event::Tombstone(key.and_then(|k| k["id"].as_i64()));
    };
    match v["op"].as_str() {
        Some("r" | "c" | "u") => match (v["after"]["id"].as_i64(), v["after"]["v"].as_i64()) {
            (Some(id), Some(ver)) => Event::Change(Change::Write(id, ver)),
            _ => Event::Other,
        },
        Some("d") => match v["before"]["id"].as_i64() {
            Some(id) => Event::Change(Change::Delete(id)),
            None => Event::Other,
        },
        _ => Event::Other,
    }
}

fn row_of(c: &Change) -> i64 {
    match c {
        Change::Write(id, _) | Change::Delete(id) => *id,
    }
}

/// (occurrences of each change, sum over changes of occurrences beyond the first).
fn tally<'a>(events: impl Iterator<Item = &'a Event>) -> (HashMap<Change, usize>, usize) {
    let mut seen: HashMap<Change, usize> = HashMap::new();
    for e in events {
        if let Event::Change(c) = e {
            *seen.entry(*c).or_default() += 1;
        }
    }
    let dups = seen.values().map(|n| n - 1).sum();
    (seen, dups)
}

fn end_offset(topic: &str) -> i64 {
    let c = consumer("wharf-test-chaos-end");
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map(|(_, hi)| hi)
        .unwrap_or(0)
}

fn partitions(topic: &str) -> usize {
    let c = consumer("wharf-test-chaos-meta");
    c.fetch_metadata(Some(topic), Duration::from_secs(10))
        .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
        .unwrap_or(0)
}

/// (start offset, key) of the sink's objects for partition 0, in offset order.
fn s3_files(s3: &S3, topic: &str) -> Vec<(i64, String)> {
    let prefix = format!("topics/{topic}/partition=0/");
    let mut out: Vec<(i64, String)> = s3
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .map(|k| {
            let name = k.rsplit('/').next().unwrap_or_default();
            let start = name
                .rsplit('+')
                .next()
                .and_then(|s| s.split('.').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("object name {k}"));
            (start, k)
        })
        .collect();
    out.sort();
    out
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Every document of the index: _id -> (_source, _version).
fn es_docs(index: &str) -> BTreeMap<String, (Value, i64)> {
    let mut out = BTreeMap::new();
    let mut after: Option<Value> = None;
    loop {
        let mut body = json!({
            "size": 5000, "version": true, "sort": [{"id": "asc"}],
            "query": {"match_all": {}}
        });
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let (status, r) =
            common::search::call(Method::Post, &format!("/{index}/_search"), Some(body));
        assert_eq!(status, 200, "search {index}: {r}");
        let hits = r["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let Some(last) = hits.last() else { break };
        after = Some(last["sort"].clone());
        for h in &hits {
            out.insert(
                h["_id"].as_str().unwrap_or_default().to_string(),
                (h["_source"].clone(), h["_version"].as_i64().unwrap_or(-1)),
            );
        }
    }
    out
}

fn note(dir: &std::path::Path, file: &str, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Drops the slot and publication however the test ends (a slot left
/// behind would hold the server's WAL forever). Declared before the worker,
/// so the worker is killed first.
struct SlotGuard(String);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let admin = common::pg::connect(&common::pg::admin_url()).await;
            common::pg::drop_slot(&admin, &self.0).await;
            let _ = admin
                .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", self.0))
                .await;
        });
    }
}

fn first<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<T> = items.into_iter().take(20).collect();
    format!("{v:?}")
}

#[test]
fn kill_9_at_random_under_load_loses_nothing_from_postgres_to_s3_and_opensearch() {
    let started = Instant::now();
    let seed: u64 = std::env::var("WHARF_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let kills: usize = std::env::var("WHARF_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let mut schedule = Rng(seed);
    let load_rng = Rng(seed ^ 0x005E_ED0F_10AD);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cdc = Cdc::new("chaos");
    let dir = cdc.dir.clone();
    println!(
        "chaos: seed {seed} (WHARF_CHAOS_SEED={seed} replays it), {kills} kills, logs in {}",
        dir.display()
    );
    let id = cdc.id.clone();
    let table = cdc.table("chaos");
    let topic = cdc.topic("chaos");
    let index = topic.to_ascii_lowercase();
    let (es_name, s3_name) = (format!("es-{id}"), format!("s3-{id}"));
    let s3 = S3::new(&format!("chaos-{}", id.replace('_', "-")));
    let _slot = SlotGuard(cdc.slot.clone());

    // The table, with rows for the snapshot; REPLICA IDENTITY FULL so a
    // delete event names the version it deleted.
    let mut model = Model {
        next_id: 1,
        ..Model::default()
    };
    let db = rt.block_on(common::pg::connect(&common::pg::url()));
    let admin = rt.block_on(common::pg::connect(&common::pg::admin_url()));
    let mut rng = load_rng;
    rt.block_on(async {
        db.batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, v int NOT NULL, payload text NOT NULL); \
             ALTER TABLE {table} REPLICA IDENTITY FULL"
        ))
        .await
        .expect("table");
        model
            .transaction(&db, &table, &mut rng, INITIAL_ROWS as u64, 0, 0)
            .await;
    });

    std::fs::write(
        dir.join("worker.yaml"),
        format!(
            "bootstrap.servers: {}\noffset.storage: kafka\noffset.storage.topic: wharf-offsets-{id}\n\
             offset.storage.partitions: 1\n",
            bootstrap()
        ),
    )
    .expect("worker.yaml");
    cdc.write_config(&[
        ("snapshot.mode", "initial"),
        ("topic.creation.default.partitions", "1"),
        ("topic.creation.default.replication.factor", "1"),
    ]);
    std::fs::write(
        dir.join("s3.yaml"),
        format!(
            "name: {s3_name}\nconfig:\n  connector.class: s3-sink\n  topics: {topic}\n  \
             flush.size: {FLUSH_SIZE}\n  behavior.on.null.values: write\n  \
             offset.flush.interval.ms: 500\n{}",
            connection_yaml(&s3.bucket)
        ),
    )
    .expect("s3.yaml");
    std::fs::write(
        dir.join("es.yaml"),
        format!(
            "name: {es_name}\nconfig:\n  connector.class: elasticsearch-sink\n  topics: {topic}\n  \
             connection.url: {}\n  key.ignore: false\n  behavior.on.null.values: delete\n  \
             offset.flush.interval.ms: 500\n  transforms: unwrap\n  transforms.unwrap.type: unwrap\n  \
             transforms.unwrap.delete.tombstone.handling.mode: tombstone\n",
            common::search::url()
        ),
    )
    .expect("es.yaml");
    let mut lives = 0usize;
    let start_worker = |lives: &mut usize| {
        *lives += 1;
        note(
            &dir,
            "wharf.log",
            &format!("===== chaos: worker life {lives} ====="),
        );
        spawn(
            &dir,
            &[
                "run",
                "--worker",
                "worker.yaml",
                "--progress",
                "0",
                "cdc.yaml",
                "s3.yaml",
                "es.yaml",
            ],
        )
    };

    // The first life compiles the plugins and takes the snapshot: wait for
    // it to reach both sinks before the chaos starts.
    let mut child = start_worker(&mut lives);
    let ready = Instant::now();
    while !(common::search::count(&index) == INITIAL_ROWS as u64
        && s3_files(&s3, &topic).len() >= (INITIAL_ROWS / FLUSH_SIZE) as usize)
    {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "the first worker exited ({status}); see {}/wharf.log",
                dir.display()
            );
        }
        assert!(
            ready.elapsed() < Duration::from_secs(150),
            "the snapshot never reached OpenSearch and S3; see {}/wharf.log",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("chaos: pipeline up after {:.1?}", started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let loader = rt.spawn(load(db, table.clone(), model, rng, stop.clone()));

    let mut problems: Vec<String> = Vec::new();
    let chaos = Instant::now();
    for k in 1..=kills {
        let life = Duration::from_millis(schedule.between(LIFE_MS.0, LIFE_MS.1));
        let born = Instant::now();
        let mut exited = None;
        while born.elapsed() < life {
            exited = child.try_wait().expect("try_wait");
            if exited.is_some() {
                break;
            }
            assert!(!loader.is_finished(), "the load generator stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(status) = exited {
            problems.push(format!(
                "worker life {lives} exited on its own ({status}) before kill {k}"
            ));
        } else {
            signal(&child, "-KILL");
            let _ = child.wait();
        }
        note(
            &dir,
            "chaos.log",
            &format!(
                "kill {k}: life {lives} after {:?} (at +{:.3}s of the chaos)",
                born.elapsed(),
                chaos.elapsed().as_secs_f64()
            ),
        );
        child = start_worker(&mut lives);
    }
    println!(
        "chaos: {kills} kills in {:.1?}; last restart done, load goes on a little",
        chaos.elapsed()
    );
    std::thread::sleep(Duration::from_millis(schedule.between(1000, 3000)));
    stop.store(true, Ordering::Relaxed);
    let mut model = rt.block_on(loader).expect("load generator");
    let mut rng = Rng(seed ^ 0x00F1_11E4);
    let db = rt.block_on(common::pg::connect(&common::pg::url()));

    // Catch up: the slot confirms the WAL end only once Kafka acknowledged
    // every event emitted.
    let wal_end = rt.block_on(common::pg::current_lsn(&db));
    let catch_up = Instant::now();
    let wait_slot = |lsn: u64, what: &str, child: &mut Child| -> bool {
        let start = Instant::now();
        loop {
            let confirmed = rt
                .block_on(common::pg::slot_confirmed(&admin, &cdc.slot))
                .unwrap_or(0);
            if confirmed >= lsn {
                return true;
            }
            if child.try_wait().expect("try_wait").is_some()
                || start.elapsed() > Duration::from_secs(90)
            {
                println!("chaos: {what}: slot at {confirmed:X}, waited for {lsn:X}");
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    if !wait_slot(wal_end, "catching up", &mut child) {
        problems.push(format!(
            "the slot never confirmed the WAL end {wal_end:X} after the last restart"
        ));
    }

    // The S3 sink writes a file only once it holds FLUSH_SIZE records (the
    // open file is discarded on stop, as Confluent's is): top the last file
    // up with inserts so that every record reaches the bucket.
    assert_eq!(partitions(&topic), 1, "{topic}: one partition expected");
    let s3_group = format!("connect-{s3_name}");
    let fill = Instant::now();
    let mut fillers = 0u64;
    loop {
        let end = end_offset(&topic);
        let cover = s3_files(&s3, &topic)
            .last()
            .map_or(0, |(s, key)| s + s3.lines(key).len() as i64);
        let at = committed(&s3_group, &topic, 0);
        if cover == end && at == Some(end) {
            break;
        }
        if fill.elapsed() > Duration::from_secs(90) {
            problems.push(format!(
                "S3 never covered the topic: end {end}, objects up to {cover}, group at {at:?}"
            ));
            break;
        }
        if child.try_wait().expect("try_wait").is_some() {
            problems.push("the last worker exited on its own while catching up".into());
            break;
        }
        // Settled: every file before `cover` is in the bucket and committed,
        // and the open file holds end - cover < FLUSH_SIZE records.
        if at == Some(cover) && end > cover && end - cover < FLUSH_SIZE {
            let need = (FLUSH_SIZE - (end - cover)) as u64;
            rt.block_on(model.transaction(&db, &table, &mut rng, need, 0, 0));
            fillers += need;
            let lsn = rt.block_on(common::pg::current_lsn(&db));
            if !wait_slot(lsn, "filler rows", &mut child) {
                problems.push("the filler rows never reached Kafka".into());
                break;
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let end = end_offset(&topic);
    let live = model.rows.len() as u64;
    let es_group = format!("connect-{es_name}");
    let es_wait = Instant::now();
    loop {
        let (at, n) = (
            committed(&es_group, &topic, 0),
            common::search::count(&index),
        );
        if at == Some(end) && n == live {
            break;
        }
        if es_wait.elapsed() > Duration::from_secs(60)
            || child.try_wait().expect("try_wait").is_some()
        {
            problems.push(format!(
                "OpenSearch never caught up: group at {at:?} of {end}, {n} documents of {live} rows"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "chaos: caught up in {:.1?} ({fillers} filler rows to close the last S3 file)",
        catch_up.elapsed()
    );

    signal(&child, "-INT");
    let stopping = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(status) if status.success() => break,
            Some(status) => {
                problems.push(format!("graceful stop failed: {status}"));
                break;
            }
            None if stopping.elapsed() > Duration::from_secs(60) => {
                problems.push("the worker did not stop within 60 s of SIGINT".into());
                break;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }

    // ---- The checker ----
    let table_rows: BTreeMap<i64, (i64, String)> = rt
        .block_on(db.query(&format!("SELECT id, v, payload FROM {table}"), &[]))
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0),
                (i64::from(r.get::<_, i32>(1)), r.get(2)),
            )
        })
        .collect();
    let modelled: BTreeMap<i64, (i64, String)> =
        model.rows.iter().map(|(k, v)| (*k, v.clone())).collect();
    assert!(
        table_rows == modelled,
        "the table differs from what the load generator committed (a test bug)"
    );
    let committed_changes: BTreeSet<Change> = model.log.iter().copied().collect();
    let deleted: BTreeSet<i64> = model
        .log
        .iter()
        .filter_map(|c| match c {
            Change::Delete(id) => Some(*id),
            _ => None,
        })
        .collect();

    // The topic: every committed change at least once, first seen in commit
    // order per row, the last record of each row its state in the table.
    let messages = read_topic(&topic);
    let parse = |b: Option<&[u8]>| -> Option<Value> {
        b.map(|b| serde_json::from_slice(b).expect("JSON in the topic"))
    };
    let mut records: BTreeMap<i64, Option<Value>> = BTreeMap::new();
    let mut topic_events: Vec<(i64, Event)> = Vec::new();
    for m in &messages {
        let (k, v) = (parse(m.key()), parse(m.payload()));
        topic_events.push((m.offset(), event(k.as_ref(), v.as_ref())));
        records.insert(m.offset(), v);
    }
    let (in_topic, topic_dups) = tally(topic_events.iter().map(|(_, e)| e));
    // Every record that repeats an earlier one (change events and tombstones).
    let distinct: std::collections::HashSet<&Event> = topic_events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| !matches!(e, Event::Other))
        .collect();
    let topic_lost: Vec<&Change> = committed_changes
        .iter()
        .filter(|c| !in_topic.contains_key(c))
        .collect();
    let tombstones: BTreeSet<i64> = topic_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Tombstone(Some(id)) => Some(*id),
            _ => None,
        })
        .collect();
    let missing_tombstones: Vec<&i64> = deleted
        .iter()
        .filter(|id| !tombstones.contains(id))
        .collect();
    let others = topic_events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Other))
        .count();
    let mut per_row: HashMap<i64, Vec<Change>> = HashMap::new();
    for (_, e) in &topic_events {
        if let Event::Change(c) = e {
            let firsts = per_row.entry(row_of(c)).or_default();
            if !firsts.contains(c) {
                firsts.push(*c);
            }
        }
    }
    let mut in_commit_order: HashMap<i64, Vec<Change>> = HashMap::new();
    for c in &model.log {
        in_commit_order.entry(row_of(c)).or_default().push(*c);
    }
    let mut out_of_order: Vec<(i64, Vec<Change>)> = per_row
        .into_iter()
        .filter(|(id, firsts)| in_commit_order.get(id) != Some(firsts))
        .collect();
    out_of_order.sort();
    if !topic_lost.is_empty() {
        problems.push(format!(
            "topic: {} committed changes missing, e.g. {}",
            topic_lost.len(),
            first(topic_lost.iter())
        ));
    }
    if !missing_tombstones.is_empty() {
        problems.push(format!(
            "topic: {} deleted rows without a tombstone, e.g. {}",
            missing_tombstones.len(),
            first(missing_tombstones.iter())
        ));
    }
    if others > 0 {
        problems.push(format!(
            "topic: {others} records that are no change of the table"
        ));
    }
    if topic_lost.is_empty() && !out_of_order.is_empty() {
        problems.push(format!(
            "topic: {} rows whose changes first appear out of commit order, e.g. {}",
            out_of_order.len(),
            first(out_of_order.iter())
        ));
    }

    // S3: the objects cut the topic into consecutive files, each Kafka record
    // in exactly one of them and equal to it.
    let files = s3_files(&s3, &topic);
    let mut covered: BTreeMap<i64, usize> = BTreeMap::new();
    let mut s3_records = 0usize;
    let mut s3_events: Vec<Event> = Vec::new();
    let mut mismatched: Vec<(String, i64)> = Vec::new();
    let mut lengths: Vec<i64> = Vec::new();
    for (start, key) in &files {
        let lines = s3.lines(key);
        s3_records += lines.len();
        lengths.push(lines.len() as i64);
        for (i, line) in lines.iter().enumerate() {
            let offset = start + i as i64;
            *covered.entry(offset).or_default() += 1;
            let value = (!line.is_null()).then_some(line);
            s3_events.push(event(None, value));
            match records.get(&offset) {
                Some(v) if v.as_ref() == value => {}
                _ => mismatched.push((file_name(key).to_string(), offset)),
            }
        }
    }
    let s3_dup_records: Vec<(&i64, &usize)> = covered.iter().filter(|(_, n)| **n > 1).collect();
    // Files rotate on FLUSH_SIZE alone: each holds exactly that many records
    // and the next one starts where it ends.
    let overlapping: Vec<String> = (0..files.len())
        .filter(|&i| {
            lengths[i] != FLUSH_SIZE
                || files
                    .get(i + 1)
                    .is_some_and(|next| files[i].0 + lengths[i] != next.0)
        })
        .map(|i| format!("{} ({} lines)", file_name(&files[i].1), lengths[i]))
        .collect();
    let gaps: Vec<i64> = (0..end).filter(|o| !covered.contains_key(o)).collect();
    let (in_s3, s3_event_dups) = tally(s3_events.iter());
    let s3_lost: Vec<&Change> = committed_changes
        .iter()
        .filter(|c| !in_s3.contains_key(c))
        .collect();
    if !s3_dup_records.is_empty() || !overlapping.is_empty() {
        problems.push(format!(
            "S3: {} Kafka records in more than one object, e.g. offsets {}; objects not of {FLUSH_SIZE} \
             records or not followed by the next offset: {}",
            s3_dup_records.len(),
            first(s3_dup_records.iter()),
            first(overlapping.iter())
        ));
    }
    if !gaps.is_empty() || !s3_lost.is_empty() {
        problems.push(format!(
            "S3: {} topic offsets in no object (e.g. {}), {} committed changes missing (e.g. {})",
            gaps.len(),
            first(gaps.iter()),
            s3_lost.len(),
            first(s3_lost.iter())
        ));
    }
    if !mismatched.is_empty() {
        problems.push(format!(
            "S3: {} lines differ from their Kafka record, e.g. {}",
            mismatched.len(),
            first(mismatched.iter())
        ));
    }
    if s3_event_dups != topic_dups {
        problems.push(format!(
            "S3: {s3_event_dups} repeated row events where the topic has {topic_dups}"
        ));
    }

    // OpenSearch: one document per live row, equal to it.
    let docs = es_docs(&index);
    let mut es_lost = Vec::new();
    let mut es_stale = Vec::new();
    for (id, (v, p)) in &table_rows {
        match docs.get(&id.to_string()) {
            None => es_lost.push(*id),
            Some((doc, _)) if *doc != json!({"id": id, "v": v, "payload": p}) => {
                es_stale.push((*id, doc.clone()))
            }
            Some(_) => {}
        }
    }
    let es_extra: Vec<&String> = docs
        .keys()
        .filter(|k| match k.parse::<i64>() {
            Ok(id) => !table_rows.contains_key(&id),
            Err(_) => true,
        })
        .collect();
    if !es_lost.is_empty() {
        problems.push(format!(
            "OpenSearch: {} live rows without a document, e.g. {}",
            es_lost.len(),
            first(es_lost.iter())
        ));
    }
    if !es_stale.is_empty() {
        problems.push(format!(
            "OpenSearch: {} documents differ from their row, e.g. {}",
            es_stale.len(),
            first(es_stale.iter())
        ));
    }
    if !es_extra.is_empty() || docs.len() != table_rows.len() {
        problems.push(format!(
            "OpenSearch: {} documents for {} live rows; documents of no live row: {}",
            docs.len(),
            table_rows.len(),
            first(es_extra.iter())
        ));
    }
    let orphans = s3.uploads();
    if !orphans.is_empty() {
        problems.push(format!(
            "S3: unfinished multipart uploads left: {orphans:?}"
        ));
    }

    println!(
        "chaos summary: seed={seed} kills={kills} lives={lives} transactions={} changes={} \
         rows={} deleted={} topic_records={} topic_duplicates={} (change events {topic_dups}) \
         topic_lost={} \
         s3_objects={} s3_records={s3_records} s3_duplicates={} s3_lost={} es_docs={} es_lost={} \
         es_extra={} time={:.1?}",
        model.transactions,
        model.log.len(),
        table_rows.len(),
        deleted.len(),
        messages.len(),
        messages.len() - others - distinct.len(),
        topic_lost.len() + missing_tombstones.len(),
        files.len(),
        s3_dup_records.len(),
        gaps.len() + s3_lost.len(),
        docs.len(),
        es_lost.len() + es_stale.len(),
        es_extra.len(),
        started.elapsed()
    );
    if problems.is_empty() {
        let _ = rt.block_on(db.batch_execute(&format!("DROP TABLE IF EXISTS {table}")));
        common::search::call(Method::Delete, &format!("/{index}"), None);
    }
    assert!(
        problems.is_empty(),
        "seed {seed}:\n  {}\nlogs: {}/wharf.log, kill times in chaos.log; table {table}, topic \
         {topic}, bucket {}, index {index} were kept",
        problems.join("\n  "),
        dir.display(),
        s3.bucket
    );
}
