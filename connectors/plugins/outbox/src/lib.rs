//! `outbox`: Debezium's outbox EventRouter. Each insert into an outbox table
//! (a Debezium change event with op `c` or `r`) becomes the event it holds:
//! the value is the `payload` column (expanded from a JSON string with
//! `table.expand.json.payload`), the key the `aggregateid` column, the topic
//! `route.topic.replacement` applied to the `aggregatetype` column through
//! `route.topic.regex`, the header `id` the event id, and the timestamp the
//! event's `ts_ms` (or `table.field.event.timestamp`).
//! `table.fields.additional.placement` (`column:header|envelope|partition[:alias]`)
//! puts more columns in headers, in an envelope around the payload, or picks
//! the partition. Deletes and tombstones are dropped; updates follow
//! `table.op.invalid.behavior`. Records that are not change events pass.

use regex_lite::Regex;
use wharf_sdk::connect::{self, java_replacement, schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Level, Plugin, Record, Result, Transform,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    Header,
    Envelope,
    Partition,
}

#[derive(Clone, Debug)]
struct Additional {
    column: String,
    placement: Placement,
    alias: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Invalid {
    Warn,
    Error,
    Fatal,
}

pub struct Outbox {
    id: String,
    key: String,
    timestamp: Option<String>,
    payload: String,
    expand: bool,
    additional: Vec<Additional>,
    schema_version: Option<String>,
    route_by: String,
    route: (Regex, String),
    tombstone_on_empty: bool,
    invalid: Invalid,
}

impl Plugin for Outbox {
    const NAME: &'static str = "outbox";
    const DESCRIPTION: &'static str =
        "Turns outbox table inserts into the events they hold (Debezium's outbox EventRouter)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("table.op.invalid.behavior")
                .default("warn")
                .one_of(&["warn", "error", "fatal"])
                .doc("What an update of the outbox table does: warn or error (logged, dropped), fatal"),
            ConfigKey::string("table.field.event.id")
                .default("id")
                .doc("Column of the event id, written to the header 'id'"),
            ConfigKey::string("table.field.event.key")
                .default("aggregateid")
                .doc("Column of the event key"),
            ConfigKey::string("table.field.event.timestamp")
                .default("")
                .doc("Column of the event timestamp; the change event's ts_ms when empty"),
            ConfigKey::string("table.field.event.payload")
                .default("payload")
                .doc("Column of the event payload"),
            ConfigKey::boolean("table.expand.json.payload")
                .default("false")
                .doc("Expand a payload string holding JSON into that JSON"),
            ConfigKey::list("table.fields.additional.placement")
                .default("")
                .doc("column:header|envelope|partition[:alias], comma-separated"),
            ConfigKey::string("table.field.event.schema.version")
                .default("")
                .doc("Schema version set on the event's schema"),
            ConfigKey::string("route.by.field")
                .default("aggregatetype")
                .importance(Importance::Medium)
                .doc("Column whose value routes the event"),
            ConfigKey::string("route.topic.regex")
                .default("(?<routedByValue>.*)")
                .doc("Regex over the route.by.field value"),
            ConfigKey::string("route.topic.replacement")
                .default("outbox.event.${routedByValue}")
                .doc("The event's topic; groups of route.topic.regex are replaced"),
            ConfigKey::boolean("route.tombstone.on.empty.payload")
                .default("false")
                .doc("An empty or null payload becomes a tombstone"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        let config = config.clone().with_defaults(&Self::config_spec());
        if let Err(Error::Fatal(m)) = Self::open(&config) {
            let key = m.split(':').next().unwrap_or_default().to_string();
            let known = Self::config_spec().iter().any(|k| k.name == key);
            if known && errors.iter().all(|e| e.key != key) {
                errors.push(ConfigError { key, message: m });
            }
        }
        errors
    }
}

fn additional(list: &[String]) -> Result<Vec<Additional>> {
    list.iter()
        .map(|item| {
            let parts: Vec<&str> = item.split(':').map(str::trim).collect();
            let (column, placement, alias) = match parts[..] {
                [c, p] => (c, p, c),
                [c, p, a] => (c, p, a),
                _ => {
                    return Err(Error::Fatal(format!(
                        "table.fields.additional.placement: '{item}' is not column:placement[:alias]"
                    )))
                }
            };
            let placement = match placement {
                "header" => Placement::Header,
                "envelope" => Placement::Envelope,
                "partition" => Placement::Partition,
                other => {
                    return Err(Error::Fatal(format!(
                        "table.fields.additional.placement: '{other}' is not header, envelope or partition"
                    )))
                }
            };
            Ok(Additional {
                column: column.to_string(),
                placement,
                alias: alias.to_string(),
            })
        })
        .collect()
}

/// A column of the `after` row, with its field schema when there is one.
fn column<'a>(
    row: &'a Map<String, Value>,
    row_schema: Option<&'a Value>,
    name: &str,
) -> (Option<&'a Value>, Option<&'a Value>) {
    (
        row.get(name).filter(|v| !v.is_null()),
        row_schema.and_then(|s| schema::field(s, name)),
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Outbox {
    /// The event an outbox change event holds; None drops the record.
    fn route(&self, mut r: Record) -> Result<Option<Record>> {
        let Some(value) = Side::Value.read(&r)? else {
            return Ok(None); // tombstones of the outbox table are dropped
        };
        let Value::Object(envelope) = &value.payload else {
            return Ok(Some(r));
        };
        let Some(op) = envelope.get("op").and_then(Value::as_str) else {
            return Ok(Some(r)); // heartbeats, schema changes
        };
        match op {
            "c" | "r" => {}
            "d" | "t" => return Ok(None),
            "u" => {
                let message = format!(
                    "update of an outbox table record on topic '{}': outbox records are only inserted",
                    r.topic
                );
                return match self.invalid {
                    Invalid::Fatal => Err(Error::Fatal(message)),
                    Invalid::Error => {
                        wharf_sdk::log(Level::Error, &message);
                        Ok(None)
                    }
                    Invalid::Warn => {
                        wharf_sdk::log(Level::Warn, &message);
                        Ok(None)
                    }
                };
            }
            _ => return Ok(Some(r)),
        }
        let Some(Value::Object(row)) = envelope.get("after") else {
            return Err(Error::Fatal(format!(
                "outbox event on topic '{}' has no 'after' row",
                r.topic
            )));
        };
        let row_schema = value
            .schema
            .as_ref()
            .and_then(|s| schema::field(s, "after"));
        let get = |name: &str| column(row, row_schema, name);

        // Topic, from the routing column.
        let (routed_by, _) = get(&self.route_by);
        let routed_by = routed_by.map(text).ok_or_else(|| {
            Error::Fatal(format!(
                "outbox event on topic '{}' has no '{}' column to route by",
                r.topic, self.route_by
            ))
        })?;
        let (re, replacement) = &self.route;
        r.topic = if re.is_match(&routed_by) {
            re.replace(&routed_by, replacement.as_str()).into_owned()
        } else {
            routed_by
        };

        // Key, headers, partition, timestamp.
        if let (Some(k), key_schema) = get(&self.key) {
            let key = match key_schema {
                Some(s) => Data::with_schema(schema::unnamed(s), k.clone()),
                None => Data::schemaless(k.clone()),
            };
            Side::Key.write(&mut r, &key);
        }
        if let (Some(id), _) = get(&self.id) {
            r.headers.push(("id".into(), connect::header_bytes(id)));
        }
        let ts = match &self.timestamp {
            Some(col) => get(col).0.and_then(Value::as_i64),
            None => envelope.get("ts_ms").and_then(Value::as_i64),
        };
        if ts.is_some() {
            r.timestamp = ts;
        }
        let mut extra = Map::new();
        let mut extra_fields = Vec::new();
        for a in &self.additional {
            let (v, s) = get(&a.column);
            match a.placement {
                Placement::Header => {
                    if let Some(v) = v {
                        r.headers.push((a.alias.clone(), connect::header_bytes(v)));
                    }
                }
                Placement::Partition => {
                    if let Some(p) = v.and_then(Value::as_i64) {
                        r.partition = i32::try_from(p).ok();
                    }
                }
                Placement::Envelope => {
                    extra.insert(a.alias.clone(), v.cloned().unwrap_or(Value::Null));
                    let field =
                        s.map_or_else(|| schema::primitive("string", true), schema::unnamed);
                    extra_fields.push(schema::named(&field, &a.alias));
                }
            }
        }

        // Value: the payload, maybe expanded, maybe in an envelope.
        let (payload, payload_schema) = get(&self.payload);
        let empty = payload.is_none_or(|p| p.as_str() == Some(""));
        if empty && self.tombstone_on_empty {
            r.value = None;
            return Ok(Some(r));
        }
        let mut payload_schema = payload_schema.map(schema::unnamed);
        let mut payload = payload.cloned().unwrap_or(Value::Null);
        if self.expand {
            if let Some(Ok(expanded)) = payload.as_str().map(serde_json::from_str::<Value>) {
                payload = expanded;
                // The JSON's schema is not known: it goes on schemaless (a
                // JsonConverter with schemas infers one).
                payload_schema = None;
            }
        }
        let with_schema = value.schema.is_some() && payload_schema.is_some();
        let (mut out_schema, out) = if self
            .additional
            .iter()
            .any(|a| a.placement == Placement::Envelope)
        {
            extra.insert("payload".into(), payload);
            let mut fields = vec![schema::named(
                &payload_schema.unwrap_or_else(|| schema::primitive("string", true)),
                "payload",
            )];
            fields.extend(extra_fields);
            (
                with_schema.then(|| schema::struct_of(fields)),
                Value::Object(extra),
            )
        } else {
            (payload_schema.filter(|_| with_schema), payload)
        };
        if let (Some(Value::Object(s)), Some(v)) = (&mut out_schema, &self.schema_version) {
            if let Ok(n) = v.trim().parse::<i64>() {
                s.insert("version".into(), Value::from(n));
            }
        }
        let data = match out_schema {
            Some(s) => Data::with_schema(s, out),
            None => Data::schemaless(out),
        };
        r.value = data.to_bytes();
        Ok(Some(r))
    }
}

impl Transform for Outbox {
    fn open(config: &Config) -> Result<Self> {
        let pattern = config.string("route.topic.regex")?;
        let re = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| Error::Fatal(format!("route.topic.regex: invalid regex: {e}")))?;
        let replacement = java_replacement(
            &config.string("route.topic.replacement")?,
            re.captures_len() - 1,
        )
        .map_err(|m| Error::Fatal(format!("route.topic.replacement: {m}")))?;
        let invalid = match config.string("table.op.invalid.behavior")?.trim() {
            "fatal" => Invalid::Fatal,
            "error" => Invalid::Error,
            _ => Invalid::Warn,
        };
        Ok(Outbox {
            id: config.string("table.field.event.id")?,
            key: config.string("table.field.event.key")?,
            timestamp: config.opt_string("table.field.event.timestamp"),
            payload: config.string("table.field.event.payload")?,
            expand: config.bool("table.expand.json.payload")?,
            additional: additional(&config.list("table.fields.additional.placement"))?,
            schema_version: config.opt_string("table.field.event.schema.version"),
            route_by: config.string("route.by.field")?,
            route: (re, replacement),
            tombstone_on_empty: config.bool("route.tombstone.on.empty.payload")?,
            invalid,
        })
    }

    fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.extend(self.route(r)?);
        }
        Ok(out)
    }
}

wharf_sdk::export_transform!(Outbox);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(pairs: &[(&str, &str)]) -> Outbox {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&Outbox::config_spec());
        Outbox::open(&config).expect("open")
    }

    fn event(op: &str) -> Value {
        json!({
            "before": null,
            "after": {
                "id": "406c07f3-26f0-4eea-a50c-109940064b8f",
                "aggregateid": "1",
                "aggregatetype": "Order",
                "payload": "{\"id\": 1, \"customerId\": 123}",
                "timestamp": 1556890294344i64,
                "type": "OrderCreated"
            },
            "source": {"table": "outboxevent"},
            "op": op,
            "ts_ms": 1556890294484i64
        })
    }

    fn record(value: Option<Value>) -> Record {
        Record {
            topic: "dbserver1.inventory.outboxevent".into(),
            key: Some(br#"{"id":"406c07f3"}"#.to_vec()),
            value: value.map(|v| v.to_string().into_bytes()),
            ..Record::default()
        }
    }

    #[test]
    fn debeziums_documented_example() {
        // Topic outbox.event.Order, key "1", header id=<event id>, value the payload string.
        let out = open(&[])
            .apply(vec![record(Some(event("c")))])
            .expect("apply");
        let r = &out[0];
        assert_eq!(r.topic, "outbox.event.Order");
        assert_eq!(r.key.as_deref(), Some(&b"\"1\""[..]));
        assert_eq!(
            r.headers,
            vec![(
                "id".to_string(),
                b"406c07f3-26f0-4eea-a50c-109940064b8f".to_vec()
            )]
        );
        assert_eq!(r.timestamp, Some(1556890294484));
        let v: Value = serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
        assert_eq!(v, json!("{\"id\": 1, \"customerId\": 123}"));
    }

    #[test]
    fn expansion_placement_and_other_operations() {
        let mut t = open(&[
            ("table.expand.json.payload", "true"),
            (
                "table.fields.additional.placement",
                "type:header:eventType,type:envelope",
            ),
            ("route.topic.replacement", "events.${routedByValue}"),
        ]);
        let out = t
            .apply(vec![
                record(Some(event("c"))),
                record(Some(event("d"))),
                record(None),
                record(Some(event("u"))),
                record(Some(json!({"heartbeat": 1}))),
            ])
            .expect("apply");
        assert_eq!(out.len(), 2, "deletes, tombstones and updates are dropped");
        assert_eq!(out[0].topic, "events.Order");
        assert_eq!(
            out[0].headers[1],
            ("eventType".to_string(), b"OrderCreated".to_vec())
        );
        let v: Value =
            serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json");
        assert_eq!(
            v,
            json!({"payload":{"id":1,"customerId":123},"type":"OrderCreated"})
        );
        assert_eq!(
            out[1].topic, "dbserver1.inventory.outboxevent",
            "not a change event"
        );
        let fatal =
            open(&[("table.op.invalid.behavior", "fatal")]).apply(vec![record(Some(event("u")))]);
        assert!(fatal.is_err());
        let errs = Outbox::validate(&Config::from_pairs([(
            "table.fields.additional.placement".to_string(),
            "type:nowhere".to_string(),
        )]));
        assert_eq!(errs[0].key, "table.fields.additional.placement");
    }

    #[test]
    fn schemas_of_the_columns_are_kept() {
        let schema = json!({"type":"struct","name":"x.Envelope","optional":false,"fields":[
            {"field":"after","type":"struct","optional":true,"fields":[
                {"field":"id","type":"string","optional":false},
                {"field":"aggregateid","type":"string","optional":false},
                {"field":"aggregatetype","type":"string","optional":false},
                {"field":"payload","type":"string","optional":true,"name":"io.debezium.data.Json","version":1}]},
            {"field":"op","type":"string","optional":false}]});
        let out = open(&[("table.field.event.schema.version", "3")])
            .apply(vec![record(Some(
                json!({"schema": schema, "payload": event("c")}),
            ))])
            .expect("apply");
        let v: Value =
            serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json");
        assert_eq!(
            v["schema"],
            json!({"type":"string","optional":true,"name":"io.debezium.data.Json","version":3})
        );
        let k: Value = serde_json::from_slice(out[0].key.as_deref().expect("key")).expect("json");
        assert_eq!(
            k,
            json!({"schema":{"type":"string","optional":false},"payload":"1"})
        );
    }
}
