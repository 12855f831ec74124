//! Connect's error handling for records a plugin refuses: `errors.tolerance`
//! (none: the task fails; all: the record is skipped), `errors.log.enable`,
//! and a dead letter topic (`errors.deadletterqueue.topic.name`) that gets the
//! original record plus, with `errors.deadletterqueue.context.headers.enable`,
//! Connect's `__connect.errors.*` headers saying where and why it failed.

use std::sync::Arc;

use tokio::sync::watch;
use wharf_records::Record;

use crate::config::{ConfigError, ConnectorConfig};
use crate::kafka::{KafkaHub, SourceProducer, TopicCreation};
use crate::plugin::{CallError, RecordBatch, TaskId};

use super::ack::BatchAck;
use super::retry::{Operation, RetryPolicy};
use super::status::TaskCounters;

#[derive(Clone, Debug, Default)]
pub struct ErrorPolicy {
    pub tolerate_all: bool,
    pub log: bool,
    pub log_messages: bool,
    pub dlq_topic: Option<String>,
    pub dlq_replication_factor: i32,
    pub dlq_context_headers: bool,
    pub retry: RetryPolicy,
}

fn boolean(c: &ConnectorConfig, key: &str, default: bool) -> Result<bool, ConfigError> {
    match c.get(key).map(str::trim) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(c.key_error(key, format!("'{v}' is not a boolean"))),
    }
}

impl ErrorPolicy {
    pub fn from_connector(c: &ConnectorConfig) -> Result<Self, ConfigError> {
        let tolerate_all = match c.get("errors.tolerance").map(str::trim) {
            None | Some("none") => false,
            Some("all") => true,
            Some(v) => {
                return Err(c.key_error(
                    "errors.tolerance",
                    format!("'{v}' is not one of: none, all"),
                ))
            }
        };
        let dlq_topic = c
            .get("errors.deadletterqueue.topic.name")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let rf_key = "errors.deadletterqueue.topic.replication.factor";
        let dlq_replication_factor = match c.get(rf_key) {
            None => -1,
            Some(v) => match v.trim().parse::<i32>() {
                Ok(n) if n >= 1 || n == -1 => n,
                _ => {
                    return Err(
                        c.key_error(rf_key, format!("'{v}' must be a positive integer or -1"))
                    )
                }
            },
        };
        Ok(ErrorPolicy {
            tolerate_all,
            log: boolean(c, "errors.log.enable", false)?,
            log_messages: boolean(c, "errors.log.include.messages", false)?,
            dlq_topic,
            dlq_replication_factor,
            dlq_context_headers: boolean(
                c,
                "errors.deadletterqueue.context.headers.enable",
                false,
            )?,
            retry: RetryPolicy::from_connector(c)?,
        })
    }
}

/// Where in the pipeline a record failed (Connect's `Stage` names).
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    KeyConverter,
    ValueConverter,
    Transformation,
    TaskPut,
    KafkaProduce,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
            Stage::KafkaProduce => "KAFKA_PRODUCE",
        }
    }
}

/// The largest value a dead letter of a refused produce keeps (below
/// Kafka's default 1 MB message limit, with room for headers).
const DEAD_LETTER_VALUE_MAX: usize = 900 * 1024;

/// Sends refused records to the dead letter topic; the acknowledgements
/// must complete before the task commits past those records.
struct DeadLetters {
    producer: Arc<SourceProducer>,
    hub: Arc<KafkaHub>,
    topic: String,
    creation: TopicCreation,
    pending: Vec<Arc<BatchAck>>,
}

impl DeadLetters {
    fn new(hub: Arc<KafkaHub>, policy: &ErrorPolicy) -> Option<Self> {
        let topic = policy.dlq_topic.clone()?;
        Some(DeadLetters {
            producer: hub.shared_producer(),
            hub,
            topic,
            creation: TopicCreation {
                partitions: 1,
                replication_factor: policy.dlq_replication_factor,
                configs: Vec::new(),
            },
            pending: Vec::new(),
        })
    }

    async fn send(
        &mut self,
        policy: &ErrorPolicy,
        failed: &Record,
        task: &TaskId,
        stage: Stage,
        class: &str,
        message: &str,
    ) -> Result<(), String> {
        let mut headers = failed.headers.clone();
        if policy.dlq_context_headers {
            let h = |k: &str, v: String| (format!("__connect.errors.{k}"), v.into_bytes());
            headers.extend([
                h("topic", failed.topic.clone()),
                h("partition", failed.partition.unwrap_or(-1).to_string()),
                h("offset", failed.offset.unwrap_or(-1).to_string()),
                h("connector.name", task.connector.clone()),
                h("task.id", task.task.to_string()),
                h("stage", stage.name().to_string()),
                h("class.name", class.to_string()),
                h("exception.class.name", "wharf.PluginError".to_string()),
                h("exception.message", message.to_string()),
                h(
                    "exception.stacktrace",
                    format!(
                        "wharf.PluginError: {message}\n\tat {class} ({})",
                        stage.name()
                    ),
                ),
            ]);
        }
        // A record Kafka refused as too large would be refused again as a
        // dead letter: it goes without its value, and a header says so.
        let value = match (&failed.value, stage) {
            (Some(v), Stage::KafkaProduce) if v.len() > DEAD_LETTER_VALUE_MAX => {
                headers.push((
                    "__wharf.errors.value.dropped.bytes".into(),
                    v.len().to_string().into_bytes(),
                ));
                None
            }
            (v, _) => v.clone(),
        };
        let record = Record {
            topic: self.topic.clone(),
            partition: None,
            offset: None,
            timestamp: failed.timestamp,
            key: failed.key.clone(),
            value,
            headers,
            source: None,
        };
        let batch = [record];
        self.producer
            .prepare_topics(self.hub.admin(), &batch, Some(&self.creation))
            .await
            .map_err(|e| format!("dead letter topic: {e}"))?;
        self.pending
            .push(self.producer.publish(&batch, false).await);
        Ok(())
    }

    /// Waits until every dead letter sent so far is in Kafka.
    async fn settle(&mut self) -> Result<(), String> {
        loop {
            if let Some(lost) = self.pending.iter().find(|a| a.is_lost()) {
                return Err(format!(
                    "dead letter not written: {}",
                    lost.reason().unwrap_or_default()
                ));
            }
            self.pending.retain(|a| !a.is_done());
            if self.pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

/// A task's handling of refused records: count, log, dead-letter.
pub struct Reporter {
    pub policy: ErrorPolicy,
    dead_letters: Option<DeadLetters>,
}

impl Reporter {
    pub fn new(policy: ErrorPolicy, hub: Option<&Arc<KafkaHub>>) -> Self {
        let dead_letters = hub.and_then(|h| DeadLetters::new(h.clone(), &policy));
        Reporter {
            policy,
            dead_letters,
        }
    }

    /// A tolerated failure: log it if asked, dead-letter it if configured.
    pub async fn refuse(
        &mut self,
        r: &Record,
        id: &TaskId,
        stage: Stage,
        class: &str,
        message: &str,
        counters: &TaskCounters,
    ) -> Result<(), String> {
        TaskCounters::add(&counters.records_failed, 1);
        if self.policy.log {
            let value = if self.policy.log_messages {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
            } else {
                String::new()
            };
            tracing::error!(connector = %id.connector, task = id.task, topic = %r.topic, partition = r.partition.unwrap_or(-1), offset = r.offset.unwrap_or(-1), stage = ?stage, "record refused by {class}: {message} {value}");
        }
        if let Some(dlq) = self.dead_letters.as_mut() {
            dlq.send(&self.policy, r, id, stage, class, message).await?;
            TaskCounters::add(&counters.dead_letters, 1);
        }
        Ok(())
    }

    /// Waits until every dead letter is in Kafka (before committing past it).
    pub async fn settle(&mut self) -> Result<(), String> {
        match self.dead_letters.as_mut() {
            Some(d) => d.settle().await,
            None => Ok(()),
        }
    }
}

/// Runs records through a transform chain; with `errors.tolerance=all`, a
/// batch the chain refuses is retried record by record and the refused ones
/// are reported, the rest passed on.
pub async fn transform(
    chain: &mut super::transforms::Chain,
    batch: RecordBatch,
    reporter: &mut Reporter,
    id: &TaskId,
    counters: &TaskCounters,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<RecordBatch, String> {
    if chain.is_empty() {
        return Ok(batch);
    }
    let failure = match apply_with_retry(chain, &batch, reporter.policy.retry, shutdown).await {
        Ok(out) => return Ok(out),
        Err(failure) => failure,
    };
    if !reporter.policy.tolerate_all {
        let (alias, e) = failure;
        return Err(format!("transform '{alias}' {e}"));
    }
    let mut out = Vec::with_capacity(batch.len());
    for r in batch.to_records() {
        let one = RecordBatch::encode(std::slice::from_ref(&r));
        match apply_with_retry(chain, &one, reporter.policy.retry, shutdown).await {
            Ok(more) => out.extend(more.to_records()),
            Err((alias, e)) => {
                let m = match e {
                    CallError::Fatal(m) | CallError::Retriable(m) => m,
                    // A trap or timeout breaks the instance: not the record's fault.
                    other => return Err(format!("transform '{alias}' {other}")),
                };
                reporter
                    .refuse(&r, id, Stage::Transformation, &alias, &m, counters)
                    .await?
            }
        }
    }
    Ok(RecordBatch::encode(&out))
}

/// Applies the chain, retrying retriable failures as `errors.retry.*` allow.
async fn apply_with_retry(
    chain: &mut super::transforms::Chain,
    batch: &RecordBatch,
    policy: RetryPolicy,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<RecordBatch, (String, CallError)> {
    let mut retry = policy.start(Operation::Record);
    loop {
        match chain.apply(batch).await {
            Ok(out) => return Ok(out),
            Err((alias, e)) => {
                if !retry.again(&e, shutdown).await {
                    return Err((alias, e));
                }
                tracing::debug!("transform '{alias}' failed, retrying: {e}");
            }
        }
    }
}
