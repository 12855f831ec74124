//! The snapshot: each captured table read whole through a cursor, inside a
//! repeatable-read transaction that imported the slot's exported snapshot,
//! so the rows are exactly the database at the slot's consistent point and
//! streaming goes on from there with nothing missed or doubled. One row is
//! held back so the very last one can say `snapshot: "last"`.

use std::collections::VecDeque;

use wharf_sdk::postgres::{self as pg, ident};
use wharf_sdk::{Record, Result};

use crate::catalog::Table;
use crate::envelope::{self, Origin, Shape};
use crate::pgoutput::Value;
use crate::progress;
use crate::settings::Settings;
use crate::values::Mapping;

const CURSOR: &str = "wharf_snapshot";
const FETCH_MAX: usize = 4096;

pub struct Snapshot {
    tables: VecDeque<Table>,
    reading: Option<Shape>,
    held: Option<(Shape, Vec<Value>)>,
    /// Streaming starts here.
    pub point: u64,
    ts_us: i64,
    xmin: u32,
    emitted: bool,
}

pub fn shape_of(s: &Settings, t: &Table) -> Result<Shape> {
    let columns = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_oid, c.type_mod, c.key));
    let mut shape = Shape::new(s, &t.schema, &t.name, columns);
    crate::schema::attach(s, &mut shape, t.oid)?;
    Ok(shape)
}

impl Snapshot {
    /// Begins the snapshot transaction (in `exported`, when the slot was just
    /// created) and queues the tables.
    pub fn begin(tables: Vec<Table>, exported: Option<&str>, point: u64) -> Result<Self> {
        pg::snapshot_begin(exported)?;
        let rows = pg::query("SELECT txid_snapshot_xmin(txid_current_snapshot())")?;
        let xmin = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        wharf_sdk::log(
            wharf_sdk::Level::Info,
            &format!(
                "snapshot of {} table(s) at {}",
                tables.len(),
                progress::format_lsn(point)
            ),
        );
        Ok(Snapshot {
            tables: tables.into(),
            reading: None,
            held: None,
            point,
            ts_us: wharf_sdk::now_millis().saturating_mul(1000),
            xmin: xmin as u32,
            emitted: false,
        })
    }

    /// Appends up to `max` snapshot records; returns true once finished.
    pub fn poll(
        &mut self,
        s: &Settings,
        m: &Mapping,
        max: usize,
        out: &mut Vec<Record>,
    ) -> Result<bool> {
        let partition = progress::source_partition(&s.prefix);
        while out.len() < max {
            let Some(shape) = self.reading.clone() else {
                let Some(t) = self.tables.pop_front() else {
                    if let Some((shape, values)) = self.held.take() {
                        let r = self.record(s, m, &partition, &shape, &values, true)?;
                        out.push(r);
                    }
                    pg::snapshot_end()?;
                    return Ok(true);
                };
                let shape = shape_of(s, &t)?;
                let columns = t
                    .columns
                    .iter()
                    .map(|c| ident(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                pg::query(&format!(
                    "DECLARE {CURSOR} NO SCROLL CURSOR FOR SELECT {columns} FROM {}",
                    t.quoted()
                ))?;
                self.reading = Some(shape);
                continue;
            };
            let n = (max - out.len()).clamp(1, FETCH_MAX);
            let rows = pg::query(&format!("FETCH FORWARD {n} FROM {CURSOR}"))?;
            let exhausted = rows.len() < n;
            for row in rows {
                let values: Vec<Value> = row
                    .into_iter()
                    .map(|c| c.map_or(Value::Null, Value::Text))
                    .collect();
                if let Some((held_shape, held_values)) = self.held.replace((shape.clone(), values))
                {
                    let r = self.record(s, m, &partition, &held_shape, &held_values, false)?;
                    out.push(r);
                }
            }
            if exhausted {
                pg::query(&format!("CLOSE {CURSOR}"))?;
                self.reading = None;
            }
        }
        Ok(false)
    }

    fn record(
        &mut self,
        s: &Settings,
        m: &Mapping,
        partition: &str,
        shape: &Shape,
        values: &[Value],
        last: bool,
    ) -> Result<Record> {
        let origin = Origin {
            prefix: &s.prefix,
            db: &s.dbname,
            ts_us: self.ts_us,
            // Debezium marks the first and the last snapshot record.
            snapshot: match (last, self.emitted) {
                (true, _) => "last",
                (false, false) => "first",
                (false, true) => "true",
            },
            tx_id: Some(self.xmin),
            lsn: Some(self.point),
            sequence: (None, self.point),
        };
        self.emitted = true;
        let after = shape.row(values, m)?;
        let key = shape.key(values, m)?;
        let value = envelope::event(&envelope::Parts {
            op: "r",
            before: None,
            after: Some(&after),
            source: &envelope::source(Some(shape), &origin),
            transaction: None,
            message: None,
        });
        Ok(envelope::record(
            &shape.topic,
            shape.key_out(key.as_deref()).as_deref(),
            Some(shape.value_out(value)),
            self.ts_us / 1000,
            partition,
            progress::snapshot_offset(self.point, self.xmin, self.ts_us, last),
        ))
    }
}
