//! Incremental snapshots, Debezium's watermark method (from Netflix's DBLog).
//! An `execute-snapshot` row written to the signal table queues tables while
//! the stream goes on. Each chunk of a table, in primary key order, is read
//! between two watermark rows the connector writes to the signal table. When
//! the stream reaches the opening watermark the chunk's window opens; a
//! streamed change to a key of the chunk drops that row (the stream's event
//! is as new or newer); at the closing watermark what is left is emitted as
//! `op: r`. The progress rides in every offset (Debezium's
//! `incremental_snapshot_*` fields), so a restart goes on after the last key
//! emitted.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use wharf_sdk::postgres as pg;
use wharf_sdk::Level;

use crate::envelope::Shape;
use crate::pgoutput::Value;
use crate::settings::Settings;

mod chunk;

/// A table to snapshot, as Debezium names it in offsets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    #[serde(rename = "incremental_snapshot_collections_id")]
    pub id: String,
    #[serde(rename = "incremental_snapshot_collections_additional_condition")]
    pub filter: Option<String>,
}

/// The table being read: its shape and the SQL pieces of its chunk query.
struct Current {
    shape: Rc<Shape>,
    quoted: String,
    columns: String,
    key_idx: Vec<usize>,
    key_list: String,
}

/// A chunk read between its watermarks, waiting for the stream to pass them.
struct Chunk {
    id: String,
    open: bool,
    /// (event key, row); None once a streamed change replaced it.
    rows: Vec<Option<(Option<String>, Vec<Value>)>>,
    by_key: HashMap<String, usize>,
    end_key: Vec<String>,
    last_of_table: bool,
}

/// What the stream hands over at a closing watermark.
pub struct Closed {
    pub shape: Rc<Shape>,
    /// (event key, row, offset fields naming the row's own key).
    pub rows: Vec<(Option<String>, Vec<Value>, String)>,
}

/// What a signal row asked for.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Ignored,
    /// The queue or pause state changed: persist it with a record.
    StateChanged,
    Closed,
}

#[derive(Default)]
pub struct Incremental {
    queue: VecDeque<Collection>,
    last_key: Option<Vec<String>>,
    max_key: Option<Vec<String>>,
    current: Option<Current>,
    chunk: Option<Chunk>,
    closed: Option<Closed>,
    paused: bool,
    chunk_size: usize,
    /// The offset fields that carry this state; empty when idle.
    context: String,
    counter: u64,
}

fn rows_of(rows: Vec<pg::Row>) -> Vec<Vec<Value>> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| c.map_or(Value::Null, Value::Text))
                .collect()
        })
        .collect()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        _ => String::new(),
    }
}

/// A value stored as JSON inside a JSON string, as Debezium's offsets do.
fn from_text<T: serde::de::DeserializeOwned>(v: &Json) -> Option<T> {
    v.as_str().and_then(|t| serde_json::from_str(t).ok())
}

fn log(level: Level, message: &str) {
    wharf_sdk::log(level, message);
}

impl Incremental {
    pub fn new(chunk_size: usize) -> Self {
        Incremental {
            chunk_size: chunk_size.max(1),
            ..Default::default()
        }
    }

    /// Picks up an incremental snapshot an earlier run had under way.
    pub fn resume(&mut self, offset: &Json) {
        let Some(queue) = from_text(&offset["incremental_snapshot_collections"]) else {
            return;
        };
        self.queue = queue;
        self.last_key = from_text(&offset["incremental_snapshot_primary_key"]);
        self.max_key = from_text(&offset["incremental_snapshot_maximum_key"]);
        self.refresh_context();
        if let Some(c) = self.queue.front() {
            log(
                Level::Info,
                &format!("resuming the incremental snapshot of {}", c.id),
            );
        }
    }

    /// Offset fields (with their leading commas) for events emitted now.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// A new chunk should be read: tables are queued, none is in flight.
    pub fn wants_chunk(&self) -> bool {
        !self.paused && self.chunk.is_none() && !self.queue.is_empty()
    }

    fn fields(&self, last_key: Option<&[String]>) -> String {
        if self.queue.is_empty() {
            return String::new();
        }
        let as_text = |v: String| Json::String(v).to_string();
        let collections = serde_json::to_string(&self.queue).unwrap_or_default();
        let mut out = format!(
            ",\"incremental_snapshot_collections\":{}",
            as_text(collections)
        );
        if let Some(k) = last_key {
            let k = serde_json::to_string(k).unwrap_or_default();
            out.push_str(",\"incremental_snapshot_primary_key\":");
            out.push_str(&as_text(k));
        }
        if let Some(k) = &self.max_key {
            let k = serde_json::to_string(k).unwrap_or_default();
            out.push_str(",\"incremental_snapshot_maximum_key\":");
            out.push_str(&as_text(k));
        }
        out
    }

    fn refresh_context(&mut self) {
        self.context = self.fields(self.last_key.as_deref());
    }

    /// A row inserted into the signal table: (id, type, data).
    /// `replayed` is true for signals an earlier run already acted on.
    pub fn signal(&mut self, s: &Settings, row: &[Value], replayed: bool) -> Outcome {
        let (id, kind) = (text_of(&row[0]), text_of(&row[1]));
        let data = row.get(2).map(text_of).unwrap_or_default();
        match kind.as_str() {
            "snapshot-window-open" => {
                if let Some(c) = self
                    .chunk
                    .as_mut()
                    .filter(|c| id == format!("{}-open", c.id))
                {
                    c.open = true;
                }
                Outcome::Ignored
            }
            "snapshot-window-close" => {
                let ours = self
                    .chunk
                    .as_ref()
                    .is_some_and(|c| c.open && id == format!("{}-close", c.id));
                if ours {
                    self.close_window();
                    Outcome::Closed
                } else {
                    Outcome::Ignored
                }
            }
            _ if replayed => Outcome::Ignored,
            "execute-snapshot" => self.execute(s, &id, &data),
            "stop-snapshot" => self.stop(&id, &data),
            "pause-snapshot" => {
                log(
                    Level::Info,
                    &format!("signal {id}: incremental snapshot paused"),
                );
                self.paused = true;
                Outcome::Ignored
            }
            "resume-snapshot" => {
                log(
                    Level::Info,
                    &format!("signal {id}: incremental snapshot resumed"),
                );
                self.paused = false;
                Outcome::Ignored
            }
            other => {
                log(
                    Level::Warn,
                    &format!("signal {id}: unknown type '{other}', ignored"),
                );
                Outcome::Ignored
            }
        }
    }

    fn execute(&mut self, s: &Settings, id: &str, data: &str) -> Outcome {
        let request = match parse_request(data) {
            Ok(r) => r,
            Err(e) => {
                log(
                    Level::Warn,
                    &format!("signal {id} (execute-snapshot): {e}; ignored"),
                );
                return Outcome::Ignored;
            }
        };
        if request.kind != "incremental" {
            log(
                Level::Warn,
                &format!(
                    "signal {id}: only incremental snapshots run while streaming, not '{}'; ignored",
                    request.kind
                ),
            );
            return Outcome::Ignored;
        }
        let mut added = Vec::new();
        for name in request.collections {
            let captured = name
                .split_once('.')
                .is_some_and(|(schema, table)| s.captures(schema, table));
            if !captured {
                log(
                    Level::Warn,
                    &format!(
                        "signal {id}: '{name}' is not a captured table (schema.table); skipped"
                    ),
                );
                continue;
            }
            if self.queue.iter().any(|c| c.id == name) {
                continue;
            }
            let filter = request.filters.get(&name).cloned();
            added.push(name.clone());
            self.queue.push_back(Collection { id: name, filter });
        }
        if added.is_empty() {
            return Outcome::Ignored;
        }
        log(
            Level::Info,
            &format!("signal {id}: incremental snapshot of {}", added.join(", ")),
        );
        self.refresh_context();
        Outcome::StateChanged
    }

    fn stop(&mut self, id: &str, data: &str) -> Outcome {
        let names = parse_request(data)
            .map(|r| r.collections)
            .unwrap_or_default();
        let before = self.queue.len();
        if names.is_empty() {
            self.queue.clear();
        } else {
            let current = self.queue.front().map(|c| c.id.clone());
            self.queue.retain(|c| !names.contains(&c.id));
            if current != self.queue.front().map(|c| c.id.clone()) {
                self.next_table();
            }
        }
        if self.queue.is_empty() {
            self.next_table();
        }
        log(
            Level::Info,
            &format!(
                "signal {id}: incremental snapshot stopped for {} table(s)",
                before - self.queue.len()
            ),
        );
        self.refresh_context();
        Outcome::StateChanged
    }

    /// The current table is done (or dropped): forget its progress.
    fn next_table(&mut self) {
        self.current = None;
        self.chunk = None;
        self.last_key = None;
        self.max_key = None;
    }

    /// A streamed change to `schema.table` with this event key (None for
    /// a truncate, which empties the window).
    pub fn changed(&mut self, shape: &Shape, key: Option<&str>) {
        let Some(chunk) = self.chunk.as_mut().filter(|c| c.open) else {
            return;
        };
        let Some(cur) = &self.current else { return };
        if cur.shape.schema != shape.schema || cur.shape.table != shape.table {
            return;
        }
        match key {
            Some(k) => {
                if let Some(i) = chunk.by_key.remove(k) {
                    chunk.rows[i] = None;
                }
            }
            None => {
                chunk.rows.iter_mut().for_each(|r| *r = None);
                chunk.by_key.clear();
            }
        }
    }

    fn close_window(&mut self) {
        let (Some(chunk), Some(cur)) = (self.chunk.take(), &self.current) else {
            return;
        };
        let shape = cur.shape.clone();
        let key_idx = cur.key_idx.clone();
        let rows = chunk
            .rows
            .into_iter()
            .flatten()
            .map(|(key, values)| {
                let own: Vec<String> = key_idx.iter().map(|&i| text_of(&values[i])).collect();
                let fields = self.fields(Some(&own));
                (key, values, fields)
            })
            .collect();
        self.closed = Some(Closed { shape, rows });
        if chunk.last_of_table {
            if let Some(done) = self.queue.pop_front() {
                log(
                    Level::Info,
                    &format!("incremental snapshot of {} finished", done.id),
                );
            }
            self.next_table();
            if self.queue.is_empty() {
                log(Level::Info, "incremental snapshot finished");
            }
        } else {
            self.last_key = Some(chunk.end_key);
        }
        self.refresh_context();
    }

    /// The rows of the window that just closed, to emit now.
    pub fn take_closed(&mut self) -> Option<Closed> {
        self.closed.take()
    }
}

struct Request {
    collections: Vec<String>,
    kind: String,
    filters: HashMap<String, String>,
}

/// Debezium's signal data: `{"data-collections": [...], "type": "incremental",
/// "additional-conditions": [{"data-collection": ..., "filter": ...}]}`.
fn parse_request(data: &str) -> std::result::Result<Request, String> {
    let v: Json = serde_json::from_str(data).map_err(|e| format!("data is not JSON ({e})"))?;
    let collections = v["data-collections"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let kind = v["type"]
        .as_str()
        .unwrap_or("incremental")
        .to_ascii_lowercase();
    let filters = v["additional-conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some((
                        c["data-collection"].as_str()?.to_string(),
                        c["filter"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Request {
        collections,
        kind,
        filters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debezium_signal_data_is_read() {
        let r = parse_request(
            r#"{"data-collections": ["public.a", "public.b"], "type": "INCREMENTAL",
                "additional-conditions": [{"data-collection": "public.a", "filter": "id > 5"}]}"#,
        )
        .expect("valid");
        assert_eq!(r.collections, ["public.a", "public.b"]);
        assert_eq!(r.kind, "incremental");
        assert_eq!(
            r.filters.get("public.a").map(String::as_str),
            Some("id > 5")
        );
        assert!(parse_request("{").is_err());
    }

    #[test]
    fn stop_pause_and_resume_signals_change_the_queue() {
        let mut inc = Incremental::new(10);
        for id in ["public.a", "public.b"] {
            inc.queue.push_back(Collection {
                id: id.into(),
                filter: None,
            });
        }
        inc.last_key = Some(vec!["7".into()]);
        let s = crate::settings::tests::settings();
        let sig = |kind: &str, data: &str| {
            vec![
                Value::Text("x".into()),
                Value::Text(kind.into()),
                Value::Text(data.into()),
            ]
        };
        assert_eq!(
            inc.signal(&s, &sig("pause-snapshot", ""), false),
            Outcome::Ignored
        );
        assert!(!inc.wants_chunk());
        assert_eq!(
            inc.signal(&s, &sig("resume-snapshot", ""), false),
            Outcome::Ignored
        );
        assert!(inc.wants_chunk());
        // Stopping the table under way drops its progress; the next one starts fresh.
        let stop = r#"{"data-collections": ["public.a"], "type": "incremental"}"#;
        assert_eq!(
            inc.signal(&s, &sig("stop-snapshot", stop), false),
            Outcome::StateChanged
        );
        assert_eq!(inc.queue.len(), 1);
        assert_eq!(inc.queue[0].id, "public.b");
        assert_eq!(inc.last_key, None);
        assert!(inc.context().contains("public.b"));
        // A replayed signal (acted on by an earlier run) changes nothing.
        assert_eq!(
            inc.signal(&s, &sig("stop-snapshot", "{}"), true),
            Outcome::Ignored
        );
        assert_eq!(inc.queue.len(), 1);
        assert_eq!(
            inc.signal(&s, &sig("stop-snapshot", "{}"), false),
            Outcome::StateChanged
        );
        assert!(inc.queue.is_empty());
        assert_eq!(inc.context(), "");
    }

    #[test]
    fn progress_round_trips_through_offset_fields() {
        let mut inc = Incremental::new(10);
        inc.queue.push_back(Collection {
            id: "public.orders".into(),
            filter: None,
        });
        inc.last_key = Some(vec!["41".into()]);
        inc.max_key = Some(vec!["90".into()]);
        inc.refresh_context();
        let offset: Json =
            serde_json::from_str(&format!("{{\"lsn\":1{}}}", inc.context())).expect("json");
        let mut back = Incremental::new(10);
        back.resume(&offset);
        assert_eq!(back.queue, inc.queue);
        assert_eq!(back.last_key, inc.last_key);
        assert_eq!(back.max_key, inc.max_key);
        assert!(back.wants_chunk());
        let idle: Json = serde_json::from_str("{\"lsn\":1}").expect("json");
        let mut none = Incremental::new(10);
        none.resume(&idle);
        assert!(!none.wants_chunk());
        assert_eq!(none.context(), "");
    }

    #[test]
    fn a_streamed_change_drops_the_row_from_an_open_window() {
        let mut inc = Incremental::new(10);
        let shape = Rc::new(Shape {
            schema: "public".into(),
            table: "t".into(),
            topic: "p.public.t".into(),
            columns: Vec::new(),
            schemas: None,
        });
        inc.queue.push_back(Collection {
            id: "public.t".into(),
            filter: None,
        });
        inc.current = Some(Current {
            shape: shape.clone(),
            quoted: String::new(),
            columns: String::new(),
            key_idx: vec![0],
            key_list: String::new(),
        });
        let row = |k: &str| (Some(format!("{{\"id\":{k}}}")), vec![Value::Text(k.into())]);
        let mut chunk = Chunk {
            id: "w".into(),
            open: false,
            rows: vec![Some(row("1")), Some(row("2"))],
            by_key: HashMap::new(),
            end_key: vec!["2".into()],
            last_of_table: false,
        };
        chunk.by_key.insert("{\"id\":1}".into(), 0);
        chunk.by_key.insert("{\"id\":2}".into(), 1);
        inc.chunk = Some(chunk);
        // Before the window opens, changes are older than the chunk.
        inc.changed(&shape, Some("{\"id\":1}"));
        let sig = |id: &str, kind: &str| vec![Value::Text(id.into()), Value::Text(kind.into())];
        let s = crate::settings::tests::settings();
        assert_eq!(
            inc.signal(&s, &sig("w-open", "snapshot-window-open"), false),
            Outcome::Ignored
        );
        inc.changed(&shape, Some("{\"id\":2}"));
        assert_eq!(
            inc.signal(&s, &sig("w-close", "snapshot-window-close"), false),
            Outcome::Closed
        );
        let closed = inc.take_closed().expect("closed");
        assert_eq!(closed.rows.len(), 1);
        assert!(
            closed.rows[0].2.contains("[\\\"1\\\"]"),
            "{}",
            closed.rows[0].2
        );
        assert_eq!(inc.last_key, Some(vec!["2".into()]));
        assert!(inc.wants_chunk());
    }
}
