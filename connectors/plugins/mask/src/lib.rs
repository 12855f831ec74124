//! `mask`: Kafka Connect's MaskField (`$Key` / `$Value`): replaces `fields`
//! with their type's empty value (0, 0.0, false, "", [], {}; the epoch for
//! Date, Time and Timestamp) or with `replacement`, converted to the field's
//! type (numbers and strings only, as in Connect). With a `{schema,
//! payload}` record the schema says the type; without one the JSON does.
//! Nulls stay null; as in Connect, a field missing from schemaless JSON is
//! written as null.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{Config, ConfigKey, Error, Importance, Plugin, Record, Result, Transform};

const PURPOSE: &str = "mask fields";

pub struct Mask {
    side: Side,
    fields: Vec<String>,
    replacement: Option<String>,
    defaults: bool,
}

impl Plugin for Mask {
    const NAME: &'static str = "mask";
    const DESCRIPTION: &'static str = "Masks fields of the key or value (Connect's MaskField)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::list("fields")
                .non_empty()
                .importance(Importance::High)
                .doc("Fields to mask"),
            ConfigKey::string("replacement")
                .default("")
                .importance(Importance::Low)
                .doc(
                    "Replacement for numeric and string fields; empty means the type's empty value",
                ),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }
}

/// What a masked value is, by the schema's type or the JSON's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Integer,
    Float,
    Boolean,
    Text,
    Array,
    Map,
    /// Decimal (bytes): zero is one zero byte, base64 "AA==".
    Decimal,
    Other,
}

fn kind(v: &Value, field_schema: Option<&Value>) -> Kind {
    let Some(s) = field_schema else {
        return match v {
            Value::Number(n) if n.is_f64() => Kind::Float,
            Value::Number(_) => Kind::Integer,
            Value::Bool(_) => Kind::Boolean,
            Value::String(_) => Kind::Text,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Map,
            Value::Null => Kind::Other,
        };
    };
    if schema::name(s) == Some(schema::DECIMAL) {
        return Kind::Decimal;
    }
    match schema::type_of(s) {
        "int8" | "int16" | "int32" | "int64" => Kind::Integer,
        "float32" | "float64" => Kind::Float,
        "boolean" => Kind::Boolean,
        "string" => Kind::Text,
        "array" => Kind::Array,
        "map" => Kind::Map,
        _ => Kind::Other,
    }
}

impl Mask {
    fn masked(&self, v: &Value, field_schema: Option<&Value>) -> Result<Value> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        let k = kind(v, field_schema);
        let Some(text) = &self.replacement else {
            return Ok(match k {
                Kind::Integer => Value::from(0),
                Kind::Float => Value::from(0.0),
                Kind::Boolean => Value::Bool(false),
                Kind::Text => Value::String(String::new()),
                Kind::Array => Value::Array(Vec::new()),
                Kind::Map => Value::Object(Map::new()),
                Kind::Decimal => Value::String("AA==".into()),
                Kind::Other => {
                    return Err(Error::Fatal(format!(
                        "cannot mask a value of type {}",
                        field_schema.map_or_else(
                            || connect::kind(v).to_string(),
                            |s| schema::type_of(s).to_string()
                        )
                    )))
                }
            });
        };
        let bad = || {
            Error::Fatal(format!(
                "cannot mask a value of type {} with the replacement '{text}'",
                field_schema.map_or_else(
                    || connect::kind(v).to_string(),
                    |s| schema::type_of(s).to_string()
                )
            ))
        };
        Ok(match k {
            Kind::Text => Value::String(text.clone()),
            Kind::Integer => match text.trim().parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => Value::from(text.trim().parse::<f64>().map_err(|_| bad())? as i64),
            },
            Kind::Float => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        })
    }

    fn mask(&self, mut data: Data) -> Result<Data> {
        let map = connect::require_map(&mut data.payload, data.schema.as_ref(), PURPOSE)?;
        match &data.schema {
            None => {
                for f in &self.fields {
                    let v = map.get(f).cloned().unwrap_or(Value::Null);
                    map.insert(f.clone(), self.masked(&v, None)?);
                }
            }
            Some(s) => {
                let mut out = Map::new();
                for f in schema::fields(s) {
                    let name = schema::field_name(f);
                    let v = connect::field_value(map, f, self.defaults);
                    let v = if self.fields.iter().any(|m| m == name) {
                        self.masked(&v, Some(f))?
                    } else {
                        v
                    };
                    out.insert(name.to_string(), v);
                }
                *map = out;
            }
        }
        Ok(data)
    }
}

impl Transform for Mask {
    fn open(config: &Config) -> Result<Self> {
        Ok(Mask {
            side: Side::of(config)?,
            fields: config.list("fields"),
            replacement: config.opt_string("replacement"),
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.side.edit(r, |d, _| self.mask(d))?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(Mask);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(pairs: &[(&str, &str)], value: Value) -> Result<Value> {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&Mask::config_spec());
        let mut t = Mask::open(&config)?;
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = t.apply(vec![r])?;
        Ok(serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json"))
    }

    #[test]
    fn connects_documented_examples_schemaless() {
        // Connect's docs: "fields": "string_field" masks {"string_field":"x"} to "".
        let v = json!({"s":"x","i":7,"f":1.5,"b":true,"a":[1],"m":{"k":1},"n":null,"keep":"y"});
        assert_eq!(
            run(&[("fields", "s,i,f,b,a,m,n")], v).unwrap(),
            json!({"s":"","i":0,"f":0.0,"b":false,"a":[],"m":{},"n":null,"keep":"y"})
        );
        // "replacement": "<redacted>" on a string; numbers take a numeric replacement.
        assert_eq!(
            run(
                &[("fields", "s,i"), ("replacement", "12")],
                json!({"s":"x","i":7})
            )
            .unwrap(),
            json!({"s":"12","i":12})
        );
        assert!(run(&[("fields", "i"), ("replacement", "x")], json!({"i":7})).is_err());
        assert!(run(&[("fields", "b"), ("replacement", "x")], json!({"b":true})).is_err());
    }

    #[test]
    fn schemas_say_the_type() {
        let value = json!({
            "schema": {"type":"struct","optional":false,"fields":[
                {"field":"card","type":"string","optional":true},
                {"field":"amount","type":"float64","optional":false},
                {"field":"id","type":"int64","optional":false}]},
            "payload": {"card":"4111","amount":12,"id":1}
        });
        let out = run(&[("fields", "card,amount")], value.clone()).unwrap();
        assert_eq!(out["payload"], json!({"card":"","amount":0.0,"id":1}));
        assert_eq!(out["schema"], value["schema"]);
    }
}
