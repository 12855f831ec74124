//! Handlers for `/connectors` and `/connector-plugins`: parse the request,
//! call the herder, answer with Connect's status code and body.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::config::{from_map, ConnectorConfig};
use crate::herder::HerderError;

use super::Api;

type Answer = Result<Response, HerderError>;

fn parse_json(body: &Bytes) -> Result<Value, HerderError> {
    if body.is_empty() {
        return Err(HerderError::BadRequest(
            "the request needs a JSON body".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| HerderError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// Connect's flat string map; numbers and booleans are taken as their text.
fn flat_map(v: &Map<String, Value>, what: &str) -> Result<BTreeMap<String, String>, HerderError> {
    v.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(HerderError::BadRequest(format!(
                        "{what}: key '{k}' must be a string, number or boolean"
                    )))
                }
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// Query parameters, repeated ones kept (`expand=status&expand=info`).
fn params(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn flag(params: &[(String, String)], name: &str) -> Result<bool, HerderError> {
    match params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None => Ok(false),
        Some("true") | Some("") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(HerderError::BadRequest(format!(
            "query parameter '{name}' must be true or false, got '{v}'"
        ))),
    }
}

/// The connector a REST body describes, and its map as given (secret
/// references unresolved); a `name` key must match the connector's name.
fn connector_config(
    name: &str,
    mut map: BTreeMap<String, String>,
    policy: &crate::config::ProviderPolicy,
) -> Result<(ConnectorConfig, BTreeMap<String, String>), HerderError> {
    if let Some(n) = map.remove("name").filter(|n| n != name) {
        let message = format!(
            "Connector name configuration ({n}) doesn't match connector name in the URL ({name})"
        );
        return Err(HerderError::BadRequest(message));
    }
    let config = from_map(name, map.clone(), "REST request", policy)
        .map_err(|e| HerderError::Invalid(vec![e]))?;
    Ok((config, map))
}

fn task_number(task: &str) -> Result<i32, HerderError> {
    task.parse()
        .map_err(|_| HerderError::NotFoundOther(format!("Task {task} not found")))
}

pub async fn list(State(api): State<Api>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q);
    let expand: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.as_str())
        .collect();
    let names = api.herder.names().await;
    if expand.is_empty() {
        return Ok(Json(names).into_response());
    }
    let mut out = Map::new();
    for name in names {
        let mut entry = Map::new();
        if expand.contains(&"status") {
            entry.insert("status".into(), json!(api.herder.status(&name).await?));
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), json!(api.herder.info(&name).await?));
        }
        out.insert(name, Value::Object(entry));
    }
    Ok(Json(Value::Object(out)).into_response())
}

pub async fn create(State(api): State<Api>, body: Bytes) -> Answer {
    let body = parse_json(&body)?;
    let name = match body.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => {
            return Err(HerderError::BadRequest(
                "the body needs 'name' (a non-empty string) and 'config' (an object)".into(),
            ))
        }
    };
    let map = match body.get("config") {
        Some(Value::Object(m)) => flat_map(m, "config")?,
        None => BTreeMap::new(),
        Some(_) => return Err(HerderError::BadRequest("'config' must be an object".into())),
    };
    let (config, map) = connector_config(&name, map, &api.herder.provider_policy())?;
    let info = api.herder.create(config, map).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/connectors/{name}"))],
        Json(info),
    )
        .into_response())
}

pub async fn info(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    Ok(Json(api.herder.info(&name).await?).into_response())
}

pub async fn delete(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    api.herder.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn config(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    Ok(Json(api.herder.info(&name).await?.config).into_response())
}

pub async fn put_config(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> Answer {
    let body = parse_json(&body)?;
    let Value::Object(m) = body else {
        return Err(HerderError::BadRequest(
            "the body must be the connector's config: an object of keys".into(),
        ));
    };
    let (config, map) = connector_config(
        &name,
        flat_map(&m, "config")?,
        &api.herder.provider_policy(),
    )?;
    let (created, info) = api.herder.put_config(config, map).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(info)).into_response())
}

pub async fn status(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    Ok(Json(api.herder.status(&name).await?).into_response())
}

pub async fn tasks(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let tasks: Vec<Value> = api
        .herder
        .task_configs(&name)
        .await?
        .into_iter()
        .map(|(task, config)| json!({"id": {"connector": name, "task": task}, "config": config}))
        .collect();
    Ok(Json(tasks).into_response())
}

pub async fn task_status(
    State(api): State<Api>,
    Path((name, task)): Path<(String, String)>,
) -> Answer {
    let task = task_number(&task)?;
    Ok(Json(api.herder.task_status(&name, task).await?).into_response())
}

pub async fn restart_task(
    State(api): State<Api>,
    Path((name, task)): Path<(String, String)>,
) -> Answer {
    api.herder.restart_task(&name, task_number(&task)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn restart(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(&q);
    let include_tasks = flag(&p, "includeTasks")?;
    let only_failed = flag(&p, "onlyFailed")?;
    let status = api
        .herder
        .restart(&name, include_tasks, only_failed)
        .await?;
    // Connect: 204 for the connector alone, 202 with the status otherwise.
    if !include_tasks && !only_failed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

pub async fn pause(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    api.herder.pause(&name).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn resume(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    api.herder.resume(&name).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn stop(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    api.herder.stop(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn offsets(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    Ok(Json(api.herder.offsets(&name).await?).into_response())
}

pub async fn alter_offsets(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer {
    let body = parse_json(&body)?;
    Ok(Json(api.herder.alter_offsets(&name, &body).await?).into_response())
}

pub async fn reset_offsets(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    Ok(Json(api.herder.reset_offsets(&name).await?).into_response())
}

pub async fn plugins(State(api): State<Api>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q);
    let connectors_only = match p.iter().find(|(k, _)| k == "connectorsOnly") {
        None => true,
        Some(_) => flag(&p, "connectorsOnly")?,
    };
    Ok(Json(api.herder.plugins(connectors_only).await?).into_response())
}

pub async fn plugin_config(State(api): State<Api>, Path(plugin): Path<String>) -> Answer {
    Ok(Json(api.herder.plugin_config(&plugin).await?).into_response())
}

pub async fn validate(State(api): State<Api>, Path(plugin): Path<String>, body: Bytes) -> Answer {
    let body = parse_json(&body)?;
    let Value::Object(m) = body else {
        return Err(HerderError::BadRequest(
            "the body must be the connector's config: an object of keys".into(),
        ));
    };
    let map = flat_map(&m, "config")?;
    Ok(Json(api.herder.validate(&plugin, map).await?).into_response())
}
