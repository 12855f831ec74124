//! Debezium's change event envelope: key = the table's key columns, value =
//! `{before, after, source, op, ts_ms, transaction}`, with types mapped the
//! way Debezium's Postgres connector and the JSON converter render them.

use wharf_sdk::{Error, Record, Result};

use crate::pgoutput::Value;
use crate::settings::Settings;
use crate::values::{self, Mapping};

pub const CONNECTOR_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-wharf");

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnShape {
    pub name: String,
    pub type_oid: u32,
    pub type_mod: i32,
    pub key: bool,
    /// Kept by column.include/exclude.list.
    pub emit: bool,
}

/// A captured table as events see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub schema: String,
    pub table: String,
    pub topic: String,
    pub columns: Vec<ColumnShape>,
    /// Connect schemas, when the converters want them.
    pub schemas: Option<crate::schema::TableSchemas>,
}

/// Where an event came from, for its `source` block and offset.
pub struct Origin<'a> {
    pub prefix: &'a str,
    pub db: &'a str,
    /// Commit time (streaming) or snapshot time, microseconds since the epoch.
    pub ts_us: i64,
    /// "first", "true", "last" or "false", as Debezium writes it.
    pub snapshot: &'static str,
    pub tx_id: Option<u32>,
    pub lsn: Option<u64>,
    /// Debezium's `[last commit end, event LSN]`, written as strings.
    pub sequence: (Option<u64>, u64),
}

// Events are written as JSON text directly: building serde_json trees cost
// an allocation per key and per value, for every event.

/// Appends `s` as a JSON string. Runs of bytes that need no escaping are
/// copied whole: this is on every column of every event.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `clean..i` and `i + 1..` are char boundaries.
        out.push_str(&s[clean..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        clean = i + 1;
    }
    out.push_str(&s[clean..]);
    out.push('"');
}

/// Appends an integer in decimal.
pub fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// PostgreSQL prints integers canonically; anything else goes the slow way.
fn plain_integer(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Shape {
    /// A table's shape from its columns as (name, type OID, type modifier,
    /// key), with `column.include/exclude.list` applied.
    pub fn new<'c>(
        s: &Settings,
        schema: &str,
        table: &str,
        columns: impl Iterator<Item = (&'c str, u32, i32, bool)>,
    ) -> Shape {
        Shape {
            schema: schema.to_string(),
            table: table.to_string(),
            topic: s.topic(schema, table),
            columns: columns
                .map(|(name, type_oid, type_mod, key)| ColumnShape {
                    name: name.to_string(),
                    type_oid,
                    type_mod,
                    key,
                    emit: s.emits_column(schema, table, name),
                })
                .collect(),
            schemas: None,
        }
    }

    /// An event key as Kafka gets it: with its schema when one is wanted.
    pub fn key_out<'a>(&self, key: Option<&'a str>) -> Option<std::borrow::Cow<'a, str>> {
        let key = key?;
        Some(match self.schemas.as_ref().and_then(|s| s.key.as_deref()) {
            Some(schema) => std::borrow::Cow::Owned(crate::schema::wrap(schema, key)),
            None => std::borrow::Cow::Borrowed(key),
        })
    }

    /// An event value as Kafka gets it: with its schema when one is wanted.
    pub fn value_out(&self, value: String) -> String {
        match self.schemas.as_ref().and_then(|s| s.value.as_deref()) {
            Some(schema) => crate::schema::wrap(schema, &value),
            None => value,
        }
    }

    pub fn has_key(&self) -> bool {
        self.columns.iter().any(|c| c.key)
    }

    fn object(
        &self,
        values: &[Value],
        m: &Mapping,
        keep: impl Fn(&ColumnShape) -> bool,
    ) -> Result<String> {
        // Sized from the texts so the row is written without regrowing.
        let text: usize = values
            .iter()
            .map(|v| match v {
                Value::Text(t) => t.len(),
                _ => 4,
            })
            .sum();
        let names: usize = self.columns.iter().map(|c| c.name.len() + 8).sum();
        let mut out = String::with_capacity(16 + text + names);
        out.push('{');
        let mut first = true;
        for (c, v) in self.columns.iter().zip(values) {
            if !keep(c) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            write_str(&mut out, &c.name);
            out.push(':');
            self.cell(c, v, m, &mut out)?;
        }
        out.push('}');
        Ok(out)
    }

    /// The row as a JSON object of the emitted columns.
    pub fn row(&self, values: &[Value], m: &Mapping) -> Result<String> {
        self.object(values, m, |c| c.emit)
    }

    /// The key columns as a JSON object, or None for a table without a key.
    pub fn key(&self, values: &[Value], m: &Mapping) -> Result<Option<String>> {
        if !self.has_key() {
            return Ok(None);
        }
        self.object(values, m, |c| c.key).map(Some)
    }

    /// Whether two tuples differ in a key column (a primary key update).
    pub fn key_changed(&self, old: &[Value], new: &[Value]) -> bool {
        self.columns
            .iter()
            .zip(old.iter().zip(new))
            .any(|(c, (o, n))| c.key && !matches!(o, Value::Unchanged) && o != n)
    }

    fn cell(&self, c: &ColumnShape, v: &Value, m: &Mapping, out: &mut String) -> Result<()> {
        match v {
            Value::Null => out.push_str("null"),
            Value::Unchanged => write_str(out, "__debezium_unavailable_value"),
            // The common types, straight through.
            Value::Text(t) if matches!(c.type_oid, 20 | 21 | 23) && plain_integer(t) => {
                out.push_str(t)
            }
            Value::Text(t) if matches!(c.type_oid, 25 | 1043 | 1042 | 19 | 2950) => {
                write_str(out, t)
            }
            Value::Text(t) => {
                let json = values::to_json(c.type_oid, c.type_mod, t, m).map_err(|e| {
                    Error::Fatal(format!(
                        "{}.{} column '{}': value '{}': {e}",
                        self.schema,
                        self.table,
                        c.name,
                        t.chars().take(64).collect::<String>()
                    ))
                })?;
                out.push_str(&json.to_string());
            }
            Value::Binary(b) => {
                return Err(Error::Fatal(format!(
                    "{}.{} column '{}': binary tuple data ({} bytes) where text was asked for",
                    self.schema,
                    self.table,
                    c.name,
                    b.len()
                )))
            }
        }
        Ok(())
    }
}

/// The `source` block, in Debezium's field order.
pub fn source(shape: Option<&Shape>, o: &Origin<'_>) -> String {
    let mut out = String::with_capacity(320);
    out.push_str("{\"version\":\"");
    out.push_str(CONNECTOR_VERSION);
    out.push_str("\",\"connector\":\"postgresql\",\"name\":");
    write_str(&mut out, o.prefix);
    out.push_str(",\"ts_ms\":");
    push_int(&mut out, o.ts_us.div_euclid(1000));
    out.push_str(",\"snapshot\":\"");
    out.push_str(o.snapshot);
    out.push_str("\",\"db\":");
    write_str(&mut out, o.db);
    out.push_str(",\"sequence\":\"[");
    match o.sequence.0 {
        Some(last) => {
            out.push_str("\\\"");
            push_int(&mut out, last);
            out.push_str("\\\"");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\\\"");
    push_int(&mut out, o.sequence.1);
    out.push_str("\\\"]\",\"ts_us\":");
    push_int(&mut out, o.ts_us);
    out.push_str(",\"ts_ns\":");
    push_int(&mut out, o.ts_us.saturating_mul(1000));
    out.push_str(",\"schema\":");
    match shape {
        Some(sh) => {
            write_str(&mut out, &sh.schema);
            out.push_str(",\"table\":");
            write_str(&mut out, &sh.table);
        }
        None => out.push_str("null,\"table\":null"),
    }
    out.push_str(",\"txId\":");
    match o.tx_id {
        Some(x) => push_int(&mut out, x),
        None => out.push_str("null"),
    }
    out.push_str(",\"lsn\":");
    match o.lsn {
        Some(l) => push_int(&mut out, l),
        None => out.push_str("null"),
    }
    out.push_str(",\"xmin\":null}");
    out
}

/// The parts of one change event value, as JSON texts; None is null.
pub struct Parts<'a> {
    pub op: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub source: &'a str,
    pub transaction: Option<&'a str>,
    /// A logical decoding message (`op: m`).
    pub message: Option<&'a str>,
}

/// A whole change event value.
pub fn event(p: &Parts<'_>) -> String {
    let now_ms = wharf_sdk::now_millis();
    let mut out = String::with_capacity(
        96 + p.source.len() + p.before.map_or(4, str::len) + p.after.map_or(4, str::len),
    );
    out.push_str("{\"before\":");
    out.push_str(p.before.unwrap_or("null"));
    out.push_str(",\"after\":");
    out.push_str(p.after.unwrap_or("null"));
    out.push_str(",\"source\":");
    out.push_str(p.source);
    out.push_str(",\"transaction\":");
    out.push_str(p.transaction.unwrap_or("null"));
    if let Some(m) = p.message {
        out.push_str(",\"message\":");
        out.push_str(m);
    }
    out.push_str(",\"op\":");
    write_str(&mut out, p.op);
    out.push_str(",\"ts_ms\":");
    push_int(&mut out, now_ms);
    out.push_str(",\"ts_us\":");
    push_int(&mut out, now_ms.saturating_mul(1000));
    out.push_str(",\"ts_ns\":");
    push_int(&mut out, now_ms.saturating_mul(1_000_000));
    out.push('}');
    out
}

/// A record for Kafka from JSON texts; `value` None is a tombstone.
pub fn record(
    topic: &str,
    key: Option<&str>,
    value: Option<String>,
    ts_ms: i64,
    partition_json: &str,
    offset_json: String,
) -> Record {
    Record {
        topic: topic.to_string(),
        partition: None,
        offset: None,
        timestamp: Some(ts_ms),
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(String::into_bytes),
        headers: Vec::new(),
        source: Some((partition_json.to_string(), offset_json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::DecimalMode;
    use serde_json::{json, Value as Json};

    fn shape() -> Shape {
        let col = |name: &str, type_oid, key, emit| ColumnShape {
            name: name.into(),
            type_oid,
            type_mod: -1,
            key,
            emit,
        };
        Shape {
            schema: "public".into(),
            table: "orders".into(),
            topic: "shop.public.orders".into(),
            columns: vec![
                col("id", 23, true, true),
                col("note", 25, false, true),
                col("secret", 25, false, false),
                col("n", 1700, false, true),
            ],
            schemas: None,
        }
    }

    fn parse(s: &str) -> Json {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn rows_keys_and_placeholders() {
        let m = Mapping {
            decimal: DecimalMode::Precise,
        };
        let s = shape();
        let v = vec![
            Value::Text("7".into()),
            Value::Unchanged,
            Value::Text("x".into()),
            Value::Text("-0.01".into()),
        ];
        assert_eq!(
            parse(&s.row(&v, &m).expect("row")),
            json!({"id": 7, "note": "__debezium_unavailable_value", "n": {"scale": 2, "value": "/w=="}})
        );
        assert_eq!(
            parse(&s.key(&v, &m).expect("key").expect("some")),
            json!({"id": 7})
        );
        let odd = vec![
            Value::Text("8".into()),
            Value::Text("quote \" back \\ nl \n tab \t bell \u{7} é".into()),
            Value::Null,
            Value::Null,
        ];
        assert_eq!(
            parse(&s.row(&odd, &m).expect("row"))["note"],
            json!("quote \" back \\ nl \n tab \t bell \u{7} é")
        );
        assert!(s.key_changed(&v, &odd));
        assert!(!s.key_changed(&v, &v));
        let bad = vec![
            Value::Text("7".into()),
            Value::Null,
            Value::Null,
            Value::Text("x".into()),
        ];
        let e = s.row(&bad, &m).unwrap_err().to_string();
        assert!(e.contains("public.orders column 'n'"), "{e}");
    }

    #[test]
    fn source_block_and_event_in_debeziums_shape() {
        let o = Origin {
            prefix: "shop",
            db: "shop",
            ts_us: 1_700_000_000_123_456,
            snapshot: "false",
            tx_id: Some(42),
            lsn: Some(99),
            sequence: (Some(90), 99),
        };
        let src = source(Some(&shape()), &o);
        let v = parse(&src);
        assert_eq!(v["connector"], "postgresql");
        assert_eq!(v["table"], "orders");
        assert_eq!(v["ts_ms"], 1_700_000_000_123_i64);
        assert_eq!(v["txId"], 42);
        assert_eq!(v["lsn"], 99);
        assert_eq!(v["sequence"], "[\"90\",\"99\"]");
        let first = Origin {
            sequence: (None, 5),
            tx_id: None,
            lsn: None,
            ..o
        };
        let v = parse(&source(None, &first));
        assert_eq!(v["sequence"], "[null,\"5\"]");
        assert_eq!(v["table"], Json::Null);
        let e = parse(&event(&Parts {
            op: "c",
            before: None,
            after: Some("{\"id\":1}"),
            source: &src,
            transaction: None,
            message: None,
        }));
        assert_eq!(e["op"], "c");
        assert_eq!(e["after"], json!({"id": 1}));
        assert_eq!(e["before"], Json::Null);
        assert_eq!(e["source"]["name"], "shop");
        assert!(e["ts_ms"].as_i64().is_some());
    }
}
