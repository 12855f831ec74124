//! Parquet files of JSON object values: one optional column per field, typed
//! from the values (boolean, int64, double, UTF-8 string; nested objects and
//! arrays as their JSON text). A value that does not fit the open file's
//! columns starts a new file, as Confluent rotates on a schema change.

use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Bool,
    Long,
    Double,
    Text,
}

/// Column names and types, in name order.
pub type Columns = Vec<(String, Column)>;

fn column_of(v: &Value) -> Column {
    match v {
        Value::Bool(_) => Column::Bool,
        Value::Number(n) if n.is_i64() => Column::Long,
        Value::Number(_) => Column::Double,
        _ => Column::Text,
    }
}

/// The columns a value would get; `None` when it is not a JSON object.
pub fn columns_of(value: &Value) -> Option<Columns> {
    let obj = value.as_object()?;
    let mut columns: Columns = obj.iter().map(|(k, v)| (k.clone(), column_of(v))).collect();
    columns.sort_by(|a, b| a.0.cmp(&b.0));
    Some(columns)
}

/// Whether a value fits columns already chosen: no new field, and each
/// present value of the column's type (an integer fits a double column; a
/// null fits anything).
pub fn fits(columns: &Columns, obj: &Map<String, Value>) -> bool {
    obj.len() <= columns.len()
        && obj.iter().all(|(k, v)| {
            columns
                .binary_search_by(|(name, _)| name.as_str().cmp(k))
                .ok()
                .is_some_and(|i| match (columns[i].1, v) {
                    (_, Value::Null) => true,
                    (Column::Double, Value::Number(_)) => true,
                    (c, v) => c == column_of(v),
                })
        })
}

fn perr(e: parquet::errors::ParquetError) -> String {
    format!("parquet: {e}")
}

/// One Parquet file (one row group) of `rows`, which must fit `columns`.
pub fn write(
    columns: &Columns,
    rows: &[Map<String, Value>],
    snappy: bool,
) -> Result<Vec<u8>, String> {
    let fields = columns
        .iter()
        .map(|(name, col)| {
            let (physical, logical) = match col {
                Column::Bool => (Physical::BOOLEAN, None),
                Column::Long => (Physical::INT64, None),
                Column::Double => (Physical::DOUBLE, None),
                Column::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            };
            Type::primitive_type_builder(name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(perr)?;
    let schema = Arc::new(
        Type::group_type_builder("record")
            .with_fields(fields)
            .build()
            .map_err(perr)?,
    );
    let compression = if snappy {
        parquet::basic::Compression::SNAPPY
    } else {
        parquet::basic::Compression::UNCOMPRESSED
    };
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, props).map_err(perr)?;
    let mut group = writer.next_row_group().map_err(perr)?;
    let mut index = 0;
    while let Some(mut col) = group.next_column().map_err(perr)? {
        let (name, kind) = &columns[index];
        index += 1;
        let present = rows.iter().map(|r| r.get(name).filter(|v| !v.is_null()));
        let defs: Vec<i16> = present.clone().map(|v| i16::from(v.is_some())).collect();
        match kind {
            Column::Bool => {
                let vals: Vec<bool> = present
                    .flatten()
                    .map(|v| v.as_bool().unwrap_or(false))
                    .collect();
                col.typed::<BoolType>()
                    .write_batch(&vals, Some(&defs), None)
            }
            Column::Long => {
                let vals: Vec<i64> = present.flatten().map(|v| v.as_i64().unwrap_or(0)).collect();
                col.typed::<Int64Type>()
                    .write_batch(&vals, Some(&defs), None)
            }
            Column::Double => {
                let vals: Vec<f64> = present
                    .flatten()
                    .map(|v| v.as_f64().unwrap_or(0.0))
                    .collect();
                col.typed::<DoubleType>()
                    .write_batch(&vals, Some(&defs), None)
            }
            Column::Text => {
                let vals: Vec<ByteArray> = present
                    .flatten()
                    .map(|v| match v {
                        Value::String(s) => ByteArray::from(s.as_str()),
                        other => ByteArray::from(other.to_string().as_str()),
                    })
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
            }
        }
        .map_err(perr)?;
        col.close().map_err(perr)?;
    }
    group.close().map_err(perr)?;
    writer.into_inner().map_err(perr)
}

/// The rows of a Parquet file as JSON objects (absent values left out).
pub fn read(data: Vec<u8>) -> Result<Vec<Value>, String> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(data)).map_err(perr)?;
    let rows = reader.get_row_iter(None).map_err(perr)?;
    rows.map(|r| {
        let mut v = r.map_err(perr)?.to_json_value();
        if let Value::Object(o) = &mut v {
            o.retain(|_, x| !x.is_null());
        }
        Ok(v)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_round_trip_and_new_fields_do_not_fit() {
        let rows: Vec<Map<String, Value>> = (0..100)
            .map(|i| {
                let v = json!({"id": i, "name": format!("n{i}"), "price": 1.5 * i as f64, "ok": i % 2 == 0, "tags": ["a"]});
                v.as_object().cloned().unwrap_or_default()
            })
            .collect();
        let cols = columns_of(&Value::Object(rows[1].clone())).expect("object");
        assert!(rows.iter().all(|r| fits(&cols, r)));
        let data = write(&cols, &rows, true).expect("written");
        let back = read(data).expect("read");
        assert_eq!(back.len(), 100);
        assert_eq!(back[7]["id"], json!(7));
        assert_eq!(back[7]["name"], json!("n7"));
        assert_eq!(back[7]["price"], json!(10.5));
        assert_eq!(back[7]["tags"], json!("[\"a\"]"));
        let extra = json!({"id": 1, "new": true});
        assert!(!fits(&cols, extra.as_object().expect("object")));
        let wrong = json!({"id": "text"});
        assert!(!fits(&cols, wrong.as_object().expect("object")));
    }
}
