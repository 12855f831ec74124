//! The worker config (Connect's `worker.properties`, as YAML): where Kafka
//! is, where offsets live, and client overrides. A standalone run without one
//! connects sources to sinks in-process and keeps offsets in a local file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use super::flatten::flatten;
use super::{secrets, ConfigError, OverridePolicy, ProviderPolicy};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetStorage {
    File(PathBuf),
    Kafka { topic: String, partitions: i32 },
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub origin: String,
    /// Every key, flat, secrets resolved.
    pub map: BTreeMap<String, String>,
    pub bootstrap_servers: Option<String>,
    pub offset_storage: OffsetStorage,
    pub topic_creation_enable: bool,
    pub offset_flush_timeout: Duration,
    /// Where the REST API listens (Connect's `listeners`, first entry).
    pub listen: Option<String>,
    /// `rest.auth.token`: requests need `Authorization: Bearer <token>`.
    pub rest_token: Option<String>,
    /// `rest.tls.certificate.file` and `rest.tls.key.file` (PEM): HTTPS.
    pub rest_tls: Option<(PathBuf, PathBuf)>,
    /// `config.watch.dir`: connector YAML applied while the worker runs.
    pub watch_dir: Option<PathBuf>,
    /// `config.providers*`: what references a config from the API may use.
    pub providers: ProviderPolicy,
    /// `connector.client.config.override.policy`.
    pub client_overrides: OverridePolicy,
}

pub const DEFAULT_OFFSETS_FILE: &str = ".wharf/standalone.offsets.json";
pub const DEFAULT_OFFSETS_TOPIC: &str = "wharf-offsets";

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            origin: "<defaults>".into(),
            map: BTreeMap::new(),
            bootstrap_servers: None,
            offset_storage: OffsetStorage::File(DEFAULT_OFFSETS_FILE.into()),
            topic_creation_enable: true,
            offset_flush_timeout: Duration::from_secs(5),
            listen: None,
            rest_token: None,
            rest_tls: None,
            watch_dir: None,
            providers: ProviderPolicy::default(),
            client_overrides: OverridePolicy::default(),
        }
    }
}

impl WorkerConfig {
    fn key_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            file: self.origin.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Keys under `prefix.` with the prefix removed (`producer.`, `consumer.`, `admin.`).
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        let p = format!("{prefix}.");
        self.map
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&p).map(|k| (k.to_string(), v.clone())))
            .collect()
    }

    /// Builds from a flat map, checking every key this module reads.
    pub fn from_map(origin: &str, map: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut c = WorkerConfig {
            origin: origin.to_string(),
            map,
            ..WorkerConfig::default()
        };
        c.bootstrap_servers = c
            .map
            .get("bootstrap.servers")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let file = c
            .map
            .get("offset.storage.file.filename")
            .cloned()
            .unwrap_or_else(|| DEFAULT_OFFSETS_FILE.into());
        let topic = c
            .map
            .get("offset.storage.topic")
            .cloned()
            .unwrap_or_else(|| DEFAULT_OFFSETS_TOPIC.into());
        let partitions = match c.map.get("offset.storage.partitions") {
            None => 25,
            Some(v) => match v.parse::<i32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(c.key_error(
                        "offset.storage.partitions",
                        "must be an integer of at least 1",
                    ))
                }
            },
        };
        c.offset_storage = match c.map.get("offset.storage").map(String::as_str) {
            None | Some("file") => OffsetStorage::File(file.into()),
            Some("kafka") if c.bootstrap_servers.is_some() => {
                OffsetStorage::Kafka { topic, partitions }
            }
            Some("kafka") => {
                return Err(c.key_error(
                    "offset.storage",
                    "'kafka' needs bootstrap.servers to be set",
                ))
            }
            Some(other) => {
                return Err(c.key_error(
                    "offset.storage",
                    format!("'{other}' is not one of: file, kafka"),
                ))
            }
        };
        c.topic_creation_enable = match c.map.get("topic.creation.enable").map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(c.key_error(
                    "topic.creation.enable",
                    format!("'{other}' is not a boolean"),
                ))
            }
        };
        if let Some(v) = c.map.get("offset.flush.timeout.ms") {
            match v.parse::<u64>() {
                Ok(ms) if ms > 0 => c.offset_flush_timeout = Duration::from_millis(ms),
                _ => {
                    return Err(c.key_error(
                        "offset.flush.timeout.ms",
                        "must be a positive integer (milliseconds)",
                    ))
                }
            }
        }
        let cert = c.map.get("rest.tls.certificate.file").map(PathBuf::from);
        let key = c.map.get("rest.tls.key.file").map(PathBuf::from);
        c.rest_tls = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(c.key_error(
                    "rest.tls.key.file",
                    "required with rest.tls.certificate.file",
                ))
            }
            (None, Some(_)) => {
                return Err(c.key_error(
                    "rest.tls.certificate.file",
                    "required with rest.tls.key.file",
                ))
            }
        };
        if let Some(l) = c.map.get("listeners") {
            let first = l.split(',').next().unwrap_or("").trim().to_string();
            let addr = match first.split_once("://") {
                Some(("http", _)) if c.rest_tls.is_some() => {
                    return Err(c.key_error(
                        "listeners",
                        format!("'{first}' is plain HTTP but rest.tls.* is set: use https://"),
                    ))
                }
                Some(("https", _)) if c.rest_tls.is_none() => {
                    return Err(c.key_error(
                        "listeners",
                        format!("'{first}' needs rest.tls.certificate.file and rest.tls.key.file"),
                    ))
                }
                Some(("http" | "https", addr)) => addr.to_string(),
                None if !first.is_empty() => first.clone(),
                _ => {
                    return Err(c.key_error(
                        "listeners",
                        format!("'{first}' is not an http(s)://HOST:PORT listener"),
                    ))
                }
            };
            c.listen = Some(addr);
        }
        c.watch_dir = c.map.get("config.watch.dir").map(PathBuf::from);
        c.rest_token = c
            .map
            .get("rest.auth.token")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        c.providers =
            ProviderPolicy::from_worker(&c.map).map_err(|(key, m)| c.key_error(&key, m))?;
        let key = "connector.client.config.override.policy";
        if let Some(v) = c.map.get(key) {
            c.client_overrides = OverridePolicy::parse(v).ok_or_else(|| {
                c.key_error(key, format!("'{v}' is not one of: None, Principal, All"))
            })?;
        }
        Ok(c)
    }
}

/// Reads a worker config file (YAML; nested keys flatten with dots).
pub fn load_worker(path: &Path) -> Result<WorkerConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| ConfigError::Yaml {
        file: file.clone(),
        message: e.to_string(),
    })?;
    if !doc.is_mapping() {
        return Err(ConfigError::Shape {
            file,
            message: "a worker config is a mapping of keys".into(),
        });
    }
    let raw = flatten(&doc).map_err(|(key, message)| ConfigError::Key {
        file: file.clone(),
        key,
        message,
    })?;
    let mut map = BTreeMap::new();
    for (key, value) in raw {
        let (resolved, _) = secrets::resolve(&value, path.parent(), &ProviderPolicy::trusted())
            .map_err(|message| ConfigError::Key {
                file: file.clone(),
                key: key.clone(),
                message,
            })?;
        map.insert(key, resolved);
    }
    WorkerConfig::from_map(&file, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_offsets_need_bootstrap_servers() {
        let e = WorkerConfig::from_map("w.yaml", map(&[("offset.storage", "kafka")]))
            .expect_err("no brokers");
        assert!(e.to_string().contains("offset.storage"), "{e}");
        let c = WorkerConfig::from_map(
            "w.yaml",
            map(&[
                ("offset.storage", "kafka"),
                ("bootstrap.servers", "127.0.0.1:9092"),
                ("producer.linger.ms", "20"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            c.offset_storage,
            OffsetStorage::Kafka {
                topic: "wharf-offsets".into(),
                partitions: 25
            }
        );
        assert_eq!(
            c.prefixed("producer"),
            vec![("linger.ms".into(), "20".into())]
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let e =
            WorkerConfig::from_map("w.yaml", map(&[("offset.storage", "redis")])).expect_err("bad");
        assert!(
            e.to_string().contains("w.yaml") && e.to_string().contains("redis"),
            "{e}"
        );
    }
}
