//! The herder (Connect's name): the one place that changes which connectors
//! run on this worker. The REST API and `wharf run` both go through it, so
//! a connector created from YAML and one POSTed over HTTP behave alike.

mod cluster;
mod control;
pub mod folder;
mod offsets;
mod plugins;
pub mod shapes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use crate::cluster::Cluster;
use crate::config::{ConfigError, ConnectorConfig, HIDDEN};
use crate::plugin::{ConfigType, PluginHost, PluginKind};
use crate::worker::{
    self, start_connector, ConnectorRun, Prepared, State, Target, WorkerContext, WorkerError,
};

pub use shapes::{ConnectorInfo, ConnectorState, ConnectorStatus, TaskState};

#[derive(Debug, thiserror::Error)]
pub enum HerderError {
    #[error("Connector {0} not found")]
    NotFound(String),
    #[error("{0}")]
    NotFoundOther(String),
    #[error("Connector {0} already exists")]
    Exists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Connector configuration is invalid and contains the following {} error(s):\n{}\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("{0}")]
    Internal(String),
}

struct Entry {
    prepared: Prepared,
    target: Target,
    run: Option<ConnectorRun>,
    /// Why the connector itself could not start (its tasks never ran).
    failure: Option<String>,
    /// In a group: what of the configs topic this entry already applied.
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    raw: Option<BTreeMap<String, String>>,
    restarts: u64,
    task_restarts: BTreeMap<i32, u64>,
}

pub struct Herder {
    host: Arc<PluginHost>,
    ctx: WorkerContext,
    shutdown: watch::Sender<bool>,
    worker_id: std::sync::RwLock<String>,
    connectors: Mutex<BTreeMap<String, Entry>>,
    /// What references configs from the API may resolve (the operator's
    /// `config.providers`); none until the worker config says.
    providers: std::sync::RwLock<crate::config::ProviderPolicy>,
    /// `connector.client.config.override.policy` of the worker config.
    overrides: std::sync::RwLock<crate::config::OverridePolicy>,
    /// Times this worker's set of running tasks changed.
    rebalances: AtomicU64,
    /// Distributed mode: the group this worker belongs to.
    cluster: Option<Arc<Cluster>>,
}

impl Herder {
    pub fn new(
        host: Arc<PluginHost>,
        offsets: crate::offsets::OffsetStore,
        kafka: Option<Arc<crate::kafka::KafkaHub>>,
    ) -> Arc<Self> {
        Self::build(host, offsets, kafka, None)
    }

    /// A member of a group of workers (`wharf worker`).
    pub fn distributed(
        host: Arc<PluginHost>,
        offsets: crate::offsets::OffsetStore,
        kafka: Arc<crate::kafka::KafkaHub>,
        cluster: Arc<Cluster>,
    ) -> Arc<Self> {
        Self::build(host, offsets, Some(kafka), Some(cluster))
    }

    fn build(
        host: Arc<PluginHost>,
        offsets: crate::offsets::OffsetStore,
        kafka: Option<Arc<crate::kafka::KafkaHub>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Self> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        Arc::new(Herder {
            host,
            ctx: WorkerContext {
                offsets,
                kafka,
                status: Default::default(),
                bus: Default::default(),
                shutdown: shutdown_rx,
            },
            shutdown,
            worker_id: std::sync::RwLock::new("127.0.0.1:8083".into()),
            connectors: Mutex::new(BTreeMap::new()),
            providers: Default::default(),
            overrides: Default::default(),
            rebalances: AtomicU64::new(0),
            cluster,
        })
    }

    /// The address this worker is known by in statuses (its REST address).
    pub fn set_worker_id(&self, id: String) {
        if let Ok(mut w) = self.worker_id.write() {
            *w = id;
        }
    }

    pub fn worker_id(&self) -> String {
        self.worker_id.read().map(|w| w.clone()).unwrap_or_default()
    }

    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Relaxed)
            + self
                .cluster
                .as_ref()
                .map_or(0, |c| c.rebalances.load(Ordering::Relaxed))
    }

    fn assignment_changed(&self) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    pub fn status_board(&self) -> &worker::StatusBoard {
        &self.ctx.status
    }

    pub fn plugin_host(&self) -> &PluginHost {
        &self.host
    }

    pub fn kafka(&self) -> Option<&Arc<crate::kafka::KafkaHub>> {
        self.ctx.kafka.as_ref()
    }

    /// Starts connectors validated together at startup: sinks first, so no
    /// source publishes before its in-process readers exist.
    pub async fn start_all(&self, mut prepared: Vec<Prepared>) -> Result<(), HerderError> {
        prepared.sort_by_key(|p| p.plugin.kind() != PluginKind::Sink);
        let mut map = self.connectors.lock().await;
        for mut p in prepared {
            self.mark_secrets(&mut p.config);
            self.fence(&p).await?;
            let run = start_connector(&p, &self.ctx, Target::Running, None).await?;
            map.insert(
                p.config.name.clone(),
                Entry {
                    prepared: p,
                    target: Target::Running,
                    run: Some(run),
                    failure: None,
                    seen: Seen::default(),
                },
            );
        }
        Ok(())
    }

    async fn fence(&self, p: &Prepared) -> Result<(), HerderError> {
        if let Some(hub) = &self.ctx.kafka {
            worker::fence_exactly_once(std::slice::from_ref(p), hub).await?;
        }
        Ok(())
    }

    /// Validates without starting anything; problems as 400 with every key.
    async fn prepare(&self, config: &ConnectorConfig) -> Result<Prepared, HerderError> {
        let policy = self.overrides.read().map(|p| *p).unwrap_or_default();
        let refused = policy.check(config);
        let prepared = worker::prepare(&self.host, config).await;
        match prepared {
            Ok(p) if refused.is_empty() => Ok(p),
            Ok(_) => Err(HerderError::Invalid(refused)),
            Err(mut e) => {
                e.extend(refused);
                Err(HerderError::Invalid(e))
            }
        }
    }

    /// Starts a prepared connector; a connector that cannot split into
    /// tasks is kept and shown FAILED, as Connect does.
    async fn launch(&self, prepared: Prepared, target: Target) -> Result<Entry, HerderError> {
        if target == Target::Stopped {
            return Ok(Entry {
                prepared,
                target,
                run: None,
                failure: None,
                seen: Seen::default(),
            });
        }
        self.fence(&prepared).await?;
        self.assignment_changed();
        let (run, failure) = match start_connector(&prepared, &self.ctx, target, None).await {
            Ok(run) => (Some(run), None),
            Err(e @ WorkerError::Connector { .. }) => {
                tracing::error!(connector = %prepared.config.name, "connector FAILED: {e}");
                (None, Some(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Entry {
            prepared,
            target,
            run,
            failure,
            seen: Seen::default(),
        })
    }

    /// Sets the operator's config provider policy for configs from the API.
    pub fn set_provider_policy(&self, policy: crate::config::ProviderPolicy) {
        if let Ok(mut p) = self.providers.write() {
            *p = policy;
        }
    }

    /// Sets which Kafka client overrides connectors may carry.
    pub fn set_override_policy(&self, policy: crate::config::OverridePolicy) {
        if let Ok(mut p) = self.overrides.write() {
            *p = policy;
        }
    }

    /// The policy configs from the API (and the configs topic) resolve under.
    pub fn provider_policy(&self) -> crate::config::ProviderPolicy {
        self.providers.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// How many connectors this worker knows, without waiting: `None` while
    /// a change holds the table (a stop that waits on its tasks), so a
    /// health probe never hangs behind one.
    pub fn connector_count_now(&self) -> Option<usize> {
        if let Some(c) = &self.cluster {
            return Some(c.records().len());
        }
        self.connectors.try_lock().ok().map(|m| m.len())
    }

    pub async fn names(&self) -> Vec<String> {
        if let Some(c) = &self.cluster {
            return c.records().into_keys().collect();
        }
        self.connectors.lock().await.keys().cloned().collect()
    }

    /// Keeps stored secrets where an update sends back the placeholder the
    /// API showed in their place.
    fn restore_hidden(config: &mut ConnectorConfig, previous: Option<&ConnectorConfig>) {
        let Some(prev) = previous else { return };
        for key in &prev.secret_keys {
            if config.get(key) == Some(HIDDEN) {
                if let Some(v) = prev.get(key) {
                    config.config.insert(key.clone(), v.to_string());
                    config.secret_keys.insert(key.clone());
                }
            }
        }
    }

    /// Marks password-typed and secret-looking keys, never shown again.
    fn mark_secrets(&self, config: &mut ConnectorConfig) {
        let looks_secret = crate::config::looks_secret;
        let typed: Vec<String> = config
            .class()
            .and_then(|c| self.host.loaded(c))
            .map(|p| {
                p.spec
                    .iter()
                    .filter(|k| k.type_ == ConfigType::Password)
                    .map(|k| k.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let keys: Vec<String> = config
            .config
            .keys()
            .filter(|k| looks_secret(k) || typed.contains(k))
            .cloned()
            .collect();
        config.secret_keys.extend(keys);
    }

    /// POST /connectors.
    pub async fn create(
        &self,
        config: ConnectorConfig,
        raw: BTreeMap<String, String>,
    ) -> Result<ConnectorInfo, HerderError> {
        if let Some(c) = &self.cluster {
            return Ok(self.cluster_put(c, config, raw, true).await?.1);
        }
        let mut map = self.connectors.lock().await;
        if map.contains_key(&config.name) {
            return Err(HerderError::Exists(config.name));
        }
        let mut prepared = self.prepare(&config).await?;
        self.mark_secrets(&mut prepared.config);
        let entry = self.launch(prepared, Target::Running).await?;
        let info = shapes::info(
            &entry.prepared,
            entry.run.as_ref().map_or(0, ConnectorRun::task_count),
        );
        map.insert(info.name.clone(), entry);
        Ok(info)
    }

    /// PUT /connectors/{name}/config: (created, info).
    pub async fn put_config(
        &self,
        mut config: ConnectorConfig,
        raw: BTreeMap<String, String>,
    ) -> Result<(bool, ConnectorInfo), HerderError> {
        if let Some(c) = &self.cluster {
            return self.cluster_put(c, config, raw, false).await;
        }
        let mut map = self.connectors.lock().await;
        let previous = map.get(&config.name).map(|e| e.prepared.config.clone());
        Self::restore_hidden(&mut config, previous.as_ref());
        let mut prepared = self.prepare(&config).await?;
        self.mark_secrets(&mut prepared.config);
        let target = match map.remove(&prepared.config.name) {
            Some(old) => {
                let target = old.target;
                if let Some(run) = old.run {
                    run.stop(&self.ctx).await;
                    self.assignment_changed();
                }
                target
            }
            None => Target::Running,
        };
        let created = previous.is_none();
        let entry = self.launch(prepared, target).await?;
        let info = shapes::info(
            &entry.prepared,
            entry.run.as_ref().map_or(0, ConnectorRun::task_count),
        );
        map.insert(info.name.clone(), entry);
        Ok((created, info))
    }

    pub async fn delete(&self, name: &str) -> Result<(), HerderError> {
        if let Some(c) = &self.cluster {
            return self.cluster_delete(c, name).await;
        }
        let mut map = self.connectors.lock().await;
        let entry = map
            .remove(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        if let Some(run) = entry.run {
            run.stop(&self.ctx).await;
            self.assignment_changed();
        }
        self.ctx.status.forget(name);
        tracing::info!(connector = name, "connector deleted");
        Ok(())
    }

    pub async fn info(&self, name: &str) -> Result<ConnectorInfo, HerderError> {
        let map = self.connectors.lock().await;
        let e = map
            .get(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        Ok(shapes::info(
            &e.prepared,
            e.run.as_ref().map_or(0, ConnectorRun::task_count),
        ))
    }

    /// The task configs, as GET /connectors/{name}/tasks shows them.
    pub async fn task_configs(
        &self,
        name: &str,
    ) -> Result<Vec<(i32, BTreeMap<String, String>)>, HerderError> {
        let map = self.connectors.lock().await;
        let e = map
            .get(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        let secret = &e.prepared.config.secret_keys;
        Ok(e.run
            .iter()
            .flat_map(|r| r.task_configs.iter().enumerate())
            .map(|(i, cfg)| {
                let cfg = cfg
                    .iter()
                    .map(|(k, v)| {
                        let v = if secret.contains(k) { HIDDEN } else { v };
                        (k.clone(), v.to_string())
                    })
                    .collect();
                (i as i32, cfg)
            })
            .collect())
    }

    pub async fn status(&self, name: &str) -> Result<ConnectorStatus, HerderError> {
        let map = self.connectors.lock().await;
        let e = map
            .get(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        Ok(self.status_of(name, e))
    }

    fn status_of(&self, name: &str, e: &Entry) -> ConnectorStatus {
        let worker_id = self.worker_id();
        let (state, trace) = match (&e.failure, e.target) {
            (Some(f), _) => (State::Failed, Some(f.clone())),
            (None, Target::Running) => (State::Running, None),
            (None, Target::Paused) => (State::Paused, None),
            (None, Target::Stopped) => (State::Stopped, None),
        };
        let tasks = match (&self.cluster, &e.run) {
            (Some(c), Some(run)) => (0..run.task_count() as i32)
                .map(|id| {
                    let (state, trace, worker_id) = self.cluster_task_status(c, name, id);
                    TaskState {
                        id,
                        state,
                        worker_id,
                        trace,
                    }
                })
                .collect(),
            _ => self
                .ctx
                .status
                .tasks_of(name)
                .into_iter()
                .map(|(id, s)| TaskState {
                    id,
                    state: s.state,
                    worker_id: worker_id.clone(),
                    trace: s.trace,
                })
                .collect(),
        };
        ConnectorStatus {
            name: name.to_string(),
            connector: ConnectorState {
                state,
                worker_id,
                trace,
            },
            tasks,
            kind: shapes::kind_name(e.prepared.plugin.kind()),
        }
    }

    pub async fn task_status(&self, name: &str, task: i32) -> Result<TaskState, HerderError> {
        let status = self.status(name).await?;
        status
            .tasks
            .into_iter()
            .find(|t| t.id == task)
            .ok_or_else(|| HerderError::NotFoundOther(format!("Task {name}-{task} not found")))
    }

    /// Graceful stop of every connector (SIGINT/SIGTERM).
    /// Sources stop first and wait for what they sent to be acknowledged,
    /// while sinks still run; then sinks flush and stop.
    pub async fn shutdown(&self) {
        if let Some(c) = &self.cluster {
            c.leave().await;
        }
        let mut map = self.connectors.lock().await;
        let (sinks, sources): (Vec<_>, Vec<_>) = std::mem::take(&mut *map)
            .into_values()
            .filter_map(|e| e.run.map(|r| (e.prepared.plugin.kind(), r)))
            .partition(|(kind, _)| *kind == PluginKind::Sink);
        futures::future::join_all(sources.into_iter().map(|(_, r)| r.stop(&self.ctx))).await;
        futures::future::join_all(sinks.into_iter().map(|(_, r)| r.stop(&self.ctx))).await;
        let _ = self.shutdown.send(true);
    }

    /// True when this worker has connectors but every task of them has
    /// ended on its own (finite sources, in-process sinks whose sources
    /// are gone): a standalone run is then done.
    pub async fn all_ended(&self) -> bool {
        let mut map = self.connectors.lock().await;
        let mut any = false;
        for e in map.values_mut() {
            if let Some(run) = &mut e.run {
                any = true;
                if run.reap() > 0 {
                    return false;
                }
            }
        }
        any
    }
}
