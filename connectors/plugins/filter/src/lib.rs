//! `filter`: keeps or drops records by the value of a JSON field (dotted
//! path into the value's payload), by equality or regex; tombstones follow
//! `null.values`.

use regex_lite::Regex;
use wharf_sdk::json::{self, Value};
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

pub struct Filter {
    field: String,
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
                .non_empty()
                .importance(Importance::High)
                .doc("Dotted path of the field in the value"),
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
        if eq == re {
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
            field: config.string("field")?,
            equals: config.opt_string("equals"),
            matches,
            keep_matching: config.string("action")? == "keep",
            keep_nulls: config.string("null.values")? == "keep",
        })
    }

    fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let Some(v) = json::parse(&r.value)? else {
                if self.keep_nulls {
                    out.push(r);
                }
                continue;
            };
            let hit = json::field(json::payload(&v), &self.field)
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
