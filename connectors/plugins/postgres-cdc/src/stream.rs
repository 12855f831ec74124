//! Streaming: pgoutput messages into Debezium events, in commit order.
//! Relation messages define (and redefine, after ALTER TABLE) each table's
//! shape; a primary key change becomes delete (+ tombstone) then create, as
//! in Debezium; `pg_logical_emit_message` becomes an `op: m` event.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{json, Value as Json};
use wharf_sdk::{Error, Record, Result};

use crate::envelope::{self, Origin, Shape};
use crate::incremental::Incremental;
use crate::pgoutput::{self, Message, Relation, Value};
use crate::progress::{self, Confirmations, Position};
use crate::settings::Settings;
use crate::values::Mapping;

mod signals;

struct Rel {
    /// Shared with every event of the table (cloned per event otherwise).
    shape: Rc<Shape>,
    captured: bool,
    /// The signal table (`signal.data.collection`).
    signal: bool,
}

/// The transaction being read.
struct Tx {
    xid: u32,
    commit: u64,
    ts_us: i64,
    /// Index of the last event (or metadata record) numbered in it.
    seq: i64,
    /// Index of the last one actually emitted (after resume skipping).
    last_emitted: i64,
    /// Data events, in total and per table, for transaction metadata.
    total: u64,
    per_table: Vec<(String, u64)>,
}

impl Tx {
    fn id(&self) -> String {
        format!("{}:{}", self.xid, self.commit)
    }
}

pub struct Stream {
    relations: HashMap<u32, Rel>,
    tx: Option<Tx>,
    /// Events at or before this position were emitted by an earlier run.
    resume: Option<Position>,
    pub confirms: Confirmations,
    /// The server's WAL end from its last keepalive.
    pub server_end: u64,
    partition: String,
    /// Where the last transaction read ended, for `source.sequence`.
    last_commit: Option<u64>,
    pub incremental: Incremental,
}

/// One event about to be emitted.
struct Draft<'a> {
    op: &'a str,
    shape: Option<&'a Shape>,
    lsn: u64,
    /// JSON texts; None is null.
    key: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

impl Stream {
    pub fn new(s: &Settings, resume: Option<Position>) -> Self {
        let mut confirms = Confirmations::default();
        confirms.start(resume);
        Stream {
            relations: HashMap::new(),
            tx: None,
            resume,
            confirms,
            server_end: 0,
            partition: progress::source_partition(&s.prefix),
            last_commit: None,
            incremental: Incremental::new(s.chunk_size),
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Where the last emitted event stands (for heartbeats' offsets).
    pub fn position(&self) -> Position {
        self.confirms
            .last_emitted()
            .or(self.resume)
            .unwrap_or(Position { commit: 0, seq: -1 })
    }

    pub fn handle(
        &mut self,
        s: &Settings,
        m: &Mapping,
        lsn: u64,
        data: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let msg = pgoutput::decode(data).map_err(|e| {
            Error::Fatal(format!(
                "pgoutput message at {}: {e}",
                progress::format_lsn(lsn)
            ))
        })?;
        match msg {
            Message::Begin {
                final_lsn,
                commit_ts_us,
                xid,
            } => {
                self.tx = Some(Tx {
                    xid,
                    commit: final_lsn,
                    ts_us: pgoutput::pg_epoch_us_to_unix_us(commit_ts_us),
                    seq: -1,
                    last_emitted: -1,
                    total: 0,
                    per_table: Vec::new(),
                });
                if s.transaction_metadata {
                    self.metadata(s, "BEGIN", out)?;
                }
            }
            Message::Commit { end_lsn, .. } => {
                // Debezium's sequence starts with the last commit's end.
                self.last_commit = Some(end_lsn);
                if s.transaction_metadata && self.tx.is_some() {
                    self.metadata(s, "END", out)?;
                }
                if let Some(tx) = self.tx.take() {
                    self.confirms.committed(tx.commit, tx.last_emitted, end_lsn);
                }
            }
            Message::Relation(r) => {
                let rel = self.relation(s, &r)?;
                self.relations.insert(r.id, rel);
            }
            Message::Insert { rel, new } => {
                if self.relations.get(&rel).is_some_and(|r| r.signal) {
                    return self.signal(s, m, lsn, &new, out);
                }
                if let Some(shape) = self.captured(rel) {
                    let d = Draft {
                        op: "c",
                        shape: Some(&*shape),
                        lsn,
                        key: shape.key(&new, m)?,
                        before: None,
                        after: Some(shape.row(&new, m)?),
                    };
                    self.emit(s, d, out)?;
                }
            }
            Message::Update {
                rel,
                old,
                key_only,
                new,
            } => {
                if let Some(shape) = self.captured(rel) {
                    self.update(s, m, &shape, lsn, old, key_only, new, out)?;
                }
            }
            Message::Delete { rel, old, .. } => {
                if let Some(shape) = self.captured(rel) {
                    self.delete(s, m, &shape, lsn, &old, out)?;
                }
            }
            Message::Truncate { rels, .. } => {
                for rel in rels {
                    if let Some(shape) = self.captured(rel) {
                        let d = Draft {
                            op: "t",
                            shape: Some(&*shape),
                            lsn,
                            key: None,
                            before: None,
                            after: None,
                        };
                        self.emit(s, d, out)?;
                    }
                }
            }
            Message::LogicalMessage {
                transactional,
                lsn: at,
                prefix,
                content,
            } => self.message(s, transactional, at, &prefix, &content, out)?,
            Message::Type { .. } | Message::Origin { .. } => {}
        }
        Ok(())
    }

    fn relation(&self, s: &Settings, r: &Relation) -> Result<Rel> {
        let captured = s.captures(&r.namespace, &r.name);
        // Under REPLICA IDENTITY FULL every column is flagged as identity;
        // the event key is still the primary key (none: no key), as in Debezium.
        let primary_key = if captured && r.replica_identity == b'f' {
            Some(crate::catalog::primary_key(r.id)?)
        } else {
            None
        };
        let is_key = |c: &pgoutput::Column| match &primary_key {
            Some(pk) => pk.contains(&c.name),
            None => c.key,
        };
        let columns = r
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_oid, c.type_mod, is_key(c)));
        let full = format!("{}.{}", r.namespace, r.name);
        let mut shape = Shape::new(s, &r.namespace, &r.name, columns);
        if captured {
            crate::schema::attach(s, &mut shape, r.id)?;
        }
        Ok(Rel {
            captured,
            signal: s.signal_table.as_deref() == Some(full.as_str()),
            shape: Rc::new(shape),
        })
    }

    fn captured(&self, rel: u32) -> Option<Rc<Shape>> {
        // pgoutput always sends a Relation before a table's first change, so
        // an unknown id is a table the stream never described: not captured.
        self.relations
            .get(&rel)
            .filter(|r| r.captured)
            .map(|r| r.shape.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        s: &Settings,
        m: &Mapping,
        shape: &Shape,
        lsn: u64,
        old: Option<Vec<Value>>,
        key_only: bool,
        new: Vec<Value>,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        if let Some(old) = &old {
            if shape.has_key() && shape.key_changed(old, &new) {
                self.delete(s, m, shape, lsn, old, out)?;
                let d = Draft {
                    op: "c",
                    shape: Some(shape),
                    lsn,
                    key: shape.key(&new, m)?,
                    before: None,
                    after: Some(shape.row(&new, m)?),
                };
                return self.emit(s, d, out);
            }
        }
        // Only REPLICA IDENTITY FULL sends the whole old row.
        let before = match &old {
            Some(old) if !key_only => Some(shape.row(old, m)?),
            _ => None,
        };
        let d = Draft {
            op: "u",
            shape: Some(shape),
            lsn,
            key: shape.key(&new, m)?,
            before,
            after: Some(shape.row(&new, m)?),
        };
        self.emit(s, d, out)
    }

    fn delete(
        &mut self,
        s: &Settings,
        m: &Mapping,
        shape: &Shape,
        lsn: u64,
        old: &[Value],
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let key = shape.key(old, m)?;
        let d = Draft {
            op: "d",
            shape: Some(shape),
            lsn,
            key: key.clone(),
            before: Some(shape.row(old, m)?),
            after: None,
        };
        let emitted = self.emit(s, d, out);
        if s.tombstones && key.is_some() && !s.skip.contains(&'d') {
            if let Some(pos) = self.next_position() {
                self.push(
                    out,
                    envelope::record(
                        &shape.topic,
                        shape.key_out(key.as_deref()).as_deref(),
                        None,
                        self.ts_ms(),
                        &self.partition,
                        self.offset(pos, lsn),
                    ),
                    pos,
                );
            }
        }
        emitted
    }

    fn message(
        &mut self,
        s: &Settings,
        transactional: bool,
        at: u64,
        prefix: &str,
        content: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let content = crate::values::base64(content);
        let key = json!({ "prefix": prefix }).to_string();
        let body = json!({ "prefix": prefix, "content": content }).to_string();
        if transactional && self.tx.is_some() {
            // The body rides in `after` until emit moves it to `message`.
            let d = Draft {
                op: "m",
                shape: None,
                lsn: at,
                key: Some(key),
                before: None,
                after: Some(body),
            };
            return self.emit(s, d, out);
        }
        // Outside a transaction the message is its own unit of progress.
        let pos = Position { commit: at, seq: 0 };
        if self.resume.is_some_and(|r| pos <= r) {
            return Ok(());
        }
        let now_us = wharf_sdk::now_millis().saturating_mul(1000);
        let origin = Origin {
            prefix: &s.prefix,
            db: &s.dbname,
            ts_us: now_us,
            snapshot: "false",
            tx_id: None,
            lsn: Some(at),
            sequence: self.sequence(at),
        };
        let value = envelope::event(&envelope::Parts {
            op: "m",
            before: None,
            after: None,
            source: &envelope::source(None, &origin),
            transaction: None,
            message: Some(&body),
        });
        out.push(envelope::record(
            &format!("{}.message", s.prefix),
            Some(&key),
            Some(value),
            now_us / 1000,
            &self.partition,
            progress::stream_offset(pos, at, 0, now_us, self.incremental.context()),
        ));
        self.confirms.emitted(pos);
        self.confirms.committed(at, 0, at);
        Ok(())
    }

    /// Numbers the next event of the open transaction; None when an earlier
    /// run already emitted it.
    fn next_position(&mut self) -> Option<Position> {
        let tx = self.tx.as_mut()?;
        tx.seq += 1;
        let pos = Position {
            commit: tx.commit,
            seq: tx.seq,
        };
        if self.resume.is_some_and(|r| pos <= r) {
            return None;
        }
        Some(pos)
    }

    fn push(&mut self, out: &mut Vec<Record>, r: Record, pos: Position) {
        out.push(r);
        self.confirms.emitted(pos);
        if let Some(tx) = self.tx.as_mut() {
            tx.last_emitted = pos.seq;
        }
    }

    fn sequence(&self, lsn: u64) -> (Option<u64>, u64) {
        (self.last_commit, lsn)
    }

    /// Where an event of the open transaction, logged at `lsn`, comes from.
    fn tx_origin<'s>(&self, s: &'s Settings, snapshot: &'static str, lsn: u64) -> Origin<'s> {
        let (xid, ts_us) = self.tx.as_ref().map_or((0, 0), |t| (t.xid, t.ts_us));
        Origin {
            prefix: &s.prefix,
            db: &s.dbname,
            ts_us,
            snapshot,
            tx_id: Some(xid),
            lsn: Some(lsn),
            sequence: self.sequence(lsn),
        }
    }

    fn ts_ms(&self) -> i64 {
        self.tx.as_ref().map_or(0, |t| t.ts_us.div_euclid(1000))
    }

    fn offset(&self, pos: Position, lsn: u64) -> String {
        let (xid, ts) = self.tx.as_ref().map_or((0, 0), |t| (t.xid, t.ts_us));
        progress::stream_offset(pos, lsn, xid, ts, self.incremental.context())
    }

    fn emit(&mut self, s: &Settings, d: Draft<'_>, out: &mut Vec<Record>) -> Result<()> {
        // Even a change not emitted (skipped, or emitted by an earlier run)
        // is newer than an open incremental snapshot window's row.
        if let Some(shape) = d.shape {
            if d.op == "t" || d.key.is_some() {
                self.incremental.changed(shape, d.key.as_deref());
            }
        }
        let op_char = d.op.chars().next().unwrap_or('?');
        if s.skip.contains(&op_char) {
            return Ok(());
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(Error::Fatal(format!(
                "pgoutput change at {} outside a transaction",
                progress::format_lsn(d.lsn)
            )));
        };
        tx.total += 1;
        let transaction = if s.transaction_metadata {
            let table = d
                .shape
                .map(|sh| format!("{}.{}", sh.schema, sh.table))
                .unwrap_or_default();
            let per = match tx.per_table.iter_mut().find(|(t, _)| *t == table) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.1
                }
                None => {
                    tx.per_table.push((table, 1));
                    1
                }
            };
            Some(
                json!({ "id": tx.id(), "total_order": tx.total, "data_collection_order": per })
                    .to_string(),
            )
        } else {
            None
        };
        let Some(pos) = self.next_position() else {
            return Ok(());
        };
        let origin = self.tx_origin(s, "false", d.lsn);
        let ts_us = origin.ts_us;
        let source = envelope::source(d.shape, &origin);
        // A transactional logical message: Debezium's message topic and body.
        let (topic, after, message) = match d.shape {
            Some(sh) => (sh.topic.clone(), d.after.as_deref(), None),
            None => (format!("{}.message", s.prefix), None, d.after.as_deref()),
        };
        let value = envelope::event(&envelope::Parts {
            op: d.op,
            before: d.before.as_deref(),
            after,
            source: &source,
            transaction: transaction.as_deref(),
            message,
        });
        let (key, value) = match d.shape {
            Some(sh) => (sh.key_out(d.key.as_deref()), sh.value_out(value)),
            None => (d.key.as_deref().map(std::borrow::Cow::Borrowed), value),
        };
        let record = envelope::record(
            &topic,
            key.as_deref(),
            Some(value),
            ts_us.div_euclid(1000),
            &self.partition,
            self.offset(pos, d.lsn),
        );
        self.push(out, record, pos);
        Ok(())
    }

    /// A BEGIN or END record on the transaction topic.
    fn metadata(&mut self, s: &Settings, status: &str, out: &mut Vec<Record>) -> Result<()> {
        let Some(pos) = self.next_position() else {
            return Ok(());
        };
        let Some(tx) = self.tx.as_ref() else {
            return Ok(());
        };
        let id = tx.id();
        let mut value = json!({
            "status": status,
            "id": id,
            "ts_ms": tx.ts_us.div_euclid(1000),
            "event_count": Json::Null,
            "data_collections": Json::Null,
        });
        if status == "END" {
            value["event_count"] = json!(tx.total);
            value["data_collections"] = tx
                .per_table
                .iter()
                .map(|(t, n)| json!({ "data_collection": t, "event_count": n }))
                .collect();
        }
        let record = envelope::record(
            &s.transaction_topic,
            Some(&json!({ "id": id }).to_string()),
            Some(value.to_string()),
            tx.ts_us.div_euclid(1000),
            &self.partition,
            self.offset(pos, tx.commit),
        );
        self.push(out, record, pos);
        Ok(())
    }
}

impl Stream {
    /// The connection dropped: the server will resend from the slot's
    /// confirmed position, so everything emitted so far is skipped and a
    /// half-read transaction starts over.
    pub fn reconnecting(&mut self) {
        self.resume = self.resume.max(self.confirms.last_emitted());
        self.tx = None;
    }
}
