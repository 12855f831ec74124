//! `mask`: replaces fields of a JSON value, as Kafka Connect's MaskField: with
//! `replacement` if set, else the type's empty value ("" / 0 / false).

use wharf_sdk::json::{self, Value};
use wharf_sdk::{Config, ConfigKey, Importance, Plugin, Record, Result, Transform};

pub struct Mask {
    fields: Vec<String>,
    replacement: Option<String>,
}

impl Plugin for Mask {
    const NAME: &'static str = "mask";
    const DESCRIPTION: &'static str = "Masks fields of JSON values (Connect's MaskField)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::list("fields")
                .non_empty()
                .importance(Importance::High)
                .doc("Fields to mask"),
            ConfigKey::string("replacement")
                .default("")
                .doc("Replacement text; empty means the type's empty value"),
        ]
    }
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Number(_) => Value::from(0),
        Value::Bool(_) => Value::Bool(false),
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(Default::default()),
        Value::Null => Value::Null,
    }
}

impl Transform for Mask {
    fn open(config: &Config) -> Result<Self> {
        Ok(Mask {
            fields: config.list("fields"),
            replacement: config.opt_string("replacement"),
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let topic = r.topic.clone();
            json::edit_object(&mut r.value, &topic, |m| {
                for f in &self.fields {
                    if let Some(v) = m.get_mut(f) {
                        *v = match &self.replacement {
                            Some(text) => Value::String(text.clone()),
                            None => empty_like(v),
                        };
                    }
                }
            })?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(Mask);
