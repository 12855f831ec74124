//! Kafka Connect's REST JSON shapes, field for field, so Connect tooling
//! reads Wharf's answers unchanged.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plugin::PluginKind;
use crate::worker::{Prepared, State};

/// Connect's `type` of a connector plugin.
pub fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Source => "source",
        PluginKind::Sink => "sink",
        PluginKind::Transform => "transformation",
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TaskId {
    pub connector: String,
    pub task: i32,
}

/// ConnectorInfo: `{name, config, tasks: [{connector, task}], type}`.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorInfo {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub tasks: Vec<TaskId>,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

pub fn info(p: &Prepared, tasks: usize) -> ConnectorInfo {
    let mut config = p.config.redacted();
    config.insert("name".into(), p.config.name.clone());
    ConnectorInfo {
        name: p.config.name.clone(),
        config,
        tasks: (0..tasks)
            .map(|t| TaskId {
                connector: p.config.name.clone(),
                task: t as i32,
            })
            .collect(),
        kind: kind_name(p.plugin.kind()),
    }
}

/// The connector half of ConnectorStateInfo.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorState {
    pub state: State,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// One task's status: `{id, state, worker_id, trace?}`.
#[derive(Clone, Debug, Serialize)]
pub struct TaskState {
    pub id: i32,
    pub state: State,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// ConnectorStateInfo: `{name, connector: {state, worker_id}, tasks, type}`.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: ConnectorState,
    pub tasks: Vec<TaskState>,
    #[serde(rename = "type")]
    pub kind: &'static str,
}
