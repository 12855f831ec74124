//! Exactly-once sources (`exactly.once.support: required`): one
//! transactional producer per task; each polled batch's records and the
//! offset records covering them commit in one Kafka transaction. A worker
//! killed mid-transaction leaves nothing visible to `read_committed`
//! readers: the restarted task's `init_transactions` fences the old producer
//! and aborts what it left open.

use std::time::Duration;

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use wharf_records::Record;

use super::{client_config, client_err, KafkaError};

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct TransactionalProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    id: String,
}

/// The transactional id of one task: stable across restarts, so a restart
/// fences the task's previous incarnation. Namespaced by the worker group
/// (Connect's `${group.id}-${connector}-${task}`), so two deployments on one
/// Kafka cluster with a connector of the same name do not fence each other;
/// a standalone worker (no `group.id`) keeps `wharf-`.
pub fn transactional_id(group: Option<&str>, connector: &str, task: i32) -> String {
    match group.map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) => format!("{g}-{connector}-{task}"),
        None => format!("wharf-{connector}-{task}"),
    }
}

impl TransactionalProducer {
    /// Blocking (init_transactions waits for the coordinator): call it off
    /// the async threads.
    pub fn new(
        bootstrap: &str,
        layers: &[Vec<(String, String)>],
        transactional_id: &str,
    ) -> Result<Self, KafkaError> {
        let mut config = client_config(
            bootstrap,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                super::ONE_REQUEST_IN_FLIGHT,
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
                ("queue.buffering.max.kbytes", "16384"),
                ("partitioner", "murmur2_random"),
                ("transaction.timeout.ms", "60000"),
            ],
            layers,
        );
        config.set("transactional.id", transactional_id);
        let producer: ThreadedProducer<DefaultProducerContext> = config.create().map_err(
            client_err(format!("transactional producer {transactional_id}")),
        )?;
        producer
            .init_transactions(TIMEOUT)
            .map_err(client_err(format!("init_transactions {transactional_id}")))?;
        Ok(TransactionalProducer {
            producer,
            id: transactional_id.to_string(),
        })
    }

    /// Writes records and offset records (key, value JSON text) in one
    /// transaction. Blocking. On any error the transaction is aborted.
    pub fn send_batch(
        &self,
        records: &[Record],
        offsets_topic: &str,
        offsets: &[(String, String)],
    ) -> Result<(), KafkaError> {
        let what = |s: &str| format!("{s} ({})", self.id);
        self.producer
            .begin_transaction()
            .map_err(client_err(what("begin_transaction")))?;
        let r = self
            .send_all(records, offsets_topic, offsets)
            .and_then(|()| {
                self.producer
                    .commit_transaction(TIMEOUT)
                    .map_err(client_err(what("commit_transaction")))
            });
        if r.is_err() {
            if let Err(e) = self.producer.abort_transaction(TIMEOUT) {
                tracing::warn!(producer = %self.id, "abort_transaction: {e}");
            }
        }
        r
    }

    fn send_all(
        &self,
        records: &[Record],
        offsets_topic: &str,
        offsets: &[(String, String)],
    ) -> Result<(), KafkaError> {
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut msg: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&r.topic).headers(headers);
            if let Some(k) = &r.key {
                msg = msg.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                msg = msg.payload(v.as_slice());
            }
            if let Some(p) = r.partition {
                msg = msg.partition(p);
            }
            if let Some(t) = r.timestamp {
                msg = msg.timestamp(t);
            }
            self.send(msg, &r.topic)?;
        }
        for (key, value) in offsets {
            let msg: BaseRecord<'_, str, str> = BaseRecord::to(offsets_topic)
                .key(key.as_str())
                .payload(value.as_str());
            self.send(msg, offsets_topic)?;
        }
        Ok(())
    }

    fn send<K, P>(&self, mut msg: BaseRecord<'_, K, P>, topic: &str) -> Result<(), KafkaError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(msg) {
                Ok(()) => return Ok(()),
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(KafkaError::Client {
                        what: format!("producing to '{topic}' in a transaction"),
                        source: e,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transactional_ids_are_namespaced_by_the_worker_group() {
        use super::transactional_id;
        assert_eq!(transactional_id(None, "c", 0), "wharf-c-0");
        assert_eq!(transactional_id(Some("prod"), "c", 1), "prod-c-1");
        assert_ne!(
            transactional_id(Some("a"), "c", 0),
            transactional_id(Some("b"), "c", 0)
        );
    }
}
