//! A connector's transform chain, configured as in Kafka Connect:
//! `transforms: a,b` with `transforms.a.type` naming the plugin and the other
//! `transforms.a.*` keys forming its config.

use std::sync::Arc;

use crate::config::ConnectorConfig;
use crate::plugin::{
    CallError, Limits, Plugin, PluginHost, PluginKind, RecordBatch, TaskId, TransformInstance,
};

use super::WorkerError;

/// One configured transform: its alias, plugin and own config.
pub struct TransformSpec {
    pub alias: String,
    pub plugin: Arc<Plugin>,
    pub config: Vec<(String, String)>,
}

pub fn aliases(c: &ConnectorConfig) -> Vec<String> {
    c.get("transforms")
        .map(|s| {
            s.split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Loads each transform's plugin and splits out its config.
pub async fn specs(
    host: &PluginHost,
    c: &ConnectorConfig,
) -> Result<Vec<TransformSpec>, WorkerError> {
    let mut out = Vec::new();
    for alias in aliases(c) {
        let prefix = format!("transforms.{alias}.");
        let type_key = format!("{prefix}type");
        let Some(class) = c.get(&type_key) else {
            return Err(WorkerError::Config(
                c.key_error(&type_key, "required: the transform plugin to use"),
            ));
        };
        let plugin = host
            .load(class)
            .await
            .map_err(|e| WorkerError::Config(c.key_error(&type_key, e.to_string())))?;
        if plugin.kind() != PluginKind::Transform {
            return Err(WorkerError::Config(c.key_error(
                &type_key,
                format!(
                    "'{class}' is a {} plugin, not a transform",
                    crate::plugin::world_name(plugin.kind())
                ),
            )));
        }
        let config = c
            .config
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
            .filter(|(k, _)| k != "type")
            .collect();
        out.push(TransformSpec {
            alias,
            plugin,
            config,
        });
    }
    Ok(out)
}

/// The instantiated chain for one task.
pub struct Chain {
    stages: Vec<(String, TransformInstance)>,
}

impl Chain {
    pub async fn open(
        specs: &[TransformSpec],
        id: &TaskId,
        limits: &Limits,
    ) -> Result<Self, (String, CallError)> {
        let mut stages = Vec::with_capacity(specs.len());
        for s in specs {
            let tid = TaskId {
                connector: format!("{}/{}", id.connector, s.alias),
                task: id.task,
            };
            // Transforms are pure: they get the task's limits but no directories.
            let pure = Limits {
                fs_dirs: Default::default(),
                elasticsearch: None,
                s3: None,
                postgres: None,
                ..limits.clone()
            };
            let mut inst = s
                .plugin
                .transform(tid, pure)
                .await
                .map_err(|e| (s.alias.clone(), CallError::Fatal(e.to_string())))?;
            inst.open(&s.config)
                .await
                .map_err(|e| (s.alias.clone(), e))?;
            stages.push((s.alias.clone(), inst));
        }
        Ok(Chain { stages })
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs a batch through every stage, encoded from one to the next; an
    /// error names the stage.
    pub async fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, (String, CallError)> {
        let mut out: Option<RecordBatch> = None;
        for (alias, stage) in &mut self.stages {
            let input = out.as_ref().unwrap_or(batch);
            if input.is_empty() {
                break;
            }
            out = Some(
                stage
                    .apply_batch(input)
                    .await
                    .map_err(|e| (alias.clone(), e))?,
            );
        }
        Ok(out.unwrap_or_else(|| batch.clone()))
    }
}
