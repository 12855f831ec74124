//! The standalone worker: validates every connector before anything starts,
//! splits connectors into tasks, wires sources to sinks (in-process, through
//! bounded queues, when no Kafka is configured) and stops gracefully.

mod ack;
mod bus;
mod converters;
mod errors;
mod grants;
mod retry;
mod sink_task;
mod source_task;
pub mod status;
mod supervisor;
mod transforms;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{int_key, ConfigError, ConnectorConfig};
use crate::kafka::{KafkaHub, TopicCreation};
use crate::offsets::OffsetStore;
use crate::plugin::{Limits, Plugin, PluginHost, PluginKind, TaskId};

pub use ack::BatchAck;
pub use bus::Bus;
pub use status::{State, StatusBoard, TaskStatus};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{} invalid config value(s); nothing was started:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ConfigError>),
    #[error("connector '{connector}': {message}")]
    Connector { connector: String, message: String },
}

/// A connector that passed validation, with everything needed to start it.
pub struct Prepared {
    pub config: ConnectorConfig,
    pub plugin: Arc<Plugin>,
    transforms: Arc<Vec<transforms::TransformSpec>>,
    tasks_max: u32,
    limits: Limits,
    batch_max: u32,
    commit_interval: Duration,
    shutdown_timeout: Duration,
    topics: Vec<String>,
    topic_creation: Option<TopicCreation>,
    errors: errors::ErrorPolicy,
    restart: supervisor::RestartPolicy,
    exactly_once: ExactlyOnce,
}

/// Connect's `exactly.once.support` for a source connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExactlyOnce {
    /// At-least-once (the key is absent).
    Off,
    /// Exactly-once when offsets live in Kafka, else at-least-once.
    Requested,
    /// Exactly-once, or the connector does not start.
    Required,
}

/// Validates one connector: host-owned keys, then the plugin's own
/// `validate`, then each transform's. All problems are collected.
pub async fn prepare(host: &PluginHost, c: &ConnectorConfig) -> Result<Prepared, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let plugin = match c.class() {
        None => {
            errors.push(c.key_error(
                "connector.class",
                "required: a built-in plugin name or a path to a .wasm component",
            ));
            None
        }
        Some(class) => match host.load(class).await {
            Ok(p) if p.kind() == PluginKind::Transform => {
                errors.push(c.key_error(
                    "connector.class",
                    format!("'{class}' is a transform; a connector must be a source or a sink"),
                ));
                None
            }
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(c.key_error("connector.class", e.to_string()));
                None
            }
        },
    };
    let mut num = |key: &str, default: i64, min: i64| match int_key(c, key, default, min) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            default
        }
    };
    let tasks_max = num("tasks.max", 1, 1) as u32;
    let call_timeout = Duration::from_millis(num("plugin.call.timeout.ms", 30_000, 10) as u64);
    let max_memory_bytes = num("plugin.memory.max.bytes", 512 << 20, 1 << 20) as usize;
    let batch_max = num("batch.max.records", 1000, 1) as u32;
    let commit_interval = Duration::from_millis(num("offset.flush.interval.ms", 5_000, 1) as u64);
    let shutdown_timeout =
        Duration::from_millis(num("task.shutdown.graceful.timeout.ms", 5_000, 0) as u64);
    let topics: Vec<String> = c
        .get("topics")
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let topic_creation = TopicCreation::from_connector(c).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let restart = supervisor::RestartPolicy::from_connector(c).unwrap_or_else(|e| {
        errors.extend(e);
        supervisor::RestartPolicy {
            enabled: false,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
            max_attempts: None,
        }
    });
    let exactly_once = match c.get("exactly.once.support").map(str::trim) {
        None => ExactlyOnce::Off,
        Some("requested") => ExactlyOnce::Requested,
        Some("required") => ExactlyOnce::Required,
        Some(v) => {
            errors.push(c.key_error(
                "exactly.once.support",
                format!("'{v}' is not one of: requested, required"),
            ));
            ExactlyOnce::Off
        }
    };
    match c.get("transaction.boundary").map(str::trim) {
        None | Some("poll") => {}
        Some(v) => errors.push(c.key_error(
            "transaction.boundary",
            format!(
                "'{v}' is not supported: Wharf commits one transaction per polled batch ('poll')"
            ),
        )),
    }
    if let Err(e) = converters::Converters::from_config(c, &crate::config::WorkerConfig::default())
    {
        errors.push(e);
    }
    let error_policy = errors::ErrorPolicy::from_connector(c).unwrap_or_else(|e| {
        errors.push(e);
        errors::ErrorPolicy::default()
    });
    let (c, fs_dirs) = match grants::filesystem(c) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            (c.clone(), Vec::new())
        }
    };
    let c = &c;
    let elasticsearch = match crate::plugin::elasticsearch::EsGrant::from_config(|k| {
        c.get(k).map(str::to_string)
    }) {
        Ok(g) => g.map(Arc::new),
        Err((key, m)) => {
            errors.push(c.key_error(key, m));
            None
        }
    };
    let s3 = match crate::plugin::s3::S3Grant::from_config(|k| c.get(k).map(str::to_string)) {
        Ok(g) => g.map(Arc::new),
        Err((key, m)) => {
            errors.push(c.key_error(key, m));
            None
        }
    };
    let postgres =
        match crate::plugin::postgres::PgGrant::from_config(|k| c.get(k).map(str::to_string)) {
            Ok(g) => g.map(Arc::new),
            Err((key, m)) => {
                errors.push(c.key_error(key, m));
                None
            }
        };
    let limits = Limits {
        call_timeout,
        max_memory_bytes,
        fs_dirs: Arc::new(fs_dirs),
        // Only sinks import the capability; a source or transform never gets it.
        elasticsearch: elasticsearch.filter(|_| {
            plugin
                .as_ref()
                .is_some_and(|p| p.kind() == PluginKind::Sink)
        }),
        // Transforms never get a bucket (their limits drop it).
        s3,
        // Only sources import the database capability.
        postgres: postgres.filter(|_| {
            plugin
                .as_ref()
                .is_some_and(|p| p.kind() == PluginKind::Source)
        }),
    };
    let transforms = match transforms::specs(host, c).await {
        Ok(t) => t,
        Err(WorkerError::Config(e)) => {
            errors.push(e);
            Vec::new()
        }
        Err(e) => {
            errors.push(c.key_error("transforms", e.to_string()));
            Vec::new()
        }
    };
    for t in &transforms {
        match t.plugin.validate(&t.config).await {
            Ok(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|(k, m)| c.key_error(&format!("transforms.{}.{k}", t.alias), m)),
            ),
            Err(e) => {
                errors.push(c.key_error(&format!("transforms.{}.type", t.alias), e.to_string()))
            }
        }
    }
    if let Some(p) = &plugin {
        if p.kind() == PluginKind::Sink && topics.is_empty() {
            errors.push(c.key_error("topics", "required for a sink: the topics to read"));
        }
        match p.validate(&c.pairs()).await {
            Ok(problems) => errors.extend(problems.into_iter().map(|(k, m)| c.key_error(&k, m))),
            Err(e) => errors.push(c.key_error("connector.class", e.to_string())),
        }
    }
    match plugin {
        Some(plugin) if errors.is_empty() => Ok(Prepared {
            config: c.clone(),
            plugin,
            transforms: Arc::new(transforms),
            tasks_max,
            limits,
            batch_max,
            commit_interval,
            shutdown_timeout,
            topics,
            topic_creation,
            errors: error_policy,
            restart,
            exactly_once,
        }),
        _ => Err(errors),
    }
}

/// Validates every connector; on any problem returns them all.
pub async fn prepare_all(
    host: &PluginHost,
    configs: &[ConnectorConfig],
) -> Result<Vec<Prepared>, WorkerError> {
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    let mut prepared = Vec::new();
    for c in configs {
        if !names.insert(c.name.clone()) {
            errors.push(c.key_error("name", "another connector already uses this name"));
            continue;
        }
        match prepare(host, c).await {
            Ok(p) => prepared.push(p),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(prepared)
    } else {
        Err(WorkerError::Invalid(errors))
    }
}

/// A running set of connectors.
pub struct Running {
    pub status: StatusBoard,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    bus: Option<Arc<Bus>>,
}

impl Running {
    /// Graceful stop: sources stop polling and commit what was acknowledged;
    /// sinks drain their queues, flush and close.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.bus = None;
        while self.tasks.join_next().await.is_some() {}
    }

    /// True once every task has ended (stopped or failed).
    pub fn finished(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for any one task to end; `None` when none are left.
    pub async fn join_next(&mut self) -> Option<()> {
        self.tasks.join_next().await.map(|_| ())
    }
}

fn split_err(c: &ConnectorConfig, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::Connector {
        connector: c.name.clone(),
        message: format!("splitting into tasks: {e}"),
    }
}

/// Exactly-once sources: before offsets are read, fences every producer a
/// killed worker may have left mid-transaction for these connectors' tasks,
/// which aborts the open transactions (else `read_committed` readers wait
/// for the transaction timeout).
pub async fn fence_exactly_once(prepared: &[Prepared], hub: &KafkaHub) -> Result<(), WorkerError> {
    for p in prepared
        .iter()
        .filter(|p| p.exactly_once != ExactlyOnce::Off && p.plugin.kind() == PluginKind::Source)
    {
        for task in 0..p.tasks_max as i32 {
            hub.transactional_producer(&p.config, task)
                .await
                .map_err(|e| WorkerError::Connector {
                    connector: p.config.name.clone(),
                    message: format!("fencing task {task}: {e}"),
                })?;
        }
    }
    Ok(())
}

/// Starts validated connectors: sinks first, so sources never publish into
/// queues that do not exist yet. With `kafka`, sources write to Kafka and
/// sinks read from it; without, they meet in-process.
pub async fn start(
    prepared: Vec<Prepared>,
    offsets: impl Into<OffsetStore>,
    kafka: Option<Arc<KafkaHub>>,
) -> Result<Running, WorkerError> {
    let offsets = offsets.into();
    let status = StatusBoard::default();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut bus = Bus::default();

    let mut sources = Vec::new();
    for p in prepared {
        let mut config = p.config.pairs();
        config.push(("name".into(), p.config.name.clone()));
        let scratch = TaskId {
            connector: p.config.name.clone(),
            task: -1,
        };
        let task_configs = match p.plugin.kind() {
            PluginKind::Source => p
                .plugin
                .source(scratch, p.limits.clone())
                .await
                .map_err(|e| split_err(&p.config, e))?
                .task_configs(&config, p.tasks_max)
                .await
                .map_err(|e| split_err(&p.config, e))?,
            _ => p
                .plugin
                .sink(scratch, p.limits.clone())
                .await
                .map_err(|e| split_err(&p.config, e))?
                .task_configs(&config, p.tasks_max)
                .await
                .map_err(|e| split_err(&p.config, e))?,
        };
        let task_configs: Vec<_> = task_configs
            .into_iter()
            .take(p.tasks_max as usize)
            .collect();
        tracing::info!(connector = %p.config.name, plugin = %p.plugin.info.name, tasks = task_configs.len(), "starting connector");
        let exactly_once = match (p.exactly_once, offsets.kafka_topic(), &kafka) {
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
        let default_worker = crate::config::WorkerConfig::default();
        let worker_config = kafka.as_ref().map_or(&default_worker, |h| &h.worker);
        let converters = converters::Converters::from_config(&p.config, worker_config)?;
        if kafka.is_none() && p.errors.dlq_topic.is_some() {
            return Err(WorkerError::Config(p.config.key_error(
                    "errors.deadletterqueue.topic.name",
                "a dead letter topic needs Kafka: run with a worker config that sets bootstrap.servers",
            )));
        }
        if p.plugin.kind() == PluginKind::Sink {
            let n = task_configs.len();
            let mut inputs: Vec<sink_task::SinkInput> = match &kafka {
                None => bus
                    .subscribe(&p.config.name, &p.topics, n)
                    .into_iter()
                    .map(sink_task::SinkInput::Bus)
                    .collect(),
                Some(hub) => (0..n)
                    .map(|_| sink_task::SinkInput::Kafka {
                        hub: hub.clone(),
                        connector: p.config.clone(),
                        topics: p.topics.clone(),
                        batch_max: p.batch_max as usize,
                    })
                    .collect(),
            };
            for (i, cfg) in task_configs.into_iter().enumerate() {
                let input = inputs.remove(0);
                let id = TaskId {
                    connector: p.config.name.clone(),
                    task: i as i32,
                };
                let counters = status.register(&id.connector, id.task);
                let spec = sink_task::SinkTaskSpec {
                    id,
                    plugin: p.plugin.clone(),
                    config: cfg,
                    transforms: p.transforms.clone(),
                    limits: p.limits.clone(),
                    flush_interval: p.commit_interval.min(Duration::from_secs(1)),
                    errors: p.errors.clone(),
                    converters,
                };
                let mut sup = supervisor::Supervisor::new(
                    &spec.id.connector,
                    spec.id.task,
                    p.restart.clone(),
                    status.clone(),
                    counters.clone(),
                    shutdown_rx.clone(),
                );
                let (status, shutdown_rx) = (status.clone(), shutdown_rx.clone());
                let mut input = input;
                tasks.spawn(async move {
                    loop {
                        let started = std::time::Instant::now();
                        let r = sink_task::run(
                            &spec,
                            &mut input,
                            &status,
                            &counters,
                            shutdown_rx.clone(),
                        )
                        .await;
                        let again = match r {
                            Ok(()) => false,
                            Err(trace) => sup.retry(trace, started).await,
                        };
                        if !again {
                            break;
                        }
                    }
                });
            }
        } else {
            sources.push((p, task_configs, exactly_once, converters));
        }
    }
    for (topic, sinks) in bus.subscribers() {
        tracing::info!(topic = %topic, sinks = ?sinks, "in-process route");
    }
    let bus = Arc::new(bus);
    for (p, task_configs, exactly_once, converters) in sources {
        let producer = match &kafka {
            Some(hub) => Some(
                hub.producer_for(&p.config)
                    .map_err(|e| WorkerError::Connector {
                        connector: p.config.name.clone(),
                        message: e.to_string(),
                    })?,
            ),
            None => None,
        };
        for (i, cfg) in task_configs.into_iter().enumerate() {
            let dest = match (&kafka, &producer) {
                (Some(hub), Some(producer)) => source_task::Destination::Kafka {
                    hub: hub.clone(),
                    producer: producer.clone(),
                    creation: p.topic_creation.clone(),
                    exactly_once: exactly_once.clone(),
                    connector: Box::new(p.config.clone()),
                },
                _ => source_task::Destination::Bus(bus.clone()),
            };
            let id = TaskId {
                connector: p.config.name.clone(),
                task: i as i32,
            };
            let counters = status.register(&id.connector, id.task);
            let spec = source_task::SourceTaskSpec {
                id,
                plugin: p.plugin.clone(),
                config: cfg,
                transforms: p.transforms.clone(),
                limits: p.limits.clone(),
                batch_max: p.batch_max,
                commit_interval: p.commit_interval,
                shutdown_timeout: p.shutdown_timeout,
                errors: p.errors.clone(),
                converters,
            };
            let mut sup = supervisor::Supervisor::new(
                &spec.id.connector,
                spec.id.task,
                p.restart.clone(),
                status.clone(),
                counters.clone(),
                shutdown_rx.clone(),
            );
            let (status, offsets, shutdown_rx) =
                (status.clone(), offsets.clone(), shutdown_rx.clone());
            tasks.spawn(async move {
                loop {
                    let started = std::time::Instant::now();
                    let r = source_task::run(
                        &spec,
                        &dest,
                        &offsets,
                        &status,
                        &counters,
                        shutdown_rx.clone(),
                    )
                    .await;
                    let again = match r {
                        Ok(()) => false,
                        Err(trace) => sup.retry(trace, started).await,
                    };
                    if !again {
                        break;
                    }
                }
            });
        }
    }
    Ok(Running {
        status,
        shutdown,
        tasks,
        bus: Some(bus),
    })
}
