//! `route`: renames topics with a regex and replacement, as Kafka Connect's
//! RegexRouter does. The replacement is Java's: `$1` (as many digits as make
//! a group that exists), `${name}`, and `\` escaping the next character.
//! Topics that do not match whole are left alone.

use regex_lite::Regex;
use wharf_sdk::connect::java_replacement;
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
            match Regex::new(r) {
                Err(e) => errors.push(ConfigError {
                    key: "regex".into(),
                    message: format!("invalid regex: {e}"),
                }),
                Ok(re) => {
                    let groups = re.captures_len() - 1;
                    if let Err(message) =
                        java_replacement(config.raw("replacement").unwrap_or(""), groups)
                    {
                        errors.push(ConfigError {
                            key: "replacement".into(),
                            message,
                        });
                    }
                }
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
        let replacement =
            java_replacement(&config.string("replacement")?, regex.captures_len() - 1)
                .map_err(|m| wharf_sdk::Error::Fatal(format!("replacement: {m}")))?;
        Ok(Route { regex, replacement })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(regex: &str, replacement: &str, topic: &str) -> String {
        let config = Config::from_pairs([
            ("regex".to_string(), regex.to_string()),
            ("replacement".to_string(), replacement.to_string()),
        ]);
        let r = Record {
            topic: topic.into(),
            ..Record::default()
        };
        Route::open(&config)
            .expect("open")
            .apply(vec![r])
            .expect("apply")[0]
            .topic
            .clone()
    }

    #[test]
    fn connects_documented_example_and_java_replacements() {
        // Connect's docs: regex "(.*)-(.*)-(.*)" and replacement "$3" on "a-b-c".
        assert_eq!(route("(.*)-(.*)-(.*)", "$3", "a-b-c"), "c");
        assert_eq!(
            route(
                "([^.]+)\\.([^.]+)\\.([^.]+)",
                "$3_raw",
                "shop.public.orders"
            ),
            "orders_raw"
        );
        assert_eq!(route("(.*)", "$10", "x"), "x0");
        assert_eq!(route("(?P<t>.*)s", "${t}-\\$", "orders"), "order-$");
        assert_eq!(route("orders", "x", "orders2"), "orders2");
        let bad = Route::validate(&Config::from_pairs([
            ("regex".to_string(), "(a)".to_string()),
            ("replacement".to_string(), "$2".to_string()),
        ]));
        assert_eq!(bad[0].key, "replacement");
    }
}
