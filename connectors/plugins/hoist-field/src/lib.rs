//! `hoist-field`: Kafka Connect's HoistField (`$Key` / `$Value`): the key or
//! value is wrapped in an object with one field, `field`. A `{schema,
//! payload}` record gets a struct schema around the old one. As in Connect
//! a null is wrapped too (`{"field": null}`).

use wharf_sdk::connect::{schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{Config, ConfigKey, Importance, Plugin, Record, Result, Transform};

pub struct HoistField {
    side: Side,
    field: String,
}

impl Plugin for HoistField {
    const NAME: &'static str = "hoist-field";
    const DESCRIPTION: &'static str =
        "Wraps the key or value in a struct of one field (Connect's HoistField)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("field")
                .importance(Importance::Medium)
                .doc("Name of the one field of the new struct"),
            Side::config_key(),
        ]
    }
}

impl HoistField {
    fn hoist(&self, data: Data) -> Data {
        let mut m = Map::new();
        m.insert(self.field.clone(), data.payload.clone());
        let schema = data
            .schema
            .as_ref()
            .map(|s| schema::struct_of(vec![schema::named(s, &self.field)]));
        data.replaced(schema, Value::Object(m))
    }
}

impl Transform for HoistField {
    fn open(config: &Config) -> Result<Self> {
        Ok(HoistField {
            side: Side::of(config)?,
            field: config.string("field")?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let data = self
                .side
                .read(r)?
                .unwrap_or_else(|| Data::schemaless(Value::Null));
            self.side.write(r, &self.hoist(data));
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(HoistField);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(side: &str, r: Record) -> Record {
        let config = Config::from_pairs([
            ("field".to_string(), "line".to_string()),
            (wharf_sdk::connect::SIDE.to_string(), side.to_string()),
        ])
        .with_defaults(&HoistField::config_spec());
        HoistField::open(&config)
            .expect("open")
            .apply(vec![r])
            .expect("apply")
            .remove(0)
    }

    fn json_of(b: &Option<Vec<u8>>) -> Value {
        serde_json::from_slice(b.as_deref().expect("bytes")).expect("json")
    }

    #[test]
    fn wraps_values_keys_and_schemas() {
        // Connect's docs: "field": "line" turns "hello" into {"line":"hello"}.
        let r = Record {
            topic: "t".into(),
            value: Some(br#""hello""#.to_vec()),
            ..Record::default()
        };
        assert_eq!(json_of(&run("value", r).value), json!({"line":"hello"}));
        let r = Record {
            topic: "t".into(),
            key: Some(br#"{"schema":{"type":"int64","optional":false},"payload":42}"#.to_vec()),
            ..Record::default()
        };
        let out = run("key", r);
        assert_eq!(
            json_of(&out.key),
            json!({"schema":{"type":"struct","optional":false,"fields":[
                {"field":"line","type":"int64","optional":false}]},"payload":{"line":42}})
        );
        assert_eq!(out.value, None);
        let r = Record {
            topic: "t".into(),
            ..Record::default()
        };
        assert_eq!(json_of(&run("key", r).key), json!({"line":null}));
    }
}
