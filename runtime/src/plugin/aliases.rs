//! Connect, Debezium and Confluent class names for the built-in plugins, so
//! a config copied from Kafka Connect runs unchanged: `connector.class:
//! io.debezium.connector.postgresql.PostgresConnector` loads `postgres-cdc`,
//! `transforms.x.type: org.apache.kafka.connect.transforms.ReplaceField$Key`
//! loads `replace-field` working on the key. A `$Key` / `$Value` class
//! names the side in [`Alias::side`]; the transform chain hands it to the
//! plugin as `wharf.transform.side` (see `wharf_sdk::connect::SIDE`).

/// The record side a `$Key` / `$Value` class works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Key,
    Value,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }
}

/// What a class name resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alias {
    /// The built-in plugin's name.
    pub plugin: &'static str,
    pub side: Option<Side>,
}

/// The config key that carries the side to the plugin.
pub const SIDE_KEY: &str = "wharf.transform.side";

/// Connectors: (class, built-in plugin).
const CONNECTORS: &[(&str, &str)] = &[
    (
        "io.debezium.connector.postgresql.PostgresConnector",
        "postgres-cdc",
    ),
    ("io.confluent.connect.s3.S3SinkConnector", "s3-sink"),
    (
        "io.confluent.connect.s3.source.S3SourceConnector",
        "s3-source",
    ),
    (
        "io.confluent.connect.elasticsearch.ElasticsearchSinkConnector",
        "elasticsearch-sink",
    ),
    (
        "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "file-sink",
    ),
    (
        "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "file-source",
    ),
];

const CONNECT_TRANSFORMS: &str = "org.apache.kafka.connect.transforms.";

/// Connect's transforms: (simple class name, built-in plugin, whether it
/// comes as `$Key` / `$Value`).
const TRANSFORMS: &[(&str, &str, bool)] = &[
    ("Cast", "cast", true),
    ("DropHeaders", "drop-headers", false),
    ("ExtractField", "extract-field", true),
    ("Filter", "filter", false),
    ("Flatten", "flatten", true),
    ("HeaderFrom", "header-from", true),
    ("HoistField", "hoist-field", true),
    ("InsertField", "insert-field", true),
    ("InsertHeader", "insert-header", false),
    ("MaskField", "mask", true),
    ("RegexRouter", "route", false),
    ("ReplaceField", "replace-field", true),
    ("SetSchemaMetadata", "set-schema-metadata", true),
    ("TimestampConverter", "timestamp-converter", true),
    ("TimestampRouter", "timestamp-router", false),
    ("ValueToKey", "value-to-key", false),
];

/// Debezium's transforms: (class, built-in plugin).
const DEBEZIUM_TRANSFORMS: &[(&str, &str)] = &[
    ("io.debezium.transforms.ExtractNewRecordState", "unwrap"),
    (
        "io.debezium.transforms.ByLogicalTableRouter",
        "logical-table-router",
    ),
    ("io.debezium.transforms.outbox.EventRouter", "outbox"),
];

/// The built-in plugin a class name stands for, if any. Only plugins that
/// are built in resolve (`exists` says which are).
pub fn resolve(class: &str, exists: impl Fn(&str) -> bool) -> Option<Alias> {
    let class = class.trim();
    let found = if let Some(simple) = class.strip_prefix(CONNECT_TRANSFORMS) {
        let (base, side) = match simple.split_once('$') {
            Some((base, "Key")) => (base, Some(Side::Key)),
            Some((base, "Value")) => (base, Some(Side::Value)),
            Some(_) => return None,
            None => (simple, None),
        };
        TRANSFORMS
            .iter()
            .find(|(name, _, sided)| *name == base && *sided == side.is_some())
            .map(|&(_, plugin, _)| Alias { plugin, side })
    } else {
        CONNECTORS
            .iter()
            .chain(DEBEZIUM_TRANSFORMS)
            .find(|(c, _)| *c == class)
            .map(|&(_, plugin)| Alias { plugin, side: None })
    };
    found.filter(|a| exists(a.plugin))
}

/// Why a Connect transform class does not resolve when it almost does:
/// the side is missing, or given to a transform that has none.
pub fn hint(class: &str) -> Option<String> {
    let simple = class.trim().strip_prefix(CONNECT_TRANSFORMS)?;
    let base = simple.split_once('$').map_or(simple, |(b, _)| b);
    let (_, _, sided) = TRANSFORMS.iter().find(|(name, _, _)| *name == base)?;
    Some(if *sided {
        format!("use {CONNECT_TRANSFORMS}{base}$Key or {CONNECT_TRANSFORMS}{base}$Value")
    } else {
        format!("{CONNECT_TRANSFORMS}{base} has no $Key / $Value variants")
    })
}

/// Every class name with its plugin, as `GET /connector-plugins` may list
/// them: (class, plugin, side).
pub fn all() -> Vec<(String, &'static str, Option<Side>)> {
    let mut out: Vec<(String, &'static str, Option<Side>)> = CONNECTORS
        .iter()
        .chain(DEBEZIUM_TRANSFORMS)
        .map(|(c, p)| (c.to_string(), *p, None))
        .collect();
    for &(name, plugin, sided) in TRANSFORMS {
        if sided {
            for side in [Side::Key, Side::Value] {
                let suffix = if side == Side::Key { "Key" } else { "Value" };
                out.push((
                    format!("{CONNECT_TRANSFORMS}{name}${suffix}"),
                    plugin,
                    Some(side),
                ));
            }
        } else {
            out.push((format!("{CONNECT_TRANSFORMS}{name}"), plugin, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_resolve_with_their_side() {
        let any = |_: &str| true;
        assert_eq!(
            resolve("io.debezium.connector.postgresql.PostgresConnector", any),
            Some(Alias {
                plugin: "postgres-cdc",
                side: None
            })
        );
        assert_eq!(
            resolve("org.apache.kafka.connect.transforms.ReplaceField$Key", any),
            Some(Alias {
                plugin: "replace-field",
                side: Some(Side::Key)
            })
        );
        assert_eq!(
            resolve("org.apache.kafka.connect.transforms.RegexRouter", any).map(|a| a.plugin),
            Some("route")
        );
        // A side where there is none, none where one is needed, unknown names.
        assert_eq!(
            resolve("org.apache.kafka.connect.transforms.RegexRouter$Key", any),
            None
        );
        assert_eq!(
            resolve("org.apache.kafka.connect.transforms.Cast", any),
            None
        );
        assert!(hint("org.apache.kafka.connect.transforms.Cast")
            .is_some_and(|h| h.contains("Cast$Key")));
        assert_eq!(resolve("com.example.Nope", any), None);
        // Only built-in plugins resolve.
        assert_eq!(
            resolve("io.debezium.transforms.outbox.EventRouter", |p| p
                != "outbox"),
            None
        );
        assert!(all()
            .iter()
            .any(|(c, p, _)| c.ends_with("MaskField$Value") && *p == "mask"));
    }
}
