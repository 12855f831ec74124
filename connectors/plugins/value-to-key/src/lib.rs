//! `value-to-key`: Kafka Connect's ValueToKey: the key becomes an object of
//! the value's `fields`. A `{schema, payload}` value gives a `{schema,
//! payload}` key with those fields' schemas (a field the schema lacks is an
//! error); a field missing from schemaless JSON is null. Tombstones keep
//! their key (Connect would fail the record).

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{Config, ConfigKey, Error, Importance, Plugin, Record, Result, Transform};

const PURPOSE: &str = "copying fields from value to key";

pub struct ValueToKey {
    fields: Vec<String>,
    defaults: bool,
}

impl Plugin for ValueToKey {
    const NAME: &'static str = "value-to-key";
    const DESCRIPTION: &'static str =
        "Replaces the key with fields of the value (Connect's ValueToKey)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::list("fields")
                .non_empty()
                .importance(Importance::High)
                .doc("Value fields that make up the key"),
            connect::replace_null_with_default_key(),
        ]
    }
}

impl ValueToKey {
    fn key_of(&self, mut value: Data) -> Result<Data> {
        let map = connect::require_map(&mut value.payload, value.schema.as_ref(), PURPOSE)?;
        let mut key = Map::new();
        let Some(s) = &value.schema else {
            for f in &self.fields {
                key.insert(f.clone(), map.get(f).cloned().unwrap_or(Value::Null));
            }
            return Ok(Data::schemaless(Value::Object(key)));
        };
        let mut fields = Vec::with_capacity(self.fields.len());
        for name in &self.fields {
            let f = schema::field(s, name)
                .ok_or_else(|| Error::Fatal(format!("field does not exist: {name}")))?;
            key.insert(name.clone(), connect::field_value(map, f, self.defaults));
            fields.push(f.clone());
        }
        Ok(Data::with_schema(
            schema::struct_of(fields),
            Value::Object(key),
        ))
    }
}

impl Transform for ValueToKey {
    fn open(config: &Config) -> Result<Self> {
        Ok(ValueToKey {
            fields: config.list("fields"),
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let Some(value) = Side::Value.read(r)? else {
                continue;
            };
            if value.payload.is_null() {
                continue;
            }
            let key = self.key_of(value).map_err(|e| Side::Value.context(r, e))?;
            Side::Key.write(r, &key);
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(ValueToKey);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(fields: &str, value: Value) -> Record {
        let config = Config::from_pairs([("fields".to_string(), fields.to_string())])
            .with_defaults(&ValueToKey::config_spec());
        let r = Record {
            topic: "t".into(),
            key: Some(b"old".to_vec()),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        ValueToKey::open(&config)
            .expect("open")
            .apply(vec![r])
            .expect("apply")
            .remove(0)
    }

    fn key(r: &Record) -> Value {
        serde_json::from_slice(r.key.as_deref().expect("key")).expect("json")
    }

    #[test]
    fn keys_come_from_value_fields() {
        // Connect's docs: "fields": "userId,city,state" keys by those fields.
        let r = run(
            "userId,city,state",
            json!({"userId":1,"city":"x","state":"y","z":0}),
        );
        assert_eq!(key(&r), json!({"userId":1,"city":"x","state":"y"}));
        assert_eq!(
            key(&run("id,nope", json!({"id":1}))),
            json!({"id":1,"nope":null})
        );
    }

    #[test]
    fn schemas_give_a_keyed_schema() {
        let value = json!({
            "schema": {"type":"struct","name":"V","optional":false,"fields":[
                {"field":"id","type":"int32","optional":false},
                {"field":"name","type":"string","optional":true}]},
            "payload": {"id":7,"name":"a"}
        });
        let r = run("id", value.clone());
        assert_eq!(
            key(&r),
            json!({"schema":{"type":"struct","optional":false,"fields":[
                {"field":"id","type":"int32","optional":false}]},"payload":{"id":7}})
        );
        let config = Config::from_pairs([("fields".to_string(), "nope".to_string())])
            .with_defaults(&ValueToKey::config_spec());
        let rec = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let e = ValueToKey::open(&config)
            .expect("open")
            .apply(vec![rec])
            .unwrap_err();
        assert!(e.to_string().contains("field does not exist: nope"), "{e}");
    }
}
