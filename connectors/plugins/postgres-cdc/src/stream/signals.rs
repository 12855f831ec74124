//! The signal table's rows in the stream: incremental snapshot requests and
//! the watermarks that open and close each chunk's window.

use serde_json::json;
use wharf_sdk::{Record, Result};

use super::Stream;
use crate::envelope;
use crate::incremental::Outcome;
use crate::pgoutput::Value;
use crate::progress;
use crate::settings::Settings;
use crate::values::Mapping;

impl Stream {
    /// A row inserted into the signal table. Signals an earlier run already
    /// acted on (at or before the stored position) are not acted on again.
    pub(super) fn signal(
        &mut self,
        s: &Settings,
        m: &Mapping,
        lsn: u64,
        row: &[Value],
        out: &mut Vec<Record>,
    ) -> Result<()> {
        if row.len() < 2 {
            return Ok(());
        }
        let replayed = match (&self.tx, self.resume) {
            (Some(tx), Some(r)) => tx.commit <= r.commit,
            _ => false,
        };
        match self.incremental.signal(s, row, replayed) {
            Outcome::Ignored => Ok(()),
            Outcome::StateChanged => {
                // A record carrying the new state, so the slot cannot move
                // past the signal before the state is durable.
                let Some(pos) = self.next_position() else {
                    return Ok(());
                };
                let now = wharf_sdk::now_millis();
                let record = envelope::record(
                    &s.heartbeat_topic,
                    Some(&json!({ "serverName": s.prefix }).to_string()),
                    Some(json!({ "ts_ms": now }).to_string()),
                    now,
                    &self.partition,
                    self.offset(pos, lsn),
                );
                self.push(out, record, pos);
                Ok(())
            }
            Outcome::Closed => self.emit_window(s, m, lsn, out),
        }
    }

    /// The rows left in a closed incremental snapshot window, as `op: r`
    /// events of the transaction that wrote the closing watermark.
    fn emit_window(
        &mut self,
        s: &Settings,
        m: &Mapping,
        lsn: u64,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let Some(closed) = self.incremental.take_closed() else {
            return Ok(());
        };
        let origin = self.tx_origin(s, "incremental", lsn);
        let (xid, ts_us) = (origin.tx_id.unwrap_or(0), origin.ts_us);
        let source = envelope::source(Some(&closed.shape), &origin);
        for (key, values, fields) in closed.rows {
            let Some(pos) = self.next_position() else {
                continue;
            };
            let after = closed.shape.row(&values, m)?;
            let value = envelope::event(&envelope::Parts {
                op: "r",
                before: None,
                after: Some(&after),
                source: &source,
                transaction: None,
                message: None,
            });
            let record = envelope::record(
                &closed.shape.topic,
                closed.shape.key_out(key.as_deref()).as_deref(),
                Some(closed.shape.value_out(value)),
                ts_us.div_euclid(1000),
                &self.partition,
                progress::stream_offset(pos, lsn, xid, ts_us, &fields),
            );
            self.push(out, record, pos);
        }
        Ok(())
    }
}
