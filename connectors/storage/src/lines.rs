//! JSON lines. Values follow Confluent's JsonFormat: a JSON value is written
//! as is (compacted if it spans lines), text that is not JSON as a JSON
//! string, a tombstone as `null`. The keys and headers companions are
//! Wharf's own and exact: a key is `null`, a JSON string of its text, or
//! `{"base64": ...}` when it is not UTF-8; a headers line is
//! `{"timestamp": ms|null, "headers": [[name, value], ...]}` with values
//! encoded the same way.

use base64::Engine;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Appends a value as one line.
pub fn push_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.extend_from_slice(b"null"),
        Some(b) => match serde_json::from_slice::<serde::de::IgnoredAny>(b) {
            Ok(_) if !has_line_break(b) => out.extend_from_slice(b),
            Ok(_) => match serde_json::from_slice::<Value>(b) {
                Ok(v) => {
                    let _ = serde_json::to_writer(&mut *out, &v);
                }
                Err(_) => push_exact(out, Some(b)),
            },
            Err(_) => push_exact(out, Some(b)),
        },
    }
    out.push(b'\n');
}

/// Whether `b` holds a `\n` or `\r`. Valid JSON has them only as
/// whitespace between tokens, so most values have no control byte at all:
/// one pass eight bytes at a time looks for any byte below 0x20, and only a
/// value that has one is searched exactly (in wasm, `contains` goes four
/// bytes at a time, and this ran twice per value).
fn has_line_break(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
    let mut words = b.chunks_exact(8);
    let control = words.by_ref().any(|w| {
        w.try_into()
            .map_or(true, |w| below_space(u64::from_le_bytes(w)))
    }) || words.remainder().iter().any(|&c| c < 0x20);
    control && b.iter().any(|&c| c == b'\n' || c == b'\r')
}

/// A value line back as record bytes (`None` for `null`).
pub fn value_of(line: &[u8]) -> Option<Vec<u8>> {
    if line == b"null" {
        None
    } else {
        Some(line.to_vec())
    }
}

fn exact(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "base64": B64.encode(b) }),
    }
}

fn push_exact(out: &mut Vec<u8>, b: Option<&[u8]>) {
    let v = b.map_or(Value::Null, exact);
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// Appends a key as one line of the keys companion.
pub fn push_key(out: &mut Vec<u8>, key: Option<&[u8]>) {
    push_exact(out, key);
    out.push(b'\n');
}

fn bytes_of(v: &Value) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone().into_bytes())),
        Value::Object(o) => match o.get("base64").and_then(Value::as_str) {
            Some(b) => B64.decode(b).map(Some).map_err(|e| format!("base64: {e}")),
            None => Err(format!("unexpected {v}")),
        },
        other => Err(format!("unexpected {other}")),
    }
}

pub fn key_of(line: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("key line: {e}"))?;
    bytes_of(&v)
}

/// Appends a record's timestamp and headers as one line of the headers companion.
pub fn push_headers<'a>(
    out: &mut Vec<u8>,
    timestamp: Option<i64>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let h: Vec<Value> = headers
        .into_iter()
        .map(|(k, val)| json!([k, exact(val)]))
        .collect();
    let _ = serde_json::to_writer(&mut *out, &json!({"timestamp": timestamp, "headers": h}));
    out.push(b'\n');
}

/// A record's timestamp and headers.
pub type Meta = (Option<i64>, Vec<(String, Vec<u8>)>);

pub fn headers_of(line: &[u8]) -> Result<Meta, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("headers line: {e}"))?;
    let headers = v["headers"]
        .as_array()
        .ok_or("headers line without headers")?
        .iter()
        .map(|pair| {
            let name = pair[0].as_str().ok_or("header without a name")?;
            Ok((name.to_string(), bytes_of(&pair[1])?.unwrap_or_default()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((v["timestamp"].as_i64(), headers))
}

/// Lines of a file, without their terminators (a last empty line dropped).
pub fn split<'a>(data: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    if separator.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        match rest.windows(separator.len()).position(|w| w == separator) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + separator.len()..];
            }
            None => {
                out.push(rest);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_are_found_anywhere_and_only_there() {
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| b' ' + (i % 90) as u8).collect();
            assert!(!has_line_break(&plain), "{len}");
            let mut tabbed = plain.clone();
            tabbed.push(b'\t');
            assert!(!has_line_break(&tabbed), "{len}");
            for at in 0..len {
                for brk in [b'\n', b'\r'] {
                    let mut with = plain.clone();
                    with[at] = brk;
                    assert!(has_line_break(&with), "{len} {at}");
                }
            }
        }
        // Bytes at or above 0x80 (UTF-8) are not control bytes.
        assert!(!has_line_break("héllo wörld, ünïcode".as_bytes()));
    }

    #[test]
    fn values_keys_and_headers_come_back() {
        let mut out = Vec::new();
        push_value(&mut out, Some(br#"{"a": 1}"#));
        push_value(&mut out, Some(b"{\n\"b\":2}"));
        push_value(&mut out, Some(b"plain text"));
        push_value(&mut out, None);
        let lines = split(&out, b"\n");
        assert_eq!(lines.len(), 4);
        assert_eq!(value_of(lines[0]).as_deref(), Some(&br#"{"a": 1}"#[..]));
        assert_eq!(value_of(lines[1]).as_deref(), Some(&br#"{"b":2}"#[..]));
        assert_eq!(value_of(lines[2]).as_deref(), Some(&br#""plain text""#[..]));
        assert_eq!(value_of(lines[3]), None);

        let mut keys = Vec::new();
        push_key(&mut keys, Some(b"k-1"));
        push_key(&mut keys, Some(&[0xff, 0x00]));
        push_key(&mut keys, None);
        let k = split(&keys, b"\n");
        assert_eq!(key_of(k[0]), Ok(Some(b"k-1".to_vec())));
        assert_eq!(key_of(k[1]), Ok(Some(vec![0xff, 0x00])));
        assert_eq!(key_of(k[2]), Ok(None));

        let mut h = Vec::new();
        let headers = vec![
            ("a".to_string(), b"x".to_vec()),
            ("b".to_string(), vec![0xfe]),
        ];
        let borrowed = headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        push_headers(&mut h, Some(42), borrowed);
        assert_eq!(headers_of(split(&h, b"\n")[0]), Ok((Some(42), headers)));
    }
}
