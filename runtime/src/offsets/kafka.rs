//! Source offsets in a compacted Kafka topic, as Connect keeps them: key
//! `["<connector>",{partition}]`, value `{offset}` (JSON without schemas),
//! a null value for a reset. The whole topic is read at start; a commit
//! returns only after the brokers acknowledged every offset record.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{offset_key, OffsetError};
use crate::kafka::{client_config, watermarks_when_ready, TopicCreation};

pub struct KafkaOffsetStore {
    topic: String,
    producer: FutureProducer,
    entries: Mutex<BTreeMap<String, Value>>,
    bootstrap: String,
    consumer_overrides: Vec<(String, String)>,
    /// Other workers write here too (a group): re-read before each load.
    shared: std::sync::atomic::AtomicBool,
}

fn kafka_err(what: &str, e: impl std::fmt::Display) -> OffsetError {
    OffsetError::Kafka(format!("{what}: {e}"))
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaOffsetStore {
    /// Creates the topic if needed (compacted) and reads it to the end.
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
        producer_overrides: Vec<(String, String)>,
        consumer_overrides: Vec<(String, String)>,
    ) -> Result<Self, OffsetError> {
        let creation = TopicCreation {
            partitions,
            replication_factor: -1,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        };
        crate::kafka::ensure_topic(admin, topic, &creation)
            .await
            .map_err(|e| kafka_err("offsets topic", e))?;
        let producer: FutureProducer = client_config(
            bootstrap,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                crate::kafka::ONE_REQUEST_IN_FLIGHT,
                ("linger.ms", "0"),
                ("partitioner", "murmur2_random"),
            ],
            &[producer_overrides],
        )
        .create()
        .map_err(|e| kafka_err("offsets producer", e))?;
        let (bootstrap_owned, topic_name, overrides) = (
            bootstrap.to_string(),
            topic.to_string(),
            consumer_overrides.clone(),
        );
        let entries =
            tokio::task::spawn_blocking(move || read_all(&bootstrap_owned, &topic_name, overrides))
                .await
                .map_err(|e| kafka_err("reading offsets", e))??;
        tracing::info!(
            topic,
            keys = entries.len(),
            "read source offsets from Kafka"
        );
        Ok(KafkaOffsetStore {
            topic: topic.to_string(),
            producer,
            entries: Mutex::new(entries),
            bootstrap: bootstrap.to_string(),
            consumer_overrides,
            shared: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Marks the topic as written by other workers too (distributed mode).
    pub fn set_shared(&self) {
        self.shared
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads the topic again, so offsets another worker committed (a task
    /// that moved here) are seen.
    async fn refresh(&self) -> Result<(), OffsetError> {
        let (bootstrap, topic, overrides) = (
            self.bootstrap.clone(),
            self.topic.clone(),
            self.consumer_overrides.clone(),
        );
        let fresh = tokio::task::spawn_blocking(move || read_all(&bootstrap, &topic, overrides))
            .await
            .map_err(|e| kafka_err("reading offsets", e))??;
        *self.entries.lock().await = fresh;
        Ok(())
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub async fn load(&self, connector: &str) -> Vec<(String, String)> {
        if self.shared.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = self.refresh().await {
                tracing::warn!(
                    connector,
                    "re-reading offsets failed, using what was read before: {e}"
                );
            }
        }
        super::entries_of(&*self.entries.lock().await, connector)
    }

    pub async fn commit(
        &self,
        connector: &str,
        offsets: &[(Value, Value)],
    ) -> Result<(), OffsetError> {
        let writes: Vec<(String, Option<Value>)> = offsets
            .iter()
            .map(|(p, o)| (offset_key(connector, p), Some(o.clone())))
            .collect();
        self.write(writes).await
    }

    /// Records offsets that were written in a producer transaction.
    pub async fn remember(&self, connector: &str, offsets: &[(Value, Value)]) {
        let mut entries = self.entries.lock().await;
        for (p, o) in offsets {
            entries.insert(offset_key(connector, p), o.clone());
        }
    }

    pub async fn alter(
        &self,
        connector: &str,
        changes: &[(Value, Option<Value>)],
    ) -> Result<(), OffsetError> {
        let writes = changes
            .iter()
            .map(|(p, o)| (offset_key(connector, p), o.clone()))
            .collect();
        self.write(writes).await
    }

    pub async fn reset(&self, connector: &str) -> Result<(), OffsetError> {
        // In a group, keys another worker committed may be missing here:
        // read the topic again so every one of them gets its tombstone.
        if self.shared.load(std::sync::atomic::Ordering::Relaxed) {
            self.refresh().await?;
        }
        let keys: Vec<(String, Option<Value>)> = {
            let entries = self.entries.lock().await;
            entries
                .keys()
                .filter(|k| super::key_connector(k).as_deref() == Some(connector))
                .map(|k| (k.clone(), None))
                .collect()
        };
        self.write(keys).await
    }

    async fn write(&self, writes: Vec<(String, Option<Value>)>) -> Result<(), OffsetError> {
        if writes.is_empty() {
            return Ok(());
        }
        // One writer at a time, so two commits for a key land in order.
        let mut entries = self.entries.lock().await;
        let mut pending = Vec::with_capacity(writes.len());
        for (key, value) in &writes {
            let payload = value.as_ref().map(Value::to_string);
            let mut record = FutureRecord::to(&self.topic).key(key.as_str());
            if let Some(p) = &payload {
                record = record.payload(p.as_str());
            }
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| kafka_err("writing offsets", e))?;
            pending.push(delivery);
        }
        for d in pending {
            match tokio::time::timeout(TIMEOUT, d).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((e, _)))) => return Err(kafka_err("writing offsets", e)),
                Ok(Err(_)) => return Err(kafka_err("writing offsets", "delivery cancelled")),
                Err(_) => return Err(kafka_err("writing offsets", "no acknowledgement in 30 s")),
            }
        }
        for (key, value) in writes {
            match value {
                Some(v) => entries.insert(key, v),
                None => entries.remove(&key),
            };
        }
        Ok(())
    }
}

fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), OffsetError> {
    watermarks_when_ready(consumer, topic, partition, TIMEOUT)
        .map_err(|e| kafka_err("offsets topic watermarks", e))
}

/// Reads the offsets topic from the beginning up to its end as of now.
fn read_all(
    bootstrap: &str,
    topic: &str,
    overrides: Vec<(String, String)>,
) -> Result<BTreeMap<String, Value>, OffsetError> {
    let consumer: BaseConsumer = client_config(
        bootstrap,
        &[
            ("group.id", "wharf-offsets-reader"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ],
        &[overrides],
    )
    .create()
    .map_err(|e| kafka_err("offsets reader", e))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| kafka_err("offsets topic metadata", e))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for p in partitions {
        let (low, high) = watermarks(&consumer, topic, p)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| kafka_err("offsets reader", e))?;
            remaining.insert(p, high);
        }
    }
    let mut entries = BTreeMap::new();
    if remaining.is_empty() {
        return Ok(entries);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_err("offsets reader", e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(kafka_err(
                "reading offsets",
                "topic not read to its end in 120 s",
            ));
        }
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.map_err(|e| kafka_err("reading offsets", e))?;
            if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                match m.payload().map(serde_json::from_slice::<Value>) {
                    Some(Ok(v)) => {
                        entries.insert(key.to_string(), v);
                    }
                    None => {
                        entries.remove(key);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(key, "skipping an unreadable offset record: {e}")
                    }
                }
            }
        }
        // Positions, not message offsets: compaction and transaction markers
        // leave holes, so the last offset may never arrive as a message.
        let positions = consumer
            .position()
            .map_err(|e| kafka_err("offsets reader position", e))?;
        for e in positions.elements() {
            if let (Offset::Offset(pos), Some(high)) = (e.offset(), remaining.get(&e.partition())) {
                if pos >= *high {
                    remaining.remove(&e.partition());
                }
            }
        }
    }
    Ok(entries)
}
