//! Pause, resume, stop and restart: Connect's lifecycle requests, applied
//! to this worker's tasks (standalone) or written for the group.

use crate::worker::{State, Target};

use super::{ConnectorStatus, Herder, HerderError};

impl Herder {
    pub async fn pause(&self, name: &str) -> Result<(), HerderError> {
        self.retarget(name, Target::Paused).await
    }

    pub async fn resume(&self, name: &str) -> Result<(), HerderError> {
        self.retarget(name, Target::Running).await
    }

    pub async fn stop(&self, name: &str) -> Result<(), HerderError> {
        self.retarget(name, Target::Stopped).await
    }

    async fn retarget(&self, name: &str, target: Target) -> Result<(), HerderError> {
        if let Some(c) = &self.cluster {
            return self.cluster_update(c, name, |r| r.target = target).await;
        }
        let mut map = self.connectors.lock().await;
        let e = map
            .get_mut(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        match (target, e.run.take()) {
            (Target::Stopped, run) => {
                if let Some(run) = run {
                    run.stop(&self.ctx).await;
                    self.assignment_changed();
                }
                e.failure = None;
            }
            (t, Some(run)) => {
                match t {
                    Target::Paused => run.pause(),
                    _ => run.resume(),
                }
                e.run = Some(run);
            }
            // Resuming (or pausing) a stopped or failed connector starts its
            // tasks afresh.
            (t, None) => {
                let entry = self.launch(e.prepared.clone(), t).await?;
                e.run = entry.run;
                e.failure = entry.failure;
            }
        }
        e.target = target;
        tracing::info!(connector = name, target = ?target, "connector target state changed");
        Ok(())
    }

    /// POST /connectors/{name}/restart. Without `include_tasks` only the
    /// connector itself restarts (re-split into tasks when it had failed);
    /// returns the status when tasks were asked for, as Connect does.
    pub async fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<ConnectorStatus, HerderError> {
        if let Some(c) = &self.cluster {
            if include_tasks {
                self.cluster_update(c, name, |r| {
                    r.restarts += 1;
                    r.only_failed = only_failed;
                })
                .await?;
            }
            return self.status(name).await;
        }
        let mut map = self.connectors.lock().await;
        let e = map
            .get_mut(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        if e.failure.is_some() || (e.run.is_none() && e.target != Target::Stopped) {
            let entry = self.launch(e.prepared.clone(), e.target).await?;
            e.run = entry.run;
            e.failure = entry.failure;
        } else if include_tasks {
            if let Some(run) = &e.run {
                for (task, s) in self.ctx.status.tasks_of(name) {
                    if only_failed && s.state != State::Failed {
                        continue;
                    }
                    if run.restart_task(task as usize) && e.target == Target::Running {
                        self.ctx.status.set(name, task, State::Restarting, None);
                    }
                }
            }
        }
        Ok(self.status_of(name, e))
    }

    pub async fn restart_task(&self, name: &str, task: i32) -> Result<(), HerderError> {
        if let Some(c) = &self.cluster {
            let tasks = self.status(name).await?.tasks.len();
            if task < 0 || task as usize >= tasks {
                return Err(HerderError::NotFoundOther(format!(
                    "Task {name}-{task} not found"
                )));
            }
            return self
                .cluster_update(c, name, |r| {
                    *r.task_restarts.entry(task).or_insert(0) += 1;
                })
                .await;
        }
        let map = self.connectors.lock().await;
        let e = map
            .get(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        let restarted = usize::try_from(task)
            .ok()
            .zip(e.run.as_ref())
            .is_some_and(|(t, run)| run.restart_task(t));
        if !restarted {
            return Err(HerderError::NotFoundOther(format!(
                "Task {name}-{task} not found"
            )));
        }
        if e.target == Target::Running {
            self.ctx.status.set(name, task, State::Restarting, None);
        }
        Ok(())
    }
}
