//! Debezium's Postgres connector keys, parsed once at open, so a Debezium
//! config ports by changing only `connector.class`.

use regex_lite::Regex;
use wharf_sdk::{Config, ConfigKey, Error, Importance, Result};

use crate::values::DecimalMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Autocreate {
    AllTables,
    Filtered,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMode {
    Initial,
    Always,
    NoData,
    InitialOnly,
    WhenNeeded,
}

/// Include/exclude regex lists matched against whole names, as Debezium does.
#[derive(Clone, Debug, Default)]
pub struct NameFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl NameFilter {
    fn parse(config: &Config, include: &str, exclude: &str) -> Result<Self> {
        let compile = |key: &str| -> Result<Vec<Regex>> {
            config
                .list(key)
                .iter()
                .map(|p| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                        Error::Fatal(format!("config key '{key}': '{p}' is not a regex: {e}"))
                    })
                })
                .collect()
        };
        let f = NameFilter {
            include: compile(include)?,
            exclude: compile(exclude)?,
        };
        if !f.include.is_empty() && !f.exclude.is_empty() {
            return Err(Error::Fatal(format!(
                "config keys '{include}' and '{exclude}' may not both be set"
            )));
        }
        Ok(f)
    }

    pub fn matches(&self, name: &str) -> bool {
        if !self.include.is_empty() {
            return self.include.iter().any(|r| r.is_match(name));
        }
        !self.exclude.iter().any(|r| r.is_match(name))
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub prefix: String,
    pub dbname: String,
    pub slot: String,
    pub publication: String,
    pub autocreate: Autocreate,
    pub schemas: NameFilter,
    pub tables: NameFilter,
    pub columns: NameFilter,
    pub snapshot: SnapshotMode,
    pub heartbeat_ms: i64,
    pub heartbeat_query: Option<String>,
    pub heartbeat_topic: String,
    pub drop_slot_on_stop: bool,
    pub tombstones: bool,
    pub decimal: DecimalMode,
    pub max_batch: u32,
    pub skip: Vec<char>,
    pub signal_table: Option<String>,
    pub chunk_size: usize,
    /// The key and value converters want Connect schemas (set by the host).
    pub key_schemas: bool,
    pub value_schemas: bool,
    pub transaction_metadata: bool,
    pub transaction_topic: String,
    pub poll_interval_ms: u32,
}

pub fn spec() -> Vec<ConfigKey> {
    let high = Importance::High;
    vec![
        ConfigKey::string("topic.prefix").non_empty().importance(high)
            .doc("Prefix of every topic: <prefix>.<schema>.<table>; also the logical server name in offsets"),
        ConfigKey::string("database.hostname").non_empty().importance(high).doc("PostgreSQL host"),
        ConfigKey::int("database.port").default("5432").range(Some(1.0), Some(65535.0)).doc("PostgreSQL port"),
        ConfigKey::string("database.user").non_empty().importance(high)
            .doc("A role with REPLICATION and SELECT on the captured tables"),
        ConfigKey::password("database.password").default("").doc("Password of database.user"),
        ConfigKey::string("database.dbname").non_empty().importance(high).doc("Database to capture"),
        ConfigKey::string("slot.name").default("debezium").doc("Logical replication slot (pgoutput)"),
        ConfigKey::boolean("slot.drop.on.stop").default("false")
            .doc("Drop the slot when the connector stops (tests and demos; WAL is then not retained)"),
        ConfigKey::string("publication.name").default("dbz_publication").doc("Publication streamed from the slot"),
        ConfigKey::string("publication.autocreate.mode").default("all_tables")
            .one_of(&["all_tables", "filtered", "disabled"])
            .doc("Create the publication if missing: for all tables, for the captured tables (and keep it in step), or never"),
        ConfigKey::list("schema.include.list").default("").doc("Regexes of schemas to capture"),
        ConfigKey::list("schema.exclude.list").default("").doc("Regexes of schemas not to capture"),
        ConfigKey::list("table.include.list").default("").doc("Regexes of <schema>.<table> to capture"),
        ConfigKey::list("table.exclude.list").default("").doc("Regexes of <schema>.<table> not to capture"),
        ConfigKey::list("column.include.list").default("").doc("Regexes of <schema>.<table>.<column> to emit"),
        ConfigKey::list("column.exclude.list").default("").doc("Regexes of <schema>.<table>.<column> to leave out"),
        ConfigKey::string("snapshot.mode").default("initial")
            .one_of(&["initial", "always", "no_data", "never", "initial_only", "when_needed"])
            .doc("When to read the captured tables whole before streaming"),
        ConfigKey::long("heartbeat.interval.ms").default("0").at_least(0.0)
            .doc("Emit a heartbeat record this often so the slot advances while captured tables are idle; 0 disables"),
        ConfigKey::string("heartbeat.action.query").default("")
            .doc("SQL run at each heartbeat (e.g. an insert into a heartbeat table)"),
        ConfigKey::string("topic.heartbeat.prefix").default("__debezium-heartbeat").doc("Heartbeat topic: <this>.<topic.prefix>"),
        ConfigKey::boolean("tombstones.on.delete").default("true").doc("Follow each delete with a null-value record of the same key"),
        ConfigKey::string("decimal.handling.mode").default("precise").one_of(&["precise", "double", "string"])
            .doc("numeric as Connect Decimal (base64 unscaled bytes), a double or a string"),
        ConfigKey::int("max.batch.size").default("2048").range(Some(1.0), Some(1_000_000.0)).doc("Most records returned by one poll"),
        ConfigKey::long("poll.interval.ms").default("100").range(Some(1.0), Some(60_000.0))
            .doc("Longest wait for new changes in one poll"),
        ConfigKey::list("skipped.operations").default("t")
            .doc("Operations not emitted: c, u, d, t (truncate), or none"),
        ConfigKey::string("signal.data.collection").default("")
            .doc("Signal table <schema>.<table> (columns id, type, data): execute-snapshot, stop-snapshot, pause-snapshot and resume-snapshot rows drive incremental snapshots; it is never captured"),
        ConfigKey::int("incremental.snapshot.chunk.size").default("1024").range(Some(1.0), Some(1_000_000.0))
            .doc("Rows read per chunk of an incremental snapshot (held in memory until the chunk's window closes)"),
        ConfigKey::boolean("provide.transaction.metadata").default("false")
            .doc("Emit BEGIN/END events to <prefix>.transaction and a transaction block in every event"),
        ConfigKey::string("topic.transaction").default("transaction").doc("Transaction topic suffix"),
    ]
}

impl Settings {
    pub fn parse(c: &Config) -> Result<Self> {
        let prefix = c.string("topic.prefix")?.trim().to_string();
        let autocreate = match c.string("publication.autocreate.mode")?.trim() {
            "filtered" => Autocreate::Filtered,
            "disabled" => Autocreate::Disabled,
            _ => Autocreate::AllTables,
        };
        let snapshot = match c.string("snapshot.mode")?.trim() {
            "always" => SnapshotMode::Always,
            "no_data" | "never" => SnapshotMode::NoData,
            "initial_only" => SnapshotMode::InitialOnly,
            "when_needed" => SnapshotMode::WhenNeeded,
            _ => SnapshotMode::Initial,
        };
        let decimal = match c.string("decimal.handling.mode")?.trim() {
            "double" => DecimalMode::Double,
            "string" => DecimalMode::String,
            _ => DecimalMode::Precise,
        };
        let mut skip = Vec::new();
        for op in c.list("skipped.operations") {
            match op.as_str() {
                "none" => skip.clear(),
                "c" | "u" | "d" | "t" => skip.extend(op.chars()),
                other => {
                    return Err(Error::Fatal(format!(
                        "config key 'skipped.operations': '{other}' is not one of c, u, d, t, none"
                    )))
                }
            }
        }
        let slot = c.string("slot.name")?.trim().to_string();
        if slot.is_empty()
            || !slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::Fatal(format!(
                "config key 'slot.name': '{slot}' must be lower-case letters, digits and underscores"
            )));
        }
        let heartbeat_prefix = c.string("topic.heartbeat.prefix")?;
        Ok(Settings {
            dbname: c.string("database.dbname")?.trim().to_string(),
            slot,
            publication: c.string("publication.name")?.trim().to_string(),
            autocreate,
            schemas: NameFilter::parse(c, "schema.include.list", "schema.exclude.list")?,
            tables: NameFilter::parse(c, "table.include.list", "table.exclude.list")?,
            columns: NameFilter::parse(c, "column.include.list", "column.exclude.list")?,
            snapshot,
            heartbeat_ms: c.i64("heartbeat.interval.ms")?,
            heartbeat_query: c.opt_string("heartbeat.action.query"),
            heartbeat_topic: format!("{heartbeat_prefix}.{prefix}"),
            drop_slot_on_stop: c.bool("slot.drop.on.stop")?,
            tombstones: c.bool("tombstones.on.delete")?,
            decimal,
            max_batch: c.u64("max.batch.size")?.clamp(1, 1_000_000) as u32,
            skip,
            signal_table: c.opt_string("signal.data.collection"),
            key_schemas: c.raw("key.converter.schemas.enable") == Some("true"),
            value_schemas: c.raw("value.converter.schemas.enable") == Some("true"),
            chunk_size: c
                .u64("incremental.snapshot.chunk.size")?
                .clamp(1, 1_000_000) as usize,
            transaction_metadata: c.bool("provide.transaction.metadata")?,
            transaction_topic: format!("{prefix}.{}", c.string("topic.transaction")?.trim()),
            poll_interval_ms: c.u64("poll.interval.ms")?.clamp(1, 60_000) as u32,
            prefix,
        })
    }

    /// Whether `schema.table` is captured.
    pub fn captures(&self, schema: &str, table: &str) -> bool {
        let full = format!("{schema}.{table}");
        if self.signal_table.as_deref() == Some(full.as_str()) {
            return false;
        }
        self.schemas.matches(schema) && self.tables.matches(&full)
    }

    pub fn emits_column(&self, schema: &str, table: &str, column: &str) -> bool {
        self.columns.matches(&format!("{schema}.{table}.{column}"))
    }

    pub fn topic(&self, schema: &str, table: &str) -> String {
        format!("{}.{schema}.{table}", self.prefix)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Valid settings for unit tests elsewhere in the plugin.
    pub fn settings() -> Settings {
        Settings::parse(&config(&[])).expect("valid")
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(
            [
                ("topic.prefix", "shop"),
                ("database.hostname", "127.0.0.1"),
                ("database.user", "cdc"),
                ("database.dbname", "shop"),
            ]
            .iter()
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .with_defaults(&spec())
    }

    #[test]
    fn debezium_defaults_and_filters() {
        let s = Settings::parse(&config(&[("table.include.list", "public.orders,inv\\..*")]))
            .expect("valid");
        assert_eq!(s.slot, "debezium");
        assert_eq!(s.publication, "dbz_publication");
        assert!(s.skip.contains(&'t'));
        assert!(s.captures("public", "orders"));
        assert!(!s.captures("public", "orders_archive"));
        assert!(s.captures("inv", "items"));
        assert_eq!(s.topic("public", "orders"), "shop.public.orders");
        assert_eq!(s.heartbeat_topic, "__debezium-heartbeat.shop");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Settings::parse(&config(&[("slot.name", "Bad-Slot")])).unwrap_err();
        assert!(e.to_string().contains("slot.name"), "{e}");
        let e = Settings::parse(&config(&[("table.include.list", "a("), ("x", "y")])).unwrap_err();
        assert!(e.to_string().contains("table.include.list"), "{e}");
        let e = Settings::parse(&config(&[("skipped.operations", "x")])).unwrap_err();
        assert!(e.to_string().contains("skipped.operations"), "{e}");
        let s = Settings::parse(&config(&[("skipped.operations", "none")])).expect("valid");
        assert!(s.skip.is_empty());
    }
}
