//! `insert-field`: Kafka Connect's InsertField (`$Key` / `$Value`): adds the
//! record's topic, partition, offset (sink records only) and timestamp, and
//! a static string, under the field names configured. A name ending in `!`
//! makes the field required in the schema, `?` (the default) optional. A
//! `{schema, payload}` record gets the fields in its schema (string, int32,
//! int64, and Connect's Timestamp for the timestamp). Schemaless, a partition
//! or timestamp the record lacks is left out, as in Connect.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{Config, ConfigError, ConfigKey, Error, Plugin, Record, Result, Transform};

const PURPOSE: &str = "field insertion";
const FIELDS: [&str; 5] = [
    "topic.field",
    "partition.field",
    "offset.field",
    "timestamp.field",
    "static.field",
];

/// A field to insert: its name and whether its schema is optional.
#[derive(Clone, Debug)]
struct Spec {
    name: String,
    optional: bool,
}

impl Spec {
    fn parse(config: &Config, key: &str) -> Option<Spec> {
        let raw = config.opt_string(key)?;
        Some(match (raw.strip_suffix('?'), raw.strip_suffix('!')) {
            (Some(name), _) => Spec {
                name: name.to_string(),
                optional: true,
            },
            (_, Some(name)) => Spec {
                name: name.to_string(),
                optional: false,
            },
            _ => Spec {
                name: raw,
                optional: true,
            },
        })
    }
}

pub struct InsertField {
    side: Side,
    topic: Option<Spec>,
    partition: Option<Spec>,
    offset: Option<Spec>,
    timestamp: Option<Spec>,
    static_field: Option<(Spec, String)>,
    defaults: bool,
}

impl Plugin for InsertField {
    const NAME: &'static str = "insert-field";
    const DESCRIPTION: &'static str =
        "Inserts record metadata and a static field into the key or value (Connect's InsertField)";

    fn config_spec() -> Vec<ConfigKey> {
        let suffix = " (suffix ! for a required field, ? for optional, the default)";
        vec![
            ConfigKey::string("topic.field")
                .default("")
                .doc(&format!("Field for the record's topic{suffix}")),
            ConfigKey::string("partition.field")
                .default("")
                .doc(&format!("Field for the Kafka partition{suffix}")),
            ConfigKey::string("offset.field").default("").doc(&format!(
                "Field for the Kafka offset, sink connectors only{suffix}"
            )),
            ConfigKey::string("timestamp.field")
                .default("")
                .doc(&format!("Field for the record timestamp{suffix}")),
            ConfigKey::string("static.field")
                .default("")
                .doc(&format!("Field for a fixed value{suffix}")),
            ConfigKey::string("static.value")
                .default("")
                .doc("The fixed value of static.field"),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if FIELDS.iter().all(|k| config.opt_string(k).is_none()) {
            errors.push(ConfigError {
                key: "topic.field".into(),
                message: format!(
                    "no field insertion configured: set one of {}",
                    FIELDS.join(", ")
                ),
            });
        }
        errors
    }
}

impl InsertField {
    /// The (spec, value, schema) of each field to insert into this record.
    fn inserts(&self, r: &Record) -> Result<Vec<(&Spec, Option<Value>, Value)>> {
        let mut out = Vec::new();
        if let Some(s) = &self.topic {
            let v = Some(Value::String(r.topic.clone()));
            out.push((s, v, schema::primitive("string", s.optional)));
        }
        if let Some(s) = &self.partition {
            let v = r.partition.map(Value::from);
            out.push((s, v, schema::primitive("int32", s.optional)));
        }
        if let Some(s) = &self.offset {
            let Some(offset) = r.offset else {
                return Err(Error::Fatal(format!(
                    "offset.field '{}': only sink records have a Kafka offset",
                    s.name
                )));
            };
            out.push((
                s,
                Some(Value::from(offset)),
                schema::primitive("int64", s.optional),
            ));
        }
        if let Some(s) = &self.timestamp {
            let v = r.timestamp.map(Value::from);
            out.push((
                s,
                v,
                schema::logical("int64", schema::TIMESTAMP, s.optional),
            ));
        }
        if let Some((s, value)) = &self.static_field {
            let v = Some(Value::String(value.clone()));
            out.push((s, v, schema::primitive("string", s.optional)));
        }
        Ok(out)
    }

    fn insert(&self, mut data: Data, r: &Record) -> Result<Data> {
        let inserts = self.inserts(r)?;
        let map = connect::require_map(&mut data.payload, data.schema.as_ref(), PURPOSE)?;
        let Some(s) = &data.schema else {
            for (spec, v, _) in inserts {
                if let Some(v) = v {
                    map.insert(spec.name.clone(), v);
                }
            }
            return Ok(data);
        };
        let mut fields: Vec<Value> = schema::fields(s).to_vec();
        let mut out: Map<String, Value> = fields
            .iter()
            .map(|f| {
                let name = schema::field_name(f).to_string();
                (name, connect::field_value(map, f, self.defaults))
            })
            .collect();
        for (spec, v, field_schema) in inserts {
            fields.retain(|f| schema::field_name(f) != spec.name);
            fields.push(schema::named(&field_schema, &spec.name));
            out.insert(spec.name.clone(), v.unwrap_or(Value::Null));
        }
        let updated = schema::struct_like(s, fields);
        Ok(data.replaced(Some(updated), Value::Object(out)))
    }
}

impl Transform for InsertField {
    fn open(config: &Config) -> Result<Self> {
        let static_field = Spec::parse(config, "static.field")
            .map(|s| (s, config.raw("static.value").unwrap_or("").to_string()));
        Ok(InsertField {
            side: Side::of(config)?,
            topic: Spec::parse(config, "topic.field"),
            partition: Spec::parse(config, "partition.field"),
            offset: Spec::parse(config, "offset.field"),
            timestamp: Spec::parse(config, "timestamp.field"),
            static_field,
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.side.edit(r, |d, r| self.insert(d, r))?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(InsertField);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(pairs: &[(&str, &str)], value: Value) -> Value {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&InsertField::config_spec());
        let mut t = InsertField::open(&config).expect("open");
        let r = Record {
            topic: "orders".into(),
            partition: Some(2),
            offset: Some(41),
            timestamp: Some(1_700_000_000_000),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = t.apply(vec![r]).expect("apply");
        serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json")
    }

    #[test]
    fn connects_documented_example_schemaless() {
        // Connect's docs: static.field MessageSource, static.value "Kafka Connect framework".
        assert_eq!(
            run(
                &[
                    ("static.field", "MessageSource"),
                    ("static.value", "Kafka Connect framework")
                ],
                json!({"id":1})
            ),
            json!({"id":1,"MessageSource":"Kafka Connect framework"})
        );
        assert_eq!(
            run(
                &[
                    ("topic.field", "t!"),
                    ("partition.field", "p"),
                    ("offset.field", "o?"),
                    ("timestamp.field", "ts")
                ],
                json!({})
            ),
            json!({"t":"orders","p":2,"o":41,"ts":1_700_000_000_000i64})
        );
    }

    #[test]
    fn schemas_get_the_new_fields() {
        let out = run(
            &[("topic.field", "topic!"), ("timestamp.field", "ts")],
            json!({"schema":{"type":"struct","name":"V","optional":false,"fields":[
                    {"field":"id","type":"int32","optional":false}]},"payload":{"id":1}}),
        );
        assert_eq!(
            out,
            json!({"schema":{"type":"struct","name":"V","optional":false,"fields":[
                    {"field":"id","type":"int32","optional":false},
                    {"field":"topic","type":"string","optional":false},
                    {"field":"ts","type":"int64","optional":true,
                     "name":"org.apache.kafka.connect.data.Timestamp","version":1}]},
                   "payload":{"id":1,"topic":"orders","ts":1_700_000_000_000i64}})
        );
    }

    #[test]
    fn sources_have_no_offset_and_a_config_needs_a_field() {
        let config = Config::from_pairs([("offset.field".to_string(), "o".to_string())])
            .with_defaults(&InsertField::config_spec());
        let mut t = InsertField::open(&config).expect("open");
        let r = Record {
            topic: "t".into(),
            value: Some(b"{}".to_vec()),
            ..Record::default()
        };
        assert!(t.apply(vec![r]).is_err());
        assert_eq!(
            InsertField::validate(&Config::default())[0].key,
            "topic.field"
        );
    }
}
