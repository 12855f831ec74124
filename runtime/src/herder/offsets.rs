//! KIP-875: reading, altering and resetting a connector's offsets through
//! the REST API. Sources keep theirs in the offset store; sinks in their
//! consumer group. Changes need the connector STOPPED, as in Connect.

use serde_json::{json, Value};

use crate::plugin::PluginKind;
use crate::worker::Target;

use super::{Herder, HerderError};

type ConnectorsGuard<'a> =
    tokio::sync::MutexGuard<'a, std::collections::BTreeMap<String, super::Entry>>;

const NOT_STOPPED: &str = "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{connector}/stop' endpoint";

/// One requested change: partition and new offset (None removes it).
type Change = (Value, Option<Value>);

fn parse_body(body: &Value) -> Result<Vec<Change>, HerderError> {
    let bad = |m: String| HerderError::BadRequest(m);
    let list = body
        .get("offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad(
                "the body must be {\"offsets\": [{\"partition\": {...}, \"offset\": {...}}]}"
                    .into(),
            )
        })?;
    if list.is_empty() {
        return Err(bad("'offsets' must list at least one partition".into()));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let partition = match e.get("partition") {
                Some(p @ Value::Object(_)) => p.clone(),
                _ => return Err(bad(format!("offsets[{i}]: 'partition' must be an object"))),
            };
            let offset = match e.get("offset") {
                None | Some(Value::Null) => None,
                Some(o @ Value::Object(_)) => Some(o.clone()),
                Some(_) => {
                    return Err(bad(format!(
                        "offsets[{i}]: 'offset' must be an object or null"
                    )))
                }
            };
            Ok((partition, offset))
        })
        .collect()
}

/// A sink partition `{kafka_topic, kafka_partition}` and offset `{kafka_offset}`.
fn sink_change(i: usize, (p, o): &Change) -> Result<(String, i32, Option<i64>), HerderError> {
    let bad = |m: &str| HerderError::BadRequest(format!("offsets[{i}]: {m}"));
    let topic = p
        .get("kafka_topic")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a sink partition needs 'kafka_topic' (string)"))?;
    let partition = p
        .get("kafka_partition")
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad("a sink partition needs 'kafka_partition' (integer >= 0)"))?;
    let offset = match o {
        None => None,
        Some(o) => Some(
            o.get("kafka_offset")
                .and_then(Value::as_i64)
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("a sink offset needs 'kafka_offset' (integer >= 0)"))?,
        ),
    };
    Ok((topic.to_string(), partition, offset))
}

fn kafka_err(e: crate::kafka::KafkaError) -> HerderError {
    match e {
        crate::kafka::KafkaError::GroupBusy(m) => HerderError::Conflict(m),
        e => HerderError::Internal(e.to_string()),
    }
}

impl Herder {
    /// What the connector and its kind are, refusing unknown names. The
    /// guard comes back too: a change holds it until it is done, so the
    /// connector cannot be resumed between the STOPPED check and the write.
    async fn offsets_target(
        &self,
        name: &str,
        must_be_stopped: bool,
    ) -> Result<(PluginKind, Vec<String>, ConnectorsGuard<'_>), HerderError> {
        let map = self.connectors.lock().await;
        let e = map
            .get(name)
            .ok_or_else(|| HerderError::NotFound(name.into()))?;
        if must_be_stopped && (e.target != Target::Stopped || e.run.is_some()) {
            return Err(HerderError::BadRequest(
                NOT_STOPPED.replace("{connector}", name),
            ));
        }
        let (kind, topics) = (e.prepared.plugin.kind(), e.prepared.topics().to_vec());
        Ok((kind, topics, map))
    }

    fn no_kafka_for_sink(&self) -> HerderError {
        HerderError::BadRequest(
            "a sink's offsets live in its Kafka consumer group; this worker has no Kafka (bootstrap.servers)".into(),
        )
    }

    /// GET /connectors/{name}/offsets.
    pub async fn offsets(&self, name: &str) -> Result<Value, HerderError> {
        let (kind, topics, map) = self.offsets_target(name, false).await?;
        drop(map);
        let offsets: Vec<Value> = if kind == PluginKind::Sink {
            match self.kafka() {
                None => Vec::new(),
                Some(hub) => hub
                    .group_offsets(&format!("connect-{name}"), &topics)
                    .await
                    .map_err(|e| HerderError::Internal(e.to_string()))?
                    .into_iter()
                    .map(|(t, p, o)| {
                        json!({
                            "partition": {"kafka_topic": t, "kafka_partition": p},
                            "offset": {"kafka_offset": o},
                        })
                    })
                    .collect(),
            }
        } else {
            self.ctx
                .offsets
                .load(name)
                .await
                .into_iter()
                .filter_map(|(p, o)| {
                    Some(json!({
                        "partition": serde_json::from_str::<Value>(&p).ok()?,
                        "offset": serde_json::from_str::<Value>(&o).ok()?,
                    }))
                })
                .collect()
        };
        Ok(json!({ "offsets": offsets }))
    }

    /// PATCH /connectors/{name}/offsets.
    pub async fn alter_offsets(&self, name: &str, body: &Value) -> Result<Value, HerderError> {
        let changes = parse_body(body)?;
        let (kind, topics, _held) = self.offsets_target(name, true).await?;
        if kind == PluginKind::Sink {
            let hub = self.kafka().ok_or_else(|| self.no_kafka_for_sink())?;
            let changes = changes
                .iter()
                .enumerate()
                .map(|(i, c)| sink_change(i, c))
                .collect::<Result<Vec<_>, _>>()?;
            hub.alter_group_offsets(&format!("connect-{name}"), &topics, changes)
                .await
                .map_err(kafka_err)?;
        } else {
            self.ctx
                .offsets
                .alter(name, &changes)
                .await
                .map_err(|e| HerderError::Internal(e.to_string()))?;
        }
        tracing::info!(connector = name, "offsets altered through the REST API");
        Ok(json!({"message": "The offsets for this connector have been altered successfully"}))
    }

    /// DELETE /connectors/{name}/offsets.
    pub async fn reset_offsets(&self, name: &str) -> Result<Value, HerderError> {
        let (kind, _, _held) = self.offsets_target(name, true).await?;
        if kind == PluginKind::Sink {
            if let Some(hub) = self.kafka() {
                hub.delete_group(&format!("connect-{name}"))
                    .await
                    .map_err(kafka_err)?;
            }
        } else {
            self.ctx
                .offsets
                .reset(name)
                .await
                .map_err(|e| HerderError::Internal(e.to_string()))?;
        }
        tracing::info!(connector = name, "offsets reset through the REST API");
        Ok(json!({"message": "The offsets for this connector have been reset successfully"}))
    }
}
