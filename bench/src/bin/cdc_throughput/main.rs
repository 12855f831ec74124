//! PostgreSQL → Kafka CDC, side by side in one run on the same tables and
//! broker: Wharf's `postgres-cdc`, Debezium's Postgres connector 3.4 on
//! Kafka Connect 4.3.1 standalone (both from Maven Central), and
//! `pg_recvlogical` (pgoutput into a pipe) as the physical limit.
//!
//! 1. Bulk: BENCH_CDC_ROWS rows (default 200000) inserted in 1000-row
//!    transactions while every reader is stopped, then each reader drains its
//!    own slot alone: events/s from the first event in Kafka to the last.
//! 2. Live: a pgbench-like mix (3 updates + 1 insert per transaction) at
//!    BENCH_CDC_RATE events/s (default 5000) for BENCH_CDC_SECONDS (default
//!    10), one connector at a time: latency from commit (`source.ts_ms`) to
//!    consumable in Kafka, p50/p99. Peak RSS (VmHWM) of each process while capturing: reset at the first
//!    event (bulk) or after the warm-up (live), so start-up (plugin compile,
//!    JVM class loading) is left out.
//!
//! Run with `bench/run cdc` (it resolves Debezium's jars and passes
//! BENCH_DEBEZIUM_LIB and BENCH_JAVA; without them Debezium's rows are skipped).

mod engines;
mod measure;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

use engines::{Capture, Engine};

const PG: &str = "host=127.0.0.1 port=5432 user=cdc password=cdc dbname=shop";
const MIX_CONNECTIONS: u64 = 4;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect() -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(PG, NoTls)
        .await
        .context("PostgreSQL from tests/services/up")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

struct Row {
    run: &'static str,
    engine: &'static str,
    events: u64,
    rate: f64,
    p50: Option<i64>,
    p99: Option<i64>,
    rss: Option<f64>,
}

async fn setup(db: &Client, schema: &str, rows: u64) -> anyhow::Result<f64> {
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer int, amount numeric(10,2),
           status text, note text, created timestamptz DEFAULT now());
         CREATE TABLE {schema}.accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
         CREATE TABLE {schema}.tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
         CREATE TABLE {schema}.branches (bid int PRIMARY KEY, bbalance int, filler char(88));
         CREATE TABLE {schema}.history (id bigserial PRIMARY KEY, tid int, bid int, aid int,
           delta int, mtime timestamp, filler char(22));
         INSERT INTO {schema}.accounts SELECT g, g % 10 + 1, 0, '' FROM generate_series(1, 100000) g;
         INSERT INTO {schema}.tellers SELECT g, g % 10 + 1, 0, '' FROM generate_series(1, 100) g;
         INSERT INTO {schema}.branches SELECT g, 0, '' FROM generate_series(1, 10) g;
         CREATE PUBLICATION {schema} FOR TABLE {schema}.orders, {schema}.accounts,
           {schema}.tellers, {schema}.branches, {schema}.history;"
    ))
    .await
    .context("bench schema")?;
    for reader in ["recv", "wharf", "dbz"] {
        db.execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&format!("{schema}_{reader}")],
        )
        .await
        .context("slot")?;
    }
    let start = Instant::now();
    let mut next = 1u64;
    while next <= rows {
        let end = (next + 999).min(rows);
        db.batch_execute(&format!(
            "INSERT INTO {schema}.orders (id, customer, amount, status, note)
             SELECT g, g % 1000, (g % 100000) / 100.0, 'new', md5(g::text)
             FROM generate_series({next}, {end}) g"
        ))
        .await?;
        next = end + 1;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// Drains one slot's backlog through a connector: events/s between the
/// first and the last event in Kafka, and the connector's peak RSS.
async fn catch_up(mut engine: Engine, topic: String, rows: u64) -> anyhow::Result<Row> {
    let name = engine.name;
    let (arrivals, mut engine) = tokio::task::spawn_blocking(move || {
        let c = measure::consumer(&format!("bench-{topic}"), &[topic])?;
        let mut all = measure::read(&c, 0, Duration::ZERO, false);
        let start = Instant::now();
        while all.count < rows && start.elapsed() < Duration::from_secs(900) {
            let a = measure::read(&c, rows - all.count, Duration::from_secs(2), false);
            if all.count == 0 && a.count > 0 {
                engine.reset_peak();
            }
            all.merge(a);
            if engine.exited() {
                anyhow::bail!("{name} exited; see its log");
            }
        }
        Ok::<_, anyhow::Error>((all, engine))
    })
    .await??;
    let rss = engine.peak_rss_mib();
    engine.stop();
    if arrivals.count < rows {
        anyhow::bail!("{name}: only {} of {rows} events arrived", arrivals.count);
    }
    Ok(Row {
        run: "bulk insert, catch-up",
        engine: name,
        events: arrivals.count,
        rate: arrivals.rate(),
        p50: None,
        p99: None,
        rss: Some(rss),
    })
}

async fn wait_active(db: &Client, slot: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        let row = db
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await?;
        if row.is_some() {
            // Connectors report the slot active a moment before they stream.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("slot {slot} never became active")
}

/// One pgbench transaction: three updates and an insert, picked by `seed`.
async fn mix_tx(db: &Client, schema: &str, seed: u64) -> anyhow::Result<()> {
    let (aid, tid, bid) = (
        seed % 100_000 + 1,
        (seed >> 20) % 100 + 1,
        (seed >> 40) % 10 + 1,
    );
    let delta = (seed >> 50) as i64 % 10_000 - 5_000;
    db.batch_execute(&format!(
        "BEGIN;
         UPDATE {schema}.accounts SET abalance = abalance + {delta} WHERE aid = {aid};
         UPDATE {schema}.tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};
         UPDATE {schema}.branches SET bbalance = bbalance + {delta} WHERE bid = {bid};
         INSERT INTO {schema}.history (tid, bid, aid, delta, mtime)
           VALUES ({tid}, {bid}, {aid}, {delta}, now());
         COMMIT;"
    ))
    .await?;
    Ok(())
}

/// The pgbench-like mix at `rate` events/s for `seconds`; returns how many
/// transactions committed.
async fn mix(schema: &str, rate: u64, seconds: u64) -> anyhow::Result<u64> {
    let tx_per_conn = (rate / 4).max(1) as f64 / MIX_CONNECTIONS as f64;
    let interval = Duration::from_secs_f64(1.0 / tx_per_conn);
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..MIX_CONNECTIONS {
        let schema = schema.to_string();
        tasks.spawn(async move {
            let db = connect().await?;
            let mut tick = tokio::time::interval(interval);
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (conn + 1);
            let mut done = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                mix_tx(&db, &schema, seed).await?;
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total)
}

/// One connector under the live mix: latency percentiles and peak RSS.
async fn live(
    mut engine: Engine,
    db: &Client,
    slot: &str,
    schema: &str,
    prefix: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Row> {
    wait_active(db, slot).await?;
    let topics: Vec<String> = ["accounts", "tellers", "branches", "history"]
        .iter()
        .map(|t| format!("{prefix}.{schema}.{t}"))
        .collect();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let warm = Arc::new(AtomicU64::new(0));
    let (reader_target, reader_warm) = (target.clone(), warm.clone());
    let group = format!("bench-live-{prefix}");
    let reader = tokio::task::spawn_blocking(move || {
        let c = measure::consumer(&group, &topics)?;
        // The warm-up transaction's events: the topics exist, the group has
        // joined; only what follows is measured.
        let mut all = measure::read(&c, 4, Duration::from_secs(120), true);
        let warm_up = all.count;
        all.latencies.clear();
        reader_warm.store(1, Ordering::SeqCst);
        let start = Instant::now();
        while all.count < reader_target.load(Ordering::SeqCst)
            && start.elapsed() < Duration::from_secs(seconds + 60)
        {
            let a = measure::read(&c, 1_000, Duration::from_millis(200), true);
            all.merge(a);
        }
        all.count -= warm_up;
        Ok::<_, anyhow::Error>(all)
    });
    mix_tx(db, schema, 1).await?;
    let start = Instant::now();
    while warm.load(Ordering::SeqCst) == 0 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "{} never delivered the warm-up transaction",
            engine.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.reset_peak();
    let txs = mix(schema, rate, seconds).await?;
    target.store(4 + txs * 4, Ordering::SeqCst);
    let mut arrivals = reader.await??;
    let rss = engine.peak_rss_mib();
    let name = engine.name;
    engine.stop();
    Ok(Row {
        run: "pgbench-like mix, live",
        engine: name,
        events: arrivals.count,
        rate: txs as f64 * 4.0 / seconds as f64,
        p50: arrivals.percentile(0.50),
        p99: arrivals.percentile(0.99),
        rss: Some(rss),
    })
}

fn wharf_bin() -> PathBuf {
    std::env::var_os("WHARF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("wharf")))
                .unwrap_or_else(|| PathBuf::from("wharf"))
        })
}

async fn run() -> anyhow::Result<()> {
    let rows = env_u64("BENCH_CDC_ROWS", 200_000);
    let rate = env_u64("BENCH_CDC_RATE", 5_000);
    let seconds = env_u64("BENCH_CDC_SECONDS", 10);
    let debezium = match (
        std::env::var_os("BENCH_DEBEZIUM_LIB"),
        std::env::var_os("BENCH_JAVA"),
    ) {
        (Some(lib), Some(java)) => Some((PathBuf::from(java), PathBuf::from(lib))),
        _ => None,
    };
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let schema = format!("bench_{run_id}");
    let dir = std::env::temp_dir().join(format!("wharf-bench-cdc-{run_id}"));
    let db = connect().await?;
    eprintln!("[bench] loading {rows} rows into {schema}.orders (slots created first)");
    let load_rate = setup(&db, &schema, rows).await?;
    let mut table = Vec::new();

    eprintln!("[bench] pg_recvlogical drains its slot");
    let (slot, publication) = (format!("{schema}_recv"), schema.clone());
    let (secs, bytes) =
        tokio::task::spawn_blocking(move || engines::pg_recvlogical(&slot, &publication)).await??;
    table.push(Row {
        run: "bulk insert, catch-up",
        engine: "pg_recvlogical (limit)",
        events: rows,
        rate: rows as f64 / secs.max(1e-6),
        p50: None,
        p99: None,
        rss: None,
    });
    eprintln!("[bench]   {bytes} bytes of pgoutput in {secs:.2} s");

    let wharf_slot = format!("{schema}_wharf");
    let wharf_prefix = format!("wb{run_id}");
    let wharf_capture = Capture {
        slot: &wharf_slot,
        publication: &schema,
        schema: &schema,
        prefix: &wharf_prefix,
    };
    let bin = wharf_bin();
    eprintln!("[bench] Wharf drains its slot ({})", bin.display());
    let engine = engines::wharf(&bin, &dir.join("wharf"), &wharf_capture)?;
    table.push(catch_up(engine, format!("{wharf_prefix}.{schema}.orders"), rows).await?);

    let dbz_slot = format!("{schema}_dbz");
    let dbz_prefix = format!("dbz{run_id}");
    let dbz_capture = Capture {
        slot: &dbz_slot,
        publication: &schema,
        schema: &schema,
        prefix: &dbz_prefix,
    };
    if let Some((java, lib)) = &debezium {
        eprintln!("[bench] Debezium drains its slot");
        let engine = engines::debezium(java, lib, &dir.join("debezium"), &dbz_capture)?;
        table.push(catch_up(engine, format!("{dbz_prefix}.{schema}.orders"), rows).await?);
    }

    eprintln!("[bench] live mix at {rate} events/s for {seconds} s: Wharf");
    skip_backlog(&db, &wharf_slot).await?;
    let _ = std::fs::remove_file(dir.join("wharf/offsets.json"));
    let engine = engines::wharf(&bin, &dir.join("wharf"), &wharf_capture)?;
    table.push(
        live(
            engine,
            &db,
            &wharf_slot,
            &schema,
            &wharf_prefix,
            rate,
            seconds,
        )
        .await?,
    );
    if let Some((java, lib)) = &debezium {
        eprintln!("[bench] live mix at {rate} events/s for {seconds} s: Debezium");
        skip_backlog(&db, &dbz_slot).await?;
        // Debezium refuses an offset older than its slot: start it afresh.
        let _ = std::fs::remove_file(dir.join("debezium/offsets"));
        let engine = engines::debezium(java, lib, &dir.join("debezium"), &dbz_capture)?;
        table.push(live(engine, &db, &dbz_slot, &schema, &dbz_prefix, rate, seconds).await?);
    }
    cleanup(&db, &schema).await;
    print(&table, rows, load_rate, rate, seconds);
    Ok(())
}

/// Every slot sees every run's WAL: before a live run the connector's slot
/// skips what the previous run wrote, so it measures only its own changes.
async fn skip_backlog(db: &Client, slot: &str) -> anyhow::Result<()> {
    db.execute(
        "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())",
        &[&slot],
    )
    .await
    .with_context(|| format!("advancing slot {slot}"))?;
    Ok(())
}

async fn cleanup(db: &Client, schema: &str) {
    for reader in ["recv", "wharf", "dbz"] {
        let _ = db
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&format!("{schema}_{reader}")],
            )
            .await;
    }
    let _ = db
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {schema}; DROP SCHEMA IF EXISTS {schema} CASCADE"
        ))
        .await;
}

fn print(table: &[Row], rows: u64, load_rate: f64, rate: u64, seconds: u64) {
    let ms = |v: Option<i64>| v.map_or("—".to_string(), |v| v.to_string());
    println!(
        "PostgreSQL → Kafka CDC, same tables and broker, one run ({rows} rows bulk-loaded at {load_rate:.0} rows/s; live mix {rate} events/s for {seconds} s)"
    );
    println!("| run | reader | events | events/s | p50 ms | p99 ms | peak RSS MiB, capturing |");
    println!("|-----|--------|-------:|---------:|-------:|-------:|-------------:|");
    for r in table {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            r.run,
            r.engine,
            r.events,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            r.rss.map_or("—".into(), |m| format!("{m:.0}"))
        );
    }
    let find = |run: &str, engine: &str| {
        table
            .iter()
            .find(|r| r.run.starts_with(run) && r.engine.starts_with(engine))
    };
    let (w, d, limit) = (
        find("bulk", "Wharf"),
        find("bulk", "Debezium"),
        find("bulk", "pg_recvlogical"),
    );
    if let (Some(w), Some(l)) = (w, limit) {
        println!(
            "\nWharf / pg_recvlogical events/s: {:.0}% (target ≥ 60%)",
            100.0 * w.rate / l.rate
        );
    }
    if let (Some(w), Some(d)) = (w, d) {
        println!(
            "Wharf / Debezium events/s: {:.1}× (target ≥ 3×)",
            w.rate / d.rate
        );
        let wr = table
            .iter()
            .filter(|r| r.engine.starts_with("Wharf"))
            .filter_map(|r| r.rss)
            .fold(0.0, f64::max);
        let dr = table
            .iter()
            .filter(|r| r.engine.starts_with("Debezium"))
            .filter_map(|r| r.rss)
            .fold(0.0, f64::max);
        println!("Wharf / Debezium peak RSS: {wr:.0} / {dr:.0} MiB = 1/{:.0} (target ≤ 1/20 and < 100 MiB)", dr / wr.max(1.0));
    }
    if let Some(l) = find("pgbench", "Wharf") {
        println!(
            "Wharf p99 at {rate} events/s: {} ms (target < 100 ms)",
            ms(l.p99)
        );
    }
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
