//! `replace-field`: Kafka Connect's ReplaceField (`$Key` / `$Value`). Keeps
//! (`include`), drops (`exclude`, which wins) and renames (`renames:
//! old:new,...`) the top-level fields of a JSON object; a `{schema, payload}`
//! record gets its struct schema edited the same way.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{Config, ConfigError, ConfigKey, Error, Plugin, Record, Result, Transform};

const PURPOSE: &str = "field replacement";

pub struct ReplaceField {
    side: Side,
    exclude: Vec<String>,
    include: Vec<String>,
    renames: Vec<(String, String)>,
    defaults: bool,
}

impl Plugin for ReplaceField {
    const NAME: &'static str = "replace-field";
    const DESCRIPTION: &'static str =
        "Keeps, drops and renames fields of the key or value (Connect's ReplaceField)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::list("exclude")
                .default("")
                .doc("Fields to drop; wins over include"),
            ConfigKey::list("include")
                .default("")
                .doc("Fields to keep; all when empty"),
            ConfigKey::list("renames")
                .default("")
                .doc("Renames as old:new pairs, e.g. foo:bar,abc:xyz"),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if let Err(message) = renames(&config.list("renames")) {
            errors.push(ConfigError {
                key: "renames".into(),
                message,
            });
        }
        errors
    }
}

fn renames(list: &[String]) -> std::result::Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|m| match m.split(':').collect::<Vec<_>>()[..] {
            [from, to] => Ok((from.to_string(), to.to_string())),
            _ => Err(format!("invalid rename mapping '{m}': expected old:new")),
        })
        .collect()
}

impl ReplaceField {
    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|f| f == name)
            && (self.include.is_empty() || self.include.iter().any(|f| f == name))
    }

    fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames
            .iter()
            .find(|(from, _)| from == name)
            .map_or(name, |(_, to)| to)
    }

    fn replace(&self, mut data: Data) -> Result<Data> {
        let map = connect::require_map(&mut data.payload, data.schema.as_ref(), PURPOSE)?;
        let Some(s) = &data.schema else {
            let out: Map<String, Value> = std::mem::take(map)
                .into_iter()
                .filter(|(k, _)| self.keeps(k))
                .map(|(k, v)| (self.renamed(&k).to_string(), v))
                .collect();
            return Ok(data.replaced(None, Value::Object(out)));
        };
        let mut fields = Vec::new();
        let mut out = Map::new();
        for f in schema::fields(s) {
            let name = schema::field_name(f);
            if !self.keeps(name) {
                continue;
            }
            let to = self.renamed(name);
            out.insert(to.to_string(), connect::field_value(map, f, self.defaults));
            fields.push(schema::named(f, to));
        }
        let updated = schema::struct_like(s, fields);
        Ok(data.replaced(Some(updated), Value::Object(out)))
    }
}

impl Transform for ReplaceField {
    fn open(config: &Config) -> Result<Self> {
        Ok(ReplaceField {
            side: Side::of(config)?,
            exclude: config.list("exclude"),
            include: config.list("include"),
            renames: renames(&config.list("renames")).map_err(Error::Fatal)?,
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.side.edit(r, |d, _| self.replace(d))?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(ReplaceField);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(cfg: &[(&str, &str)], value: Value) -> Value {
        let config = Config::from_pairs(cfg.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&ReplaceField::config_spec());
        let mut t = ReplaceField::open(&config).expect("open");
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = t.apply(vec![r]).expect("apply");
        serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json")
    }

    #[test]
    fn connects_documented_examples_schemaless() {
        // "exclude: c2" turns {"c1":22,"c2":"foo"} into {"c1":22}.
        assert_eq!(
            run(&[("exclude", "c2")], json!({"c1":22,"c2":"foo"})),
            json!({"c1":22})
        );
        // "renames: foo:c1,bar:c2" turns {"foo":22,"bar":"baz"} into {"c1":22,"c2":"baz"}.
        assert_eq!(
            run(
                &[("renames", "foo:c1,bar:c2")],
                json!({"foo":22,"bar":"baz"})
            ),
            json!({"c1":22,"c2":"baz"})
        );
        assert_eq!(
            run(
                &[("include", "a,b"), ("exclude", "b")],
                json!({"a":1,"b":2,"c":3})
            ),
            json!({"a":1})
        );
    }

    #[test]
    fn schemas_follow_the_fields() {
        let value = json!({
            "schema": {"type":"struct","name":"shop.Value","optional":true,"fields":[
                {"field":"id","type":"int32","optional":false},
                {"field":"qty","type":"int32","optional":true,"default":1},
                {"field":"secret","type":"string","optional":true}]},
            "payload": {"id":7,"qty":null,"secret":"x"}
        });
        let out = run(
            &[("exclude", "secret"), ("renames", "qty:quantity")],
            value.clone(),
        );
        assert_eq!(
            out,
            json!({
                "schema": {"type":"struct","name":"shop.Value","optional":false,"fields":[
                    {"field":"id","type":"int32","optional":false},
                    {"field":"quantity","type":"int32","optional":true,"default":1}]},
                "payload": {"id":7,"quantity":1}
            })
        );
        let kept_null = run(
            &[
                ("exclude", "secret"),
                ("replace.null.with.default", "false"),
            ],
            value,
        );
        assert_eq!(kept_null["payload"], json!({"id":7,"qty":null}));
    }

    #[test]
    fn keys_tombstones_and_bad_input() {
        let config = Config::from_pairs([
            ("exclude".to_string(), "region".to_string()),
            (connect::SIDE.to_string(), "key".to_string()),
        ])
        .with_defaults(&ReplaceField::config_spec());
        let mut t = ReplaceField::open(&config).expect("open");
        let r = Record {
            topic: "t".into(),
            key: Some(br#"{"id":1,"region":"eu"}"#.to_vec()),
            value: None,
            ..Record::default()
        };
        let out = t.apply(vec![r]).expect("apply");
        assert_eq!(out[0].key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(out[0].value, None);
        let bad = Record {
            topic: "t".into(),
            key: Some(b"42".to_vec()),
            ..Record::default()
        };
        let e = t.apply(vec![bad]).unwrap_err().to_string();
        assert!(e.contains("[field replacement]"), "{e}");
        let errors = ReplaceField::validate(&Config::from_pairs([(
            "renames".to_string(),
            "a:b:c".to_string(),
        )]));
        assert_eq!(errors[0].key, "renames");
    }
}
