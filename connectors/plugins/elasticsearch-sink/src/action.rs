//! One record → one bulk action (the NDJSON lines), or the reason it cannot be
//! one. Pure functions, unit-tested natively.

use serde_json::{json, Value};
use wharf_sdk::Record;

use crate::settings::{OnNull, Settings, WriteMethod};

/// What to do with a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these NDJSON lines (action line, and source line unless a delete).
    Send(Vec<u8>),
    /// Drop it on purpose (a null value with `behavior.on.null.values=ignore`).
    Skip,
    /// It cannot be indexed: a malformed document.
    Malformed(String),
    /// It cannot be indexed and no malformed-document policy covers it.
    Invalid(String),
}

/// The index (or data stream) a topic writes to.
pub fn index_for(topic: &str, s: &Settings) -> String {
    if let Some(ds) = &s.data_stream {
        return format!("{ds}-{topic}").to_ascii_lowercase();
    }
    s.index_map
        .get(topic)
        .cloned()
        .unwrap_or_else(|| topic.to_string())
        .to_ascii_lowercase()
}

/// The document id: topic+partition+offset with `key.ignore`, else the key.
/// A JSON string key is its text, a number its digits, an object with one
/// field (a Debezium primary key) that field's value, any other JSON its
/// compact text; a key that is not JSON is used as UTF-8.
pub fn document_id(r: &Record, s: &Settings) -> Result<String, String> {
    if s.key_ignore {
        return Ok(format!(
            "{}+{}+{}",
            r.topic,
            r.partition.unwrap_or(-1),
            r.offset.unwrap_or(-1)
        ));
    }
    let key = r.key.as_deref().ok_or_else(|| {
        "the record has no key, and key.ignore=false makes the key the document id".to_string()
    })?;
    let id = match serde_json::from_slice::<Value>(key) {
        Ok(v) => scalar_text(wharf_sdk::json::payload(&v)),
        Err(_) => String::from_utf8_lossy(key).into_owned(),
    };
    if id.is_empty() {
        return Err("the record key is empty: no document id".into());
    }
    if id.len() > 512 {
        return Err(format!("document id of {} bytes exceeds 512", id.len()));
    }
    Ok(id)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.len() == 1 => m.values().next().map(scalar_text).unwrap_or_default(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Builds the bulk lines for one record.
pub fn build(r: &Record, s: &Settings) -> Action {
    let index = index_for(&r.topic, s);
    let id = match document_id(r, s) {
        Ok(id) => Some(id),
        Err(_) if r.value.is_some() && s.data_stream.is_some() => None,
        Err(e) => return Action::Invalid(e),
    };
    // External versioning by Kafka offset makes a replay (or an older copy
    // arriving late) a no-op instead of an overwrite, as Confluent's sink does.
    let version = |meta: &mut serde_json::Map<String, Value>| {
        if let (Some(o), None) = (r.offset, &s.data_stream) {
            meta.insert("version".into(), json!(o));
            meta.insert("version_type".into(), json!("external"));
        }
    };
    let Some(value) = r.value.as_deref() else {
        return match s.on_null {
            OnNull::Ignore => Action::Skip,
            OnNull::Fail => Action::Invalid(
                "null value (tombstone): set behavior.on.null.values to ignore or delete".into(),
            ),
            OnNull::Delete => match id {
                None => Action::Invalid("a delete needs a document id".into()),
                Some(id) => {
                    let mut meta = serde_json::Map::new();
                    meta.insert("_index".into(), json!(index));
                    meta.insert("_id".into(), json!(id));
                    version(&mut meta);
                    let mut out = json!({ "delete": meta }).to_string().into_bytes();
                    out.push(b'\n');
                    Action::Send(out)
                }
            },
        };
    };
    let mut doc: Value = match serde_json::from_slice(value) {
        Ok(v) => v,
        Err(e) => return Action::Malformed(format!("the value is not JSON: {e}")),
    };
    // A Connect JSON envelope carries the document in its payload.
    if let Value::Object(m) = &mut doc {
        if m.contains_key("schema") && m.contains_key("payload") {
            doc = m.remove("payload").unwrap_or(Value::Null);
        }
    }
    if !doc.is_object() {
        return Action::Malformed(format!(
            "the value is a JSON {}, not an object",
            kind_of(&doc)
        ));
    }
    if s.data_stream.is_some() {
        if let (Value::Object(m), Some(ts)) = (&mut doc, r.timestamp) {
            m.entry("@timestamp").or_insert(json!(ts));
        }
    }
    let mut meta = serde_json::Map::new();
    meta.insert("_index".into(), json!(index));
    if let Some(id) = &id {
        meta.insert("_id".into(), json!(id));
    }
    let (op, source) = match (s.data_stream.is_some(), s.write_method) {
        (true, _) => ("create", doc),
        (false, WriteMethod::Upsert) => ("update", json!({ "doc": doc, "doc_as_upsert": true })),
        (false, WriteMethod::Insert) => {
            version(&mut meta);
            ("index", doc)
        }
    };
    let mut out = json!({ op: meta }).to_string().into_bytes();
    out.push(b'\n');
    // serde_json writes compactly: no newline can break the NDJSON framing.
    match serde_json::to_writer(&mut out, &source) {
        Ok(()) => {}
        Err(e) => return Action::Malformed(format!("cannot serialize the document: {e}")),
    }
    out.push(b'\n');
    Action::Send(out)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a failed item may succeed if sent again.
pub fn retriable(status: u16, error_type: &str) -> bool {
    status == 429
        || status >= 500
        || matches!(
            error_type,
            "es_rejected_execution_exception"
                | "circuit_breaking_exception"
                | "unavailable_shards_exception"
                | "cluster_block_exception"
                | "process_cluster_event_timeout_exception"
                | "timeout_exception"
        )
}

/// Whether a failed item is in fact done: a newer or equal version is
/// already stored (a replay), or a delete found nothing to delete.
pub fn already_done(status: u16, error_type: &str, is_delete: bool) -> bool {
    (status == 409 && error_type == "version_conflict_engine_exception")
        || (status == 404 && is_delete && error_type.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::OnMalformed;

    fn settings() -> Settings {
        Settings {
            key_ignore: false,
            on_null: OnNull::Delete,
            on_malformed: OnMalformed::Fail,
            write_method: WriteMethod::Insert,
            batch_size: 10,
            max_in_flight: 1,
            linger_ms: 0,
            max_retries: 1,
            retry_backoff_ms: 1,
            flush_timeout_ms: 1000,
            index_map: [("Orders".to_string(), "shop-orders".to_string())].into(),
            data_stream: None,
        }
    }

    fn rec(key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            topic: "Orders".into(),
            partition: Some(2),
            offset: Some(41),
            timestamp: Some(1_700_000_000_000),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![],
            source: None,
        }
    }

    fn lines(a: Action) -> Vec<Value> {
        let Action::Send(b) = a else {
            panic!("not sent: {a:?}")
        };
        std::str::from_utf8(&b)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn ids_come_from_keys_or_coordinates() {
        let mut s = settings();
        assert_eq!(
            document_id(&rec(Some("\"a-1\""), None), &s).as_deref(),
            Ok("a-1")
        );
        assert_eq!(
            document_id(&rec(Some("{\"id\":7}"), None), &s).as_deref(),
            Ok("7")
        );
        assert_eq!(
            document_id(&rec(Some("plain"), None), &s).as_deref(),
            Ok("plain")
        );
        assert!(document_id(&rec(None, Some("{}")), &s).is_err());
        s.key_ignore = true;
        assert_eq!(
            document_id(&rec(None, Some("{}")), &s).as_deref(),
            Ok("Orders+2+41")
        );
    }

    #[test]
    fn insert_is_versioned_by_offset_into_the_mapped_index() {
        let l = lines(build(&rec(Some("\"k\""), Some("{\"n\":1}\n")), &settings()));
        assert_eq!(
            l[0],
            json!({"index":{"_index":"shop-orders","_id":"k","version":41,"version_type":"external"}})
        );
        assert_eq!(l[1], json!({"n":1}));
    }

    #[test]
    fn upsert_merges_and_envelopes_are_unwrapped() {
        let mut s = settings();
        s.write_method = WriteMethod::Upsert;
        let l = lines(build(
            &rec(
                Some("\"k\""),
                Some(r#"{"schema":{"type":"struct"},"payload":{"n":2}}"#),
            ),
            &s,
        ));
        assert_eq!(l[0], json!({"update":{"_index":"shop-orders","_id":"k"}}));
        assert_eq!(l[1], json!({"doc":{"n":2},"doc_as_upsert":true}));
    }

    #[test]
    fn tombstones_follow_behavior_on_null_values() {
        let mut s = settings();
        let l = lines(build(&rec(Some("\"k\""), None), &s));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["delete"]["_id"], "k");
        s.on_null = OnNull::Ignore;
        assert_eq!(build(&rec(Some("\"k\""), None), &s), Action::Skip);
        s.on_null = OnNull::Fail;
        assert!(matches!(
            build(&rec(Some("\"k\""), None), &s),
            Action::Invalid(_)
        ));
    }

    #[test]
    fn values_that_are_not_json_objects_are_malformed() {
        let s = settings();
        assert!(matches!(
            build(&rec(Some("1"), Some("not json")), &s),
            Action::Malformed(_)
        ));
        assert!(matches!(
            build(&rec(Some("1"), Some("[1,2]")), &s),
            Action::Malformed(_)
        ));
    }

    #[test]
    fn data_streams_create_with_a_timestamp() {
        let mut s = settings();
        s.data_stream = Some("logs-app".into());
        let l = lines(build(&rec(Some("\"k\""), Some("{\"msg\":\"hi\"}")), &s));
        assert_eq!(
            l[0],
            json!({"create":{"_index":"logs-app-orders","_id":"k"}})
        );
        assert_eq!(l[1]["@timestamp"], json!(1_700_000_000_000i64));
    }

    #[test]
    fn failures_are_sorted() {
        assert!(retriable(429, "es_rejected_execution_exception"));
        assert!(retriable(503, ""));
        assert!(!retriable(400, "mapper_parsing_exception"));
        assert!(already_done(
            409,
            "version_conflict_engine_exception",
            false
        ));
        assert!(already_done(404, "", true));
        assert!(!already_done(404, "index_not_found_exception", true));
    }
}
