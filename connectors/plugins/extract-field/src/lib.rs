//! `extract-field`: Kafka Connect's ExtractField (`$Key` / `$Value`): the key
//! or value becomes one of its fields. `field.syntax.version=V2` (KIP-821)
//! reads a dotted path into nested structs, with backticks around names that
//! hold dots (`` `a.b`.c ``). A `{schema, payload}` record gets the field's
//! schema; a field that is not in the schema is an error, a missing one in
//! schemaless data gives null.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::json::Value;
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

const PURPOSE: &str = "field extraction";

pub struct ExtractField {
    side: Side,
    path: Vec<String>,
    original: String,
    defaults: bool,
}

impl Plugin for ExtractField {
    const NAME: &'static str = "extract-field";
    const DESCRIPTION: &'static str =
        "Replaces the key or value by one of its fields (Connect's ExtractField)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("field")
                .importance(Importance::Medium)
                .doc("The field to extract (a dotted path with field.syntax.version=V2)"),
            ConfigKey::string("field.syntax.version")
                .default("V1")
                .one_of(&["V1", "V2"])
                .importance(Importance::High)
                .doc(
                    "V1: top-level fields only; V2: dotted paths, backticks around names with dots",
                ),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if let Some(field) = config.raw("field") {
            let v2 = config
                .raw("field.syntax.version")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("V2"));
            if let Err(message) = path_of(field, v2) {
                errors.push(ConfigError {
                    key: "field".into(),
                    message,
                });
            }
        }
        errors
    }
}

/// Connect's `SingleFieldPath`: V1 is the name itself; V2 splits on dots,
/// a backtick-quoted step may hold dots, and `` \` `` escapes a backtick in it.
fn path_of(path: &str, v2: bool) -> std::result::Result<Vec<String>, String> {
    if !v2 {
        return Ok(vec![path.to_string()]);
    }
    let b = path.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            let end = path[i..].find('.').map_or(b.len(), |j| i + j);
            steps.push(path[i..end].to_string());
            i = end + 1;
            continue;
        }
        let open = i;
        let mut step = String::new();
        let mut start = i + 1;
        let mut j = start;
        loop {
            let Some(k) = path[j..].find('`').map(|k| j + k) else {
                return Err(format!(
                    "incomplete backtick pair in path [{path}]: consider a backslash before \
                     the backtick at position {open}"
                ));
            };
            let escaped = b[k - 1] == b'\\';
            if k + 1 >= b.len() {
                if escaped {
                    return Err(format!(
                        "incomplete backtick pair in path [{path}] at position {open}"
                    ));
                }
                step.push_str(&path[start..k]);
                i = k + 1;
                break;
            }
            if b[k + 1] != b'.' {
                j = k + 1;
                continue;
            }
            if escaped {
                step.push_str(&path[start..k - 1]);
                step.push('`');
                start = k + 1;
                j = k + 1;
                continue;
            }
            step.push_str(&path[start..k]);
            i = k + 2;
            break;
        }
        steps.push(step);
    }
    if path.ends_with('.') {
        steps.push(String::new());
    }
    Ok(steps)
}

impl ExtractField {
    fn extract(&self, mut data: Data) -> Result<Data> {
        let Some(s) = data.schema.take() else {
            if data.payload.is_null() {
                return Ok(data);
            }
            let map = connect::require_map(&mut data.payload, None, PURPOSE)?;
            let mut cur = map.get(&self.path[0]);
            for step in &self.path[1..] {
                cur = cur.and_then(|v| v.get(step));
            }
            let v = cur.cloned().unwrap_or(Value::Null);
            return Ok(data.replaced(None, v));
        };
        // The field's schema, step by step.
        let mut field = None;
        let mut current = &s;
        for step in &self.path {
            let f = schema::field(current, step)
                .ok_or_else(|| Error::Fatal(format!("unknown field: {}", self.original)))?;
            field = Some(f);
            current = f;
        }
        let field = field.ok_or_else(|| Error::Fatal("empty field path".into()))?;
        if data.payload.is_null() {
            return Ok(data.replaced(Some(schema::unnamed(field)), Value::Null));
        }
        connect::require_map(&mut data.payload, Some(&s), PURPOSE)?;
        let mut value = data.payload.clone();
        let mut current = &s;
        for step in &self.path {
            let f = schema::field(current, step).expect("checked above");
            value = match value.as_object() {
                Some(m) => connect::field_value(m, f, self.defaults),
                None => Value::Null,
            };
            current = f;
        }
        Ok(data.replaced(Some(schema::unnamed(field)), value))
    }
}

impl Transform for ExtractField {
    fn open(config: &Config) -> Result<Self> {
        let original = config.string("field")?;
        let v2 = config
            .string("field.syntax.version")?
            .trim()
            .eq_ignore_ascii_case("V2");
        Ok(ExtractField {
            side: Side::of(config)?,
            path: path_of(&original, v2).map_err(|m| Error::Fatal(format!("field: {m}")))?,
            original,
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let Some(data) = self.side.read(r)? else {
                continue;
            };
            let out = self.extract(data).map_err(|e| self.side.context(r, e))?;
            self.side.write(r, &out);
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(ExtractField);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(pairs: &[(&str, &str)]) -> ExtractField {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&ExtractField::config_spec());
        ExtractField::open(&config).expect("open")
    }

    fn run(pairs: &[(&str, &str)], value: Value) -> Option<Value> {
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = open(pairs).apply(vec![r]).expect("apply");
        out[0]
            .value
            .as_deref()
            .map(|v| serde_json::from_slice(v).expect("json"))
    }

    #[test]
    fn connects_documented_example_and_missing_fields() {
        // Connect's docs: "field": "id" turns {"id":42,"name":"x"} into 42.
        assert_eq!(
            run(&[("field", "id")], json!({"id":42,"name":"x"})),
            Some(json!(42))
        );
        // A missing field is a null: a tombstone when schemaless.
        assert_eq!(run(&[("field", "nope")], json!({"id":42})), None);
        assert_eq!(
            run(
                &[("field", "a.b"), ("field.syntax.version", "V2")],
                json!({"a":{"b":{"c":1}}})
            ),
            Some(json!({"c":1}))
        );
        assert_eq!(run(&[("field", "a.b")], json!({"a.b":3})), Some(json!(3)));
    }

    #[test]
    fn schemas_become_the_fields() {
        let value = json!({
            "schema": {"type":"struct","optional":false,"fields":[
                {"field":"id","type":"int32","optional":false},
                {"field":"after","type":"struct","optional":true,"name":"V","fields":[
                    {"field":"qty","type":"int32","optional":true,"default":1}]}]},
            "payload": {"id":7,"after":{"qty":null}}
        });
        assert_eq!(
            run(&[("field", "id")], value.clone()),
            Some(json!({"schema":{"type":"int32","optional":false},"payload":7}))
        );
        assert_eq!(
            run(
                &[("field", "after.qty"), ("field.syntax.version", "V2")],
                value.clone()
            ),
            Some(json!({"schema":{"type":"int32","optional":true,"default":1},"payload":1}))
        );
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let e = open(&[("field", "nope")]).apply(vec![r]).unwrap_err();
        assert!(e.to_string().contains("unknown field: nope"), "{e}");
    }

    #[test]
    fn v2_paths_split_as_connect_splits_them() {
        let p = |s: &str| path_of(s, true).expect("path");
        assert_eq!(p("a.b.c"), ["a", "b", "c"]);
        assert_eq!(p("`a.b`.c"), ["a.b", "c"]);
        assert_eq!(p("a."), ["a", ""]);
        assert_eq!(p("`a\\`.b`.c"), ["a`.b", "c"]);
        assert!(path_of("`a.b", true).is_err());
    }
}
