//! `route`: renames topics with a regex and replacement, as Kafka Connect's
//! RegexRouter does (`$1`-style groups). Topics that do not match whole are
//! left alone.

use regex_lite::Regex;
use wharf_sdk::{Config, ConfigError, ConfigKey, Importance, Plugin, Record, Result, Transform};

pub struct Route {
    regex: Regex,
    replacement: String,
}

impl Plugin for Route {
    const NAME: &'static str = "route";
    const DESCRIPTION: &'static str = "Renames topics by regex (Kafka Connect's RegexRouter)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("regex")
                .non_empty()
                .importance(Importance::High)
                .doc("Regex the whole topic must match"),
            ConfigKey::string("replacement")
                .importance(Importance::High)
                .doc("New topic; $1, $2 insert groups"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if let Some(r) = config.raw("regex") {
            if let Err(e) = Regex::new(r) {
                errors.push(ConfigError {
                    key: "regex".into(),
                    message: format!("invalid regex: {e}"),
                });
            }
        }
        errors
    }
}

impl Transform for Route {
    fn open(config: &Config) -> Result<Self> {
        let pattern = format!("^(?:{})$", config.string("regex")?);
        let regex =
            Regex::new(&pattern).map_err(|e| wharf_sdk::Error::Fatal(format!("regex: {e}")))?;
        Ok(Route {
            regex,
            replacement: config.string("replacement")?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            if self.regex.is_match(&r.topic) {
                r.topic = self
                    .regex
                    .replace(&r.topic, self.replacement.as_str())
                    .into_owned();
            }
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(Route);
