//! `insert-field`: adds fields to a JSON value, as Kafka Connect's
//! InsertField$Value: a static field, and the record's topic, partition,
//! offset and timestamp under names you choose.

use wharf_sdk::json::{self, Value};
use wharf_sdk::{Config, ConfigKey, Plugin, Record, Result, Transform};

pub struct InsertField {
    static_field: Option<(String, String)>,
    topic: Option<String>,
    partition: Option<String>,
    offset: Option<String>,
    timestamp: Option<String>,
}

impl Plugin for InsertField {
    const NAME: &'static str = "insert-field";
    const DESCRIPTION: &'static str =
        "Inserts a static field and record metadata into JSON values (Connect's InsertField)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("static.field")
                .default("")
                .doc("Name of a field with a fixed value"),
            ConfigKey::string("static.value")
                .default("")
                .doc("The fixed value"),
            ConfigKey::string("topic.field")
                .default("")
                .doc("Field for the record's topic"),
            ConfigKey::string("partition.field")
                .default("")
                .doc("Field for the Kafka partition"),
            ConfigKey::string("offset.field")
                .default("")
                .doc("Field for the Kafka offset"),
            ConfigKey::string("timestamp.field")
                .default("")
                .doc("Field for the record timestamp (ms)"),
        ]
    }
}

impl Transform for InsertField {
    fn open(config: &Config) -> Result<Self> {
        Ok(InsertField {
            static_field: config
                .opt_string("static.field")
                .map(|f| (f, config.raw("static.value").unwrap_or("").to_string())),
            topic: config.opt_string("topic.field"),
            partition: config.opt_string("partition.field"),
            offset: config.opt_string("offset.field"),
            timestamp: config.opt_string("timestamp.field"),
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let (topic, partition, offset, ts) =
                (r.topic.clone(), r.partition, r.offset, r.timestamp);
            json::edit_object(&mut r.value, &topic, |m| {
                if let Some((f, v)) = &self.static_field {
                    m.insert(f.clone(), Value::String(v.clone()));
                }
                if let Some(f) = &self.topic {
                    m.insert(f.clone(), Value::String(topic.clone()));
                }
                let num = |x: Option<i64>| x.map_or(Value::Null, Value::from);
                if let Some(f) = &self.partition {
                    m.insert(f.clone(), num(partition.map(i64::from)));
                }
                if let Some(f) = &self.offset {
                    m.insert(f.clone(), num(offset));
                }
                if let Some(f) = &self.timestamp {
                    m.insert(f.clone(), num(ts));
                }
            })?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(InsertField);
