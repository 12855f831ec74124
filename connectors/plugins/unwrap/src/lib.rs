//! `unwrap`: Debezium's ExtractNewRecordState. A change event
//! `{before, after, source, op, ts_ms}` becomes its `after` state, so sinks
//! such as `elasticsearch-sink` see plain rows. Deletes and tombstones follow
//! `delete.tombstone.handling.mode` (Debezium 2.5+) or the older
//! `delete.handling.mode` + `drop.tombstones`; `add.fields` / `add.headers`
//! copy envelope or source fields (`op`, `table`, `lsn`, `source.ts_ms`, ...)
//! under a `__` prefix. Records that are not change events pass unchanged.
//! A `{schema, payload}` event (JsonConverter with schemas) becomes a
//! `{schema, payload}` row: the schema of `after` (Debezium's `<topic>.Value`),
//! with the added fields as optional fields of their envelope types and
//! `__deleted` as an optional string, as Debezium writes it.

use wharf_sdk::connect::schema;
use wharf_sdk::json::{self, Map, Value};
use wharf_sdk::{Config, ConfigKey, Error, Plugin, Record, Result, Transform};

/// What happens to delete events and tombstones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deletes {
    /// Deletes and tombstones removed.
    Drop,
    /// Deletes removed, tombstones kept.
    Tombstone,
    /// Deletes become `before` + `__deleted: "true"`; tombstones removed.
    Rewrite,
    /// As `Rewrite`, tombstones kept.
    RewriteWithTombstone,
    /// Deletes become tombstones; the original tombstones removed.
    DeleteToTombstone,
    /// (legacy `delete.handling.mode=none`) deletes pass as null values.
    PassAsNull { keep_tombstones: bool },
    /// (legacy `delete.handling.mode=drop` + `drop.tombstones=false`)
    DropKeepTombstones,
}

pub struct Unwrap {
    deletes: Deletes,
    add_fields: Vec<(String, String)>,
    add_headers: Vec<(String, String)>,
}

impl Plugin for Unwrap {
    const NAME: &'static str = "unwrap";
    const DESCRIPTION: &'static str =
        "Flattens Debezium change events to their new row state (ExtractNewRecordState)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("delete.tombstone.handling.mode")
                .default("")
                .doc("drop | tombstone | rewrite | rewrite-with-tombstone | delete-to-tombstone; overrides the two legacy keys when set"),
            ConfigKey::string("delete.handling.mode")
                .default("drop")
                .one_of(&["drop", "rewrite", "none"])
                .doc("Legacy: what a delete event becomes"),
            ConfigKey::boolean("drop.tombstones")
                .default("true")
                .doc("Legacy: remove tombstones"),
            ConfigKey::list("add.fields")
                .default("")
                .doc("Envelope or source fields to copy into the value (op, ts_ms, table, lsn, source.ts_ms, ...)"),
            ConfigKey::string("add.fields.prefix")
                .default("__")
                .doc("Prefix of added fields"),
            ConfigKey::list("add.headers")
                .default("")
                .doc("Envelope or source fields to copy into headers"),
            ConfigKey::string("add.headers.prefix")
                .default("__")
                .doc("Prefix of added headers"),
        ]
    }

    fn validate(config: &Config) -> Vec<wharf_sdk::ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        let config = config.clone().with_defaults(&Self::config_spec());
        if let Err(Error::Fatal(message)) = deletes_of(&config) {
            errors.push(wharf_sdk::ConfigError {
                key: "delete.tombstone.handling.mode".into(),
                message,
            });
        }
        errors
    }
}

fn deletes_of(config: &Config) -> Result<Deletes> {
    if let Some(mode) = config.opt_string("delete.tombstone.handling.mode") {
        return match mode.trim() {
            "drop" => Ok(Deletes::Drop),
            "tombstone" => Ok(Deletes::Tombstone),
            "rewrite" => Ok(Deletes::Rewrite),
            "rewrite-with-tombstone" => Ok(Deletes::RewriteWithTombstone),
            "delete-to-tombstone" => Ok(Deletes::DeleteToTombstone),
            other => Err(Error::Fatal(format!(
                "'{other}' is not one of: drop, tombstone, rewrite, rewrite-with-tombstone, delete-to-tombstone"
            ))),
        };
    }
    let keep_tombstones = !config.bool("drop.tombstones")?;
    Ok(match config.string("delete.handling.mode")?.trim() {
        "rewrite" if keep_tombstones => Deletes::RewriteWithTombstone,
        "rewrite" => Deletes::Rewrite,
        "none" => Deletes::PassAsNull { keep_tombstones },
        _ if keep_tombstones => Deletes::DropKeepTombstones,
        _ => Deletes::Drop,
    })
}

/// JsonConverter's envelope: exactly `schema` (an object) and `payload`.
fn envelope_of(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.len() == 2
        && m.get("schema").is_some_and(Value::is_object)
        && m.contains_key("payload"))
}

/// `source.ts_ms` → ("__source_ts_ms", path), `op` → ("__op", path).
fn named(list: Vec<String>, prefix: &str) -> Vec<(String, String)> {
    list.into_iter()
        .map(|f| (format!("{prefix}{}", f.replace('.', "_")), f))
        .collect()
}

/// A field of the envelope (`op`, `ts_ms`, `source.x`) or, bare, of `source`.
fn lookup<'a>(envelope: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(rest) = path.strip_prefix("source.") {
        return envelope.get("source")?.get(rest);
    }
    match envelope.get(path) {
        Some(v) if path != "source" => Some(v),
        _ => envelope.get("source")?.get(path),
    }
}

fn header_text(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

impl Unwrap {
    fn keeps_tombstones(&self) -> bool {
        matches!(
            self.deletes,
            Deletes::Tombstone
                | Deletes::RewriteWithTombstone
                | Deletes::DropKeepTombstones
                | Deletes::PassAsNull {
                    keep_tombstones: true
                }
        )
    }

    /// The record's new form, or None to drop it.
    fn unwrap(&self, mut r: Record) -> Result<Option<Record>> {
        let Some(parsed) = json::parse(&r.value)? else {
            return Ok(self.keeps_tombstones().then_some(r));
        };
        let Value::Object(envelope) = json::payload(&parsed) else {
            return Ok(Some(r));
        };
        let Some(op) = envelope.get("op").and_then(Value::as_str) else {
            return Ok(Some(r)); // not a change event (heartbeat, schema change)
        };
        let state = match op {
            "c" | "r" | "u" => envelope.get("after").cloned(),
            "d" => match self.deletes {
                Deletes::Rewrite | Deletes::RewriteWithTombstone => envelope.get("before").cloned(),
                Deletes::DeleteToTombstone | Deletes::PassAsNull { .. } => {
                    r.value = None;
                    self.add_headers(&mut r, envelope);
                    return Ok(Some(r));
                }
                _ => return Ok(None),
            },
            "t" => return Ok(None),  // a truncate has no row state
            _ => return Ok(Some(r)), // logical decoding messages and the like
        };
        let mut row = match state {
            Some(Value::Object(m)) => m,
            Some(Value::Null) | None => {
                return Err(Error::Fatal(format!(
                    "change event with op '{op}' has no row state at {}-{}@{}",
                    r.topic,
                    r.partition.unwrap_or(-1),
                    r.offset.unwrap_or(-1)
                )))
            }
            Some(other) => {
                return Err(Error::Fatal(format!(
                    "change event row state is not an object: {other}"
                )))
            }
        };
        for (name, path) in &self.add_fields {
            row.insert(
                name.clone(),
                lookup(envelope, path).cloned().unwrap_or(Value::Null),
            );
        }
        if matches!(
            self.deletes,
            Deletes::Rewrite | Deletes::RewriteWithTombstone
        ) {
            row.insert("__deleted".into(), Value::String((op == "d").to_string()));
        }
        self.add_headers(&mut r, envelope);
        let row = Value::Object(row);
        r.value = Some(
            match parsed.get("schema").filter(|_| envelope_of(&parsed)) {
                Some(s) => {
                    let mut m = Map::new();
                    m.insert("schema".into(), self.row_schema(s));
                    m.insert("payload".into(), row);
                    Value::Object(m).to_string().into_bytes()
                }
                None => row.to_string().into_bytes(),
            },
        );
        Ok(Some(r))
    }

    /// The schema of the row: `after`'s, with the added fields.
    fn row_schema(&self, envelope: &Value) -> Value {
        let mut row = schema::field(envelope, "after")
            .or_else(|| schema::field(envelope, "before"))
            .map(schema::unnamed)
            .unwrap_or_else(|| schema::struct_of(Vec::new()));
        let source = schema::field(envelope, "source");
        let mut added = Vec::new();
        for (name, path) in &self.add_fields {
            let of = match path.strip_prefix("source.") {
                Some(rest) => source.and_then(|s| schema::field(s, rest)),
                None => schema::field(envelope, path)
                    .filter(|_| path != "source")
                    .or_else(|| source.and_then(|s| schema::field(s, path))),
            };
            let field = of.map_or_else(
                || schema::primitive("string", true),
                |f| schema::with_optional(&schema::unnamed(f), true),
            );
            added.push(schema::named(&field, name));
        }
        if matches!(
            self.deletes,
            Deletes::Rewrite | Deletes::RewriteWithTombstone
        ) {
            added.push(schema::named(
                &schema::primitive("string", true),
                "__deleted",
            ));
        }
        if let Some(Value::Array(fields)) = row.get_mut("fields") {
            fields.retain(|f| {
                !added
                    .iter()
                    .any(|a| schema::field_name(a) == schema::field_name(f))
            });
            fields.extend(added);
        }
        row
    }

    fn add_headers(&self, r: &mut Record, envelope: &Map<String, Value>) {
        for (name, path) in &self.add_headers {
            if let Some(v) = lookup(envelope, path) {
                r.headers.push((name.clone(), header_text(v)));
            }
        }
    }
}

impl Transform for Unwrap {
    fn open(config: &Config) -> Result<Self> {
        Ok(Unwrap {
            deletes: deletes_of(config)?,
            add_fields: named(
                config.list("add.fields"),
                &config.string("add.fields.prefix")?,
            ),
            add_headers: named(
                config.list("add.headers"),
                &config.string("add.headers.prefix")?,
            ),
        })
    }

    fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.extend(self.unwrap(r)?);
        }
        Ok(out)
    }
}

wharf_sdk::export_transform!(Unwrap);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&Unwrap::config_spec())
    }

    fn rec(value: Option<&str>) -> Record {
        Record {
            topic: "shop.public.orders".into(),
            partition: Some(0),
            offset: Some(5),
            timestamp: None,
            key: Some(b"{\"id\":1}".to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![],
            source: None,
        }
    }

    const UPDATE: &str = r#"{"before":{"id":1,"qty":1},"after":{"id":1,"qty":2},"source":{"table":"orders","lsn":77,"ts_ms":10},"op":"u","ts_ms":11}"#;
    const DELETE: &str = r#"{"before":{"id":1,"qty":2},"after":null,"source":{"table":"orders","lsn":78,"ts_ms":12},"op":"d","ts_ms":13}"#;

    fn run(cfg: &[(&str, &str)], values: &[Option<&str>]) -> Vec<Option<Value>> {
        let mut t = Unwrap::open(&config(cfg)).expect("open");
        t.apply(values.iter().map(|v| rec(*v)).collect())
            .expect("apply")
            .into_iter()
            .map(|r| r.value.map(|v| serde_json::from_slice(&v).expect("json")))
            .collect()
    }

    #[test]
    fn updates_become_their_after_state_with_added_fields() {
        let out = run(&[("add.fields", "op,table,source.ts_ms")], &[Some(UPDATE)]);
        assert_eq!(
            out,
            vec![Some(
                serde_json::json!({"id":1,"qty":2,"__op":"u","__table":"orders","__source_ts_ms":10})
            )]
        );
    }

    #[test]
    fn legacy_defaults_drop_deletes_and_tombstones() {
        assert!(run(&[], &[Some(DELETE), None]).is_empty());
    }

    #[test]
    fn keeping_tombstones_lets_sinks_delete() {
        let out = run(&[("drop.tombstones", "false")], &[Some(DELETE), None]);
        assert_eq!(out, vec![None]);
        let out = run(
            &[("delete.tombstone.handling.mode", "delete-to-tombstone")],
            &[Some(DELETE), None],
        );
        assert_eq!(out, vec![None]);
    }

    #[test]
    fn rewrite_marks_deletes() {
        let out = run(
            &[("delete.tombstone.handling.mode", "rewrite")],
            &[Some(UPDATE), Some(DELETE), None],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().expect("row")["__deleted"], "false");
        assert_eq!(out[1].as_ref().expect("row")["__deleted"], "true");
        assert_eq!(out[1].as_ref().expect("row")["qty"], 2);
    }

    #[test]
    fn schema_envelopes_and_non_events_are_handled() {
        let wrapped = format!(r#"{{"schema":{{"type":"struct"}},"payload":{UPDATE}}}"#);
        let out = run(&[], &[Some(&wrapped), Some(r#"{"hello":1}"#)]);
        assert_eq!(
            out[0],
            Some(
                serde_json::json!({"schema":{"type":"struct","fields":[],"optional":false},
                                    "payload":{"id":1,"qty":2}})
            )
        );
        assert_eq!(out[1], Some(serde_json::json!({"hello":1})));
    }

    #[test]
    fn schemas_become_the_rows_schema_with_added_fields() {
        let schema = r#"{"type":"struct","name":"shop.public.orders.Envelope","optional":false,"fields":[
            {"field":"before","type":"struct","name":"shop.public.orders.Value","optional":true,"fields":[
                {"field":"id","type":"int32","optional":false},{"field":"qty","type":"int32","optional":true}]},
            {"field":"after","type":"struct","name":"shop.public.orders.Value","optional":true,"fields":[
                {"field":"id","type":"int32","optional":false},{"field":"qty","type":"int32","optional":true}]},
            {"field":"source","type":"struct","name":"io.debezium.connector.postgresql.Source","optional":false,"fields":[
                {"field":"table","type":"string","optional":false},{"field":"lsn","type":"int64","optional":true},
                {"field":"ts_ms","type":"int64","optional":false}]},
            {"field":"op","type":"string","optional":false},
            {"field":"ts_ms","type":"int64","optional":true}]}"#;
        let wrapped = format!(r#"{{"schema":{schema},"payload":{UPDATE}}}"#);
        let out = run(
            &[
                ("add.fields", "op,table,source.ts_ms"),
                ("delete.tombstone.handling.mode", "rewrite"),
            ],
            &[Some(&wrapped)],
        );
        let v = out[0].as_ref().expect("row");
        assert_eq!(
            v["payload"],
            serde_json::json!({"id":1,"qty":2,"__op":"u","__table":"orders","__source_ts_ms":10,"__deleted":"false"})
        );
        assert_eq!(v["schema"]["name"], "shop.public.orders.Value");
        assert_eq!(
            v["schema"]["fields"],
            serde_json::json!([
                {"field":"id","type":"int32","optional":false},
                {"field":"qty","type":"int32","optional":true},
                {"field":"__op","type":"string","optional":true},
                {"field":"__table","type":"string","optional":true},
                {"field":"__source_ts_ms","type":"int64","optional":true},
                {"field":"__deleted","type":"string","optional":true}
            ])
        );
    }

    #[test]
    fn bad_modes_are_reported_by_validate() {
        let errs = Unwrap::validate(&config(&[("delete.tombstone.handling.mode", "nope")]));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
}
