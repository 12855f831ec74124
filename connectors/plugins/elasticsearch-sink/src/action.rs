//! One record → one bulk action (the NDJSON lines), or the reason it cannot be
//! one. Pure functions, unit-tested natively.

use serde_json::{json, Value};
use wharf_sdk::Record;

use crate::settings::{OnNull, Settings, WriteMethod};

/// A bulk action ready to go.
#[derive(Debug, PartialEq, Eq)]
pub struct Doc {
    /// The NDJSON lines: action line, and source line unless a delete.
    pub lines: Vec<u8>,
    /// `index/id` when the action writes a keyed document that later records
    /// may write again: actions on one key must reach the engine in order.
    /// None for ids that are unique per record (`key.ignore`) and for data
    /// streams (append-only), where order cannot change the outcome.
    pub key: Option<String>,
    /// A version conflict on this action only means this record or a newer
    /// one is already stored (external version = Kafka offset, or a create
    /// whose id is topic+partition+offset): the action is done.
    pub replay_safe: bool,
}

/// What to do with a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this action.
    Send(Doc),
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
    let key = match (&id, s.key_ignore, &s.data_stream) {
        (Some(id), false, None) => Some(format!("{index}/{id}")),
        _ => None,
    };
    // External versioning by Kafka offset makes a replay (or an older copy
    // arriving late) a no-op instead of an overwrite, as Confluent's sink
    // does. Only where every write of the document is versioned so: upserts
    // (`update` takes no external version) leave the engine's own counter on
    // the document, which an offset-versioned delete could trail and then be
    // refused. Their order is kept by the sink instead (see `Lanes`).
    let versioned =
        r.offset.is_some() && s.data_stream.is_none() && s.write_method == WriteMethod::Insert;
    let version = |meta: &mut serde_json::Map<String, Value>| {
        if let (true, Some(o)) = (versioned, r.offset) {
            meta.insert("version".into(), json!(o));
            meta.insert("version_type".into(), json!("external"));
        }
    };
    // A create with a topic+partition+offset id conflicts only with itself.
    let replay_safe = versioned || (s.data_stream.is_some() && s.key_ignore && id.is_some());
    let send = |lines: Vec<u8>| {
        Action::Send(Doc {
            lines,
            key: key.clone(),
            replay_safe,
        })
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
                    send(out)
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
    send(out)
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

/// What a bulk item's outcome means for its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written (or a delete that found nothing to delete).
    Done,
    /// The engine refused it as a version conflict; whether that is a replay
    /// or a lost write depends on how the action was versioned.
    Conflict,
    /// May succeed if sent again.
    Retry,
    /// Will never succeed as it is (a mapping or parse error).
    Refused,
}

pub fn outcome(status: u16, error_type: &str, is_delete: bool) -> Outcome {
    if (200..300).contains(&status) || (status == 404 && is_delete && error_type.is_empty()) {
        Outcome::Done
    } else if status == 409 && error_type == "version_conflict_engine_exception" {
        Outcome::Conflict
    } else if retriable(status, error_type) {
        Outcome::Retry
    } else {
        Outcome::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{OnConflict, OnMalformed};

    fn settings() -> Settings {
        Settings {
            key_ignore: false,
            on_null: OnNull::Delete,
            on_malformed: OnMalformed::Fail,
            on_version_conflict: OnConflict::Fail,
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

    fn doc(a: Action) -> Doc {
        match a {
            Action::Send(d) => d,
            other => panic!("not sent: {other:?}"),
        }
    }

    fn lines(a: Action) -> Vec<Value> {
        let b = doc(a).lines;
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
        let conflict = "version_conflict_engine_exception";
        assert_eq!(outcome(201, "", false), Outcome::Done);
        assert_eq!(outcome(409, conflict, false), Outcome::Conflict);
        assert_eq!(outcome(409, conflict, true), Outcome::Conflict);
        assert_eq!(outcome(404, "", true), Outcome::Done);
        assert_eq!(
            outcome(404, "index_not_found_exception", true),
            Outcome::Refused
        );
        assert_eq!(
            outcome(400, "mapper_parsing_exception", false),
            Outcome::Refused
        );
        assert_eq!(
            outcome(429, "es_rejected_execution_exception", false),
            Outcome::Retry
        );
    }

    #[test]
    fn only_offset_versioned_or_offset_named_writes_are_replay_safe() {
        let mut s = settings();
        let d = doc(build(&rec(Some("\"k\""), Some("{}")), &s));
        assert!(
            d.replay_safe,
            "insert carries the offset as external version"
        );
        assert_eq!(d.key.as_deref(), Some("shop-orders/k"));
        let d = doc(build(&rec(Some("\"k\""), None), &s));
        assert!(d.replay_safe, "so does its delete");

        s.write_method = WriteMethod::Upsert;
        let d = doc(build(&rec(Some("\"k\""), Some("{}")), &s));
        assert!(
            !d.replay_safe,
            "an update has no version: a conflict is real"
        );
        let l = lines(build(&rec(Some("\"k\""), None), &s));
        assert_eq!(
            l[0],
            json!({"delete":{"_index":"shop-orders","_id":"k"}}),
            "an upsert's delete is unversioned: the engine's own counter may be past the offset"
        );

        s.write_method = WriteMethod::Insert;
        s.key_ignore = true;
        let d = doc(build(&rec(None, Some("{}")), &s));
        assert_eq!(d.key, None, "ids unique per record need no ordering");

        s.data_stream = Some("logs-app".into());
        let d = doc(build(&rec(None, Some("{}")), &s));
        assert!(
            d.replay_safe,
            "a create named by its offset conflicts only with itself"
        );
        s.key_ignore = false;
        let d = doc(build(&rec(Some("\"k\""), Some("{}")), &s));
        assert!(
            !d.replay_safe,
            "a keyed create conflicts with another record"
        );
        assert_eq!(d.key, None, "data streams are append-only");
    }
}
