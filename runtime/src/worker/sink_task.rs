//! One sink task: take batches from its input (the in-process bus, or its
//! own Kafka consumer in the connector's group), run the transform chain,
//! put them into the plugin, and acknowledge or commit only after `flush`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use wharf_records::Record;

use crate::config::ConnectorConfig;
use crate::kafka::{ConsumerEvent, KafkaHub, SinkConsumer};
use crate::plugin::{CallError, Limits, Plugin, RecordBatch, SinkInstance, TaskId};

use super::bus::Delivery;
use super::converters::{convert, Converters, Direction};
use super::errors::{self, ErrorPolicy, Reporter, Stage};
use super::retry::{Operation, RetryPolicy};
use super::status::{State, StatusBoard, TaskCounters};
use super::transforms::{Chain, TransformSpec};

#[derive(Clone)]
pub struct SinkTaskSpec {
    pub id: TaskId,
    pub plugin: Arc<Plugin>,
    pub config: Vec<(String, String)>,
    pub transforms: Arc<Vec<TransformSpec>>,
    pub limits: Limits,
    pub flush_interval: Duration,
    pub errors: ErrorPolicy,
    pub converters: Converters,
}

/// Where a sink task's records come from.
pub enum SinkInput {
    Bus(mpsc::Receiver<Delivery>),
    Kafka {
        hub: Arc<KafkaHub>,
        connector: ConnectorConfig,
        topics: Vec<String>,
        batch_max: usize,
    },
}

/// Batches held between flushes before the task flushes early, bounding
/// what a sink holds unacknowledged.
const MAX_HELD: usize = 256;

/// Runs the task once; `Err` carries the FAILED trace (already on the board).
/// The input is borrowed so a restarted task reads the same queue.
pub async fn run(
    spec: &SinkTaskSpec,
    input: &mut SinkInput,
    status: &StatusBoard,
    counters: &TaskCounters,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let id = &spec.id;
    match run_inner(spec, input, status, counters, shutdown).await {
        Ok(()) => {
            status.set(&id.connector, id.task, State::Stopped, None);
            tracing::info!(connector = %id.connector, task = id.task, "sink task stopped");
            Ok(())
        }
        Err(trace) => {
            status.set(&id.connector, id.task, State::Failed, Some(trace.clone()));
            tracing::error!(connector = %id.connector, task = id.task, "sink task FAILED: {trace}");
            Err(trace)
        }
    }
}

async fn put_with_retry(
    inst: &mut SinkInstance,
    records: &RecordBatch,
    id: &TaskId,
    policy: RetryPolicy,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), CallError> {
    let mut retry = policy.start(Operation::Task);
    loop {
        match inst.put_batch(records).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                if !retry.again(&e, shutdown).await {
                    return Err(e);
                }
                tracing::warn!(connector = %id.connector, task = id.task, "put failed, retrying: {e}");
            }
        }
    }
}

/// What was put since the last flush and waits for it.
#[derive(Default)]
struct Held {
    deliveries: Vec<Delivery>,
    /// Next offset read per Kafka (topic, partition) while assigned.
    positions: BTreeMap<(String, i32), i64>,
    /// Where the sink said it still holds records unwritten (last flush).
    holding: BTreeMap<(String, i32), i64>,
    /// What was last handed out to commit, so unchanged positions are not
    /// committed again on every tick.
    committed: BTreeMap<(String, i32), i64>,
    batches: usize,
    /// Records read since the last durable flush.
    records: u64,
}

impl Held {
    fn note_positions(&mut self, records: &RecordBatch) {
        // A batch is runs of one partition: the map is touched (and a key
        // built) once per run, not once per record.
        let mut run: Option<(&str, i32, i64)> = None;
        for r in records.views() {
            let (Some(p), Some(o)) = (r.partition, r.offset) else {
                continue;
            };
            match &mut run {
                Some((t, rp, next)) if *t == r.topic && *rp == p => *next = (*next).max(o + 1),
                _ => {
                    if let Some(done) = run.replace((r.topic, p, o + 1)) {
                        self.note_position(done);
                    }
                }
            }
        }
        if let Some(done) = run {
            self.note_position(done);
        }
    }

    fn note_position(&mut self, (topic, partition, next): (&str, i32, i64)) {
        let at = self
            .positions
            .entry((topic.to_owned(), partition))
            .or_insert(0);
        *at = (*at).max(next);
    }

    /// Positions that became durable since they were last handed out: what
    /// was read, except where the sink still holds records.
    fn take_positions(&mut self) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for (tp, &read) in &self.positions {
            let at = self.holding.get(tp).map_or(read, |&h| h.min(read));
            if self.committed.get(tp) != Some(&at) {
                self.committed.insert(tp.clone(), at);
                out.push((tp.0.clone(), tp.1, at));
            }
        }
        out
    }

    /// Positions whose commit failed: the next `take_positions` hands them
    /// out again (unless they moved on meanwhile).
    fn uncommit(&mut self, positions: &[(String, i32, i64)]) {
        for (t, p, o) in positions {
            let tp = (t.clone(), *p);
            if self.committed.get(&tp) == Some(o) {
                self.committed.remove(&tp);
            }
        }
    }

    /// Partitions that left this task: nothing more is committed for them,
    /// and if they come back, the stream starts again at the group's offset.
    fn release(&mut self, partitions: &[(String, i32)]) {
        for tp in partitions {
            self.positions.remove(tp);
            self.holding.remove(tp);
            self.committed.remove(tp);
        }
    }
}

struct Task<'a> {
    spec: &'a SinkTaskSpec,
    inst: SinkInstance,
    chain: Chain,
    held: Held,
    counters: &'a TaskCounters,
    reporter: Reporter,
    shutdown: watch::Receiver<bool>,
    /// Since when periodic flushes have found an S3 object still
    /// completing and committed nothing.
    deferred: Option<Instant>,
}

/// How long periodic commits may be put off for uploads completing in the
/// background before a flush waits for one.
const MAX_DEFER: Duration = Duration::from_secs(5);

impl Task<'_> {
    async fn handle(
        &mut self,
        records: RecordBatch,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let started = Instant::now();
        TaskCounters::add(&self.counters.records_in, records.len() as u64);
        TaskCounters::add(&self.counters.batches, 1);
        self.held.records += records.len() as u64;
        // Positions come from what was read, so records a transform drops
        // are committed too.
        self.held.note_positions(&records);
        // The batch goes on as read unless a converter changes its records.
        let records = if self.spec.converters.is_passthrough() {
            records
        } else {
            let converted = convert(
                records.to_records(),
                self.spec.converters,
                Direction::FromKafka,
                &mut self.reporter,
                &self.spec.id,
                self.counters,
            )
            .await?;
            RecordBatch::encode(&converted)
        };
        let records = errors::transform(
            &mut self.chain,
            records,
            &mut self.reporter,
            &self.spec.id,
            self.counters,
            shutdown,
        )
        .await?;
        if !records.is_empty() {
            let policy = self.spec.errors.retry;
            match put_with_retry(&mut self.inst, &records, &self.spec.id, policy, shutdown).await {
                Ok(()) => {}
                Err(CallError::Fatal(m)) if self.spec.errors.tolerate_all => {
                    tracing::debug!("put refused a batch ({m}); retrying record by record");
                    self.put_one_by_one(&records.to_records(), shutdown).await?;
                }
                Err(e) => return Err(format!("put: {e}")),
            }
        }
        TaskCounters::add(&self.counters.records_out, records.len() as u64);
        self.counters.batch_latency.observe(started.elapsed());
        self.held.batches += 1;
        Ok(())
    }

    async fn put_one_by_one(
        &mut self,
        records: &[Record],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        for r in records {
            match put_with_retry(
                &mut self.inst,
                &RecordBatch::encode(std::slice::from_ref(r)),
                &self.spec.id,
                self.spec.errors.retry,
                shutdown,
            )
            .await
            {
                Ok(()) => {}
                Err(CallError::Fatal(m)) => {
                    let class = self.spec.plugin.info.name.clone();
                    self.refuse(r, Stage::TaskPut, &class, &m).await?
                }
                Err(e) => return Err(format!("put: {e}")),
            }
        }
        Ok(())
    }

    async fn refuse(
        &mut self,
        r: &Record,
        stage: Stage,
        class: &str,
        message: &str,
    ) -> Result<(), String> {
        self.reporter
            .refuse(r, &self.spec.id, stage, class, message, self.counters)
            .await
    }

    /// Makes everything put durable; returns the Kafka positions to commit.
    async fn flush(&mut self) -> Result<Vec<(String, i32, i64)>, String> {
        self.flush_when(true).await
    }

    /// A periodic flush: when an S3 object is still completing in the
    /// background it commits nothing rather than stall the stream until the
    /// object is whole (a later flush commits it), for at most `MAX_DEFER`.
    async fn flush_periodic(&mut self) -> Result<Vec<(String, i32, i64)>, String> {
        let overdue = self.deferred.is_some_and(|t| t.elapsed() >= MAX_DEFER);
        self.flush_when(overdue).await
    }

    async fn flush_when(&mut self, wait: bool) -> Result<Vec<(String, i32, i64)>, String> {
        // A sink holding records (an S3 file waiting to rotate on a schedule)
        // is flushed even when nothing new came.
        if self.held.batches == 0 && self.held.holding.is_empty() {
            // Nothing new; positions whose commit failed go out again.
            return Ok(self.held.take_positions());
        }
        let mut retry = self.spec.errors.retry.start(Operation::Task);
        let mut shutdown = self.shutdown.clone();
        let flushed = loop {
            match self.inst.flush(wait).await {
                Ok(r) => break r,
                Err(e) => {
                    if !retry.again(&e, &mut shutdown).await {
                        return Err(format!("flush: {e}"));
                    }
                    tracing::warn!(connector = %self.spec.id.connector, task = self.spec.id.task, "flush failed, retrying: {e}");
                }
            }
        };
        self.held.holding = flushed.holding;
        for r in flushed.rejected {
            let rec = &r.record;
            if !r.deliberate && !self.spec.errors.tolerate_all {
                return Err(format!(
                    "put: record {}-{}@{} was rejected: {}",
                    rec.topic,
                    rec.partition.unwrap_or(-1),
                    rec.offset.unwrap_or(-1),
                    r.reason
                ));
            }
            let class = self.spec.plugin.info.name.clone();
            self.refuse(rec, Stage::TaskPut, &class, &r.reason).await?;
        }
        self.reporter.settle().await?;
        if !flushed.durable {
            self.deferred.get_or_insert_with(Instant::now);
            return Ok(Vec::new());
        }
        self.deferred = None;
        self.held.batches = 0;
        TaskCounters::add(
            &self.counters.records_durable,
            std::mem::take(&mut self.held.records),
        );
        for d in self.held.deliveries.drain(..) {
            d.ack();
        }
        Ok(self.held.take_positions())
    }
}

async fn run_inner(
    spec: &SinkTaskSpec,
    input: &mut SinkInput,
    status: &StatusBoard,
    counters: &TaskCounters,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let id = &spec.id;
    let mut inst = spec
        .plugin
        .sink(id.clone(), spec.limits.clone())
        .await
        .map_err(|e| e.to_string())?;
    let chain = Chain::open(&spec.transforms, id, &spec.limits)
        .await
        .map_err(|(alias, e)| format!("transform '{alias}' {e}"))?;
    counters.set_plugin_metrics(inst.metrics());
    inst.open(&spec.config)
        .await
        .map_err(|e| format!("open: {e}"))?;
    let mut task = Task {
        spec,
        inst,
        chain,
        held: Held::default(),
        deferred: None,
        counters,
        reporter: Reporter::new(
            spec.errors.clone(),
            match &*input {
                SinkInput::Kafka { hub, .. } => Some(hub),
                SinkInput::Bus(_) => None,
            },
        ),
        shutdown: shutdown.clone(),
    };
    status.set(&id.connector, id.task, State::Running, None);
    tracing::info!(connector = %id.connector, task = id.task, "sink task running");

    let mut tick = tokio::time::interval(spec.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    match input {
        SinkInput::Bus(rx) => loop {
            tokio::select! {
                d = rx.recv() => {
                    let Some(mut d) = d else { break };
                    let records = std::mem::take(&mut d.records);
                    task.handle(records, &mut shutdown).await?;
                    task.held.deliveries.push(d);
                    if task.held.batches >= MAX_HELD {
                        task.flush_periodic().await?;
                    }
                }
                _ = tick.tick() => { task.flush_periodic().await?; }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        // Stopping: take what sources already queued, then
                        // flush below; later batches wait in the queue (a
                        // paused or restarting task) or are lost to a
                        // stopped one, which fails their sources' acks.
                        while let Ok(mut d) = rx.try_recv() {
                            let records = std::mem::take(&mut d.records);
                            task.handle(records, &mut shutdown).await?;
                            task.held.deliveries.push(d);
                        }
                        break;
                    }
                }
            }
        },
        SinkInput::Kafka {
            hub,
            connector,
            topics,
            batch_max,
        } => {
            let mut consumer = hub
                .sink_consumer(connector, id.task, topics, *batch_max)
                .map_err(|e| e.to_string())?;
            let r = consume(&mut task, &mut consumer, &mut tick, &mut shutdown).await;
            consumer.stop_polling().await;
            // Stopping (or failing): commit what the sink already made durable.
            let last = match &r {
                Ok(()) => task.flush().await,
                Err(_) => Ok(Vec::new()),
            };
            if let Ok(positions) = &last {
                if let Err(e) = consumer.commit(positions.clone()).await {
                    tracing::warn!(connector = %id.connector, task = id.task, "final commit failed (records will be re-read): {e}");
                }
            }
            consumer.close().await;
            r?;
            last?;
        }
    }
    // Every source is gone (or the worker stops): flush the rest and stop.
    task.flush().await?;
    task.inst.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}

async fn consume(
    task: &mut Task<'_>,
    consumer: &mut SinkConsumer,
    tick: &mut tokio::time::Interval,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    while !*shutdown.borrow() {
        tokio::select! {
            e = consumer.events.recv() => match e {
                None => return Ok(()),
                Some(ConsumerEvent::Records(records)) => {
                    task.handle(records, shutdown).await?;
                    if task.held.batches >= MAX_HELD {
                        let positions = task.flush_periodic().await?;
                        commit(consumer, positions, &mut task.held, task.counters).await;
                    }
                }
                Some(ConsumerEvent::Revoked { partitions, reply }) => {
                    tracing::info!(partitions = ?partitions, "partitions revoked: flushing before they go");
                    let positions = task.flush().await?;
                    task.held.release(&partitions);
                    task.inst.revoked(&partitions).await.map_err(|e| format!("revoked: {e}"))?;
                    let _ = reply.send(positions);
                }
                Some(ConsumerEvent::Failed(reason)) => return Err(reason),
            },
            _ = tick.tick() => {
                let positions = task.flush_periodic().await?;
                commit(consumer, positions, &mut task.held, task.counters).await;
                task.counters.consumer_lag.set(consumer.lag());
            }
            _ = shutdown.changed() => {}
        }
    }
    Ok(())
}

/// A failed commit is not fatal: the records are re-read, never lost. Its
/// positions are handed out again on the next tick, so a commit that failed
/// once (a coordinator moving) does not wait for new records to be retried.
async fn commit(
    consumer: &SinkConsumer,
    positions: Vec<(String, i32, i64)>,
    held: &mut Held,
    counters: &TaskCounters,
) {
    let n = positions.len() as u64;
    match consumer.commit(positions.clone()).await {
        Ok(()) => counters.committed(n),
        Err(e) => {
            held.uncommit(&positions);
            tracing::warn!("committing sink offsets failed (retried on the next flush; records re-read if it never succeeds): {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn a_failed_commit_is_handed_out_again_and_a_good_one_is_not() {
        let mut held = Held::default();
        held.note_position(("t", 0, 10));
        let first = held.take_positions();
        assert_eq!(first, vec![("t".to_string(), 0, 10)]);
        assert!(held.take_positions().is_empty(), "committed once");
        held.uncommit(&first);
        assert_eq!(held.take_positions(), first, "retried after a failure");
        held.note_position(("t", 0, 12));
        let stale = vec![("t".to_string(), 0, 10)];
        held.uncommit(&stale);
        assert_eq!(held.take_positions(), vec![("t".to_string(), 0, 12)]);
    }
}
