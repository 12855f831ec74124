//! Topic creation on demand (Connect's KIP-158 keys): a source connector that
//! sets `topic.creation.default.partitions` and `.replication.factor` gets
//! each topic it writes created with them (and any other
//! `topic.creation.default.<topic config>`), if the worker allows it.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{ConfigError, ConnectorConfig};

use super::KafkaError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicCreation {
    pub partitions: i32,
    /// -1 takes the broker's default.
    pub replication_factor: i32,
    pub configs: Vec<(String, String)>,
}

const PREFIX: &str = "topic.creation.default.";

impl TopicCreation {
    /// `None` when the connector does not ask for topic creation.
    pub fn from_connector(c: &ConnectorConfig) -> Result<Option<Self>, ConfigError> {
        let partitions = c.get(&format!("{PREFIX}partitions"));
        let rf = c.get(&format!("{PREFIX}replication.factor"));
        let (partitions, rf) = match (partitions, rf) {
            (None, None) => return Ok(None),
            (Some(p), Some(r)) => (p, r),
            (Some(_), None) => {
                return Err(c.key_error(
                    &format!("{PREFIX}replication.factor"),
                    "required when topic.creation.default.partitions is set",
                ))
            }
            (None, Some(_)) => {
                return Err(c.key_error(
                    &format!("{PREFIX}partitions"),
                    "required when topic.creation.default.replication.factor is set",
                ))
            }
        };
        let num = |key: &str, v: &str| match v.trim().parse::<i32>() {
            Ok(n) if n >= 1 || n == -1 => Ok(n),
            _ => Err(c.key_error(
                &format!("{PREFIX}{key}"),
                format!("'{v}' must be a positive integer or -1 (the broker's default)"),
            )),
        };
        let configs = c
            .config
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k.to_string(), v.clone())))
            .filter(|(k, _)| k != "partitions" && k != "replication.factor")
            .collect();
        Ok(Some(TopicCreation {
            partitions: num("partitions", partitions)?,
            replication_factor: num("replication.factor", rf)?,
            configs,
        }))
    }
}

/// Creates a topic unless it exists; an existing topic is left as it is.
pub async fn ensure_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    creation: &TopicCreation,
) -> Result<bool, KafkaError> {
    let err = |message: String| KafkaError::CreateTopic {
        topic: topic.to_string(),
        message,
    };
    let mut new = NewTopic::new(
        topic,
        creation.partitions,
        TopicReplication::Fixed(creation.replication_factor),
    );
    for (k, v) in &creation.configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&[new], &opts)
        .await
        .map_err(|e| err(e.to_string()))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((_, code))) => Err(err(code.to_string())),
    }
}

/// A partition's low and high watermarks. A topic created a moment ago may
/// have no leader (or no metadata on this broker) yet, so failures are retried
/// until `within` has passed.
pub fn watermarks_when_ready(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    within: Duration,
) -> Result<(i64, i64), rdkafka::error::KafkaError> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(w) => return Ok(w),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(topic, partition, "topic not ready yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}
