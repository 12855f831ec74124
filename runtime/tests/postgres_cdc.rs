//! The `postgres-cdc` plugin against the real PostgreSQL and Kafka from
//! `tests/services/up`: a snapshot consistent with the stream, then every
//! kind of change in Debezium's envelope with its types; a 100k-row
//! transaction; idle tables kept moving by heartbeats; bad configs failing
//! with a clear reason. (Crashes: `postgres_cdc_crash.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::cdc::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_every_change_kind_in_debezium_envelope() {
    let cdc = Cdc::new("pg-envelope");
    let db = common::pg::connect(&common::pg::url()).await;
    let admin = common::pg::connect(&common::pg::admin_url()).await;
    let (types, full) = (cdc.table("types"), cdc.table("full"));
    db.batch_execute(&format!(
        "CREATE TYPE mood{id} AS ENUM ('sad', 'happy');
         CREATE TABLE {types} (
           id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric(10,2), nv numeric, f float8,
           b bool, t text, vc varchar(20), d date, ts timestamp(6), tstz timestamptz, tm time,
           iv interval, u uuid, j jsonb, by bytea, arr int[], tarr text[], m mood{id}, big text);
         ALTER TABLE {types} ALTER COLUMN big SET STORAGE EXTERNAL;
         CREATE TABLE {full} (id int PRIMARY KEY, v text);
         ALTER TABLE {full} REPLICA IDENTITY FULL;
         INSERT INTO {types} VALUES (1, -2, 9000000000, 12.34, -0.01, 1.5, true, 'a''b', 'vc',
           '2024-02-29', '2024-03-01 12:00:00.25', '2024-03-01 12:00:00+05:30', '13:45:30.123456',
           '1 day 02:00:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\": [1, 2]}}', '\\x0102ff',
           '{{1,NULL,3}}', '{{\"x y\",NULL}}', 'happy', NULL);
         INSERT INTO {types} (id, t) VALUES (2, 'second');",
        id = cdc.id
    ))
    .await
    .expect("schema");
    cdc.write_config(&[
        ("snapshot.mode", "initial"),
        ("provide.transaction.metadata", "true"),
    ]);
    let mut child = cdc.run();
    wait_records(&cdc.topic("types"), 2, &mut child, Duration::from_secs(60)).await;

    // Every kind of change, each in its own transaction, in this order.
    let big: String = (0..2000)
        .map(|i| format!("{:x}", (i * 2_654_435_761_u64) % 997_331))
        .collect();
    for sql in [
        format!("INSERT INTO {types} (id, t, big) VALUES (3, 'three', '{big}')"),
        format!("UPDATE {types} SET t = 'one' WHERE id = 1"),
        format!("UPDATE {types} SET t = 'three!' WHERE id = 3"),
        format!("UPDATE {types} SET id = 20 WHERE id = 2"),
        format!("DELETE FROM {types} WHERE id = 3"),
        format!("INSERT INTO {full} VALUES (1, 'x')"),
        format!("UPDATE {full} SET v = 'y' WHERE id = 1"),
        format!("ALTER TABLE {types} ADD COLUMN extra int; INSERT INTO {types} (id, extra) VALUES (4, 44)"),
        format!("TRUNCATE {full}"),
        "SELECT pg_logical_emit_message(true, 'wharf', 'hello')".to_string(),
    ] {
        db.batch_execute(&format!("BEGIN; {sql}; COMMIT"))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // 2 snapshot + c + u + u + (d, tombstone, c) + d + tombstone + c = 11
    wait_records(&cdc.topic("types"), 11, &mut child, Duration::from_secs(60)).await;
    wait_records(&cdc.topic("full"), 3, &mut child, Duration::from_secs(30)).await;
    wait_records(
        &format!("{}.message", cdc.prefix),
        1,
        &mut child,
        Duration::from_secs(30),
    )
    .await;
    stop(child);

    let events = values(&cdc.topic("types"));
    let ops: Vec<String> = events
        .iter()
        .map(|(_, v)| {
            v.as_ref().map_or("tombstone".into(), |v| {
                v["op"].as_str().unwrap_or("?").to_string()
            })
        })
        .collect();
    assert_eq!(
        ops,
        [
            "r",
            "r",
            "c",
            "u",
            "u",
            "d",
            "tombstone",
            "c",
            "d",
            "tombstone",
            "c"
        ],
        "{events:?}"
    );
    let (key, first) = &events[0];
    assert_eq!(key.as_ref(), Some(&json!({"id": 1})));
    let first = first.as_ref().expect("value");
    let after = &first["after"];
    let expected = json!({
        "id": 1, "i2": -2, "i8": 9_000_000_000_i64, "n": "BNI=",
        "nv": {"scale": 2, "value": "/w=="}, "f": 1.5, "b": true, "t": "a'b", "vc": "vc",
        "d": 19782, "ts": 1_709_294_400_250_000_i64, "tstz": "2024-03-01T06:30:00.000000Z",
        "tm": 49_530_123_456_i64, "iv": 93_600_000_000_i64,
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": "{\"k\": [1, 2]}", "by": "AQL/",
        "arr": [1, null, 3], "tarr": ["x y", null], "m": "happy", "big": null
    });
    assert_eq!(after, &expected, "snapshot row: {first}");
    assert_eq!(first["source"]["connector"], "postgresql");
    assert_eq!(first["source"]["snapshot"], "first");
    assert_eq!(first["source"]["table"], cdc.table("types"));
    assert_eq!(first["source"]["db"], "shop");
    assert_eq!(
        events[1].1.as_ref().expect("v")["source"]["snapshot"],
        "last"
    );

    let v = |i: usize| events[i].1.clone().expect("value");
    assert_eq!(v(2)["after"]["big"].as_str().map(str::len), Some(big.len()));
    assert_eq!(v(2)["source"]["snapshot"], "false");
    assert!(v(2)["source"]["txId"].as_u64().is_some());
    assert!(v(2)["source"]["lsn"].as_u64().is_some());
    assert_eq!(v(2)["transaction"]["total_order"], 1);
    assert_eq!(v(3)["after"]["t"], "one");
    assert_eq!(
        v(3)["before"],
        Value::Null,
        "default replica identity has no before image"
    );
    // The TOASTed column was not touched: Debezium's placeholder.
    assert_eq!(v(4)["after"]["big"], "__debezium_unavailable_value");
    // Primary key change: delete of the old key, tombstone, create of the new.
    assert_eq!(events[5].0, Some(json!({"id": 2})));
    assert_eq!(events[6].0, Some(json!({"id": 2})));
    assert_eq!(events[7].0, Some(json!({"id": 20})));
    assert_eq!(v(7)["after"]["t"], "second");
    assert_eq!(v(8)["before"]["id"], 3);
    // The column added by ALTER TABLE follows the new Relation message.
    assert_eq!(v(10)["after"]["extra"], 44);

    let full_events = values(&cdc.topic("full"));
    let fv = |i: usize| full_events[i].1.clone().expect("value");
    assert_eq!(fv(1)["op"], "u");
    assert_eq!(
        fv(1)["before"],
        json!({"id": 1, "v": "x"}),
        "REPLICA IDENTITY FULL before image"
    );
    assert_eq!(fv(2)["op"], "t");

    let messages = values(&format!("{}.message", cdc.prefix));
    let m = messages[0].1.clone().expect("message");
    assert_eq!(m["op"], "m");
    assert_eq!(
        m["message"],
        json!({"prefix": "wharf", "content": "aGVsbG8="})
    );

    let txs = values(&format!("{}.transaction", cdc.prefix));
    let statuses: Vec<&str> = txs
        .iter()
        .filter_map(|(_, v)| v.as_ref()?["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"BEGIN"));
    assert!(statuses.contains(&"END"));
    cdc.cleanup(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_100k_rows_arrives_whole() {
    let cdc = Cdc::new("pg-100k");
    let db = common::pg::connect(&common::pg::url()).await;
    let admin = common::pg::connect(&common::pg::admin_url()).await;
    let t = cdc.table("bulk");
    db.batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY, v text)"))
        .await
        .expect("table");
    cdc.write_config(&[("snapshot.mode", "no_data")]);
    let mut child = cdc.run();
    wait_slot(&admin, &cdc.slot, &mut child).await;
    db.batch_execute(&format!(
        "INSERT INTO {t} SELECT g, md5(g::text) FROM generate_series(1, 100000) g"
    ))
    .await
    .expect("bulk insert");
    wait_records(
        &cdc.topic("bulk"),
        100_000,
        &mut child,
        Duration::from_secs(180),
    )
    .await;
    stop(child);
    let ids: std::collections::BTreeSet<i64> = values(&cdc.topic("bulk"))
        .iter()
        .filter_map(|(k, _)| k.as_ref()?["id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 100_000);
    cdc.cleanup(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tables_keep_the_slot_moving_with_heartbeats() {
    let cdc = Cdc::new("pg-idle");
    let db = common::pg::connect(&common::pg::url()).await;
    let admin = common::pg::connect(&common::pg::admin_url()).await;
    let (idle, other, beat) = (
        cdc.table("idle"),
        format!("busy{}", cdc.id),
        format!("beat{}", cdc.id),
    );
    db.batch_execute(&format!(
        "CREATE TABLE {idle} (id int PRIMARY KEY); CREATE TABLE {other} (id serial PRIMARY KEY, v text);
         CREATE TABLE {beat} (id int PRIMARY KEY, ts timestamptz); INSERT INTO {beat} VALUES (1, now())"
    ))
    .await
    .expect("tables");
    let beat_query = format!("UPDATE {beat} SET ts = now() WHERE id = 1");
    cdc.write_config(&[
        ("snapshot.mode", "no_data"),
        ("heartbeat.interval.ms", "300"),
        ("heartbeat.action.query", &beat_query),
    ]);
    let mut child = cdc.run();
    wait_slot(&admin, &cdc.slot, &mut child).await;
    // WAL grows through a table the connector does not capture.
    db.batch_execute(&format!(
        "INSERT INTO {other} (v) SELECT md5(g::text) FROM generate_series(1, 20000) g"
    ))
    .await
    .expect("writes elsewhere");
    let target = common::pg::current_lsn(&db).await;
    let start = Instant::now();
    loop {
        let confirmed = common::pg::slot_confirmed(&admin, &cdc.slot)
            .await
            .unwrap_or(0);
        if confirmed >= target {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "slot stuck at {confirmed:X}, WAL at {target:X}: an idle connector must not hold WAL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let heartbeat_topic = format!("__debezium-heartbeat.{}", cdc.prefix);
    wait_records(&heartbeat_topic, 2, &mut child, Duration::from_secs(30)).await;
    let beats = values(&heartbeat_topic);
    assert_eq!(beats[0].0, Some(json!({"serverName": cdc.prefix})));
    assert!(beats[0]
        .1
        .as_ref()
        .and_then(|v| v["ts_ms"].as_i64())
        .is_some());
    stop(child);
    cdc.cleanup(&admin).await;
}

/// Runs the connector with `extra` config until its log names a failure.
async fn failure_reason(cdc: &Cdc, extra: &[(&str, &str)]) -> String {
    cdc.write_config(extra);
    let mut child = cdc.run();
    let log = cdc.dir.join("wharf.log");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("FAILED") || l.contains("task failed"))
        {
            let line = line.to_string();
            kill(child);
            return line;
        }
        if child.try_wait().expect("try_wait").is_some() {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no failure reported; log: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_fail_with_a_clear_reason() {
    let admin = common::pg::connect(&common::pg::admin_url()).await;
    let cdc = Cdc::new("pg-bad");
    let reason = failure_reason(&cdc, &[("database.password", "wrong")]).await;
    assert!(
        reason.contains("password authentication failed"),
        "{reason}"
    );

    let cdc = Cdc::new("pg-bad");
    let reason = failure_reason(&cdc, &[("publication.autocreate.mode", "disabled")]).await;
    assert!(
        reason.contains("does not exist") && reason.contains("publication"),
        "{reason}"
    );

    let cdc = Cdc::new("pg-bad");
    let role = format!("norepl{}", cdc.id);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'x'"
        ))
        .await
        .expect("role");
    let reason = failure_reason(
        &cdc,
        &[("database.user", &role), ("database.password", "x")],
    )
    .await;
    assert!(reason.contains("REPLICATION"), "{reason}");
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

/// Last state per id from the events in `topic`: Some(n) alive, None deleted;
/// and how many `op: r` events came from an incremental snapshot.
fn last_states(topic: &str) -> (std::collections::BTreeMap<i64, Option<i64>>, usize) {
    let mut states = std::collections::BTreeMap::new();
    let mut incremental = 0;
    for (k, v) in values(topic) {
        let Some(id) = k.as_ref().and_then(|k| k["id"].as_i64()) else {
            continue;
        };
        let n = v.as_ref().and_then(|v| v["after"]["n"].as_i64());
        if v.as_ref()
            .is_some_and(|v| v["source"]["snapshot"] == "incremental")
        {
            assert_eq!(v.as_ref().map(|v| v["op"].clone()), Some(json!("r")));
            incremental += 1;
        }
        states.insert(id, n);
    }
    (states, incremental)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_snapshot_through_the_signal_table_survives_kill_9() {
    let cdc = Cdc::new("pg-incremental");
    let db = common::pg::connect(&common::pg::url()).await;
    let admin = common::pg::connect(&common::pg::admin_url()).await;
    let (t, signal) = (cdc.table("big"), cdc.table("signal"));
    let topic = cdc.topic("big");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, n int);
         INSERT INTO {t} SELECT g, 0 FROM generate_series(1, 20000) g;
         CREATE TABLE {signal} (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048));
         -- Changes committed after a chunk was read, before its close watermark:
         -- the race the window exists for, made certain at every chunk.
         CREATE FUNCTION {t}_race() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN UPDATE {t} SET n = n + 1000 WHERE id % 499 = 0; RETURN NEW; END $$;
         CREATE TRIGGER race BEFORE INSERT ON {signal} FOR EACH ROW
           WHEN (NEW.type = 'snapshot-window-close') EXECUTE FUNCTION {t}_race();"
    ))
    .await
    .expect("schema");
    // Streaming only: the rows already there come from the incremental snapshot.
    cdc.write_config(&[
        ("snapshot.mode", "no_data"),
        ("signal.data.collection", &format!("public.{signal}")),
        ("incremental.snapshot.chunk.size", "200"),
    ]);
    let mut child = cdc.run();
    wait_slot(&admin, &cdc.slot, &mut child).await;
    // Changes race the chunks: updates across the key range, deletes, inserts.
    let writer = {
        let t = t.clone();
        tokio::spawn(async move {
            let db = common::pg::connect(&common::pg::url()).await;
            for i in 0..600_i64 {
                let id = (i * 7919) % 20_000 + 1;
                db.batch_execute(&format!(
                    "UPDATE {t} SET n = n + 1 WHERE id BETWEEN {id} AND {};
                     DELETE FROM {t} WHERE id = {};
                     INSERT INTO {t} VALUES ({}, 1) ON CONFLICT (id) DO UPDATE SET n = {t}.n + 1",
                    id + 30,
                    (i * 104_729) % 20_000 + 1,
                    20_000 + i
                ))
                .await
                .expect("change");
            }
        })
    };
    db.execute(
        &format!(
            "INSERT INTO {signal} VALUES ('ad-hoc-1', 'execute-snapshot', \
             '{{\"data-collections\": [\"public.{t}\"], \"type\": \"incremental\"}}')"
        ),
        &[],
    )
    .await
    .expect("signal");

    // A crash in the middle of the incremental snapshot; the restart goes on
    // from the last key in the stored offset.
    wait_records(&topic, 6_000, &mut child, Duration::from_secs(90)).await;
    kill(child);
    let child = cdc.run();
    writer.await.expect("writer");

    let start = Instant::now();
    loop {
        // The table as it is now (the trigger changes it until the last chunk).
        let expected: std::collections::BTreeMap<i64, Option<i64>> = db
            .query(&format!("SELECT id, n FROM {t}"), &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| {
                let (id, n): (i32, i32) = (r.get(0), r.get(1));
                (i64::from(id), Some(i64::from(n)))
            })
            .collect();
        let (states, incremental) = last_states(&topic);
        let alive: std::collections::BTreeMap<i64, Option<i64>> =
            states.into_iter().filter(|(_, n)| n.is_some()).collect();
        if alive == expected {
            // Rows no change touched reached Kafka only through the snapshot.
            assert!(
                incremental >= 13_000,
                "only {incremental} incremental events"
            );
            eprintln!(
                "incremental snapshot with a kill -9: {} rows match, {incremental} op r events, {} events in all",
                expected.len(),
                topic_len(&topic)
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the table's current rows never matched the topic's last events: {} rows, {} alive in Kafka, {} differ; see {}",
            expected.len(),
            alive.len(),
            expected.iter().filter(|(id, n)| alive.get(id) != Some(n)).count(),
            cdc.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The signal table itself is never captured.
    assert_eq!(topic_len(&cdc.topic("signal")), 0);
    stop(child);
    cdc.cleanup(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_converter_with_schemas_carries_debeziums_schemas() {
    let cdc = Cdc::new("pg-schemas");
    let db = common::pg::connect(&common::pg::url()).await;
    let admin = common::pg::connect(&common::pg::admin_url()).await;
    let t = cdc.table("typed");
    db.batch_execute(&format!(
        "CREATE TYPE size{id} AS ENUM ('s', 'm', 'l');
         CREATE TABLE {t} (id int PRIMARY KEY, price numeric(10,2) NOT NULL, at timestamp,
           sz size{id}, tags text[], note text);
         INSERT INTO {t} VALUES (1, 9.99, '2024-01-01 00:00:00', 'm', '{{a,b}}', 'snap');",
        id = cdc.id
    ))
    .await
    .expect("schema");
    let json = "org.apache.kafka.connect.json.JsonConverter";
    cdc.write_config(&[
        ("snapshot.mode", "initial"),
        ("key.converter", json),
        ("value.converter", json),
    ]);
    let mut child = cdc.run();
    let topic = cdc.topic("typed");
    wait_records(&topic, 1, &mut child, Duration::from_secs(60)).await;
    db.batch_execute(&format!(
        "INSERT INTO {t} (id, price, note) VALUES (2, 1.50, 'stream'); DELETE FROM {t} WHERE id = 2"
    ))
    .await
    .expect("changes");
    // read, insert, delete, tombstone
    wait_records(&topic, 4, &mut child, Duration::from_secs(60)).await;
    let events = values(&topic);
    let name = |f: &Value, field: &str| -> Value {
        f["fields"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["field"] == field).cloned())
            .unwrap_or(Value::Null)
    };
    for (i, (key, value)) in events.iter().enumerate() {
        let key = key.as_ref().expect("key");
        assert_eq!(key["schema"]["name"], format!("{topic}.Key"), "event {i}");
        assert_eq!(
            key["schema"]["fields"],
            json!([{ "type": "int32", "optional": false, "field": "id" }])
        );
        assert!(key["payload"]["id"].is_i64());
        let Some(value) = value else {
            assert_eq!(i, 3, "only the last record is a tombstone");
            continue;
        };
        let schema = &value["schema"];
        assert_eq!(schema["name"], format!("{topic}.Envelope"));
        let after = name(schema, "after");
        assert_eq!(after["name"], format!("{topic}.Value"));
        assert_eq!(
            name(&after, "price"),
            json!({ "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                    "parameters": { "scale": "2", "connect.decimal.precision": "10" },
                    "optional": false, "field": "price" })
        );
        assert_eq!(
            name(&after, "at")["name"],
            "io.debezium.time.MicroTimestamp"
        );
        assert_eq!(name(&after, "at")["optional"], true);
        assert_eq!(name(&after, "sz")["parameters"]["allowed"], "s,m,l");
        assert_eq!(name(&after, "tags")["items"]["type"], "string");
        assert_eq!(
            name(schema, "source")["name"],
            "io.debezium.connector.postgresql.Source"
        );
        let op = &value["payload"]["op"];
        assert_eq!(*op, json!(["r", "c", "d"][i]), "event {i}");
    }
    assert_eq!(
        events[0]
            .1
            .as_ref()
            .map(|v| v["payload"]["after"]["note"].clone()),
        Some(json!("snap"))
    );
    assert_eq!(events.len(), 4);
    stop(child);
    cdc.cleanup(&admin).await;
}
