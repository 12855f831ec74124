//! Distributed mode: workers sharing a `group.id` coordinate through Kafka
//! alone. Connector configs and target states live in a compacted configs
//! topic, task statuses in a compacted status topic, source offsets in the
//! offsets topic; which worker runs which task comes from Kafka's group
//! membership (see membership.rs). No consensus of our own.

mod log;
mod membership;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::WorkerConfig;
use crate::kafka::KafkaHub;
use crate::worker::{State, Target};

pub use log::CompactedLog;
pub use membership::Membership;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("worker config: {0}")]
    Config(String),
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// The group's topics and size, from the worker config.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub group: String,
    pub config_topic: String,
    pub status_topic: String,
    pub assignment_topic: String,
    pub slots: i32,
}

impl ClusterConfig {
    pub fn from_worker(w: &WorkerConfig) -> Result<Self, ClusterError> {
        let get = |k: &str| {
            w.map
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let group = get("group.id").ok_or_else(|| {
            ClusterError::Config("group.id is required for a distributed worker".into())
        })?;
        if w.bootstrap_servers.is_none() {
            return Err(ClusterError::Config(
                "bootstrap.servers is required for a distributed worker".into(),
            ));
        }
        let slots = match get("task.slots") {
            None => 64,
            Some(v) => v
                .parse::<i32>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    ClusterError::Config(format!(
                        "task.slots: '{v}' is not an integer in 1..=10000"
                    ))
                })?,
        };
        Ok(ClusterConfig {
            config_topic: get("config.storage.topic").unwrap_or_else(|| "wharf-configs".into()),
            status_topic: get("status.storage.topic").unwrap_or_else(|| "wharf-status".into()),
            assignment_topic: get("assignment.topic")
                .unwrap_or_else(|| format!("wharf-slots-{group}")),
            group,
            slots,
        })
    }
}

/// A connector as the configs topic holds it: the config as the user gave
/// it (secret references unresolved), its target state, and restart
/// requests as counters every worker compares with what it has done.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorRecord {
    pub config: BTreeMap<String, String>,
    pub target: Target,
    pub restarts: u64,
    pub only_failed: bool,
    pub task_restarts: BTreeMap<i32, u64>,
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Running => "STARTED",
        Target::Paused => "PAUSED",
        Target::Stopped => "STOPPED",
    }
}

impl ConnectorRecord {
    pub fn new(config: BTreeMap<String, String>) -> Self {
        ConnectorRecord {
            config,
            target: Target::Running,
            restarts: 0,
            only_failed: false,
            task_restarts: BTreeMap::new(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "config": self.config,
            "target": target_name(self.target),
            "restarts": self.restarts,
            "only_failed": self.only_failed,
            "task_restarts": self.task_restarts.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        })
    }

    fn from_json(v: &Value) -> Option<Self> {
        let config = v
            .get("config")?
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let target = match v.get("target")?.as_str()? {
            "PAUSED" => Target::Paused,
            "STOPPED" => Target::Stopped,
            _ => Target::Running,
        };
        Some(ConnectorRecord {
            config,
            target,
            restarts: v.get("restarts").and_then(Value::as_u64).unwrap_or(0),
            only_failed: v
                .get("only_failed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            task_restarts: v
                .get("task_restarts")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// A task's status as its worker published it.
#[derive(Clone, Debug)]
pub struct PublishedStatus {
    pub state: State,
    pub trace: Option<String>,
    pub worker_id: String,
}

fn state_from(s: &str) -> State {
    match s {
        "RUNNING" => State::Running,
        "PAUSED" => State::Paused,
        "STOPPED" => State::Stopped,
        "FAILED" => State::Failed,
        "RESTARTING" => State::Restarting,
        _ => State::Unassigned,
    }
}

pub struct Cluster {
    pub config: ClusterConfig,
    pub configs: CompactedLog,
    pub statuses: CompactedLog,
    membership: tokio::sync::Mutex<Option<Membership>>,
    pub rebalances: Arc<std::sync::atomic::AtomicU64>,
    slots_changed: tokio::sync::watch::Receiver<u64>,
    owned: Arc<std::sync::Mutex<std::collections::BTreeSet<i32>>>,
}

const CONNECTOR: &str = "connector-";
const TASK_STATUS: &str = "status-task-";

impl Cluster {
    /// Reads the shared state to its end, then joins the group.
    pub async fn start(hub: &KafkaHub, config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let configs = CompactedLog::open(hub, &config.config_topic).await?;
        let statuses = CompactedLog::open(hub, &config.status_topic).await?;
        let membership =
            Membership::join(hub, &config.group, &config.assignment_topic, config.slots).await?;
        let rebalances = membership.rebalances.clone();
        let slots_changed = membership.changes();
        let owned = membership.owned_set();
        Ok(Arc::new(Cluster {
            config,
            configs,
            statuses,
            membership: tokio::sync::Mutex::new(Some(membership)),
            rebalances,
            slots_changed,
            owned,
        }))
    }

    /// The slot a task lives in: a stable hash, so every worker agrees.
    pub fn slot(&self, connector: &str, task: usize) -> i32 {
        let h = format!("{connector}/{task}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        (h % self.config.slots as u64) as i32
    }

    pub fn owned_slots(&self) -> std::collections::BTreeSet<i32> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn slot_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.slots_changed.clone()
    }

    pub fn records(&self) -> BTreeMap<String, ConnectorRecord> {
        self.configs
            .prefixed(CONNECTOR)
            .into_iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix(CONNECTOR)?.to_string(),
                    ConnectorRecord::from_json(&v)?,
                ))
            })
            .collect()
    }

    pub fn record(&self, name: &str) -> Option<ConnectorRecord> {
        self.configs
            .get(&format!("{CONNECTOR}{name}"))
            .and_then(|v| ConnectorRecord::from_json(&v))
    }

    /// Writes (or deletes) a connector for the whole group.
    pub async fn put_record(
        &self,
        name: &str,
        r: Option<&ConnectorRecord>,
    ) -> Result<(), ClusterError> {
        let v = r.map(ConnectorRecord::to_json);
        self.configs
            .write(&format!("{CONNECTOR}{name}"), v.as_ref())
            .await
    }

    pub fn task_status(&self, connector: &str, task: i32) -> Option<PublishedStatus> {
        let v = self
            .statuses
            .get(&format!("{TASK_STATUS}{connector}-{task}"))?;
        Some(PublishedStatus {
            state: state_from(v.get("state")?.as_str()?),
            trace: v.get("trace").and_then(Value::as_str).map(str::to_string),
            worker_id: v.get("worker_id")?.as_str()?.to_string(),
        })
    }

    pub async fn publish_status(
        &self,
        connector: &str,
        task: i32,
        state: Option<(State, Option<String>, String)>,
    ) -> Result<(), ClusterError> {
        let v = state.map(|(state, trace, worker_id)| {
            json!({"state": state, "trace": trace, "worker_id": worker_id})
        });
        self.statuses
            .write(&format!("{TASK_STATUS}{connector}-{task}"), v.as_ref())
            .await
    }

    /// Leaves the group (graceful stop), so others take the slots at once.
    pub async fn leave(&self) {
        if let Some(m) = self.membership.lock().await.take() {
            m.leave().await;
        }
    }
}
