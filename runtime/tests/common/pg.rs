//! PostgreSQL helpers for the CDC tests: the `cdc` role and the superuser
//! from `tests/services/up`, slot positions, and a server restart.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub fn url() -> String {
    std::env::var("WHARF_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=cdc password=cdc dbname=shop".into())
}

pub fn admin_url() -> String {
    std::env::var("WHARF_PG_ADMIN_URL").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=shop".into()
    })
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("postgres from tests/services/up");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

pub fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).expect("hi") << 32) | u64::from_str_radix(lo, 16).expect("lo")
}

/// The slot's confirmed position, if it exists.
pub async fn slot_confirmed(c: &Client, slot: &str) -> Option<u64> {
    c.query_opt(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )
    .await
    .expect("pg_replication_slots")
    .and_then(|r| r.get::<_, Option<String>>(0))
    .map(|t| parse_lsn(&t))
}

pub async fn current_lsn(c: &Client) -> u64 {
    let t: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0);
    parse_lsn(&t)
}

/// Drops what a test left behind (a slot still active is terminated first).
pub async fn drop_slot(admin: &Client, slot: &str) {
    let _ = admin
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot],
        )
        .await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let r = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        if r.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restarts the server through the project's own scripts.
pub fn restart() {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/services");
    for step in ["down", "up"] {
        let ok = std::process::Command::new(services.join(step))
            .arg("postgres")
            .status()
            .expect("services script")
            .success();
        assert!(ok, "tests/services/{step} postgres failed");
    }
}
