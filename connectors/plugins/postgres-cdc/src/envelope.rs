//! Debezium's change event envelope: key = the table's key columns, value =
//! `{before, after, source, op, ts_ms, transaction}`, with types mapped the
//! way Debezium's Postgres connector and the JSON converter render them.

use serde_json::{json, Map, Value as Json};
use wharf_sdk::{Error, Record, Result};

use crate::pgoutput::Value;
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
}

/// Where an event came from, for its `source` block and offset.
pub struct Origin<'a> {
    pub prefix: &'a str,
    pub db: &'a str,
    /// Commit time (streaming) or snapshot time, microseconds since the epoch.
    pub ts_us: i64,
    /// "true", "last" or "false", as Debezium writes it.
    pub snapshot: &'static str,
    pub tx_id: Option<u32>,
    pub lsn: Option<u64>,
    /// Debezium's `[last commit LSN, event LSN]` as strings.
    pub sequence: Json,
}

impl Shape {
    pub fn has_key(&self) -> bool {
        self.columns.iter().any(|c| c.key)
    }

    /// The row as a JSON object of the emitted columns.
    pub fn row(&self, values: &[Value], m: &Mapping) -> Result<Json> {
        let mut out = Map::new();
        for (c, v) in self.columns.iter().zip(values) {
            if c.emit {
                out.insert(c.name.clone(), self.cell(c, v, m)?);
            }
        }
        Ok(Json::Object(out))
    }

    /// The key columns as a JSON object, or None for a table without a key.
    pub fn key(&self, values: &[Value], m: &Mapping) -> Result<Option<Json>> {
        if !self.has_key() {
            return Ok(None);
        }
        let mut out = Map::new();
        for (c, v) in self.columns.iter().zip(values) {
            if c.key {
                out.insert(c.name.clone(), self.cell(c, v, m)?);
            }
        }
        Ok(Some(Json::Object(out)))
    }

    /// Whether two tuples differ in a key column (a primary key update).
    pub fn key_changed(&self, old: &[Value], new: &[Value]) -> bool {
        self.columns
            .iter()
            .zip(old.iter().zip(new))
            .any(|(c, (o, n))| c.key && !matches!(o, Value::Unchanged) && o != n)
    }

    fn cell(&self, c: &ColumnShape, v: &Value, m: &Mapping) -> Result<Json> {
        match v {
            Value::Null => Ok(Json::Null),
            Value::Unchanged => Ok(values::unavailable()),
            Value::Text(t) => values::to_json(c.type_oid, c.type_mod, t, m).map_err(|e| {
                Error::Fatal(format!(
                    "{}.{} column '{}': value '{}': {e}",
                    self.schema,
                    self.table,
                    c.name,
                    t.chars().take(64).collect::<String>()
                ))
            }),
            Value::Binary(b) => Err(Error::Fatal(format!(
                "{}.{} column '{}': binary tuple data ({} bytes) where text was asked for",
                self.schema,
                self.table,
                c.name,
                b.len()
            ))),
        }
    }
}

/// The `source` block.
pub fn source(shape: Option<&Shape>, o: &Origin<'_>) -> Json {
    json!({
        "version": CONNECTOR_VERSION,
        "connector": "postgresql",
        "name": o.prefix,
        "ts_ms": o.ts_us.div_euclid(1000),
        "ts_us": o.ts_us,
        "ts_ns": o.ts_us.saturating_mul(1000),
        "snapshot": o.snapshot,
        "db": o.db,
        "sequence": o.sequence,
        "schema": shape.map(|s| s.schema.as_str()),
        "table": shape.map(|s| s.table.as_str()),
        "txId": o.tx_id,
        "lsn": o.lsn,
        "xmin": Json::Null,
    })
}

/// A whole change event value.
pub fn event(op: &str, before: Json, after: Json, source: Json, transaction: Json) -> Json {
    let now_ms = wharf_sdk::now_millis();
    json!({
        "before": before,
        "after": after,
        "source": source,
        "transaction": transaction,
        "op": op,
        "ts_ms": now_ms,
        "ts_us": now_ms.saturating_mul(1000),
        "ts_ns": now_ms.saturating_mul(1_000_000),
    })
}

fn bytes(v: &Json) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// A record for Kafka; `value` None is a tombstone.
pub fn record(
    topic: &str,
    key: Option<&Json>,
    value: Option<&Json>,
    ts_ms: i64,
    partition_json: &str,
    offset_json: String,
) -> Record {
    Record {
        topic: topic.to_string(),
        partition: None,
        offset: None,
        timestamp: Some(ts_ms),
        key: key.map(bytes),
        value: value.map(bytes),
        headers: Vec::new(),
        source: Some((partition_json.to_string(), offset_json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::DecimalMode;

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
            ],
        }
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
        ];
        assert_eq!(
            s.row(&v, &m).expect("row"),
            json!({"id": 7, "note": "__debezium_unavailable_value"})
        );
        assert_eq!(s.key(&v, &m).expect("key"), Some(json!({"id": 7})));
        let moved = vec![Value::Text("8".into()), Value::Null, Value::Null];
        assert!(s.key_changed(&v, &moved));
        assert!(!s.key_changed(&v, &v));
        let bad = vec![Value::Text("seven".into()), Value::Null, Value::Null];
        let e = s.row(&bad, &m).unwrap_err().to_string();
        assert!(e.contains("public.orders column 'id'"), "{e}");
    }

    #[test]
    fn source_block_names_the_table_and_position() {
        let o = Origin {
            prefix: "shop",
            db: "shop",
            ts_us: 1_700_000_000_123_456,
            snapshot: "false",
            tx_id: Some(42),
            lsn: Some(99),
            sequence: json!(["90", "99"]),
        };
        let src = source(Some(&shape()), &o);
        assert_eq!(src["connector"], "postgresql");
        assert_eq!(src["table"], "orders");
        assert_eq!(src["ts_ms"], 1_700_000_000_123_i64);
        assert_eq!(src["txId"], 42);
        assert_eq!(src["lsn"], 99);
        assert_eq!(src["sequence"], json!(["90", "99"]));
    }
}
