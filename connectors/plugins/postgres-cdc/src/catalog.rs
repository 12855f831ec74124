//! What the plugin learns from the catalogs at open: the captured tables and
//! their columns (for the snapshot; streaming learns them from Relation
//! messages), and the state of the publication and the slot.

use wharf_sdk::postgres::{self as pg, ident, literal};
use wharf_sdk::{Error, Result};

use crate::settings::{Autocreate, Settings};

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub type_mod: i32,
    pub key: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn quoted(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

fn text(row: &pg::Row, i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

fn num<T: std::str::FromStr + Default>(row: &pg::Row, i: usize) -> T {
    text(row, i).parse().unwrap_or_default()
}

/// The captured ordinary and partitioned tables, columns in order, the key
/// being the primary key (else the replica identity index).
pub fn tables(s: &Settings) -> Result<Vec<Table>> {
    let rows = pg::query(
        "SELECT c.oid, n.nspname, c.relname FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
         ORDER BY n.nspname, c.relname",
    )?;
    let mut tables: Vec<Table> = rows
        .iter()
        .map(|r| Table {
            oid: num(r, 0),
            schema: text(r, 1),
            name: text(r, 2),
            columns: Vec::new(),
        })
        .filter(|t| s.captures(&t.schema, &t.name))
        .collect();
    if tables.is_empty() {
        return Ok(tables);
    }
    let oids = tables
        .iter()
        .map(|t| t.oid.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cols = pg::query(&format!(
        "SELECT a.attrelid, a.attname, a.atttypid, a.atttypmod, \
           COALESCE((SELECT true FROM pg_index i WHERE i.indrelid = a.attrelid \
             AND (i.indisprimary OR (i.indisreplident AND NOT EXISTS \
               (SELECT 1 FROM pg_index p WHERE p.indrelid = a.attrelid AND p.indisprimary))) \
             AND a.attnum = ANY(i.indkey) LIMIT 1), false) \
         FROM pg_attribute a WHERE a.attrelid IN ({oids}) AND a.attnum > 0 \
           AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum"
    ))?;
    for r in &cols {
        let oid: u32 = num(r, 0);
        if let Some(t) = tables.iter_mut().find(|t| t.oid == oid) {
            t.columns.push(Column {
                name: text(r, 1),
                type_oid: num(r, 2),
                type_mod: num(r, 3),
                key: text(r, 4) == "t",
            });
        }
    }
    Ok(tables)
}

/// The primary key columns of the table with this OID.
pub fn primary_key(oid: u32) -> Result<Vec<String>> {
    let rows = pg::query(&format!(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a \
           ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = {oid} AND i.indisprimary"
    ))?;
    Ok(rows.iter().map(|r| text(r, 0)).collect())
}

/// `schema.table` as SQL (a name without a schema stays unqualified).
pub fn quoted_name(full: &str) -> String {
    match full.split_once('.') {
        Some((schema, table)) => format!("{}.{}", ident(schema), ident(table)),
        None => ident(full),
    }
}

/// Makes sure the publication exists (and, in filtered mode, covers exactly
/// the captured tables), as `publication.autocreate.mode` says.
pub fn ensure_publication(s: &Settings, tables: &[Table]) -> Result<()> {
    let found = pg::query(&format!(
        "SELECT puballtables FROM pg_publication WHERE pubname = {}",
        literal(&s.publication)
    ))?;
    let mut listed: Vec<String> = tables.iter().map(Table::quoted).collect();
    // The signal table's rows reach the connector through the stream.
    if let Some(signal) = &s.signal_table {
        let quoted = quoted_name(signal);
        let found = pg::query(&format!("SELECT to_regclass({})", literal(&quoted)))?;
        if found
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .is_some()
        {
            listed.push(quoted);
        }
    }
    let names = || listed.join(", ");
    let publication = ident(&s.publication);
    let exists = !found.is_empty();
    match s.autocreate {
        Autocreate::Disabled if exists => Ok(()),
        Autocreate::Disabled => Err(Error::Fatal(format!(
            "publication '{}' does not exist and publication.autocreate.mode is disabled: \
             create it (CREATE PUBLICATION {publication} FOR TABLE ...) or change the mode",
            s.publication
        ))),
        Autocreate::AllTables if exists => Ok(()),
        Autocreate::AllTables => {
            pg::query(&format!("CREATE PUBLICATION {publication} FOR ALL TABLES"))
                .map(|_| ())
                .map_err(|e| explain_publication(s, e))
        }
        Autocreate::Filtered => {
            if tables.is_empty() {
                return Err(Error::Fatal(
                    "publication.autocreate.mode=filtered but no table matches the include/exclude lists"
                        .into(),
                ));
            }
            let sql = if exists {
                format!("ALTER PUBLICATION {publication} SET TABLE {}", names())
            } else {
                format!("CREATE PUBLICATION {publication} FOR TABLE {}", names())
            };
            pg::query(&sql)
                .map(|_| ())
                .map_err(|e| explain_publication(s, e))
        }
    }
}

fn explain_publication(s: &Settings, e: Error) -> Error {
    match e {
        Error::Fatal(m) => Error::Fatal(format!(
            "creating publication '{}' ({m}); FOR ALL TABLES needs a superuser, filtered needs \
             ownership of the tables; or create it yourself and set publication.autocreate.mode=disabled",
            s.publication
        )),
        other => other,
    }
}

/// The slot's confirmed position, if the slot exists; refuses a slot of
/// another plugin or database.
pub fn slot(s: &Settings) -> Result<Option<u64>> {
    let rows = pg::query(&format!(
        "SELECT plugin, database, confirmed_flush_lsn::text FROM pg_replication_slots \
         WHERE slot_name = {}",
        literal(&s.slot)
    ))?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    if text(r, 0) != "pgoutput" || text(r, 1) != s.dbname {
        return Err(Error::Fatal(format!(
            "slot '{}' exists for plugin '{}' on database '{}'; it must be a pgoutput slot on '{}'",
            s.slot,
            text(r, 0),
            text(r, 1),
            s.dbname
        )));
    }
    Ok(Some(crate::progress::parse_lsn(&text(r, 2)).unwrap_or(0)))
}

/// Checks the role may replicate, so a missing right reads as such.
pub fn check_replication_right(user_can: &str) -> Result<()> {
    let rows =
        pg::query("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")?;
    if rows.first().map(|r| text(r, 0)) == Some("t".into()) {
        Ok(())
    } else {
        Err(Error::Fatal(format!(
            "role '{user_can}' lacks the REPLICATION attribute: ALTER ROLE {} WITH REPLICATION",
            ident(user_can)
        )))
    }
}
