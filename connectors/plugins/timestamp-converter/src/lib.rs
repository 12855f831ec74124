//! `timestamp-converter`: Kafka Connect's TimestampConverter (`$Key` /
//! `$Value`): converts a timestamp field (or the whole key or value when
//! `field` is empty) between `string` (a SimpleDateFormat `format`, UTC),
//! `unix` (an integer in `unix.precision`), and Connect's `Date`, `Time`
//! and `Timestamp`. In JSON those three are JsonConverter's encodings: days
//! since the epoch, milliseconds since midnight, milliseconds since the
//! epoch; a `{schema, payload}` record says which with its logical type and
//! gets the target's schema. Schemaless input is read by its JSON type: an
//! integer is a Unix time, a string is parsed with `format`.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::datetime::{DateFormat, MILLIS_PER_DAY};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

const PURPOSE: &str = "converting timestamp formats";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s.trim() {
            "string" => Kind::String,
            "unix" => Kind::Unix,
            "Date" => Kind::Date,
            "Time" => Kind::Time,
            "Timestamp" => Kind::Timestamp,
            _ => return None,
        })
    }

    /// The schema of a value of this kind.
    fn schema(self, optional: bool) -> Value {
        match self {
            Kind::String => schema::primitive("string", optional),
            Kind::Unix => schema::primitive("int64", optional),
            Kind::Date => schema::logical("int32", schema::DATE, optional),
            Kind::Time => schema::logical("int32", schema::TIME, optional),
            Kind::Timestamp => schema::logical("int64", schema::TIMESTAMP, optional),
        }
    }

    /// The kind a schema says a value is.
    fn of_schema(s: &Value) -> Result<Kind> {
        Ok(match (schema::name(s), schema::type_of(s)) {
            (Some(schema::TIMESTAMP), _) => Kind::Timestamp,
            (Some(schema::DATE), _) => Kind::Date,
            (Some(schema::TIME), _) => Kind::Time,
            (_, "string") => Kind::String,
            (_, "int64") => Kind::Unix,
            (_, ty) => {
                return Err(Error::Fatal(format!(
                    "a '{ty}' schema is not a timestamp type TimestampConverter knows"
                )))
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

pub struct TimestampConverter {
    side: Side,
    field: String,
    target: Kind,
    format: Option<DateFormat>,
    precision: Precision,
    defaults: bool,
}

impl Plugin for TimestampConverter {
    const NAME: &'static str = "timestamp-converter";
    const DESCRIPTION: &'static str =
        "Converts timestamps between strings, Unix times and Connect's Date, Time and Timestamp (Connect's TimestampConverter)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("field")
                .default("")
                .importance(Importance::High)
                .doc("The field holding the timestamp; empty for the whole key or value"),
            ConfigKey::string("target.type")
                .one_of(&["string", "unix", "Date", "Time", "Timestamp"])
                .importance(Importance::High)
                .doc("string, unix, Date, Time or Timestamp"),
            ConfigKey::string("format")
                .default("")
                .doc("SimpleDateFormat pattern, to write type=string and to read string input"),
            ConfigKey::string("unix.precision")
                .default("milliseconds")
                .one_of(&["seconds", "milliseconds", "microseconds", "nanoseconds"])
                .importance(Importance::Low)
                .doc("The unit of Unix times, read and written"),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        match config.opt_string("format").map(|f| DateFormat::new(&f)) {
            Some(Err(message)) => errors.push(ConfigError {
                key: "format".into(),
                message,
            }),
            None if config.raw("target.type").map(str::trim) == Some("string") => {
                errors.push(ConfigError {
                    key: "format".into(),
                    message: "required when target.type is string".into(),
                })
            }
            _ => {}
        }
        if let Some(t) = config.raw("target.type") {
            if Kind::parse(t).is_none() && errors.iter().all(|e| e.key != "target.type") {
                errors.push(ConfigError {
                    key: "target.type".into(),
                    message: format!("'{t}' is not one of string, unix, Date, Time, Timestamp"),
                });
            }
        }
        errors
    }
}

impl TimestampConverter {
    /// Milliseconds since the epoch of a value of `kind`.
    fn to_millis(&self, v: &Value, kind: Kind) -> Result<i64> {
        let integer = || {
            v.as_i64().ok_or_else(|| {
                Error::Fatal(format!("expected an integer {kind:?} timestamp, found {v}"))
            })
        };
        Ok(match kind {
            Kind::String => {
                let text = v.as_str().ok_or_else(|| {
                    Error::Fatal(format!("expected a string timestamp, found {v}"))
                })?;
                let format = self.format.as_ref().ok_or_else(|| {
                    Error::Fatal("a string timestamp needs 'format' to be read".into())
                })?;
                format
                    .parse(text)
                    .map_err(|m| Error::Fatal(format!("could not parse timestamp: {m}")))?
            }
            Kind::Unix => {
                let n = integer()?;
                match self.precision {
                    Precision::Seconds => n.saturating_mul(1000),
                    Precision::Millis => n,
                    Precision::Micros => n / 1000,
                    Precision::Nanos => n / 1_000_000,
                }
            }
            Kind::Date => integer()?.saturating_mul(MILLIS_PER_DAY),
            Kind::Time | Kind::Timestamp => integer()?,
        })
    }

    fn to_target(&self, millis: i64) -> Value {
        match self.target {
            Kind::String => Value::String(
                self.format
                    .as_ref()
                    .map(|f| f.format(millis))
                    .unwrap_or_default(),
            ),
            Kind::Unix => Value::from(match self.precision {
                Precision::Seconds => millis / 1000,
                Precision::Millis => millis,
                Precision::Micros => millis.saturating_mul(1000),
                Precision::Nanos => millis.saturating_mul(1_000_000),
            }),
            Kind::Date => Value::from(millis.div_euclid(MILLIS_PER_DAY)),
            Kind::Time => Value::from(millis.rem_euclid(MILLIS_PER_DAY)),
            Kind::Timestamp => Value::from(millis),
        }
    }

    /// Converts one value; `kind` is what its schema says, or `None` to
    /// read it by its JSON type.
    fn convert(&self, v: &Value, kind: Option<Kind>) -> Result<Value> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        let kind = match (kind, v) {
            (Some(k), _) => k,
            (None, Value::String(_)) => Kind::String,
            (None, Value::Number(n)) if n.is_i64() || n.is_u64() => Kind::Unix,
            (None, other) => {
                return Err(Error::Fatal(format!(
                    "TimestampConverter does not support {} as a timestamp",
                    connect::kind(other)
                )))
            }
        };
        Ok(self.to_target(self.to_millis(v, kind)?))
    }

    fn apply_one(&self, mut data: Data) -> Result<Data> {
        let Some(s) = data.schema.clone() else {
            if self.field.is_empty() || data.payload.is_null() {
                let v = self.convert(&data.payload, None)?;
                return Ok(data.replaced(None, v));
            }
            let map = connect::require_map(&mut data.payload, None, PURPOSE)?;
            let v = map.get(&self.field).cloned().unwrap_or(Value::Null);
            map.insert(self.field.clone(), self.convert(&v, None)?);
            return Ok(data);
        };
        if self.field.is_empty() {
            let v = self.convert(&data.payload, Some(Kind::of_schema(&s)?))?;
            let updated = self.target.schema(schema::is_optional(&s));
            return Ok(data.replaced(Some(updated), v));
        }
        connect::require_struct_schema(&s, PURPOSE)?;
        let mut fields = Vec::new();
        for f in schema::fields(&s) {
            if schema::field_name(f) == self.field {
                let updated = self.target.schema(schema::is_optional(f));
                fields.push(schema::named(&updated, &self.field));
            } else {
                fields.push(f.clone());
            }
        }
        let mut updated = schema::struct_like(&s, fields);
        if schema::is_optional(&s) {
            updated["optional"] = Value::Bool(true);
        }
        if data.payload.is_null() {
            return Ok(data.replaced(Some(updated), Value::Null));
        }
        let map = connect::require_map(&mut data.payload, Some(&s), PURPOSE)?;
        let mut out = Map::new();
        for f in schema::fields(&s) {
            let name = schema::field_name(f);
            let v = connect::field_value(map, f, self.defaults);
            let v = if name == self.field {
                self.convert(&v, Some(Kind::of_schema(f)?))?
            } else {
                v
            };
            out.insert(name.to_string(), v);
        }
        Ok(data.replaced(Some(updated), Value::Object(out)))
    }
}

impl Transform for TimestampConverter {
    fn open(config: &Config) -> Result<Self> {
        let target_raw = config.string("target.type")?;
        let target = Kind::parse(&target_raw).ok_or_else(|| {
            Error::Fatal(format!(
                "target.type: '{target_raw}' is not a timestamp type"
            ))
        })?;
        let format = match config.opt_string("format") {
            Some(f) => Some(DateFormat::new(&f).map_err(|m| Error::Fatal(format!("format: {m}")))?),
            None if target == Kind::String => {
                return Err(Error::Fatal(
                    "format: required when target.type is string".into(),
                ))
            }
            None => None,
        };
        let precision = match config.string("unix.precision")?.trim() {
            "seconds" => Precision::Seconds,
            "microseconds" => Precision::Micros,
            "nanoseconds" => Precision::Nanos,
            _ => Precision::Millis,
        };
        Ok(TimestampConverter {
            side: Side::of(config)?,
            field: config.string("field")?,
            target,
            format,
            precision,
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            let Some(data) = self.side.read(r)? else {
                continue;
            };
            let out = self.apply_one(data).map_err(|e| self.side.context(r, e))?;
            self.side.write(r, &out);
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(TimestampConverter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: i64 = 1_700_000_123_456; // 2023-11-14T22:15:23.456Z

    fn run(pairs: &[(&str, &str)], value: Value) -> Value {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&TimestampConverter::config_spec());
        let mut t = TimestampConverter::open(&config).expect("open");
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = t.apply(vec![r]).expect("apply");
        serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json")
    }

    #[test]
    fn connects_documented_examples_schemaless() {
        // Connect's docs: a Unix epoch field to a "yyyy-MM-dd" string, and back.
        let fmt = [
            ("field", "ts"),
            ("target.type", "string"),
            ("format", "yyyy-MM-dd"),
        ];
        assert_eq!(
            run(&fmt, json!({"ts": T, "x": 1})),
            json!({"ts":"2023-11-14","x":1})
        );
        assert_eq!(
            run(
                &[
                    ("field", "ts"),
                    ("target.type", "unix"),
                    ("format", "yyyy-MM-dd")
                ],
                json!({"ts":"2023-11-14"})
            ),
            json!({"ts": 1_699_920_000_000i64})
        );
        // unix.precision reads Unix input and writes Unix output alike.
        assert_eq!(
            run(
                &[
                    ("target.type", "string"),
                    ("format", "yyyy-MM-dd HH:mm:ss"),
                    ("unix.precision", "seconds")
                ],
                json!(T / 1000)
            ),
            json!("2023-11-14 22:15:23")
        );
        assert_eq!(
            run(
                &[("target.type", "unix"), ("unix.precision", "microseconds")],
                json!(T)
            ),
            json!(T / 1000 * 1000),
            "sub-millisecond digits are lost, as Connect's docs warn"
        );
        assert_eq!(run(&[("target.type", "Date")], json!(T)), json!(19_675));
        assert_eq!(run(&[("target.type", "Time")], json!(T)), json!(80_123_456));
    }

    #[test]
    fn schemas_say_the_kind_and_get_the_target() {
        let value = json!({
            "schema": {"type":"struct","optional":false,"fields":[
                {"field":"at","type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","version":1},
                {"field":"day","type":"int32","optional":false,"name":"org.apache.kafka.connect.data.Date","version":1}]},
            "payload": {"at": T, "day": 19_675}
        });
        let out = run(
            &[
                ("field", "at"),
                ("target.type", "string"),
                ("format", "yyyy-MM-dd'T'HH:mm:ss.SSSX"),
            ],
            value.clone(),
        );
        assert_eq!(
            out["payload"],
            json!({"at":"2023-11-14T22:15:23.456Z","day":19_675})
        );
        assert_eq!(
            out["schema"]["fields"][0],
            json!({"field":"at","type":"string","optional":true})
        );
        let out = run(&[("field", "day"), ("target.type", "Timestamp")], value);
        assert_eq!(out["payload"]["day"], json!(1_699_920_000_000i64));
        assert_eq!(
            out["schema"]["fields"][1],
            json!({"field":"day","type":"int64","optional":false,
                   "name":"org.apache.kafka.connect.data.Timestamp","version":1})
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let errs = TimestampConverter::validate(&Config::from_pairs([(
            "target.type".to_string(),
            "string".to_string(),
        )]));
        assert_eq!(errs[0].key, "format");
        let errs = TimestampConverter::validate(&Config::from_pairs([
            ("target.type".to_string(), "unix".to_string()),
            ("format".to_string(), "yyyy-ww".to_string()),
        ]));
        assert_eq!(errs[0].key, "format");
    }
}
