//! `timestamp-router`: Kafka Connect's TimestampRouter: the topic becomes
//! `topic.format` with `${topic}` and `${timestamp}` replaced, the timestamp
//! being the record's, written with the SimpleDateFormat `timestamp.format`
//! in UTC. A record without a timestamp is an error, as in Connect.

use wharf_sdk::datetime::DateFormat;
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

pub struct TimestampRouter {
    topic_format: String,
    timestamp_format: DateFormat,
}

impl Plugin for TimestampRouter {
    const NAME: &'static str = "timestamp-router";
    const DESCRIPTION: &'static str =
        "Routes records to topics named after their topic and timestamp (Connect's TimestampRouter)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("topic.format")
                .default("${topic}-${timestamp}")
                .importance(Importance::High)
                .doc("The new topic; ${topic} and ${timestamp} are replaced"),
            ConfigKey::string("timestamp.format")
                .default("yyyyMMdd")
                .importance(Importance::High)
                .doc("SimpleDateFormat pattern for ${timestamp}, in UTC"),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if let Some(Err(message)) = config.raw("timestamp.format").map(DateFormat::new) {
            errors.push(ConfigError {
                key: "timestamp.format".into(),
                message,
            });
        }
        errors
    }
}

impl Transform for TimestampRouter {
    fn open(config: &Config) -> Result<Self> {
        let pattern = config.string("timestamp.format")?;
        Ok(TimestampRouter {
            topic_format: config.string("topic.format")?,
            timestamp_format: DateFormat::new(&pattern)
                .map_err(|m| Error::Fatal(format!("timestamp.format: {m}")))?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let Some(ts) = r.timestamp else {
                return Err(Error::Fatal(format!(
                    "timestamp missing on a record of topic '{}'",
                    r.topic
                )));
            };
            let stamp = self.timestamp_format.format(ts);
            r.topic = self
                .topic_format
                .replace("${topic}", &r.topic)
                .replace("${timestamp}", &stamp);
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(TimestampRouter);

#[cfg(test)]
mod tests {
    use super::*;

    fn open(pairs: &[(&str, &str)]) -> TimestampRouter {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&TimestampRouter::config_spec());
        TimestampRouter::open(&config).expect("open")
    }

    fn record(ts: Option<i64>) -> Record {
        Record {
            topic: "orders".into(),
            timestamp: ts,
            ..Record::default()
        }
    }

    #[test]
    fn topics_take_the_records_timestamp() {
        let out = open(&[])
            .apply(vec![record(Some(1_700_000_123_456))])
            .expect("apply");
        assert_eq!(out[0].topic, "orders-20231114");
        // Connect's docs: "topic.format": "foo-${topic}", "timestamp.format": "YYYYMM".
        let out = open(&[
            ("topic.format", "foo-${topic}-${timestamp}"),
            ("timestamp.format", "yyyyMM"),
        ])
        .apply(vec![record(Some(1_700_000_123_456))])
        .expect("apply");
        assert_eq!(out[0].topic, "foo-orders-202311");
        assert!(open(&[]).apply(vec![record(None)]).is_err());
        let errs = TimestampRouter::validate(&Config::from_pairs([(
            "timestamp.format".to_string(),
            "yyyy-ww".to_string(),
        )]));
        assert_eq!(errs[0].key, "timestamp.format");
    }
}
