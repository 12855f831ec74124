//! The sink's settings, read once at open from Confluent's S3 sink keys.

use chrono_tz::Tz;
use wharf_sdk::{Config, ConfigKey, Importance};
use wharf_storage::{keys, Compression, Format};

use crate::partition::{parse_path_format, Extractor, Partitioner};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnNull {
    Ignore,
    Write,
    Fail,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub topics_dir: String,
    pub format: Format,
    pub compression: Compression,
    pub separator: Vec<u8>,
    pub flush_size: u64,
    pub rotate_interval_ms: Option<i64>,
    pub rotate_schedule_ms: Option<i64>,
    pub tz: Tz,
    pub partitioner: Partitioner,
    pub extractor: Extractor,
    pub part_size: usize,
    pub store_keys: bool,
    pub store_headers: bool,
    pub on_null: OnNull,
}

pub fn spec() -> Vec<ConfigKey> {
    let mut spec = keys::connection();
    spec.extend([
        ConfigKey::long("flush.size")
            .at_least(1.0)
            .importance(Importance::High)
            .doc("Records per file: a Kafka partition's files are written when it has this many"),
        ConfigKey::long("rotate.interval.ms")
            .default("-1")
            .doc("Write a partition's files when a record's time (timestamp.extractor) is this far past the first one's; -1 off"),
        ConfigKey::long("rotate.schedule.interval.ms")
            .default("-1")
            .doc("Write open files at these wall-clock boundaries (in timezone), even without new records; -1 off"),
        ConfigKey::long("s3.part.size")
            .default("26214400")
            .range(Some(5_242_880.0), Some(2_147_483_647.0))
            .doc("Multipart upload part size; larger files upload part by part while they are written"),
        ConfigKey::long("s3.part.upload.concurrency")
            .default("4")
            .range(Some(1.0), Some(64.0))
            .doc("Parts of one file uploading at once"),
        ConfigKey::string("partitioner.class")
            .default("DefaultPartitioner")
            .doc("DefaultPartitioner (partition=N), FieldPartitioner, TimeBasedPartitioner, DailyPartitioner, HourlyPartitioner (Confluent's class names work too)"),
        ConfigKey::list("partition.field.name")
            .default("")
            .doc("FieldPartitioner: fields of the value that name the directories"),
        ConfigKey::string("path.format")
            .default("")
            .doc("TimeBasedPartitioner: Joda-style directory pattern, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"),
        ConfigKey::long("partition.duration.ms")
            .default("-1")
            .doc("TimeBasedPartitioner: the time span of one directory"),
        ConfigKey::string("timezone")
            .default("UTC")
            .doc("IANA zone for time-based directories and scheduled rotation"),
        ConfigKey::string("locale")
            .default("en")
            .doc("Accepted for Confluent compatibility (directory patterns use numbers only)"),
        ConfigKey::string("timestamp.extractor")
            .default("Wallclock")
            .doc("Wallclock, Record (the Kafka timestamp) or RecordField (timestamp.field of the value)"),
        ConfigKey::string("timestamp.field")
            .default("timestamp")
            .doc("RecordField: the value's field (dots for nesting) holding epoch millis or RFC 3339 text"),
        ConfigKey::string("behavior.on.null.values")
            .default("fail")
            .one_of(&["fail", "ignore", "write"])
            .doc("A record with a null value: fail, skip it, or write it (JSON: a null line)"),
    ]);
    spec
}

/// (key, problem)
pub type SettingError = (&'static str, String);

fn positive(config: &Config, key: &'static str) -> Result<Option<i64>, SettingError> {
    let v = config.i64(key).map_err(|e| (key, e.to_string()))?;
    Ok((v > 0).then_some(v))
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Self, SettingError> {
        let get = |key: &'static str| config.string(key).map_err(|e| (key, e.to_string()));
        let format = Format::parse(&get("format.class")?, &get("parquet.codec")?)
            .map_err(|e| ("format.class", e))?;
        let compression = Compression::parse(&get("s3.compression.type")?)
            .map_err(|e| ("s3.compression.type", e))?;
        if matches!(format, Format::Parquet { .. }) && compression != Compression::None {
            return Err((
                "s3.compression.type",
                "Parquet files compress inside (parquet.codec); use none here".into(),
            ));
        }
        let tz: Tz = get("timezone")?
            .trim()
            .parse()
            .map_err(|e| ("timezone", format!("{e}")))?;
        let extractor =
            Extractor::parse(&get("timestamp.extractor")?, get("timestamp.field")?.trim())
                .map_err(|e| ("timestamp.extractor", e))?;
        let class = get("partitioner.class")?;
        let short = class
            .rsplit('.')
            .next()
            .unwrap_or(&class)
            .to_ascii_lowercase();
        let duration = positive(config, "partition.duration.ms")?;
        let time = |pattern: String, duration: Option<i64>| -> Result<Partitioner, SettingError> {
            let duration = duration.ok_or((
                "partition.duration.ms",
                "required (> 0) for a time-based partitioner".to_string(),
            ))?;
            if pattern.trim().is_empty() {
                return Err(("path.format", "required for TimeBasedPartitioner".into()));
            }
            Ok(Partitioner::Time {
                format: parse_path_format(&pattern).map_err(|e| ("path.format", e))?,
                duration,
                tz,
            })
        };
        let partitioner = match short.as_str() {
            "defaultpartitioner" | "default" => Partitioner::Default,
            "fieldpartitioner" | "field" => {
                let fields = config.list("partition.field.name");
                if fields.is_empty() {
                    return Err(("partition.field.name", "required for FieldPartitioner".into()));
                }
                Partitioner::Field(fields)
            }
            "timebasedpartitioner" | "time" => time(get("path.format")?, duration)?,
            "dailypartitioner" | "daily" => {
                time("'year'=YYYY/'month'=MM/'day'=dd".into(), Some(86_400_000))?
            }
            "hourlypartitioner" | "hourly" => {
                time("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH".into(), Some(3_600_000))?
            }
            _ => {
                return Err((
                    "partitioner.class",
                    format!("'{class}': use DefaultPartitioner, FieldPartitioner, TimeBasedPartitioner, DailyPartitioner or HourlyPartitioner"),
                ))
            }
        };
        let topics_dir = get("topics.dir")?.trim().trim_matches('/').to_string();
        Ok(Settings {
            topics_dir,
            format,
            compression,
            separator: keys::unescape(&get("format.bytearray.separator")?),
            flush_size: config
                .u64("flush.size")
                .map_err(|e| ("flush.size", e.to_string()))?
                .max(1),
            rotate_interval_ms: positive(config, "rotate.interval.ms")?,
            rotate_schedule_ms: positive(config, "rotate.schedule.interval.ms")?,
            tz,
            partitioner,
            extractor,
            part_size: config
                .u64("s3.part.size")
                .map_err(|e| ("s3.part.size", e.to_string()))?
                .clamp(5 << 20, i32::MAX as u64) as usize,
            store_keys: config
                .bool("store.kafka.keys")
                .map_err(|e| ("store.kafka.keys", e.to_string()))?,
            store_headers: config
                .bool("store.kafka.headers")
                .map_err(|e| ("store.kafka.headers", e.to_string()))?,
            on_null: match get("behavior.on.null.values")?
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "ignore" => OnNull::Ignore,
                "write" => OnNull::Write,
                _ => OnNull::Fail,
            },
        })
    }
}
