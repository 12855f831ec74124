//! Reading a chunk: the open watermark, the rows after the last key in
//! primary key order, the close watermark.

use std::collections::HashMap;
use std::rc::Rc;

use wharf_sdk::postgres::{self as pg, ident, literal};
use wharf_sdk::{Error, Level, Result};

use super::{log, rows_of, text_of, Chunk, Current, Incremental};
use crate::settings::Settings;
use crate::values::Mapping;

impl Incremental {
    /// Reads the next chunk between two watermarks (tables with nothing
    /// left are passed over without any).
    pub fn read_chunk(&mut self, s: &Settings, m: &Mapping) -> Result<()> {
        let Some(signal) = s.signal_table.as_deref() else {
            return Ok(());
        };
        while self.wants_chunk() {
            if self.current.is_none() && !self.start_table(s)? {
                continue;
            }
            let Some(cur) = &self.current else { continue };
            let filter = self
                .queue
                .front()
                .and_then(|c| c.filter.clone())
                .map(|f| format!(" AND ({f})"))
                .unwrap_or_default();
            let tuple = |k: &[String]| {
                let v: Vec<String> = k.iter().map(|t| literal(t)).collect();
                format!("({})", v.join(", "))
            };
            let after = self
                .last_key
                .as_deref()
                .map(|k| format!(" AND ({}) > {}", cur.key_list, tuple(k)))
                .unwrap_or_default();
            let upto = self
                .max_key
                .as_deref()
                .map(|k| format!("({}) <= {}", cur.key_list, tuple(k)))
                .unwrap_or_else(|| "true".into());
            self.counter += 1;
            let id = format!("wharf-{}-{}", wharf_sdk::now_millis(), self.counter);
            let table = crate::catalog::quoted_name(signal);
            watermark(&table, &id, "open")?;
            let select = format!(
                "SELECT {} FROM {} WHERE {upto}{after}{filter} ORDER BY {} LIMIT {}",
                cur.columns, cur.quoted, cur.key_list, self.chunk_size
            );
            let rows = match pg::query(&select) {
                Ok(rows) => rows_of(rows),
                // A refused query (a bad additional condition, a lost
                // SELECT right) ends this table's snapshot, not the task.
                Err(Error::Fatal(e)) => {
                    let table = self.queue.front().map(|c| c.id.clone()).unwrap_or_default();
                    log(
                        Level::Error,
                        &format!("incremental snapshot of {table} stopped: {e}"),
                    );
                    self.pass_over()?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            watermark(&table, &id, "close")?;
            let last_of_table = rows.len() < self.chunk_size;
            let end_key: Vec<String> = rows
                .last()
                .map(|r| cur.key_idx.iter().map(|&i| text_of(&r[i])).collect())
                .unwrap_or_default();
            let mut chunk = Chunk {
                id,
                open: false,
                rows: Vec::with_capacity(rows.len()),
                by_key: HashMap::new(),
                end_key,
                last_of_table,
            };
            for values in rows {
                let key = cur.shape.key(&values, m)?;
                if let Some(k) = &key {
                    chunk.by_key.insert(k.clone(), chunk.rows.len());
                }
                chunk.rows.push(Some((key, values)));
            }
            self.chunk = Some(chunk);
        }
        Ok(())
    }

    /// Starts the table at the head of the queue; false when it was passed
    /// over (gone, keyless or empty).
    fn start_table(&mut self, s: &Settings) -> Result<bool> {
        let Some(c) = self.queue.front().cloned() else {
            return Ok(false);
        };
        let table = crate::catalog::tables(s)?
            .into_iter()
            .find(|t| format!("{}.{}", t.schema, t.name) == c.id);
        let Some(table) = table else {
            log(
                Level::Warn,
                &format!("incremental snapshot: table {} not found; skipped", c.id),
            );
            return self.pass_over();
        };
        let key_idx: Vec<usize> = (0..table.columns.len())
            .filter(|&i| table.columns[i].key)
            .collect();
        if key_idx.is_empty() {
            log(
                Level::Warn,
                &format!(
                    "incremental snapshot: table {} has no primary key; skipped",
                    c.id
                ),
            );
            return self.pass_over();
        }
        let names = |idx: &mut dyn Iterator<Item = usize>| {
            idx.map(|i| ident(&table.columns[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let key_list = names(&mut key_idx.iter().copied());
        let columns = names(&mut (0..table.columns.len()));
        let quoted = table.quoted();
        if self.max_key.is_none() {
            let desc = key_idx
                .iter()
                .map(|&i| format!("{} DESC", ident(&table.columns[i].name)))
                .collect::<Vec<_>>()
                .join(", ");
            let top = pg::query(&format!(
                "SELECT {key_list} FROM {quoted} ORDER BY {desc} LIMIT 1"
            ))?;
            let Some(top) = top.into_iter().next() else {
                log(
                    Level::Info,
                    &format!("incremental snapshot: {} is empty", c.id),
                );
                return self.pass_over();
            };
            self.max_key = Some(top.into_iter().map(Option::unwrap_or_default).collect());
        }
        self.current = Some(Current {
            shape: Rc::new(crate::snapshot::shape_of(s, &table)?),
            quoted,
            columns,
            key_idx,
            key_list,
        });
        self.refresh_context();
        log(
            Level::Info,
            &format!("incremental snapshot of {} started", c.id),
        );
        Ok(true)
    }

    fn pass_over(&mut self) -> Result<bool> {
        self.queue.pop_front();
        self.next_table();
        self.refresh_context();
        Ok(false)
    }
}

/// Writes a watermark row as Debezium does: id `<chunk>-open|close`, type
/// `snapshot-window-open|close`, data `{"openWindowTimestamp": ms}` (or close).
fn watermark(signal_table: &str, chunk: &str, which: &str) -> Result<()> {
    let data = format!(
        "{{\"{which}WindowTimestamp\": {}}}",
        wharf_sdk::now_millis()
    );
    pg::query(&format!(
        "INSERT INTO {signal_table} VALUES ({}, 'snapshot-window-{which}', {})",
        literal(&format!("{chunk}-{which}")),
        literal(&data)
    ))
    .map(|_| ())
}
