//! The Postgres capability a CDC source imports: the host holds a query
//! connection and a logical replication connection to the database in the
//! connector's `database.*` keys. Compiled natively (unit tests), every call
//! fails: there is no host to talk to.

use crate::Result;

/// One result row: each column's text output, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// What the replication stream delivered, in server order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEvent {
    /// One pgoutput message and the WAL position it was logged at.
    Data(u64, Vec<u8>),
    /// The server's WAL end, everything before it delivered.
    Keepalive(u64),
}

/// A new slot: streaming from `consistent_point` continues where the
/// exported snapshot `snapshot_name` ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotCreated {
    pub consistent_point: u64,
    pub snapshot_name: String,
}

#[cfg(target_arch = "wasm32")]
use crate::bindings::source::wharf::connector::postgres as wit;

#[cfg(target_arch = "wasm32")]
use crate::from_wit;

#[cfg(not(target_arch = "wasm32"))]
fn unavailable<T>() -> Result<T> {
    crate::host_only("postgres")
}

/// Runs SQL on the query connection; the rows of the last statement with any.
pub fn query(sql: &str) -> Result<Vec<Row>> {
    #[cfg(target_arch = "wasm32")]
    return wit::query(sql).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = sql;
        unavailable()
    }
}

/// Creates a pgoutput slot exporting its snapshot.
pub fn slot_create(name: &str) -> Result<SlotCreated> {
    #[cfg(target_arch = "wasm32")]
    return wit::slot_create(name)
        .map(|s| SlotCreated {
            consistent_point: s.consistent_point,
            snapshot_name: s.snapshot_name,
        })
        .map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = name;
        unavailable()
    }
}

/// Opens a repeatable-read transaction for snapshot reads, in the exported
/// snapshot when one is named.
pub fn snapshot_begin(snapshot: Option<&str>) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::snapshot_begin(snapshot).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = snapshot;
        unavailable()
    }
}

pub fn snapshot_end() -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::snapshot_end().map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    unavailable()
}

/// Starts pgoutput streaming; `start_lsn` 0 means the slot's confirmed position.
pub fn stream_start(
    slot: &str,
    start_lsn: u64,
    publications: &[String],
    messages: bool,
) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::stream_start(slot, start_lsn, publications, messages).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (slot, start_lsn, publications, messages);
        unavailable()
    }
}

/// Waits up to `timeout_ms`, then returns what arrived (about `max_bytes`).
pub fn stream_read(max_bytes: u32, timeout_ms: u32) -> Result<Vec<WalEvent>> {
    #[cfg(target_arch = "wasm32")]
    return wit::stream_read(max_bytes, timeout_ms)
        .map(|events| {
            events
                .into_iter()
                .map(|e| match e {
                    wit::WalEvent::Data((lsn, data)) => WalEvent::Data(lsn, data),
                    wit::WalEvent::Keepalive(lsn) => WalEvent::Keepalive(lsn),
                })
                .collect()
        })
        .map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (max_bytes, timeout_ms);
        unavailable()
    }
}

/// Everything before `lsn` is durably handled: the slot may advance.
pub fn stream_confirm(lsn: u64) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::stream_confirm(lsn).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = lsn;
        unavailable()
    }
}

/// Ends the stream; the slot becomes inactive.
pub fn stream_stop() {
    #[cfg(target_arch = "wasm32")]
    wit::stream_stop();
}

/// Quotes an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
