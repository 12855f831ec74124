//! `flatten`: Kafka Connect's Flatten (`$Key` / `$Value`): nested objects
//! become one level, each field named by its path joined with `delimiter`
//! (default `.`); arrays stay as they are. With a `{schema, payload}` record
//! the struct schema is flattened too: a field is optional when it or any
//! struct above it is, and takes its default from the nearest default above
//! it. Map fields in a schema are an error, as in Connect.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{Config, ConfigKey, Error, Plugin, Record, Result, Transform};

const PURPOSE: &str = "flattening";

pub struct Flatten {
    side: Side,
    delimiter: String,
}

/// A flattened struct being built: its field schemas and values.
#[derive(Default)]
struct Flat {
    fields: Vec<Value>,
    values: Map<String, Value>,
}

impl Plugin for Flatten {
    const NAME: &'static str = "flatten";
    const DESCRIPTION: &'static str =
        "Flattens nested structs of the key or value into one level (Connect's Flatten)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("delimiter")
                .default(".")
                .doc("Put between the names of nested fields"),
            Side::config_key(),
        ]
    }
}

impl Flatten {
    fn name(&self, prefix: &str, field: &str) -> String {
        if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}{}{field}", self.delimiter)
        }
    }

    fn schemaless(&self, map: Map<String, Value>, prefix: &str, out: &mut Map<String, Value>) {
        for (k, v) in map {
            let name = self.name(prefix, &k);
            match v {
                Value::Object(inner) => self.schemaless(inner, &name, out),
                other => {
                    out.insert(name, other);
                }
            }
        }
    }

    /// Flattens a struct schema and its value together. `value` is `None`
    /// below a null struct (every field under it is then null or its default).
    fn with_schema(
        &self,
        s: &Value,
        value: Option<&Map<String, Value>>,
        prefix: &str,
        optional: bool,
        parent_default: Option<&Value>,
        out: &mut Flat,
    ) -> Result<()> {
        for f in schema::fields(s) {
            let field = schema::field_name(f);
            let name = self.name(prefix, field);
            let optional = optional || schema::is_optional(f);
            let default = f.get("default").filter(|d| !d.is_null()).or_else(|| {
                parent_default
                    .and_then(|d| d.get(field))
                    .filter(|d| !d.is_null())
            });
            let v = value.and_then(|m| m.get(field)).filter(|v| !v.is_null());
            match schema::type_of(f) {
                "struct" => self.with_schema(
                    f,
                    v.and_then(Value::as_object),
                    &name,
                    optional,
                    default,
                    out,
                )?,
                "map" => {
                    return Err(Error::Fatal(format!(
                        "Flatten does not support map fields in records with schemas (field {name})"
                    )))
                }
                ty => {
                    let mut m = schema::basics(f, ty);
                    if let Some(items) = f.get("items") {
                        m.insert("items".into(), items.clone());
                    }
                    m.insert("optional".into(), Value::Bool(optional));
                    if let Some(d) = default {
                        m.insert("default".into(), d.clone());
                    }
                    out.fields.push(schema::named(&Value::Object(m), &name));
                    let v = v.or(default).cloned().unwrap_or(Value::Null);
                    out.values.insert(name, v);
                }
            }
        }
        Ok(())
    }

    fn flatten(&self, mut data: Data) -> Result<Data> {
        let map = connect::require_map(&mut data.payload, data.schema.as_ref(), PURPOSE)?;
        let map = std::mem::take(map);
        let Some(s) = &data.schema else {
            let mut out = Map::new();
            self.schemaless(map, "", &mut out);
            return Ok(data.replaced(None, Value::Object(out)));
        };
        let mut out = Flat::default();
        self.with_schema(
            s,
            Some(&map),
            "",
            schema::is_optional(s),
            s.get("default").filter(|d| !d.is_null()),
            &mut out,
        )?;
        let updated = schema::struct_like(s, out.fields);
        Ok(data.replaced(Some(updated), Value::Object(out.values)))
    }
}

impl Transform for Flatten {
    fn open(config: &Config) -> Result<Self> {
        Ok(Flatten {
            side: Side::of(config)?,
            delimiter: config.string("delimiter")?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.side.edit(r, |d, _| self.flatten(d))?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(Flatten);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(pairs: &[(&str, &str)], value: Value) -> Value {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&Flatten::config_spec());
        let mut t = Flatten::open(&config).expect("open");
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = t.apply(vec![r]).expect("apply");
        serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json")
    }

    #[test]
    fn connects_documented_example() {
        // Connect's docs: {"content":{"id":42,"name":{"first":"David","middle":null,"last":"Wong"}}}
        // with delimiter "_" becomes content_id, content_name_first, content_name_middle, ...
        assert_eq!(
            run(
                &[("delimiter", "_")],
                json!({"content":{"id":42,"name":{"first":"David","middle":null,"last":"Wong"}},"tags":[{"a":1}]})
            ),
            json!({"content_id":42,"content_name_first":"David","content_name_middle":null,
                   "content_name_last":"Wong","tags":[{"a":1}]})
        );
    }

    #[test]
    fn schemas_flatten_with_optionality_and_defaults() {
        let value = json!({
            "schema": {"type":"struct","name":"V","optional":false,"fields":[
                {"field":"id","type":"int32","optional":false},
                {"field":"address","type":"struct","optional":true,"fields":[
                    {"field":"city","type":"string","optional":false},
                    {"field":"zip","type":"string","optional":false,"default":"00000"}]},
                {"field":"tags","type":"array","optional":false,"items":{"type":"string","optional":false}}]},
            "payload": {"id":1,"address":null,"tags":["x"]}
        });
        let out = run(&[], value);
        assert_eq!(
            out,
            json!({
                "schema": {"type":"struct","name":"V","optional":false,"fields":[
                    {"field":"id","type":"int32","optional":false},
                    {"field":"address.city","type":"string","optional":true},
                    {"field":"address.zip","type":"string","optional":true,"default":"00000"},
                    {"field":"tags","type":"array","optional":false,"items":{"type":"string","optional":false}}]},
                "payload": {"id":1,"address.city":null,"address.zip":"00000","tags":["x"]}
            })
        );
    }
}
