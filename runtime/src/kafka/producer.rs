//! The source side: records go to Kafka through an idempotent producer
//! (`acks=all`); each message's delivery report settles its batch's
//! acknowledgement, so source offsets are committed only once Kafka holds
//! every record they cover.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use wharf_records::Record;

use super::topics::{ensure_topic, TopicCreation};
use super::{client_config, client_err, KafkaError};
use crate::worker::BatchAck;

/// Routes delivery reports to the batch each message belongs to.
pub struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<BatchAck>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Arc<BatchAck>) {
        match result {
            Ok(_) => ack.settle_one(),
            Err((e, m)) if ack.tolerates_skips() && refuses_the_record(e) => {
                let reason = format!("Kafka refused a record for topic '{}': {e}", m.topic());
                ack.skip(owned(m), reason)
            }
            Err((e, m)) => ack.fail(|| {
                format!(
                    "Kafka did not accept a record for topic '{}': {e}{}",
                    m.topic(),
                    hint(e)
                )
            }),
        }
    }
}

/// Errors about the record itself, which no retry can fix: with
/// `errors.tolerance=all` such a record is skipped and reported (KIP-779).
/// Everything else (brokers away, timeouts, authorization) still fails the
/// batch, so nothing is passed over for a reason outside the record.
fn refuses_the_record(e: &RdError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
        )
    )
}

/// What a user can do about a record Kafka refuses: the task fails again
/// on the same record after every restart, so the trace says how out.
fn hint(e: &RdError) -> &'static str {
    if refuses_the_record(e) {
        " (the task fails on this record until it is passed over: set errors.tolerance=all to skip and report such records, or raise the producer's message.max.bytes and the topic's max.message.bytes)"
    } else {
        ""
    }
}

/// The refused message as a record, for the error report and dead letter.
fn owned(m: &impl Message) -> Record {
    use rdkafka::message::Headers;
    Record {
        topic: m.topic().to_string(),
        partition: Some(m.partition()),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
        ..Record::default()
    }
}

pub struct SourceProducer {
    producer: ThreadedProducer<AckContext>,
    /// Topics already created or known to exist, so creation is tried once.
    known: Mutex<HashSet<String>>,
}

/// Wharf's producer defaults: no loss, no reordering, bounded memory.
const DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    super::ONE_REQUEST_IN_FLIGHT,
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    // Bounds what waits in the client; a full queue slows the source down.
    // 16 MiB keeps a CDC task near 40 MiB resident when the broker lags (64
    // MiB let it reach 70) and was measured as fast as 64 on loopback.
    ("queue.buffering.max.kbytes", "16384"),
    ("queue.buffering.max.messages", "200000"),
    // Java's partitioner, so keyed records land where Connect would put them.
    ("partitioner", "murmur2_random"),
];

impl SourceProducer {
    pub fn new(
        bootstrap: &str,
        layers: &[Vec<(String, String)>],
        client_id: &str,
    ) -> Result<Self, KafkaError> {
        let mut config = client_config(bootstrap, DEFAULTS, layers);
        config.set("client.id", client_id);
        let producer = config
            .create_with_context(AckContext)
            .map_err(client_err("producer"))?;
        Ok(SourceProducer {
            producer,
            known: Mutex::new(HashSet::new()),
        })
    }

    /// Creates the batch's topics that are new to this producer when the
    /// connector asked for topic creation.
    pub async fn prepare_topics(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        records: &[Record],
        creation: Option<&TopicCreation>,
    ) -> Result<(), KafkaError> {
        let new: Vec<String> = {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let mut seen = HashSet::new();
            records
                .iter()
                .filter(|r| !known.contains(&r.topic) && seen.insert(r.topic.as_str()))
                .map(|r| r.topic.clone())
                .collect()
        };
        for topic in new {
            if let Some(creation) = creation {
                if ensure_topic(admin, &topic, creation).await? {
                    tracing::info!(topic = %topic, partitions = creation.partitions, "created topic");
                }
            }
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(topic);
        }
        Ok(())
    }

    /// Hands every record to the producer; the returned acknowledgement
    /// completes when Kafka has them all, or is marked lost. Waits while the
    /// producer's queue is full (backpressure).
    ///
    /// `tolerant` (`errors.tolerance=all`): a record Kafka refuses for itself
    /// is skipped and reported on the acknowledgement instead.
    pub async fn publish(&self, records: &[Record], tolerant: bool) -> Arc<BatchAck> {
        let ack = Arc::new(if tolerant {
            BatchAck::tolerant(records.len())
        } else {
            BatchAck::new(records.len())
        });
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut msg: BaseRecord<'_, [u8], [u8], Arc<BatchAck>> =
                BaseRecord::with_opaque_to(&r.topic, ack.clone()).headers(headers);
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
            loop {
                match self.producer.send(msg) {
                    Ok(()) => break,
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        msg = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    // Refused before it left (larger than message.max.bytes).
                    Err((e, _)) if tolerant && refuses_the_record(&e) => {
                        let reason = format!("Kafka refused a record for topic '{}': {e}", r.topic);
                        ack.skip(r.clone(), reason);
                        break;
                    }
                    Err((e, _)) => {
                        ack.fail(|| format!("producing to topic '{}': {e}{}", r.topic, hint(&e)));
                        return ack;
                    }
                }
            }
        }
        ack
    }

    /// Waits until everything handed over is delivered (or `timeout`).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!("producer flush: {e}");
        }
    }
}
