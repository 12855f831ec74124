//! Nested YAML to Connect's flat map: nesting joins with dots, lists become
//! comma-separated strings, scalars keep their YAML spelling.

use std::collections::BTreeMap;

use serde_yaml::Value;

/// Text of a scalar as Connect would see it; `None` for mappings and lists.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// Flattens a mapping; an error is (key, message).
pub fn flatten(v: &Value) -> Result<BTreeMap<String, String>, (String, String)> {
    let mut out = BTreeMap::new();
    walk(v, String::new(), &mut out)?;
    Ok(out)
}

fn walk(
    v: &Value,
    prefix: String,
    out: &mut BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let Some(k) = scalar_text(k) else {
                    return Err((prefix, "keys must be plain strings".into()));
                };
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                walk(child, key, out)?;
            }
            Ok(())
        }
        Value::Sequence(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match scalar_text(item) {
                    Some(s) => parts.push(s),
                    None => return Err((
                        prefix,
                        "lists may only hold plain values (they become a comma-separated string)"
                            .into(),
                    )),
                }
            }
            insert(out, prefix, parts.join(","))
        }
        scalar => insert(out, prefix, scalar_text(scalar).unwrap_or_default()),
    }
}

fn insert(
    out: &mut BTreeMap<String, String>,
    key: String,
    value: String,
) -> Result<(), (String, String)> {
    if out.insert(key.clone(), value).is_some() {
        return Err((key, "given twice (once nested, once flat)".into()));
    }
    Ok(())
}
