//! `/connector-plugins`: what plugins this worker has, their config
//! definitions, and validation in Connect's ConfigInfos shape.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::config::{from_map, ConfigError};
use crate::plugin::{ConfigKey, ConfigType, Importance, Plugin, PluginHost, PluginKind};
use crate::worker;

use super::shapes::kind_name;
use super::{Herder, HerderError};

/// Keys the worker itself reads for every connector (Connect's "Common").
const COMMON: &[(&str, &str, &str)] = &[
    (
        "name",
        "STRING",
        "Globally unique name to use for this connector.",
    ),
    (
        "connector.class",
        "STRING",
        "A built-in plugin name or the path to a .wasm component.",
    ),
    (
        "tasks.max",
        "INT",
        "Maximum number of tasks to use for this connector.",
    ),
    ("topics", "LIST", "The topics a sink reads (sinks only)."),
    (
        "transforms",
        "LIST",
        "Aliases for the transformations to apply to records.",
    ),
    (
        "key.converter",
        "STRING",
        "Converter for record keys (overrides the worker's).",
    ),
    (
        "value.converter",
        "STRING",
        "Converter for record values (overrides the worker's).",
    ),
    (
        "errors.tolerance",
        "STRING",
        "none: fail the task on a bad record; all: skip it (or route it to the dead letter topic).",
    ),
    (
        "errors.deadletterqueue.topic.name",
        "STRING",
        "Topic for records that failed (sinks).",
    ),
    (
        "errors.retry.timeout",
        "LONG",
        "How long to retry a retriable failure, in ms (-1: forever).",
    ),
    (
        "exactly.once.support",
        "STRING",
        "requested or required: sources write records and offsets in one Kafka transaction.",
    ),
];

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::Boolean => "BOOLEAN",
        ConfigType::Int => "INT",
        ConfigType::Long => "LONG",
        ConfigType::Double => "DOUBLE",
        ConfigType::String => "STRING",
        ConfigType::Password => "PASSWORD",
        ConfigType::List => "LIST",
    }
}

fn importance_name(i: Importance) -> &'static str {
    match i {
        Importance::High => "HIGH",
        Importance::Medium => "MEDIUM",
        Importance::Low => "LOW",
    }
}

/// ConfigKeyInfo, as GET /connector-plugins/{plugin}/config lists it.
fn key_info(k: &ConfigKey, group: &str, order: usize) -> Value {
    json!({
        "name": k.name,
        "type": type_name(k.type_),
        "required": k.default_value.is_none(),
        "default_value": k.default_value,
        "importance": importance_name(k.importance),
        "documentation": k.documentation,
        "group": group,
        "order_in_group": order,
        "width": "NONE",
        "display_name": k.name,
        "dependents": [],
    })
}

fn common_info(name: &str, ty: &str, doc: &str, order: usize) -> Value {
    json!({
        "name": name,
        "type": ty,
        "required": matches!(name, "name" | "connector.class"),
        "default_value": Value::Null,
        "importance": "HIGH",
        "documentation": doc,
        "group": "Common",
        "order_in_group": order,
        "width": "NONE",
        "display_name": name,
        "dependents": [],
    })
}

fn plugin_info(p: &Plugin) -> Value {
    json!({
        "class": p.class,
        "type": kind_name(p.kind()),
        "version": p.info.version,
    })
}

impl Herder {
    async fn plugin(&self, class: &str) -> Result<std::sync::Arc<Plugin>, HerderError> {
        self.plugin_host()
            .load(class)
            .await
            .map_err(|e| HerderError::NotFoundOther(e.to_string()))
    }

    /// GET /connector-plugins (`connectors_only: false` adds transforms).
    pub async fn plugins(&self, connectors_only: bool) -> Result<Vec<Value>, HerderError> {
        let mut out = Vec::new();
        for name in PluginHost::builtin_names() {
            let p = self.plugin(name).await?;
            if connectors_only && p.kind() == PluginKind::Transform {
                continue;
            }
            out.push(plugin_info(&p));
        }
        Ok(out)
    }

    /// GET /connector-plugins/{plugin}/config.
    pub async fn plugin_config(&self, class: &str) -> Result<Vec<Value>, HerderError> {
        let p = self.plugin(class).await?;
        let mut out: Vec<Value> = if p.kind() == PluginKind::Transform {
            Vec::new()
        } else {
            COMMON
                .iter()
                .enumerate()
                .map(|(i, (n, t, d))| common_info(n, t, d, i + 1))
                .collect()
        };
        out.extend(
            p.spec
                .iter()
                .enumerate()
                .map(|(i, k)| key_info(k, &p.info.name, i + 1)),
        );
        Ok(out)
    }

    /// PUT /connector-plugins/{plugin}/config/validate: ConfigInfos with
    /// every key's value and errors; never starts anything.
    pub async fn validate(
        &self,
        class: &str,
        mut map: BTreeMap<String, String>,
    ) -> Result<Value, HerderError> {
        let plugin = self
            .plugin_host()
            .load(class)
            .await
            .map_err(|e| HerderError::BadRequest(e.to_string()))?;
        match map.get("connector.class") {
            Some(c) if c != class => {
                return Err(HerderError::BadRequest(format!(
                    "Included connector type {c} does not match request type {class}"
                )))
            }
            Some(_) => {}
            None => {
                map.insert("connector.class".into(), class.to_string());
            }
        }
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let name = match map.remove("name") {
            Some(n) if !n.trim().is_empty() => n,
            _ => {
                errors.entry("name".into()).or_default().push(
                    "Missing required configuration \"name\" which has no default value.".into(),
                );
                "<unnamed>".into()
            }
        };
        match from_map(
            &name,
            map.clone(),
            "validate request",
            &self.provider_policy(),
        ) {
            Err(ConfigError::Key { key, message, .. }) => {
                errors.entry(key).or_default().push(message)
            }
            Err(e) => errors
                .entry("connector.class".into())
                .or_default()
                .push(e.to_string()),
            Ok(config) => {
                let policy = self.overrides.read().map(|p| *p).unwrap_or_default();
                for e in policy.check(&config) {
                    if let ConfigError::Key { key, message, .. } = e {
                        errors.entry(key).or_default().push(message);
                    }
                }
                if let Err(problems) = worker::prepare(self.plugin_host(), &config).await {
                    for e in problems {
                        match e {
                            ConfigError::Key { key, message, .. } => {
                                errors.entry(key).or_default().push(message)
                            }
                            other => errors
                                .entry("connector.class".into())
                                .or_default()
                                .push(other.to_string()),
                        }
                    }
                }
            }
        }
        map.insert("name".into(), name);
        Ok(config_infos(&plugin, &map, &errors))
    }
}

fn value_info(name: &str, value: Option<&String>, errors: &BTreeMap<String, Vec<String>>) -> Value {
    json!({
        "name": name,
        "value": value,
        "recommended_values": [],
        "errors": errors.get(name).cloned().unwrap_or_default(),
        "visible": true,
    })
}

fn config_infos(
    plugin: &Plugin,
    map: &BTreeMap<String, String>,
    errors: &BTreeMap<String, Vec<String>>,
) -> Value {
    let mut seen = BTreeSet::new();
    let mut configs = Vec::new();
    for (i, (n, t, d)) in COMMON.iter().enumerate() {
        seen.insert(n.to_string());
        configs.push(json!({
            "definition": common_info(n, t, d, i + 1),
            "value": value_info(n, map.get(*n), errors),
        }));
    }
    for (i, k) in plugin.spec.iter().enumerate() {
        if !seen.insert(k.name.clone()) {
            continue;
        }
        let shown = map.get(&k.name).map(|v| {
            if k.type_ == ConfigType::Password {
                crate::config::HIDDEN.to_string()
            } else {
                v.clone()
            }
        });
        configs.push(json!({
            "definition": key_info(k, &plugin.info.name, i + 1),
            "value": value_info(&k.name, shown.as_ref(), errors),
        }));
    }
    // Errors on keys neither list defines (transforms.*, converters...).
    for key in errors.keys().filter(|k| !seen.contains(*k)) {
        configs.push(json!({
            "definition": common_info(key, "STRING", "", 0),
            "value": value_info(key, map.get(key), errors),
        }));
    }
    json!({
        "name": plugin.class,
        "error_count": errors.values().map(Vec::len).sum::<usize>(),
        "groups": ["Common", plugin.info.name],
        "configs": configs,
    })
}
