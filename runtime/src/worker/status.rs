//! Connector and task states with Kafka Connect's names, and per-task
//! counters, shared by the tasks, the progress reporter, REST and /metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::plugin::PluginMetrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Stopped,
    Failed,
    Restarting,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    pub state: State,
    /// Why the task failed, as Connect's `trace` field.
    pub trace: Option<String>,
}

/// Monotonic per-task counters.
#[derive(Debug, Default)]
pub struct TaskCounters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Sinks: records read that a flush made durable (what may commit).
    pub records_durable: AtomicU64,
    pub batches: AtomicU64,
    pub offsets_committed: AtomicU64,
    /// Records a plugin refused that were tolerated (skipped or dead-lettered).
    pub records_failed: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Automatic restarts after a failure.
    pub restarts: AtomicU64,
    /// Wall-clock ms of the last successful offset commit (0: none yet).
    pub last_commit_ms: AtomicU64,
    /// Sinks: records in Kafka not yet fetched (-1: unknown).
    pub consumer_lag: Gauge,
    /// Time to process one batch (source: poll to hand-off; sink: put).
    pub batch_latency: Histogram,
    /// What the running plugin instance reports itself (e.g. replication lag).
    plugin: Mutex<Option<Arc<PluginMetrics>>>,
}

impl TaskCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` offsets were committed just now.
    pub fn committed(&self, n: u64) {
        Self::add(&self.offsets_committed, n);
        self.last_commit_ms
            .store(crate::plugin::now_millis().max(0) as u64, Ordering::Relaxed);
    }

    pub fn set_plugin_metrics(&self, m: Arc<PluginMetrics>) {
        if let Ok(mut p) = self.plugin.lock() {
            *p = Some(m);
        }
    }

    pub fn plugin_metrics(&self) -> BTreeMap<String, f64> {
        self.plugin
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|m| m.snapshot()))
            .unwrap_or_default()
    }
}

/// A gauge that starts unknown (-1).
#[derive(Debug)]
pub struct Gauge(std::sync::atomic::AtomicI64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(std::sync::atomic::AtomicI64::new(-1))
    }
}

impl Gauge {
    pub fn set(&self, v: Option<u64>) {
        let v = v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<u64> {
        u64::try_from(self.0.load(Ordering::Relaxed)).ok()
    }
}

/// Upper bounds of the batch latency buckets, in seconds (Prometheus `le`).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket histogram updated without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket, then the total count and the sum in seconds.
    pub fn cumulative(&self) -> (Vec<u64>, u64, f64) {
        let mut acc = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        (
            buckets,
            self.count.load(Ordering::Relaxed),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

type TaskEntry = (TaskStatus, Arc<TaskCounters>);

#[derive(Clone, Default)]
pub struct StatusBoard {
    tasks: Arc<Mutex<BTreeMap<(String, i32), TaskEntry>>>,
}

impl StatusBoard {
    pub fn register(&self, connector: &str, task: i32) -> Arc<TaskCounters> {
        let counters = Arc::new(TaskCounters::default());
        if let Ok(mut m) = self.tasks.lock() {
            m.insert(
                (connector.to_string(), task),
                (
                    TaskStatus {
                        state: State::Unassigned,
                        trace: None,
                    },
                    counters.clone(),
                ),
            );
        }
        counters
    }

    pub fn set(&self, connector: &str, task: i32, state: State, trace: Option<String>) {
        if let Ok(mut m) = self.tasks.lock() {
            if let Some(entry) = m.get_mut(&(connector.to_string(), task)) {
                entry.0 = TaskStatus { state, trace };
            }
        }
    }

    /// Drops a stopped or deleted connector's tasks.
    pub fn forget(&self, connector: &str) {
        if let Ok(mut m) = self.tasks.lock() {
            m.retain(|(c, _), _| c != connector);
        }
    }

    /// Drops one task (moved to another worker).
    pub fn forget_task(&self, connector: &str, task: i32) {
        if let Ok(mut m) = self.tasks.lock() {
            m.remove(&(connector.to_string(), task));
        }
    }

    /// The tasks of one connector, in order.
    pub fn tasks_of(&self, connector: &str) -> Vec<(i32, TaskStatus)> {
        self.tasks
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|((c, _), _)| c == connector)
                    .map(|((_, t), (s, _))| (*t, s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn task(&self, connector: &str, task: i32) -> Option<TaskStatus> {
        self.tasks
            .lock()
            .ok()?
            .get(&(connector.to_string(), task))
            .map(|e| e.0.clone())
    }

    /// (connector, task, status, counters) for every task, in order.
    pub fn snapshot(&self) -> Vec<(String, i32, TaskStatus, Arc<TaskCounters>)> {
        self.tasks
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((c, t), (s, k))| (c.clone(), *t, s.clone(), k.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
