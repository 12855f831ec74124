//! The CDC tests' harness: a connector config of unique names (slot,
//! publication, tables, topic prefix), the worker process, and reading back
//! what reached Kafka.

use super::Child;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use serde_json::Value;
use tokio_postgres::Client;

use super::kafka::*;
use super::*;

pub struct Cdc {
    pub dir: std::path::PathBuf,
    pub id: String,
    pub prefix: String,
    pub slot: String,
}

impl Cdc {
    pub fn new(tag: &str) -> Self {
        let dir = tempdir(tag);
        let id = unique_id(&dir).to_lowercase().replace('-', "_");
        std::fs::write(
            dir.join("worker.yaml"),
            format!("bootstrap.servers: {}\n", bootstrap()),
        )
        .expect("worker.yaml");
        Cdc {
            prefix: format!("cdc{id}"),
            slot: format!("wharf_{id}"),
            dir,
            id,
        }
    }

    pub fn table(&self, name: &str) -> String {
        format!("t{}_{name}", self.id)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}.public.{}", self.prefix, self.table(name))
    }

    /// Writes `cdc.yaml`: the base config with `extra` keys set or replaced.
    pub fn write_config(&self, extra: &[(&str, &str)]) {
        let include = format!("public\\.t{}_.*", self.id);
        let mut kv: Vec<(String, String)> = [
            ("connector.class", "postgres-cdc"),
            ("topic.prefix", self.prefix.as_str()),
            ("database.hostname", "127.0.0.1"),
            ("database.port", "5432"),
            ("database.user", "cdc"),
            ("database.password", "cdc"),
            ("database.dbname", "shop"),
            ("slot.name", self.slot.as_str()),
            ("publication.name", self.slot.as_str()),
            ("publication.autocreate.mode", "filtered"),
            ("table.include.list", include.as_str()),
            ("skipped.operations", "none"),
            ("offset.flush.interval.ms", "200"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            match kv.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = v.to_string(),
                None => kv.push((k.to_string(), v.to_string())),
            }
        }
        let mut yaml = format!("name: cdc-{}\nconfig:\n", self.id);
        for (k, v) in kv {
            yaml.push_str(&format!("  {k}: '{}'\n", v.replace('\'', "''")));
        }
        std::fs::write(self.dir.join("cdc.yaml"), yaml).expect("cdc.yaml");
    }

    pub fn run(&self) -> Child {
        spawn(
            &self.dir,
            &[
                "run",
                "--worker",
                "worker.yaml",
                "--progress",
                "0",
                "cdc.yaml",
            ],
        )
    }

    pub async fn cleanup(&self, admin: &Client) {
        super::pg::drop_slot(admin, &self.slot).await;
        let _ = admin
            .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", self.slot))
            .await;
    }
}

pub fn values(topic: &str) -> Vec<(Option<Value>, Option<Value>)> {
    read_topic(topic)
        .iter()
        .map(|m| {
            let parse = |b: Option<&[u8]>| b.map(|b| serde_json::from_slice(b).expect("json"));
            (parse(m.key()), parse(m.payload()))
        })
        .collect()
}

/// Waits until `topic` holds at least `n` records.
pub async fn wait_records(topic: &str, n: usize, child: &mut Child, limit: Duration) {
    let start = Instant::now();
    loop {
        let have = topic_len(topic);
        if have >= n {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the worker exited ({status}); see wharf.log in the test's directory");
        }
        assert!(
            start.elapsed() < limit,
            "{topic}: {have} of {n} records after {limit:?}; see wharf.log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn topic_len(topic: &str) -> usize {
    let c = consumer("wharf-test-len");
    let Ok(meta) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let Some(t) = meta.topics().first() else {
        return 0;
    };
    t.partitions()
        .iter()
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .map(|(lo, hi)| (hi - lo) as usize)
                .unwrap_or(0)
        })
        .sum()
}

pub fn stop(mut child: Child) {
    signal(&child, "-INT");
    let _ = child.wait();
}

pub fn kill(mut child: Child) {
    signal(&child, "-KILL");
    let _ = child.wait();
}

pub async fn wait_slot(admin: &Client, slot: &str, child: &mut Child) {
    let start = Instant::now();
    loop {
        let active = admin
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await
            .expect("slots");
        if active.is_some() {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the worker exited ({status}); see wharf.log");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "slot {slot} never became active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
