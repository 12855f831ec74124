//! `set-schema-metadata`: Kafka Connect's SetSchemaMetadata (`$Key` /
//! `$Value`): sets `schema.name` and/or `schema.version` on the schema of a
//! `{schema, payload}` key or value. A null without a schema passes; a
//! schemaless non-null is an error, as in Connect ("Schema required").

use wharf_sdk::connect::{self, Side};
use wharf_sdk::json::Value;
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

pub struct SetSchemaMetadata {
    side: Side,
    name: Option<String>,
    version: Option<i32>,
}

impl Plugin for SetSchemaMetadata {
    const NAME: &'static str = "set-schema-metadata";
    const DESCRIPTION: &'static str =
        "Sets the name and version of the key or value schema (Connect's SetSchemaMetadata)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("schema.name")
                .default("")
                .importance(Importance::High)
                .doc("Schema name to set"),
            ConfigKey::string("schema.version")
                .default("")
                .importance(Importance::High)
                .doc("Schema version to set (an integer)"),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        match version(config) {
            Err(message) => errors.push(ConfigError {
                key: "schema.version".into(),
                message,
            }),
            Ok(None) if config.opt_string("schema.name").is_none() => errors.push(ConfigError {
                key: "schema.name".into(),
                message: "neither schema.name nor schema.version is set".into(),
            }),
            Ok(_) => {}
        }
        errors
    }
}

fn version(config: &Config) -> std::result::Result<Option<i32>, String> {
    config
        .opt_string("schema.version")
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("expected a 32-bit integer, got '{v}'"))
        })
        .transpose()
}

impl Transform for SetSchemaMetadata {
    fn open(config: &Config) -> Result<Self> {
        let name = config.opt_string("schema.name");
        let version = version(config).map_err(|m| Error::Fatal(format!("schema.version: {m}")))?;
        if name.is_none() && version.is_none() {
            return Err(Error::Fatal(
                "neither schema.name nor schema.version is set".into(),
            ));
        }
        Ok(SetSchemaMetadata {
            side: Side::of(config)?,
            name,
            version,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let Some(mut data) = self.side.read(r)? else {
                continue;
            };
            let Some(Value::Object(s)) = &mut data.schema else {
                if data.payload.is_null() {
                    continue;
                }
                let e = Error::Fatal("schema required for [updating schema metadata]".into());
                return Err(self.side.context(r, e));
            };
            if let Some(name) = &self.name {
                s.insert("name".into(), Value::String(name.clone()));
            }
            if let Some(v) = self.version {
                s.insert("version".into(), Value::from(v));
            }
            self.side.write(r, &data);
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(SetSchemaMetadata);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(pairs: &[(&str, &str)]) -> SetSchemaMetadata {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&SetSchemaMetadata::config_spec());
        SetSchemaMetadata::open(&config).expect("open")
    }

    fn record(value: Option<Value>) -> Record {
        Record {
            topic: "t".into(),
            value: value.map(|v| v.to_string().into_bytes()),
            ..Record::default()
        }
    }

    #[test]
    fn sets_the_name_and_version() {
        // Connect's docs: "schema.name": "order-value", "schema.version": "2".
        let mut t = open(&[("schema.name", "order-value"), ("schema.version", "2")]);
        let out = t
            .apply(vec![record(Some(json!({"schema":{"type":"struct","fields":[],"optional":false,"name":"old"},"payload":{}}))), record(None)])
            .expect("apply");
        let v: Value =
            serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json");
        assert_eq!(
            v["schema"],
            json!({"type":"struct","fields":[],"optional":false,"name":"order-value","version":2})
        );
        assert_eq!(out[1].value, None);
        assert!(t.apply(vec![record(Some(json!({"a":1})))]).is_err());
    }

    #[test]
    fn config_needs_a_name_or_a_version() {
        let errs = SetSchemaMetadata::validate(&Config::default());
        assert_eq!(errs[0].key, "schema.name");
        let errs = SetSchemaMetadata::validate(&Config::from_pairs([(
            "schema.version".to_string(),
            "two".to_string(),
        )]));
        assert_eq!(errs[0].key, "schema.version");
    }
}
