//! One source task: poll the plugin, run the transform chain, hand batches to
//! the destination, and commit source offsets once every record they cover
//! is acknowledged downstream (Connect's WorkerSourceTask, in wasm).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use wharf_records::Record;

use crate::config::ConnectorConfig;
use crate::kafka::{KafkaHub, SourceProducer, TopicCreation, TransactionalProducer};
use crate::offsets::{canonical, offset_key, OffsetStore};
use crate::plugin::{CallError, Limits, Plugin, RecordBatch, SourceInstance, TaskId};

use super::ack::{BatchAck, Skipped};
use super::bus::Bus;
use super::converters::{convert, Converters, Direction};
use super::errors::{self, ErrorPolicy, Reporter, Stage};
use super::lifecycle::Signals;
use super::retry::Operation;
use super::status::{State, StatusBoard, TaskCounters};
use super::transforms::{Chain, TransformSpec};

#[derive(Clone)]
pub struct SourceTaskSpec {
    pub id: TaskId,
    pub plugin: Arc<Plugin>,
    pub config: Vec<(String, String)>,
    pub transforms: Arc<Vec<TransformSpec>>,
    pub limits: Limits,
    pub batch_max: u32,
    pub commit_interval: Duration,
    pub shutdown_timeout: Duration,
    pub errors: ErrorPolicy,
    pub converters: Converters,
}

/// Where a source task's records go.
#[derive(Clone)]
pub enum Destination {
    Bus(Arc<Bus>),
    Kafka {
        hub: Arc<KafkaHub>,
        producer: Arc<SourceProducer>,
        creation: Option<TopicCreation>,
        /// Exactly-once: the offsets topic written in each batch's transaction.
        exactly_once: Option<String>,
        connector: Box<ConnectorConfig>,
    },
}

/// A transformed batch on its way out: still encoded when it goes to
/// in-process sinks unconverted, records otherwise (Kafka's producer and
/// the converters work on records).
enum Outgoing {
    Encoded(RecordBatch),
    Records(Vec<Record>),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Encoded(b) => b.len(),
            Outgoing::Records(r) => r.len(),
        }
    }

    fn topics(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Outgoing::Encoded(b) => Box::new(b.views().map(|r| r.topic)),
            Outgoing::Records(r) => Box::new(r.iter().map(|r| r.topic.as_str())),
        }
    }

    fn into_records(self) -> Vec<Record> {
        match self {
            Outgoing::Encoded(b) => b.to_records(),
            Outgoing::Records(r) => r,
        }
    }
}

impl Destination {
    async fn publish(&self, out: Outgoing, tolerant: bool) -> Result<Arc<BatchAck>, Failure> {
        match (self, out) {
            (Destination::Bus(bus), Outgoing::Encoded(b)) => Ok(bus.publish(&b).await),
            (Destination::Bus(bus), Outgoing::Records(r)) => {
                Ok(bus.publish(&RecordBatch::encode(&r)).await)
            }
            (Destination::Kafka { producer, .. }, out) => {
                let records = out.into_records();
                self.prepare_topics(&records).await?;
                Ok(producer.publish(&records, tolerant).await)
            }
        }
    }

    /// Creates the batch's new topics when the connector asked for it.
    async fn prepare_topics(&self, records: &[Record]) -> Result<(), Failure> {
        match self {
            Destination::Bus(_) => Ok(()),
            Destination::Kafka {
                hub,
                producer,
                creation,
                ..
            } => producer
                .prepare_topics(hub.admin(), records, creation.as_ref())
                .await
                .map_err(|e| Failure(e.to_string())),
        }
    }

    /// The task's transactional producer and offsets topic, in exactly-once mode.
    async fn transactional(
        &self,
        task: i32,
    ) -> Result<Option<(Arc<TransactionalProducer>, String)>, Failure> {
        match self {
            Destination::Kafka {
                hub,
                exactly_once: Some(topic),
                connector,
                ..
            } => {
                let p = hub
                    .transactional_producer(connector, task)
                    .await
                    .map_err(|e| Failure(e.to_string()))?;
                Ok(Some((Arc::new(p), topic.clone())))
            }
            _ => Ok(None),
        }
    }

    /// In-process only: topics that no sink reads are dropped, said once.
    fn has_readers(&self, topic: &str) -> bool {
        match self {
            Destination::Bus(bus) => bus.has_subscribers(topic),
            Destination::Kafka { .. } => true,
        }
    }
}

/// Why a task stopped working, for its FAILED trace.
#[derive(Debug)]
struct Failure(String);

impl From<(String, CallError)> for Failure {
    fn from((alias, e): (String, CallError)) -> Self {
        Failure(format!("transform '{alias}' {e}"))
    }
}

/// Runs the task once; `Err` carries the FAILED trace (already on the board).
pub async fn run(
    spec: &SourceTaskSpec,
    dest: &Destination,
    offsets: &OffsetStore,
    status: &StatusBoard,
    counters: &TaskCounters,
    signals: Signals,
) -> Result<(), String> {
    let id = &spec.id;
    let Signals {
        stop: mut shutdown,
        mut paused,
    } = signals;
    match run_inner(
        spec,
        dest,
        offsets,
        status,
        counters,
        &mut shutdown,
        &mut paused,
    )
    .await
    {
        Ok(()) => {
            status.set(&id.connector, id.task, State::Stopped, None);
            tracing::info!(
                connector = %id.connector,
                task = id.task,
                records_polled = counters.records_in.load(Relaxed),
                offsets_committed = counters.offsets_committed.load(Relaxed),
                "source task stopped"
            );
            Ok(())
        }
        Err(Failure(trace)) => {
            status.set(&id.connector, id.task, State::Failed, Some(trace.clone()));
            tracing::error!(connector = %id.connector, task = id.task, "source task FAILED: {trace}");
            Err(trace)
        }
    }
}

/// The newest (partition, offset) per canonical partition text in a batch.
type BatchOffsets = BTreeMap<String, (Value, Value)>;

/// Batches handed downstream whose offsets wait for acknowledgement.
#[derive(Default)]
struct Pending {
    queue: VecDeque<(Arc<BatchAck>, BatchOffsets)>,
    /// Offsets of batches already acknowledged, latest per partition: the
    /// queue's done prefix is folded in here as it settles, so the queue
    /// holds only batches still in flight (at batch size 1 it would
    /// otherwise grow by thousands of entries between commits).
    acked: BatchOffsets,
    /// When the whole queue was last searched for a lost batch.
    searched: Option<Instant>,
    /// Records Kafka refused in acknowledged batches, not yet reported:
    /// reported (logged, dead-lettered) before offsets commit past them.
    skipped: Vec<Skipped>,
}

impl Pending {
    fn push(&mut self, ack: Arc<BatchAck>, offsets: BatchOffsets) {
        self.queue.push_back((ack, offsets));
        self.fold_done();
    }

    fn fold_done(&mut self) {
        while self.queue.front().is_some_and(|(ack, _)| ack.is_done()) {
            if let Some((ack, offsets)) = self.queue.pop_front() {
                self.skipped.extend(ack.take_skipped());
                self.acked.extend(offsets);
            }
        }
    }

    /// Offsets of the acknowledged prefix folded so far, latest per
    /// partition. It folds nothing itself: a batch folded here would be
    /// committed before its skipped records were reported.
    fn take_acked(&mut self) -> Vec<(Value, Value)> {
        std::mem::take(&mut self.acked).into_values().collect()
    }

    /// The reason a batch was lost downstream, if one was. A lost batch
    /// stops the done prefix, so it is found at the front once the batches
    /// before it settle; the whole queue is searched only a few times a
    /// second, for a loss behind a batch that never settles.
    fn lost(&mut self) -> Option<String> {
        self.fold_done();
        let search_all = self
            .searched
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(200));
        let candidates = if search_all {
            self.searched = Some(Instant::now());
            self.queue.len()
        } else {
            1
        };
        self.queue
            .iter()
            .take(candidates)
            .find(|(a, _)| a.is_lost())
            .map(|(a, _)| a.reason().unwrap_or_else(|| "lost downstream".into()))
    }

    fn in_flight(&self) -> bool {
        self.queue.iter().any(|(a, _)| !a.is_done() && !a.is_lost())
    }
}

fn batch_offsets(records: &RecordBatch) -> Result<BatchOffsets, Failure> {
    let mut out = BTreeMap::new();
    // Only the last offset of each source partition is kept, so only that one
    // is parsed: a CDC batch carries a distinct offset on every record.
    let mut seen = std::collections::HashSet::new();
    let mut last = None;
    let views: Vec<_> = records.views().collect();
    for r in views.iter().rev() {
        if let Some((p, o)) = r.source {
            // Runs of one partition are the common case: skip the hash.
            if last == Some(p) || !seen.insert(p) {
                continue;
            }
            last = Some(p);
            let p = canonical(p)
                .map_err(|e| Failure(format!("record for topic '{}': {e}", r.topic)))?;
            let o = canonical(o)
                .map_err(|e| Failure(format!("record for topic '{}': {e}", r.topic)))?;
            out.entry(p.to_string()).or_insert((p, o));
        }
    }
    Ok(out)
}

async fn commit(
    spec: &SourceTaskSpec,
    inst: &mut SourceInstance,
    pending: &mut Pending,
    offsets: &OffsetStore,
    counters: &TaskCounters,
) -> Result<(), Failure> {
    if let Some(write) = start_commit(spec, pending, offsets) {
        finish_commit(inst, write, counters).await?;
    }
    Ok(())
}

/// An offsets write under way: the poll loop goes on while the store makes
/// it durable (an fsync or a Kafka round trip), and the plugin hears of the
/// offsets once it is done. Returns the offsets as text.
type OffsetWrite = tokio::task::JoinHandle<Result<Vec<(String, String)>, Failure>>;

fn start_commit(
    spec: &SourceTaskSpec,
    pending: &mut Pending,
    offsets: &OffsetStore,
) -> Option<OffsetWrite> {
    let acked = pending.take_acked();
    if acked.is_empty() {
        return None;
    }
    let (offsets, connector, task) = (offsets.clone(), spec.id.connector.clone(), spec.id.task);
    Some(tokio::spawn(async move {
        offsets
            .commit(&connector, &acked)
            .await
            .map_err(|e| Failure(format!("committing offsets: {e}")))?;
        tracing::debug!(connector = %connector, task, offsets = ?acked, "source offsets committed");
        Ok(acked
            .iter()
            .map(|(p, o)| (p.to_string(), o.to_string()))
            .collect())
    }))
}

async fn finish_commit(
    inst: &mut SourceInstance,
    write: OffsetWrite,
    counters: &TaskCounters,
) -> Result<(), Failure> {
    let as_text = write
        .await
        .map_err(|e| Failure(format!("committing offsets: {e}")))??;
    counters.committed(as_text.len() as u64);
    inst.commit(&as_text)
        .await
        .map_err(|e| Failure(format!("commit: {e}")))
}

/// Exactly-once: the batch and its offsets in one Kafka transaction, then
/// the plugin hears the offsets are durable.
#[allow(clippy::too_many_arguments)]
async fn commit_in_transaction(
    spec: &SourceTaskSpec,
    inst: &mut SourceInstance,
    producer: &Arc<TransactionalProducer>,
    offsets_topic: &str,
    records: Vec<Record>,
    batch: BatchOffsets,
    offsets: &OffsetStore,
    counters: &TaskCounters,
) -> Result<(), Failure> {
    let connector = &spec.id.connector;
    let pairs: Vec<(Value, Value)> = batch.into_values().collect();
    let offset_records: Vec<(String, String)> = pairs
        .iter()
        .map(|(p, o)| (offset_key(connector, p), o.to_string()))
        .collect();
    let (p, topic) = (producer.clone(), offsets_topic.to_string());
    tokio::task::spawn_blocking(move || p.send_batch(&records, &topic, &offset_records))
        .await
        .map_err(|e| Failure(format!("transaction task: {e}")))?
        .map_err(|e| Failure(format!("{e}; the transaction was aborted and will be retried from the last committed offsets")))?;
    offsets.remember(connector, &pairs).await;
    counters.committed(pairs.len() as u64);
    let as_text: Vec<(String, String)> = pairs
        .iter()
        .map(|(p, o)| (p.to_string(), o.to_string()))
        .collect();
    inst.commit(&as_text)
        .await
        .map_err(|e| Failure(format!("commit: {e}")))
}

async fn run_inner(
    spec: &SourceTaskSpec,
    dest: &Destination,
    offsets: &OffsetStore,
    status: &StatusBoard,
    counters: &TaskCounters,
    shutdown: &mut watch::Receiver<bool>,
    paused: &mut watch::Receiver<bool>,
) -> Result<(), Failure> {
    let id = &spec.id;
    let mut inst = spec
        .plugin
        .source(id.clone(), spec.limits.clone())
        .await
        .map_err(|e| Failure(e.to_string()))?;
    let mut chain = Chain::open(&spec.transforms, id, &spec.limits).await?;
    let mut reporter = Reporter::new(
        spec.errors.clone(),
        match dest {
            Destination::Kafka { hub, .. } => Some(hub),
            Destination::Bus(_) => None,
        },
    );
    // Exactly-once: creating the producer fences the previous incarnation
    // of this task before its offsets are read.
    let txn = dest.transactional(id.task).await?;
    let stored = offsets.load(&id.connector).await;
    counters.set_plugin_metrics(inst.metrics());
    inst.open(&spec.config, &stored)
        .await
        .map_err(|e| Failure(format!("open: {e}")))?;
    status.set(&id.connector, id.task, State::Running, None);
    tracing::info!(connector = %id.connector, task = id.task, resumed_partitions = stored.len(), "source task running");
    tracing::debug!(connector = %id.connector, task = id.task, offsets = ?stored, "resumed from stored offsets");

    let mut pending = Pending::default();
    let mut last_commit = Instant::now();
    let mut writing: Option<OffsetWrite> = None;
    let mut retry = spec.errors.retry.start(Operation::Task);
    let mut unread = std::collections::HashSet::new();
    while !*shutdown.borrow() {
        if *paused.borrow() {
            // Stop polling, commit what is acknowledged, keep the plugin open.
            if let Some(w) = writing.take() {
                finish_commit(&mut inst, w, counters).await?;
            }
            settle(spec, &pending, Some(shutdown)).await;
            pending.fold_done();
            report_skipped(&mut pending, &mut reporter, id, counters).await?;
            reporter.settle().await.map_err(Failure)?;
            commit(spec, &mut inst, &mut pending, offsets, counters).await?;
            status.set(&id.connector, id.task, State::Paused, None);
            tracing::info!(connector = %id.connector, task = id.task, "source task paused");
            while *paused.borrow() && !*shutdown.borrow() {
                tokio::select! {
                    r = paused.changed() => if r.is_err() { break },
                    _ = shutdown.changed() => {}
                }
            }
            if !*shutdown.borrow() {
                status.set(&id.connector, id.task, State::Running, None);
                tracing::info!(connector = %id.connector, task = id.task, "source task resumed");
            }
            last_commit = Instant::now();
            continue;
        }
        let polled = Instant::now();
        let records = match inst.poll_batch(spec.batch_max).await {
            Ok(r) => {
                retry = spec.errors.retry.start(Operation::Task);
                r
            }
            Err(e) => {
                if retry.again(&e, shutdown).await {
                    tracing::warn!(connector = %id.connector, task = id.task, "poll failed, retrying: {e}");
                    continue;
                }
                if matches!(e, CallError::Retriable(_)) && *shutdown.borrow() {
                    break;
                }
                return Err(Failure(format!("poll: {e}")));
            }
        };
        if records.is_empty() {
            idle(shutdown, Duration::from_millis(20)).await;
        } else {
            TaskCounters::add(&counters.records_in, records.len() as u64);
            TaskCounters::add(&counters.batches, 1);
            // Offsets come from what was polled, so records a transform drops
            // still move the offset forward.
            let batch_offsets = batch_offsets(&records)?;
            let out = errors::transform(&mut chain, records, &mut reporter, id, counters, shutdown)
                .await
                .map_err(Failure)?;
            let out = match dest {
                Destination::Bus(_) if spec.converters.is_passthrough() => Outgoing::Encoded(out),
                _ => Outgoing::Records(
                    convert(
                        out.to_records(),
                        spec.converters,
                        Direction::ToKafka,
                        &mut reporter,
                        id,
                        counters,
                    )
                    .await
                    .map_err(Failure)?,
                ),
            };
            TaskCounters::add(&counters.records_out, out.len() as u64);
            let mut last_topic = None;
            for topic in out.topics() {
                // Asked once per run of one topic, not once per record.
                if last_topic == Some(topic) {
                    continue;
                }
                last_topic = Some(topic);
                if !dest.has_readers(topic) && unread.insert(topic.to_owned()) {
                    tracing::warn!(connector = %id.connector, %topic, "no sink reads this topic and no Kafka is configured: its records are dropped");
                }
            }
            match &txn {
                Some((producer, topic)) => {
                    let out = out.into_records();
                    dest.prepare_topics(&out).await?;
                    reporter.settle().await.map_err(Failure)?;
                    commit_in_transaction(
                        spec,
                        &mut inst,
                        producer,
                        topic,
                        out,
                        batch_offsets,
                        offsets,
                        counters,
                    )
                    .await?;
                }
                None => {
                    let ack = match dest {
                        // The bus holds a batch while its topic's sink is
                        // away; a stop must not wait for it to come back.
                        // The batch is not acknowledged, so its offsets stay
                        // uncommitted and a restart reads it again.
                        Destination::Bus(_) => tokio::select! {
                            a = dest.publish(out, false) => a?,
                            _ = shutdown.wait_for(|stop| *stop) => break,
                        },
                        Destination::Kafka { .. } => {
                            dest.publish(out, spec.errors.tolerate_all).await?
                        }
                    };
                    pending.push(ack, batch_offsets);
                }
            }
            counters.batch_latency.observe(polled.elapsed());
        }
        if let Some(reason) = pending.lost() {
            return Err(Failure(format!(
                "{reason}; records after the last committed offset will be re-read on restart"
            )));
        }
        report_skipped(&mut pending, &mut reporter, id, counters).await?;
        if writing.as_ref().is_some_and(|w| w.is_finished()) {
            if let Some(w) = writing.take() {
                finish_commit(&mut inst, w, counters).await?;
            }
        }
        if last_commit.elapsed() >= spec.commit_interval && writing.is_none() {
            reporter.settle().await.map_err(Failure)?;
            writing = start_commit(spec, &mut pending, offsets);
            last_commit = Instant::now();
        }
    }
    if let Some(w) = writing.take() {
        finish_commit(&mut inst, w, counters).await?;
    }

    // Graceful stop: wait (bounded) for downstream acks, then commit what is acked.
    settle(spec, &pending, None).await;
    pending.fold_done();
    report_skipped(&mut pending, &mut reporter, id, counters).await?;
    reporter.settle().await.map_err(Failure)?;
    commit(spec, &mut inst, &mut pending, offsets, counters).await?;
    if !pending.queue.is_empty() {
        tracing::warn!(connector = %id.connector, task = id.task, batches = pending.queue.len(), "stopping with unacknowledged batches; they will be re-read");
    }
    inst.close()
        .await
        .map_err(|e| Failure(format!("close: {e}")))?;
    Ok(())
}

/// KIP-779: records Kafka refused under `errors.tolerance=all` are counted,
/// logged as `errors.log.enable` says and dead-lettered when a topic is set.
async fn report_skipped(
    pending: &mut Pending,
    reporter: &mut Reporter,
    id: &TaskId,
    counters: &TaskCounters,
) -> Result<(), Failure> {
    for s in std::mem::take(&mut pending.skipped) {
        tracing::warn!(connector = %id.connector, task = id.task, topic = %s.record.topic, "errors.tolerance=all: skipping a record Kafka refused: {}", s.reason);
        reporter
            .refuse(
                &s.record,
                id,
                Stage::KafkaProduce,
                "kafka-producer",
                &s.reason,
                counters,
            )
            .await
            .map_err(Failure)?;
    }
    Ok(())
}

/// Waits (at most the graceful timeout, or until `stop` fires) for every
/// batch handed downstream to be acknowledged or lost.
async fn settle(spec: &SourceTaskSpec, pending: &Pending, stop: Option<&watch::Receiver<bool>>) {
    let deadline = Instant::now() + spec.shutdown_timeout;
    while pending.in_flight() && Instant::now() < deadline && !stop.is_some_and(|s| *s.borrow()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sleeps unless shutdown is signalled first.
pub async fn idle(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}
