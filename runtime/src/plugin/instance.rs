//! One plugin instance serving one task. Each call re-arms the epoch deadline
//! and turns traps into a [`CallError`] naming the cause (timeout, out of
//! memory, or the trap itself), so the caller can fail just this task.

use std::sync::Arc;

use wasmtime::Store;
use wharf_records::Record;

use super::batch::RecordBatch;
use super::bindings::{sink, source, transform, types};
use super::state::{HostState, PluginMetrics};

/// A record a sink gave up on (see `rejection` in the WIT).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub record: Record,
    pub reason: String,
    pub deliberate: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("retriable error: {0}")]
    Retriable(String),
    #[error("fatal error: {0}")]
    Fatal(String),
    #[error("call exceeded its deadline of {0:?} (plugin.call.timeout.ms) and was interrupted")]
    Timeout(std::time::Duration),
    #[error("out of memory: the plugin tried to grow past its limit of {0} bytes (plugin.memory.max.bytes)")]
    OutOfMemory(usize),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned a malformed batch: {0}")]
    Malformed(String),
    #[error("instance is unusable after an earlier failure")]
    Poisoned,
}

impl CallError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, CallError::Retriable(_))
    }

    pub(super) fn from_trap(e: wasmtime::Error, store: &Store<HostState>) -> CallError {
        if store.data().limiter.hit_memory_limit {
            return CallError::OutOfMemory(store.data().limiter.max_memory);
        }
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return CallError::Timeout(std::time::Duration::ZERO);
        }
        // The first line of a trap is its cause; the wasm backtrace after it
        // goes to the debug log rather than the task's status.
        let full = format!("{e:#}");
        tracing::debug!(connector = %store.data().id.connector, task = store.data().id.task, "trap: {full}");
        let mut reason = e
            .downcast_ref::<wasmtime::Trap>()
            .map(|t| t.to_string())
            .unwrap_or_else(|| full.lines().next().unwrap_or_default().to_string());
        let said: Vec<String> = store
            .data()
            .recent_stderr
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        if !said.is_empty() {
            reason = format!("{reason}; plugin stderr: {}", said.join(" | "));
        }
        CallError::Trap(reason)
    }
}

fn plugin_err(e: types::PluginError) -> CallError {
    match e {
        types::PluginError::Retriable(m) => CallError::Retriable(m),
        types::PluginError::Fatal(m) => CallError::Fatal(m),
    }
}

fn checked(b: types::Batch) -> Result<RecordBatch, CallError> {
    RecordBatch::checked(b).map_err(|e| CallError::Malformed(e.to_string()))
}

fn from_batch(b: types::Batch) -> Result<Vec<Record>, CallError> {
    Ok(checked(b)?.to_records())
}

/// Store plumbing shared by the three instance kinds.
struct Guarded {
    store: Store<HostState>,
    deadline_ticks: u64,
    poisoned: bool,
}

impl Guarded {
    /// Runs one export call under a fresh deadline. After a trap the instance
    /// is poisoned: wasm state may be half-updated, so it is never reused.
    async fn call<R, F>(&mut self, f: F) -> Result<R, CallError>
    where
        F: AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    {
        if self.poisoned {
            return Err(CallError::Poisoned);
        }
        let data = self.store.data_mut();
        data.call_started = std::time::Instant::now();
        data.waited = std::time::Duration::ZERO;
        self.store.set_epoch_deadline(self.deadline_ticks);
        match f(&mut self.store).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.poisoned = true;
                let err = CallError::from_trap(e, &self.store);
                Err(match err {
                    CallError::Timeout(_) => CallError::Timeout(std::time::Duration::from_millis(
                        self.deadline_ticks.saturating_sub(1) * 10,
                    )),
                    other => other,
                })
            }
        }
    }

    fn metrics(&self) -> Arc<PluginMetrics> {
        self.store.data().metrics.clone()
    }
}

pub struct SourceInstance {
    g: Guarded,
    b: source::Source,
}

impl SourceInstance {
    pub(super) fn new(store: Store<HostState>, b: source::Source, deadline_ticks: u64) -> Self {
        SourceInstance {
            g: Guarded {
                store,
                deadline_ticks,
                poisoned: false,
            },
            b,
        }
    }

    pub fn metrics(&self) -> Arc<PluginMetrics> {
        self.g.metrics()
    }

    pub(super) async fn describe(
        &mut self,
    ) -> Result<(types::PluginInfo, Vec<types::ConfigKey>), CallError> {
        let i = self.b.wharf_connector_source_connector();
        let info = self.g.call(async |s| i.call_info(s).await).await?;
        let spec = self.g.call(async |s| i.call_config_spec(s).await).await?;
        Ok((info, spec))
    }

    pub(super) async fn validate(
        &mut self,
        config: &[(String, String)],
    ) -> Result<Vec<types::ConfigError>, CallError> {
        let i = self.b.wharf_connector_source_connector();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_validate(s, &config).await)
            .await
    }

    pub async fn task_configs(
        &mut self,
        config: &[(String, String)],
        max_tasks: u32,
    ) -> Result<Vec<Vec<(String, String)>>, CallError> {
        let i = self.b.wharf_connector_source_connector();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_task_configs(s, &config, max_tasks).await)
            .await?
            .map_err(plugin_err)
    }

    pub async fn open(
        &mut self,
        config: &[(String, String)],
        offsets: &[(String, String)],
    ) -> Result<(), CallError> {
        let i = self.b.wharf_connector_source_connector();
        let (config, offsets) = (config.to_vec(), offsets.to_vec());
        self.g
            .call(async |s| i.call_open(s, &config, &offsets).await)
            .await?
            .map_err(plugin_err)
    }

    pub async fn poll(&mut self, max: u32) -> Result<Vec<Record>, CallError> {
        Ok(self.poll_batch(max).await?.to_records())
    }

    /// Polls, keeping the batch encoded (for a transform chain).
    pub async fn poll_batch(&mut self, max: u32) -> Result<RecordBatch, CallError> {
        let i = self.b.wharf_connector_source_connector();
        let batch = self
            .g
            .call(async |s| i.call_poll(s, max).await)
            .await?
            .map_err(plugin_err)?;
        checked(batch)
    }

    pub async fn commit(&mut self, offsets: &[(String, String)]) -> Result<(), CallError> {
        let i = self.b.wharf_connector_source_connector();
        let offsets = offsets.to_vec();
        self.g
            .call(async |s| i.call_commit(s, &offsets).await)
            .await?
            .map_err(plugin_err)
    }

    pub async fn close(&mut self) -> Result<(), CallError> {
        let i = self.b.wharf_connector_source_connector();
        self.g.call(async |s| i.call_close(s).await).await
    }
}

pub struct SinkInstance {
    g: Guarded,
    b: sink::Sink,
}

impl SinkInstance {
    pub(super) fn new(store: Store<HostState>, b: sink::Sink, deadline_ticks: u64) -> Self {
        SinkInstance {
            g: Guarded {
                store,
                deadline_ticks,
                poisoned: false,
            },
            b,
        }
    }

    pub fn metrics(&self) -> Arc<PluginMetrics> {
        self.g.metrics()
    }

    pub(super) async fn describe(
        &mut self,
    ) -> Result<(types::PluginInfo, Vec<types::ConfigKey>), CallError> {
        let i = self.b.wharf_connector_sink_connector();
        let info = self.g.call(async |s| i.call_info(s).await).await?;
        let spec = self.g.call(async |s| i.call_config_spec(s).await).await?;
        Ok((info, spec))
    }

    pub(super) async fn validate(
        &mut self,
        config: &[(String, String)],
    ) -> Result<Vec<types::ConfigError>, CallError> {
        let i = self.b.wharf_connector_sink_connector();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_validate(s, &config).await)
            .await
    }

    pub async fn task_configs(
        &mut self,
        config: &[(String, String)],
        max_tasks: u32,
    ) -> Result<Vec<Vec<(String, String)>>, CallError> {
        let i = self.b.wharf_connector_sink_connector();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_task_configs(s, &config, max_tasks).await)
            .await?
            .map_err(plugin_err)
    }

    pub async fn open(&mut self, config: &[(String, String)]) -> Result<(), CallError> {
        let i = self.b.wharf_connector_sink_connector();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_open(s, &config).await)
            .await?
            .map_err(plugin_err)
    }

    pub async fn put(&mut self, records: &[Record]) -> Result<(), CallError> {
        self.put_batch(&RecordBatch::encode(records)).await
    }

    pub async fn put_batch(&mut self, batch: &RecordBatch) -> Result<(), CallError> {
        let i = self.b.wharf_connector_sink_connector();
        self.g
            .call(async |s| i.call_put(s, batch.wit()).await)
            .await?
            .map_err(plugin_err)
    }

    /// Makes everything put durable but what the plugin says it still
    /// holds; returns the records it gave up on and those holdings.
    /// Unless `wait`, an S3 upload still completing in the background is
    /// left to finish and the result says it is not durable yet.
    pub async fn flush(&mut self, wait: bool) -> Result<Flushed, CallError> {
        let i = self.b.wharf_connector_sink_connector();
        let flushed = self
            .g
            .call(async |s| i.call_flush(s).await)
            .await?
            .map_err(plugin_err)?;
        // An S3 upload the plugin completed may still be finishing: what
        // this flush returns is committed, so it must be whole first.
        let state = self.g.store.data_mut();
        let durable = wait || !state.s3_completing();
        if durable {
            state.s3_settled().await.map_err(plugin_err)?;
        }
        let rejected = flushed.rejected;
        let records = from_batch(rejected.records)?;
        if records.len() != rejected.reasons.len() {
            return Err(CallError::Malformed(format!(
                "flush rejected {} records but gave {} reasons",
                records.len(),
                rejected.reasons.len()
            )));
        }
        Ok(Flushed {
            rejected: records
                .into_iter()
                .zip(rejected.reasons)
                .map(|(record, r)| Rejection {
                    record,
                    reason: r.reason,
                    deliberate: r.deliberate,
                })
                .collect(),
            holding: flushed
                .holding
                .into_iter()
                .map(|p| ((p.topic, p.partition), p.offset))
                .collect(),
            durable,
        })
    }

    /// Partitions that left the task, right after a flush.
    pub async fn revoked(&mut self, partitions: &[(String, i32)]) -> Result<(), CallError> {
        let i = self.b.wharf_connector_sink_connector();
        let partitions = partitions.to_vec();
        self.g
            .call(async |s| i.call_revoked(s, &partitions).await)
            .await
    }

    pub async fn close(&mut self) -> Result<(), CallError> {
        let i = self.b.wharf_connector_sink_connector();
        self.g.call(async |s| i.call_close(s).await).await
    }
}

/// What a sink's flush left: records it gave up on, and per (topic,
/// partition) the first offset it still holds unwritten.
#[derive(Debug, Default)]
pub struct Flushed {
    pub rejected: Vec<Rejection>,
    pub holding: std::collections::BTreeMap<(String, i32), i64>,
    /// False when an S3 object is still completing: nothing may be
    /// committed from this flush.
    pub durable: bool,
}

pub struct TransformInstance {
    g: Guarded,
    b: transform::Transform,
}

impl TransformInstance {
    pub(super) fn new(
        store: Store<HostState>,
        b: transform::Transform,
        deadline_ticks: u64,
    ) -> Self {
        TransformInstance {
            g: Guarded {
                store,
                deadline_ticks,
                poisoned: false,
            },
            b,
        }
    }

    pub(super) async fn describe(
        &mut self,
    ) -> Result<(types::PluginInfo, Vec<types::ConfigKey>), CallError> {
        let i = self.b.wharf_connector_record_transform();
        let info = self.g.call(async |s| i.call_info(s).await).await?;
        let spec = self.g.call(async |s| i.call_config_spec(s).await).await?;
        Ok((info, spec))
    }

    pub(super) async fn validate(
        &mut self,
        config: &[(String, String)],
    ) -> Result<Vec<types::ConfigError>, CallError> {
        let i = self.b.wharf_connector_record_transform();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_validate(s, &config).await)
            .await
    }

    pub async fn open(&mut self, config: &[(String, String)]) -> Result<(), CallError> {
        let i = self.b.wharf_connector_record_transform();
        let config = config.to_vec();
        self.g
            .call(async |s| i.call_open(s, &config).await)
            .await?
            .map_err(plugin_err)
    }

    pub async fn apply(&mut self, records: &[Record]) -> Result<Vec<Record>, CallError> {
        Ok(self
            .apply_batch(&RecordBatch::encode(records))
            .await?
            .to_records())
    }

    pub async fn apply_batch(&mut self, batch: &RecordBatch) -> Result<RecordBatch, CallError> {
        let i = self.b.wharf_connector_record_transform();
        let out = self
            .g
            .call(async |s| i.call_apply(s, batch.wit()).await)
            .await?
            .map_err(plugin_err)?;
        checked(out)
    }
}
