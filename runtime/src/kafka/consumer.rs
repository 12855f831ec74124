//! The sink side: one consumer per sink task in the connector's group
//! (`connect-<name>`), polled on its own thread. Records reach the task
//! through a bounded channel; when the task falls behind, the thread pauses
//! its partitions (and keeps polling, so the group keeps it) instead of
//! buffering. On revocation the thread asks the task to flush, then commits
//! what the sink made durable before letting the partitions go.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use wharf_records::{BatchWriter, RecordView};

use super::{client_config, client_err, KafkaError};
use crate::plugin::RecordBatch;

/// What the polling thread tells its task.
pub enum ConsumerEvent {
    /// Records as read, encoded straight from librdkafka's buffers.
    Records(RecordBatch),
    /// These partitions are being taken away: flush, then reply with the
    /// next offsets to commit (topic, partition, next offset) for everything
    /// flushed; the thread commits them before the partitions go.
    Revoked {
        partitions: Vec<(String, i32)>,
        reply: std::sync::mpsc::SyncSender<Vec<(String, i32, i64)>>,
    },
    /// The consumer cannot go on (not authorized, topic missing for good):
    /// the task fails with this reason instead of idling with a log line.
    Failed(String),
}

/// How long a subscribed topic may be missing before the task fails: long
/// enough for a source created at the same time to create it.
const MISSING_TOPIC_GRACE: Duration = Duration::from_secs(60);

/// Sorts a consumer error: `Some(reason)` when retrying cannot help.
fn fatal_reason(
    e: &rdkafka::error::KafkaError,
    missing_since: &mut Option<Instant>,
) -> Option<String> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e.rdkafka_error_code()? {
        Code::TopicAuthorizationFailed
        | Code::GroupAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::SaslAuthenticationFailed
        | Code::Fatal => Some(format!("the consumer cannot read: {e}")),
        Code::UnknownTopicOrPartition | Code::UnknownTopic => {
            let since = *missing_since.get_or_insert_with(Instant::now);
            (since.elapsed() >= MISSING_TOPIC_GRACE).then(|| {
                format!(
                    "a subscribed topic has not existed for {} s: {e}",
                    since.elapsed().as_secs()
                )
            })
        }
        _ => None,
    }
}

/// Batches a sink task may have waiting before its consumer waits.
const QUEUE_BATCHES: usize = 4;

/// How long the consumer waits for a busy task before pausing partitions
/// (and polling only to stay in the group).
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// How long a batch keeps filling after its first record.
const BATCH_LINGER: Duration = Duration::from_millis(5);

pub struct SinkContext {
    tx: mpsc::Sender<ConsumerEvent>,
    /// A batch the thread could not hand over yet (the task is behind).
    held: Arc<Mutex<Option<BatchWriter>>>,
    rebalances: AtomicU64,
    label: String,
    /// Records past what was processed or committed, from librdkafka's
    /// statistics (-1 until the first report).
    lag: Arc<AtomicI64>,
}

impl ClientContext for SinkContext {
    fn stats(&self, statistics: Statistics) {
        // librdkafka's consumer_lag: high watermark minus the larger of the
        // position and the committed offset; -1 where unknown (and for the
        // internal unassigned partition).
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .map(|p| p.consumer_lag)
            .filter(|l| *l >= 0)
            .sum();
        self.lag.store(lag, Ordering::Relaxed);
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        if partitions.is_empty() {
            return;
        }
        // Records not yet handed over for revoked partitions belong to the
        // next owner now; it will read them from the committed offset.
        if let Some(batch) = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            let all = std::mem::take(batch);
            let (count, data) = all.finish();
            // Our own encoding, so every record reads.
            for r in wharf_records::views(count, &data).filter_map(Result::ok) {
                let revoked = partitions
                    .iter()
                    .any(|(t, p)| t == r.topic && Some(*p) == r.partition);
                if !revoked {
                    batch.push_view(&r);
                }
            }
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let asked = self
            .tx
            .blocking_send(ConsumerEvent::Revoked {
                partitions: partitions.clone(),
                reply,
            })
            .is_ok();
        // The task ending (or failing) drops the reply: nothing to commit.
        let Some(offsets) = asked.then(|| answer.recv().ok()).flatten() else {
            return;
        };
        if offsets.is_empty() {
            return;
        }
        match commit_list(&offsets) {
            Ok(tpl) => match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(consumer = %self.label, partitions = ?partitions, "flushed and committed before revocation")
                }
                Err(e) => {
                    tracing::warn!(consumer = %self.label, "commit before revocation failed (records will be re-read): {e}")
                }
            },
            Err(e) => tracing::warn!(consumer = %self.label, "{e}"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(consumer = %self.label, partitions = tpl.count(), "partitions assigned");
        }
    }
}

fn commit_list(offsets: &[(String, i32, i64)]) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .map_err(client_err("building commit list"))?;
    }
    Ok(tpl)
}

pub struct SinkConsumer {
    pub events: mpsc::Receiver<ConsumerEvent>,
    lag: Arc<AtomicI64>,
    consumer: Arc<BaseConsumer<SinkContext>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    // Connect's sink default: a new group starts at the beginning.
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Bounds prefetch per partition, so a slow sink keeps memory flat.
    ("queued.max.messages.kbytes", "16384"),
    // librdkafka idles a partition's fetcher for this long once the queue
    // is full (default 1 s): far too long for a task that drains it in ms.
    ("fetch.queue.backoff.ms", "5"),
    // A dead worker's partitions move after this long (Connect's 10 s).
    ("session.timeout.ms", "10000"),
    ("fetch.message.max.bytes", "1048576"),
    // Feeds the consumer lag metric.
    ("statistics.interval.ms", "5000"),
];

impl SinkConsumer {
    pub fn start(
        bootstrap: &str,
        layers: &[Vec<(String, String)>],
        connector: &str,
        task: i32,
        topics: &[String],
        batch_max: usize,
    ) -> Result<Self, KafkaError> {
        let label = format!("{connector}-{task}");
        let mut config = client_config(bootstrap, DEFAULTS, layers);
        config.set("group.id", format!("connect-{connector}"));
        config.set("client.id", format!("connector-consumer-{label}"));
        // Static membership: a task restarted after a crash takes its
        // partitions back at once instead of waiting out the dead member's
        // session. An explicit consumer setting wins.
        if config.get("group.instance.id").is_none() {
            config.set("group.instance.id", format!("connector-consumer-{label}"));
        }
        let (tx, events) = mpsc::channel(QUEUE_BATCHES);
        let lag = Arc::new(AtomicI64::new(-1));
        let held = Arc::new(Mutex::new(None));
        let context = SinkContext {
            tx: tx.clone(),
            held: held.clone(),
            rebalances: AtomicU64::new(0),
            label: label.clone(),
            lag: lag.clone(),
        };
        let consumer: BaseConsumer<SinkContext> = config
            .create_with_context(context)
            .map_err(client_err(format!("consumer {label}")))?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(client_err(format!("subscribing {label} to {topics:?}")))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("consumer-{label}"))
                .spawn(move || poll_loop(&consumer, &tx, &held, &stop, batch_max.max(1)))
                .map_err(|e| KafkaError::Timeout(format!("starting consumer thread: {e}")))?
        };
        Ok(SinkConsumer {
            events,
            lag,
            consumer,
            stop,
            thread: Some(thread),
        })
    }

    /// Commits (synchronously, off the async threads) the next offsets to read.
    pub async fn commit(&self, offsets: Vec<(String, i32, i64)>) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            let tpl = commit_list(&offsets)?;
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(client_err("committing sink offsets"))
        })
        .await
        .map_err(|e| KafkaError::Timeout(format!("commit task: {e}")))?
    }

    /// Stops polling; the caller commits what it flushed, then drops this.
    ///
    /// The thread may be inside a rebalance callback waiting for the task to
    /// answer a `Revoked` it sent (the task loop has stopped reading), so
    /// events still queued are dropped until the thread ends: a dropped
    /// reply tells the callback that nothing will be committed, and the
    /// partitions go to their next owner from the group's committed offsets.
    pub async fn stop_polling(&mut self) {
        self.stop.store(true, Ordering::Release);
        // After close no new event can be queued, so draining ends.
        self.events.close();
        let Some(thread) = self.thread.take() else {
            return;
        };
        while !thread.is_finished() {
            while let Ok(event) = self.events.try_recv() {
                drop(event);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    /// Records in Kafka this task has not processed yet, summed over its
    /// partitions, as of librdkafka's last statistics report.
    pub fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag.load(Ordering::Relaxed)).ok()
    }

    /// Leaves the group (off the async threads).
    pub async fn close(mut self) {
        self.stop_polling().await;
        let consumer = self.consumer.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}

impl Drop for SinkConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Appends a message to a batch with no owned record in between: the one
/// copy of its key, value and headers is into the batch's buffer.
fn push_message(batch: &mut BatchWriter, m: &BorrowedMessage<'_>) {
    let view = RecordView {
        partition: Some(m.partition()),
        offset: Some(m.offset()),
        timestamp: m.timestamp().to_millis(),
        key: m.key(),
        value: m.payload(),
        ..RecordView::new(m.topic())
    };
    let headers = m.headers();
    let headers = headers
        .iter()
        .flat_map(|hs| hs.iter())
        .map(|h| (h.key, h.value.unwrap_or_default()));
    batch.push_with_headers(&view, headers);
}

fn poll_loop(
    consumer: &BaseConsumer<SinkContext>,
    tx: &mpsc::Sender<ConsumerEvent>,
    held: &Mutex<Option<BatchWriter>>,
    stop: &AtomicBool,
    batch_max: usize,
) {
    let lock = || held.lock().unwrap_or_else(PoisonError::into_inner);
    let mut paused_at: Option<u64> = None;
    let mut full_since: Option<Instant> = None;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut missing_since: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        // Hand over what is held; pause while the task is behind.
        let pending = lock().take();
        if let Some(batch) = pending {
            if batch.is_empty() {
                continue;
            }
            match tx.try_send(ConsumerEvent::Records(RecordBatch::from_writer(batch))) {
                Ok(()) => {
                    full_since = None;
                    if paused_at.take().is_some() {
                        set_paused(consumer, false);
                    }
                }
                Err(mpsc::error::TrySendError::Full(ConsumerEvent::Records(batch))) => {
                    *lock() = Some(batch.into_writer());
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < PAUSE_AFTER {
                        // A short wait: the prefetch queue is bounded, and
                        // pausing would discard it (librdkafka refetches on
                        // resume), so just wait for the task.
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let generation = consumer.context().rebalances.load(Ordering::Relaxed);
                    if paused_at != Some(generation) {
                        // (Re)pause: new assignments arrive unpaused.
                        set_paused(consumer, true);
                        paused_at = Some(generation);
                    }
                    // Keep polling, so the group keeps us and rebalances run.
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                        if let Some(b) = lock().as_mut() {
                            push_message(b, &m);
                        }
                    }
                    continue;
                }
                Err(_) => return,
            }
        }
        let mut batch = BatchWriter::default();
        let mut wait = Duration::from_millis(100);
        let mut linger_until: Option<Instant> = None;
        while (batch.len() as usize) < batch_max {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    missing_since = None;
                    push_message(&mut batch, &m)
                }
                Some(Err(e)) => {
                    if let Some(reason) = fatal_reason(&e, &mut missing_since) {
                        tracing::error!("{reason}");
                        let _ = tx.blocking_send(ConsumerEvent::Failed(reason));
                        return;
                    }
                    let n = errors.entry(e.to_string()).or_default();
                    *n += 1;
                    if n.is_power_of_two() {
                        tracing::warn!(times = *n, "consumer error: {e}");
                    }
                    break;
                }
                None => break,
            }
            // Fill the batch for a few milliseconds after its first record:
            // fewer, fuller batches cross to the task and the plugin.
            let until = *linger_until.get_or_insert_with(|| Instant::now() + BATCH_LINGER);
            wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
        }
        if !batch.is_empty() {
            let mut h = lock();
            match h.as_mut() {
                Some(b) => b.append(&batch),
                None => *h = Some(batch),
            }
        }
    }
}

fn set_paused(consumer: &BaseConsumer<SinkContext>, pause: bool) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let r = if pause {
        consumer.pause(&assignment)
    } else {
        consumer.resume(&assignment)
    };
    if let Err(e) = r {
        tracing::warn!(pause, "pausing/resuming partitions: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError as RdError;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn authorization_fails_the_task_at_once_and_transient_errors_do_not() {
        let mut since = None;
        let denied = RdError::MessageConsumption(Code::TopicAuthorizationFailed);
        let reason = fatal_reason(&denied, &mut since).expect("fatal");
        assert!(reason.contains("cannot read"), "{reason}");
        let transient = RdError::MessageConsumption(Code::BrokerTransportFailure);
        assert_eq!(fatal_reason(&transient, &mut since), None);
    }

    #[test]
    fn a_missing_topic_fails_the_task_only_after_the_grace() {
        let missing = RdError::MessageConsumption(Code::UnknownTopicOrPartition);
        let mut since = None;
        assert_eq!(
            fatal_reason(&missing, &mut since),
            None,
            "at first it waits"
        );
        assert!(since.is_some());
        since = Instant::now().checked_sub(MISSING_TOPIC_GRACE + Duration::from_secs(1));
        let reason = fatal_reason(&missing, &mut since).expect("fatal after the grace");
        assert!(reason.contains("has not existed"), "{reason}");
    }
}
