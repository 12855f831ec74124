//! `filter`: keeps or drops records by the value of a JSON field (dotted
//! path into the value's payload), by equality or regex; tombstones follow
//! `null.values`. Without `field` it is Kafka Connect's Filter: it drops
//! every record, tombstones too, so with a predicate
//! (`transforms.x.predicate`) it drops the records the predicate selects.

use regex_lite::Regex;
use wharf_sdk::json::{self, Value};
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

pub struct Filter {
    /// None: Connect's Filter, every record matches.
    field: Option<String>,
    equals: Option<String>,
    matches: Option<Regex>,
    keep_matching: bool,
    keep_nulls: bool,
}

impl Plugin for Filter {
    const NAME: &'static str = "filter";
    const DESCRIPTION: &'static str =
        "Keeps or drops records whose JSON field equals or matches a value";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("field")
                .default("")
                .importance(Importance::High)
                .doc("Dotted path of the field in the value; empty matches every record (Connect's Filter)"),
            ConfigKey::string("equals")
                .default("")
                .doc("Match when the field's text equals this"),
            ConfigKey::string("matches")
                .default("")
                .doc("Match when the field's text matches this regex"),
            ConfigKey::string("action")
                .default("drop")
                .one_of(&["drop", "keep"])
                .doc("What to do with matching records"),
            ConfigKey::string("null.values")
                .default("keep")
                .one_of(&["keep", "drop"])
                .doc("What to do with tombstones"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        let eq = config.raw("equals").is_some_and(|s| !s.is_empty());
        let re = config.raw("matches").is_some_and(|s| !s.is_empty());
        let field = config.raw("field").is_some_and(|s| !s.trim().is_empty());
        if !field && (eq || re) {
            errors.push(ConfigError {
                key: "field".into(),
                message: "required with 'equals' or 'matches': the field to compare".into(),
            });
        } else if field && eq == re {
            errors.push(ConfigError {
                key: "equals".into(),
                message: "set exactly one of 'equals' or 'matches'".into(),
            });
        }
        if let Some(Err(e)) = config
            .raw("matches")
            .filter(|s| !s.is_empty())
            .map(Regex::new)
        {
            errors.push(ConfigError {
                key: "matches".into(),
                message: format!("invalid regex: {e}"),
            });
        }
        errors
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Transform for Filter {
    fn open(config: &Config) -> Result<Self> {
        let matches = match config.opt_string("matches") {
            Some(r) => Some(Regex::new(&r).map_err(|e| Error::Fatal(format!("matches: {e}")))?),
            None => None,
        };
        Ok(Filter {
            field: config.opt_string("field"),
            equals: config.opt_string("equals"),
            matches,
            keep_matching: config.string("action")? == "keep",
            keep_nulls: config.string("null.values")? == "keep",
        })
    }

    fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let Some(field) = &self.field else {
                // Every record matches, tombstones too.
                if self.keep_matching {
                    out.push(r);
                }
                continue;
            };
            let Some(v) = json::parse(&r.value)? else {
                if self.keep_nulls {
                    out.push(r);
                }
                continue;
            };
            let hit = json::field(json::payload(&v), field)
                .map(text)
                .is_some_and(|t| {
                    self.equals.as_deref() == Some(t.as_str())
                        || self.matches.as_ref().is_some_and(|re| re.is_match(&t))
                });
            if hit == self.keep_matching {
                out.push(r);
            }
        }
        Ok(out)
    }
}

wharf_sdk::export_transform!(Filter);

#[cfg(test)]
mod tests {
    use super::*;

    fn open(pairs: &[(&str, &str)]) -> Filter {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&Filter::config_spec());
        Filter::open(&config).expect("open")
    }

    fn rec(value: Option<&str>) -> Record {
        Record {
            topic: "t".into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn without_a_field_it_is_connects_filter() {
        let out = open(&[])
            .apply(vec![rec(Some("{}")), rec(None), rec(Some("[1]"))])
            .expect("apply");
        assert!(out.is_empty());
        assert!(Filter::validate(&Config::default()).is_empty());
        let errs = Filter::validate(&Config::from_pairs([(
            "equals".to_string(),
            "x".to_string(),
        )]));
        assert_eq!(errs[0].key, "field");
    }

    #[test]
    fn with_a_field_it_compares() {
        let mut f = open(&[("field", "a.b"), ("equals", "1"), ("action", "keep")]);
        let out = f
            .apply(vec![
                rec(Some(r#"{"a":{"b":1}}"#)),
                rec(Some(r#"{"a":{"b":2}}"#)),
                rec(None),
            ])
            .expect("apply");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].value, None);
    }
}
