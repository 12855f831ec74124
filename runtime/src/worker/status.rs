//! Connector and task states with Kafka Connect's names, and per-task
//! counters, shared by the tasks, the progress reporter and (later) REST.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    pub batches: AtomicU64,
    pub offsets_committed: AtomicU64,
    /// Records a plugin refused that were tolerated (skipped or dead-lettered).
    pub records_failed: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Automatic restarts after a failure.
    pub restarts: AtomicU64,
}

impl TaskCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
