//! The connector's settings, read once at open from Confluent's keys.

use std::collections::HashMap;

use wharf_sdk::{Config, ConfigKey, Error, Importance, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnNull {
    Ignore,
    Delete,
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMalformed {
    Ignore,
    Warn,
    Fail,
}

/// `behavior.on.version.conflict`, for conflicts that are not replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    Ignore,
    Warn,
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMethod {
    Insert,
    Upsert,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub key_ignore: bool,
    pub on_null: OnNull,
    pub on_malformed: OnMalformed,
    pub on_version_conflict: OnConflict,
    pub write_method: WriteMethod,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub linger_ms: i64,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    pub flush_timeout_ms: i64,
    pub index_map: HashMap<String, String>,
    /// `<type>-<dataset>` when writing to data streams.
    pub data_stream: Option<String>,
}

pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::list("connection.url")
            .non_empty()
            .importance(Importance::High)
            .doc("Comma-separated HTTP(S) URLs of the cluster's nodes; requests go round robin"),
        ConfigKey::string("connection.username")
            .default("")
            .doc("Basic-auth user"),
        ConfigKey::password("connection.password")
            .default("")
            .doc("Basic-auth password"),
        ConfigKey::boolean("connection.compression")
            .default("false")
            .doc("Gzip request bodies (the server must have http.compression enabled)"),
        ConfigKey::long("read.timeout.ms")
            .default("3000")
            .at_least(1.0)
            .doc("Timeout of one HTTP request"),
        ConfigKey::long("connection.timeout.ms")
            .default("1000")
            .at_least(0.0)
            .doc("Accepted for Confluent compatibility; the read timeout bounds the whole request"),
        ConfigKey::boolean("key.ignore")
            .default("false")
            .importance(Importance::High)
            .doc("Ignore the key: the document id is topic+partition+offset"),
        ConfigKey::boolean("schema.ignore")
            .default("false")
            .doc("Accepted for Confluent compatibility; mappings are always left to the engine (or your index templates)"),
        ConfigKey::string("behavior.on.null.values")
            .default("fail")
            .one_of(&["ignore", "delete", "fail"])
            .doc("A record with a null value (tombstone): skip it, delete the document with its id, or fail"),
        ConfigKey::string("behavior.on.malformed.documents")
            .default("fail")
            .one_of(&["ignore", "warn", "fail"])
            .doc("A document the engine refuses (mapping or parse error): skip it, skip and log it, or fail (dead letter queue with errors.tolerance=all)"),
        // Not a key of Confluent's sink, which always skips such a conflict
        // with a warning (= warn here); Aiven's Elasticsearch and OpenSearch
        // sinks name it so, with ignore|warn|fail and fail by default, the
        // default kept here: a refused write is a lost write.
        ConfigKey::string("behavior.on.version.conflict")
            .default("fail")
            .one_of(&["ignore", "warn", "fail"])
            .doc("A write the engine refuses with a version conflict that is not a replay (write.method=upsert, whose updates and deletes carry no version, or a keyed data stream create whose id exists): skip it, skip and log it, or fail (dead letter queue with errors.tolerance=all). Inserts carry the Kafka offset as external version: their conflicts mean a newer version is stored, are done, and count in the version_conflicts metric"),
        ConfigKey::string("write.method")
            .default("insert")
            .one_of(&["insert", "upsert"])
            .doc("insert: index the whole document; upsert: merge it into the stored one"),
        ConfigKey::int("batch.size")
            .default("2000")
            .range(Some(1.0), Some(1_000_000.0))
            .doc("Documents per bulk request"),
        ConfigKey::int("max.in.flight.requests")
            .default("5")
            .range(Some(1.0), Some(1000.0))
            .doc("Bulk requests outstanding at once"),
        ConfigKey::long("linger.ms")
            .default("1")
            .at_least(0.0)
            .doc("How long a partial batch may wait for more documents"),
        ConfigKey::int("max.retries")
            .default("5")
            .at_least(0.0)
            .doc("Retries of a retriable failure (429, 5xx, no connection) within one flush"),
        ConfigKey::long("retry.backoff.ms")
            .default("100")
            .at_least(0.0)
            .doc("First retry wait; doubles each retry, with jitter"),
        ConfigKey::long("flush.timeout.ms")
            .default("180000")
            .at_least(1.0)
            .doc("How long a flush may take before it fails (and is retried by the worker)"),
        ConfigKey::list("topic.index.map")
            .default("")
            .doc("topic:index pairs; other topics use their own name (lower-cased) as index"),
        ConfigKey::string("data.stream.type")
            .default("none")
            .one_of(&["none", "logs", "metrics"])
            .doc("Write to the data stream <type>-<dataset>-<topic> instead of an index"),
        ConfigKey::string("data.stream.dataset")
            .default("")
            .doc("The data stream's dataset (required with data.stream.type)"),
    ]
}

fn small(config: &Config, key: &str) -> Result<u64> {
    config.u64(key)
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Self> {
        let pick =
            |key: &str| -> Result<String> { Ok(config.string(key)?.trim().to_ascii_lowercase()) };
        let mut index_map = HashMap::new();
        for pair in config.list("topic.index.map") {
            let (t, i) = pair.split_once(':').ok_or_else(|| {
                Error::Fatal(format!("topic.index.map: '{pair}' is not topic:index"))
            })?;
            index_map.insert(t.trim().to_string(), i.trim().to_string());
        }
        let data_stream = match pick("data.stream.type")?.as_str() {
            "none" => None,
            t => {
                let dataset = config.string("data.stream.dataset")?;
                if dataset.trim().is_empty() {
                    return Err(Error::Fatal(
                        "data.stream.dataset: required with data.stream.type".into(),
                    ));
                }
                Some(format!("{t}-{}", dataset.trim()))
            }
        };
        Ok(Settings {
            key_ignore: config.bool("key.ignore")?,
            on_null: match pick("behavior.on.null.values")?.as_str() {
                "ignore" => OnNull::Ignore,
                "delete" => OnNull::Delete,
                _ => OnNull::Fail,
            },
            on_malformed: match pick("behavior.on.malformed.documents")?.as_str() {
                "ignore" => OnMalformed::Ignore,
                "warn" => OnMalformed::Warn,
                _ => OnMalformed::Fail,
            },
            on_version_conflict: match pick("behavior.on.version.conflict")?.as_str() {
                "ignore" => OnConflict::Ignore,
                "warn" => OnConflict::Warn,
                _ => OnConflict::Fail,
            },
            write_method: match pick("write.method")?.as_str() {
                "upsert" => WriteMethod::Upsert,
                _ => WriteMethod::Insert,
            },
            batch_size: small(config, "batch.size")?.max(1) as usize,
            max_in_flight: small(config, "max.in.flight.requests")?.max(1) as usize,
            linger_ms: small(config, "linger.ms")? as i64,
            max_retries: small(config, "max.retries")?.min(u32::MAX as u64) as u32,
            retry_backoff_ms: small(config, "retry.backoff.ms")?,
            flush_timeout_ms: small(config, "flush.timeout.ms")?.max(1) as i64,
            index_map,
            data_stream,
        })
    }
}
