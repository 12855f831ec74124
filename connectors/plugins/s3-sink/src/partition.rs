//! Where a record's file goes under its topic: Confluent's partitioners
//! (by Kafka partition, by field, by time with a Joda-style `path.format`)
//! and timestamp extractors.

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use serde_json::Value;

#[derive(Clone, Debug)]
pub enum Extractor {
    Wallclock,
    Record,
    /// A field of the JSON value (dots for nesting): epoch millis or RFC 3339.
    RecordField(String),
}

#[derive(Clone, Debug)]
pub enum Partitioner {
    /// `partition=<kafka partition>`
    Default,
    /// `<field>=<value>/...`
    Field(Vec<String>),
    /// The record time, floored to `duration` ms in `tz`, through `format`.
    Time {
        format: Vec<Token>,
        duration: i64,
        tz: Tz,
    },
}

/// A piece of a `path.format`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    Literal(String),
    Year(usize),
    Month(usize),
    Day(usize),
    Hour(usize),
    Minute(usize),
    Second(usize),
}

/// Parses Joda-style patterns such as `'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH`.
pub fn parse_path_format(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or_else(|| format!("unclosed quote at {i}"))?;
            out.push(Token::Literal(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c.is_ascii_alphabetic() {
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            out.push(match c {
                'y' | 'Y' => Token::Year(run),
                'M' => Token::Month(run),
                'd' => Token::Day(run),
                'H' => Token::Hour(run),
                'm' => Token::Minute(run),
                's' => Token::Second(run),
                other => {
                    return Err(format!(
                        "'{other}' is not supported (use y, M, d, H, m, s and 'quoted' text)"
                    ))
                }
            });
            i += run;
        } else {
            out.push(Token::Literal(c.to_string()));
            i += 1;
        }
    }
    Ok(out)
}

fn pad(v: i64, width: usize) -> String {
    format!("{v:0width$}")
}

fn render(tokens: &[Token], t: &DateTime<Tz>) -> String {
    let mut s = String::new();
    for tok in tokens {
        match tok {
            Token::Literal(l) => s.push_str(l),
            Token::Year(2) => s.push_str(&pad(i64::from(t.year()) % 100, 2)),
            Token::Year(n) => s.push_str(&pad(i64::from(t.year()), *n)),
            Token::Month(n) => s.push_str(&pad(i64::from(t.month()), *n)),
            Token::Day(n) => s.push_str(&pad(i64::from(t.day()), *n)),
            Token::Hour(n) => s.push_str(&pad(i64::from(t.hour()), *n)),
            Token::Minute(n) => s.push_str(&pad(i64::from(t.minute()), *n)),
            Token::Second(n) => s.push_str(&pad(i64::from(t.second()), *n)),
        }
    }
    s
}

/// A dotted path into a JSON value.
pub fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

impl Extractor {
    pub fn parse(s: &str, field: &str) -> Result<Extractor, String> {
        match s
            .rsplit('.')
            .next()
            .unwrap_or(s)
            .to_ascii_lowercase()
            .as_str()
        {
            "wallclock" | "wallclocktimestampextractor" => Ok(Extractor::Wallclock),
            "record" | "recordtimestampextractor" => Ok(Extractor::Record),
            "recordfield" | "recordfieldtimestampextractor" => {
                Ok(Extractor::RecordField(field.to_string()))
            }
            _ => Err(format!(
                "timestamp.extractor '{s}': use Wallclock, Record or RecordField"
            )),
        }
    }

    /// The record's time in epoch millis.
    pub fn time(
        &self,
        timestamp: Option<i64>,
        value: Option<&Value>,
        now: i64,
    ) -> Result<i64, String> {
        match self {
            Extractor::Wallclock => Ok(now),
            Extractor::Record => timestamp
                .ok_or_else(|| "the record has no timestamp (timestamp.extractor=Record)".into()),
            Extractor::RecordField(f) => {
                let v = value
                    .and_then(|v| field(v, f))
                    .ok_or_else(|| format!("the value has no field '{f}' (timestamp.field)"))?;
                match v {
                    Value::Number(n) => n
                        .as_i64()
                        .ok_or_else(|| format!("field '{f}' = {n} is not epoch millis")),
                    Value::String(s) => DateTime::parse_from_rfc3339(s)
                        .map(|d| d.timestamp_millis())
                        .map_err(|e| format!("field '{f}' = '{s}': {e}")),
                    other => Err(format!("field '{f}' = {other} is not a time")),
                }
            }
        }
    }
}

impl Partitioner {
    /// The encoded partition: the path between the topic and the file name.
    pub fn encode(
        &self,
        partition: Option<i32>,
        value: Option<&Value>,
        time: i64,
    ) -> Result<String, String> {
        match self {
            Partitioner::Default => Ok(format!("partition={}", partition.unwrap_or(0))),
            Partitioner::Field(fields) => {
                let v = value.ok_or("FieldPartitioner needs a JSON object value")?;
                let mut parts = Vec::with_capacity(fields.len());
                for f in fields {
                    let x = field(v, f).ok_or_else(|| {
                        format!("the value has no field '{f}' (partition.field.name)")
                    })?;
                    let text = match x {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => x.to_string(),
                        other => {
                            return Err(format!("field '{f}' = {other} cannot name a directory"))
                        }
                    };
                    if text.contains('/') {
                        return Err(format!("field '{f}' = '{text}' holds a '/'"));
                    }
                    parts.push(format!("{f}={text}"));
                }
                Ok(parts.join("/"))
            }
            Partitioner::Time {
                format,
                duration,
                tz,
            } => {
                let utc = DateTime::from_timestamp_millis(time)
                    .ok_or_else(|| format!("time {time} is out of range"))?;
                let offset = i64::from(
                    tz.offset_from_utc_datetime(&utc.naive_utc())
                        .fix()
                        .local_minus_utc(),
                ) * 1000;
                let local = time + offset;
                let floored = local.div_euclid(*duration) * duration - offset;
                let at = DateTime::from_timestamp_millis(floored)
                    .ok_or_else(|| format!("time {floored} is out of range"))?
                    .with_timezone(tz);
                Ok(render(format, &at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wharf_sdk::Record;

    fn rec() -> Record {
        Record {
            topic: "t".into(),
            partition: Some(3),
            offset: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn partitioners_encode_as_confluent() {
        let v = json!({"region": "eu", "n": 4, "ts": "2026-11-24T13:45:00Z"});
        assert_eq!(
            Partitioner::Default.encode(rec().partition, None, 0),
            Ok("partition=3".into())
        );
        let f = Partitioner::Field(vec!["region".into(), "n".into()]);
        assert_eq!(
            f.encode(rec().partition, Some(&v), 0),
            Ok("region=eu/n=4".into())
        );
        let hourly = Partitioner::Time {
            format: parse_path_format("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH").expect("format"),
            duration: 3_600_000,
            tz: Tz::UTC,
        };
        let t = Extractor::RecordField("ts".into())
            .time(rec().timestamp, Some(&v), 0)
            .expect("time");
        assert_eq!(
            hourly.encode(rec().partition, Some(&v), t),
            Ok("year=2026/month=11/day=24/hour=13".into())
        );
        let daily_berlin = Partitioner::Time {
            format: parse_path_format("YYYY-MM-dd").expect("format"),
            duration: 86_400_000,
            tz: "Europe/Berlin".parse().expect("tz"),
        };
        // 23:30 UTC is already the next day in Berlin.
        let late = DateTime::parse_from_rfc3339("2026-11-24T23:30:00Z")
            .expect("t")
            .timestamp_millis();
        assert_eq!(
            daily_berlin.encode(rec().partition, None, late),
            Ok("2026-11-25".into())
        );
        assert!(parse_path_format("'open").is_err());
        assert!(parse_path_format("YYYY/QQ").is_err());
    }
}
