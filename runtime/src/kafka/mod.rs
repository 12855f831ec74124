//! Kafka as the hub: the worker's clients (producer for sources, a consumer
//! per sink task, admin for topic creation), configured as Connect configures
//! them, with `producer.*`/`consumer.*`/`admin.*` worker overrides and
//! `producer.override.*`/`consumer.override.*` connector overrides.

mod consumer;
mod group_offsets;
mod producer;
mod topics;
mod transactional;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::config::{ConnectorConfig, WorkerConfig};

pub use consumer::{ConsumerEvent, SinkConsumer};
pub use group_offsets::Position as GroupPosition;
pub use producer::SourceProducer;
pub use topics::{ensure_topic, watermarks_when_ready, TopicCreation};
pub use transactional::{transactional_id, TransactionalProducer};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka client ({what}): {source}")]
    Client {
        what: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("creating topic '{topic}': {message}")]
    CreateTopic { topic: String, message: String },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    GroupBusy(String),
}

pub(crate) fn client_err(
    what: impl Into<String>,
) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    let what = what.into();
    move |source| KafkaError::Client { what, source }
}

/// Every producer Wharf makes sends one request per broker at a time. With
/// more in flight, librdkafka's idempotent producer counts an earlier batch
/// that failed with a retriable error (say "not leader" on a partition whose
/// leader is still being set up: a topic created a moment ago, a leader
/// election) as written once a later batch of the same partition succeeds,
/// and a broker with no state for the producer on that partition accepts
/// the later batch: the earlier records are gone while their delivery
/// reports say success (confluent-kafka-go#921; seen here as the first
/// records of a new topic's partition missing). Connect's source producers
/// run with one in flight too.
pub(crate) const ONE_REQUEST_IN_FLIGHT: (&str, &str) =
    ("max.in.flight.requests.per.connection", "1");

/// Builds a client config: Wharf's defaults, then worker-level overrides,
/// then connector-level ones (Connect's precedence).
pub(crate) fn client_config(
    bootstrap: &str,
    defaults: &[(&str, &str)],
    layers: &[Vec<(String, String)>],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for layer in layers {
        for (k, v) in layer {
            c.set(k, v);
        }
    }
    c
}

/// Connector keys under `prefix.` with the prefix removed.
fn connector_prefixed(c: &ConnectorConfig, prefix: &str) -> Vec<(String, String)> {
    let p = format!("{prefix}.");
    c.config
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&p).map(|k| (k.to_string(), v.clone())))
        .collect()
}

/// The worker's connection to Kafka: shared producer and admin client.
pub struct KafkaHub {
    pub worker: WorkerConfig,
    bootstrap: String,
    admin: AdminClient<DefaultClientContext>,
    shared_producer: Arc<SourceProducer>,
}

impl KafkaHub {
    pub fn connect(worker: &WorkerConfig) -> Result<Arc<Self>, KafkaError> {
        let bootstrap = worker.bootstrap_servers.clone().unwrap_or_default();
        let admin = client_config(&bootstrap, &[], &[worker.prefixed("admin")])
            .create()
            .map_err(client_err("admin"))?;
        let shared_producer = Arc::new(SourceProducer::new(
            &bootstrap,
            &[worker.prefixed("producer")],
            "wharf-worker",
        )?);
        Ok(Arc::new(KafkaHub {
            worker: worker.clone(),
            bootstrap,
            admin,
            shared_producer,
        }))
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn shared_producer(&self) -> Arc<SourceProducer> {
        self.shared_producer.clone()
    }

    pub fn admin(&self) -> &AdminClient<DefaultClientContext> {
        &self.admin
    }

    /// The worker's producer, or a connector's own when it overrides
    /// producer settings (`producer.override.*`).
    pub fn producer_for(&self, c: &ConnectorConfig) -> Result<Arc<SourceProducer>, KafkaError> {
        let overrides = connector_prefixed(c, "producer.override");
        if overrides.is_empty() {
            return Ok(self.shared_producer.clone());
        }
        Ok(Arc::new(SourceProducer::new(
            &self.bootstrap,
            &[self.worker.prefixed("producer"), overrides],
            &format!("wharf-{}", c.name),
        )?))
    }

    /// A consumer for one sink task in the connector's group `connect-<name>`.
    pub fn sink_consumer(
        &self,
        c: &ConnectorConfig,
        task: i32,
        topics: &[String],
        batch_max: usize,
    ) -> Result<SinkConsumer, KafkaError> {
        let layers = [
            self.worker.prefixed("consumer"),
            connector_prefixed(c, "consumer.override"),
        ];
        SinkConsumer::start(&self.bootstrap, &layers, &c.name, task, topics, batch_max)
    }

    /// A task's transactional producer (exactly-once sources), created and
    /// initialised off the async threads; this fences any previous producer
    /// with the same id and aborts its open transaction.
    pub async fn transactional_producer(
        &self,
        c: &ConnectorConfig,
        task: i32,
    ) -> Result<TransactionalProducer, KafkaError> {
        let layers = vec![
            self.worker.prefixed("producer"),
            connector_prefixed(c, "producer.override"),
        ];
        let (bootstrap, id) = (
            self.bootstrap.clone(),
            transactional_id(
                self.worker.map.get("group.id").map(String::as_str),
                &c.name,
                task,
            ),
        );
        tokio::task::spawn_blocking(move || TransactionalProducer::new(&bootstrap, &layers, &id))
            .await
            .map_err(|e| KafkaError::Timeout(format!("transactional producer task: {e}")))?
    }

    /// The Kafka cluster id (GET / shows it, as Connect does).
    pub async fn cluster_id(self: &Arc<Self>) -> Option<String> {
        let hub = self.clone();
        tokio::task::spawn_blocking(move || {
            hub.admin.inner().fetch_cluster_id(Duration::from_secs(5))
        })
        .await
        .ok()
        .flatten()
    }

    /// Blocks (off the async threads) until produced records are delivered.
    pub async fn flush(&self, timeout: Duration) {
        let p = self.shared_producer.clone();
        let _ = tokio::task::spawn_blocking(move || p.flush(timeout)).await;
    }
}
