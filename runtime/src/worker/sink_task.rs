//! One sink task: take batches from its queue, run the transform chain, put
//! them into the plugin, and acknowledge upstream only after `flush` succeeds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::plugin::{CallError, Limits, Plugin, SinkInstance, TaskId};

use super::bus::Delivery;
use super::source_task::Backoff;
use super::status::{State, StatusBoard, TaskCounters};
use super::transforms::{Chain, TransformSpec};

pub struct SinkTaskSpec {
    pub id: TaskId,
    pub plugin: Arc<Plugin>,
    pub config: Vec<(String, String)>,
    pub transforms: Arc<Vec<TransformSpec>>,
    pub limits: Limits,
    pub flush_interval: Duration,
}

/// Deliveries held between flushes before the task flushes early, bounding
/// what a sink holds unacknowledged.
const MAX_HELD: usize = 256;

pub async fn run(
    spec: SinkTaskSpec,
    rx: mpsc::Receiver<Delivery>,
    status: StatusBoard,
    counters: Arc<TaskCounters>,
) {
    let id = spec.id.clone();
    match run_inner(&spec, rx, &status, &counters).await {
        Ok(()) => {
            status.set(&id.connector, id.task, State::Stopped, None);
            tracing::info!(connector = %id.connector, task = id.task, "sink task stopped");
        }
        Err(trace) => {
            status.set(&id.connector, id.task, State::Failed, Some(trace.clone()));
            tracing::error!(connector = %id.connector, task = id.task, "sink task FAILED: {trace}");
        }
    }
}

async fn put_with_retry(
    inst: &mut SinkInstance,
    records: &[wharf_records::Record],
    id: &TaskId,
) -> Result<(), String> {
    let (_never_tx, mut never) = tokio::sync::watch::channel(false);
    let mut backoff = Backoff::default();
    loop {
        match inst.put(records).await {
            Ok(()) => return Ok(()),
            Err(CallError::Retriable(m)) => {
                tracing::warn!(connector = %id.connector, task = id.task, "put failed, will retry: {m}");
                backoff.wait(&mut never).await;
            }
            Err(e) => return Err(format!("put: {e}")),
        }
    }
}

async fn flush(inst: &mut SinkInstance, held: &mut Vec<Delivery>) -> Result<(), String> {
    if held.is_empty() {
        return Ok(());
    }
    inst.flush().await.map_err(|e| format!("flush: {e}"))?;
    for d in held.drain(..) {
        d.ack();
    }
    Ok(())
}

async fn run_inner(
    spec: &SinkTaskSpec,
    mut rx: mpsc::Receiver<Delivery>,
    status: &StatusBoard,
    counters: &TaskCounters,
) -> Result<(), String> {
    let id = &spec.id;
    let mut inst = spec
        .plugin
        .sink(id.clone(), spec.limits.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut chain = Chain::open(&spec.transforms, id, &spec.limits)
        .await
        .map_err(|(alias, e)| format!("transform '{alias}' {e}"))?;
    inst.open(&spec.config)
        .await
        .map_err(|e| format!("open: {e}"))?;
    status.set(&id.connector, id.task, State::Running, None);
    tracing::info!(connector = %id.connector, task = id.task, "sink task running");

    let mut held: Vec<Delivery> = Vec::new();
    let mut tick = tokio::time::interval(spec.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            d = rx.recv() => {
                let Some(mut d) = d else { break };
                let records = std::mem::take(&mut d.records);
                TaskCounters::add(&counters.records_in, records.len() as u64);
                TaskCounters::add(&counters.batches, 1);
                let records = if chain.is_empty() {
                    records
                } else {
                    chain.apply(records).await.map_err(|(alias, e)| format!("transform '{alias}' {e}"))?
                };
                if !records.is_empty() {
                    put_with_retry(&mut inst, &records, id).await?;
                }
                TaskCounters::add(&counters.records_out, records.len() as u64);
                held.push(d);
                if held.len() >= MAX_HELD {
                    flush(&mut inst, &mut held).await?;
                }
            }
            _ = tick.tick() => flush(&mut inst, &mut held).await?,
        }
    }
    // Every source is gone: flush the rest and stop.
    flush(&mut inst, &mut held).await?;
    inst.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}
