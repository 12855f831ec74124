//! Restarts FAILED tasks on their own, with exponential backoff, instead of
//! waiting for a human to call the restart endpoint (a common complaint about
//! Connect). While it waits the task shows FAILED with its trace and the
//! planned retry; while it starts again it shows RESTARTING.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{int_key, ConfigError, ConnectorConfig};

use super::status::{State, StatusBoard, TaskCounters};

#[derive(Clone, Debug)]
pub struct RestartPolicy {
    pub enabled: bool,
    pub initial: Duration,
    pub max: Duration,
    /// None: no limit.
    pub max_attempts: Option<u32>,
}

/// A task that ran this long before failing starts its backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl RestartPolicy {
    pub fn from_connector(c: &ConnectorConfig) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let enabled = match c.get("task.restart.enable").map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => {
                errors.push(c.key_error("task.restart.enable", format!("'{v}' is not a boolean")));
                true
            }
        };
        let mut num = |key: &str, default: i64, min: i64| {
            int_key(c, key, default, min).unwrap_or_else(|e| {
                errors.push(e);
                default
            })
        };
        let initial =
            Duration::from_millis(num("task.restart.backoff.initial.ms", 1_000, 1) as u64);
        let max = Duration::from_millis(num("task.restart.backoff.max.ms", 60_000, 1) as u64);
        let attempts = num("task.restart.max.attempts", -1, -1);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RestartPolicy {
            enabled,
            initial,
            max: max.max(initial),
            max_attempts: u32::try_from(attempts).ok(),
        })
    }

    fn delay(&self, attempt: u32) -> Duration {
        let d = self.initial.saturating_mul(1u32 << attempt.min(20));
        let d = d.min(self.max);
        // ±20% jitter so tasks failing together do not restart in lockstep.
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        d.mul_f64(jitter)
    }
}

/// Decides, after each failure of one task, whether and when it runs again.
pub struct Supervisor {
    connector: String,
    task: i32,
    policy: RestartPolicy,
    status: StatusBoard,
    counters: Arc<TaskCounters>,
    shutdown: watch::Receiver<bool>,
    failures: u32,
}

impl Supervisor {
    pub fn new(
        connector: &str,
        task: i32,
        policy: RestartPolicy,
        status: StatusBoard,
        counters: Arc<TaskCounters>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Supervisor {
            connector: connector.to_string(),
            task,
            policy,
            status,
            counters,
            shutdown,
            failures: 0,
        }
    }

    /// After a failure: waits out the backoff and returns true to run the
    /// task again, or false to leave it FAILED (policy, or worker stopping).
    pub async fn retry(&mut self, trace: String, started: Instant) -> bool {
        let (connector, task) = (self.connector.as_str(), self.task);
        if *self.shutdown.borrow() || !self.policy.enabled {
            return false;
        }
        if started.elapsed() >= HEALTHY_RUN {
            self.failures = 0;
        }
        if self.policy.max_attempts.is_some_and(|m| self.failures >= m) {
            tracing::error!(
                connector,
                task,
                failures = self.failures,
                "giving up restarting the task"
            );
            return false;
        }
        let delay = self.policy.delay(self.failures);
        self.failures += 1;
        self.status.set(
            connector,
            task,
            State::Failed,
            Some(format!(
                "{trace}\n(automatic restart {} in {} ms)",
                self.failures,
                delay.as_millis()
            )),
        );
        tracing::warn!(
            connector,
            task,
            restart = self.failures,
            delay_ms = delay.as_millis() as u64,
            "restarting the failed task after backoff"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.changed() => return false,
        }
        TaskCounters::add(&self.counters.restarts, 1);
        self.status
            .set(connector, task, State::Restarting, Some(trace));
        true
    }
}
