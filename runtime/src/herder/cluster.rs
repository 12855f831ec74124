//! The herder in a group of workers: REST writes go to the configs topic
//! (any worker takes them, each applies them once to its own tasks), and a
//! reconcile loop makes this worker run exactly the tasks whose slots it
//! owns, in the target state the configs topic says. Statuses of local
//! tasks are published to the status topic for every worker to answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Cluster, ConnectorRecord};
use crate::config::{from_map, ConnectorConfig};
use crate::worker::{start_connector, State, Target, TaskStatus};

use super::{shapes, ConnectorInfo, Entry, Herder, HerderError, Seen};

fn cluster_err(e: crate::cluster::ClusterError) -> HerderError {
    HerderError::Internal(e.to_string())
}

impl Herder {
    /// Reads the configs topic up to its end, so a write through this
    /// worker sees every write made through the others before it.
    async fn sync(&self, cluster: &Cluster) -> Result<(), HerderError> {
        if let Some(hub) = &self.ctx.kafka {
            cluster.configs.catch_up(hub).await.map_err(cluster_err)?;
        }
        Ok(())
    }

    fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Runs until the worker stops: reconciles on every change of the
    /// configs or of the slots this worker owns, and every few seconds.
    pub async fn run_cluster(self: Arc<Self>) {
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        let mut configs = cluster.configs.changes();
        let mut slots = cluster.slot_changes();
        let mut shutdown = self.ctx.shutdown.clone();
        let publisher = tokio::spawn(self.clone().publish_statuses(cluster.clone()));
        loop {
            self.reconcile(&cluster).await;
            tokio::select! {
                r = configs.changed() => if r.is_err() { break },
                r = slots.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => break,
            }
        }
        publisher.abort();
    }

    /// Publishes what changed in local task statuses, once a second.
    async fn publish_statuses(self: Arc<Self>, cluster: Arc<Cluster>) {
        let mut sent: HashMap<(String, i32), TaskStatus> = HashMap::new();
        loop {
            let worker = self.worker_id();
            for (c, t, s, _) in self.ctx.status.snapshot() {
                if sent.get(&(c.clone(), t)) == Some(&s) {
                    continue;
                }
                let published = cluster
                    .publish_status(&c, t, Some((s.state, s.trace.clone(), worker.clone())))
                    .await;
                match published {
                    Ok(()) => {
                        sent.insert((c, t), s);
                    }
                    Err(e) => tracing::warn!(connector = %c, task = t, "publishing status: {e}"),
                }
            }
            // Forget what no longer runs here, so it is sent again if it returns.
            let local: BTreeSet<(String, i32)> = self
                .ctx
                .status
                .snapshot()
                .into_iter()
                .map(|(c, t, _, _)| (c, t))
                .collect();
            sent.retain(|k, _| local.contains(k));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Brings this worker's tasks in line with the configs topic and its slots.
    pub(super) async fn reconcile(&self, cluster: &Cluster) {
        let records = cluster.records();
        let owned = cluster.owned_slots();
        let mut map = self.connectors.lock().await;
        let gone: Vec<String> = map
            .keys()
            .filter(|n| !records.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(run) = map.remove(&name).and_then(|e| e.run) {
                run.stop(&self.ctx).await;
                self.assignment_changed();
            }
            tracing::info!(connector = %name, "connector deleted in the group");
        }
        for (name, rec) in records {
            let changed = map
                .get(&name)
                .is_none_or(|e| e.seen.raw.as_ref() != Some(&rec.config));
            if changed {
                if let Some(run) = map.remove(&name).and_then(|e| e.run) {
                    run.stop(&self.ctx).await;
                    self.assignment_changed();
                }
                match self.entry_for(&name, &rec).await {
                    Some(e) => {
                        map.insert(name.clone(), e);
                    }
                    None => continue,
                }
            }
            let Some(e) = map.get_mut(&name) else {
                continue;
            };
            if e.failure.is_some() && e.run.is_none() {
                continue;
            }
            if rec.target == Target::Stopped {
                if let Some(run) = e.run.take() {
                    run.stop(&self.ctx).await;
                    self.assignment_changed();
                }
                e.target = Target::Stopped;
                continue;
            }
            if e.run.is_none() {
                let none = BTreeSet::new();
                match start_connector(&e.prepared, &self.ctx, rec.target, Some(&none)).await {
                    Ok(run) => e.run = Some(run),
                    Err(err) => {
                        tracing::error!(connector = %name, "connector FAILED: {err}");
                        e.failure = Some(err.to_string());
                        continue;
                    }
                }
            }
            let Some(run) = e.run.as_mut() else { continue };
            let wanted: BTreeSet<usize> = (0..run.task_count())
                .filter(|i| owned.contains(&cluster.slot(&name, *i)))
                .collect();
            let local = run.local_tasks();
            for t in local.difference(&wanted) {
                run.remove_task(&self.ctx, *t).await;
                self.assignment_changed();
            }
            for t in wanted.difference(&local) {
                run.add_task(&self.ctx, *t, rec.target);
                self.assignment_changed();
            }
            if e.target != rec.target {
                match rec.target {
                    Target::Paused => run.pause(),
                    _ => run.resume(),
                }
                e.target = rec.target;
            }
            if rec.restarts > e.seen.restarts {
                for (t, s) in self.ctx.status.tasks_of(&name) {
                    if !rec.only_failed || s.state == State::Failed {
                        run.restart_task(t as usize);
                    }
                }
                e.seen.restarts = rec.restarts;
            }
            for (t, n) in &rec.task_restarts {
                if e.seen.task_restarts.get(t).copied().unwrap_or(0) < *n {
                    run.restart_task(*t as usize);
                    e.seen.task_restarts.insert(*t, *n);
                }
            }
        }
    }

    /// Validates a connector from the configs topic on this worker; one
    /// that does not validate here is kept FAILED with the reason.
    async fn entry_for(&self, name: &str, rec: &ConnectorRecord) -> Option<Entry> {
        let seen = Seen {
            raw: Some(rec.config.clone()),
            restarts: rec.restarts,
            task_restarts: rec.task_restarts.clone(),
        };
        let config = match from_map(
            name,
            rec.config.clone(),
            "configs topic",
            &self.provider_policy(),
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(connector = name, "connector FAILED on this worker: {e}");
                return None;
            }
        };
        match self.prepare(&config).await {
            Ok(mut prepared) => {
                self.mark_secrets(&mut prepared.config);
                Some(Entry {
                    prepared,
                    target: if rec.target == Target::Stopped {
                        Target::Stopped
                    } else {
                        // Applied just below, with the tasks.
                        Target::Running
                    },
                    run: None,
                    failure: None,
                    seen,
                })
            }
            Err(e) => {
                tracing::error!(connector = name, "connector FAILED on this worker: {e}");
                None
            }
        }
    }

    /// Validates, writes the connector for the group, and waits until this
    /// worker applied it.
    pub(super) async fn cluster_put(
        &self,
        cluster: &Arc<Cluster>,
        config: ConnectorConfig,
        raw: BTreeMap<String, String>,
        must_be_new: bool,
    ) -> Result<(bool, ConnectorInfo), HerderError> {
        self.sync(cluster).await?;
        let existing = cluster.record(&config.name);
        if must_be_new && existing.is_some() {
            return Err(HerderError::Exists(config.name));
        }
        let mut prepared = self.prepare(&config).await?;
        self.mark_secrets(&mut prepared.config);
        let tasks = crate::worker::task_configs(&prepared).await?.len();
        let record = match existing.clone() {
            Some(mut r) => {
                r.config = raw;
                r
            }
            None => ConnectorRecord::new(raw),
        };
        cluster
            .put_record(&config.name, Some(&record))
            .await
            .map_err(cluster_err)?;
        self.reconcile(cluster).await;
        Ok((existing.is_none(), shapes::info(&prepared, tasks)))
    }

    pub(super) async fn cluster_update(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
        change: impl FnOnce(&mut ConnectorRecord),
    ) -> Result<(), HerderError> {
        self.sync(cluster).await?;
        let mut r = cluster
            .record(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        change(&mut r);
        cluster
            .put_record(name, Some(&r))
            .await
            .map_err(cluster_err)?;
        self.reconcile(cluster).await;
        Ok(())
    }

    pub(super) async fn cluster_delete(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
    ) -> Result<(), HerderError> {
        self.sync(cluster).await?;
        if cluster.record(name).is_none() {
            return Err(HerderError::NotFound(name.into()));
        }
        let tasks = self
            .connectors
            .lock()
            .await
            .get(name)
            .and_then(|e| e.run.as_ref().map(|r| r.task_count()))
            .unwrap_or(0);
        cluster.put_record(name, None).await.map_err(cluster_err)?;
        self.reconcile(cluster).await;
        for t in 0..tasks {
            let _ = cluster.publish_status(name, t as i32, None).await;
        }
        Ok(())
    }

    /// A task's status anywhere in the group.
    pub(super) fn cluster_task_status(
        &self,
        cluster: &Cluster,
        name: &str,
        task: i32,
    ) -> (State, Option<String>, String) {
        if let Some(s) = self.ctx.status.task(name, task) {
            return (s.state, s.trace, self.worker_id());
        }
        match cluster.task_status(name, task) {
            Some(p) => (p.state, p.trace, p.worker_id),
            None => (State::Unassigned, None, String::new()),
        }
    }
}
