//! `logical-table-router`: Debezium's ByLogicalTableRouter (topic routing).
//! A record whose topic matches `topic.regex` whole goes to
//! `topic.replacement` (Java `$1` groups); other records pass unchanged. So
//! that keys of the merged tables stay unique, the key gets the field
//! `key.field.name` holding the original topic, or `key.field.replacement`
//! applied to it through `key.field.regex` (`key.enforce.uniqueness=false`
//! turns this off). `{schema, payload}` keys get the field in their schema
//! and the name `<topic>.Key`; a Debezium envelope's schema is renamed
//! `<topic>.Envelope`, its `before`/`after` `<topic>.Value`.

use regex_lite::Regex;
use wharf_sdk::connect::{java_replacement, schema, Side};
use wharf_sdk::json::Value;
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

pub struct LogicalTableRouter {
    topic: (Regex, String),
    /// The key field, and how its value is made from the topic.
    key_field: Option<(String, Option<(Regex, String)>)>,
}

impl Plugin for LogicalTableRouter {
    const NAME: &'static str = "logical-table-router";
    const DESCRIPTION: &'static str =
        "Routes change events of several tables to one topic (Debezium's ByLogicalTableRouter)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("topic.regex")
                .non_empty()
                .importance(Importance::Low)
                .doc("Regex the whole topic must match to be routed"),
            ConfigKey::string("topic.replacement")
                .importance(Importance::Low)
                .doc("The new topic; $1, $2 insert groups of topic.regex"),
            ConfigKey::boolean("key.enforce.uniqueness")
                .default("true")
                .doc("Add the original topic to the key so merged keys stay unique"),
            ConfigKey::string("key.field.name")
                .default("__dbz__physicalTableIdentifier")
                .doc("The key field that holds the original topic"),
            ConfigKey::string("key.field.regex")
                .default("")
                .doc("Regex over the original topic, for key.field.replacement"),
            ConfigKey::string("key.field.replacement")
                .default("")
                .doc("The key field's value; $1, $2 insert groups of key.field.regex"),
            ConfigKey::int("logical.table.cache.size")
                .default("16")
                .importance(Importance::Low)
                .doc("Accepted for Debezium configs; Wharf keeps no schema cache"),
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

/// A regex and its replacement, named by their keys in errors.
fn rule(config: &Config, regex_key: &str, replacement_key: &str) -> Result<(Regex, String)> {
    let pattern = config.string(regex_key)?;
    let re = Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| Error::Fatal(format!("{regex_key}: invalid regex: {e}")))?;
    let replacement = java_replacement(&config.string(replacement_key)?, re.captures_len() - 1)
        .map_err(|m| Error::Fatal(format!("{replacement_key}: {m}")))?;
    Ok((re, replacement))
}

impl LogicalTableRouter {
    fn key_value(&self, old_topic: &str) -> Option<(&str, String)> {
        let (name, rule) = self.key_field.as_ref()?;
        let value = match rule {
            Some((re, rep)) if re.is_match(old_topic) => {
                re.replace(old_topic, rep.as_str()).into_owned()
            }
            _ => old_topic.to_string(),
        };
        Some((name, value))
    }

    fn reroute(&self, r: &mut Record) -> Result<()> {
        let (re, rep) = &self.topic;
        if !re.is_match(&r.topic) {
            return Ok(());
        }
        let new_topic = re.replace(&r.topic, rep.as_str()).into_owned();
        if let Some((field, value)) = self.key_value(&r.topic) {
            if let Some(mut key) = Side::Key.read(r)? {
                if let Value::Object(m) = &mut key.payload {
                    m.insert(field.to_string(), Value::String(value));
                    if let Some(Value::Object(s)) = &mut key.schema {
                        if let Some(Value::Array(fields)) = s.get_mut("fields") {
                            fields.retain(|f| schema::field_name(f) != field);
                            fields.push(schema::named(&schema::primitive("string", false), field));
                        }
                        s.insert("name".into(), Value::String(format!("{new_topic}.Key")));
                    }
                    Side::Key.write(r, &key);
                }
            }
        }
        if let Some(mut value) = Side::Value.read(r)? {
            if let Some(Value::Object(s)) = &mut value.schema {
                if let Some(Value::Array(fields)) = s.get_mut("fields") {
                    let mut envelope = false;
                    for f in fields.iter_mut() {
                        if matches!(schema::field_name(f), "before" | "after") {
                            f["name"] = Value::String(format!("{new_topic}.Value"));
                            envelope = true;
                        }
                    }
                    if envelope {
                        s.insert(
                            "name".into(),
                            Value::String(format!("{new_topic}.Envelope")),
                        );
                        Side::Value.write(r, &value);
                    }
                }
            }
        }
        r.topic = new_topic;
        Ok(())
    }
}

impl Transform for LogicalTableRouter {
    fn open(config: &Config) -> Result<Self> {
        let key_field = if config.bool("key.enforce.uniqueness")? {
            let field_rule = match (
                config.opt_string("key.field.regex"),
                config.opt_string("key.field.replacement"),
            ) {
                (None, None) => None,
                (Some(_), Some(_)) => {
                    Some(rule(config, "key.field.regex", "key.field.replacement")?)
                }
                (Some(_), None) => {
                    return Err(Error::Fatal(
                        "key.field.replacement: required with key.field.regex".into(),
                    ))
                }
                (None, Some(_)) => {
                    return Err(Error::Fatal(
                        "key.field.regex: required with key.field.replacement".into(),
                    ))
                }
            };
            Some((config.string("key.field.name")?, field_rule))
        } else {
            None
        };
        Ok(LogicalTableRouter {
            topic: rule(config, "topic.regex", "topic.replacement")?,
            key_field,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.reroute(r)?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(LogicalTableRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(pairs: &[(&str, &str)]) -> LogicalTableRouter {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&LogicalTableRouter::config_spec());
        LogicalTableRouter::open(&config).expect("open")
    }

    fn record(topic: &str, key: Value, value: Option<Value>) -> Record {
        Record {
            topic: topic.into(),
            key: Some(key.to_string().into_bytes()),
            value: value.map(|v| v.to_string().into_bytes()),
            ..Record::default()
        }
    }

    fn json_of(b: &Option<Vec<u8>>) -> Value {
        serde_json::from_slice(b.as_deref().expect("bytes")).expect("json")
    }

    #[test]
    fn debeziums_documented_example() {
        // topic.regex (.*)customers_shard(.*), topic.replacement $1customers_all_shards,
        // key.field.regex (.*)customers_shard(.*), key.field.replacement $2.
        let mut t = open(&[
            ("topic.regex", "(.*)customers_shard(.*)"),
            ("topic.replacement", "$1customers_all_shards"),
            ("key.field.name", "shard_id"),
            ("key.field.regex", "(.*)customers_shard(.*)"),
            ("key.field.replacement", "$2"),
        ]);
        let out = t
            .apply(vec![
                record("myserver.mydb.customers_shard2", json!({"id":7}), None),
                record("myserver.mydb.orders", json!({"id":1}), None),
            ])
            .expect("apply");
        assert_eq!(out[0].topic, "myserver.mydb.customers_all_shards");
        assert_eq!(json_of(&out[0].key), json!({"id":7,"shard_id":"2"}));
        assert_eq!(out[1].topic, "myserver.mydb.orders");
        assert_eq!(json_of(&out[1].key), json!({"id":1}));
    }

    #[test]
    fn schemas_get_the_key_field_and_the_new_names() {
        let mut t = open(&[
            ("topic.regex", "db\\.(.*)_\\d+"),
            ("topic.replacement", "db.$1"),
        ]);
        let key = json!({"schema":{"type":"struct","name":"db.t_1.Key","optional":false,"fields":[
            {"field":"id","type":"int32","optional":false}]},"payload":{"id":5}});
        let value = json!({"schema":{"type":"struct","name":"db.t_1.Envelope","optional":false,"fields":[
            {"field":"before","type":"struct","name":"db.t_1.Value","optional":true,"fields":[]},
            {"field":"after","type":"struct","name":"db.t_1.Value","optional":true,"fields":[]}]},
            "payload":{"before":null,"after":{}}});
        let out = t
            .apply(vec![record("db.t_1", key, Some(value))])
            .expect("apply");
        assert_eq!(out[0].topic, "db.t");
        let k = json_of(&out[0].key);
        assert_eq!(
            k["payload"],
            json!({"id":5,"__dbz__physicalTableIdentifier":"db.t_1"})
        );
        assert_eq!(k["schema"]["name"], "db.t.Key");
        assert_eq!(
            k["schema"]["fields"][1],
            json!({"field":"__dbz__physicalTableIdentifier","type":"string","optional":false})
        );
        let v = json_of(&out[0].value);
        assert_eq!(v["schema"]["name"], "db.t.Envelope");
        assert_eq!(v["schema"]["fields"][1]["name"], "db.t.Value");
        let errs = LogicalTableRouter::validate(&Config::from_pairs([
            ("topic.regex".to_string(), "a".to_string()),
            ("topic.replacement".to_string(), "b".to_string()),
            ("key.field.regex".to_string(), "(x)".to_string()),
        ]));
        assert_eq!(errs[0].key, "key.field.replacement");
    }
}
