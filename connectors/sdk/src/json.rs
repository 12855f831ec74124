//! JSON record values, as Kafka Connect's JSON converter writes them: plain
//! JSON, or the `{"schema": ..., "payload": ...}` envelope, whose payload is
//! what transforms edit.

pub use serde_json::{Map, Value};

use crate::{Error, Result};

/// Parses a value; `None` for a null (tombstone) value.
pub fn parse(value: &Option<Vec<u8>>) -> Result<Option<Value>> {
    match value {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| Error::Fatal(format!("record value is not JSON: {e}"))),
    }
}

/// The part of a value transforms look at: the envelope's payload if present.
pub fn payload(v: &Value) -> &Value {
    match v {
        Value::Object(m) if m.contains_key("schema") && m.contains_key("payload") => &m["payload"],
        other => other,
    }
}

pub fn payload_mut(v: &mut Value) -> &mut Value {
    let is_envelope =
        matches!(v, Value::Object(m) if m.contains_key("schema") && m.contains_key("payload"));
    if is_envelope {
        &mut v["payload"]
    } else {
        v
    }
}

/// A field by dotted path (`after.id`).
pub fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, part| cur.get(part))
}

/// Edits the payload object of a JSON value in place; null values pass
/// untouched, non-object payloads are an error naming the record's topic.
pub fn edit_object(
    value: &mut Option<Vec<u8>>,
    topic: &str,
    f: impl FnOnce(&mut Map<String, Value>),
) -> Result<()> {
    let Some(mut v) = parse(value)? else {
        return Ok(());
    };
    match payload_mut(&mut v) {
        Value::Object(m) => f(m),
        _ => {
            return Err(Error::Fatal(format!(
                "record on topic '{topic}': value is not a JSON object"
            )))
        }
    }
    *value = Some(serde_json::to_vec(&v).map_err(|e| Error::Fatal(e.to_string()))?);
    Ok(())
}
