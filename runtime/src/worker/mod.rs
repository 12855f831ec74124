//! The standalone worker: validates every connector before anything starts,
//! splits connectors into tasks, wires sources to sinks (in-process, through
//! bounded queues, when no Kafka is configured) and stops gracefully.

mod ack;
mod bus;
mod connector;
mod converters;
mod errors;
mod grants;
mod lifecycle;
mod retry;
mod sink_task;
mod source_task;
pub mod status;
mod supervisor;
mod transforms;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{int_key, ConfigError, ConnectorConfig};
use crate::kafka::{KafkaHub, TopicCreation};
use crate::plugin::{Limits, Plugin, PluginHost, PluginKind};

pub use ack::BatchAck;
pub use bus::Bus;
pub use connector::{start_connector, task_configs, ConnectorRun, WorkerContext};
pub use lifecycle::Target;
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
#[derive(Clone)]
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

impl Prepared {
    pub fn topics(&self) -> &[String] {
        &self.topics
    }
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
    // Keys the plugin types `password` are secrets too: no error quotes them.
    let marked;
    let c = match &plugin {
        Some(p) => {
            let mut m = c.clone();
            m.secret_keys.extend(
                p.spec
                    .iter()
                    .filter(|k| k.type_ == crate::plugin::ConfigType::Password)
                    .map(|k| k.name.clone()),
            );
            marked = m;
            &marked
        }
        None => c,
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

/// Connectors started together without a herder (benchmarks, embedding):
/// no REST, no changes while running.
pub struct Running {
    pub status: StatusBoard,
    ctx: WorkerContext,
    shutdown: tokio::sync::watch::Sender<bool>,
    runs: Vec<(PluginKind, ConnectorRun)>,
}

/// Starts validated connectors, sinks first so no source publishes before
/// its in-process readers exist.
pub async fn start(
    mut prepared: Vec<Prepared>,
    offsets: impl Into<crate::offsets::OffsetStore>,
    kafka: Option<Arc<KafkaHub>>,
) -> Result<Running, WorkerError> {
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let ctx = WorkerContext {
        offsets: offsets.into(),
        kafka,
        status: StatusBoard::default(),
        bus: Default::default(),
        shutdown: shutdown_rx,
    };
    prepared.sort_by_key(|p| p.plugin.kind() != PluginKind::Sink);
    if let Some(hub) = &ctx.kafka {
        fence_exactly_once(&prepared, hub).await?;
    }
    let mut runs = Vec::new();
    for p in &prepared {
        runs.push((
            p.plugin.kind(),
            start_connector(p, &ctx, Target::Running, None).await?,
        ));
    }
    Ok(Running {
        status: ctx.status.clone(),
        ctx,
        shutdown,
        runs,
    })
}

impl Running {
    /// Sources stop first (waiting for acknowledgements), then sinks.
    pub async fn stop(self) {
        let (sinks, sources): (Vec<_>, Vec<_>) = self
            .runs
            .into_iter()
            .partition(|(k, _)| *k == PluginKind::Sink);
        for (_, r) in sources.into_iter().chain(sinks) {
            r.stop(&self.ctx).await;
        }
        let _ = self.shutdown.send(true);
    }
}
