//! Kafka Connect's data model as it travels in JSON, for the transforms that
//! mirror Connect's SMTs: which side of a record a `$Key` / `$Value`
//! transform works on ([`Side`], set by the host in [`SIDE`]), JsonConverter's
//! `{"schema": ..., "payload": ...}` envelope ([`Data`]), and the schema edits
//! those transforms share (Connect's `SchemaUtil` and `Requirements`, in
//! [`schema`]). A schema is JsonConverter's JSON form of a Connect schema:
//! `{"type": "struct", "fields": [{"field": "id", "type": "int32",
//! "optional": false}, ...], "optional": false, "name": ...}`.

use crate::json::{Map, Value};
use crate::{Config, ConfigKey, Error, Importance, Record, Result};

/// The config key that picks a transform's side. The host sets it from a
/// Connect class name (`org.apache.kafka.connect.transforms.Cast$Key` runs
/// `cast` with `wharf.transform.side=key`); with a short plugin name it may
/// be set by hand, and is `value` when unset.
pub const SIDE: &str = "wharf.transform.side";

/// Connect's `replace.null.with.default`, which most SMTs take.
pub const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";

/// The part of a record a `$Key` / `$Value` transform reads and rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Key,
    Value,
}

impl Side {
    /// The [`SIDE`] entry for a transform's config spec.
    pub fn config_key() -> ConfigKey {
        ConfigKey::string(SIDE)
            .default("value")
            .one_of(&["key", "value"])
            .importance(Importance::Low)
            .doc("The record side to transform; set by the host from a $Key / $Value class name")
    }

    /// The side a config names (`value` when it names none).
    pub fn of(config: &Config) -> Result<Side> {
        match config.raw(SIDE).map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(Side::Value),
            Some(s) if s.is_empty() || s == "value" => Ok(Side::Value),
            Some(s) if s == "key" => Ok(Side::Key),
            Some(other) => Err(Error::Fatal(format!(
                "config key '{SIDE}': expected key or value, got '{other}'"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }

    pub fn bytes(self, r: &Record) -> &Option<Vec<u8>> {
        match self {
            Side::Key => &r.key,
            Side::Value => &r.value,
        }
    }

    pub fn bytes_mut(self, r: &mut Record) -> &mut Option<Vec<u8>> {
        match self {
            Side::Key => &mut r.key,
            Side::Value => &mut r.value,
        }
    }

    /// This side of a record, parsed; `None` when it is null. An error
    /// names the side and the record's topic.
    pub fn read(self, r: &Record) -> Result<Option<Data>> {
        match self.bytes(r) {
            None => Ok(None),
            Some(b) => Data::parse(b).map(Some).map_err(|e| self.context(r, e)),
        }
    }

    /// Replaces this side of a record.
    pub fn write(self, r: &mut Record, data: &Data) {
        *self.bytes_mut(r) = data.to_bytes();
    }

    /// Runs `f` on this side of a record, as most of Connect's SMTs do: a
    /// null side (or a null payload in an envelope) passes unchanged. `f`
    /// also gets the record, for its topic, partition, offset, timestamp and
    /// headers; what it returns replaces this side. An error names the side
    /// and the topic.
    pub fn edit(
        self,
        r: &mut Record,
        f: impl FnOnce(Data, &mut Record) -> Result<Data>,
    ) -> Result<()> {
        let Some(data) = self.read(r)? else {
            return Ok(());
        };
        if data.payload.is_null() {
            return Ok(());
        }
        let out = f(data, r).map_err(|e| self.context(r, e))?;
        self.write(r, &out);
        Ok(())
    }

    /// An error about this side of a record, naming the record.
    pub fn context(self, r: &Record, e: Error) -> Error {
        let at = match (r.partition, r.offset) {
            (Some(p), Some(o)) => format!("{}-{p}@{o}", r.topic),
            _ => r.topic.clone(),
        };
        match e {
            Error::Fatal(m) => Error::Fatal(format!("record {} ({}): {m}", at, self.name())),
            Error::Retriable(m) => {
                Error::Retriable(format!("record {} ({}): {m}", at, self.name()))
            }
        }
    }
}

/// A key or value as JsonConverter writes it: plain JSON, or the
/// `{"schema", "payload"}` envelope. Written back in the shape it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// The Connect schema, when the data came (or goes) with one.
    pub schema: Option<Value>,
    pub payload: Value,
    envelope: bool,
}

impl Data {
    pub fn schemaless(payload: Value) -> Self {
        Data {
            schema: None,
            payload,
            envelope: false,
        }
    }

    pub fn with_schema(schema: Value, payload: Value) -> Self {
        Data {
            schema: Some(schema),
            payload,
            envelope: true,
        }
    }

    /// Parses JSON; an object of exactly `schema` (an object or null) and
    /// `payload` is an envelope.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Fatal(format!("not JSON: {e}")))?;
        Ok(Self::from_json(v))
    }

    pub fn from_json(v: Value) -> Self {
        match v {
            Value::Object(mut m)
                if m.len() == 2
                    && m.contains_key("payload")
                    && m.get("schema")
                        .is_some_and(|s| s.is_object() || s.is_null()) =>
            {
                let payload = m.remove("payload").unwrap_or(Value::Null);
                let schema = m.remove("schema").filter(|s| !s.is_null());
                Data {
                    schema,
                    payload,
                    envelope: true,
                }
            }
            other => Data::schemaless(other),
        }
    }

    /// The same shape (envelope or not) with another schema and payload.
    pub fn replaced(&self, schema: Option<Value>, payload: Value) -> Self {
        Data {
            envelope: self.envelope || schema.is_some(),
            schema,
            payload,
        }
    }

    /// The bytes JsonConverter would write; `None` (a tombstone) for a null
    /// without a schema.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match (&self.schema, self.envelope) {
            (None, _) if self.payload.is_null() => None,
            (None, false) => Some(self.payload.to_string().into_bytes()),
            (schema, _) => {
                let mut m = Map::new();
                m.insert("schema".into(), schema.clone().unwrap_or(Value::Null));
                m.insert("payload".into(), self.payload.clone());
                Some(Value::Object(m).to_string().into_bytes())
            }
        }
    }
}

/// The spec entry for [`REPLACE_NULL_WITH_DEFAULT`].
pub fn replace_null_with_default_key() -> ConfigKey {
    ConfigKey::boolean(REPLACE_NULL_WITH_DEFAULT)
        .default("true")
        .doc("Whether a null field that has a default in its schema reads as the default")
}

/// The payload as an object, or Connect's error for `purpose` ("Only Map
/// objects supported in absence of schema for [...]"); with a schema, that
/// schema must be a struct.
pub fn require_map<'a>(
    payload: &'a mut Value,
    schema: Option<&Value>,
    purpose: &str,
) -> Result<&'a mut Map<String, Value>> {
    if let Some(s) = schema {
        require_struct_schema(s, purpose)?;
    }
    match payload {
        Value::Object(m) => Ok(m),
        other if schema.is_some() => Err(Error::Fatal(format!(
            "only structs are supported for [{purpose}], found {}",
            kind(other)
        ))),
        other => Err(Error::Fatal(format!(
            "only objects are supported in absence of schema for [{purpose}], found {}",
            kind(other)
        ))),
    }
}

/// Connect's `requireStruct` on the schema side.
pub fn require_struct_schema(schema: &Value, purpose: &str) -> Result<()> {
    match schema::type_of(schema) {
        "struct" => Ok(()),
        other => Err(Error::Fatal(format!(
            "only structs are supported for [{purpose}], found a '{other}' schema"
        ))),
    }
}

/// What a JSON value is, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A struct field's value as Connect's `Struct.get` reads it: a null or
/// missing value reads as the field schema's default, unless `defaults`
/// (`replace.null.with.default`) is off.
pub fn field_value(payload: &Map<String, Value>, field: &Value, defaults: bool) -> Value {
    let name = schema::field_name(field);
    match payload.get(name) {
        Some(v) if !v.is_null() => v.clone(),
        _ if defaults => field.get("default").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Header bytes for a value, as Connect's SimpleHeaderConverter writes it:
/// strings as they are, anything else as JSON text.
pub fn header_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        Value::Null => Vec::new(),
        other => other.to_string().into_bytes(),
    }
}

/// A Java regex replacement (`Matcher.replaceFirst`, as RegexRouter and
/// Debezium's routers take it) in the syntax of regex / regex-lite: `$12` is
/// group 12 only if the regex has 12 groups (else group 1 and a "2"),
/// `${name}` a named group, `\x` the character x, and a literal `$` `$$`.
pub fn java_replacement(java: &str, groups: usize) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(x) => out.push(x),
                None => return Err("character to be escaped is missing".into()),
            },
            '$' => {
                match chars.next() {
                    Some('{') => {
                        let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                        out.push_str(&format!("${{{name}}}"));
                    }
                    Some(d) if d.is_ascii_digit() => {
                        let mut n = d.to_digit(10).unwrap_or(0) as usize;
                        while let Some(next) = chars.peek().and_then(|c| c.to_digit(10)) {
                            let more = n * 10 + next as usize;
                            if more > groups {
                                break;
                            }
                            n = more;
                            chars.next();
                        }
                        if n > groups {
                            return Err(format!("no group {n} in the regex"));
                        }
                        out.push_str(&format!("${{{n}}}"));
                    }
                    _ => return Err(
                        "illegal group reference: '$' must be followed by a group number or {name}"
                            .into(),
                    ),
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Schema edits, on JsonConverter's JSON form of Connect schemas.
pub mod schema {
    use super::{Map, Value};

    pub const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
    pub const DATE: &str = "org.apache.kafka.connect.data.Date";
    pub const TIME: &str = "org.apache.kafka.connect.data.Time";
    pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";

    /// The schema's type (`int32`, `struct`, ...); empty when it has none.
    pub fn type_of(s: &Value) -> &str {
        s.get("type").and_then(Value::as_str).unwrap_or("")
    }

    pub fn name(s: &Value) -> Option<&str> {
        s.get("name").and_then(Value::as_str)
    }

    /// Connect's default: a schema is required unless it says optional.
    pub fn is_optional(s: &Value) -> bool {
        s.get("optional").and_then(Value::as_bool).unwrap_or(false)
    }

    /// A struct's fields (each a schema with its `field` name); none for
    /// other schemas.
    pub fn fields(s: &Value) -> &[Value] {
        s.get("fields")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// One field of a struct schema, by name.
    pub fn field<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
        fields(s).iter().find(|f| field_name(f) == name)
    }

    pub fn field_name(f: &Value) -> &str {
        f.get("field").and_then(Value::as_str).unwrap_or("")
    }

    /// A field's own schema: the field entry without its name.
    pub fn unnamed(f: &Value) -> Value {
        let mut s = f.clone();
        if let Some(m) = s.as_object_mut() {
            m.remove("field");
        }
        s
    }

    /// A schema as a struct field called `name`.
    pub fn named(s: &Value, name: &str) -> Value {
        let mut f = s.clone();
        if let Some(m) = f.as_object_mut() {
            m.insert("field".into(), Value::String(name.to_string()));
        }
        f
    }

    /// A schema with `optional` set.
    pub fn with_optional(s: &Value, optional: bool) -> Value {
        let mut s = s.clone();
        if let Some(m) = s.as_object_mut() {
            m.insert("optional".into(), Value::Bool(optional));
        }
        s
    }

    /// A primitive schema (`string`, `int64`, ...).
    pub fn primitive(ty: &str, optional: bool) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(ty.to_string()));
        m.insert("optional".into(), Value::Bool(optional));
        Value::Object(m)
    }

    /// A logical type on a primitive (`Timestamp` on `int64`, ...).
    pub fn logical(ty: &str, name: &str, optional: bool) -> Value {
        let mut s = primitive(ty, optional);
        if let Some(m) = s.as_object_mut() {
            m.insert("name".into(), Value::String(name.to_string()));
            m.insert("version".into(), Value::from(1));
        }
        s
    }

    /// Connect's `SchemaUtil.copySchemaBasics`: a new schema of type `ty`
    /// with the source's name, version, doc and parameters (but not its
    /// optionality or default, as in Connect).
    pub fn basics(source: &Value, ty: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(ty.to_string()));
        m.insert("optional".into(), Value::Bool(false));
        for k in ["name", "version", "doc", "parameters"] {
            if let Some(v) = source.get(k).filter(|v| !v.is_null()) {
                m.insert(k.into(), v.clone());
            }
        }
        m
    }

    /// A struct with the source's basics and these fields.
    pub fn struct_like(source: &Value, fields: Vec<Value>) -> Value {
        let mut m = basics(source, "struct");
        m.insert("fields".into(), Value::Array(fields));
        Value::Object(m)
    }

    /// A plain struct schema (no name), required.
    pub fn struct_of(fields: Vec<Value>) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String("struct".into()));
        m.insert("fields".into(), Value::Array(fields));
        m.insert("optional".into(), Value::Bool(false));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: &str) -> Record {
        Record {
            topic: "t".into(),
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn envelopes_round_trip_in_their_shape() {
        let d = Data::parse(br#"{"schema":{"type":"int32"},"payload":5}"#).unwrap();
        assert_eq!(d.schema, Some(json!({"type":"int32"})));
        assert_eq!(d.payload, json!(5));
        let back: Value = serde_json::from_slice(&d.to_bytes().unwrap()).unwrap();
        assert_eq!(back, json!({"schema":{"type":"int32"},"payload":5}));
        // Plain JSON that merely has a `payload` field is not an envelope.
        let d = Data::parse(br#"{"payload":1,"other":2}"#).unwrap();
        assert_eq!(d.schema, None);
        assert_eq!(d.to_bytes().unwrap(), br#"{"other":2,"payload":1}"#);
        // A schemaless envelope keeps its shape; a null without a schema is a tombstone.
        let d = Data::parse(br#"{"schema":null,"payload":{"a":1}}"#).unwrap();
        assert_eq!(
            d.to_bytes().unwrap(),
            br#"{"payload":{"a":1},"schema":null}"#
        );
        assert_eq!(d.replaced(None, Value::Null).to_bytes(), None);
    }

    #[test]
    fn sides_come_from_the_config_and_edits_skip_nulls() {
        let c = |v: &str| Config::from_pairs([(SIDE.to_string(), v.to_string())]);
        assert_eq!(Side::of(&c("key")).unwrap(), Side::Key);
        assert_eq!(Side::of(&Config::default()).unwrap(), Side::Value);
        assert!(Side::of(&c("both")).is_err());
        let mut r = record(r#"{"schema":{"type":"struct"},"payload":null}"#);
        Side::Value
            .edit(&mut r, |_, _| panic!("a null payload is not edited"))
            .unwrap();
        let mut r = record("[1]");
        let e = Side::Value
            .edit(&mut r, |mut d, _| {
                require_map(&mut d.payload, None, "test")?;
                Ok(d)
            })
            .unwrap_err();
        assert!(e.to_string().contains("record t (value)"), "{e}");
        assert!(e.to_string().contains("[test]"), "{e}");
    }

    #[test]
    fn java_replacements_translate() {
        assert_eq!(java_replacement("$3_raw", 3).unwrap(), "${3}_raw");
        assert_eq!(java_replacement("$10", 1).unwrap(), "${1}0");
        assert_eq!(java_replacement("$10", 10).unwrap(), "${10}");
        assert_eq!(java_replacement("${t}-\\$", 1).unwrap(), "${t}-$$");
        assert!(java_replacement("$2", 1).is_err());
        assert!(java_replacement("a$", 1).is_err());
    }

    #[test]
    fn defaults_apply_to_null_fields_when_asked() {
        let field = json!({"field":"n","type":"int32","optional":true,"default":7});
        let payload = json!({"n":null}).as_object().unwrap().clone();
        assert_eq!(field_value(&payload, &field, true), json!(7));
        assert_eq!(field_value(&payload, &field, false), Value::Null);
    }
}
