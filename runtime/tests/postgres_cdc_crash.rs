//! `postgres-cdc` through kill -9 of the worker and a restart of the
//! PostgreSQL server, mid-stream (its own binary: the server restart would
//! cut the other CDC tests' connections).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cdc::*;

/// Rows of the `crash` table in Kafka: key id -> values in topic order.
fn crash_rows(topic: &str) -> BTreeMap<i64, Vec<i64>> {
    let mut rows: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (k, v) in values(topic) {
        let (Some(k), Some(v)) = (k, v) else { continue };
        if let (Some(id), Some(n)) = (k["id"].as_i64(), v["after"]["n"].as_i64()) {
            rows.entry(id).or_default().push(n);
        }
    }
    rows
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
    let mut child = Some(cdc.run());
    // Each round: 20 transactions of 50 rows (inserts, then updates that
    // raise n), then a kill -9 (or a server restart) and a restart.
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    let mut definitely_before: Vec<(u64, Vec<i64>)> = Vec::new();
    let mut checked = 0;
    for round in 0..4_i64 {
        if let Some(c) = child.as_mut() {
            wait_slot(&admin, &cdc.slot, c).await;
        }
        // A fresh connection each round: the server restarts in round 2.
        let db = common::pg::connect(&common::pg::url()).await;
        for tx in 0..20_i64 {
            let base = round * 1000 + tx * 50;
            let ids: Vec<i64> = (base..base + 50).collect();
            db.batch_execute(&format!(
                "BEGIN; INSERT INTO {t} SELECT g, 0 FROM generate_series({base}, {}) g; \
                 UPDATE {t} SET n = n + 1 WHERE id % 7 = {}; COMMIT",
                base + 49,
                tx % 7
            ))
            .await
            .expect("transaction");
            // After the commit returned, its end is at or before this LSN.
            let upper = common::pg::current_lsn(&db).await;
            definitely_before.push((upper, ids));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rows: Vec<(i32, i32)> = db
            .query(&format!("SELECT id, n FROM {t}"), &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        expected = rows
            .into_iter()
            .map(|(i, n)| (i64::from(i), i64::from(n)))
            .collect();
        let c = child.take().expect("worker");
        if round == 2 {
            // The server restarts under a running worker: it reconnects.
            common::pg::restart();
            admin = common::pg::connect(&common::pg::admin_url()).await;
            child = Some(c);
            continue;
        }
        kill(c);
        // The slot never confirms a transaction Kafka does not hold.
        let confirmed = common::pg::slot_confirmed(&admin, &cdc.slot)
            .await
            .unwrap_or(0);
        let in_kafka = crash_rows(&topic);
        for (upper, ids) in &definitely_before {
            if *upper <= confirmed {
                checked += 1;
                for id in ids {
                    assert!(
                        in_kafka.contains_key(id),
                        "slot confirmed {confirmed:X} past row {id} (tx end <= {upper:X}) that Kafka lacks"
                    );
                }
            }
        }
        child = Some(cdc.run());
    }
    assert!(
        checked > 0,
        "the slot never confirmed a transaction the test could check"
    );
    let mut c = child.take().expect("worker");
    let want = expected.len();
    let start = Instant::now();
    loop {
        let rows = crash_rows(&topic);
        let complete = rows.len() == want
            && expected
                .iter()
                .all(|(id, n)| rows.get(id).and_then(|v| v.last()) == Some(n));
        if complete {
            // Every change at least once, in commit order per key: replays
            // after a crash repeat a run of earlier values, but the values
            // first appear in order 0, 1, 2, ... and none is missing.
            for (id, ns) in &rows {
                let mut firsts: Vec<i64> = Vec::new();
                for n in ns {
                    if !firsts.contains(n) {
                        firsts.push(*n);
                    }
                }
                let want: Vec<i64> = (0..=expected[id]).collect();
                assert_eq!(firsts, want, "row {id}: {ns:?}");
            }
            break;
        }
        if let Some(status) = c.try_wait().expect("try_wait") {
            panic!("the worker exited ({status}); see wharf.log");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} of {want} rows with their last value; see wharf.log in {}",
            rows.len(),
            cdc.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop(c);
    cdc.cleanup(&admin).await;
}
