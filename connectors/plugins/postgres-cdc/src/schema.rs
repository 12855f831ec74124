//! Debezium's Connect schemas, for the JSON converter's `schemas.enable`.
//! The host tells a source task whether its key and value converters want
//! schemas (`key.converter.schemas.enable`, `value.converter.schemas.enable`
//! in the task config); each table's key and envelope schema is then written
//! once, when its shape is learned, and every event travels as
//! `{"schema": ..., "payload": ...}`, which the converter keeps as it is.

use serde_json::{json, Map, Value as Json};
use wharf_sdk::postgres as pg;
use wharf_sdk::Result;

use crate::envelope::{ColumnShape, Shape};
use crate::settings::Settings;
use crate::values::{element_type, DecimalMode};

/// A table's schemas as JSON texts, ready to wrap payloads with.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSchemas {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// Adds the schemas the converters want to a captured table's shape
/// (`oid` names the table for nullability and enum labels).
pub fn attach(s: &Settings, shape: &mut Shape, oid: u32) -> Result<()> {
    if !s.key_schemas && !s.value_schemas {
        return Ok(());
    }
    let rows = pg::query(&format!(
        "SELECT a.attname, a.attnotnull, (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) \
           FROM pg_enum e WHERE e.enumtypid = a.atttypid) \
         FROM pg_attribute a WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped"
    ))?;
    let facts = |name: &str| {
        rows.iter()
            .find(|r| r.first().cloned().flatten().as_deref() == Some(name))
            .map(|r| {
                let not_null = r.get(1).cloned().flatten().as_deref() == Some("t");
                (not_null, r.get(2).cloned().flatten())
            })
            .unwrap_or((false, None))
    };
    let field = |c: &ColumnShape| {
        let (not_null, labels) = facts(&c.name);
        let mut f = column(c.type_oid, c.type_mod, labels.as_deref(), s.decimal);
        f.insert("optional".into(), Json::Bool(!(not_null || c.key)));
        f.insert("field".into(), Json::String(c.name.clone()));
        Json::Object(f)
    };
    let key = (s.key_schemas && shape.has_key()).then(|| {
        let fields: Vec<Json> = shape.columns.iter().filter(|c| c.key).map(field).collect();
        json!({
            "type": "struct",
            "fields": fields,
            "optional": false,
            "name": format!("{}.Key", shape.topic),
        })
        .to_string()
    });
    let value = s.value_schemas.then(|| {
        let fields: Vec<Json> = shape.columns.iter().filter(|c| c.emit).map(field).collect();
        envelope(&shape.topic, &fields).to_string()
    });
    shape.schemas = Some(TableSchemas { key, value });
    Ok(())
}

/// `{"schema": schema, "payload": payload}` as text.
pub fn wrap(schema: &str, payload: &str) -> String {
    let mut out = String::with_capacity(schema.len() + payload.len() + 24);
    out.push_str("{\"schema\":");
    out.push_str(schema);
    out.push_str(",\"payload\":");
    out.push_str(payload);
    out.push('}');
    out
}

fn named(kind: &str, name: &str) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("type".into(), Json::String(kind.into()));
    m.insert("name".into(), Json::String(name.into()));
    m.insert("version".into(), json!(1));
    m
}

fn plain(kind: &str) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("type".into(), Json::String(kind.into()));
    m
}

/// One column's Connect schema, as Debezium maps the type (adaptive time
/// precision, `decimal.handling.mode`).
fn column(
    type_oid: u32,
    type_mod: i32,
    enum_labels: Option<&str>,
    decimal: DecimalMode,
) -> Map<String, Json> {
    if let Some(elem) = element_type(type_oid) {
        let mut items = column(elem, -1, None, decimal);
        items.insert("optional".into(), Json::Bool(true));
        let mut m = plain("array");
        m.insert("items".into(), Json::Object(items));
        return m;
    }
    if let Some(labels) = enum_labels {
        let mut m = named("string", "io.debezium.data.Enum");
        m.insert("parameters".into(), json!({ "allowed": labels }));
        return m;
    }
    match type_oid {
        16 => plain("boolean"),
        21 => plain("int16"),
        23 => plain("int32"),
        20 | 26 => plain("int64"),
        700 => plain("float"),
        701 => plain("double"),
        1700 | 790 => numeric(type_oid, type_mod, decimal),
        17 => plain("bytes"),
        1082 => named("int32", "io.debezium.time.Date"),
        1083 if (0..=3).contains(&type_mod) => named("int32", "io.debezium.time.Time"),
        1083 => named("int64", "io.debezium.time.MicroTime"),
        1266 => named("string", "io.debezium.time.ZonedTime"),
        1114 if (0..=3).contains(&type_mod) => named("int64", "io.debezium.time.Timestamp"),
        1114 => named("int64", "io.debezium.time.MicroTimestamp"),
        1184 => named("string", "io.debezium.time.ZonedTimestamp"),
        1186 => named("int64", "io.debezium.time.MicroDuration"),
        2950 => named("string", "io.debezium.data.Uuid"),
        114 | 3802 => named("string", "io.debezium.data.Json"),
        142 => named("string", "io.debezium.data.Xml"),
        _ => plain("string"),
    }
}

fn numeric(type_oid: u32, type_mod: i32, decimal: DecimalMode) -> Map<String, Json> {
    match decimal {
        DecimalMode::Double => return plain("double"),
        DecimalMode::String => return plain("string"),
        DecimalMode::Precise => {}
    }
    // money is numeric(20, 2) in Debezium's eyes.
    let type_mod = if type_oid == 790 {
        ((20 << 16) | 2) + 4
    } else {
        type_mod
    };
    if type_mod < 4 {
        let mut m = named("struct", "io.debezium.data.VariableScaleDecimal");
        m.insert(
            "fields".into(),
            json!([
                { "type": "int32", "optional": false, "field": "scale" },
                { "type": "bytes", "optional": false, "field": "value" }
            ]),
        );
        m.insert("doc".into(), json!("Variable scaled decimal"));
        return m;
    }
    let precision = ((type_mod - 4) >> 16) & 0xffff;
    let scale = (((type_mod - 4) & 0x7ff) ^ 1024) - 1024;
    let mut m = named("bytes", "org.apache.kafka.connect.data.Decimal");
    m.insert(
        "parameters".into(),
        json!({ "scale": scale.to_string(), "connect.decimal.precision": precision.to_string() }),
    );
    m
}

/// The change event envelope around a table's columns.
fn envelope(topic: &str, columns: &[Json]) -> Json {
    let row = |field: &str| {
        json!({
            "type": "struct",
            "fields": columns,
            "optional": true,
            "name": format!("{topic}.Value"),
            "field": field,
        })
    };
    let f = |kind: &str, optional: bool, field: &str| json!({ "type": kind, "optional": optional, "field": field });
    let source = json!({
        "type": "struct",
        "fields": [
            f("string", false, "version"),
            f("string", false, "connector"),
            f("string", false, "name"),
            f("int64", false, "ts_ms"),
            {
                "type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
                "parameters": { "allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental" },
                "default": "false", "field": "snapshot"
            },
            f("string", false, "db"),
            f("string", true, "sequence"),
            f("int64", true, "ts_us"),
            f("int64", true, "ts_ns"),
            f("string", false, "schema"),
            f("string", false, "table"),
            f("int64", true, "txId"),
            f("int64", true, "lsn"),
            f("int64", true, "xmin"),
        ],
        "optional": false,
        "name": "io.debezium.connector.postgresql.Source",
        "field": "source",
    });
    let transaction = json!({
        "type": "struct",
        "fields": [
            f("string", false, "id"),
            f("int64", false, "total_order"),
            f("int64", false, "data_collection_order"),
        ],
        "optional": true,
        "name": "event.block",
        "version": 1,
        "field": "transaction",
    });
    json!({
        "type": "struct",
        "fields": [
            row("before"),
            row("after"),
            source,
            transaction,
            f("string", false, "op"),
            f("int64", true, "ts_ms"),
            f("int64", true, "ts_us"),
            f("int64", true, "ts_ns"),
        ],
        "optional": false,
        "name": format!("{topic}.Envelope"),
        "version": 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_as_debezium_maps_them() {
        let precise = DecimalMode::Precise;
        let col = |oid, m| Json::Object(column(oid, m, None, precise));
        assert_eq!(col(23, -1), json!({ "type": "int32" }));
        // numeric(10, 2): typmod = (10 << 16 | 2) + 4.
        let d = col(1700, (10 << 16 | 2) + 4);
        assert_eq!(d["name"], "org.apache.kafka.connect.data.Decimal");
        assert_eq!(
            d["parameters"],
            json!({ "scale": "2", "connect.decimal.precision": "10" })
        );
        assert_eq!(
            col(1700, -1)["name"],
            "io.debezium.data.VariableScaleDecimal"
        );
        assert_eq!(col(1114, -1)["name"], "io.debezium.time.MicroTimestamp");
        assert_eq!(col(1114, 3)["name"], "io.debezium.time.Timestamp");
        assert_eq!(
            col(1007, -1),
            json!({ "type": "array", "items": { "type": "int32", "optional": true } })
        );
        let e = Json::Object(column(99999, -1, Some("sad,happy"), precise));
        assert_eq!(e["parameters"]["allowed"], "sad,happy");
        assert_eq!(
            Json::Object(column(1700, -1, None, DecimalMode::String)),
            json!({ "type": "string" })
        );
        let env = envelope(
            "p.public.t",
            &[json!({ "type": "int32", "optional": false, "field": "id" })],
        );
        assert_eq!(env["name"], "p.public.t.Envelope");
        assert_eq!(env["fields"][1]["name"], "p.public.t.Value");
        assert_eq!(env["fields"][1]["fields"][0]["field"], "id");
        assert_eq!(wrap("{}", "[1]"), "{\"schema\":{},\"payload\":[1]}");
    }
}
