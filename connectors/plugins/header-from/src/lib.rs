//! `header-from`: Kafka Connect's HeaderFrom (`$Key` / `$Value`): the named
//! fields go to headers (the n-th of `fields` to the n-th of `headers`),
//! copied or moved (`operation`). A header holds the field as Connect's
//! SimpleHeaderConverter writes it: a string as it is, anything else as JSON
//! text, null as an empty value. Moving a field out of a `{schema, payload}`
//! record drops it from the schema too.

use wharf_sdk::connect::{self, schema, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

pub struct HeaderFrom {
    side: Side,
    pairs: Vec<(String, String)>,
    moving: bool,
    defaults: bool,
}

impl Plugin for HeaderFrom {
    const NAME: &'static str = "header-from";
    const DESCRIPTION: &'static str =
        "Moves or copies fields of the key or value into headers (Connect's HeaderFrom)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::list("fields")
                .non_empty()
                .importance(Importance::High)
                .doc("Fields whose values go to headers"),
            ConfigKey::list("headers")
                .non_empty()
                .importance(Importance::High)
                .doc("Header names, in the order of fields"),
            ConfigKey::string("operation")
                .one_of(&["move", "copy"])
                .importance(Importance::High)
                .doc("move removes the fields from the key or value; copy keeps them"),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if config.list("fields").len() != config.list("headers").len() {
            errors.push(ConfigError {
                key: "headers".into(),
                message: "must have as many elements as 'fields'".into(),
            });
        }
        errors
    }
}

impl HeaderFrom {
    fn edit(&self, r: &mut Record) -> Result<()> {
        let Some(mut data) = self.side.read(r)? else {
            return Ok(());
        };
        if data.payload.is_null() {
            return Ok(());
        }
        let purpose = if self.moving {
            "header move"
        } else {
            "header copy"
        };
        let map = connect::require_map(&mut data.payload, data.schema.as_ref(), purpose)?;
        let mut headers = Vec::with_capacity(self.pairs.len());
        match &data.schema {
            None => {
                for (field, header) in &self.pairs {
                    let v = map.get(field).cloned().unwrap_or(Value::Null);
                    headers.push((header.clone(), connect::header_bytes(&v)));
                }
                if self.moving {
                    self.pairs.iter().for_each(|(f, _)| {
                        map.remove(f);
                    });
                }
            }
            Some(s) => {
                for (field, header) in &self.pairs {
                    let f = schema::field(s, field)
                        .ok_or_else(|| Error::Fatal(format!("unknown field: {field}")))?;
                    let v = connect::field_value(map, f, self.defaults);
                    headers.push((header.clone(), connect::header_bytes(&v)));
                }
                if self.moving {
                    let moved =
                        |f: &Value| self.pairs.iter().any(|(n, _)| n == schema::field_name(f));
                    let kept: Vec<Value> = schema::fields(s)
                        .iter()
                        .filter(|f| !moved(f))
                        .cloned()
                        .collect();
                    let values: Map<String, Value> = kept
                        .iter()
                        .map(|f| {
                            let name = schema::field_name(f).to_string();
                            (name, connect::field_value(map, f, self.defaults))
                        })
                        .collect();
                    data = data.replaced(Some(schema::struct_like(s, kept)), Value::Object(values));
                }
            }
        }
        self.side.write(r, &data);
        r.headers.extend(headers);
        Ok(())
    }
}

impl Transform for HeaderFrom {
    fn open(config: &Config) -> Result<Self> {
        let fields = config.list("fields");
        let headers = config.list("headers");
        if fields.len() != headers.len() {
            return Err(Error::Fatal(
                "'fields' and 'headers' must have as many elements".into(),
            ));
        }
        Ok(HeaderFrom {
            side: Side::of(config)?,
            pairs: fields.into_iter().zip(headers).collect(),
            moving: config
                .string("operation")?
                .trim()
                .eq_ignore_ascii_case("move"),
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.edit(r).map_err(|e| self.side.context(r, e))?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(HeaderFrom);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(pairs: &[(&str, &str)], value: Value) -> Record {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&HeaderFrom::config_spec());
        let mut t = HeaderFrom::open(&config).expect("open");
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            headers: vec![("old".into(), b"1".to_vec())],
            ..Record::default()
        };
        t.apply(vec![r]).expect("apply").remove(0)
    }

    fn value(r: &Record) -> Value {
        serde_json::from_slice(r.value.as_deref().expect("value")).expect("json")
    }

    #[test]
    fn moves_and_copies_fields_to_headers() {
        // Connect's docs: fields id,ts → headers k_id,k_ts, operation move.
        let moved = run(
            &[
                ("fields", "id,ts,meta"),
                ("headers", "k_id,k_ts,k_meta"),
                ("operation", "move"),
            ],
            json!({"id":"a1","ts":12,"meta":{"x":true},"rest":0}),
        );
        assert_eq!(value(&moved), json!({"rest":0}));
        assert_eq!(
            moved.headers,
            vec![
                ("old".to_string(), b"1".to_vec()),
                ("k_id".to_string(), b"a1".to_vec()),
                ("k_ts".to_string(), b"12".to_vec()),
                ("k_meta".to_string(), br#"{"x":true}"#.to_vec()),
            ]
        );
        let copied = run(
            &[("fields", "id"), ("headers", "k_id"), ("operation", "copy")],
            json!({"id":"a1"}),
        );
        assert_eq!(value(&copied), json!({"id":"a1"}));
        assert_eq!(copied.headers[1], ("k_id".to_string(), b"a1".to_vec()));
    }

    #[test]
    fn a_move_drops_the_field_from_the_schema() {
        let moved = run(
            &[("fields", "id"), ("headers", "id"), ("operation", "move")],
            json!({"schema":{"type":"struct","optional":false,"fields":[
                    {"field":"id","type":"int32","optional":false},
                    {"field":"n","type":"int32","optional":true}]},
                   "payload":{"id":5,"n":1}}),
        );
        assert_eq!(
            value(&moved),
            json!({"schema":{"type":"struct","optional":false,"fields":[
                    {"field":"n","type":"int32","optional":true}]},"payload":{"n":1}})
        );
        assert_eq!(moved.headers[1], ("id".to_string(), b"5".to_vec()));
        let errors = HeaderFrom::validate(&Config::from_pairs([
            ("fields".to_string(), "a,b".to_string()),
            ("headers".to_string(), "a".to_string()),
            ("operation".to_string(), "copy".to_string()),
        ]));
        assert_eq!(errors[0].key, "headers");
    }
}
