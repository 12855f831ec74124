//! `cast`: Kafka Connect's Cast (`$Key` / `$Value`). `spec` is either one
//! type for the whole key or value, or `field:type,...` for top-level fields;
//! types are int8, int16, int32, int64, float32, float64, boolean and string.
//! Numbers narrow as Java's do (truncation toward zero, then two's
//! complement wrap), strings parse strictly, booleans are 1/0, and `string`
//! writes Java's text (`1.0`, `1.0E10`; Connect's ISO forms for Date, Time
//! and Timestamp). A `{schema, payload}` record gets the new types in its
//! schema; Decimal fields (JsonConverter's base64 bytes) cast as numbers.

use wharf_sdk::connect::{self, schema, Data, Side};
use wharf_sdk::datetime::{DateFormat, MILLIS_PER_DAY};
use wharf_sdk::json::{Map, Value};
use wharf_sdk::{
    Config, ConfigError, ConfigKey, Error, Importance, Plugin, Record, Result, Transform,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl Type {
    fn parse(name: &str) -> std::result::Result<Type, String> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "float32" => Type::Float32,
            "float64" => Type::Float64,
            "boolean" => Type::Boolean,
            "string" => Type::String,
            other => {
                return Err(format!(
                    "'{other}' is not a type Cast can cast to (int8, int16, int32, int64, \
                     float32, float64, boolean, string)"
                ))
            }
        })
    }

    fn schema_name(self) -> &'static str {
        match self {
            Type::Int8 => "int8",
            Type::Int16 => "int16",
            Type::Int32 => "int32",
            Type::Int64 => "int64",
            Type::Float32 => "float32",
            Type::Float64 => "float64",
            Type::Boolean => "boolean",
            Type::String => "string",
        }
    }
}

/// What `spec` asks for.
#[derive(Debug, PartialEq)]
enum Spec {
    Whole(Type),
    Fields(Vec<(String, Type)>),
}

fn spec_of(list: &[String]) -> std::result::Result<Spec, String> {
    if list.is_empty() {
        return Err("must specify at least one field to cast".into());
    }
    let mut fields = Vec::new();
    for item in list {
        match item.split(':').collect::<Vec<_>>()[..] {
            [ty] if list.len() == 1 => return Ok(Spec::Whole(Type::parse(ty)?)),
            [_] => {
                return Err(
                    "a cast of the entire value takes a single type and nothing else".into(),
                )
            }
            [field, ty] => fields.push((field.trim().to_string(), Type::parse(ty)?)),
            _ => {
                return Err(format!(
                    "invalid cast '{item}': expected field:type or type"
                ))
            }
        }
    }
    Ok(Spec::Fields(fields))
}

pub struct Cast {
    side: Side,
    spec: Spec,
    defaults: bool,
}

impl Plugin for Cast {
    const NAME: &'static str = "cast";
    const DESCRIPTION: &'static str =
        "Casts fields or the whole key or value to another type (Connect's Cast)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::list("spec")
                .importance(Importance::High)
                .doc("field1:type,field2:type, or one type for the whole key or value"),
            connect::replace_null_with_default_key(),
            Side::config_key(),
        ]
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if config.raw("spec").is_some() {
            if let Err(message) = spec_of(&config.list("spec")) {
                errors.push(ConfigError {
                    key: "spec".into(),
                    message,
                });
            }
        }
        errors
    }
}

/// A value read for casting.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
    /// A Decimal: unscaled value and scale.
    Decimal(i128, u32),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
            Num::Decimal(u, s) => u as f64 / 10f64.powi(s as i32),
        }
    }

    /// Java's `Number.longValue()`.
    fn as_i64(self) -> i64 {
        match self {
            Num::Int(i) => i as i64,
            Num::Float(f) => f as i64,
            Num::Decimal(u, s) => (u / 10i128.pow(s)) as i64,
        }
    }

    /// Java's `Number.intValue()`.
    fn as_i32(self) -> i32 {
        match self {
            Num::Float(f) => f as i32,
            other => other.as_i64() as i32,
        }
    }
}

fn number(v: &Value) -> Option<Num> {
    let n = v.as_number()?;
    Some(match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Num::Int(i.into()),
        (None, Some(u)) => Num::Int(u.into()),
        _ => Num::Float(n.as_f64()?),
    })
}

fn float_json(f: f64) -> Result<Value> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| Error::Fatal(format!("{f} cannot be written as JSON")))
}

/// Java's `Double.toString`: plain between 10^-3 and 10^7, else
/// scientific (`1.0E10`), always with a fraction digit.
fn java_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    if (1e-3..1e7).contains(&f.abs()) {
        let s = f.to_string();
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exp}")
}

fn decimal_string(unscaled: i128, scale: u32) -> String {
    if scale == 0 {
        return unscaled.to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if unscaled < 0 { "-" } else { "" })
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A Decimal as JsonConverter writes it: base64 big-endian two's complement
/// (or a plain number with `decimal.format=NUMERIC`).
fn decimal(v: &Value, field_schema: &Value) -> Result<Num> {
    let scale: u32 = field_schema
        .get("parameters")
        .and_then(|p| p.get("scale"))
        .and_then(|s| {
            s.as_str()
                .map(str::to_string)
                .or_else(|| Some(s.to_string()))
        })
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(n) = number(v) {
        return Ok(n);
    }
    let bytes = v
        .as_str()
        .and_then(base64_decode)
        .filter(|b| !b.is_empty() && b.len() <= 16)
        .ok_or_else(|| Error::Fatal(format!("not a Decimal Cast can read: {v}")))?;
    let mut unscaled: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        unscaled = (unscaled << 8) | i128::from(b);
    }
    Ok(Num::Decimal(unscaled, scale))
}

/// Connect's `Values.dateFormatFor`: a time before the second day, a date
/// at midnight, else a timestamp.
fn date_string(millis: i64) -> String {
    let pattern = if millis < MILLIS_PER_DAY {
        "HH:mm:ss.SSS'Z'"
    } else if millis % MILLIS_PER_DAY == 0 {
        "yyyy-MM-dd"
    } else {
        "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
    };
    DateFormat::new(pattern)
        .map(|f| f.format(millis))
        .unwrap_or_default()
}

fn unsupported(what: &str) -> Error {
    Error::Fatal(format!(
        "Cast does not support casting from {what}; supported types are int8, int16, int32, \
         int64, float32, float64, boolean, string and bytes"
    ))
}

/// Casts one value; `field_schema` is its schema when the record has one.
fn cast(v: &Value, field_schema: Option<&Value>, to: Type) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let out_of_range = || Error::Fatal(format!("value ({v}) is out of range for {to:?}"));
    // What the value is: a number, a boolean or text.
    enum In<'a> {
        Num(Num),
        Bool(bool),
        Text(&'a str),
    }
    let logical = field_schema.and_then(schema::name);
    let input = match (field_schema.map(schema::type_of), logical) {
        (_, Some(schema::DECIMAL)) => In::Num(decimal(v, field_schema.unwrap_or(&Value::Null))?),
        (_, Some(name @ (schema::DATE | schema::TIME | schema::TIMESTAMP)))
            if to == Type::String =>
        {
            let n = number(v).ok_or_else(|| Error::Fatal(format!("not a {name}: {v}")))?;
            let millis = n.as_i64()
                * if name == schema::DATE {
                    MILLIS_PER_DAY
                } else {
                    1
                };
            return Ok(Value::String(date_string(millis)));
        }
        (Some(ty @ ("struct" | "array" | "map")), _) => return Err(unsupported(ty)),
        _ => match v {
            Value::Bool(b) => In::Bool(*b),
            Value::String(s) => In::Text(s),
            Value::Number(_) => In::Num(number(v).ok_or_else(out_of_range)?),
            Value::Array(_) => return Err(unsupported("an array")),
            _ => return Err(unsupported("a map")),
        },
    };
    let text_err = |s: &str| Error::Fatal(format!("value ({s}) cannot be cast to {to:?}"));
    Ok(match (to, input) {
        (Type::String, In::Num(Num::Int(i))) => Value::String(i.to_string()),
        (Type::String, In::Num(Num::Float(f))) => {
            // A float32 in the schema prints as Java's Float does: its shortest form.
            if field_schema.map(schema::type_of) == Some("float32") {
                Value::String(java_double(f32_shortest(f)))
            } else {
                Value::String(java_double(f))
            }
        }
        (Type::String, In::Num(Num::Decimal(u, s))) => Value::String(decimal_string(u, s)),
        (Type::String, In::Bool(b)) => Value::String(b.to_string()),
        (Type::String, In::Text(s)) => Value::String(s.to_string()),
        (Type::Boolean, In::Num(n)) => Value::Bool(n.as_i64() != 0),
        (Type::Boolean, In::Bool(b)) => Value::Bool(b),
        (Type::Boolean, In::Text(s)) => Value::Bool(s.eq_ignore_ascii_case("true")),
        (Type::Float32 | Type::Float64, In::Bool(b)) => float_json(if b { 1.0 } else { 0.0 })?,
        (Type::Float32, In::Num(n)) => float_json(f32_shortest(n.as_f64() as f32 as f64))?,
        (Type::Float64, In::Num(n)) => float_json(n.as_f64())?,
        (Type::Float32, In::Text(s)) => {
            let f: f32 = s.trim().parse().map_err(|_| text_err(s))?;
            float_json(f32_shortest(f64::from(f)))?
        }
        (Type::Float64, In::Text(s)) => float_json(s.trim().parse().map_err(|_| text_err(s))?)?,
        (_, In::Bool(b)) => Value::from(i64::from(b)),
        (_, In::Text(s)) => {
            let i: i64 = s.trim().parse().map_err(|_| text_err(s))?;
            let fits = match to {
                Type::Int8 => i8::try_from(i).is_ok(),
                Type::Int16 => i16::try_from(i).is_ok(),
                Type::Int32 => i32::try_from(i).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(text_err(s));
            }
            Value::from(i)
        }
        (Type::Int8, In::Num(n)) => Value::from(n.as_i32() as i8),
        (Type::Int16, In::Num(n)) => Value::from(n.as_i32() as i16),
        (Type::Int32, In::Num(n)) => Value::from(n.as_i32()),
        (_, In::Num(n)) => Value::from(n.as_i64()),
    })
}

/// The f64 that prints as the f32 it holds does (1.1f32 → 1.1, not
/// 1.100000023841858).
fn f32_shortest(f: f64) -> f64 {
    (f as f32).to_string().parse().unwrap_or(f)
}

impl Cast {
    fn updated_field(&self, f: &Value, to: Type) -> Result<Value> {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(to.schema_name().into()));
        m.insert("optional".into(), Value::Bool(schema::is_optional(f)));
        if let Some(d) = f.get("default").filter(|d| !d.is_null()) {
            m.insert("default".into(), cast(d, Some(f), to)?);
        }
        Ok(schema::named(&Value::Object(m), schema::field_name(f)))
    }

    fn cast_data(&self, mut data: Data) -> Result<Data> {
        let fields = match &self.spec {
            Spec::Whole(to) => {
                let payload = cast(&data.payload, data.schema.as_ref(), *to)?;
                let schema = match &data.schema {
                    None => None,
                    Some(s) => {
                        let mut m = schema::basics(s, to.schema_name());
                        m.insert("optional".into(), Value::Bool(schema::is_optional(s)));
                        if let Some(d) = s.get("default").filter(|d| !d.is_null()) {
                            m.insert("default".into(), cast(d, Some(s), *to)?);
                        }
                        Some(Value::Object(m))
                    }
                };
                return Ok(data.replaced(schema, payload));
            }
            Spec::Fields(fields) => fields,
        };
        let map = connect::require_map(&mut data.payload, data.schema.as_ref(), "cast types")?;
        let Some(s) = &data.schema else {
            for (name, to) in fields {
                let v = map.get(name).cloned().unwrap_or(Value::Null);
                map.insert(name.clone(), cast(&v, None, *to)?);
            }
            return Ok(data);
        };
        let mut new_fields = Vec::new();
        let mut out = Map::new();
        for f in schema::fields(s) {
            let name = schema::field_name(f);
            let v = connect::field_value(map, f, self.defaults);
            match fields.iter().find(|(n, _)| n == name) {
                Some((_, to)) => {
                    out.insert(name.to_string(), cast(&v, Some(f), *to)?);
                    new_fields.push(self.updated_field(f, *to)?);
                }
                None => {
                    out.insert(name.to_string(), v);
                    new_fields.push(f.clone());
                }
            }
        }
        let mut updated = schema::struct_like(s, new_fields);
        if schema::is_optional(s) {
            updated["optional"] = Value::Bool(true);
        }
        Ok(data.replaced(Some(updated), Value::Object(out)))
    }
}

impl Transform for Cast {
    fn open(config: &Config) -> Result<Self> {
        Ok(Cast {
            side: Side::of(config)?,
            spec: spec_of(&config.list("spec")).map_err(|m| Error::Fatal(format!("spec: {m}")))?,
            defaults: config.bool(connect::REPLACE_NULL_WITH_DEFAULT)?,
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            self.side.edit(r, |d, _| self.cast_data(d))?;
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(Cast);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(pairs: &[(&str, &str)]) -> Cast {
        let config = Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_defaults(&Cast::config_spec());
        Cast::open(&config).expect("open")
    }

    fn run(spec: &str, value: Value) -> Value {
        let mut t = open(&[("spec", spec)]);
        let r = Record {
            topic: "t".into(),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        };
        let out = t.apply(vec![r]).expect("apply");
        serde_json::from_slice(out[0].value.as_deref().expect("value")).expect("json")
    }

    #[test]
    fn connects_documented_example() {
        // Connect's docs: "spec": "c1:int64,c2:string" on {"c1":22,"c2":24.5}... with
        // schemaless values the types follow the JSON.
        assert_eq!(
            run(
                "c1:int32,c2:string,c3:boolean",
                json!({"c1":"22","c2":24.5,"c3":0,"x":1})
            ),
            json!({"c1":22,"c2":"24.5","c3":false,"x":1})
        );
        assert_eq!(run("int8", json!(300)), json!(44));
        assert_eq!(run("string", json!(1.0e10)), json!("1.0E10"));
        assert_eq!(run("string", json!(3.0)), json!("3.0"));
        assert_eq!(run("int64", json!(-2.9)), json!(-2));
        assert_eq!(run("float32", json!(1.1)), json!(1.1));
        assert_eq!(run("boolean", json!("TRUE")), json!(true));
        // A field that is not there is cast from null, as Connect does.
        assert_eq!(run("a:int32", json!({"b":1})), json!({"a":null,"b":1}));
    }

    #[test]
    fn bad_specs_and_values_are_errors() {
        for bad in ["a:int32:x", "a:uuid", "int8,a:int8", ""] {
            let list: Vec<String> = bad
                .split(',')
                .map(str::to_string)
                .filter(|s| !s.is_empty())
                .collect();
            assert!(spec_of(&list).is_err(), "{bad}");
        }
        let mut t = open(&[("spec", "a:int8")]);
        let r = Record {
            topic: "t".into(),
            value: Some(br#"{"a":"999"}"#.to_vec()),
            ..Record::default()
        };
        assert!(t.apply(vec![r]).is_err());
        let r = Record {
            topic: "t".into(),
            value: Some(br#"{"a":{"b":1}}"#.to_vec()),
            ..Record::default()
        };
        assert!(t.apply(vec![r]).is_err());
    }

    #[test]
    fn schemas_get_the_new_types() {
        let value = json!({
            "schema": {"type":"struct","name":"V","optional":false,"fields":[
                {"field":"id","type":"int64","optional":false},
                {"field":"price","type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal",
                 "version":1,"parameters":{"scale":"2"}},
                {"field":"at","type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","version":1},
                {"field":"n","type":"int32","optional":true,"default":5}]},
            "payload": {"id":7,"price":"AQ==","at":1700000123456i64,"n":null}
        });
        // 0x01 unscaled at scale 2 is 0.01.
        let out = run("id:string,price:float64,at:string,n:string", value);
        assert_eq!(
            out["payload"],
            json!({"id":"7","price":0.01,"at":"2023-11-14T22:15:23.456Z","n":"5"})
        );
        assert_eq!(
            out["schema"]["fields"],
            json!([
                {"field":"id","type":"string","optional":false},
                {"field":"price","type":"float64","optional":true},
                {"field":"at","type":"string","optional":true},
                {"field":"n","type":"string","optional":true,"default":"5"}
            ])
        );
        assert_eq!(out["schema"]["name"], "V");
        let whole = run(
            "int32",
            json!({"schema":{"type":"int64","optional":true},"payload":12}),
        );
        assert_eq!(
            whole,
            json!({"schema":{"type":"int32","optional":true},"payload":12})
        );
        assert_eq!(decimal_string(-12345, 2), "-123.45");
        assert_eq!(decimal_string(5, 3), "0.005");
    }
}
