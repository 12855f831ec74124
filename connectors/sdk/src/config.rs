//! Config specs and typed access to Connect-style flat string configs.

use std::collections::BTreeMap;

use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    Int,
    Long,
    Double,
    String,
    Password,
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Importance {
    High,
    Medium,
    Low,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    Range(Option<f64>, Option<f64>),
    OneOf(Vec<String>),
    NonEmpty,
}

/// One key of a plugin's config spec, built fluently:
/// `ConfigKey::long("rate").default("1000").doc("records per second").at_least(0.0)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigKey {
    pub name: String,
    pub ty: ConfigType,
    pub default: Option<String>,
    pub importance: Importance,
    pub doc: String,
    pub validators: Vec<Validator>,
}

impl ConfigKey {
    pub fn new(name: &str, ty: ConfigType) -> Self {
        ConfigKey {
            name: name.to_string(),
            ty,
            default: None,
            importance: Importance::Medium,
            doc: String::new(),
            validators: Vec::new(),
        }
    }
    pub fn string(name: &str) -> Self {
        Self::new(name, ConfigType::String)
    }
    pub fn int(name: &str) -> Self {
        Self::new(name, ConfigType::Int)
    }
    pub fn long(name: &str) -> Self {
        Self::new(name, ConfigType::Long)
    }
    pub fn double(name: &str) -> Self {
        Self::new(name, ConfigType::Double)
    }
    pub fn boolean(name: &str) -> Self {
        Self::new(name, ConfigType::Boolean)
    }
    pub fn password(name: &str) -> Self {
        Self::new(name, ConfigType::Password)
    }
    pub fn list(name: &str) -> Self {
        Self::new(name, ConfigType::List)
    }
    pub fn default(mut self, value: &str) -> Self {
        self.default = Some(value.to_string());
        self
    }
    pub fn doc(mut self, doc: &str) -> Self {
        self.doc = doc.to_string();
        self
    }
    pub fn importance(mut self, importance: Importance) -> Self {
        self.importance = importance;
        self
    }
    pub fn range(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.validators.push(Validator::Range(min, max));
        self
    }
    pub fn at_least(self, min: f64) -> Self {
        self.range(Some(min), None)
    }
    pub fn one_of(mut self, values: &[&str]) -> Self {
        self.validators.push(Validator::OneOf(
            values.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }
    pub fn non_empty(mut self) -> Self {
        self.validators.push(Validator::NonEmpty);
        self
    }

    /// Checks one raw value against the key's type and validators.
    pub fn check(&self, raw: &str) -> Result<(), String> {
        match self.ty {
            ConfigType::Boolean => {
                if !matches!(raw.to_ascii_lowercase().as_str(), "true" | "false") {
                    return Err(format!("expected true or false, got '{raw}'"));
                }
            }
            ConfigType::Int => {
                raw.trim()
                    .parse::<i32>()
                    .map_err(|_| format!("expected a 32-bit integer, got '{raw}'"))?;
            }
            ConfigType::Long => {
                raw.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("expected an integer, got '{raw}'"))?;
            }
            ConfigType::Double => {
                raw.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("expected a number, got '{raw}'"))?;
            }
            ConfigType::String | ConfigType::Password | ConfigType::List => {}
        }
        for v in &self.validators {
            match v {
                Validator::Range(min, max) => {
                    let x: f64 = raw
                        .trim()
                        .parse()
                        .map_err(|_| format!("expected a number, got '{raw}'"))?;
                    if let Some(min) = min {
                        if x < *min {
                            return Err(format!("must be at least {min}, got {raw}"));
                        }
                    }
                    if let Some(max) = max {
                        if x > *max {
                            return Err(format!("must be at most {max}, got {raw}"));
                        }
                    }
                }
                Validator::OneOf(allowed) => {
                    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(raw.trim())) {
                        return Err(format!(
                            "must be one of [{}], got '{raw}'",
                            allowed.join(", ")
                        ));
                    }
                }
                Validator::NonEmpty => {
                    if raw.trim().is_empty() {
                        return Err("must not be empty".to_string());
                    }
                }
            }
        }
        Ok(())
    }
}

/// One problem with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// Validates a config against a spec: missing required keys and bad values.
/// Keys the spec does not name are left alone (the host owns keys such as
/// `connector.class`, `tasks.max`, `transforms.*`).
pub fn validate_against(spec: &[ConfigKey], config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for key in spec {
        match config.raw(&key.name) {
            Some(v) => {
                if let Err(message) = key.check(v) {
                    errors.push(ConfigError {
                        key: key.name.clone(),
                        message,
                    });
                }
            }
            None if key.default.is_none() => errors.push(ConfigError {
                key: key.name.clone(),
                message: "required key is missing".to_string(),
            }),
            None => {}
        }
    }
    errors
}

/// A config with the spec's defaults applied, and typed getters whose errors
/// name the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Config {
            values: pairs.into_iter().collect(),
        }
    }

    /// Fills in defaults from `spec` for keys the config leaves out.
    pub fn with_defaults(mut self, spec: &[ConfigKey]) -> Self {
        for key in spec {
            if let Some(d) = &key.default {
                self.values
                    .entry(key.name.clone())
                    .or_insert_with(|| d.clone());
            }
        }
        self
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.values.into_iter().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.values.iter()
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_string(), value.into());
    }

    pub fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn string(&self, key: &str) -> Result<String, Error> {
        self.raw(key)
            .map(str::to_string)
            .ok_or_else(|| Error::Fatal(format!("config key '{key}' is missing")))
    }

    pub fn opt_string(&self, key: &str) -> Option<String> {
        self.raw(key)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<T, Error> {
        let raw = self.string(key)?;
        raw.trim()
            .parse()
            .map_err(|_| Error::Fatal(format!("config key '{key}': expected {what}, got '{raw}'")))
    }

    pub fn i64(&self, key: &str) -> Result<i64, Error> {
        self.parsed(key, "an integer")
    }

    pub fn u64(&self, key: &str) -> Result<u64, Error> {
        self.parsed(key, "a non-negative integer")
    }

    pub fn f64(&self, key: &str) -> Result<f64, Error> {
        self.parsed(key, "a number")
    }

    pub fn bool(&self, key: &str) -> Result<bool, Error> {
        match self.string(key)?.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(Error::Fatal(format!(
                "config key '{key}': expected true or false, got '{other}'"
            ))),
        }
    }

    /// A comma-separated list, trimmed, empty items dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.raw(key)
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::long("rate").default("10").at_least(0.0),
            ConfigKey::string("topic").non_empty(),
            ConfigKey::string("mode").default("a").one_of(&["a", "b"]),
        ]
    }

    #[test]
    fn reports_missing_required_and_bad_values_by_key() {
        let c = Config::from_pairs([("rate".into(), "-1".into()), ("mode".into(), "c".into())]);
        let errors = validate_against(&spec(), &c);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["rate", "topic", "mode"]);
        assert!(errors[0].message.contains("at least 0"));
        assert!(errors[1].message.contains("missing"));
        assert!(errors[2].message.contains("one of [a, b]"));
    }

    #[test]
    fn defaults_fill_in_and_getters_name_the_key() {
        let c = Config::from_pairs([("topic".into(), "t".into())]).with_defaults(&spec());
        assert_eq!(c.i64("rate").unwrap(), 10);
        let Error::Fatal(m) = c.i64("topic").unwrap_err() else {
            panic!("expected fatal")
        };
        assert!(m.contains("'topic'"));
    }
}
