//! Connector configs: YAML (nested or flat) flattened to Kafka Connect's flat
//! string map, with `${env:VAR}` and `${file:path:key}` secrets resolved.
//! Every error names the file, the key and the problem.

mod flatten;
mod overrides;
mod providers;
mod secrets;

pub use overrides::OverridePolicy;
pub use providers::ProviderPolicy;
pub mod worker;

pub use worker::{load_worker, OffsetStorage, WorkerConfig};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use flatten::flatten;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: invalid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: {message}")]
    Shape { file: String, message: String },
    #[error("{file}: key '{key}': {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
}

/// One connector: its name and flat config, plus where it came from and
/// which keys hold secrets (never echoed back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub origin: String,
    pub secret_keys: BTreeSet<String>,
}

impl ConnectorConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    pub fn class(&self) -> Option<&str> {
        self.get("connector.class")
    }

    pub fn pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The config with secret values replaced, safe to log or return: keys
    /// marked secret, inline PEM private keys whatever their key, and the
    /// password of a `scheme://user:password@host` URL.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(k, v)| {
                let v = if self.secret_keys.contains(k) || is_private_key(v) {
                    HIDDEN.to_string()
                } else {
                    without_url_password(v)
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// An error about one key. A key that holds a secret gets no message
    /// that could quote its value, and every secret value of this config is
    /// cut out of any message (a plugin may quote one key in another's error).
    pub fn key_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let message = if self.is_secret(key) {
            "invalid value (not shown: the key holds a secret)".to_string()
        } else {
            self.scrub(&message.into())
        };
        ConfigError::Key {
            file: format!("{} (connector '{}')", self.origin, self.name),
            key: key.to_string(),
            message,
        }
    }

    /// Whether a key's value is a secret: it came from a config provider,
    /// the plugin types it `password`, its name says so, or it is a key.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secret_keys.contains(key)
            || looks_secret(key)
            || self.get(key).is_some_and(is_private_key)
    }

    /// `text` with every secret value of this config replaced by `[hidden]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.config {
            // A value of one or two characters is no secret worth hiding and
            // would blank out ordinary text.
            if v.len() >= 3 && self.is_secret(k) && out.contains(v.as_str()) {
                out = out.replace(v.as_str(), HIDDEN);
            }
        }
        out
    }
}

/// Reads one YAML file of one or more documents (separated by `---`), each
/// either Connect's `{name, config: {...}}` shape or a flat document with
/// `name` beside the config keys.
pub fn load_file(path: &Path) -> Result<Vec<ConnectorConfig>, ConfigError> {
    use serde::Deserialize;
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| ConfigError::Yaml {
            file: file.clone(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let label = if i == 0 {
            file.clone()
        } else {
            format!("{file} (document {})", i + 1)
        };
        out.push(from_value(value, &label, path.parent())?);
    }
    if out.is_empty() {
        return Err(ConfigError::Shape {
            file,
            message: "no connector in this file".into(),
        });
    }
    Ok(out)
}

/// Parses YAML text; `base` resolves relative `${file:...}` paths.
pub fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<ConnectorConfig, ConfigError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    from_value(doc, file, base)
}

fn from_value(
    doc: serde_yaml::Value,
    file: &str,
    base: Option<&Path>,
) -> Result<ConnectorConfig, ConfigError> {
    let serde_yaml::Value::Mapping(mut top) = doc else {
        return Err(ConfigError::Shape {
            file: file.to_string(),
            message: "expected a mapping with 'name' and 'config'".into(),
        });
    };
    let name = match top.remove("name") {
        Some(serde_yaml::Value::String(s)) if !s.trim().is_empty() => s,
        Some(_) => {
            return Err(ConfigError::Key {
                file: file.to_string(),
                key: "name".into(),
                message: "must be a non-empty string".into(),
            })
        }
        None => {
            return Err(ConfigError::Key {
                file: file.to_string(),
                key: "name".into(),
                message: "required key is missing".into(),
            })
        }
    };
    let body = match top.remove("config") {
        Some(serde_yaml::Value::Mapping(m)) => {
            if let Some(extra) = top.keys().next() {
                return Err(ConfigError::Shape {
                    file: file.to_string(),
                    message: format!(
                        "unexpected top-level key {} beside 'name' and 'config'",
                        flatten::scalar_text(extra).unwrap_or_else(|| "?".into())
                    ),
                });
            }
            m
        }
        Some(_) => {
            return Err(ConfigError::Key {
                file: file.to_string(),
                key: "config".into(),
                message: "must be a mapping of config keys".into(),
            })
        }
        None => top,
    };
    let raw =
        flatten(&serde_yaml::Value::Mapping(body)).map_err(|(key, message)| ConfigError::Key {
            file: file.to_string(),
            key,
            message,
        })?;
    resolved(&name, raw, file, base, &ProviderPolicy::trusted())
}

/// An inline PEM private key (a TLS or SASL key pasted into a config).
fn is_private_key(v: &str) -> bool {
    v.contains("-----BEGIN") && v.contains("PRIVATE KEY")
}

/// `scheme://user:password@host/...` with the password replaced.
fn without_url_password(v: &str) -> String {
    let Some((scheme, rest)) = v.split_once("://") else {
        return v.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return v.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{HIDDEN}@{host}{tail}"),
        None => v.to_string(),
    }
}

/// Keys whose names say they hold a secret, whatever the plugin declares.
pub fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "sasl.jaas.config", "api.key"]
        .iter()
        .any(|s| k.contains(s))
}

/// Resolves every `${provider:..}` reference of a flat map; the keys that
/// held one are secrets.
fn resolved(
    name: &str,
    raw: impl IntoIterator<Item = (String, String)>,
    origin: &str,
    base: Option<&Path>,
    policy: &ProviderPolicy,
) -> Result<ConnectorConfig, ConfigError> {
    let mut config = BTreeMap::new();
    let mut secret_keys = BTreeSet::new();
    for (key, value) in raw {
        let (value, had_secret) =
            secrets::resolve(&value, base, policy).map_err(|message| ConfigError::Key {
                file: origin.to_string(),
                key: key.clone(),
                message,
            })?;
        if had_secret {
            secret_keys.insert(key.clone());
        }
        config.insert(key, value);
    }
    Ok(ConnectorConfig {
        name: name.to_string(),
        config,
        origin: origin.to_string(),
        secret_keys,
    })
}

/// What the API shows instead of a secret value. Sent back in an update, it
/// keeps the value already stored.
pub const HIDDEN: &str = "[hidden]";

/// Builds a connector from Connect's flat JSON map (the REST API, the
/// configs topic), resolving only the references `policy` allows.
pub fn from_map(
    name: &str,
    map: BTreeMap<String, String>,
    origin: &str,
    policy: &ProviderPolicy,
) -> Result<ConnectorConfig, ConfigError> {
    resolved(name, map, origin, None, policy)
}

/// Reads a worker-side integer key with a default; errors name the key.
pub fn int_key(c: &ConnectorConfig, key: &str, default: i64, min: i64) -> Result<i64, ConfigError> {
    match c.get(key) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= min => Ok(n),
            Ok(n) => Err(c.key_error(key, format!("must be at least {min}, got {n}"))),
            Err(_) => Err(c.key_error(key, format!("expected an integer, got '{v}'"))),
        },
    }
}

/// The base directory relative `${file:..}` paths resolve against.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_yaml_flattens_like_connect_json() {
        let c = parse(
            "name: orders-cdc\nconfig:\n  connector.class: postgres-cdc\n  tasks.max: 1\n  database: { hostname: 127.0.0.1, port: 5432 }\n  table.include.list: [public.a, public.b]\n",
            "t.yaml",
            None,
        )
        .unwrap();
        assert_eq!(c.name, "orders-cdc");
        assert_eq!(c.get("database.hostname"), Some("127.0.0.1"));
        assert_eq!(c.get("database.port"), Some("5432"));
        assert_eq!(c.get("tasks.max"), Some("1"));
        assert_eq!(c.get("table.include.list"), Some("public.a,public.b"));
    }

    #[test]
    fn flat_documents_work_too() {
        let c = parse("name: x\nconnector.class: datagen\n", "t.yaml", None).unwrap();
        assert_eq!(c.class(), Some("datagen"));
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = parse("config: {}\n", "a.yaml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.yaml") && e.contains("'name'"), "{e}");
        let e = parse("name: x\nconfig:\n  a: [1, {b: 2}]\n", "b.yaml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.yaml") && e.contains("'a'"), "{e}");
        let e = parse("name: [\n", "c.yaml", None).unwrap_err().to_string();
        assert!(e.contains("c.yaml") && e.contains("invalid YAML"), "{e}");
    }

    #[test]
    fn inline_keys_and_url_passwords_are_redacted() {
        let c = ConnectorConfig {
            name: "c".into(),
            config: [
                (
                    "ssl.key.pem",
                    "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
                ),
                (
                    "connection.url",
                    "https://elastic:hunter2@es.example:9200/path",
                ),
                ("store.url", "http://127.0.0.1:9000"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            origin: "test".into(),
            secret_keys: Default::default(),
        };
        let r = c.redacted();
        assert_eq!(r["ssl.key.pem"], HIDDEN);
        assert_eq!(
            r["connection.url"],
            "https://elastic:[hidden]@es.example:9200/path"
        );
        assert_eq!(r["store.url"], "http://127.0.0.1:9000");
        let e = c.key_error("ssl.key.pem", "bad MIIE").to_string();
        assert!(!e.contains("MIIE"), "{e}");
    }

    #[test]
    fn env_secrets_resolve_and_are_redacted() {
        std::env::set_var("WHARF_TEST_SECRET_PW", "s3cret");
        let c = parse(
            "name: x\nconfig:\n  database.password: ${env:WHARF_TEST_SECRET_PW}\n",
            "t.yaml",
            None,
        )
        .unwrap();
        assert_eq!(c.get("database.password"), Some("s3cret"));
        assert_eq!(c.redacted()["database.password"], "[hidden]");
        let e = parse(
            "name: x\nconfig:\n  p: ${env:WHARF_TEST_SURELY_UNSET}\n",
            "t.yaml",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'p'") && e.contains("WHARF_TEST_SURELY_UNSET"),
            "{e}"
        );
    }
}
