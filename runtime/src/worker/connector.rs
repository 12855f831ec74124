//! Starting one validated connector: split it into tasks, wire each task to
//! its input or destination (Kafka, or the in-process bus), and run every
//! task under its own control so pause, resume and restart reach one
//! connector (or one task) without touching the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kafka::KafkaHub;
use crate::offsets::OffsetStore;
use crate::plugin::{PluginKind, TaskId};

use super::bus::Bus;
use super::lifecycle::{Control, Lifecycle, Target};
use super::status::{State, StatusBoard};
use super::{converters, sink_task, source_task, supervisor, ExactlyOnce, Prepared, WorkerError};

/// What every connector of one worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    pub offsets: OffsetStore,
    pub kafka: Option<Arc<KafkaHub>>,
    pub status: StatusBoard,
    pub bus: Arc<Bus>,
    /// Worker-wide graceful stop.
    pub shutdown: watch::Receiver<bool>,
}

/// One task's control and the future running it.
struct TaskHandle {
    control: watch::Sender<Control>,
    join: JoinHandle<()>,
}

/// What starting any one task of a connector needs, worked out once.
struct Plan {
    prepared: Prepared,
    converters: converters::Converters,
    exactly_once: Option<String>,
    producer: Option<Arc<crate::kafka::SourceProducer>>,
    /// In-process sinks: each task's queue, taken when the task starts.
    bus_inputs: Vec<Option<tokio::sync::mpsc::Receiver<super::bus::Delivery>>>,
}

/// One connector's tasks on this worker (all of them standalone; the
/// ones whose slots this worker owns in a group), running or paused.
pub struct ConnectorRun {
    pub name: String,
    /// The config of every task, as the connector split it.
    pub task_configs: Vec<Vec<(String, String)>>,
    tasks: BTreeMap<usize, TaskHandle>,
    sink_on_bus: bool,
    plan: Plan,
}

impl ConnectorRun {
    fn set_target(&self, target: Target) {
        for t in self.tasks.values() {
            t.control.send_modify(|c| c.target = target);
        }
    }

    pub fn pause(&self) {
        self.set_target(Target::Paused);
    }

    pub fn resume(&self) {
        self.set_target(Target::Running);
    }

    /// Restarts one task; false when it does not run here.
    pub fn restart_task(&self, task: usize) -> bool {
        match self.tasks.get(&task) {
            Some(t) => {
                t.control.send_modify(|c| c.restarts += 1);
                true
            }
            None => false,
        }
    }

    /// How many tasks the connector has (wherever they run).
    pub fn task_count(&self) -> usize {
        self.task_configs.len()
    }

    /// The tasks running on this worker.
    pub fn local_tasks(&self) -> BTreeSet<usize> {
        self.tasks.keys().copied().collect()
    }

    /// Starts task `task` here (a slot this worker gained).
    pub fn add_task(&mut self, ctx: &WorkerContext, task: usize, target: Target) {
        if task < self.task_configs.len() && !self.tasks.contains_key(&task) {
            let handle = spawn_task(&mut self.plan, ctx, task, &self.task_configs[task], target);
            self.tasks.insert(task, handle);
        }
    }

    /// Stops task `task` here gracefully (a slot this worker lost).
    pub async fn remove_task(&mut self, ctx: &WorkerContext, task: usize) {
        if let Some(t) = self.tasks.remove(&task) {
            t.control.send_modify(|c| c.target = Target::Stopped);
            let _ = t.join.await;
            ctx.status.forget_task(&self.name, task as i32);
        }
    }

    /// Stops every task gracefully (sinks flush and commit, sources commit
    /// what was acknowledged) and waits for them.
    pub async fn stop(mut self, ctx: &WorkerContext) {
        self.set_target(Target::Stopped);
        for (_, t) in std::mem::take(&mut self.tasks) {
            let _ = t.join.await;
        }
        if self.sink_on_bus {
            ctx.bus.unsubscribe(&self.name);
        }
        ctx.status.forget(&self.name);
    }

    /// Forgets tasks that have ended; returns how many are still alive.
    pub fn reap(&mut self) -> usize {
        self.tasks.retain(|_, t| !t.join.is_finished());
        self.tasks.len()
    }
}

fn connector_err(p: &Prepared, what: &str, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::Connector {
        connector: p.config.name.clone(),
        message: format!("{what}: {e}"),
    }
}

/// Splits the connector into at most `tasks.max` task configs.
pub async fn task_configs(p: &Prepared) -> Result<Vec<Vec<(String, String)>>, WorkerError> {
    let mut config = p.config.pairs();
    config.push(("name".into(), p.config.name.clone()));
    let scratch = TaskId {
        connector: p.config.name.clone(),
        task: -1,
    };
    let split_err = |e: &dyn std::fmt::Display| connector_err(p, "splitting into tasks", e);
    let configs = match p.plugin.kind() {
        PluginKind::Source => p
            .plugin
            .source(scratch, p.limits.clone())
            .await
            .map_err(|e| split_err(&e))?
            .task_configs(&config, p.tasks_max)
            .await
            .map_err(|e| split_err(&e))?,
        _ => p
            .plugin
            .sink(scratch, p.limits.clone())
            .await
            .map_err(|e| split_err(&e))?
            .task_configs(&config, p.tasks_max)
            .await
            .map_err(|e| split_err(&e))?,
    };
    Ok(configs.into_iter().take(p.tasks_max as usize).collect())
}

/// Starts one validated connector, paused when `target` says so: all its
/// tasks, or only those in `only` (the slots this worker owns in a group).
pub async fn start_connector(
    p: &Prepared,
    ctx: &WorkerContext,
    target: Target,
    only: Option<&BTreeSet<usize>>,
) -> Result<ConnectorRun, WorkerError> {
    let kafka = &ctx.kafka;
    let default_worker = crate::config::WorkerConfig::default();
    let worker_config = kafka.as_ref().map_or(&default_worker, |h| &h.worker);
    let converters = converters::Converters::from_config(&p.config, worker_config)?;
    // A sink's output folder (and file) may not exist on a fresh checkout;
    // it must before any instance is granted it.
    let sink_file = (p.plugin.kind() == PluginKind::Sink)
        .then(|| p.config.get("file"))
        .flatten();
    super::grants::materialize(&p.limits.fs_dirs, sink_file)
        .map_err(|e| connector_err(p, "creating its granted folder", e))?;
    let mut task_configs = task_configs(p).await?;
    if p.plugin.kind() == PluginKind::Source {
        for cfg in &mut task_configs {
            converters.tell_source(cfg);
        }
    }
    tracing::info!(connector = %p.config.name, plugin = %p.plugin.info.name, tasks = task_configs.len(), "starting connector");
    let exactly_once = match (p.exactly_once, ctx.offsets.kafka_topic(), kafka) {
        (ExactlyOnce::Off, _, _) => None,
        (_, Some(topic), Some(_)) => Some(topic.to_string()),
        (ExactlyOnce::Requested, _, _) => {
            tracing::warn!(connector = %p.config.name, "exactly-once requested, but offsets are not in Kafka: running at-least-once");
            None
        }
        (ExactlyOnce::Required, _, _) => {
            return Err(WorkerError::Config(p.config.key_error(
                "exactly.once.support",
                "'required' needs Kafka and offsets in Kafka (worker config: bootstrap.servers and offset.storage: kafka)",
            )))
        }
    };
    if kafka.is_none() && p.errors.dlq_topic.is_some() {
        return Err(WorkerError::Config(p.config.key_error(
            "errors.deadletterqueue.topic.name",
            "a dead letter topic needs Kafka: run with a worker config that sets bootstrap.servers",
        )));
    }
    let n = task_configs.len();
    let sink_on_bus = p.plugin.kind() == PluginKind::Sink && kafka.is_none();
    let bus_inputs = if sink_on_bus {
        ctx.bus
            .subscribe(&p.config.name, &p.topics, n)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        Vec::new()
    };
    let producer = match kafka {
        Some(hub) if p.plugin.kind() == PluginKind::Source => Some(
            hub.producer_for(&p.config)
                .map_err(|e| connector_err(p, "producer", e))?,
        ),
        _ => None,
    };
    let mut run = ConnectorRun {
        name: p.config.name.clone(),
        task_configs,
        tasks: BTreeMap::new(),
        sink_on_bus,
        plan: Plan {
            prepared: p.clone(),
            converters,
            exactly_once,
            producer,
            bus_inputs,
        },
    };
    for i in 0..n {
        if only.is_none_or(|o| o.contains(&i)) {
            run.add_task(ctx, i, target);
        }
    }
    Ok(run)
}

fn spawn_task(
    plan: &mut Plan,
    ctx: &WorkerContext,
    i: usize,
    cfg: &[(String, String)],
    target: Target,
) -> TaskHandle {
    let p = &plan.prepared;
    let id = TaskId {
        connector: p.config.name.clone(),
        task: i as i32,
    };
    let counters = ctx.status.register(&id.connector, id.task);
    let (control, control_rx) = watch::channel(Control::new(target));
    if target == Target::Paused {
        ctx.status.set(&id.connector, id.task, State::Paused, None);
    }
    let sup = supervisor::Supervisor::new(
        &id.connector,
        id.task,
        p.restart.clone(),
        ctx.status.clone(),
        counters.clone(),
        ctx.shutdown.clone(),
    );
    let is_source = p.plugin.kind() == PluginKind::Source;
    let mut life = Lifecycle::new(
        &id.connector,
        id.task,
        control_rx,
        ctx.shutdown.clone(),
        ctx.status.clone(),
        sup,
        is_source,
    );
    let status = ctx.status.clone();
    // For cleaning secrets out of failure traces.
    let config = p.config.clone();
    let join = if is_source {
        let dest = match (&ctx.kafka, &plan.producer) {
            (Some(hub), Some(producer)) => source_task::Destination::Kafka {
                hub: hub.clone(),
                producer: producer.clone(),
                creation: p.topic_creation.clone(),
                exactly_once: plan.exactly_once.clone(),
                connector: Box::new(p.config.clone()),
            },
            _ => source_task::Destination::Bus(ctx.bus.clone()),
        };
        let spec = source_task::SourceTaskSpec {
            id,
            plugin: p.plugin.clone(),
            config: cfg.to_vec(),
            transforms: p.transforms.clone(),
            limits: p.limits.clone(),
            batch_max: p.batch_max,
            commit_interval: p.commit_interval,
            shutdown_timeout: p.shutdown_timeout,
            errors: p.errors.clone(),
            converters: plan.converters,
        };
        let offsets = ctx.offsets.clone();
        tokio::spawn(async move {
            while let Some(signals) = life.runnable().await {
                let started = Instant::now();
                let run = source_task::run(&spec, &dest, &offsets, &status, &counters, signals);
                let r = guarded(run, &status, &spec.id, &config).await;
                if !life.again(r, started).await {
                    break;
                }
            }
        })
    } else {
        let mut input = match (
            &ctx.kafka,
            plan.bus_inputs.get_mut(i).and_then(Option::take),
        ) {
            (Some(hub), _) => sink_task::SinkInput::Kafka {
                hub: hub.clone(),
                connector: p.config.clone(),
                topics: p.topics.clone(),
                batch_max: p.batch_max as usize,
            },
            (None, Some(rx)) => sink_task::SinkInput::Bus(rx),
            // A bus queue is taken once; a task restarted in place keeps it.
            (None, None) => {
                let (_, rx) = tokio::sync::mpsc::channel(1);
                sink_task::SinkInput::Bus(rx)
            }
        };
        let spec = sink_task::SinkTaskSpec {
            id,
            plugin: p.plugin.clone(),
            config: cfg.to_vec(),
            transforms: p.transforms.clone(),
            limits: p.limits.clone(),
            flush_interval: p.commit_interval.min(Duration::from_secs(1)),
            errors: p.errors.clone(),
            converters: plan.converters,
        };
        tokio::spawn(async move {
            while let Some(signals) = life.runnable().await {
                let started = Instant::now();
                let run = sink_task::run(&spec, &mut input, &status, &counters, signals.stop);
                let r = guarded(run, &status, &spec.id, &config).await;
                if !life.again(r, started).await {
                    break;
                }
            }
        })
    };
    TaskHandle { control, join }
}

/// Runs one incarnation of a task and turns a panic in it into a failure,
/// so the task shows FAILED with the panic's message and its supervisor
/// restarts it (a panicking future would otherwise end the spawned task with
/// the status left at RUNNING).
///
/// A failure's trace is also cleaned of the connector's secret values (a
/// plugin's error may quote its password) before it stays on the board.
async fn guarded(
    run: impl std::future::Future<Output = Result<(), String>>,
    status: &StatusBoard,
    id: &TaskId,
    config: &crate::config::ConnectorConfig,
) -> Result<(), String> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(Err(trace)) => {
            let clean = config.scrub(&trace);
            if clean != trace {
                status.set(&id.connector, id.task, State::Failed, Some(clean.clone()));
            }
            Err(clean)
        }
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let trace = config.scrub(&format!("the task panicked: {what}"));
            status.set(&id.connector, id.task, State::Failed, Some(trace.clone()));
            tracing::error!(connector = %id.connector, task = id.task, "task FAILED: {trace}");
            Err(trace)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_failed_with_its_message() {
        let status = StatusBoard::default();
        let id = TaskId {
            connector: "c".into(),
            task: 0,
        };
        status.register("c", 0);
        status.set("c", 0, State::Running, None);
        let config = crate::config::ConnectorConfig {
            name: "c".into(),
            config: [("database.password".to_string(), "hunter2-pw".to_string())]
                .into_iter()
                .collect(),
            origin: "test".into(),
            secret_keys: Default::default(),
        };
        let r = guarded(
            async {
                if id.task == 0 {
                    panic!("index out of bounds");
                }
                Ok(())
            },
            &status,
            &id,
            &config,
        )
        .await;
        let trace = r.expect_err("a panic is a failure");
        assert!(trace.contains("index out of bounds"), "{trace}");
        let task = status.task("c", 0).expect("task status");
        assert_eq!(task.state, State::Failed);
        assert!(task.trace.unwrap_or_default().contains("panicked"));
        assert_eq!(
            guarded(async { Ok(()) }, &status, &id, &config).await,
            Ok(())
        );
        let leaked = guarded(
            async { Err("open: password 'hunter2-pw' refused".to_string()) },
            &status,
            &id,
            &config,
        )
        .await
        .expect_err("fails");
        assert!(!leaked.contains("hunter2-pw"), "{leaked}");
        let shown = status
            .task("c", 0)
            .and_then(|t| t.trace)
            .unwrap_or_default();
        assert!(!shown.contains("hunter2-pw"), "{shown}");
    }
}
