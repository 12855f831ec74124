//! A compacted topic read into memory by every worker: the group's shared
//! state (connector configs, task statuses), as Connect's KafkaBasedLog.
//! One thread follows the topic from the beginning; a write returns once
//! this worker has read it back, so a REST answer reflects the write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::watch;

use crate::kafka::{client_config, ensure_topic, watermarks_when_ready, KafkaHub, TopicCreation};

use super::ClusterError;

const READ_BACK: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Contents {
    entries: BTreeMap<String, Value>,
    /// Next offset to read.
    position: i64,
}

pub struct CompactedLog {
    topic: String,
    producer: FutureProducer,
    contents: Arc<Mutex<Contents>>,
    changed: watch::Receiver<u64>,
    stop: Arc<AtomicBool>,
}

impl CompactedLog {
    /// Creates the topic (compacted, one partition: one order for all
    /// writes) and starts following it.
    pub async fn open(hub: &KafkaHub, topic: &str) -> Result<Self, ClusterError> {
        let creation = TopicCreation {
            partitions: 1,
            replication_factor: -1,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        };
        ensure_topic(hub.admin(), topic, &creation)
            .await
            .map_err(|e| ClusterError::Kafka(format!("topic {topic}: {e}")))?;
        let producer: FutureProducer = client_config(
            hub.bootstrap(),
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                crate::kafka::ONE_REQUEST_IN_FLIGHT,
                ("linger.ms", "0"),
            ],
            &[hub.worker.prefixed("producer")],
        )
        .create()
        .map_err(|e| ClusterError::Kafka(format!("producer for {topic}: {e}")))?;
        let consumer: BaseConsumer = client_config(
            hub.bootstrap(),
            &[
                ("group.id", "wharf-log-reader"),
                ("enable.auto.commit", "false"),
            ],
            &[hub.worker.prefixed("consumer")],
        )
        .create()
        .map_err(|e| ClusterError::Kafka(format!("reader of {topic}: {e}")))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| ClusterError::Kafka(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| ClusterError::Kafka(format!("reader of {topic}: {e}")))?;
        let contents = Arc::new(Mutex::new(Contents::default()));
        let (tx, changed) = watch::channel(0u64);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (contents, stop, name) = (contents.clone(), stop.clone(), topic.to_string());
            std::thread::Builder::new()
                .name(format!("log-{topic}"))
                .spawn(move || follow(&consumer, &name, &contents, &tx, &stop))
                .map_err(|e| ClusterError::Kafka(format!("reader thread: {e}")))?;
        }
        let log = CompactedLog {
            topic: topic.to_string(),
            producer,
            contents,
            changed,
            stop,
        };
        log.catch_up(hub).await?;
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until everything written before this call has been read.
    pub async fn catch_up(&self, hub: &KafkaHub) -> Result<(), ClusterError> {
        let (topic, bootstrap) = (self.topic.clone(), hub.bootstrap().to_string());
        let overrides = hub.worker.prefixed("consumer");
        let high = tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = client_config(&bootstrap, &[], &[overrides])
                .create()
                .map_err(|e| ClusterError::Kafka(e.to_string()))?;
            watermarks_when_ready(&c, &topic, 0, READ_BACK)
                .map(|(_, high)| high)
                .map_err(|e| ClusterError::Kafka(format!("end of {topic}: {e}")))
        })
        .await
        .map_err(|e| ClusterError::Kafka(e.to_string()))??;
        self.wait_for(high).await
    }

    async fn wait_for(&self, position: i64) -> Result<(), ClusterError> {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + READ_BACK;
        while self.lock().position < position {
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Err(ClusterError::Kafka(format!(
                    "topic {} was not read up to offset {position} within {}s",
                    self.topic,
                    READ_BACK.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// Writes (or with `None` deletes) a key; returns once read back.
    pub async fn write(&self, key: &str, value: Option<&Value>) -> Result<(), ClusterError> {
        let payload = value.map(Value::to_string);
        let mut record = FutureRecord::to(&self.topic).key(key).partition(0);
        if let Some(p) = &payload {
            record = record.payload(p.as_str());
        }
        let delivered = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| {
                ClusterError::Kafka(format!("writing {key} to {}: {e}", self.topic))
            })?;
        self.wait_for(delivered.offset + 1).await
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.lock().entries.get(key).cloned()
    }

    /// Every (key, value) whose key starts with `prefix`.
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, Value)> {
        self.lock()
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Changes each time something new was read.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }
}

impl Drop for CompactedLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn follow(
    consumer: &BaseConsumer,
    topic: &str,
    contents: &Mutex<Contents>,
    tx: &watch::Sender<u64>,
    stop: &AtomicBool,
) {
    let mut errors = 0u64;
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => {
                errors += 1;
                if errors.is_power_of_two() {
                    tracing::warn!(
                        topic,
                        "reading the group's shared state: {e} ({errors} errors)"
                    );
                }
            }
            Some(Ok(m)) => {
                let key = m.key().map(|k| String::from_utf8_lossy(k).to_string());
                let value = m.payload().map(serde_json::from_slice::<Value>);
                let mut c = contents.lock().unwrap_or_else(PoisonError::into_inner);
                match (key, value) {
                    (Some(k), None) => {
                        c.entries.remove(&k);
                    }
                    (Some(k), Some(Ok(v))) => {
                        c.entries.insert(k, v);
                    }
                    (k, Some(Err(e))) => {
                        tracing::warn!(topic, key = ?k, offset = m.offset(), "skipping a record that is not JSON: {e}")
                    }
                    (None, _) => {
                        tracing::warn!(topic, offset = m.offset(), "skipping a record without key")
                    }
                }
                c.position = m.offset() + 1;
                drop(c);
                tx.send_modify(|v| *v += 1);
            }
        }
    }
}
