//! Kafka Connect's converters, between a plugin's bytes and Kafka's, chosen
//! per connector (`key.converter`, `value.converter`, falling back to the
//! worker's) by Connect's class names or short aliases:
//! - `org.apache.kafka.connect.json.JsonConverter` (`json`): values must be
//!   JSON; with `<key|value>.converter.schemas.enable` (Connect's default:
//!   true) they travel as `{"schema":..,"payload":..}`, the schema inferred
//!   from the JSON on the way in (unless the plugin wrote the schema itself:
//!   a source task is told, see `tell_source`) and stripped on the way out;
//! - `org.apache.kafka.connect.storage.StringConverter` (`string`): UTF-8;
//! - `org.apache.kafka.connect.converters.ByteArrayConverter` (`bytes`):
//!   bytes as they are. Without any converter configured, bytes pass as they
//!   are (a plugin's JSON lands in Kafka as schemaless JSON).

use serde_json::{json, Map, Value};

use crate::config::{ConfigError, ConnectorConfig, WorkerConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Converter {
    Bytes,
    String,
    Json { schemas: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Converters {
    pub key: Converter,
    pub value: Converter,
}

impl Default for Converters {
    fn default() -> Self {
        Converters {
            key: Converter::Bytes,
            value: Converter::Bytes,
        }
    }
}

fn parse_one(
    c: &ConnectorConfig,
    worker: &WorkerConfig,
    which: &str,
) -> Result<Converter, ConfigError> {
    let key = format!("{which}.converter");
    let schemas_key = format!("{which}.converter.schemas.enable");
    let get = |k: &str| c.get(k).or_else(|| worker.map.get(k).map(String::as_str));
    let Some(class) = get(&key).map(str::trim) else {
        return Ok(Converter::Bytes);
    };
    let schemas = match get(&schemas_key).map(str::trim) {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => return Err(c.key_error(&schemas_key, format!("'{v}' is not a boolean"))),
    };
    match class {
        "org.apache.kafka.connect.json.JsonConverter" | "json" => Ok(Converter::Json { schemas }),
        "org.apache.kafka.connect.storage.StringConverter" | "string" => Ok(Converter::String),
        "org.apache.kafka.connect.converters.ByteArrayConverter" | "bytes" => Ok(Converter::Bytes),
        other => Err(c.key_error(
            &key,
            format!(
                "'{other}' is not a supported converter (JsonConverter, StringConverter, ByteArrayConverter)"
            ),
        )),
    }
}

impl Converters {
    pub fn from_config(c: &ConnectorConfig, worker: &WorkerConfig) -> Result<Self, ConfigError> {
        Ok(Converters {
            key: parse_one(c, worker, "key")?,
            value: parse_one(c, worker, "value")?,
        })
    }

    /// Sets `key.converter.schemas.enable` and `value.converter.schemas.enable`
    /// in a source task's config to whether that side's converter carries
    /// schemas (worker defaults included), so a plugin that knows its exact
    /// schemas (postgres-cdc: Debezium's) can write `{schema, payload}` itself.
    pub fn tell_source(&self, task_config: &mut Vec<(String, String)>) {
        for (which, c) in [("key", self.key), ("value", self.value)] {
            let key = format!("{which}.converter.schemas.enable");
            let on = (c == Converter::Json { schemas: true }).to_string();
            task_config.retain(|(k, _)| *k != key);
            task_config.push((key, on));
        }
    }

    pub fn is_passthrough(&self) -> bool {
        self.key == Converter::Bytes && self.value == Converter::Bytes
    }
}

impl Converter {
    /// Plugin bytes to Kafka bytes (source side).
    pub fn encode_for_kafka(self, data: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, String> {
        let Some(bytes) = data else {
            return Ok(None);
        };
        match self {
            Converter::Bytes => Ok(Some(bytes)),
            Converter::String => utf8(bytes).map(|s| Some(s.into_bytes())),
            Converter::Json { schemas: false } => {
                parse(&bytes)?;
                Ok(Some(bytes))
            }
            Converter::Json { schemas: true } => {
                let v = parse(&bytes)?;
                if is_enveloped(&v) {
                    return Ok(Some(bytes));
                }
                let mut schema = infer_schema(&v);
                if let Some(o) = schema.as_object_mut() {
                    o.insert("optional".into(), Value::Bool(false));
                }
                Ok(Some(
                    json!({ "schema": schema, "payload": v })
                        .to_string()
                        .into_bytes(),
                ))
            }
        }
    }

    /// Kafka bytes to plugin bytes (sink side).
    pub fn decode_from_kafka(self, data: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, String> {
        let Some(bytes) = data else {
            return Ok(None);
        };
        match self {
            Converter::Bytes => Ok(Some(bytes)),
            Converter::String => utf8(bytes).map(|s| Some(s.into_bytes())),
            Converter::Json { schemas: false } => {
                parse(&bytes)?;
                Ok(Some(bytes))
            }
            Converter::Json { schemas: true } => match parse(&bytes)? {
                Value::Object(mut o) if o.contains_key("schema") && o.contains_key("payload") => {
                    match o.remove("payload") {
                        Some(Value::Null) | None => Ok(None),
                        Some(p) => Ok(Some(p.to_string().into_bytes())),
                    }
                }
                _ => Err("JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields; \
                          set schemas.enable=false for plain JSON"
                    .into()),
            },
        }
    }
}

/// Already `{"schema": {...}, "payload": ...}`: written by a plugin that
/// knows its schema.
fn is_enveloped(v: &Value) -> bool {
    matches!(v, Value::Object(o) if o.len() == 2
        && o.get("schema").is_some_and(Value::is_object)
        && o.contains_key("payload"))
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

fn parse(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
}

/// A Connect schema for a JSON value; every part optional, as JSON gives no
/// guarantee a field is always present.
fn infer_schema(v: &Value) -> Value {
    match v {
        Value::Null => json!({"type": "string", "optional": true}),
        Value::Bool(_) => json!({"type": "boolean", "optional": true}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "int64", "optional": true}),
        Value::Number(_) => json!({"type": "double", "optional": true}),
        Value::String(_) => json!({"type": "string", "optional": true}),
        Value::Array(items) => json!({
            "type": "array",
            "items": items.first().map_or_else(|| json!({"type": "string", "optional": true}), infer_schema),
            "optional": true
        }),
        Value::Object(fields) => {
            let fields: Vec<Value> = fields
                .iter()
                .map(|(name, v)| {
                    let mut f = infer_schema(v);
                    if let Some(o) = f.as_object_mut() {
                        o.insert("field".into(), Value::String(name.clone()));
                    }
                    f
                })
                .collect();
            let mut o = Map::new();
            o.insert("type".into(), "struct".into());
            o.insert("fields".into(), Value::Array(fields));
            o.insert("optional".into(), Value::Bool(true));
            Value::Object(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_schemas_round_trips_and_infers_types() {
        let c = Converter::Json { schemas: true };
        let wire = c
            .encode_for_kafka(Some(
                br#"{"id":7,"name":"x","price":1.5,"ok":true}"#.to_vec(),
            ))
            .expect("convert")
            .expect("value");
        let v: Value = serde_json::from_slice(&wire).expect("json");
        assert_eq!(v["schema"]["type"], "struct");
        assert_eq!(v["schema"]["optional"], false);
        let types: Vec<(String, String)> = v["schema"]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap_or_default().into(),
                    f["type"].as_str().unwrap_or_default().into(),
                )
            })
            .collect();
        assert!(types.contains(&("id".into(), "int64".into())), "{types:?}");
        assert!(
            types.contains(&("price".into(), "double".into())),
            "{types:?}"
        );
        assert_eq!(v["payload"]["name"], "x");
        let back = c
            .decode_from_kafka(Some(wire))
            .expect("back")
            .expect("value");
        assert_eq!(
            serde_json::from_slice::<Value>(&back).expect("json"),
            json!({"id":7,"name":"x","price":1.5,"ok":true})
        );
    }

    #[test]
    fn bad_input_is_an_error_and_tombstones_pass() {
        let c = Converter::Json { schemas: false };
        assert!(c.encode_for_kafka(Some(b"{nope".to_vec())).is_err());
        assert_eq!(c.encode_for_kafka(None), Ok(None));
        assert!(Converter::Json { schemas: true }
            .decode_from_kafka(Some(br#"{"a":1}"#.to_vec()))
            .is_err());
        assert!(Converter::String
            .decode_from_kafka(Some(vec![0xff, 0xfe]))
            .is_err());
    }

    #[test]
    fn a_plugins_own_schema_is_kept_and_sources_are_told() {
        let c = Converter::Json { schemas: true };
        let own = br#"{"schema":{"type":"struct","name":"x.Key","fields":[]},"payload":{"id":1}}"#;
        let wire = c.encode_for_kafka(Some(own.to_vec())).expect("convert");
        assert_eq!(wire.as_deref(), Some(&own[..]));
        let converters = Converters {
            key: Converter::Json { schemas: true },
            value: Converter::Json { schemas: false },
        };
        let mut cfg = vec![(
            "value.converter.schemas.enable".to_string(),
            "true".to_string(),
        )];
        converters.tell_source(&mut cfg);
        cfg.sort();
        assert_eq!(
            cfg,
            [
                (
                    "key.converter.schemas.enable".to_string(),
                    "true".to_string()
                ),
                (
                    "value.converter.schemas.enable".to_string(),
                    "false".to_string()
                ),
            ]
        );
    }
}

/// Which way records cross.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    ToKafka,
    FromKafka,
}

/// Converts keys and values; a record that does not convert fails the task,
/// or with `errors.tolerance=all` is reported (and dead-lettered) and dropped.
pub async fn convert(
    records: Vec<wharf_records::Record>,
    converters: Converters,
    direction: Direction,
    reporter: &mut super::errors::Reporter,
    id: &crate::plugin::TaskId,
    counters: &super::status::TaskCounters,
) -> Result<Vec<wharf_records::Record>, String> {
    use super::errors::Stage;
    if converters.is_passthrough() {
        return Ok(records);
    }
    let mut out = Vec::with_capacity(records.len());
    for mut r in records {
        let conv = |c: Converter, data: Option<Vec<u8>>| match direction {
            Direction::ToKafka => c.encode_for_kafka(data),
            Direction::FromKafka => c.decode_from_kafka(data),
        };
        let converted = conv(converters.key, r.key.clone())
            .map_err(|e| (Stage::KeyConverter, e))
            .and_then(|k| {
                conv(converters.value, r.value.clone())
                    .map(|v| (k, v))
                    .map_err(|e| (Stage::ValueConverter, e))
            });
        let failure = match converted {
            Ok((k, v)) => {
                r.key = k;
                r.value = v;
                out.push(r);
                continue;
            }
            Err(f) => f,
        };
        let (stage, message) = failure;
        if !reporter.policy.tolerate_all {
            return Err(format!(
                "{stage:?} failed for a record of topic '{}' (partition {}, offset {}): {message}",
                r.topic,
                r.partition.unwrap_or(-1),
                r.offset.unwrap_or(-1)
            ));
        }
        let class = match stage {
            Stage::KeyConverter => "key.converter",
            _ => "value.converter",
        };
        reporter
            .refuse(&r, id, stage, class, &message, counters)
            .await?;
    }
    Ok(out)
}
