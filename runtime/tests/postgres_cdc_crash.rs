//! `postgres-cdc` through kill -9 of the worker and a restart of the
//! PostgreSQL server, mid-stream (its own binary: the server restart would
//! cut the other CDC tests' connections).
//!
//! A seeded workload of inserts, updates and deletes (single rows and whole
//! sets, re-inserts of deleted keys) runs while the worker is killed three
//! times and restarted, and the server is restarted once under it. The test
//! keeps a model of every row's history; afterwards each key's events in the
//! topic must be that history, replays after a restart allowed (a stretch of
//! it seen again, at most one per restart), nothing skipped: every committed
//! insert, update and delete is there, in commit order, and the last event of
//! every key is the table's row as it is (deleted rows end with a delete and
//! its tombstone). At every kill, the replication slot never confirmed a
//! transaction whose changes Kafka does not hold.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cdc::*;

const SEED: u64 = 0x5eed_cdc0_2026_0018;
/// Transactions of the workload, and where the test lets it pause.
const TXS: usize = 240;
/// Row ids the workload picks from.
const IDS: i64 = 600;

/// One change of a row, as the topic shows it (tombstones apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ev {
    /// Insert, update or snapshot read, with the row's `n` after it.
    Put(i64),
    Del,
}

/// Every row's history as the workload committed it. `n` is a per-row
/// version that only grows (an update sets the next one, a re-insert after a
/// delete too), so every `Put` of a key is distinct.
#[derive(Default, Clone)]
struct Model {
    alive: BTreeMap<i64, i64>,
    version: BTreeMap<i64, i64>,
    history: BTreeMap<i64, Vec<Ev>>,
}

impl Model {
    fn next_version(&mut self, id: i64) -> i64 {
        let v = self.version.get(&id).map_or(0, |v| v + 1);
        self.version.insert(id, v);
        v
    }

    fn put(&mut self, id: i64) -> i64 {
        let n = self.next_version(id);
        self.alive.insert(id, n);
        self.history.entry(id).or_default().push(Ev::Put(n));
        n
    }

    fn delete(&mut self, id: i64) {
        self.alive.remove(&id);
        self.history.entry(id).or_default().push(Ev::Del);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The SQL of one transaction, applied to the model as it goes: a few
/// single-row inserts (new or deleted ids), updates and deletes, and now and
/// then a statement over a whole set of rows.
fn transaction(t: &str, rng: &mut Rng, m: &mut Model) -> String {
    let mut sql = String::from("BEGIN;");
    for _ in 0..3 + rng.below(6) {
        let id = rng.below(IDS as u64) as i64;
        if m.alive.contains_key(&id) {
            if rng.below(3) == 0 {
                m.delete(id);
                sql.push_str(&format!("DELETE FROM {t} WHERE id = {id};"));
            } else {
                let n = m.put(id);
                sql.push_str(&format!("UPDATE {t} SET n = {n} WHERE id = {id};"));
            }
        } else {
            let n = m.put(id);
            sql.push_str(&format!("INSERT INTO {t} VALUES ({id}, {n});"));
        }
    }
    match rng.below(8) {
        0 => {
            // Every live row of a residue class: n = its next version.
            let r = rng.below(13) as i64;
            let ids: Vec<i64> = m.alive.keys().copied().filter(|id| id % 13 == r).collect();
            for id in ids {
                m.put(id);
            }
            sql.push_str(&format!("UPDATE {t} SET n = n + 1 WHERE id % 13 = {r};"));
        }
        1 => {
            let (r, lo) = (rng.below(5) as i64, rng.below(IDS as u64 / 2) as i64);
            let ids: Vec<i64> = m
                .alive
                .keys()
                .copied()
                .filter(|id| id % 5 == r && (lo..lo + 100).contains(id))
                .collect();
            for id in ids {
                m.delete(id);
            }
            sql.push_str(&format!(
                "DELETE FROM {t} WHERE id % 5 = {r} AND id >= {lo} AND id < {};",
                lo + 100
            ));
        }
        2 => {
            // Inserts of a range's missing rows (n = each row's next version).
            let lo = rng.below(IDS as u64 - 40) as i64;
            let mut values = Vec::new();
            for id in lo..lo + 40 {
                if !m.alive.contains_key(&id) {
                    values.push(format!("({id}, {})", m.put(id)));
                }
            }
            if !values.is_empty() {
                sql.push_str(&format!("INSERT INTO {t} VALUES {};", values.join(",")));
            }
        }
        _ => {}
    }
    sql.push_str("COMMIT");
    sql
}

/// Each key's events in topic order, tombstones marked.
fn events(topic: &str) -> BTreeMap<i64, Vec<Option<Ev>>> {
    let mut out: BTreeMap<i64, Vec<Option<Ev>>> = BTreeMap::new();
    for (k, v) in values(topic) {
        let id = k
            .as_ref()
            .and_then(|k| k["id"].as_i64())
            .unwrap_or_else(|| panic!("a record without an id key: {k:?} {v:?}"));
        let ev = v.map(|v| match v["op"].as_str() {
            Some("c" | "u" | "r") => Ev::Put(v["after"]["n"].as_i64().expect("after.n")),
            Some("d") => Ev::Del,
            _ => panic!("unexpected event for id {id}: {v}"),
        });
        out.entry(id).or_default().push(ev);
    }
    out
}

/// Checks tombstones (each follows a delete) and returns the events without
/// them.
fn without_tombstones(id: i64, got: &[Option<Ev>]) -> Vec<Ev> {
    for (i, e) in got.iter().enumerate() {
        if e.is_none() {
            assert!(
                i > 0 && got[i - 1] == Some(Ev::Del),
                "id {id}: a tombstone not right after a delete: {got:?}"
            );
        }
    }
    got.iter().flatten().copied().collect()
}

/// The fewest replays that make `got` out of `want`: stretches of `want`,
/// the first from its start, each later one starting at or before the
/// furthest point reached so far (no change skipped), together reaching at
/// least `need` changes into it. `None` if no such reading exists.
fn replays(got: &[Ev], want: &[Ev], need: usize) -> Option<usize> {
    fn go(
        got: &[Ev],
        want: &[Ev],
        need: usize,
        (j, pos, reach): (usize, usize, usize),
        memo: &mut HashMap<(usize, usize, usize), Option<usize>>,
    ) -> Option<usize> {
        if want.is_empty() {
            return (got.is_empty() && need == 0).then_some(0);
        }
        if j == got.len() {
            return (reach >= need).then_some(0);
        }
        if let Some(r) = memo.get(&(j, pos, reach)) {
            return *r;
        }
        let mut best = None;
        if want.get(pos) == Some(&got[j]) {
            best = go(got, want, need, (j + 1, pos + 1, reach.max(pos + 1)), memo);
        }
        for a in 0..=reach.min(want.len().saturating_sub(1)) {
            if a != pos && want[a] == got[j] {
                if let Some(r) = go(got, want, need, (j + 1, a + 1, reach.max(a + 1)), memo) {
                    best = Some(best.map_or(r + 1, |b: usize| b.min(r + 1)));
                }
            }
        }
        memo.insert((j, pos, reach), best);
        best
    }
    go(got, want, need, (0, 0, 0), &mut HashMap::new())
}

enum Crash {
    /// kill -9 of the worker, then a new one.
    Kill,
    /// A restart of the PostgreSQL server.
    Server,
}

/// (LSN at or after a transaction's commit, [(id, history length after it)]).
type TxEnd = (u64, Vec<(i64, usize)>);

struct Shared {
    model: Mutex<Model>,
    /// One entry per committed transaction.
    log: Mutex<Vec<TxEnd>>,
    committed: AtomicUsize,
}

/// Runs the workload, transaction `i` only once `allowed > i`.
async fn workload(
    t: String,
    shared: Arc<Shared>,
    mut allowed: tokio::sync::watch::Receiver<usize>,
) {
    let mut rng = Rng(SEED);
    let mut db = common::pg::connect(&common::pg::url()).await;
    for i in 0..TXS {
        allowed.wait_for(|a| *a > i).await.expect("gate");
        if db.is_closed() {
            // The server restarted while the workload waited.
            db = common::pg::connect(&common::pg::url()).await;
        }
        let (sql, touched) = {
            // The model changes before the commit: whatever the topic shows
            // when the test looks is in the model by then.
            let mut m = shared.model.lock().expect("model");
            let before: BTreeMap<i64, usize> =
                m.history.iter().map(|(id, h)| (*id, h.len())).collect();
            let sql = transaction(&t, &mut rng, &mut m);
            let touched: Vec<(i64, usize)> = m
                .history
                .iter()
                .filter(|(id, h)| before.get(id) != Some(&h.len()))
                .map(|(id, h)| (*id, h.len()))
                .collect();
            (sql, touched)
        };
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("transaction {i} (seed {SEED:#x}): {e}\n{sql}"));
        // After the commit returned, its end is at or before this LSN.
        let upper = common::pg::current_lsn(&db).await;
        shared.log.lock().expect("log").push((upper, touched));
        shared.committed.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: still not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a kill: every transaction the slot confirmed is in Kafka, each of
/// its keys' events reaching at least that far into the key's history.
/// Returns how many transactions it could check.
async fn check_confirmed(
    admin: &tokio_postgres::Client,
    cdc: &Cdc,
    topic: &str,
    shared: &Shared,
) -> usize {
    let confirmed = common::pg::slot_confirmed(admin, &cdc.slot)
        .await
        .unwrap_or(0);
    let in_kafka = events(topic);
    // Read after the topic: holds every change the topic can show.
    let model = shared.model.lock().expect("model").clone();
    let log = shared.log.lock().expect("log").clone();
    let mut checked = 0;
    for (upper, touched) in &log {
        if *upper > confirmed {
            continue;
        }
        checked += 1;
        for (id, need) in touched {
            let got = without_tombstones(*id, in_kafka.get(id).map_or(&[][..], Vec::as_slice));
            assert!(
                replays(&got, &model.history[id], *need).is_some(),
                "slot confirmed {confirmed:X} past a change of row {id} (tx end <= {upper:X}, \
                 change {need} of {:?}) that Kafka lacks: {got:?} (seed {SEED:#x})",
                model.history[id]
            );
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_a_postgres_restart_lose_no_committed_change() {
    let cdc = Cdc::new("pg-crash");
    let db = common::pg::connect(&common::pg::url()).await;
    let mut admin = common::pg::connect(&common::pg::admin_url()).await;
    let t = cdc.table("crash");
    let topic = cdc.topic("crash");
    db.batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY, n int)"))
        .await
        .expect("table");
    cdc.write_config(&[("snapshot.mode", "initial")]);
    let shared = Arc::new(Shared {
        model: Mutex::new(Model::default()),
        log: Mutex::new(Vec::new()),
        committed: AtomicUsize::new(0),
    });
    let (allow, allowed) = tokio::sync::watch::channel(0usize);
    let writer = tokio::spawn(workload(t.clone(), shared.clone(), allowed));
    let committed = || shared.committed.load(Ordering::SeqCst);
    let limit = Duration::from_secs(60);

    let mut child = cdc.run();
    wait_slot(&admin, &cdc.slot, &mut child).await;
    let mut checked = 0;
    let mut restarts = 0;
    // Each step lets the workload run up to a number of transactions and,
    // once it committed a given number, kills the worker (the workload goes
    // on meanwhile) or, with the workload waiting, restarts the server.
    let plan = [
        (80, 30, Crash::Kill),
        (160, 110, Crash::Kill),
        (160, 160, Crash::Server),
        (TXS, 190, Crash::Kill),
    ];
    for (step, (up_to, at, crash)) in plan.into_iter().enumerate() {
        let base = topic_len(&topic);
        allow.send_replace(up_to);
        wait_until(&format!("step {step}: {at} transactions"), limit, || {
            committed() >= at
        })
        .await;
        restarts += 1;
        match crash {
            Crash::Server => {
                // The server restarts under a running worker: it reconnects.
                assert_eq!(committed(), up_to, "the workload waits at its gate");
                common::pg::restart();
                admin = common::pg::connect(&common::pg::admin_url()).await;
                wait_slot(&admin, &cdc.slot, &mut child).await;
            }
            Crash::Kill => {
                // Mid-stream: this run of the worker delivered something.
                wait_until(
                    &format!("step {step}: events from the worker"),
                    limit,
                    || topic_len(&topic) > base,
                )
                .await;
                kill(child);
                checked += check_confirmed(&admin, &cdc, &topic, &shared).await;
                child = cdc.run();
                wait_slot(&admin, &cdc.slot, &mut child).await;
            }
        }
    }
    writer.await.expect("workload");
    assert!(
        checked > 0,
        "the slot never confirmed a transaction the test could check"
    );

    // The table is the model's (a new connection: the server restarted).
    let model = shared.model.lock().expect("model").clone();
    let db = common::pg::connect(&common::pg::url()).await;
    let table: BTreeMap<i64, i64> = db
        .query(&format!("SELECT id, n FROM {t}"), &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (i64::from(r.get::<_, i32>(0)), i64::from(r.get::<_, i32>(1))))
        .collect();
    assert_eq!(table, model.alive, "the table is the workload's model");

    // Wait until every key's last event is its row as it is now.
    let start = Instant::now();
    let got = loop {
        let got = events(&topic);
        let last_ok = |id: &i64| {
            let last = got.get(id).and_then(|e| e.last()).copied();
            match model.alive.get(id) {
                Some(n) => last == Some(Some(Ev::Put(*n))),
                None => last == Some(None),
            }
        };
        let differ: Vec<i64> = model
            .history
            .keys()
            .copied()
            .filter(|id| !last_ok(id))
            .collect();
        if differ.is_empty() && got.len() == model.history.len() {
            break got;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "the worker exited ({status}); see wharf.log in {}",
                cdc.dir.display()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{} of {} keys do not end with their row's state (first: {:?}); see wharf.log in {}",
            differ.len(),
            model.history.len(),
            &differ[..differ.len().min(10)],
            cdc.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    stop(child);

    // Every key: its whole history, in commit order, replays only at restarts.
    let (mut events_total, mut replayed_keys) = (0, 0);
    for (id, want) in &model.history {
        let all = &got[id];
        events_total += all.len();
        let changes = without_tombstones(*id, all);
        let n = replays(&changes, want, want.len()).unwrap_or_else(|| {
            panic!(
                "id {id}: the topic's events {changes:?} are not its history {want:?} \
                 (replays allowed; seed {SEED:#x}; see wharf.log in {})",
                cdc.dir.display()
            )
        });
        assert!(
            n <= restarts,
            "id {id}: {n} replays after {restarts} restarts: {changes:?} of {want:?} (seed {SEED:#x})"
        );
        replayed_keys += usize::from(n > 0);
        if !model.alive.contains_key(id) {
            assert_eq!(
                &all[all.len() - 2..],
                [Some(Ev::Del), None],
                "id {id}: a deleted row ends with its delete and a tombstone"
            );
        }
    }
    assert!(
        got.keys().all(|id| model.history.contains_key(id)),
        "events for ids the workload never wrote"
    );
    let changes: usize = model.history.values().map(Vec::len).sum();
    eprintln!(
        "{TXS} transactions ({changes} changes to {} rows, {} deleted at the end), 3 x kill -9 and a \
         server restart: every change in Kafka in commit order; {events_total} events, \
         {replayed_keys} keys with a replay; {checked} confirmed transactions found in Kafka at the kills",
        model.history.len(),
        model.history.len() - model.alive.len()
    );
    cdc.cleanup(&admin).await;
}
